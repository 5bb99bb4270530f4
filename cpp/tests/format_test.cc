// BSPC reader: a valid file parses; every kind of damage is a FormatError naming the field.
#include <cstring>

#include "format/crc32.h"
#include "format/half.h"
#include "format/model_view.h"
#include "rtmobile/rtmobile.hpp"
#include "test_model.h"
#include "test_util.h"

using rtm_test::TestModel;
using rtmobile::FormatError;
using rtmobile::parse_bspc;

namespace {

TestModel small_model() {
  return rtm_test::random_model(7, 1, 10, {12, 8}, 5, 3, 2, 0.6, false, true);
}

void parse(const std::vector<uint8_t>& bytes) { (void)parse_bspc(bytes.data(), bytes.size()); }

uint64_t dir_offset(const std::vector<uint8_t>& f, size_t entry) {
  uint64_t v;
  std::memcpy(&v, f.data() + 64 + 32 * entry + 8, 8);
  return v;
}

}  // namespace

TEST_CASE("crc32 matches the IEEE check value") {
  const char* s = "123456789";
  CHECK(rtmobile::crc32(reinterpret_cast<const uint8_t*>(s), 9) == 0xCBF43926u);
}

TEST_CASE("half to float covers normals, subnormals, zero, inf") {
  CHECK(rtmobile::half_to_float(0x3C00) == 1.0f);
  CHECK(rtmobile::half_to_float(0xC000) == -2.0f);
  CHECK(rtmobile::half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(rtmobile::half_to_float(0x0000) == 0.0f);
  CHECK(std::isinf(rtmobile::half_to_float(0x7C00)));
  CHECK(rtmobile::half_to_float(0x7BFF) == 65504.0f);
}

TEST_CASE("a valid model parses with its dimensions") {
  const TestModel m = small_model();
  const auto bytes = rtm_test::encode(m);
  const rtmobile::ModelView v = parse_bspc(bytes.data(), bytes.size());
  CHECK(v.num_layers == 2);
  CHECK(v.input_dim == 10);
  CHECK(v.output_dim == 5);
  CHECK(v.matrices.size() == 5);
  CHECK(v.labels.size() == 5 && v.labels[3] == "p3");
  CHECK(v.has_norm);
}

TEST_CASE("truncation anywhere is rejected") {
  const auto bytes = rtm_test::encode(small_model());
  for (size_t cut = 0; cut < bytes.size(); cut += 1 + cut / 7) {
    std::vector<uint8_t> t(bytes.begin(), bytes.begin() + static_cast<long>(cut));
    // The header records the full size, so any cut past it is a size mismatch.
    if (cut < 64)
      CHECK_THROWS(FormatError, parse(t), "header: file is " + std::to_string(cut) +
                                              " bytes, shorter than the 64-byte header");
    else
      CHECK_THROWS(FormatError, parse(t), "header.file_size: header says " +
                                              std::to_string(bytes.size()) +
                                              " bytes but the data has " + std::to_string(cut));
  }
}

TEST_CASE("truncation at each section boundary names file_size") {
  const auto bytes = rtm_test::encode(small_model());
  uint32_t count;
  std::memcpy(&count, bytes.data() + 32, 4);
  for (size_t e = 0; e < count; ++e) {
    std::vector<uint8_t> t(bytes.begin(), bytes.begin() + static_cast<long>(dir_offset(bytes, e)));
    CHECK_THROWS(FormatError, parse(t), "file_size");
  }
}

TEST_CASE("bad magic, version, checksum") {
  auto bytes = rtm_test::encode(small_model());
  auto bad = bytes;
  bad[0] = 'X';
  CHECK_THROWS(FormatError, parse(bad), "magic");
  bad = bytes;
  bad[8] = 2;
  CHECK_THROWS(FormatError, parse(bad), "version");
  bad = bytes;
  bad.back() ^= 0x40;
  CHECK_THROWS(FormatError, parse(bad), "checksum");
}

TEST_CASE("sizes that overflow are rejected before use") {
  auto bytes = rtm_test::encode(small_model());
  auto bad = bytes;
  const uint64_t huge = ~uint64_t{0} - 10;
  std::memcpy(bad.data() + 64 + 16, &huge, 8);  // first section's size
  rtm_test::fix_checksum(bad);
  CHECK_THROWS(FormatError, parse(bad), "past the end");
  bad = bytes;
  const uint32_t many = 0xFFFFFFFFu;
  std::memcpy(bad.data() + 32, &many, 4);
  CHECK_THROWS(FormatError, parse(bad), "section_count");
}

TEST_CASE("out-of-range indices inside a matrix are rejected") {
  TestModel m = small_model();
  m.norm = false;
  auto sections = rtm_test::model_sections(m);
  // sections: MODEL, LABELS, MATRIX 0..4, VECTOR 0..4
  auto& mat = sections[2].body;
  uint32_t rows, cols, num_r, num_c;
  std::memcpy(&rows, mat.data(), 4);
  std::memcpy(&cols, mat.data() + 4, 4);
  std::memcpy(&num_r, mat.data() + 8, 4);
  std::memcpy(&num_c, mat.data() + 12, 4);
  auto align = [](size_t x) { return (x + 63) / 64 * 64; };
  size_t off = 64;
  off = align(off + 4 * (num_r + 1));                  // col_block_ptr
  off = align(off + 4 * (num_c + 1));                  // row_perm
  const size_t perm_off = off;
  off = align(off + 4 * size_t{rows});                 // block_col_ptr
  off = align(off + 4 * (size_t{num_r} * num_c + 1));  // col_idx
  const size_t col_idx_off = off;

  auto bad = sections;
  const uint32_t big = cols + 5;
  std::memcpy(bad[2].body.data() + col_idx_off, &big, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "MATRIX[0].col_idx[0]");

  bad = sections;
  const uint32_t dup = 0;
  std::memcpy(bad[2].body.data() + perm_off + 4, &dup, 4);
  std::memcpy(bad[2].body.data() + perm_off, &dup, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "row_perm");

  bad = sections;
  const uint32_t dtype = 9;
  std::memcpy(bad[2].body.data() + 16, &dtype, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "dtype");

  bad = sections;
  bad[2].body.resize(bad[2].body.size() - 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "MATRIX[0]");
}

TEST_CASE("model-level rules: shapes, missing sections, NaN biases, labels") {
  TestModel m = small_model();
  m.norm = false;
  auto sections = rtm_test::model_sections(m);
  auto bad = sections;
  bad.pop_back();  // drop the output bias
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "VECTOR[4]");

  bad = sections;
  const float nan = std::nanf("");
  std::memcpy(bad.back().body.data() + 16, &nan, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "not finite");

  bad = sections;
  const uint32_t wrong_input = 11;
  std::memcpy(bad[0].body.data() + 8, &wrong_input, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "shape");

  bad = sections;
  bad[1].body[bad[1].body.size() - 1] = 0xFF;  // invalid UTF-8 in the last label
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "UTF-8");

  bad = sections;
  const uint32_t kind = 3;
  std::memcpy(bad[0].body.data(), &kind, 4);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(bad)), "model_kind");
}

TEST_CASE("padding is zero: between sections, between a matrix's arrays, after the last") {
  TestModel m = small_model();
  m.norm = false;
  const auto sections = rtm_test::model_sections(m);
  const auto bytes = rtm_test::assemble(sections);
  // Between sections: MODEL[0] (44 bytes) is followed by padding up to LABELS[0].
  auto bad = bytes;
  const uint64_t labels_at = dir_offset(bad, 1);
  bad[labels_at - 1] = 0x5A;
  rtm_test::fix_checksum(bad);
  CHECK_THROWS(FormatError, parse(bad),
               "directory[1] (LABELS[0]): padding before the section (bytes " +
                   std::to_string(dir_offset(bytes, 0) + sections[0].body.size()) + ".." +
                   std::to_string(labels_at) + ") must be zero");
  // Inside MATRIX[0]: strip_ptr (num_r + 1 = 4 u32 at offset 64) is padded to offset 128.
  bad = bytes;
  const uint64_t matrix_at = dir_offset(bad, 2);
  bad[matrix_at + 100] = 1;
  rtm_test::fix_checksum(bad);
  CHECK_THROWS(FormatError, parse(bad),
               "MATRIX[0]: padding before col_block_ptr (bytes 80..128) must be zero");
  // After the last section: zero padding is accepted, anything else is not.
  auto padded = bytes;
  padded.resize(bytes.size() + 64, 0);
  const uint64_t size = padded.size();
  std::memcpy(padded.data() + 16, &size, 8);
  rtm_test::fix_checksum(padded);
  parse(padded);
  padded.back() = 7;
  rtm_test::fix_checksum(padded);
  CHECK_THROWS(FormatError, parse(padded),
               "file: bytes " + std::to_string(bytes.size()) + ".." + std::to_string(size) +
                   " after the last section must be zero padding");
}

TEST_CASE("every required section is checked present before any array is read") {
  TestModel m = small_model();
  m.norm = false;
  auto sections = rtm_test::model_sections(m);
  // sections: MODEL, LABELS, MATRIX 0..4, VECTOR 0..4. Break MATRIX[0]'s arrays and drop
  // MATRIX[4]: the missing section is what is reported.
  sections[2].body[64] = 9;  // strip_ptr[0] must be 0
  sections.erase(sections.begin() + 6);
  CHECK_THROWS(FormatError, parse(rtm_test::assemble(sections)),
               "directory: required section MATRIX[4] is missing");
}

TEST_CASE("read_layout gives the sizes without reading the arrays") {
  TestModel m = small_model();
  auto bytes = rtm_test::encode(m);
  const rtmobile::ModelLayout layout = rtmobile::read_layout(bytes.data(), bytes.size());
  const rtmobile::ModelView view = parse_bspc(bytes.data(), bytes.size());
  CHECK(layout.num_layers == 2 && layout.input_dim == 10 && layout.output_dim == 5);
  CHECK(layout.hidden_dims == view.hidden_dims && layout.has_norm);
  CHECK(layout.label_bytes == 10);  // "p0".."p4"
  CHECK(layout.matrices.size() == view.matrices.size());
  for (size_t id = 0; id < view.matrices.size(); ++id) {
    CHECK(layout.matrices[id].rows == view.matrices[id].rows);
    CHECK(layout.matrices[id].value_count == view.matrices[id].value_count);
  }
}

TEST_CASE("Session reports file errors as Error(kIo) and bad bytes as FormatError") {
  CHECK_THROWS(rtmobile::Error, rtmobile::Session::from_file("/nonexistent/model.bspc"),
               "cannot open");
  const uint8_t junk[16] = {1, 2, 3};
  CHECK_THROWS(FormatError, rtmobile::Session::from_memory(junk, sizeof junk), "header");
}

TEST_MAIN()
