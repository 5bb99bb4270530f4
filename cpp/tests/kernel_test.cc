// Every kernel table this CPU can run, against the scalar reference, on awkward sizes; and
// the activations against float64 over [-50, 50] plus the special values.
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "format/half.h"
#include "rtmobile/rtmobile.hpp"
#include "kernels/kernels.h"
#include "test_util.h"

using rtmobile::KernelTable;
using rtmobile::kPanelRows;

namespace {

std::vector<const KernelTable*> tables() {
  const KernelTable* t[8];
  const size_t n = rtmobile::available_kernel_tables(t, 8);
  return {t, t + n};
}

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace

TEST_CASE("the last table is scalar and auto picks the first") {
  const auto t = tables();
  CHECK(!t.empty() && std::string(t.back()->isa) == "scalar");
  CHECK(&rtmobile::select_kernels("auto") == t.front());
  CHECK_THROWS(rtmobile::Error, rtmobile::select_kernels("sse9"), "not available");
}

TEST_CASE("f32 and f16 GEMV/GEMM agree with scalar on awkward shapes") {
  std::mt19937 rng(1);
  const KernelTable& ref = rtmobile::scalar_kernels();
  for (const KernelTable* k : tables()) {
    for (size_t panels : {1, 2, 3, 5}) {
      for (size_t cols : {1, 2, 7, 8, 9, 33}) {
        for (size_t frames : {1, 2, 3, 4, 5, 7, 9}) {
          const size_t ldx = cols + 3, ld_acc = panels * kPanelRows + 5;
          const auto w = random_floats(rng, panels * cols * kPanelRows);
          std::vector<uint16_t> w16(w.size());
          std::vector<float> w16f(w.size());
          for (size_t i = 0; i < w.size(); ++i) {  // quantise to 10-bit mantissa values
            const float q = std::round(w[i] * 1024.0f) / 1024.0f;
            // exact f16 encoding of q (|q| <= 1, multiple of 2^-10)
            uint16_t h = 0;
            if (q != 0.0f) {
              int e;
              const float f = std::frexp(std::fabs(q), &e);
              h = static_cast<uint16_t>((q < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) |
                                        std::lround((f * 2 - 1) * 1024));
            }
            w16[i] = h;
            w16f[i] = rtmobile::half_to_float(h);
          }
          const auto x = random_floats(rng, frames * ldx);
          std::vector<float> got(frames * ld_acc, 0.0f), want(frames * ld_acc, 0.0f);
          k->f32_gemm(w.data(), panels, cols, x.data(), ldx, frames, got.data(), ld_acc);
          ref.f32_gemm(w.data(), panels, cols, x.data(), ldx, frames, want.data(), ld_acc);
          for (size_t t = 0; t < frames; ++t)
            for (size_t r = 0; r < panels * kPanelRows; ++r)
              CHECK_NEAR(got[t * ld_acc + r], want[t * ld_acc + r], 1e-6);
          k->f16_gemm(w16.data(), panels, cols, x.data(), ldx, frames, got.data(), ld_acc);
          ref.f32_gemm(w16f.data(), panels, cols, x.data(), ldx, frames, want.data(), ld_acc);
          for (size_t t = 0; t < frames; ++t)
            for (size_t r = 0; r < panels * kPanelRows; ++r)
              CHECK_NEAR(got[t * ld_acc + r], want[t * ld_acc + r], 1e-6);
          // GEMV equals the GEMM's first frame bit for bit (streaming == offline).
          std::vector<float> gv(panels * kPanelRows);
          k->f32_gemv(w.data(), panels, cols, x.data(), gv.data());
          k->f32_gemm(w.data(), panels, cols, x.data(), ldx, frames, got.data(), ld_acc);
          for (size_t r = 0; r < gv.size(); ++r) CHECK(gv[r] == got[r]);
          k->f16_gemv(w16.data(), panels, cols, x.data(), gv.data());
          k->f16_gemm(w16.data(), panels, cols, x.data(), ldx, frames, got.data(), ld_acc);
          for (size_t r = 0; r < gv.size(); ++r) CHECK(gv[r] == got[r]);
        }
      }
    }
  }
}

TEST_CASE("sigmoid and tanh: max abs error <= 1e-6 on [-50, 50], every ISA") {
  std::vector<float> x;
  for (int i = -500000; i <= 500000; ++i) x.push_back(static_cast<float>(i) * 1e-4f);
  for (const KernelTable* k : tables()) {
    std::vector<float> s(x.size()), t(x.size());
    k->sigmoid(x.size(), x.data(), s.data());
    k->tanh(x.size(), x.data(), t.data());
    double worst_s = 0, worst_t = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      worst_s = std::max(worst_s, std::fabs(s[i] - 1.0 / (1.0 + std::exp(-xd))));
      worst_t = std::max(worst_t, std::fabs(t[i] - std::tanh(xd)));
    }
    std::printf("  %s: sigmoid max err %.3g, tanh max err %.3g\n", k->isa, worst_s, worst_t);
    CHECK(worst_s <= 1e-6);
    CHECK(worst_t <= 1e-6);
  }
}

TEST_CASE("activation special values: NaN propagates, infinities saturate") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {std::nanf(""), inf, -inf, 1e30f, -1e30f, 0.0f, -0.0f, 88.0f,
                                -88.0f, 100.0f, -100.0f};
  for (const KernelTable* k : tables()) {
    std::vector<float> s(x.size()), t(x.size());
    // Padded to 16 so the SIMD body, not only the scalar tail, sees the specials.
    std::vector<float> xp(x);
    xp.resize(16, 0.5f);
    std::vector<float> sp(16), tp(16);
    k->sigmoid(16, xp.data(), sp.data());
    k->tanh(16, xp.data(), tp.data());
    CHECK(std::isnan(sp[0]) && std::isnan(tp[0]));
    CHECK(sp[1] == 1.0f && tp[1] == 1.0f);
    CHECK(sp[2] < 1e-37f && sp[2] >= 0.0f && tp[2] == -1.0f);
    CHECK(sp[3] == 1.0f && tp[3] == 1.0f && tp[4] == -1.0f);
    CHECK(sp[5] == 0.5f && tp[5] == 0.0f);
    for (size_t i = 1; i < x.size(); ++i) CHECK(!std::isnan(sp[i]) && !std::isnan(tp[i]));
  }
}

TEST_CASE("GRU and LSTM gate kernels agree with scalar, with a stride and odd n") {
  std::mt19937 rng(3);
  const KernelTable& ref = rtmobile::scalar_kernels();
  for (const KernelTable* k : tables()) {
    for (size_t n : {1, 7, 8, 9, 31, 64}) {
      const size_t stride = n + 3;
      const auto gi = random_floats(rng, 4 * stride);
      const auto gh = random_floats(rng, 4 * stride);
      const auto h = random_floats(rng, n);
      std::vector<float> got(n), want(n);
      k->gru_gates(n, stride, gi.data(), gh.data(), h.data(), got.data());
      ref.gru_gates(n, stride, gi.data(), gh.data(), h.data(), want.data());
      for (size_t i = 0; i < n; ++i) CHECK_NEAR(got[i], want[i], 1e-6);
      auto c1 = random_floats(rng, n);
      auto c2 = c1;
      k->lstm_gates(n, stride, gi.data(), gh.data(), c1.data(), got.data());
      ref.lstm_gates(n, stride, gi.data(), gh.data(), c2.data(), want.data());
      for (size_t i = 0; i < n; ++i) {
        CHECK_NEAR(got[i], want[i], 1e-6);
        CHECK_NEAR(c1[i], c2[i], 1e-6);
      }
    }
  }
}

TEST_MAIN()
