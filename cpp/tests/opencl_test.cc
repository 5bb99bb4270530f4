// The OpenCL backend (device = "opencl") against the CPU backend and the float64 reference:
// GRU and LSTM stacks, BSP and dense, f32 and f16 files, odd sizes, tiles that split strips,
// inputs wider than one local-memory chunk; streaming equals run() exactly; option and device
// errors. Built only with RTM_HAVE_OPENCL; when the machine has no OpenCL platform or device it
// prints why, runs only the device-free cases and exits 0 (a skip).
//
// The test weights are multiples of 2^-10 in [-0.5, 0.5], exact in f16, so the device's f16
// weights lose nothing here and, with float arithmetic (opencl_math='float'), the OpenCL logits
// must match the CPU's to float rounding. Half arithmetic (opencl_math='half', only on devices
// with cl_khr_fp16) is checked against a float64 emulation of it and the f16 tolerance 1e-2.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "rtmobile/rtmobile.hpp"
#include "test_model.h"
#include "test_util.h"

namespace {

struct Config {
  const char* what;
  uint32_t kind, input;
  std::vector<uint32_t> hidden;
  uint32_t output, num_r, num_c;
  double keep;
  bool f16, norm;
};

const std::vector<Config>& configs() {
  static const std::vector<Config> all = {
      {"GRU dense, odd sizes", 1, 13, {19}, 7, 1, 1, 1.0, false, false},
      {"GRU BSP 2 layers, norm", 1, 13, {24, 17}, 5, 4, 2, 0.5, false, true},
      {"GRU BSP f16 3 layers", 1, 40, {33, 33, 20}, 11, 8, 3, 0.4, true, false},
      {"GRU dense, strips taller than a tile", 1, 21, {50}, 70, 1, 1, 1.0, true, false},
      {"GRU BSP, input wider than a local chunk", 1, 1100, {23}, 9, 3, 1, 0.6, false, false},
      {"LSTM BSP", 2, 9, {21, 12}, 6, 3, 2, 0.6, false, false},
      {"LSTM dense f16", 2, 17, {29}, 8, 1, 1, 1.0, true, true},
  };
  return all;
}

rtmobile::SessionOptions opencl(const char* math = "auto") {
  rtmobile::SessionOptions o;
  o.device = "opencl";
  o.opencl_math = math;
  return o;
}

rtmobile::Session open(const std::vector<uint8_t>& bytes, const rtmobile::SessionOptions& o) {
  return rtmobile::Session::from_memory(bytes.data(), bytes.size(), o);
}

// Why OpenCL cannot run here, or empty when it can.
std::string skip_reason() {
  const auto model = rtm_test::random_model(1, 1, 4, {8}, 3, 1, 1, 1.0, false, false);
  const auto bytes = rtm_test::encode(model);
  try {
    auto s = open(bytes, opencl());
    std::printf("OpenCL device: %s\n", s.info().isa.c_str());
    return "";
  } catch (const rtmobile::Error& e) {
    if (e.code() == rtmobile::ErrorCode::kUnsupported) return e.what();
    throw;
  }
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  return worst;
}

template <typename Ref>
double max_diff_ref(const std::vector<float>& a, const Ref& want) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - want[i]));
  return worst;
}

// Whether the device runs half arithmetic: opencl_math='half' opens only with cl_khr_fp16.
bool device_has_fp16() {
  const auto bytes =
      rtm_test::encode(rtm_test::random_model(1, 1, 4, {8}, 3, 1, 1, 1.0, false, false));
  try {
    return open(bytes, opencl("half")).info().opencl_math == "half";
  } catch (const rtmobile::Error& e) {
    if (e.code() == rtmobile::ErrorCode::kUnsupported &&
        std::string(e.what()).find("cl_khr_fp16") != std::string::npos)
      return false;
    throw;
  }
}

// The arithmetic modes this device runs: float always, half with cl_khr_fp16.
const std::vector<const char*>& maths() {
  static const std::vector<const char*> all = [] {
    std::vector<const char*> m = {"float"};
    if (device_has_fp16()) {
      m.push_back("half");
    } else {
      std::printf("  (half arithmetic not exercised: the device does not report cl_khr_fp16; "
                  "the half kernels are compile-checked by opencl_kernels_compile)\n");
    }
    return m;
  }();
  return all;
}

}  // namespace

// Runs with or without a device: the fp16 scheme the half kernels use (inputs and products
// rounded to half, sums in float) keeps every test model within the f16 tolerance.
TEST_CASE("[no device] emulated half arithmetic stays within 1e-2 of float64") {
  const size_t frames = 70;
  for (size_t ci = 0; ci < configs().size(); ++ci) {
    const Config& c = configs()[ci];
    const auto model = rtm_test::random_model(static_cast<uint32_t>(ci + 101), c.kind, c.input,
                                              c.hidden, c.output, c.num_r, c.num_c, c.keep, c.f16,
                                              c.norm);
    const auto x = rtm_test::random_frames(frames * c.input, static_cast<uint32_t>(ci));
    const auto exact = rtm_test::reference_forward(model, x, frames);
    const auto half = rtm_test::reference_forward(model, x, frames, true);
    double worst = 0;
    for (size_t i = 0; i < exact.size(); ++i)
      worst = std::max(worst, std::fabs(half[i] - exact[i]));
    std::printf("  %-42s max |half emulation - float64| %.3g\n", c.what, worst);
    CHECK(worst <= 1e-2);
  }
}

TEST_CASE("OpenCL matches the CPU backend and the float64 reference") {
  const size_t frames = 70;  // crosses the 64-frame chunk
  for (size_t ci = 0; ci < configs().size(); ++ci) {
    const Config& c = configs()[ci];
    const auto model = rtm_test::random_model(static_cast<uint32_t>(ci + 101), c.kind, c.input,
                                              c.hidden, c.output, c.num_r, c.num_c, c.keep, c.f16,
                                              c.norm);
    const auto bytes = rtm_test::encode(model);
    const auto x = rtm_test::random_frames(frames * c.input, static_cast<uint32_t>(ci));
    const auto want = rtm_test::reference_forward(model, x, frames);

    auto cpu = open(bytes, {});
    std::vector<float> a(frames * c.output), b(frames * c.output);
    cpu.run(x.data(), frames, a.data());
    for (const char* math : maths()) {
      auto gpu = open(bytes, opencl(math));
      CHECK(gpu.info().isa.rfind("opencl:", 0) == 0);
      CHECK(gpu.info().opencl_math == math);
      CHECK(gpu.info().kind == (c.kind == 1 ? "gru" : "lstm"));
      CHECK(gpu.info().dense_weights == cpu.info().dense_weights);
      CHECK(gpu.info().stored_weights == cpu.info().stored_weights);
      gpu.run(x.data(), frames, b.data());
      const double vs_ref = max_diff_ref(b, want), vs_cpu = max_diff(a, b);
      std::printf("  %-42s %-5s max |opencl - cpu| %.3g, max |opencl - float64| %.3g\n", c.what,
                  math, vs_cpu, vs_ref);
      if (std::string(math) == "float") {
        CHECK(vs_cpu <= 1e-5);
        CHECK(vs_ref <= 1e-4);
      } else {  // half products: the f16 tolerance, and close to the emulation of them
        const auto emulated = rtm_test::reference_forward(model, x, frames, true);
        const double vs_emulated = max_diff_ref(b, emulated);
        std::printf("  %-42s %-5s max |opencl - half emulation| %.3g\n", "", math, vs_emulated);
        CHECK(vs_ref <= 1e-2);
        CHECK(vs_emulated <= 2e-3);
      }
    }
  }
}

TEST_CASE("OpenCL streaming in uneven chunks equals run() exactly") {
  const Config& c = configs()[2];
  const auto model = rtm_test::random_model(7, c.kind, c.input, c.hidden, c.output, c.num_r,
                                            c.num_c, c.keep, c.f16, c.norm);
  const auto bytes = rtm_test::encode(model);
  const size_t frames = 150;
  const auto x = rtm_test::random_frames(frames * c.input, 3);
  for (const char* math : maths()) {
    std::printf("  opencl_math=%s\n", math);
    auto session = open(bytes, opencl(math));
    std::vector<float> offline(frames * c.output);
    session.run(x.data(), frames, offline.data());

    for (size_t first : {size_t{1}, size_t{5}, size_t{64}, size_t{65}}) {
      auto stream = session.stream();
      std::vector<float> streamed(frames * c.output);
      rtm_test::push_in_growing_chunks(frames, first, [&](size_t t, size_t n) {
        stream.push(x.data() + t * c.input, n, streamed.data() + t * c.output);
      });
      CHECK(stream.frames_seen() == frames);
      CHECK(max_diff(streamed, offline) == 0.0);
    }
    // Two streams interleaved on one session keep their own state.
    auto s1 = session.stream(), s2 = session.stream();
    std::vector<float> y1(frames * c.output), y2(frames * c.output);
    for (size_t t = 0; t < frames; t += 10) {
      const size_t n = std::min<size_t>(10, frames - t);
      s1.push(x.data() + t * c.input, n, y1.data() + t * c.output);
      s2.push(x.data() + t * c.input, n, y2.data() + t * c.output);
    }
    CHECK(max_diff(y1, offline) == 0.0);
    CHECK(max_diff(y2, offline) == 0.0);
    s1.reset();
    std::vector<float> again(c.output);
    s1.push(x.data(), 1, again.data());
    for (size_t k = 0; k < c.output; ++k) CHECK(again[k] == offline[k]);

    // chunk_frames and frame_tile change the launches, not the arithmetic.
    rtmobile::SessionOptions o = opencl(math);
    o.chunk_frames = 7;
    o.frame_tile = 3;
    auto tuned = open(bytes, o);
    CHECK(tuned.info().chunk_frames == 7);
    std::vector<float> other(frames * c.output);
    tuned.run(x.data(), frames, other.data());
    CHECK(max_diff(other, offline) == 0.0);
  }
}

TEST_CASE("OpenCL options and errors") {
  const auto model = rtm_test::random_model(5, 1, 16, {32}, 4, 4, 2, 0.5, false, false);
  const auto bytes = rtm_test::encode(model);
  rtmobile::SessionOptions o = opencl();
  CHECK(open(bytes, o).info().weights == "f16");
  // opencl_math: 'auto' is half exactly where the device has cl_khr_fp16.
  const bool fp16 = maths().size() == 2;
  CHECK(open(bytes, o).info().opencl_math == (fp16 ? "half" : "float"));
  CHECK(open(bytes, opencl("float")).info().opencl_math == "float");
  if (!fp16) {
    CHECK_THROWS(rtmobile::Error, open(bytes, opencl("half")), "cl_khr_fp16");
  }
  CHECK_THROWS(rtmobile::Error, open(bytes, opencl("double")), "opencl_math must be");
  o = {};
  o.opencl_math = "float";
  CHECK_THROWS(rtmobile::Error, open(bytes, o), "device 'cpu' computes in float");
  CHECK(open(bytes, {}).info().opencl_math.empty());
  o = opencl();
  o.isa = "scalar";
  CHECK_THROWS(rtmobile::Error, open(bytes, o), "isa must be 'auto'");
  o = opencl();
  o.weights = "f32";
  CHECK_THROWS(rtmobile::Error, open(bytes, o), "f16");
  o = opencl();
  o.threads = -1;
  CHECK_THROWS(rtmobile::Error, open(bytes, o), "threads");
  o = opencl();
  o.chunk_frames = 5000;
  CHECK_THROWS(rtmobile::Error, open(bytes, o), "chunk_frames");
  auto session = open(bytes, opencl());
  CHECK_THROWS(rtmobile::Error, session.run(nullptr, 3, nullptr), "null");

  // A weight beyond the f16 range cannot go to the device.
  auto big = model;
  for (size_t i = 0; i < big.mats[0].w.size(); ++i)
    if (big.mats[0].mask[i]) {
      big.mats[0].w[i] = 1e5f;
      break;
    }
  const auto big_bytes = rtm_test::encode(big);
  CHECK_THROWS(rtmobile::Error, open(big_bytes, opencl()), "f16 range");

  // RTM_OPENCL_DEVICE picks platform:device; bad values are reported.
  setenv("RTM_OPENCL_DEVICE", "0:0", 1);
  CHECK(open(bytes, opencl()).info().isa.rfind("opencl:", 0) == 0);
  setenv("RTM_OPENCL_DEVICE", "99:0", 1);
  CHECK_THROWS(rtmobile::Error, open(bytes, opencl()), "no platform 99");
  setenv("RTM_OPENCL_DEVICE", "0:99", 1);
  CHECK_THROWS(rtmobile::Error, open(bytes, opencl()), "no device 99");
  setenv("RTM_OPENCL_DEVICE", "gpu", 1);
  CHECK_THROWS(rtmobile::Error, open(bytes, opencl()), "<platform>:<device>");
  unsetenv("RTM_OPENCL_DEVICE");
}

int main() {
  const std::string why = skip_reason();
  if (!why.empty()) {
    std::printf("SKIPPED: OpenCL cannot run on this machine: %s\n", why.c_str());
    std::printf("running only the cases that need no device\n");
    auto& all = rtm_test::cases();
    all.erase(std::remove_if(all.begin(), all.end(),
                             [](const rtm_test::Case& c) {
                               return std::string(c.name).rfind("[no device]", 0) != 0;
                             }),
              all.end());
  }
  return rtm_test::run_all();
}
