// libFuzzer target: arbitrary bytes through rtmobile::Session::from_memory, and every model
// that loads through run() and a Stream. See docs/fuzzing.md for how to build and run it.
//
// A finding is anything other than a clean rtmobile::Error from from_memory: a sanitizer
// report (ASan, UBSan, LSan), a crash, any other exception, an Error from run()/push() on a
// model that loaded, or one of the checks below failing (abort): results (bit-identical
// streaming and tiling, finite logits where a bound says so) and heap use (within the
// session's memory plan).
//
// Why a custom mutator fixes the checksum: the header's CRC-32 covers every byte after the
// header, so almost every mutation of a valid file would be rejected by the checksum before
// the directory, the sections and the arrays are ever looked at. LLVMFuzzerCustomMutator lets
// libFuzzer mutate as usual and then stores the correct CRC, so mutations reach the deep
// validation and the engine. The fix is done in the mutator rather than in the fuzz body so
// that every file libFuzzer saves (corpus entries, crash-*, minimized crashes) is exactly the
// bytes the library saw: it reproduces as is with this binary, the rtmobile CLI or the Python
// reader. Inputs that keep a wrong checksum still come in from seeds and regression files.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sanitizer/allocator_interface.h>

#include "format/crc32.h"
#include "format/half.h"
#include "format/model_view.h"
#include "rtmobile/rtmobile.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

constexpr uint8_t kMagic[8] = {'B', 'S', 'P', 'C', '\r', '\n', 0x1A, '\n'};
constexpr size_t kHeaderSize = 64;      // docs/bspc.md: the CRC covers [64, file_size)
constexpr size_t kChecksumOffset = 36;  // u32 checksum in the file header

// Frames per run: 7 crosses the chunk (3) and tile (2) boundaries of the second session below
// and ends in a partial tile. Files may declare input_dim up to 2^24 with only a few hundred
// bytes, so the frames this harness allocates are capped instead (at least one frame always
// runs, so a huge input_dim is still executed).
constexpr size_t kFrames = 7;
constexpr size_t kFrameFloatBudget = size_t{1} << 16;
constexpr double kMaxInput = 2.0;  // |frame value| <= 2, see make_frames

// Above this bound on any pre-activation or logit, float overflow (and from it inf - inf =
// NaN) is a legitimate result of a valid model with extreme weights, not a bug; FLT_MAX is
// 3.4e38, so the margin also covers float rounding of the partial sums.
constexpr double kFiniteBound = 1e36;
constexpr double kHalfMax = 65504.0;  // largest finite binary16

bool has_bspc_header(const uint8_t* data, size_t size) {
  return size >= kHeaderSize && std::memcmp(data, kMagic, sizeof kMagic) == 0;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "bspc_fuzz: %s\n", what);
  std::abort();
}

// Heap bytes allocated on this thread while a meter runs, through the sanitizer allocator's
// hooks (every malloc and operator new): checks the memory plan, ModelInfo::planned_bytes,
// which docs/runtime.md promises is an upper bound of what loading and running allocate.
// Only the calling thread counts (sessions here have no worker threads; libFuzzer's own
// threads must not). Frees of blocks from before the meter started can only lower the figure.
struct HeapCount {
  bool counting = false;
  int64_t live = 0, peak = 0;
};
thread_local HeapCount t_heap;

void count_malloc(const volatile void* /*block*/, size_t size) {
  if (!t_heap.counting) return;
  t_heap.live += static_cast<int64_t>(size);
  t_heap.peak = std::max(t_heap.peak, t_heap.live);
}

void count_free(const volatile void* block) {
  if (!t_heap.counting || block == nullptr) return;
  t_heap.live -= static_cast<int64_t>(
      __sanitizer_get_allocated_size(const_cast<const void*>(block)));
}

// Counts from construction; peak() is the most the live total rose above its starting point.
class HeapMeter {
 public:
  HeapMeter() { t_heap = {true, 0, 0}; }
  ~HeapMeter() { t_heap.counting = false; }
  HeapMeter(const HeapMeter&) = delete;
  HeapMeter& operator=(const HeapMeter&) = delete;
  uint64_t peak() const { return static_cast<uint64_t>(t_heap.peak); }
};

// Bytes a call to run() may allocate, all outside the plan: its fresh recurrent state
// (docs/runtime.md: "each stream adds its recurrent state"), one 64-byte aligned buffer per
// layer (two for an LSTM), and the small vectors that hold them.
uint64_t state_allowance(const rtmobile::ModelInfo& info) {
  const uint64_t buffers = info.kind == "lstm" ? 2 : 1;
  uint64_t bytes = 0;
  for (uint32_t h : info.hidden_dims) bytes += buffers * ((uint64_t{h} * 4 + 63) / 64 * 64 + 256);
  return bytes;
}

[[noreturn]] void fail_memory(const char* when, uint64_t peak, uint64_t bound) {
  std::fprintf(stderr, "bspc_fuzz: %s allocated %llu bytes, above the bound of %llu\n", when,
               static_cast<unsigned long long>(peak), static_cast<unsigned long long>(bound));
  std::abort();
}

// What loading may allocate beyond planned_bytes: nothing. (This fuzzer found the plan once
// left out the fixed bookkeeping per session and per matrix; memory_plan.cc now counts it.)
uint64_t unplanned_allowance(const rtmobile::ModelInfo&) { return 0; }

// from_memory, with the load checked against the plan.
rtmobile::Session load(const uint8_t* data, size_t size, const rtmobile::SessionOptions& options) {
  uint64_t peak = 0;
  std::optional<rtmobile::Session> session;
  {
    HeapMeter meter;
    session.emplace(rtmobile::Session::from_memory(data, size, options));
    peak = meter.peak();
  }
  const uint64_t bound = session->info().planned_bytes + unplanned_allowance(session->info());
  if (peak > bound) fail_memory("loading", peak, bound);
  return std::move(*session);
}

// Values in [-kMaxInput, kMaxInput], varied, and cheap to make (wide inputs are common).
std::vector<float> make_frames(size_t frames, size_t dim) {
  std::vector<float> x(frames * dim);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(static_cast<double>(i * 37 % 101) / 50.0 * kMaxInput - kMaxInput);
  return x;
}

// Stored value i of a matrix, whichever its dtype.
double weight(const rtmobile::BspMatrixView& m, uint64_t i) {
  return m.dtype == rtmobile::DType::kF16
             ? rtmobile::half_to_float(static_cast<const uint16_t*>(m.values)[i])
             : static_cast<const float*>(m.values)[i];
}

double abs_sum(const rtmobile::BspMatrixView& m) {
  double sum = 0;
  for (uint64_t i = 0; i < m.value_count; ++i) sum += std::fabs(weight(m, i));
  return sum;
}

double max_abs(const rtmobile::BspMatrixView& m) {
  double largest = 0;
  for (uint64_t i = 0; i < m.value_count; ++i)
    largest = std::fmax(largest, std::fabs(weight(m, i)));
  return largest;
}

double max_abs(const rtmobile::VectorView& v) {
  double largest = 0;
  for (uint32_t i = 0; i < v.length; ++i) largest = std::fmax(largest, std::fabs(v.values[i]));
  return largest;
}

// Whether float arithmetic on this model must give finite logits for make_frames' input: a
// bound on every gate pre-activation and every logit stays far below FLT_MAX. A row's sum of
// |w| is at most its matrix's total; hidden states are bounded by 1 (tanh, sigmoid and the
// GRU's convex mix; the LSTM cell only reaches h through tanh). `to_f16`: the session converts
// f32 weights to f16, which overflows above 65504.
bool logits_must_be_finite(const rtmobile::ModelView& v, bool to_f16) {
  if (to_f16)
    for (const rtmobile::BspMatrixView& m : v.matrices)
      if (m.dtype == rtmobile::DType::kF32 && max_abs(m) > kHalfMax) return false;
  double input = kMaxInput;  // of the first layer, after the normalization
  if (v.has_norm)
    for (uint32_t k = 0; k < v.input_dim; ++k)
      input = std::fmax(input, (kMaxInput + std::fabs(v.norm_mean[k])) /
                                   std::sqrt(double{v.norm_var[k]} + v.norm_eps));
  constexpr double kHidden = 1.001;  // 1 plus the activations' few-ulp error
  for (uint32_t l = 0; l < v.num_layers; ++l) {
    const double x = l == 0 ? input : kHidden;
    const double gate = abs_sum(v.matrices[2 * l]) * x + max_abs(v.biases[2 * l]) +
                        abs_sum(v.matrices[2 * l + 1]) * kHidden + max_abs(v.biases[2 * l + 1]);
    if (!(gate <= kFiniteBound)) return false;
  }
  const uint32_t out = 2 * v.num_layers;
  return abs_sum(v.matrices[out]) * kHidden + max_abs(v.biases[out]) <= kFiniteBound;
}

void check_finite(const std::vector<float>& logits) {
  for (float y : logits)
    if (!std::isfinite(y)) fail("non-finite logit from a model whose bound says finite");
}

// One model, one configuration: run() over the frames, then the same frames pushed through a
// Stream in uneven pieces, which must give the same bits (docs/runtime.md, Determinism).
std::vector<float> run_and_stream(rtmobile::Session& session, const std::vector<float>& x,
                                  size_t frames) {
  const rtmobile::ModelInfo& info = session.info();
  const size_t in = info.input_dim, out = info.output_dim;
  std::vector<float> logits(frames * out);
  {
    HeapMeter meter;
    session.run(x.data(), frames, logits.data());
    if (meter.peak() > state_allowance(info))
      fail_memory("run()", meter.peak(), state_allowance(info));
  }

  rtmobile::Stream stream = session.stream();
  std::vector<float> streamed(frames * out);
  for (size_t t = 0, piece = 1; t < frames; t += piece, ++piece) {
    const size_t n = std::min(piece, frames - t);
    stream.push(x.data() + t * in, n, streamed.data() + t * out);
  }
  if (stream.frames_seen() != frames) fail("Stream::frames_seen disagrees with the frames pushed");
  if (std::memcmp(streamed.data(), logits.data(), logits.size() * sizeof(float)) != 0)
    fail("Stream::push in pieces differs from Session::run");
  stream.reset();
  std::vector<float> first(out);
  stream.push(x.data(), 1, first.data());
  if (std::memcmp(first.data(), logits.data(), out * sizeof(float)) != 0)
    fail("Stream::reset did not restore the zero state");
  return logits;
}

void exercise(const uint8_t* data, size_t size, rtmobile::Session& session) {
  const rtmobile::ModelInfo& info = session.info();
  const size_t widest = std::max<size_t>({info.input_dim, info.output_dim, 1});
  const size_t frames = std::clamp<size_t>(kFrameFloatBudget / widest, 1, kFrames);
  const std::vector<float> x = make_frames(frames, info.input_dim);
  const std::vector<float> logits = run_and_stream(session, x, frames);

  // The session accepted the bytes, so the reader's view of them is valid: use it for the
  // finiteness bound. (from_memory copies into an aligned buffer; do the same for the view.)
  std::vector<uint32_t> aligned((size + 3) / 4);
  std::memcpy(aligned.data(), data, size);
  const rtmobile::ModelView view =
      rtmobile::parse_bspc(reinterpret_cast<const uint8_t*>(aligned.data()), size);
  if (logits_must_be_finite(view, false)) check_finite(logits);

  // Same kernels, other tiling: chunks of 3 frames and SpMM tiles of 2 must not change a bit.
  rtmobile::SessionOptions tiled;
  tiled.threads = 1;
  tiled.isa = info.isa;
  tiled.chunk_frames = 3;
  tiled.frame_tile = 2;
  // The frames are finite and the first session already checked them ("raise", the default);
  // skipping the check here saves a pass over wide inputs and covers the other option.
  tiled.nonfinite = "propagate";
  rtmobile::Session retiled = load(data, size, tiled);
  const std::vector<float> again = run_and_stream(retiled, x, frames);
  if (std::memcmp(again.data(), logits.data(), logits.size() * sizeof(float)) != 0)
    fail("chunk_frames/frame_tile changed the logits");

  // The other weight precision and the portable kernels: no bitwise reference, but the same
  // crash, sanitizer and finiteness checks.
  const bool stored_f16 = view.matrices[0].dtype == rtmobile::DType::kF16;
  rtmobile::SessionOptions converted;
  converted.threads = 1;
  converted.isa = "scalar";
  converted.weights = stored_f16 ? "f32" : "f16";
  converted.nonfinite = "propagate";
  rtmobile::Session other = load(data, size, converted);
  const std::vector<float> converted_logits = run_and_stream(other, x, frames);
  if (logits_must_be_finite(view, !stored_f16)) check_finite(converted_logits);
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int /*seed*/) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if (has_bspc_header(data, size)) {
    const uint32_t crc = rtmobile::crc32(data + kHeaderSize, size - kHeaderSize);
    std::memcpy(data + kChecksumOffset, &crc, sizeof crc);
  }
  return size;
}

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rtmobile::SessionOptions options;
  options.threads = 1;  // worker threads would make coverage, and so the fuzzing, nondeterministic
  std::optional<rtmobile::Session> session;
  try {
    session.emplace(load(data, size, options));
  } catch (const rtmobile::Error&) {
    return 0;  // a rejection: the expected outcome for almost every input
  }
  // The model loaded: from here on any exception is a finding, rtmobile::Error included.
  try {
    exercise(data, size, *session);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bspc_fuzz: a model that loaded threw: %s\n", e.what());
    std::abort();
  }
  return 0;
}
