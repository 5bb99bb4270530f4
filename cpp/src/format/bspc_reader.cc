// BSPC v1 reader: every count, offset and index is checked before it is used (docs/bspc.md).
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

#include "format/crc32.h"
#include "format/model_view.h"
#include "rtmobile/rtmobile.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the BSPC reader maps little-endian arrays in place");

namespace rtmobile {
namespace {

constexpr uint8_t kMagic[8] = {'B', 'S', 'P', 'C', '\r', '\n', 0x1A, '\n'};
constexpr uint32_t kHeaderSize = 64;
constexpr uint32_t kDirEntrySize = 32;
constexpr uint32_t kMaxSections = 4096;
constexpr uint32_t kMaxLayers = 64;
constexpr uint32_t kMaxDim = 1u << 24;

enum SectionType : uint32_t {
  kModel = 1,
  kLabels = 2,
  kNorm = 3,
  kMatrix = 4,
  kVector = 5,
  kMetadata = 6,
};

const char* section_name(uint32_t type) {
  switch (type) {
    case kModel: return "MODEL";
    case kLabels: return "LABELS";
    case kNorm: return "NORM";
    case kMatrix: return "MATRIX";
    case kVector: return "VECTOR";
    case kMetadata: return "METADATA";
    default: return "UNKNOWN";
  }
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  std::ostringstream out;
  (out << ... << args);
  throw FormatError(out.str());
}

uint16_t read_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint64_t read_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
float read_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t{63}; }

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

struct Section {
  uint32_t type, index;
  const uint8_t* data;
  uint64_t size;
  std::string label;  // "MATRIX[3]"
};

// Checks a pointer array ptr[0..n]: ptr[0] == 0, non-decreasing, ptr[n] == last.
void check_ptr_array(const std::string& where, const uint32_t* ptr, uint64_t n, uint64_t last) {
  if (ptr[0] != 0) fail(where, "[0]: must be 0, found ", ptr[0]);
  for (uint64_t k = 1; k <= n; ++k) {
    if (ptr[k] < ptr[k - 1])
      fail(where, "[", k, "]: ", ptr[k], " is smaller than the previous entry ", ptr[k - 1]);
  }
  if (ptr[n] != last) fail(where, "[", n, "]: must equal ", last, ", found ", ptr[n]);
}

// A MATRIX section's header fields and where its arrays start (section-relative).
struct MatrixHeader {
  MatrixLayout layout;
  uint64_t offset[8];  // strip_ptr, col_block_ptr, row_perm, block_col_ptr, col_idx,
                       // block_row_ptr, row_idx, values
};

// Checks a MATRIX section's header, counts, size and the zero padding between its arrays;
// reads no array.
MatrixHeader read_matrix_header(const Section& s) {
  const std::string& w = s.label;
  if (s.size < 64) fail(w, ": section is ", s.size, " bytes, shorter than its 64-byte header");
  const uint8_t* p = s.data;
  MatrixHeader h{};
  MatrixLayout& m = h.layout;
  m.rows = read_u32(p + 0);
  m.cols = read_u32(p + 4);
  m.num_r = read_u32(p + 8);
  m.num_c = read_u32(p + 12);
  const uint32_t dtype = read_u32(p + 16);
  m.value_count = read_u64(p + 24);
  m.col_index_count = read_u64(p + 32);
  m.row_index_count = read_u64(p + 40);
  if (m.rows == 0 || m.rows > kMaxDim) fail(w, ".rows: ", m.rows, " outside [1, ", kMaxDim, "]");
  if (m.cols == 0 || m.cols > kMaxDim) fail(w, ".cols: ", m.cols, " outside [1, ", kMaxDim, "]");
  if (m.num_r == 0 || m.num_r > m.rows)
    fail(w, ".num_r: ", m.num_r, " outside [1, rows=", m.rows, "]");
  if (m.num_c == 0 || m.num_c > m.cols)
    fail(w, ".num_c: ", m.num_c, " outside [1, cols=", m.cols, "]");
  if (dtype != 1 && dtype != 2) fail(w, ".dtype: unknown value ", dtype, " (1 = f32, 2 = f16)");
  m.dtype = static_cast<DType>(dtype);
  if (read_u32(p + 20) != 0 || !all_zero(p + 48, 16)) fail(w, ".reserved: must be zero");
  const uint64_t dense = uint64_t{m.rows} * m.cols;  // < 2^48: no overflow below
  if (m.value_count > dense)
    fail(w, ".value_count: ", m.value_count, " exceeds rows*cols = ", dense);
  if (m.col_index_count > uint64_t{m.num_r} * m.cols)
    fail(w, ".col_index_count: ", m.col_index_count, " exceeds num_r*cols = ",
         uint64_t{m.num_r} * m.cols);
  if (m.row_index_count > uint64_t{m.num_c} * m.rows)
    fail(w, ".row_index_count: ", m.row_index_count, " exceeds num_c*rows = ",
         uint64_t{m.num_c} * m.rows);

  const uint64_t blocks = uint64_t{m.num_r} * m.num_c;
  const uint64_t esize = m.dtype == DType::kF16 ? 2 : 4;
  const uint64_t bytes[8] = {4 * (uint64_t{m.num_r} + 1), 4 * (uint64_t{m.num_c} + 1),
                             4 * uint64_t{m.rows},        4 * (blocks + 1),
                             4 * m.col_index_count,       4 * (blocks + 1),
                             4 * m.row_index_count,       esize * m.value_count};
  uint64_t end = 64;
  for (int k = 0; k < 8; ++k) {
    h.offset[k] = align64(end);
    end = h.offset[k] + bytes[k];
  }
  if (end != s.size)
    fail(w, ": section is ", s.size, " bytes but its header implies ", end,
         " (rows, cols, num_r, num_c, counts)");
  static const char* const kArrayNames[8] = {"strip_ptr", "col_block_ptr", "row_perm",
                                             "block_col_ptr", "col_idx", "block_row_ptr",
                                             "row_idx", "values"};
  for (int k = 1; k < 8; ++k) {
    const uint64_t gap_begin = h.offset[k - 1] + bytes[k - 1];
    if (!all_zero(p + gap_begin, h.offset[k] - gap_begin))
      fail(w, ": padding before ", kArrayNames[k], " (bytes ", gap_begin, "..", h.offset[k],
           ") must be zero");
  }
  return h;
}

// Every array of a MATRIX section whose header read_matrix_header accepted.
BspMatrixView parse_matrix(const Section& s, const MatrixHeader& h) {
  const std::string& w = s.label;
  const uint8_t* p = s.data;
  BspMatrixView m;
  m.rows = h.layout.rows;
  m.cols = h.layout.cols;
  m.num_r = h.layout.num_r;
  m.num_c = h.layout.num_c;
  m.dtype = h.layout.dtype;
  m.value_count = h.layout.value_count;
  const uint64_t value_count = h.layout.value_count;
  const uint64_t col_index_count = h.layout.col_index_count;
  const uint64_t row_index_count = h.layout.row_index_count;
  const uint64_t blocks = uint64_t{m.num_r} * m.num_c;
  auto u32_array = [&](int k) { return reinterpret_cast<const uint32_t*>(p + h.offset[k]); };
  m.strip_ptr = u32_array(0);
  m.col_block_ptr = u32_array(1);
  m.row_perm = u32_array(2);
  m.block_col_ptr = u32_array(3);
  m.col_idx = u32_array(4);
  m.block_row_ptr = u32_array(5);
  m.row_idx = u32_array(6);
  m.values = p + h.offset[7];

  check_ptr_array(w + ".strip_ptr", m.strip_ptr, m.num_r, m.rows);
  check_ptr_array(w + ".col_block_ptr", m.col_block_ptr, m.num_c, m.cols);
  check_ptr_array(w + ".block_col_ptr", m.block_col_ptr, blocks, col_index_count);
  check_ptr_array(w + ".block_row_ptr", m.block_row_ptr, blocks, row_index_count);

  // The permutation only reorders rows inside their strip: strip i holds exactly the
  // original rows [strip_ptr[i], strip_ptr[i+1]).
  std::vector<bool> seen(m.rows, false);
  for (uint32_t i = 0; i < m.num_r; ++i) {
    for (uint32_t s_row = m.strip_ptr[i]; s_row < m.strip_ptr[i + 1]; ++s_row) {
      const uint32_t orig = m.row_perm[s_row];
      if (orig < m.strip_ptr[i] || orig >= m.strip_ptr[i + 1])
        fail(w, ".row_perm[", s_row, "]: row ", orig, " outside strip ", i, " rows [",
             m.strip_ptr[i], ", ", m.strip_ptr[i + 1], ")");
      if (seen[orig]) fail(w, ".row_perm[", s_row, "]: row ", orig, " appears twice");
      seen[orig] = true;
    }
  }

  m.value_offset.assign(blocks + 1, 0);
  for (uint32_t i = 0; i < m.num_r; ++i) {
    const uint32_t strip_height = m.strip_ptr[i + 1] - m.strip_ptr[i];
    for (uint32_t j = 0; j < m.num_c; ++j) {
      const uint64_t b = uint64_t{i} * m.num_c + j;
      const uint32_t c0 = m.col_block_ptr[j], c1 = m.col_block_ptr[j + 1];
      for (uint32_t k = m.block_col_ptr[b]; k < m.block_col_ptr[b + 1]; ++k) {
        const uint32_t c = m.col_idx[k];
        if (c < c0 || c >= c1)
          fail(w, ".col_idx[", k, "]: column ", c, " outside column block ", j, " range [", c0,
               ", ", c1, ")");
        if (k > m.block_col_ptr[b] && c <= m.col_idx[k - 1])
          fail(w, ".col_idx[", k, "]: column ", c, " not above the previous ", m.col_idx[k - 1],
               " (block ", b, " must list columns strictly increasing)");
      }
      for (uint32_t k = m.block_row_ptr[b]; k < m.block_row_ptr[b + 1]; ++k) {
        const uint32_t r = m.row_idx[k];
        if (r >= strip_height)
          fail(w, ".row_idx[", k, "]: row ", r, " outside strip ", i, " height ", strip_height);
        if (k > m.block_row_ptr[b] && r <= m.row_idx[k - 1])
          fail(w, ".row_idx[", k, "]: row ", r, " not above the previous ", m.row_idx[k - 1],
               " (block ", b, " must list rows strictly increasing)");
      }
      // Each factor is bounded by the strip height and block width: the product fits u64.
      const uint64_t block_values = uint64_t{m.block_row_ptr[b + 1] - m.block_row_ptr[b]} *
                                    (m.block_col_ptr[b + 1] - m.block_col_ptr[b]);
      m.value_offset[b + 1] = m.value_offset[b] + block_values;
    }
  }
  if (m.value_offset[blocks] != value_count)
    fail(w, ".value_count: ", value_count, " but the blocks hold ", m.value_offset[blocks],
         " values (sum of |rows| x |cols| per block)");

  if (m.dtype == DType::kF32) {
    const uint8_t* v = p + h.offset[7];
    for (uint64_t k = 0; k < value_count; ++k) {
      const float x = read_f32(v + 4 * k);
      if (!std::isfinite(x)) fail(w, ".values[", k, "]: not finite");
      if (x != 0.0f) ++m.nonzeros;
    }
  } else {
    const uint8_t* v = p + h.offset[7];
    for (uint64_t k = 0; k < value_count; ++k) {
      const uint16_t bits = read_u16(v + 2 * k);
      if ((bits & 0x7C00u) == 0x7C00u) fail(w, ".values[", k, "]: not finite (f16 inf/NaN)");
      if ((bits & 0x7FFFu) != 0) ++m.nonzeros;
    }
  }
  return m;
}

// A VECTOR section's header and size; its values are checked by check_vector_values.
VectorView read_vector_header(const Section& s) {
  const std::string& w = s.label;
  if (s.size < 16) fail(w, ": section is ", s.size, " bytes, shorter than its 16-byte header");
  VectorView v;
  v.length = read_u32(s.data);
  const uint32_t dtype = read_u32(s.data + 4);
  if (dtype != 1) fail(w, ".dtype: unknown value ", dtype, " (only 1 = f32 is defined)");
  if (read_u64(s.data + 8) != 0) fail(w, ".reserved: must be zero");
  if (s.size != 16 + 4 * uint64_t{v.length})
    fail(w, ": section is ", s.size, " bytes but length ", v.length, " implies ",
         16 + 4 * uint64_t{v.length});
  v.values = reinterpret_cast<const float*>(s.data + 16);
  return v;
}

void check_vector_values(const Section& s, const VectorView& v) {
  for (uint32_t k = 0; k < v.length; ++k)
    if (!std::isfinite(read_f32(s.data + 16 + 4 * uint64_t{k})))
      fail(s.label, ".values[", k, "]: not finite");
}

bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (extra >= n - i) return false;  // sequence cut by the end of the label
    for (size_t k = 1; k <= extra; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}


using SectionKey = std::pair<uint32_t, uint32_t>;

// Everything read_layout checks, kept for parse_bspc's deeper pass.
struct Scan {
  ModelLayout layout;
  std::map<SectionKey, Section> sections;
  std::vector<MatrixHeader> matrix_headers;  // per matrix id
  std::vector<VectorView> biases;            // per matrix id, values not yet checked
  uint32_t checksum = 0;

  const Section* find(uint32_t type, uint32_t index) const {
    auto it = sections.find({type, index});
    return it == sections.end() ? nullptr : &it->second;
  }
  const Section& at(uint32_t type, uint32_t index) const { return sections.at({type, index}); }
};

std::string matrix_name(uint32_t id, uint32_t num_layers) {
  if (id == 2 * num_layers) return "out.w";
  return "l" + std::to_string(id / 2) + (id % 2 == 1 ? ".w_hh" : ".w_ih");
}

Scan scan(const uint8_t* data, size_t size) {
  if (size < kHeaderSize)
    fail("header: file is ", size, " bytes, shorter than the 64-byte header");
  if (std::memcmp(data, kMagic, sizeof kMagic) != 0)
    fail("header.magic: not a BSPC file (expected the bytes \"BSPC\\r\\n\\x1a\\n\")");
  const uint16_t major = read_u16(data + 8);
  const uint16_t minor = read_u16(data + 10);
  if (major != 1)
    fail("header.version_major: unsupported version ", major, ".", minor,
         " (this runtime reads version 1.x)");
  if (read_u32(data + 12) != kHeaderSize)
    fail("header.header_size: must be 64, found ", read_u32(data + 12));
  const uint64_t file_size = read_u64(data + 16);
  if (file_size != size)
    fail("header.file_size: header says ", file_size, " bytes but the data has ", size,
         " (truncated or padded file)");
  if (read_u64(data + 24) != kHeaderSize)
    fail("header.directory_offset: must be 64, found ", read_u64(data + 24));
  const uint32_t count = read_u32(data + 32);
  if (count == 0 || count > kMaxSections)
    fail("header.section_count: ", count, " outside [1, ", kMaxSections, "]");
  if (!all_zero(data + 40, 24)) fail("header.reserved: must be zero");
  const uint64_t dir_end = kHeaderSize + uint64_t{count} * kDirEntrySize;
  if (dir_end > size)
    fail("directory: ", count, " entries need ", dir_end, " bytes but the file has ", size);
  Scan scanned;
  const uint32_t stored_crc = read_u32(data + 36);
  scanned.checksum = crc32(data + kHeaderSize, size - kHeaderSize);
  if (stored_crc != scanned.checksum)
    fail("header.checksum: stored CRC-32 0x", std::hex, stored_crc, " but the payload has 0x",
         scanned.checksum, " (corrupted file)");

  uint64_t prev_end = dir_end;
  for (uint32_t e = 0; e < count; ++e) {
    const uint8_t* d = data + kHeaderSize + uint64_t{e} * kDirEntrySize;
    Section s{read_u32(d), read_u32(d + 4), nullptr, read_u64(d + 16), {}};
    const uint64_t offset = read_u64(d + 8);
    std::ostringstream where;
    where << "directory[" << e << "] (" << section_name(s.type) << "[" << s.index << "])";
    const bool known = s.type >= kModel && s.type <= kMetadata;
    if (!known && minor == 0) fail(where.str(), ".type: unknown section type ", s.type);
    if (read_u64(d + 24) != 0) fail(where.str(), ".reserved: must be zero");
    if (offset % 64 != 0) fail(where.str(), ".offset: ", offset, " is not a multiple of 64");
    if (offset < prev_end)
      fail(where.str(), ".offset: ", offset, " overlaps the directory or the previous section"
           " (sections must be in ascending, non-overlapping order; previous ends at ", prev_end,
           ")");
    if (offset > size || s.size > size - offset)
      fail(where.str(), ".size: section [", offset, ", ", offset, "+", s.size,
           ") reaches past the end of the file (", size, " bytes)");
    prev_end = offset + s.size;
    if (!known) continue;  // a later minor version's optional section: ordered, sized, skipped
    s.data = data + offset;
    std::ostringstream label;
    label << section_name(s.type) << "[" << s.index << "]";
    s.label = label.str();
    if (!scanned.sections.emplace(SectionKey{s.type, s.index}, s).second)
      fail(where.str(), ": duplicate section ", s.label);
  }

  auto require = [&](uint32_t type, uint32_t index) -> const Section& {
    const Section* s = scanned.find(type, index);
    if (s == nullptr) fail("directory: required section ", section_name(type), "[", index,
                           "] is missing");
    return *s;
  };

  // MODEL
  ModelLayout& model = scanned.layout;
  const Section& ms = require(kModel, 0);
  if (ms.size < 32) fail("MODEL[0]: section is ", ms.size, " bytes, shorter than 32");
  const uint32_t kind = read_u32(ms.data);
  if (kind != 1 && kind != 2) fail("MODEL[0].model_kind: unknown value ", kind,
                                   " (1 = GRU, 2 = LSTM)");
  model.kind = static_cast<ModelKind>(kind);
  model.num_layers = read_u32(ms.data + 4);
  model.input_dim = read_u32(ms.data + 8);
  model.output_dim = read_u32(ms.data + 12);
  const uint32_t gate_order = read_u32(ms.data + 16);
  const uint32_t activation = read_u32(ms.data + 20);
  const uint32_t flags = read_u32(ms.data + 24);
  if (model.num_layers == 0 || model.num_layers > kMaxLayers)
    fail("MODEL[0].num_layers: ", model.num_layers, " outside [1, ", kMaxLayers, "]");
  if (model.input_dim == 0 || model.input_dim > kMaxDim)
    fail("MODEL[0].input_dim: ", model.input_dim, " outside [1, ", kMaxDim, "]");
  if (model.output_dim == 0 || model.output_dim > kMaxDim)
    fail("MODEL[0].output_dim: ", model.output_dim, " outside [1, ", kMaxDim, "]");
  const uint32_t expected_order = model.kind == ModelKind::kGru ? 1u : 2u;
  if (gate_order != expected_order)
    fail("MODEL[0].gate_order: ", gate_order, " is not valid for this model kind (expected ",
         expected_order, model.kind == ModelKind::kGru ? " = r,z,n)" : " = i,f,g,o)");
  if (activation != 1) fail("MODEL[0].activation: unknown value ", activation,
                            " (1 = sigmoid/tanh)");
  if ((flags & ~1u) != 0) fail("MODEL[0].flags: unknown bits set (0x", std::hex, flags, ")");
  if (read_u32(ms.data + 28) != 0) fail("MODEL[0].reserved: must be zero");
  if (ms.size != 32 + 4 * uint64_t{model.num_layers})
    fail("MODEL[0]: section is ", ms.size, " bytes but num_layers ", model.num_layers,
         " implies ", 32 + 4 * uint64_t{model.num_layers});
  for (uint32_t l = 0; l < model.num_layers; ++l) {
    const uint32_t h = read_u32(ms.data + 32 + 4 * l);
    if (h == 0 || h > kMaxDim / 4)
      fail("MODEL[0].hidden_dim[", l, "]: ", h, " outside [1, ", kMaxDim / 4, "]");
    model.hidden_dims.push_back(h);
  }
  model.has_norm = (flags & 1u) != 0;

  // Which sections exist, before any of them is read further.
  const uint32_t n_mats = 2 * model.num_layers + 1;
  for (const auto& entry : scanned.sections) {
    const uint32_t type = entry.first.first, index = entry.first.second;
    if ((type == kMatrix || type == kVector) && index >= n_mats)
      fail(entry.second.label, ": index ", index, " unused by a ", model.num_layers,
           "-layer model (ids 0..", n_mats - 1, ")");
    if ((type == kModel || type == kLabels || type == kNorm || type == kMetadata) && index != 0)
      fail(entry.second.label, ": index must be 0");
  }
  const Section& ls = require(kLabels, 0);
  const Section* ns = scanned.find(kNorm, 0);
  if (model.has_norm && ns == nullptr)
    fail("directory: MODEL[0].flags says a NORM section is present but it is missing");
  if (!model.has_norm && ns != nullptr)
    fail("directory: a NORM section is present but MODEL[0].flags bit 0 is not set");
  for (uint32_t id = 0; id < n_mats; ++id) {
    require(kMatrix, id);
    require(kVector, id);
  }

  // LABELS: count and offsets (the strings are checked by parse_bspc).
  if (ls.size < 4) fail("LABELS[0]: section is ", ls.size, " bytes, shorter than 4");
  const uint32_t label_count = read_u32(ls.data);
  if (label_count != model.output_dim)
    fail("LABELS[0].count: ", label_count, " labels but MODEL output_dim is ", model.output_dim);
  const uint64_t offsets_end = 4 + 4 * (uint64_t{label_count} + 1);
  if (ls.size < offsets_end)
    fail("LABELS[0]: section is ", ls.size, " bytes, too short for ", label_count, " offsets");
  const uint8_t* offsets = ls.data + 4;
  if (read_u32(offsets) != 0) fail("LABELS[0].offsets[0]: must be 0");
  for (uint32_t k = 0; k < label_count; ++k) {
    const uint32_t a = read_u32(offsets + 4 * k), b = read_u32(offsets + 4 * (k + 1));
    if (b < a) fail("LABELS[0].offsets[", k + 1, "]: ", b, " is smaller than the previous ", a);
  }
  model.label_bytes = read_u32(offsets + 4 * uint64_t{label_count});
  if (ls.size != offsets_end + model.label_bytes)
    fail("LABELS[0]: section is ", ls.size, " bytes but the offsets imply ",
         offsets_end + model.label_bytes);

  // NORM: size (values are checked by parse_bspc).
  if (ns != nullptr) {
    if (ns->size < 8) fail("NORM[0]: section is ", ns->size, " bytes, shorter than 8");
    const uint32_t dim = read_u32(ns->data);
    if (dim != model.input_dim)
      fail("NORM[0].dim: ", dim, " but MODEL input_dim is ", model.input_dim);
    if (ns->size != 8 + 8 * uint64_t{dim})
      fail("NORM[0]: section is ", ns->size, " bytes but dim ", dim, " implies ",
           8 + 8 * uint64_t{dim});
  }
  if (const Section* md = scanned.find(kMetadata, 0)) model.metadata_bytes = md->size;

  // Weights and biases: headers, sizes and the shapes the model kind implies.
  const uint32_t gates = gate_count(model.kind);
  for (uint32_t id = 0; id < n_mats; ++id) {
    const uint32_t layer = id / 2;
    uint32_t rows, cols;
    if (id == 2 * model.num_layers) {
      rows = model.output_dim;
      cols = model.hidden_dims.back();
    } else {
      const uint32_t h = model.hidden_dims[layer];
      rows = gates * h;
      cols = (id % 2 == 1) ? h : (layer == 0 ? model.input_dim : model.hidden_dims[layer - 1]);
    }
    const MatrixHeader mh = read_matrix_header(scanned.at(kMatrix, id));
    if (mh.layout.rows != rows || mh.layout.cols != cols)
      fail("MATRIX[", id, "] (", matrix_name(id, model.num_layers), "): shape ", mh.layout.rows,
           "x", mh.layout.cols, " but the model needs ", rows, "x", cols);
    scanned.matrix_headers.push_back(mh);
    model.matrices.push_back(mh.layout);
    const VectorView v = read_vector_header(scanned.at(kVector, id));
    if (v.length != rows)
      fail("VECTOR[", id, "] (bias of ", matrix_name(id, model.num_layers), "): length ",
           v.length, " but the model needs ", rows);
    scanned.biases.push_back(v);
  }
  // Padding, last: a section whose size is wrong is reported as that, not as the nonzero
  // "padding" its real bytes would leave behind.
  uint64_t gap_begin = dir_end;
  for (uint32_t e = 0; e < count; ++e) {
    const uint8_t* d = data + kHeaderSize + uint64_t{e} * kDirEntrySize;
    const uint64_t offset = read_u64(d + 8);
    if (!all_zero(data + gap_begin, offset - gap_begin))
      fail("directory[", e, "] (", section_name(read_u32(d)), "[", read_u32(d + 4),
           "]): padding before the section (bytes ", gap_begin, "..", offset, ") must be zero");
    gap_begin = offset + read_u64(d + 16);
  }
  if (!all_zero(data + prev_end, size - prev_end))
    fail("file: bytes ", prev_end, "..", size, " after the last section must be zero padding");
  return scanned;
}

}  // namespace

ModelLayout read_layout(const uint8_t* data, size_t size) { return scan(data, size).layout; }

ModelView parse_bspc(const uint8_t* data, size_t size) {
  const Scan scanned = scan(data, size);
  const ModelLayout& layout = scanned.layout;
  ModelView model;
  model.kind = layout.kind;
  model.num_layers = layout.num_layers;
  model.input_dim = layout.input_dim;
  model.output_dim = layout.output_dim;
  model.hidden_dims = layout.hidden_dims;
  model.has_norm = layout.has_norm;
  model.checksum = scanned.checksum;

  // LABELS: offsets were checked by scan(); now the strings.
  const Section& ls = scanned.at(kLabels, 0);
  const uint8_t* offsets = ls.data + 4;
  const uint8_t* blob = offsets + 4 * (uint64_t{layout.output_dim} + 1);
  model.labels.reserve(layout.output_dim);
  for (uint32_t k = 0; k < layout.output_dim; ++k) {
    const uint32_t a = read_u32(offsets + 4 * k), b = read_u32(offsets + 4 * (k + 1));
    if (!valid_utf8(blob + a, b - a)) fail("LABELS[0]: label ", k, " is not valid UTF-8");
    model.labels.emplace_back(reinterpret_cast<const char*>(blob + a), b - a);
  }

  if (const Section* ns = scanned.find(kNorm, 0)) {
    const uint32_t dim = layout.input_dim;
    model.norm_eps = read_f32(ns->data + 4);
    if (!(model.norm_eps > 0.0f) || !std::isfinite(model.norm_eps))
      fail("NORM[0].eps: must be finite and > 0, found ", model.norm_eps);
    model.norm_mean = reinterpret_cast<const float*>(ns->data + 8);
    model.norm_var = reinterpret_cast<const float*>(ns->data + 8 + 4 * uint64_t{dim});
    for (uint32_t k = 0; k < dim; ++k) {
      if (!std::isfinite(read_f32(ns->data + 8 + 4 * uint64_t{k})))
        fail("NORM[0].mean[", k, "]: not finite");
      const float var = read_f32(ns->data + 8 + 4 * (uint64_t{dim} + k));
      if (!std::isfinite(var) || var < 0.0f)
        fail("NORM[0].var[", k, "]: must be finite and >= 0, found ", var);
    }
  }

  // METADATA (optional): free-form UTF-8 text, JSON by convention; the runtime only carries it.
  if (const Section* md = scanned.find(kMetadata, 0)) {
    if (!valid_utf8(md->data, md->size)) fail("METADATA[0]: not valid UTF-8");
    model.metadata.assign(reinterpret_cast<const char*>(md->data), md->size);
  }

  const uint32_t n_mats = 2 * layout.num_layers + 1;
  for (uint32_t id = 0; id < n_mats; ++id) {
    BspMatrixView m = parse_matrix(scanned.at(kMatrix, id), scanned.matrix_headers[id]);
    m.name = matrix_name(id, layout.num_layers);
    model.matrices.push_back(std::move(m));
    check_vector_values(scanned.at(kVector, id), scanned.biases[id]);
    model.biases.push_back(scanned.biases[id]);
  }
  return model;
}

}  // namespace rtmobile
