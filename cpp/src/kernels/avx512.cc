// x86-64 AVX-512 kernels. This file alone is compiled with -mavx512f -mfma -mf16c (AVX-512F is
// all it uses: no VL/BW/DQ instructions, so it also runs on the first AVX-512 CPUs);
// dispatch.cc only calls into it after checking the CPU and that the OS saves the ZMM state.
//
// A panel's column is exactly one zmm: 16 f32 (64 bytes, one cache line) or 16 f16 (32 bytes,
// widened with vcvtph2ps). Every output element is accumulated from zero in column order with
// one FMA per column, as in scalar.cc, so GEMV and GEMM results are bit-identical to scalar.
// GCC 12's AVX-512 header fills the unused pass-through operand of many intrinsics with a
// self-initialised _mm512_undefined_*() value, which -W(maybe-)uninitialized reports once inlined
// (GCC bug 105593, fixed in GCC 13). The warning is silenced for the header's lines only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

// NT frames x one 16-row panel per pass: NT independent accumulator chains, one zmm each.
template <int NT, typename W>
inline void gemm_panel(const W* wp, size_t cols, const float* x, size_t ldx, float* acc,
                       size_t ld_acc) {
  __m512 sum[NT];
  for (int t = 0; t < NT; ++t) sum[t] = _mm512_setzero_ps();
  for (size_t k = 0; k < cols; ++k) {
    const __m512 w = load16(wp + k * kPanelRows);
    for (int t = 0; t < NT; ++t)
      sum[t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * ldx + k]), sum[t]);
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(acc + t * ld_acc, sum[t]);
}

template <int NT, typename W>
inline void gemm_frames(const W* w, size_t panels, size_t cols, const float* x, size_t ldx,
                        float* acc, size_t ld_acc) {
  for (size_t p = 0; p < panels; ++p)
    gemm_panel<NT>(w + p * cols * kPanelRows, cols, x, ldx, acc + p * kPanelRows, ld_acc);
}

template <typename W>
void gemm(const W* w, size_t panels, size_t cols, const float* x, size_t ldx, size_t frames,
          float* acc, size_t ld_acc) {
  size_t t = 0;
  for (; t + 8 <= frames; t += 8)
    gemm_frames<8>(w, panels, cols, x + t * ldx, ldx, acc + t * ld_acc, ld_acc);
  if (t + 4 <= frames) {
    gemm_frames<4>(w, panels, cols, x + t * ldx, ldx, acc + t * ld_acc, ld_acc);
    t += 4;
  }
  if (t + 2 <= frames) {
    gemm_frames<2>(w, panels, cols, x + t * ldx, ldx, acc + t * ld_acc, ld_acc);
    t += 2;
  }
  if (t < frames) gemm_frames<1>(w, panels, cols, x + t * ldx, ldx, acc + t * ld_acc, ld_acc);
}

// Columns per 64-byte cache line of one panel: 1 for f32, 2 for f16.
template <typename W>
constexpr size_t kColsPerLine = 64 / (kPanelRows * sizeof(W));

// Elements ahead of the current column that the prefetches ask for, per panel stream.
constexpr size_t kAheadLines = 6;
template <typename W>
constexpr size_t kAhead = kAheadLines * kColsPerLine<W> * kPanelRows;

// One FMA chain per panel (NP in flight); the k loop steps one cache line of each panel at a
// time and prefetches that panel's line kAheadLines ahead: exactly one prefetch per line.
template <int NP, typename W>
inline void gemv_panels(const W* w, size_t step, size_t cols, const float* x, float* acc) {
  constexpr size_t kLine = kColsPerLine<W>;
  __m512 sum[NP];
  for (int q = 0; q < NP; ++q) sum[q] = _mm512_setzero_ps();
  size_t k = 0;
  for (; k + kLine <= cols; k += kLine) {
    for (int q = 0; q < NP; ++q) prefetch(w + q * step + k * kPanelRows + kAhead<W>);
    for (size_t j = 0; j < kLine; ++j) {
      const __m512 xb = _mm512_set1_ps(x[k + j]);
      for (int q = 0; q < NP; ++q)
        sum[q] = _mm512_fmadd_ps(load16(w + q * step + (k + j) * kPanelRows), xb, sum[q]);
    }
  }
  // f16 with odd cols: the last half line (its line was prefetched kAheadLines ago).
  for (; k < cols; ++k) {
    const __m512 xb = _mm512_set1_ps(x[k]);
    for (int q = 0; q < NP; ++q)
      sum[q] = _mm512_fmadd_ps(load16(w + q * step + k * kPanelRows), xb, sum[q]);
  }
  for (int q = 0; q < NP; ++q) _mm512_storeu_ps(acc + q * kPanelRows, sum[q]);
}

// Four panels per pass (four FMA chains and four prefetch streams), then two, then one; the
// per-element order is the same as gemm's.
template <typename W>
void gemv(const W* w, size_t panels, size_t cols, const float* x, float* acc) {
  const size_t step = cols * kPanelRows;
  size_t p = 0;
  for (; p + 4 <= panels; p += 4)
    gemv_panels<4>(w + p * step, step, cols, x, acc + p * kPanelRows);
  if (p + 2 <= panels) {
    gemv_panels<2>(w + p * step, step, cols, x, acc + p * kPanelRows);
    p += 2;
  }
  if (p < panels) gemv_panels<1>(w + p * step, step, cols, x, acc + p * kPanelRows);
}

void f32_gemv__avx512(const float* w, size_t panels, size_t cols, const float* x, float* acc) {
  gemv(w, panels, cols, x, acc);
}
void f32_gemm__avx512(const float* w, size_t panels, size_t cols, const float* x, size_t ldx,
                      size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
}
void f16_gemm__avx512(const uint16_t* w, size_t panels, size_t cols, const float* x,
                      size_t ldx, size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
}

// The steps of activation_math.h, sixteen lanes at a time (as exp8 in avx2.cc).
inline __m512 exp16(__m512 x) {
  namespace a = activation;
  // max(lo, x) / min(hi, x) return x when x is NaN (second operand), keeping NaN.
  x = _mm512_min_ps(_mm512_set1_ps(a::kExpClamp),
                    _mm512_max_ps(_mm512_set1_ps(-a::kExpClamp), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(a::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-a::kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-a::kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(a::kP0), r, _mm512_set1_ps(a::kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(a::kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(a::kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(a::kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(a::kP5));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));  // NaN p keeps the lane NaN
}

inline __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return _mm512_div_ps(one, _mm512_add_ps(one, e));
}

inline __m512 tanh16(__m512 x) {
  const __m512i sign = _mm512_castps_si512(_mm512_set1_ps(-0.0f));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(x)));
  const __m512 e = exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), ax));
  const __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  return _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_castps_si512(t), _mm512_and_si512(_mm512_castps_si512(x), sign)));
}

// The last n % 16 elements go through the same vector code with masked loads and stores
// (masked-off lanes are neither read nor written, so nothing past n is touched).
inline __mmask16 tail_mask(size_t left) {
  return static_cast<__mmask16>((1u << left) - 1u);
}

// Calls body(i, mask) for i = 0, 16, ... < n with mask all ones except on the last, short step.
template <typename Body>
inline void for_each_16(size_t n, Body body) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) body(i, static_cast<__mmask16>(0xffff));
  if (i < n) body(i, tail_mask(n - i));
}

inline __m512 load(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
inline void store(__mmask16 m, float* p, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }

void f32_sigmoid__avx512(size_t n, const float* x, float* y) {
  for_each_16(n, [&](size_t i, __mmask16 m) { store(m, y + i, sigmoid16(load(m, x + i))); });
}

void f32_tanh__avx512(size_t n, const float* x, float* y) {
  for_each_16(n, [&](size_t i, __mmask16 m) { store(m, y + i, tanh16(load(m, x + i))); });
}

void f32_gru_gates__avx512(size_t n, size_t stride, const float* gi, const float* gh,
                           const float* h_prev, float* h_out) {
  for_each_16(n, [&](size_t i, __mmask16 m) {
    const __m512 r = sigmoid16(_mm512_add_ps(load(m, gi + i), load(m, gh + i)));
    const __m512 z =
        sigmoid16(_mm512_add_ps(load(m, gi + stride + i), load(m, gh + stride + i)));
    const __m512 c = tanh16(
        _mm512_fmadd_ps(r, load(m, gh + 2 * stride + i), load(m, gi + 2 * stride + i)));
    const __m512 h = load(m, h_prev + i);
    store(m, h_out + i, _mm512_fmadd_ps(z, _mm512_sub_ps(h, c), c));
  });
}

void f32_lstm_gates__avx512(size_t n, size_t stride, const float* gi, const float* gh,
                            float* c, float* h_out) {
  for_each_16(n, [&](size_t i, __mmask16 m) {
    auto pre = [&](size_t gate) {
      return _mm512_add_ps(load(m, gi + gate * stride + i), load(m, gh + gate * stride + i));
    };
    const __m512 ig = sigmoid16(pre(0));
    const __m512 fg = sigmoid16(pre(1));
    const __m512 gg = tanh16(pre(2));
    const __m512 og = sigmoid16(pre(3));
    const __m512 cn = _mm512_fmadd_ps(fg, load(m, c + i), _mm512_mul_ps(ig, gg));
    store(m, c + i, cn);
    store(m, h_out + i, _mm512_mul_ps(og, tanh16(cn)));
  });
}

}  // namespace

const KernelTable& avx512_kernels() {
  // The one-frame f16 GEMV stays on the AVX2 kernel (same bits): on the AMD EPYC (Zen 4) we
  // measured, widening f16 to a zmm made it ~35% slower (10.2-10.7 vs 7.5-7.9 us for a
  // 2880 x 960 matrix at 10x), while the f32 GEMV tied and both GEMMs gained.
  static const KernelTable table = {
      "avx512",          f32_gemv__avx512,    avx2_kernels().f16_gemv, f32_gemm__avx512,
      f16_gemm__avx512,  f32_sigmoid__avx512, f32_tanh__avx512,      f32_gru_gates__avx512,
      f32_lstm_gates__avx512,
  };
  return table;
}

}  // namespace rtmobile
