// AArch64 Advanced SIMD (NEON) kernels. NEON is part of the AArch64 base ISA, so this file needs
// no extra compile flags and dispatch.cc offers it on every aarch64 CPU.
//
// Same per-element arithmetic as scalar.cc / avx2.cc: every output is accumulated from zero
// over the columns in order with one fused multiply-add per column (FMLA, by vector or by
// element: both round once), so GEMV == GEMM bit for bit and streaming == offline. The
// activations evaluate activation_math.h step by step with the same constants.
//
// f16 weights are widened with FCVTL (vcvt_f32_f16, base armv8-a) and the arithmetic stays f32;
// an fp16-arithmetic variant would not match the scalar table to the tested 1e-6.
#include <arm_neon.h>

#include <algorithm>

#include "kernels/activation_math.h"
#include "kernels/kernels.h"

// Force early inlining and full unrolling of the small fixed-count loops below, so the compiler
// keeps the accumulator arrays in registers instead of mirroring them on the stack.
#define RTM_INLINE inline __attribute__((always_inline))
#define RTM_UNROLL _Pragma("GCC unroll 16")

namespace rtmobile {
namespace {

inline float32x4_t load4(const float* p) { return vld1q_f32(p); }
inline float32x4_t load4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// The V float32x4 of one panel column (W = 4 * V rows: 16 or 8).
template <int V, typename T>
RTM_INLINE void load_column(const T* p, float32x4_t w[V]) {
  RTM_UNROLL for (int v = 0; v < V; ++v) w[v] = load4(p + 4 * v);
}

// Inputs k .. k+3 of a piece in one vector: x[col_idx[k..k+3]], or x[k..k+3] in place.
template <bool kIdx>
RTM_INLINE float32x4_t load_x4(const float* x, const uint32_t* col_idx, size_t k) {
  if (!kIdx) return vld1q_f32(x + k);
  float32x4_t v = vld1q_dup_f32(x + col_idx[k]);
  v = vld1q_lane_f32(x + col_idx[k + 1], v, 1);
  v = vld1q_lane_f32(x + col_idx[k + 2], v, 2);
  return vld1q_lane_f32(x + col_idx[k + 3], v, 3);
}

// Adds a panel's sums into the piece's rows r0 .. r0 + valid - 1 of y: vector adds when the
// rows are contiguous and all real, else one scalar add per row.
template <int V>
RTM_INLINE void add_panel(const float32x4_t (&sum)[V], size_t valid, const uint32_t* row_idx,
                          size_t r0, float* y) {
  if (row_idx == nullptr && valid == 4 * V) {
    RTM_UNROLL for (int v = 0; v < V; ++v)
      vst1q_f32(y + r0 + 4 * v, vaddq_f32(vld1q_f32(y + r0 + 4 * v), sum[v]));
    return;
  }
  float s[4 * V];
  RTM_UNROLL for (int v = 0; v < V; ++v) vst1q_f32(s + 4 * v, sum[v]);
  if (row_idx == nullptr) {
    float* d = y + r0;
    for (size_t r = 0; r < valid; ++r) d[r] = d[r] + s[r];
  } else {
    const uint32_t* idx = row_idx + r0;
    for (size_t r = 0; r < valid; ++r) y[idx[r]] = y[idx[r]] + s[r];
  }
}

// Column k + L of NP panels against lane L of each frame's xv (inputs k..k+3).
template <int NP, int NT, int V, int L, typename T>
RTM_INLINE void step_lane(const T* w, size_t panel_stride, size_t k, const float32x4_t xv[NT],
                          float32x4_t acc[NT][NP][V]) {
  RTM_UNROLL for (int p = 0; p < NP; ++p) {
    float32x4_t wc[V];
    load_column<V>(w + p * panel_stride + (k + L) * (4 * V), wc);
    RTM_UNROLL for (int t = 0; t < NT; ++t)
      RTM_UNROLL for (int v = 0; v < V; ++v)
        acc[t][p][v] = vfmaq_laneq_f32(acc[t][p][v], wc[v], xv[t], L);
  }
}

// NP consecutive panels of W = 4 * V rows x NT frames: V*NP*NT independent accumulator chains.
// Four columns per iteration (one vector of inputs per frame, FMLA by element), then single
// columns; either way each output sees exactly one fused multiply-add per column, in column
// order, and its sum is added into y with one add.
template <int NP, int NT, int V, bool kIdx, typename T>
inline void panel_block(const T* w, size_t cols, const uint32_t* col_idx, const float* x,
                        size_t ldx, size_t rows_left, const uint32_t* row_idx, size_t r0,
                        float* y, size_t ldy) {
  constexpr size_t kW = 4 * V;
  const size_t panel_stride = cols * kW;
  float32x4_t a[NT][NP][V];
  RTM_UNROLL for (int t = 0; t < NT; ++t)
    RTM_UNROLL for (int p = 0; p < NP; ++p)
      RTM_UNROLL for (int v = 0; v < V; ++v) a[t][p][v] = vdupq_n_f32(0.0f);
  size_t k = 0;
  for (; k + 4 <= cols; k += 4) {
    float32x4_t xv[NT];
    RTM_UNROLL for (int t = 0; t < NT; ++t) xv[t] = load_x4<kIdx>(x + t * ldx, col_idx, k);
    step_lane<NP, NT, V, 0>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, V, 1>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, V, 2>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, V, 3>(w, panel_stride, k, xv, a);
  }
  for (; k < cols; ++k) {
    const size_t c = kIdx ? col_idx[k] : k;
    RTM_UNROLL for (int p = 0; p < NP; ++p) {
      float32x4_t wc[V];
      load_column<V>(w + p * panel_stride + k * kW, wc);
      RTM_UNROLL for (int t = 0; t < NT; ++t) {
        const float32x4_t xb = vld1q_dup_f32(x + t * ldx + c);
        RTM_UNROLL for (int v = 0; v < V; ++v) a[t][p][v] = vfmaq_f32(a[t][p][v], wc[v], xb);
      }
    }
  }
  RTM_UNROLL for (int t = 0; t < NT; ++t)
    RTM_UNROLL for (int p = 0; p < NP; ++p) {
      const size_t q0 = static_cast<size_t>(p) * kW;
      add_panel<V>(a[t][p], std::min(kW, rows_left - q0), row_idx, r0 + q0, y + t * ldy);
    }
}

// One panel of W = 4 * V rows times all frames, 4 / 2 / 1 frames per pass.
template <int V, bool kIdx, typename T>
inline void panel_frames(const T* w, size_t cols, const uint32_t* col_idx, const float* x,
                         size_t ldx, size_t frames, size_t rows_left, const uint32_t* row_idx,
                         size_t r0, float* y, size_t ldy) {
  size_t t = 0;
  for (; t + 4 <= frames; t += 4)
    panel_block<1, 4, V, kIdx>(w, cols, col_idx, x + t * ldx, ldx, rows_left, row_idx, r0,
                               y + t * ldy, ldy);
  for (; t + 2 <= frames; t += 2)
    panel_block<1, 2, V, kIdx>(w, cols, col_idx, x + t * ldx, ldx, rows_left, row_idx, r0,
                               y + t * ldy, ldy);
  for (; t < frames; ++t)
    panel_block<1, 1, V, kIdx>(w, cols, col_idx, x + t * ldx, ldx, rows_left, row_idx, r0,
                               y + t * ldy, ldy);
}

template <bool kIdx, typename T>
void gemm_piece(const T* w, size_t rows, size_t cols, const uint32_t* col_idx, const float* x,
                size_t ldx, size_t frames, const uint32_t* row_idx, float* y, size_t ldy) {
  const PanelSplit s = panel_split(rows);
  size_t r0 = 0;
  for (size_t p = 0; p < s.full; ++p, r0 += kPanelRows, w += kPanelRows * cols)
    panel_frames<4, kIdx>(w, cols, col_idx, x, ldx, frames, rows - r0, row_idx, r0, y, ldy);
  if (s.tail8)
    panel_frames<2, kIdx>(w, cols, col_idx, x, ldx, frames, rows - r0, row_idx, r0, y, ldy);
}

// Two 16-row panels per pass (eight FMA chains, enough to cover FMLA latency x throughput on
// two-pipe cores; four panels made GCC spill accumulators), then one, then the 8-row panel;
// same per-element order as the GEMM.
template <bool kIdx, typename T>
void gemv_piece(const T* w, size_t rows, size_t cols, const uint32_t* col_idx, const float* x,
                const uint32_t* row_idx, float* y) {
  const PanelSplit s = panel_split(rows);
  size_t p = 0, r0 = 0;
  for (; p + 2 <= s.full; p += 2, r0 += 2 * kPanelRows, w += 2 * kPanelRows * cols)
    panel_block<2, 1, 4, kIdx>(w, cols, col_idx, x, 0, rows - r0, row_idx, r0, y, 0);
  if (p < s.full) {
    panel_block<1, 1, 4, kIdx>(w, cols, col_idx, x, 0, rows - r0, row_idx, r0, y, 0);
    r0 += kPanelRows;
    w += kPanelRows * cols;
  }
  if (s.tail8) panel_block<1, 1, 2, kIdx>(w, cols, col_idx, x, 0, rows - r0, row_idx, r0, y, 0);
}

// A GEMV batch (kernels.h): its pieces one after the other, in one call.
template <typename T>
void gemv_batch(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  for (const GemvPiece* p = pieces; p != pieces + count; ++p) {
    const T* w = static_cast<const T*>(p->w);
    if (p->col_idx != nullptr)
      gemv_piece<true>(w, p->rows, p->cols, p->col_idx, x + p->x_off, p->row_idx, y + p->y_off);
    else
      gemv_piece<false>(w, p->rows, p->cols, nullptr, x + p->x_off, p->row_idx, y + p->y_off);
  }
}

void f32_gemv__neon(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<float>(pieces, count, x, y);
}
void f16_gemv__neon(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<uint16_t>(pieces, count, x, y);
}
void f32_gemm__neon(const float* w, size_t rows, size_t cols, const uint32_t* col_idx,
                    const float* x, size_t ldx, size_t frames, const uint32_t* row_idx, float* y,
                    size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}
void f16_gemm__neon(const uint16_t* w, size_t rows, size_t cols, const uint32_t* col_idx,
                    const float* x, size_t ldx, size_t frames, const uint32_t* row_idx, float* y,
                    size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}

void f32_add__neon(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] = y[i] + x[i];
}

// The steps of activation_math.h, four lanes at a time. vfmaq_f32(a, b, c) = a + b*c.
inline float32x4_t exp4(float32x4_t x) {
  namespace a = activation;
  // AArch64 FMAX/FMIN (vmaxq/vminq) return NaN when either operand is NaN (unlike x86, which
  // returns the second operand), so a NaN lane stays NaN through the clamp, as in the scalar
  // form; +-inf clamp to +-87. (FMAXNM/FMINNM would turn NaN into the bound: not used.)
  x = vminq_f32(vdupq_n_f32(a::kExpClamp), vmaxq_f32(vdupq_n_f32(-a::kExpClamp), x));
  // FRINTN: round to nearest, ties to even, like nearbyint in the default rounding mode.
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(a::kLog2e)));
  float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(-a::kLn2Hi));
  r = vfmaq_f32(r, n, vdupq_n_f32(-a::kLn2Lo));
  float32x4_t p = vfmaq_f32(vdupq_n_f32(a::kP1), vdupq_n_f32(a::kP0), r);
  p = vfmaq_f32(vdupq_n_f32(a::kP2), p, r);
  p = vfmaq_f32(vdupq_n_f32(a::kP3), p, r);
  p = vfmaq_f32(vdupq_n_f32(a::kP4), p, r);
  p = vfmaq_f32(vdupq_n_f32(a::kP5), p, r);
  p = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
  // n is an integer in [-126, 126], so the truncating convert is exact. A NaN lane converts to
  // 0 (scale 1.0) but p is already NaN there, so the product stays NaN.
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

inline float32x4_t sigmoid4(float32x4_t x) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  return vdivq_f32(one, vaddq_f32(one, exp4(vnegq_f32(x))));
}

inline float32x4_t tanh4(float32x4_t x) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t e = exp4(vmulq_f32(vdupq_n_f32(-2.0f), vabsq_f32(x)));
  const float32x4_t t = vdivq_f32(vsubq_f32(one, e), vaddq_f32(one, e));
  // copysign(t, x): the sign bit from x, every other bit from t.
  return vbslq_f32(vdupq_n_u32(0x80000000u), x, t);
}

void f32_sigmoid__neon(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, sigmoid4(vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] = activation::sigmoid(x[i]);
}

void f32_tanh__neon(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, tanh4(vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] = activation::tanh(x[i]);
}

void f32_gru_gates__neon(size_t n, size_t stride, const float* gi, const float* gh,
                         const float* h_prev, float* h_out) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t r = sigmoid4(vaddq_f32(vld1q_f32(gi + i), vld1q_f32(gh + i)));
    const float32x4_t z =
        sigmoid4(vaddq_f32(vld1q_f32(gi + stride + i), vld1q_f32(gh + stride + i)));
    const float32x4_t c =
        tanh4(vfmaq_f32(vld1q_f32(gi + 2 * stride + i), r, vld1q_f32(gh + 2 * stride + i)));
    const float32x4_t h = vld1q_f32(h_prev + i);
    vst1q_f32(h_out + i, vfmaq_f32(c, z, vsubq_f32(h, c)));
  }
  for (; i < n; ++i) {
    const float r = activation::sigmoid(gi[i] + gh[i]);
    const float z = activation::sigmoid(gi[stride + i] + gh[stride + i]);
    const float c = activation::tanh(std::fma(r, gh[2 * stride + i], gi[2 * stride + i]));
    h_out[i] = std::fma(z, h_prev[i] - c, c);
  }
}

void f32_lstm_gates__neon(size_t n, size_t stride, const float* gi, const float* gh, float* c,
                          float* h_out) {
  size_t i = 0;
  auto pre = [&](size_t gate, size_t j) {
    return vaddq_f32(vld1q_f32(gi + gate * stride + j), vld1q_f32(gh + gate * stride + j));
  };
  for (; i + 4 <= n; i += 4) {
    const float32x4_t ig = sigmoid4(pre(0, i));
    const float32x4_t fg = sigmoid4(pre(1, i));
    const float32x4_t gg = tanh4(pre(2, i));
    const float32x4_t og = sigmoid4(pre(3, i));
    const float32x4_t cn = vfmaq_f32(vmulq_f32(ig, gg), fg, vld1q_f32(c + i));
    vst1q_f32(c + i, cn);
    vst1q_f32(h_out + i, vmulq_f32(og, tanh4(cn)));
  }
  for (; i < n; ++i) {
    const float ig = activation::sigmoid(gi[i] + gh[i]);
    const float fg = activation::sigmoid(gi[stride + i] + gh[stride + i]);
    const float gg = activation::tanh(gi[2 * stride + i] + gh[2 * stride + i]);
    const float og = activation::sigmoid(gi[3 * stride + i] + gh[3 * stride + i]);
    c[i] = std::fma(fg, c[i], ig * gg);
    h_out[i] = og * activation::tanh(c[i]);
  }
}

}  // namespace

const KernelTable& neon_kernels() {
  static const KernelTable table = {
      "neon",         f32_gemv__neon,      f16_gemv__neon,     f32_gemm__neon,
      f16_gemm__neon, f32_add__neon,       f32_sigmoid__neon,  f32_tanh__neon,
      f32_gru_gates__neon, f32_lstm_gates__neon,
  };
  return table;
}

}  // namespace rtmobile
