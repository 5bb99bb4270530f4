// Portable reference kernels: the ground truth every SIMD table is tested against.
#include "format/half.h"
#include "kernels/activation_math.h"
#include "kernels/kernels.h"

namespace rtmobile {
namespace {

// One accumulator per output, columns in order: the summation order every ISA keeps.
template <typename W, typename Load>
void gemm_panels(const W* w, size_t panels, size_t cols, const float* x, size_t ldx,
                 size_t frames, float* acc, size_t ld_acc, Load load) {
  for (size_t t = 0; t < frames; ++t) {
    const float* xt = x + t * ldx;
    for (size_t p = 0; p < panels; ++p) {
      const W* wp = w + p * cols * kPanelRows;
      float sum[kPanelRows] = {};
      for (size_t k = 0; k < cols; ++k) {
        const float xk = xt[k];
        for (size_t r = 0; r < kPanelRows; ++r)
          sum[r] = std::fma(load(wp[k * kPanelRows + r]), xk, sum[r]);
      }
      for (size_t r = 0; r < kPanelRows; ++r) acc[t * ld_acc + p * kPanelRows + r] = sum[r];
    }
  }
}

float load_f32(float v) { return v; }
float load_f16(uint16_t v) { return half_to_float(v); }

void f32_gemm__scalar(const float* w, size_t panels, size_t cols, const float* x, size_t ldx,
                      size_t frames, float* acc, size_t ld_acc) {
  gemm_panels(w, panels, cols, x, ldx, frames, acc, ld_acc, load_f32);
}
void f16_gemm__scalar(const uint16_t* w, size_t panels, size_t cols, const float* x,
                      size_t ldx, size_t frames, float* acc, size_t ld_acc) {
  gemm_panels(w, panels, cols, x, ldx, frames, acc, ld_acc, load_f16);
}
void f32_gemv__scalar(const float* w, size_t panels, size_t cols, const float* x, float* acc) {
  gemm_panels(w, panels, cols, x, 0, 1, acc, 0, load_f32);
}
void f16_gemv__scalar(const uint16_t* w, size_t panels, size_t cols, const float* x,
                      float* acc) {
  gemm_panels(w, panels, cols, x, 0, 1, acc, 0, load_f16);
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
      "scalar",          f32_gemv__scalar,    f16_gemv__scalar,      f32_gemm__scalar,
      f16_gemm__scalar,  f32_sigmoid__scalar, f32_tanh__scalar,      f32_gru_gates__scalar,
      f32_lstm_gates__scalar,
  };
  return table;
}

}  // namespace rtmobile
