// x86-64 AVX2 + FMA + F16C kernels. This file alone is compiled with -mavx2 -mfma -mf16c;
// dispatch.cc only calls into it after checking the CPU.
#include <immintrin.h>

#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// NT frames x one 16-row panel per pass: 2*NT independent accumulator chains.
template <int NT, typename W>
inline void gemm_panel(const W* wp, size_t cols, const float* x, size_t ldx, float* acc,
                       size_t ld_acc) {
  __m256 lo[NT], hi[NT];
  for (int t = 0; t < NT; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  for (size_t k = 0; k < cols; ++k) {
    const __m256 w0 = load8(wp + k * kPanelRows);
    const __m256 w1 = load8(wp + k * kPanelRows + 8);
    for (int t = 0; t < NT; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x + t * ldx + k);
      lo[t] = _mm256_fmadd_ps(w0, xb, lo[t]);
      hi[t] = _mm256_fmadd_ps(w1, xb, hi[t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    _mm256_storeu_ps(acc + t * ld_acc, lo[t]);
    _mm256_storeu_ps(acc + t * ld_acc + 8, hi[t]);
  }
}

template <typename W>
void gemm(const W* w, size_t panels, size_t cols, const float* x, size_t ldx, size_t frames,
          float* acc, size_t ld_acc) {
  size_t t = 0;
  for (; t + 4 <= frames; t += 4)
    for (size_t p = 0; p < panels; ++p)
      gemm_panel<4>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                    acc + t * ld_acc + p * kPanelRows, ld_acc);
  for (; t + 2 <= frames; t += 2)
    for (size_t p = 0; p < panels; ++p)
      gemm_panel<2>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                    acc + t * ld_acc + p * kPanelRows, ld_acc);
  for (; t < frames; ++t)
    for (size_t p = 0; p < panels; ++p)
      gemm_panel<1>(w + p * cols * kPanelRows, cols, x + t * ldx, ldx,
                    acc + t * ld_acc + p * kPanelRows, ld_acc);
}

// Four panels per pass keep eight FMA chains in flight (FMA latency x throughput), with the
// next cache lines of each panel prefetched; per-element order is the same as gemm's.
template <typename W>
void gemv(const W* w, size_t panels, size_t cols, const float* x, float* acc) {
  constexpr size_t kAhead = 8 * kPanelRows;  // elements: a few cache lines ahead per stream
  const size_t step = cols * kPanelRows;
  size_t p = 0;
  for (; p + 4 <= panels; p += 4) {
    const W* a = w + p * step;
    __m256 acc0[4], acc1[4];
    for (int q = 0; q < 4; ++q) acc0[q] = acc1[q] = _mm256_setzero_ps();
    for (size_t k = 0; k < cols; ++k) {
      const __m256 xb = _mm256_broadcast_ss(x + k);
      for (int q = 0; q < 4; ++q) {
        const W* wq = a + q * step + k * kPanelRows;
        _mm_prefetch(reinterpret_cast<const char*>(wq + kAhead), _MM_HINT_T0);
        acc0[q] = _mm256_fmadd_ps(load8(wq), xb, acc0[q]);
        acc1[q] = _mm256_fmadd_ps(load8(wq + 8), xb, acc1[q]);
      }
    }
    for (int q = 0; q < 4; ++q) {
      _mm256_storeu_ps(acc + (p + q) * kPanelRows, acc0[q]);
      _mm256_storeu_ps(acc + (p + q) * kPanelRows + 8, acc1[q]);
    }
  }
  for (; p + 2 <= panels; p += 2) {
    const W* a = w + p * step;
    const W* b = a + step;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    for (size_t k = 0; k < cols; ++k) {
      const __m256 xb = _mm256_broadcast_ss(x + k);
      a0 = _mm256_fmadd_ps(load8(a + k * kPanelRows), xb, a0);
      a1 = _mm256_fmadd_ps(load8(a + k * kPanelRows + 8), xb, a1);
      b0 = _mm256_fmadd_ps(load8(b + k * kPanelRows), xb, b0);
      b1 = _mm256_fmadd_ps(load8(b + k * kPanelRows + 8), xb, b1);
    }
    float* out = acc + p * kPanelRows;
    _mm256_storeu_ps(out, a0);
    _mm256_storeu_ps(out + 8, a1);
    _mm256_storeu_ps(out + 16, b0);
    _mm256_storeu_ps(out + 24, b1);
  }
  if (p < panels) gemm_panel<1>(w + p * step, cols, x, 0, acc + p * kPanelRows, 0);
}

void f32_gemv__avx2(const float* w, size_t panels, size_t cols, const float* x, float* acc) {
  gemv(w, panels, cols, x, acc);
}
void f16_gemv__avx2(const uint16_t* w, size_t panels, size_t cols, const float* x,
                    float* acc) {
  gemv(w, panels, cols, x, acc);
}
void f32_gemm__avx2(const float* w, size_t panels, size_t cols, const float* x, size_t ldx,
                    size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
}
void f16_gemm__avx2(const uint16_t* w, size_t panels, size_t cols, const float* x, size_t ldx,
                    size_t frames, float* acc, size_t ld_acc) {
  gemm(w, panels, cols, x, ldx, frames, acc, ld_acc);
}

// The steps of activation_math.h, eight lanes at a time.
inline __m256 exp8(__m256 x) {
  namespace a = activation;
  // max(lo, x) / min(hi, x) return x when x is NaN (second operand), keeping NaN.
  x = _mm256_min_ps(_mm256_set1_ps(a::kExpClamp),
                    _mm256_max_ps(_mm256_set1_ps(-a::kExpClamp), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(a::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-a::kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-a::kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(a::kP0), r, _mm256_set1_ps(a::kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(a::kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(a::kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(a::kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(a::kP5));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));  // NaN p keeps the lane NaN
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), ax));
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  return _mm256_or_ps(t, _mm256_and_ps(x, sign));
}

void f32_sigmoid__avx2(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = activation::sigmoid(x[i]);
}

void f32_tanh__avx2(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, tanh8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = activation::tanh(x[i]);
}

void f32_gru_gates__avx2(size_t n, size_t stride, const float* gi, const float* gh,
                         const float* h_prev, float* h_out) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r =
        sigmoid8(_mm256_add_ps(_mm256_loadu_ps(gi + i), _mm256_loadu_ps(gh + i)));
    const __m256 z = sigmoid8(
        _mm256_add_ps(_mm256_loadu_ps(gi + stride + i), _mm256_loadu_ps(gh + stride + i)));
    const __m256 c = tanh8(_mm256_fmadd_ps(r, _mm256_loadu_ps(gh + 2 * stride + i),
                                           _mm256_loadu_ps(gi + 2 * stride + i)));
    const __m256 h = _mm256_loadu_ps(h_prev + i);
    _mm256_storeu_ps(h_out + i, _mm256_fmadd_ps(z, _mm256_sub_ps(h, c), c));
  }
  for (; i < n; ++i) {
    const float r = activation::sigmoid(gi[i] + gh[i]);
    const float z = activation::sigmoid(gi[stride + i] + gh[stride + i]);
    const float c = activation::tanh(std::fma(r, gh[2 * stride + i], gi[2 * stride + i]));
    h_out[i] = std::fma(z, h_prev[i] - c, c);
  }
}

void f32_lstm_gates__avx2(size_t n, size_t stride, const float* gi, const float* gh, float* c,
                          float* h_out) {
  size_t i = 0;
  auto pre = [&](size_t gate, size_t j) {
    return _mm256_add_ps(_mm256_loadu_ps(gi + gate * stride + j),
                         _mm256_loadu_ps(gh + gate * stride + j));
  };
  for (; i + 8 <= n; i += 8) {
    const __m256 ig = sigmoid8(pre(0, i));
    const __m256 fg = sigmoid8(pre(1, i));
    const __m256 gg = tanh8(pre(2, i));
    const __m256 og = sigmoid8(pre(3, i));
    const __m256 cn = _mm256_fmadd_ps(fg, _mm256_loadu_ps(c + i), _mm256_mul_ps(ig, gg));
    _mm256_storeu_ps(c + i, cn);
    _mm256_storeu_ps(h_out + i, _mm256_mul_ps(og, tanh8(cn)));
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

const KernelTable& avx2_kernels() {
  static const KernelTable table = {
      "avx2",          f32_gemv__avx2,    f16_gemv__avx2,      f32_gemm__avx2,
      f16_gemm__avx2,  f32_sigmoid__avx2, f32_tanh__avx2,      f32_gru_gates__avx2,
      f32_lstm_gates__avx2,
  };
  return table;
}

}  // namespace rtmobile
