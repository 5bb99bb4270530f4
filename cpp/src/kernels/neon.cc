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

// The four float32x4 of one panel column (16 rows).
template <typename W>
RTM_INLINE void load_column(const W* p, float32x4_t w[4]) {
  w[0] = load4(p);
  w[1] = load4(p + 4);
  w[2] = load4(p + 8);
  w[3] = load4(p + 12);
}

// Column k + L of NP panels against lane L of each frame's xv (x[t][k..k+3]).
template <int NP, int NT, int L, typename W>
RTM_INLINE void step_lane(const W* w, size_t panel_stride, size_t k, const float32x4_t xv[NT],
                          float32x4_t acc[NT][NP][4]) {
  RTM_UNROLL for (int p = 0; p < NP; ++p) {
    float32x4_t wc[4];
    load_column(w + p * panel_stride + (k + L) * kPanelRows, wc);
    RTM_UNROLL for (int t = 0; t < NT; ++t)
      RTM_UNROLL for (int v = 0; v < 4; ++v)
        acc[t][p][v] = vfmaq_laneq_f32(acc[t][p][v], wc[v], xv[t], L);
  }
}

// NP consecutive panels x NT frames: 4*NP*NT independent accumulator chains. Four columns per
// iteration (one vector load of x per frame, FMLA by element), then single columns; either way
// each output sees exactly one fused multiply-add per column, in column order.
template <int NP, int NT, typename W>
inline void panel_block(const W* w, size_t cols, const float* x, size_t ldx, float* acc,
                        size_t ld_acc) {
  const size_t panel_stride = cols * kPanelRows;
  float32x4_t a[NT][NP][4];
  RTM_UNROLL for (int t = 0; t < NT; ++t)
    RTM_UNROLL for (int p = 0; p < NP; ++p)
      RTM_UNROLL for (int v = 0; v < 4; ++v) a[t][p][v] = vdupq_n_f32(0.0f);
  size_t k = 0;
  for (; k + 4 <= cols; k += 4) {
    float32x4_t xv[NT];
    RTM_UNROLL for (int t = 0; t < NT; ++t) xv[t] = vld1q_f32(x + t * ldx + k);
    step_lane<NP, NT, 0>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, 1>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, 2>(w, panel_stride, k, xv, a);
    step_lane<NP, NT, 3>(w, panel_stride, k, xv, a);
  }
  for (; k < cols; ++k) {
    RTM_UNROLL for (int p = 0; p < NP; ++p) {
      float32x4_t wc[4];
      load_column(w + p * panel_stride + k * kPanelRows, wc);
      RTM_UNROLL for (int t = 0; t < NT; ++t) {
        const float32x4_t xb = vld1q_dup_f32(x + t * ldx + k);
        RTM_UNROLL for (int v = 0; v < 4; ++v) a[t][p][v] = vfmaq_f32(a[t][p][v], wc[v], xb);
      }
    }
  }
  RTM_UNROLL for (int t = 0; t < NT; ++t)
    RTM_UNROLL for (int p = 0; p < NP; ++p)
      RTM_UNROLL for (int v = 0; v < 4; ++v)
        vst1q_f32(acc + t * ld_acc + p * kPanelRows + v * 4, a[t][p][v]);
}

// One panel times 4 / 2 / 1 frames per pass (16 / 8 / 4 accumulator chains).
template <typename W>
void gemm(const W* w, size_t panels, size_t cols, const float* x, size_t ldx, size_t frames,
          float* acc, size_t ld_acc) {
  size_t t = 0;
  for (; t + 4 <= frames; t += 4)
    for (size_t p = 0; p < panels; ++p)
      panel_block<1, 4>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                        acc + t * ld_acc + p * kPanelRows, ld_acc);
  for (; t + 2 <= frames; t += 2)
    for (size_t p = 0; p < panels; ++p)
      panel_block<1, 2>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                        acc + t * ld_acc + p * kPanelRows, ld_acc);
  for (; t < frames; ++t)
    for (size_t p = 0; p < panels; ++p)
      panel_block<1, 1>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                        acc + t * ld_acc + p * kPanelRows, ld_acc);
}

// Two panels per pass (eight FMA chains, enough to cover FMLA latency x throughput on
// two-pipe cores; four panels made GCC spill accumulators); same per-element order as gemm.
template <typename W>
void gemv(const W* w, size_t panels, size_t cols, const float* x, float* acc) {
  size_t p = 0;
  for (; p + 2 <= panels; p += 2)
    panel_block<2, 1>(w + p * cols * kPanelRows, cols, x, 0, acc + p * kPanelRows, 0);
  if (p < panels)
    panel_block<1, 1>(w + p * cols * kPanelRows, cols, x, 0, acc + p * kPanelRows, 0);
}

void f32_gemv__neon(const float* w, size_t panels, size_t cols, const float* x, float* acc) {
  gemv(w, panels, cols, x, acc);
}
void f16_gemv__neon(const uint16_t* w, size_t panels, size_t cols, const float* x,
                    float* acc) {
  gemv(w, panels, cols, x, acc);
}
void f32_gemm__neon(const float* w, size_t panels, size_t cols, const float* x, size_t ldx,
                    size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
}
void f16_gemm__neon(const uint16_t* w, size_t panels, size_t cols, const float* x, size_t ldx,
                    size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
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
      "neon",          f32_gemv__neon,    f16_gemv__neon,      f32_gemm__neon,
      f16_gemm__neon,  f32_sigmoid__neon, f32_tanh__neon,      f32_gru_gates__neon,
      f32_lstm_gates__neon,
  };
  return table;
}

}  // namespace rtmobile
