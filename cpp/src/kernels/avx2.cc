// x86-64 AVX2 + FMA + F16C kernels. This file alone is compiled with -mavx2 -mfma -mf16c;
// dispatch.cc only calls into it after checking the CPU.
#include <immintrin.h>

#include <algorithm>

#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

// One column of a W-row panel in registers (two ymm for 16 rows, one for 8) and what the kernels
// do with it: FMA a broadcast input into the accumulators, add the sums into y.
template <int W>
struct Panel;
template <>
struct Panel<16> {
  struct V {
    __m256 lo, hi;
  };
  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  template <typename T>
  static V load(const T* p) {
    return {load8(p), load8(p + 8)};
  }
  static V fma(V w, __m256 xb, V acc) {
    return {_mm256_fmadd_ps(w.lo, xb, acc.lo), _mm256_fmadd_ps(w.hi, xb, acc.hi)};
  }
  static void store(float* p, V v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static void add_to(float* y, V v) {
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), v.lo));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_loadu_ps(y + 8), v.hi));
  }
};
template <>
struct Panel<8> {
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  template <typename T>
  static V load(const T* p) {
    return load8(p);
  }
  static V fma(V w, __m256 xb, V acc) { return _mm256_fmadd_ps(w, xb, acc); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void add_to(float* y, V v) {
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), v));
  }
};

// Input k of a piece: x[col_idx[k]], or x[k] for contiguous columns.
template <bool kIdx>
inline const float* column(const float* x, const uint32_t* col_idx, size_t k) {
  return kIdx ? x + col_idx[k] : x + k;
}

// Adds a panel's sums into the piece's rows r0 .. r0 + valid - 1 of y: a vector add when the
// rows are contiguous and all real, else one scalar add per row.
template <int W>
inline void add_panel(typename Panel<W>::V sum, size_t valid, const uint32_t* row_idx,
                      size_t r0, float* y) {
  if (row_idx == nullptr && valid == W) {
    Panel<W>::add_to(y + r0, sum);
    return;
  }
  alignas(32) float s[W];
  Panel<W>::store(s, sum);
  if (row_idx == nullptr) {
    float* d = y + r0;
    for (size_t r = 0; r < valid; ++r) d[r] = d[r] + s[r];
  } else {
    const uint32_t* idx = row_idx + r0;
    for (size_t r = 0; r < valid; ++r) y[idx[r]] = y[idx[r]] + s[r];
  }
}

// NT frames x one W-row panel per pass: NT independent accumulators (2*NT chains for W = 16).
template <int NT, int W, bool kIdx, typename T>
inline void gemm_panel(const T* wp, size_t cols, const uint32_t* col_idx, const float* x,
                       size_t ldx, size_t valid, const uint32_t* row_idx, size_t r0, float* y,
                       size_t ldy) {
  using P = Panel<W>;
  typename P::V sum[NT];
  for (int t = 0; t < NT; ++t) sum[t] = P::zero();
  for (size_t k = 0; k < cols; ++k) {
    const typename P::V w = P::load(wp + k * W);
    const float* xk = column<kIdx>(x, col_idx, k);
    for (int t = 0; t < NT; ++t) sum[t] = P::fma(w, _mm256_broadcast_ss(xk + t * ldx), sum[t]);
  }
  for (int t = 0; t < NT; ++t) add_panel<W>(sum[t], valid, row_idx, r0, y + t * ldy);
}

// One panel times all frames: 4, 2, 1 frames per pass for 16-row panels (8, 4, 2 chains);
// 8, 4, 2, 1 for 8-row ones.
template <int W, bool kIdx, typename T>
inline void gemm_panel_frames(const T* wp, size_t cols, const uint32_t* col_idx, const float* x,
                              size_t ldx, size_t frames, size_t valid, const uint32_t* row_idx,
                              size_t r0, float* y, size_t ldy) {
  size_t t = 0;
  if (W < 16)
    for (; t + 8 <= frames; t += 8)
      gemm_panel<8, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0,
                             y + t * ldy, ldy);
  for (; t + 4 <= frames; t += 4)
    gemm_panel<4, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0, y + t * ldy,
                           ldy);
  if (t + 2 <= frames) {
    gemm_panel<2, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0, y + t * ldy,
                           ldy);
    t += 2;
  }
  if (t < frames)
    gemm_panel<1, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0, y + t * ldy,
                           ldy);
}

template <bool kIdx, typename T>
void gemm_piece(const T* w, size_t rows, size_t cols, const uint32_t* col_idx, const float* x,
                size_t ldx, size_t frames, const uint32_t* row_idx, float* y, size_t ldy) {
  const PanelSplit s = panel_split(rows);
  size_t r0 = 0;
  for (size_t p = 0; p < s.full; ++p, r0 += kPanelRows, w += kPanelRows * cols)
    gemm_panel_frames<16, kIdx>(w, cols, col_idx, x, ldx, frames,
                                std::min(kPanelRows, rows - r0), row_idx, r0, y, ldy);
  if (s.tail8)
    gemm_panel_frames<8, kIdx>(w, cols, col_idx, x, ldx, frames, rows - r0, row_idx, r0, y, ldy);
}

// Elements of T ahead of the current column that the GEMV's prefetches ask for, per panel.
constexpr size_t kAheadLines = 8;
template <typename T>
constexpr size_t kAhead = kAheadLines * 64 / sizeof(T);

// NP W-row panels per pass, one frame: NP (x2 for W = 16) FMA chains in flight. The k loop
// steps one 64-byte cache line of each panel at a time (1 column of a 16-row panel in f32, 2
// of an 8-row one; twice that in f16) and prefetches that panel's line kAheadLines ahead: one
// prefetch per line, in every pass (4, 2, 1 whole panels and the 8-row one).
template <int NP, int W, bool kIdx, typename T>
inline void gemv_pass(const T* w, size_t cols, const uint32_t* col_idx, const float* x,
                      size_t rows_left, const uint32_t* row_idx, size_t r0, float* y) {
  using P = Panel<W>;
  constexpr size_t kLine = 64 / (W * sizeof(T));  // columns per cache line of one panel
  const size_t step = W * cols;
  typename P::V sum[NP];
  for (int q = 0; q < NP; ++q) sum[q] = P::zero();
  size_t k = 0;
  for (; k + kLine <= cols; k += kLine) {
    for (int q = 0; q < NP; ++q) prefetch(w + q * step + k * W + kAhead<T>);
    for (size_t j = 0; j < kLine; ++j) {
      const __m256 xb = _mm256_broadcast_ss(column<kIdx>(x, col_idx, k + j));
      for (int q = 0; q < NP; ++q)
        sum[q] = P::fma(P::load(w + q * step + (k + j) * W), xb, sum[q]);
    }
  }
  // The last part line (its line was prefetched kAheadLines ago).
  for (; k < cols; ++k) {
    const __m256 xb = _mm256_broadcast_ss(column<kIdx>(x, col_idx, k));
    for (int q = 0; q < NP; ++q) sum[q] = P::fma(P::load(w + q * step + k * W), xb, sum[q]);
  }
  for (int q = 0; q < NP; ++q) {
    const size_t q0 = static_cast<size_t>(q) * W;
    add_panel<W>(sum[q], std::min<size_t>(W, rows_left - q0), row_idx, r0 + q0, y);
  }
}

// Four 16-row panels per pass (eight FMA chains: FMA latency x throughput), then two, then
// one, then the 8-row panel; per-element order is the same as the GEMM's.
template <bool kIdx, typename T>
void gemv_piece(const T* w, size_t rows, size_t cols, const uint32_t* col_idx, const float* x,
                const uint32_t* row_idx, float* y) {
  const PanelSplit s = panel_split(rows);
  const size_t step = kPanelRows * cols;
  size_t p = 0, r0 = 0;
  for (; p + 4 <= s.full; p += 4, r0 += 4 * kPanelRows, w += 4 * step)
    gemv_pass<4, 16, kIdx>(w, cols, col_idx, x, rows - r0, row_idx, r0, y);
  if (p + 2 <= s.full) {
    gemv_pass<2, 16, kIdx>(w, cols, col_idx, x, rows - r0, row_idx, r0, y);
    p += 2;
    r0 += 2 * kPanelRows;
    w += 2 * step;
  }
  if (p < s.full) {
    gemv_pass<1, 16, kIdx>(w, cols, col_idx, x, rows - r0, row_idx, r0, y);
    r0 += kPanelRows;
    w += step;
  }
  if (s.tail8) gemv_pass<1, 8, kIdx>(w, cols, col_idx, x, rows - r0, row_idx, r0, y);
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

void f32_gemv__avx2(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<float>(pieces, count, x, y);
}
void f16_gemv__avx2(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<uint16_t>(pieces, count, x, y);
}
void f32_gemm__avx2(const float* w, size_t rows, size_t cols, const uint32_t* col_idx,
                    const float* x, size_t ldx, size_t frames, const uint32_t* row_idx, float* y,
                    size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}
void f16_gemm__avx2(const uint16_t* w, size_t rows, size_t cols, const uint32_t* col_idx,
                    const float* x, size_t ldx, size_t frames, const uint32_t* row_idx, float* y,
                    size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}

void f32_add__avx2(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = y[i] + x[i];
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
      "avx2",         f32_gemv__avx2,      f16_gemv__avx2,     f32_gemm__avx2,
      f16_gemm__avx2, f32_add__avx2,       f32_sigmoid__avx2,  f32_tanh__avx2,
      f32_gru_gates__avx2, f32_lstm_gates__avx2,
  };
  return table;
}

}  // namespace rtmobile
