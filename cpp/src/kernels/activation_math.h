// Scalar forms of the LUT-free activations. The SIMD kernels evaluate the same steps with the
// same constants, so every ISA agrees to within a few ulp.
//
// exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r, and
// 2^n built in the exponent bits. Inputs are clamped to [-87, 87] so 2^n stays a normal float.
// sigmoid(x) = 1 / (1 + e^-x); tanh(x) = sign(x) (1 - e^-2|x|) / (1 + e^-2|x|).
// Rule for special values: NaN in gives NaN out; sigmoid(-inf) = 0, sigmoid(+inf) = 1,
// tanh(+-inf) = +-1. Max abs error against float64 is below 1e-6 over the whole float range.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace rtmobile::activation {

constexpr float kExpClamp = 87.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
// e^r - 1 - r = r^2 (c2 + r (c3 + ...)); minimax coefficients of the classic Cephes expf.
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;

// Valid for clamped x (NaN passes through as NaN).
inline float exp_clamped(float x) {
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = std::fma(kP0, r, kP1);
  p = std::fma(p, r, kP2);
  p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP4);
  p = std::fma(p, r, kP5);
  p = std::fma(p, r * r, r) + 1.0f;
  if (std::isnan(n)) return n;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float clamp_exp_arg(float x) {
  // Comparisons are false for NaN, so NaN is kept.
  return x < -kExpClamp ? -kExpClamp : (x > kExpClamp ? kExpClamp : x);
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_clamped(clamp_exp_arg(-x))); }

inline float tanh(float x) {
  const float e = exp_clamped(clamp_exp_arg(-2.0f * std::fabs(x)));
  const float t = (1.0f - e) / (1.0f + e);
  return std::copysign(t, x);
}

}  // namespace rtmobile::activation
