// A validated, zero-copy view of a BSPC model: pointers into the file bytes plus what the
// reader derived. Valid only while the bytes it was parsed from stay alive.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rtmobile {

enum class ModelKind : uint32_t { kGru = 1, kLstm = 2 };
enum class DType : uint32_t { kF32 = 1, kF16 = 2 };

inline const char* dtype_name(DType d) { return d == DType::kF16 ? "f16" : "f32"; }
inline uint32_t gate_count(ModelKind k) { return k == ModelKind::kLstm ? 4u : 3u; }

struct BspMatrixView {
  std::string name;  // "l0.w_ih", ..., "out.w"
  uint32_t rows = 0, cols = 0, num_r = 0, num_c = 0;
  DType dtype = DType::kF32;
  uint64_t value_count = 0;
  const uint32_t* strip_ptr = nullptr;      // num_r + 1
  const uint32_t* col_block_ptr = nullptr;  // num_c + 1
  const uint32_t* row_perm = nullptr;       // rows
  const uint32_t* block_col_ptr = nullptr;  // num_r * num_c + 1
  const uint32_t* col_idx = nullptr;
  const uint32_t* block_row_ptr = nullptr;  // num_r * num_c + 1
  const uint32_t* row_idx = nullptr;        // strip-local stored rows
  const void* values = nullptr;             // f32 or f16 (uint16_t) by dtype
  std::vector<uint64_t> value_offset;       // per block, in elements; num_blocks + 1
  uint64_t nonzeros = 0;

  uint32_t num_blocks() const { return num_r * num_c; }
};

struct VectorView {
  uint32_t length = 0;
  const float* values = nullptr;
};

struct ModelView {
  ModelKind kind = ModelKind::kGru;
  uint32_t num_layers = 0, input_dim = 0, output_dim = 0;
  std::vector<uint32_t> hidden_dims;
  std::vector<std::string> labels;
  std::string metadata;  // METADATA section text (JSON), empty when absent
  bool has_norm = false;
  float norm_eps = 0.0f;
  const float* norm_mean = nullptr;
  const float* norm_var = nullptr;
  std::vector<BspMatrixView> matrices;  // id: layer l -> 2l (W_ih), 2l+1 (W_hh); output 2L
  std::vector<VectorView> biases;       // same ids
  uint32_t checksum = 0;
};

// What the headers alone say about a model: enough to plan memory before anything large is
// allocated (runtime/memory_plan.h).
struct MatrixLayout {
  uint32_t rows = 0, cols = 0, num_r = 0, num_c = 0;
  DType dtype = DType::kF32;
  uint64_t value_count = 0, col_index_count = 0, row_index_count = 0;
};

struct ModelLayout {
  ModelKind kind = ModelKind::kGru;
  uint32_t num_layers = 0, input_dim = 0, output_dim = 0;
  std::vector<uint32_t> hidden_dims;
  bool has_norm = false;
  uint64_t label_bytes = 0;     // the label strings' total length
  uint64_t metadata_bytes = 0;  // 0 when there is no METADATA section
  std::vector<MatrixLayout> matrices;  // same ids as ModelView::matrices
};

// Validates the file header, the directory, the padding, every section's own header and size,
// the model's shapes, and that every required section is present; allocates O(sections +
// layers). Throws FormatError naming the section and field.
ModelLayout read_layout(const uint8_t* data, size_t size);

// Validates every rule of docs/bspc.md (read_layout's, then every array and value) and throws
// FormatError naming the section and field. `data` must be 4-byte aligned.
ModelView parse_bspc(const uint8_t* data, size_t size);

}  // namespace rtmobile
