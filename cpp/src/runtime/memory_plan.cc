#include "runtime/memory_plan.h"

#include <algorithm>
#include <limits>
#include <string>

#include "rtmobile/rtmobile.hpp"

namespace rtmobile {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kDefaultLimitMb = 1024;
constexpr uint64_t kPieceBytes = 104;  // BspMatrix::Piece (while loading) + its GemvPiece
// Fixed bookkeeping the sizes above leave out (objects, vector and string headers, the thread
// pool, ModelInfo), generous: the fuzzer measured up to ~850 bytes per matrix (a 64-layer LSTM
// of hidden 1) and ~4 KB per session over the per-array terms.
constexpr uint64_t kSessionBytes = 16384;
constexpr uint64_t kMatrixBytes = 2048;
constexpr uint64_t kThreadWorkBytes = 128;  // per matrix and thread (BspMatrix::ThreadWork)

uint64_t add(uint64_t a, uint64_t b) { return a > kMax - b ? kMax : a + b; }
uint64_t mul(uint64_t a, uint64_t b) { return (b != 0 && a > kMax / b) ? kMax : a * b; }

std::string mib(uint64_t bytes) {
  return std::to_string((bytes + (uint64_t{1} << 20) - 1) >> 20) + " MiB";
}

}  // namespace

uint64_t planned_session_bytes(const ModelLayout& layout, uint64_t file_bytes,
                               const MemoryShape& shape) {
  const uint64_t threads = static_cast<uint64_t>(std::max(shape.threads, 1));
  const uint64_t pad_rows = shape.pad_rows;
  uint64_t total = add(file_bytes, kSessionBytes);
  for (const MatrixLayout& m : layout.matrices) {
    total = add(total, add(kMatrixBytes, mul(kThreadWorkBytes, threads)));
    const uint64_t blocks = uint64_t{m.num_r} * m.num_c;
    const uint64_t stored = m.dtype == DType::kF16 ? 2 : 4;
    const uint64_t esize = shape.weight_bytes != 0 ? shape.weight_bytes : stored;
    // Reader: per-block value offsets and the permutation check's bitmap.
    total = add(total, mul(8, blocks + 1));
    total = add(total, m.rows / 8 + 1);
    // Row partition: per-row work and its prefix sums (freed after load; counted for the peak).
    total = add(total, mul(16, uint64_t{m.rows} + 1));
    // Packed weights: every stored value, plus at most pad_rows padding rows per piece. A
    // piece is one thread's rows of a block: at most `threads` pieces per block (recurrent
    // layers split every strip by hidden unit), each padding up to the block's kept columns.
    const uint64_t padded_cols = mul(threads, m.col_index_count);
    const uint64_t packed = add(m.value_count, mul(pad_rows, padded_cols));
    total = add(total, mul(mul(packed, esize), shape.weight_copies));
    const uint64_t pieces = mul(threads, std::min(blocks, m.col_index_count));
    total = add(total, mul(kPieceBytes, pieces));
    // Owned index tables: runs of rows owned (at most one per row) and their biases, a piece's
    // rows while it is built, the kept columns (one copy), scattered piece rows and their
    // positions in the block. The kernels need no scratch: they add into the output in place.
    total = add(total, mul(16, m.rows));
    total = add(total, mul(4, m.col_index_count));
    total = add(total, mul(8, m.row_index_count));
  }
  // Chunk buffers: normalised input, input-gate projections, hidden gates, two sequences.
  uint64_t max_hidden = 0;
  for (uint32_t h : layout.hidden_dims) max_hidden = std::max<uint64_t>(max_hidden, h);
  const uint64_t max_gates = mul(gate_count(layout.kind), max_hidden);
  uint64_t floats = mul(shape.chunk_frames + 1, max_gates);
  floats = add(floats, mul(2 * shape.chunk_frames, max_hidden));
  if (layout.has_norm) floats = add(floats, mul(shape.chunk_frames + 2, layout.input_dim));
  total = add(total, mul(4, floats));
  // Labels and metadata: the reader's copy and ModelInfo's.
  const uint64_t label_objects = mul(uint64_t{layout.output_dim}, sizeof(std::string) + 1);
  total = add(total, mul(2, add(label_objects, layout.label_bytes)));
  total = add(total, mul(2, layout.metadata_bytes));
  return total;
}

uint64_t memory_limit_bytes(uint64_t memory_limit_mb) {
  return mul(memory_limit_mb == 0 ? kDefaultLimitMb : memory_limit_mb, uint64_t{1} << 20);
}

void check_memory_limit(uint64_t planned, uint64_t limit) {
  if (planned <= limit) return;
  throw Error(ErrorCode::kResourceLimit,
              "the model needs up to " + mib(planned) + " of memory (file, packed weights, "
              "buffers), more than the session's memory limit of " + mib(limit) +
              "; raise memory_limit_mb if this model is expected to be that large");
}

}  // namespace rtmobile
