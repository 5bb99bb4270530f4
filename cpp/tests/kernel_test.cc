// Every kernel table this CPU can run, against the scalar reference, on awkward sizes; and
// the activations against float64 over [-50, 50] plus the special values.
#include <algorithm>
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

TEST_CASE("every table built and runnable here is listed, best first, by its isa name") {
  // The preference order of dispatch.cc; each name at most once.
  const std::vector<std::string> order = {"avx512", "avx2", "neon", "scalar"};
  std::string listed;
  size_t rank = 0;
  for (const KernelTable* k : tables()) {
    listed += std::string(listed.empty() ? "" : ", ") + k->isa;
    size_t r = rank;
    while (r < order.size() && order[r] != k->isa) ++r;
    CHECK(r < order.size());  // known and after the previous table
    rank = r + 1;
    CHECK(rtmobile::cpu_supports(k->isa));
    CHECK(&rtmobile::select_kernels(k->isa) == k);
  }
  std::printf("  tables exercised by this test: %s\n", listed.c_str());
  auto listed_if_supported = [&](const KernelTable& t) {
    const auto all = tables();
    const bool found = std::find(all.begin(), all.end(), &t) != all.end();
    CHECK(found == rtmobile::cpu_supports(t.isa));
  };
#if defined(RTM_HAVE_AVX512)
  CHECK(std::string(rtmobile::avx512_kernels().isa) == "avx512");
  listed_if_supported(rtmobile::avx512_kernels());
  if (rtmobile::cpu_supports("avx512")) CHECK(tables().front() == &rtmobile::avx512_kernels());
#else
  CHECK(!rtmobile::cpu_supports("avx512"));
#endif
#if defined(RTM_HAVE_AVX2)
  CHECK(std::string(rtmobile::avx2_kernels().isa) == "avx2");
  listed_if_supported(rtmobile::avx2_kernels());
#endif
#if defined(RTM_HAVE_NEON)
  listed_if_supported(rtmobile::neon_kernels());
#endif
  listed_if_supported(rtmobile::scalar_kernels());
}

// Sizes that reach every pass and tail of the SIMD tables (4/2/1 panels per GEMV pass, 8/4/2/1
// frames per GEMM pass, f16 columns in pairs per cache line). Each output is one FMA chain over
// the columns in order in every table, so they all equal scalar bit for bit.
TEST_CASE("f32 and f16 GEMV/GEMM equal scalar bit for bit on awkward shapes") {
  std::mt19937 rng(1);
  const KernelTable& ref = rtmobile::scalar_kernels();
  for (const KernelTable* k : tables()) {
    std::printf("  %s\n", k->isa);
    for (size_t panels : {1, 2, 3, 4, 5, 7, 11}) {
      for (size_t cols : {1, 2, 3, 7, 8, 9, 16, 33}) {
        for (size_t frames : {1, 2, 3, 4, 5, 6, 7, 8, 9, 15}) {
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
              CHECK(got[t * ld_acc + r] == want[t * ld_acc + r]);
          k->f16_gemm(w16.data(), panels, cols, x.data(), ldx, frames, got.data(), ld_acc);
          ref.f32_gemm(w16f.data(), panels, cols, x.data(), ldx, frames, want.data(), ld_acc);
          for (size_t t = 0; t < frames; ++t)
            for (size_t r = 0; r < panels * kPanelRows; ++r)
              CHECK(got[t * ld_acc + r] == want[t * ld_acc + r]);
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
    // Unpadded (11): the tail (scalar, or masked lanes) gives the same values.
    k->sigmoid(x.size(), x.data(), s.data());
    k->tanh(x.size(), x.data(), t.data());
    CHECK(std::isnan(s[0]) && std::isnan(t[0]));
    for (size_t i = 1; i < x.size(); ++i) CHECK(s[i] == sp[i] && t[i] == tp[i]);
  }
}

TEST_CASE("GRU and LSTM gate kernels agree with scalar, with a stride and odd n") {
  std::mt19937 rng(3);
  const KernelTable& ref = rtmobile::scalar_kernels();
  for (const KernelTable* k : tables()) {
    for (size_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 64}) {
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
