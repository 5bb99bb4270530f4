// Writes the fuzzer's seed corpus: small BSPC files that together use every section type and
// the format's main variants (GRU and LSTM, f32 and f16, with and without NORM and METADATA,
// dense and block-sparse with empty blocks, several num_r/num_c, one and two layers, a minor
// version with an unknown section, an input of 2^16 features), plus three that must be
// rejected for reasons mutation rarely produces. Generated rather than committed, by the C++
// tests' independent encoder (cpp/tests/test_model.h), so they follow docs/bspc.md without
// Python; 2-8 KB each, so the fuzzer's executions stay fast.
//
// Usage: bspc_fuzz_seeds <output directory>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_model.h"

namespace {

struct Seed {
  const char* name;
  uint32_t kind;  // 1 GRU, 2 LSTM
  uint32_t input;
  std::vector<uint32_t> hidden;
  uint32_t output, num_r, num_c;
  double keep;  // probability that a block keeps a column / a row
  bool f16, norm;
};

constexpr uint32_t kMetadataType = 6;
constexpr uint32_t kUnknownType = 99;  // a section type a 1.0 reader does not know

std::vector<uint8_t> metadata_section() {
  const std::string json = R"({"features": {"sample_rate": 16000, "mel_bins": 8}})";
  return {json.begin(), json.end()};
}

// A W_ih of `rows` x `cols` in one strip and one column block that keeps only `kept_cols`
// (every row kept there): a few hundred bytes whatever `cols` is, which the tests' dense
// TestMatrix cannot express for cols in the millions.
std::vector<uint8_t> wide_matrix(uint32_t rows, uint32_t cols,
                                 const std::vector<uint32_t>& kept_cols) {
  const auto kept = static_cast<uint32_t>(kept_cols.size());
  rtm_test::Bytes s;
  for (uint32_t v : {rows, cols, 1u, 1u, 1u /* f32 */, 0u}) s.u32(v);
  s.u64(uint64_t{rows} * kept);  // value_count
  s.u64(kept);                    // col_index_count
  s.u64(rows);                    // row_index_count
  s.align64();
  const auto array = [&s](const std::vector<uint32_t>& a) {
    s.raw(a.data(), a.size() * sizeof(uint32_t));
    s.align64();
  };
  std::vector<uint32_t> all_rows(rows);
  for (uint32_t r = 0; r < rows; ++r) all_rows[r] = r;
  array({0, rows});     // strip_ptr
  array({0, cols});     // col_block_ptr
  array(all_rows);      // row_perm: identity
  array({0, kept});     // block_col_ptr
  array(kept_cols);     // col_idx
  array({0, rows});     // block_row_ptr
  array(all_rows);      // row_idx
  for (uint64_t i = 0; i < uint64_t{rows} * kept; ++i)
    s.f32(static_cast<float>(i % 7) / 8.0f - 0.375f);
  return s.data;
}

// A GRU whose input_dim is `input_dim`, through wide_matrix: the memory plan bounds the
// session's scratch by the widest matrix, so these reach the memory limit (refused) or the
// engine with inputs of millions of features (loaded), which mutation of the small seeds
// cannot (MODEL.input_dim, the matrix's cols and col_block_ptr would have to agree).
std::vector<uint8_t> wide_input_gru(uint32_t seed, uint32_t input_dim) {
  const rtm_test::TestModel m = rtm_test::random_model(seed, 1, 4, {4}, 3, 1, 1, 1.0, false,
                                                       false);
  std::vector<rtm_test::Section> sections = rtm_test::model_sections(m);
  for (rtm_test::Section& section : sections) {
    if (section.type == 1) std::memcpy(section.body.data() + 8, &input_dim, 4);  // MODEL
    if (section.type == 4 && section.index == 0)                                 // l0.w_ih
      section.body = wide_matrix(3 * 4, input_dim, {0, 1, input_dim / 3, input_dim - 1});
  }
  return rtm_test::assemble(sections);
}

bool write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  const std::vector<Seed> seeds = {
      {"gru_f32_dense", 1, 6, {8}, 4, 1, 1, 1.0, false, false},
      {"gru_f32_bsp_norm_2layers", 1, 10, {12, 8}, 5, 3, 2, 0.6, false, true},
      {"gru_f16_bsp", 1, 8, {16}, 6, 4, 3, 0.5, true, false},
      {"gru_f32_sparse_empty_blocks", 1, 12, {10}, 3, 6, 4, 0.2, false, false},
      {"lstm_f32_bsp", 2, 9, {12}, 5, 3, 2, 0.6, false, false},
      {"lstm_f16_norm_2layers", 2, 7, {10, 6}, 4, 5, 2, 0.5, true, true},
  };
  uint32_t seed_number = 1;
  size_t written = 0;
  for (const Seed& s : seeds) {
    const rtm_test::TestModel m = rtm_test::random_model(seed_number++, s.kind, s.input, s.hidden,
                                                         s.output, s.num_r, s.num_c, s.keep,
                                                         s.f16, s.norm);
    written += write_file(dir / (std::string(s.name) + ".bspc"), rtm_test::encode(m));
  }

  // Rows in file order (no permutation) and a METADATA section.
  rtm_test::TestModel plain = rtm_test::random_model(seed_number++, 1, 5, {9}, 3, 2, 2, 0.7,
                                                     false, true);
  plain.reorder = false;
  std::vector<rtm_test::Section> sections = rtm_test::model_sections(plain);
  sections.push_back({kMetadataType, 0, metadata_section()});
  written += write_file(dir / "gru_identity_perm_metadata.bspc", rtm_test::assemble(sections));

  // Version 1.1 with a section type 1.0 does not define, which docs/bspc.md says a reader
  // ignores (the reader rejects it today: docs/fuzzing.md, Findings).
  const rtm_test::TestModel lstm = rtm_test::random_model(seed_number++, 2, 4, {5}, 2, 1, 1, 1.0,
                                                          false, false);
  sections = rtm_test::model_sections(lstm);
  sections.push_back({kUnknownType, 0, {1, 2, 3, 4}});
  std::vector<uint8_t> minor = rtm_test::assemble(sections);
  const uint16_t version_minor = 1;
  std::memcpy(minor.data() + 10, &version_minor, sizeof version_minor);  // not under the CRC
  written += write_file(dir / "lstm_minor1_unknown_section.bspc", minor);

  // Two files the reader must reject, for errors that random mutation almost never reaches:
  // a wrong checksum (the custom mutator always stores the right one, so only seeds and
  // regression files arrive with a wrong one), and a bias whose VECTOR section is consistent in
  // itself but one element short for the model (length, payload and directory size would all
  // have to change together).
  std::vector<uint8_t> bad_checksum =
      rtm_test::encode(rtm_test::random_model(seed_number++, 1, 4, {6}, 3, 2, 1, 0.8, true, false));
  bad_checksum[36] ^= 0x01;
  written += write_file(dir / "reject_checksum.bspc", bad_checksum);
  rtm_test::TestModel short_bias = rtm_test::random_model(seed_number++, 2, 5, {4}, 3, 1, 1, 1.0,
                                                          false, false);
  short_bias.biases[0].pop_back();
  written += write_file(dir / "reject_bias_length.bspc", rtm_test::encode(short_bias));

  // 2^24, the largest input_dim: the plan's scratch alone passes the default 1024 MiB limit.
  written += write_file(dir / "reject_memory_limit_input_2p24.bspc",
                        wide_input_gru(seed_number++, 1u << 24));
  written += write_file(dir / "gru_wide_input_2p16.bspc", wide_input_gru(seed_number++, 1u << 16));

  const size_t expected = seeds.size() + 6;
  if (written != expected) {
    std::fprintf(stderr, "bspc_fuzz_seeds: wrote %zu of %zu files to %s\n", written, expected,
                 dir.c_str());
    return 1;
  }
  std::printf("bspc_fuzz_seeds: %zu seeds in %s\n", written, dir.c_str());
  return 0;
}
