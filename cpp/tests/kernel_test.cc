// Every kernel table this CPU can run, against the scalar reference, on awkward sizes; and
// the activations against float64 over [-50, 50] plus the special values.
#include <algorithm>
#include <cmath>
#include <cstring>
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
using rtmobile::packed_rows;

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

TEST_CASE("panel split: 16-row panels, then an 8-row one; at most kMaxPadRows zero rows") {
  CHECK(packed_rows(0) == 0 && packed_rows(1) == 8 && packed_rows(2) == 8);
  CHECK(packed_rows(8) == 8 && packed_rows(9) == 16 && packed_rows(16) == 16);
  CHECK(packed_rows(17) == 24 && packed_rows(24) == 24 && packed_rows(25) == 32);
  CHECK(packed_rows(90) == 96);
  size_t worst = 0;
  for (size_t rows = 1; rows <= 300; ++rows) {
    const rtmobile::PanelSplit s = rtmobile::panel_split(rows);
    const size_t packed = packed_rows(rows);
    CHECK(packed == s.full * kPanelRows + (s.tail8 ? rtmobile::kTailRows : 0));
    CHECK(packed >= rows && packed - rows <= rtmobile::kMaxPadRows);
    worst = std::max(worst, packed - rows);
    // Every panel holds at least one real row: only the last one is padded.
    const size_t last = s.tail8 ? rtmobile::kTailRows : kPanelRows;
    CHECK(packed - last < rows);
  }
  CHECK(worst == rtmobile::kMaxPadRows);  // the memory plan's bound is tight
}

namespace {

// Quantises to values f16 holds exactly (|v| <= 1, multiples of 2^-10), so the f16 and f32
// kernels must give the same bits; returns the f16 encodings.
std::vector<uint16_t> quantise_to_f16(std::vector<float>& w) {
  std::vector<uint16_t> h(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const float q = std::round(w[i] * 1024.0f) / 1024.0f;
    uint16_t v = 0;
    if (q != 0.0f) {
      int e;
      const float f = std::frexp(std::fabs(q), &e);
      v = static_cast<uint16_t>((q < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) |
                                std::lround((f * 2 - 1) * 1024));
    }
    h[i] = v;
    w[i] = rtmobile::half_to_float(v);
  }
  return h;
}

// W (rows x cols, row-major) in the panel layout of kernels.h, zero padded.
template <typename T>
std::vector<T> pack_panels(const std::vector<T>& w, size_t rows, size_t cols) {
  const rtmobile::PanelSplit s = rtmobile::panel_split(rows);
  std::vector<size_t> widths(s.full, kPanelRows);
  if (s.tail8) widths.push_back(rtmobile::kTailRows);
  std::vector<T> out;
  size_t r0 = 0;
  for (size_t width : widths) {
    for (size_t k = 0; k < cols; ++k)
      for (size_t r = 0; r < width; ++r)
        out.push_back(r0 + r < rows ? w[(r0 + r) * cols + k] : T{0});
    r0 += width;
  }
  CHECK(out.size() == rtmobile::packed_rows(rows) * cols);
  return out;
}

// `count` distinct sorted values in [0, range), not all consecutive when count > 1 and the
// range allows.
std::vector<uint32_t> scattered(std::mt19937& rng, size_t count, size_t range) {
  std::vector<uint32_t> all(range);
  for (size_t i = 0; i < range; ++i) all[i] = static_cast<uint32_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<uint32_t> v(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(count));
  return v;
}

}  // namespace

// Every table against the definition in kernels.h, computed here in the same order (zero, one
// FMA per column in column order, one add into y): exact equality, for pieces of 1..81 rows
// (every tail of 1..15 rows after 0..2 whole panels and some after 3..5: every pass of 4, 2, 1
// 16-row panels and of the 8-row panel, each with a partial last panel), awkward column
// counts, 1..9 and 15..17 frames, f32 and f16, kept columns in place or through an index list
// (increasing, not consecutive), output rows consecutive or scattered (any order). Rows of y
// outside the piece must keep their bits. So GEMV == GEMM frame for frame (streaming ==
// offline), and every table == scalar.
TEST_CASE("f32 and f16 GEMV/GEMM pieces equal the definition bit for bit, every table") {
  std::mt19937 rng(1);
  std::vector<size_t> row_counts;
  for (size_t r = 1; r <= 36; ++r) row_counts.push_back(r);
  for (size_t r : {47, 48, 49, 52, 60, 63, 64, 65, 68, 72, 76, 79, 80, 81}) row_counts.push_back(r);
  const std::vector<size_t> col_counts = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 33};
  const std::vector<size_t> frame_counts = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17};
  const auto all = tables();
  size_t combos = 0;
  for (size_t rows : row_counts) {
    for (size_t cols : col_counts) {
      auto w = random_floats(rng, rows * cols);
      const std::vector<uint16_t> w16 = quantise_to_f16(w);
      const std::vector<float> pw = pack_panels(w, rows, cols);
      const std::vector<uint16_t> pw16 = pack_panels(w16, rows, cols);
      for (int layout = 0; layout < 4; ++layout) {
        const bool idx_cols = layout & 1, idx_rows = layout & 2;
        const size_t ldx = 2 * cols + 5;   // room for scattered columns
        const size_t ldy = 2 * rows + 7;   // and rows, plus rows the piece must not touch
        const size_t first_col = idx_cols ? 0 : 3, first_row = idx_rows ? 0 : 2;
        std::vector<uint32_t> ci, ri;
        if (idx_cols) {
          ci = scattered(rng, cols, ldx);
          std::sort(ci.begin(), ci.end());  // as in the format: strictly increasing
        }
        if (idx_rows) ri = scattered(rng, rows, ldy);  // any order (row permutation)
        auto col_of = [&](size_t k) { return idx_cols ? ci[k] : first_col + k; };
        auto row_of = [&](size_t r) { return idx_rows ? ri[r] : first_row + r; };
        const uint32_t* cip = idx_cols ? ci.data() : nullptr;
        const uint32_t* rip = idx_rows ? ri.data() : nullptr;
        for (size_t frames : frame_counts) {
          const auto x = random_floats(rng, frames * ldx);
          const auto y0 = random_floats(rng, frames * ldy);
          std::vector<float> want(y0);
          for (size_t t = 0; t < frames; ++t)
            for (size_t r = 0; r < rows; ++r) {
              float sum = 0.0f;
              for (size_t k = 0; k < cols; ++k)
                sum = std::fma(w[r * cols + k], x[t * ldx + col_of(k)], sum);
              float& dst = want[t * ldy + row_of(r)];
              dst = dst + sum;
            }
          const float* xp = x.data() + first_col;
          for (const KernelTable* k : all) {
            for (int f16 = 0; f16 < 2; ++f16) {
              std::vector<float> got(y0);
              float* yp = got.data() + first_row;
              if (f16 != 0)
                k->f16_gemm(pw16.data(), rows, cols, cip, xp, ldx, frames, rip, yp, ldy);
              else
                k->f32_gemm(pw.data(), rows, cols, cip, xp, ldx, frames, rip, yp, ldy);
              bool same = std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
              if (frames == 1) {  // the GEMV too
                std::vector<float> gv(y0);
                rtmobile::GemvPiece one{};
                one.w = f16 != 0 ? static_cast<const void*>(pw16.data()) : pw.data();
                one.col_idx = cip;
                one.row_idx = rip;
                one.rows = static_cast<uint32_t>(rows);
                one.cols = static_cast<uint32_t>(cols);
                one.x_off = static_cast<uint32_t>(first_col);
                one.y_off = static_cast<uint32_t>(first_row);
                if (f16 != 0)
                  k->f16_gemv(&one, 1, x.data(), gv.data());
                else
                  k->f32_gemv(&one, 1, x.data(), gv.data());
                same = same && std::memcmp(gv.data(), want.data(), gv.size() * 4) == 0;
              }
              if (!same)
                std::printf("  %s %s: rows %zu cols %zu frames %zu idx_cols %d idx_rows %d\n",
                            k->isa, f16 ? "f16" : "f32", rows, cols, frames, idx_cols, idx_rows);
              CHECK(same);
              ++combos;
            }
          }
        }
      }
    }
  }
  std::printf("  %zu piece products checked over %zu tables\n", combos, all.size());
}

// GEMV batches (kernels.h: GemvPiece): mostly one-panel pieces mixed with larger ones, many
// sharing output rows (as the blocks of one row strip do), some with more than 256 columns,
// columns indexed or contiguous (offset), rows scattered or contiguous (offset): every table
// must give the bits of the definition applied piece after piece, in array order.
TEST_CASE("GEMV batches equal the pieces one after the other, bit for bit, every table") {
  std::mt19937 rng(4);
  const auto all = tables();
  const size_t ldx = 300, ldy = 200;
  size_t batches = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const size_t count = 1 + rng() % 11;
    struct Desc {
      size_t rows, cols;
      std::vector<float> w;
      std::vector<uint16_t> w16;
      std::vector<float> pw;
      std::vector<uint16_t> pw16;
      std::vector<uint32_t> ci, ri;
      size_t x_off, y_off;
    };
    std::vector<Desc> d(count);
    std::vector<uint32_t> shared_rows;  // rows several pieces write
    for (Desc& p : d) {
      const int kind = static_cast<int>(rng() % 8);
      p.rows = kind == 0 ? 17 + rng() % 60 : 1 + rng() % 16;  // mostly one panel
      p.cols = kind == 1 ? 1 + rng() % 290 : 1 + rng() % 24;  // some beyond kIotaCols
      p.w = random_floats(rng, p.rows * p.cols);
      p.w16 = quantise_to_f16(p.w);
      p.pw = pack_panels(p.w, p.rows, p.cols);
      p.pw16 = pack_panels(p.w16, p.rows, p.cols);
      p.x_off = p.y_off = 0;
      if (rng() % 2 != 0) {
        p.ci = scattered(rng, p.cols, ldx);
        std::sort(p.ci.begin(), p.ci.end());
      } else {
        p.x_off = rng() % (ldx - p.cols + 1);
      }
      if (rng() % 2 != 0) {
        if (!shared_rows.empty() && shared_rows.size() >= p.rows && rng() % 2 != 0)
          p.ri.assign(shared_rows.begin(), shared_rows.begin() + static_cast<long>(p.rows));
        else
          p.ri = scattered(rng, p.rows, ldy);
        shared_rows = p.ri;
      } else {
        p.y_off = rng() % 4 == 0 ? 5 : rng() % (ldy - p.rows + 1);  // 5: shared
      }
    }
    const auto x = random_floats(rng, ldx);
    const auto y0 = random_floats(rng, ldy);
    for (int f16 = 0; f16 < 2; ++f16) {
      std::vector<rtmobile::GemvPiece> batch;
      std::vector<float> want(y0);
      for (const Desc& p : d) {
        rtmobile::GemvPiece g{};
        g.w = f16 != 0 ? static_cast<const void*>(p.pw16.data()) : p.pw.data();
        g.col_idx = p.ci.empty() ? nullptr : p.ci.data();
        g.row_idx = p.ri.empty() ? nullptr : p.ri.data();
        g.rows = static_cast<uint32_t>(p.rows);
        g.cols = static_cast<uint32_t>(p.cols);
        g.x_off = static_cast<uint32_t>(p.x_off);
        g.y_off = static_cast<uint32_t>(p.y_off);
        batch.push_back(g);
        for (size_t r = 0; r < p.rows; ++r) {
          float sum = 0.0f;
          for (size_t k = 0; k < p.cols; ++k)
            sum = std::fma(p.w[r * p.cols + k], x[p.x_off + (p.ci.empty() ? k : p.ci[k])], sum);
          float& dst = want[p.y_off + (p.ri.empty() ? r : p.ri[r])];
          dst = dst + sum;
        }
      }
      for (const KernelTable* k : all) {
        std::vector<float> got(y0);
        if (f16 != 0) k->f16_gemv(batch.data(), batch.size(), x.data(), got.data());
        else k->f32_gemv(batch.data(), batch.size(), x.data(), got.data());
        const bool same = std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
        if (!same)
          std::printf("  %s %s: batch %d of %zu pieces\n", k->isa, f16 ? "f16" : "f32", trial,
                      count);
        CHECK(same);
        ++batches;
      }
    }
  }
  std::printf("  %zu batches checked over %zu tables\n", batches, all.size());
}

TEST_CASE("add: y += x equals scalar bit for bit, every table, n = 0..40") {
  std::mt19937 rng(2);
  for (const KernelTable* k : tables()) {
    for (size_t n = 0; n <= 40; ++n) {
      const auto x = random_floats(rng, n + 1);
      const auto y0 = random_floats(rng, n + 1);
      std::vector<float> got(y0);
      k->add(n, x.data(), got.data());
      for (size_t i = 0; i < n; ++i) CHECK(got[i] == y0[i] + x[i]);
      CHECK(got[n] == y0[n]);  // nothing past n
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
