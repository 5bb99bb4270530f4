// RTMobile C++ API example: the C app (app.c) through rtmobile.hpp, plus a device choice.
//
//   app_cpp MODEL.bspc [FRAMES] [--device cpu|opencl]
//
// Loads the model from the file and from memory, runs FRAMES deterministic frames offline,
// streams them in uneven chunks, and checks that streaming and the from-memory session give
// exactly the offline logits. rtmobile::Error (and FormatError) carry the library's message and
// an ErrorCode; any failure prints it and exits non-zero.
#include <rtmobile/rtmobile.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<float> make_frames(size_t frames, size_t dim) {  // same input as app.c
  std::vector<float> x(frames * dim);
  unsigned long state = 12345UL;
  for (size_t t = 0; t < frames; ++t)
    for (size_t k = 0; k < dim; ++k) {
      state = (state * 1103515245UL + 12345UL) & 0x7fffffffUL;
      const double noise = static_cast<double>(state) / 0x7fffffffUL - 0.5;
      x[t * dim + k] = static_cast<float>(
          std::sin(0.05 * static_cast<double>(t) * static_cast<double>(k % 7 + 1) +
                   0.3 * static_cast<double>(k)) +
          0.2 * noise);
    }
  return x;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void require_equal(const std::vector<float>& want, const std::vector<float>& got,
                   const char* what) {
  size_t differ = 0;
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (want[i] != got[i]) {
      ++differ;
      worst = std::max(worst, static_cast<double>(std::fabs(want[i] - got[i])));
    }
  if (differ != 0)
    throw std::runtime_error(std::string(what) + " differ from offline at " +
                             std::to_string(differ) + " logits (max " + std::to_string(worst) +
                             ")");
}

int run(int argc, char** argv) {
  std::string path, device = "cpu";
  size_t frames = 300;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty() || positional.size() > 2) {
    std::fprintf(stderr, "usage: %s MODEL.bspc [FRAMES] [--device cpu|opencl]\n", argv[0]);
    return 2;
  }
  path = positional[0];
  if (positional.size() == 2) {
    const long v = std::strtol(positional[1].c_str(), nullptr, 10);
    if (v < 1 || v > 1000000) {
      std::fprintf(stderr, "app_cpp: FRAMES must be in [1, 1000000]\n");
      return 2;
    }
    frames = static_cast<size_t>(v);
  }

  rtmobile::SessionOptions options;
  options.device = device;
  std::printf("rtmobile %s (C++ API)\n", rtmobile::version());
  auto session = rtmobile::Session::from_file(path, options);
  const rtmobile::ModelInfo& info = session.info();
  std::printf("model %s: %s, input %u, hidden [", path.c_str(), info.kind.c_str(),
              info.input_dim);
  for (size_t l = 0; l < info.hidden_dims.size(); ++l)
    std::printf("%s%u", l == 0 ? "" : ", ", info.hidden_dims[l]);
  std::printf("], output %u, %llu of %llu weights stored (%.2fx), isa %s, %d thread(s)",
              info.output_dim, static_cast<unsigned long long>(info.stored_weights),
              static_cast<unsigned long long>(info.dense_weights), info.compression_rate,
              info.isa.c_str(), info.threads);
  if (!info.opencl_math.empty()) std::printf(", opencl_math %s", info.opencl_math.c_str());
  std::printf("\n");

  const size_t in_dim = info.input_dim, out_dim = info.output_dim;
  const std::vector<float> x = make_frames(frames, in_dim);
  std::vector<float> offline(frames * out_dim), other(frames * out_dim);
  session.run(x.data(), frames, offline.data());  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  session.run(x.data(), frames, offline.data());
  const double ms = ms_since(t0);
  std::printf("offline: %zu frames in %.3f ms (%.1f us/frame)\n", frames, ms,
              1e3 * ms / static_cast<double>(frames));

  const std::vector<char> bytes = read_file(path);
  auto from_memory = rtmobile::Session::from_memory(bytes.data(), bytes.size(), options);
  from_memory.run(x.data(), frames, other.data());
  require_equal(offline, other, "from-memory logits");
  std::printf("from memory (%zu bytes): same logits as from the file\n", bytes.size());

  rtmobile::Stream stream = session.stream();
  const size_t pattern[] = {1, 7, 64, 3, 65, 13};
  size_t chunks = 0;
  t0 = std::chrono::steady_clock::now();
  for (size_t t = 0; t < frames; ++chunks) {
    const size_t n = std::min(pattern[chunks % std::size(pattern)], frames - t);
    stream.push(x.data() + t * in_dim, n, other.data() + t * out_dim);
    t += n;
  }
  const double stream_ms = ms_since(t0);
  if (stream.frames_seen() != frames) throw std::runtime_error("stream lost frames");
  require_equal(offline, other, "streamed logits");
  std::printf("stream: %zu chunks in %.3f ms, logits identical to offline\n", chunks, stream_ms);
  std::printf("OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const rtmobile::Error& e) {
    std::fprintf(stderr, "app_cpp: rtmobile error %d: %s\n", static_cast<int>(e.code()),
                 e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "app_cpp: %s\n", e.what());
  }
  return 1;
}
