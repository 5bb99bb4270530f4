// x86-64 AVX-512 kernels. This file alone is compiled with -mavx512f -mfma -mf16c (AVX-512F is
// all it uses: no VL/BW/DQ instructions, so it also runs on the first AVX-512 CPUs);
// dispatch.cc only calls into it after checking the CPU and that the OS saves the ZMM state.
//
// A 16-row panel's column is exactly one zmm: 16 f32 (64 bytes, one cache line) or 16 f16 (32
// bytes, widened with vcvtph2ps); the 8-row panel a piece may end with uses a ymm (AVX/FMA/F16C
// forms: no VL needed), and sums go into y with one masked zmm add. Every
// output element is accumulated from zero in column order with one FMA per column, as in
// scalar.cc, so GEMV and GEMM results are bit-identical to scalar.
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

#include <algorithm>

#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

// One column of a W-row panel in one register: a zmm (W = 16) or a ymm (W = 8: AVX/FMA/F16C
// forms, which every AVX-512F CPU has), and what the kernels do with it. to_zmm widens a sum
// (upper lanes zero) for the masked add into y.
template <int W>
struct Panel;
template <>
struct Panel<16> {
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  template <typename T>
  static V load(const T* p) {
    return load16(p);
  }
  static V fma(V w, float x, V acc) { return _mm512_fmadd_ps(w, _mm512_set1_ps(x), acc); }
  static __m512 to_zmm(V v) { return v; }
};
template <>
struct Panel<8> {
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  template <typename T>
  static V load(const T* p) {
    return load8(p);
  }
  static V fma(V w, float x, V acc) { return _mm256_fmadd_ps(w, _mm256_set1_ps(x), acc); }
  static __m512 to_zmm(V v) { return _mm512_zextps256_ps512(v); }
};

// Input k of a piece: x[col_idx[k]], or x[k] for contiguous columns.
template <bool kIdx>
inline float column(const float* x, const uint32_t* col_idx, size_t k) {
  return kIdx ? x[col_idx[k]] : x[k];
}

// Adds a panel's sums into the piece's rows r0 .. r0 + valid - 1 of y: one masked vector add
// when the rows are contiguous (lanes past `valid` are neither read nor written), else one
// scalar add per row (AVX-512 gather + scatter measured 35% slower on Zen 4 at 245x).
template <int W>
inline void add_panel(typename Panel<W>::V sum, size_t valid, const uint32_t* row_idx,
                      size_t r0, float* y) {
  const __m512 s = Panel<W>::to_zmm(sum);
  if (row_idx == nullptr) {
    const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1u);
    float* d = y + r0;
    _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), s));
    return;
  }
  alignas(64) float tmp[16];
  _mm512_store_ps(tmp, s);
  const uint32_t* idx = row_idx + r0;
  for (size_t r = 0; r < valid; ++r) y[idx[r]] = y[idx[r]] + tmp[r];
}

// NT frames x one W-row panel per pass: NT independent accumulator chains, one register each.
template <int NT, int W, bool kIdx, typename T>
inline void gemm_panel(const T* wp, size_t cols, const uint32_t* col_idx, const float* x,
                       size_t ldx, size_t valid, const uint32_t* row_idx, size_t r0, float* y,
                       size_t ldy) {
  using P = Panel<W>;
  typename P::V sum[NT];
  for (int t = 0; t < NT; ++t) sum[t] = P::zero();
  for (size_t k = 0; k < cols; ++k) {
    const typename P::V w = P::load(wp + k * W);
    const size_t c = kIdx ? col_idx[k] : k;
    for (int t = 0; t < NT; ++t) sum[t] = P::fma(w, x[t * ldx + c], sum[t]);
  }
  for (int t = 0; t < NT; ++t) add_panel<W>(sum[t], valid, row_idx, r0, y + t * ldy);
}

// One panel times all frames, 8, 4, 2, 1 frames per pass.
template <int W, bool kIdx, typename T>
inline void gemm_panel_frames(const T* wp, size_t cols, const uint32_t* col_idx, const float* x,
                              size_t ldx, size_t frames, size_t valid, const uint32_t* row_idx,
                              size_t r0, float* y, size_t ldy) {
  size_t t = 0;
  for (; t + 8 <= frames; t += 8)
    gemm_panel<8, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0, y + t * ldy,
                           ldy);
  if (t + 4 <= frames) {
    gemm_panel<4, W, kIdx>(wp, cols, col_idx, x + t * ldx, ldx, valid, row_idx, r0, y + t * ldy,
                           ldy);
    t += 4;
  }
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

// Elements ahead of the current column that the prefetches ask for, per panel stream.
constexpr size_t kAheadLines = 6;
template <typename T>
constexpr size_t kAhead = kAheadLines * 64 / sizeof(T);

// One FMA chain per panel (NP in flight); the k loop steps one cache line of each panel at a
// time (1 column of a 16-row panel in f32, 2 of an 8-row one; twice that in f16) and
// prefetches that panel's line kAheadLines ahead: exactly one prefetch per line.
template <int NP, int W, bool kIdx, typename T>
inline void gemv_pass(const T* w, size_t cols, const uint32_t* col_idx, const float* x,
                      size_t rows_left, const uint32_t* row_idx, size_t r0, float* y) {
  using P = Panel<W>;
  constexpr size_t kLine = 64 / (W * sizeof(T));
  const size_t step = W * cols;
  typename P::V sum[NP];
  for (int q = 0; q < NP; ++q) sum[q] = P::zero();
  size_t k = 0;
  for (; k + kLine <= cols; k += kLine) {
    for (int q = 0; q < NP; ++q) prefetch(w + q * step + k * W + kAhead<T>);
    for (size_t j = 0; j < kLine; ++j) {
      const float xk = column<kIdx>(x, col_idx, k + j);
      for (int q = 0; q < NP; ++q)
        sum[q] = P::fma(P::load(w + q * step + (k + j) * W), xk, sum[q]);
    }
  }
  // The last part line (its line was prefetched kAheadLines ago).
  for (; k < cols; ++k) {
    const float xk = column<kIdx>(x, col_idx, k);
    for (int q = 0; q < NP; ++q) sum[q] = P::fma(P::load(w + q * step + k * W), xk, sum[q]);
  }
  for (int q = 0; q < NP; ++q)
    add_panel<W>(sum[q], std::min<size_t>(W, rows_left - static_cast<size_t>(q) * W), row_idx,
                 r0 + static_cast<size_t>(q) * W, y);
}

// Four 16-row panels per pass (four FMA chains and four prefetch streams), then two, then
// one, then the 8-row panel; the per-element order is the same as the GEMM's.
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

// A GEMV batch (kernels.h): its pieces one after the other, in one call. (Running up to four
// one-panel pieces side by side as independent chains was measured slower at 245x on Zen 4:
// out-of-order execution already overlaps consecutive pieces, and the grouped loop spilled its
// per-piece pointers.)
void f32_gemv__avx512(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  for (const GemvPiece* p = pieces; p != pieces + count; ++p) {
    const float* w = static_cast<const float*>(p->w);
    if (p->col_idx != nullptr)
      gemv_piece<true>(w, p->rows, p->cols, p->col_idx, x + p->x_off, p->row_idx, y + p->y_off);
    else
      gemv_piece<false>(w, p->rows, p->cols, nullptr, x + p->x_off, p->row_idx, y + p->y_off);
  }
}
void f32_gemm__avx512(const float* w, size_t rows, size_t cols, const uint32_t* col_idx,
                      const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                      float* y, size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}
void f16_gemm__avx512(const uint16_t* w, size_t rows, size_t cols, const uint32_t* col_idx,
                      const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                      float* y, size_t ldy) {
  if (col_idx != nullptr)
    gemm_piece<true>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
  else
    gemm_piece<false>(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy);
}

void f32_add__avx512(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
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
      "avx512",         f32_gemv__avx512,    avx2_kernels().f16_gemv, f32_gemm__avx512,
      f16_gemm__avx512, f32_add__avx512,     f32_sigmoid__avx512,     f32_tanh__avx512,
      f32_gru_gates__avx512, f32_lstm_gates__avx512,
  };
  return table;
}

}  // namespace rtmobile
