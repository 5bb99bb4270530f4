// The kernel interface: one table of function pointers per ISA, filled once per Session from
// CPU detection (dispatch.cc). Every table is tested against the scalar one (kernel_test.cc,
// tests/test_kernels.py), so a new ISA cannot go untested.
//
// A matrix product runs as one kernel call per *piece* (one thread's kept rows of one block,
// runtime/bsp_matrix.h). A piece's weights are packed in row panels: for each kept column, the
// values of the panel's rows are contiguous (a 16-row panel's column is 64 bytes in f32), and
// the panels follow each other. panel_split() says how a piece of `rows` rows is cut: whole
// 16-row panels, and an 8-row panel for a rest of 1-8 rows, so a piece carries at most
// kMaxPadRows zero rows (a 1-2 row piece reads 8 rows per column, not 16). The kernels
// read the piece's kept inputs in place through its column-index list (no gather) and add
// their results into the output rows directly (no separate pass).
//
// Determinism: every output element is accumulated from zero over the piece's columns in order,
// with one fused multiply-add per column, and that sum is added to the output with one add. The
// GEMV and every frame-tiling of the GEMM, in every ISA, give bit-identical results; streaming
// in chunks therefore equals an offline run exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rtmobile {

constexpr size_t kPanelRows = 16;  // rows of a whole panel
constexpr size_t kTailRows = 8;    // rows of the narrow panel a piece may end with
constexpr size_t kMaxPadRows = 7;  // zero rows a piece's packing can add (its last panel's)

// How a piece of `rows` rows is packed: `full` 16-row panels, then one 8-row panel if `tail8`
// (in this order in memory); only the last panel is padded. The rest r = rows % 16 takes an
// 8-row panel when r <= 8, else one more 16-row panel. Chosen by measurement (paper-size GRU,
// one thread, streaming, 2-core EPYC): against also using 4-row panels (rows rounded up to a
// multiple of 4, read 1.2x the stored values at 245x instead of 1.5x) it was as fast at 245x and
// ~7% faster at 10x, where the 4-row variant packs a 90-row piece as 16x5+8+4: two more
// latency-bound passes. The extra bytes did not matter there (the weights fit in L2 at 245x).
struct PanelSplit {
  size_t full;
  bool tail8;
};
constexpr PanelSplit panel_split(size_t rows) {
  const size_t rest = rows % kPanelRows;
  return {rows / kPanelRows + (rest > kTailRows ? 1 : 0), rest > 0 && rest <= kTailRows};
}
// Rows packed for a piece of `rows` rows (padding included).
constexpr size_t packed_rows(size_t rows) {
  const PanelSplit s = panel_split(rows);
  return s.full * kPanelRows + (s.tail8 ? kTailRows : 0);
}

// One piece of `rows` rows and `cols` columns, packed as panel_split(rows) says, times `frames`
// input frames, added into the output: for t < frames and r < rows,
//   y[t*ldy + R(r)] += sum over k < cols, in order, of W[r][k] * x[t*ldx + C(k)]
// where C(k) = col_idx[k] (or k when col_idx is null: contiguous columns, x already offset) and
// R(r) = row_idx[r] (or r when row_idx is null: contiguous rows, y already offset). The sum
// starts from zero, takes one FMA per column and is added to y with one add. Only the piece's
// rows of y are read and written (not the padding's).
//
// The one-frame product (GEMV) takes a *batch*: an array of piece descriptors (one thread's
// pieces of one matrix, BspMatrix), computed as if each piece were added into y in turn, in
// array order (one piece is the batch of one), so pieces sharing output rows (blocks of one row
// strip) give the bits of one call per piece, and the GEMV equals the GEMM with frames = 1
// piece by piece. At high compression a piece is ~7 rows x ~11 columns, so one call per
// matrix instead of one per piece saves most of the calling cost. (Running up to four
// one-panel pieces side by side as independent FMA chains was tried and measured slower on
// Zen 4, avx512 and avx2: out-of-order execution already overlaps consecutive pieces.)
struct GemvPiece {
  const void* w;            // packed panels: float (f32_gemv) or uint16_t (f16_gemv) values
  const uint32_t* col_idx;  // C(k) = x_off + col_idx[k], or x_off + k when null
  const uint32_t* row_idx;  // R(r) = y_off + row_idx[r], or y_off + r when null
  uint32_t rows, cols;
  uint32_t x_off, y_off;
};
using GemvF32Fn = void (*)(const GemvPiece* pieces, size_t count, const float* x, float* y);
using GemvF16Fn = void (*)(const GemvPiece* pieces, size_t count, const float* x, float* y);
using GemmF32Fn = void (*)(const float* w, size_t rows, size_t cols, const uint32_t* col_idx,
                           const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                           float* y, size_t ldy);
using GemmF16Fn = void (*)(const uint16_t* w, size_t rows, size_t cols, const uint32_t* col_idx,
                           const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                           float* y, size_t ldy);
// y[i] = y[i] + x[i] for i < n (a matrix's biases, after its pieces).
using AddFn = void (*)(size_t n, const float* x, float* y);
// y[i] = f(x[i]) for i < n; x and y may alias.
using UnaryFn = void (*)(size_t n, const float* x, float* y);
// GRU update for n hidden units. gi and gh hold the r, z, n pre-activations (biases included)
// at offsets 0, stride, 2*stride: r = s(gi_r + gh_r), z = s(gi_z + gh_z),
// c = tanh(gi_n + r * gh_n), h_out = (1 - z) * c + z * h_prev. h_out may alias h_prev.
using GruGatesFn = void (*)(size_t n, size_t stride, const float* gi, const float* gh,
                            const float* h_prev, float* h_out);
// LSTM update (gate order i, f, g, o at offsets 0, stride, 2*stride, 3*stride):
// c = s(f) * c + s(i) * tanh(g); h = s(o) * tanh(c). c is updated in place.
using LstmGatesFn = void (*)(size_t n, size_t stride, const float* gi, const float* gh,
                             float* c, float* h_out);

struct KernelTable {
  const char* isa;
  GemvF32Fn f32_gemv;
  GemvF16Fn f16_gemv;
  GemmF32Fn f32_gemm;
  GemmF16Fn f16_gemm;
  AddFn add;
  UnaryFn sigmoid;
  UnaryFn tanh;
  GruGatesFn gru_gates;
  LstmGatesFn lstm_gates;
};

// Per-ISA tables (defined in their own files, compiled with their own flags).
const KernelTable& scalar_kernels();
#if defined(RTM_HAVE_AVX512)
const KernelTable& avx512_kernels();
#endif
#if defined(RTM_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif
#if defined(RTM_HAVE_NEON)
const KernelTable& neon_kernels();
#endif

// Whether the running CPU (and OS) can execute the named ISA's instructions.
bool cpu_supports(std::string_view isa);

// Tables usable here, best first; the last one is always scalar.
size_t available_kernel_tables(const KernelTable** out, size_t capacity);

// "auto" picks the best; otherwise the named ISA, or throws Error(kUnsupported).
const KernelTable& select_kernels(std::string_view isa);

}  // namespace rtmobile
