// Portable reference kernels: the ground truth every SIMD table is tested against.
#include <algorithm>
#include <cmath>

#include "format/half.h"
#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

// One panel of W rows (`valid` of them real) times `frames` frames: one accumulator per
// output, columns in order, then one add into y: the order every ISA keeps.
template <size_t W, typename T, typename Load>
void panel(const T* wp, size_t valid, size_t cols, const uint32_t* col_idx, const float* x,
           size_t ldx, size_t frames, const uint32_t* row_idx, size_t r0, float* y, size_t ldy,
           Load load) {
  for (size_t t = 0; t < frames; ++t) {
    const float* xt = x + t * ldx;
    float sum[W] = {};
    for (size_t k = 0; k < cols; ++k) {
      const float xk = xt[col_idx != nullptr ? col_idx[k] : k];
      for (size_t r = 0; r < W; ++r) sum[r] = std::fma(load(wp[k * W + r]), xk, sum[r]);
    }
    float* yt = y + t * ldy;
    for (size_t r = 0; r < valid; ++r) {
      float& dst = yt[row_idx != nullptr ? row_idx[r0 + r] : r0 + r];
      dst = dst + sum[r];
    }
  }
}

template <typename T, typename Load>
void piece(const T* w, size_t rows, size_t cols, const uint32_t* col_idx, const float* x,
           size_t ldx, size_t frames, const uint32_t* row_idx, float* y, size_t ldy, Load load) {
  const PanelSplit s = panel_split(rows);
  size_t r0 = 0;
  for (size_t p = 0; p < s.full; ++p, r0 += kPanelRows, w += kPanelRows * cols)
    panel<kPanelRows>(w, std::min(kPanelRows, rows - r0), cols, col_idx, x, ldx, frames,
                      row_idx, r0, y, ldy, load);
  if (s.tail8)
    panel<kTailRows>(w, rows - r0, cols, col_idx, x, ldx, frames, row_idx, r0, y, ldy, load);
}

float load_f32(float v) { return v; }
float load_f16(uint16_t v) { return half_to_float(v); }

void f32_gemm__scalar(const float* w, size_t rows, size_t cols, const uint32_t* col_idx,
                      const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                      float* y, size_t ldy) {
  piece(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy, load_f32);
}
void f16_gemm__scalar(const uint16_t* w, size_t rows, size_t cols, const uint32_t* col_idx,
                      const float* x, size_t ldx, size_t frames, const uint32_t* row_idx,
                      float* y, size_t ldy) {
  piece(w, rows, cols, col_idx, x, ldx, frames, row_idx, y, ldy, load_f16);
}
// The reference GEMV: the batch's pieces one after the other.
template <typename T, typename Load>
void gemv_batch(const GemvPiece* pieces, size_t count, const float* x, float* y, Load load) {
  for (size_t i = 0; i < count; ++i) {
    const GemvPiece& p = pieces[i];
    piece(static_cast<const T*>(p.w), p.rows, p.cols, p.col_idx, x + p.x_off, 0, 1, p.row_idx,
          y + p.y_off, 0, load);
  }
}
void f32_gemv__scalar(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<float>(pieces, count, x, y, load_f32);
}
void f16_gemv__scalar(const GemvPiece* pieces, size_t count, const float* x, float* y) {
  gemv_batch<uint16_t>(pieces, count, x, y, load_f16);
}

void f32_add__scalar(size_t n, const float* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = y[i] + x[i];
}

void f32_sigmoid__scalar(size_t n, const float* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = activation::sigmoid(x[i]);
}
void f32_tanh__scalar(size_t n, const float* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = activation::tanh(x[i]);
}

void f32_gru_gates__scalar(size_t n, size_t stride, const float* gi, const float* gh,
                           const float* h_prev, float* h_out) {
  for (size_t i = 0; i < n; ++i) {
    const float r = activation::sigmoid(gi[i] + gh[i]);
    const float z = activation::sigmoid(gi[stride + i] + gh[stride + i]);
    const float c = activation::tanh(std::fma(r, gh[2 * stride + i], gi[2 * stride + i]));
    h_out[i] = std::fma(z, h_prev[i] - c, c);
  }
}

void f32_lstm_gates__scalar(size_t n, size_t stride, const float* gi, const float* gh,
                            float* c, float* h_out) {
  for (size_t i = 0; i < n; ++i) {
    const float ig = activation::sigmoid(gi[i] + gh[i]);
    const float fg = activation::sigmoid(gi[stride + i] + gh[stride + i]);
    const float gg = activation::tanh(gi[2 * stride + i] + gh[2 * stride + i]);
    const float og = activation::sigmoid(gi[3 * stride + i] + gh[3 * stride + i]);
    c[i] = std::fma(fg, c[i], ig * gg);
    h_out[i] = og * activation::tanh(c[i]);
  }
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable table = {
      "scalar",         f32_gemv__scalar,      f16_gemv__scalar,     f32_gemm__scalar,
      f16_gemm__scalar, f32_add__scalar,       f32_sigmoid__scalar,  f32_tanh__scalar,
      f32_gru_gates__scalar, f32_lstm_gates__scalar,
  };
  return table;
}

}  // namespace rtmobile
