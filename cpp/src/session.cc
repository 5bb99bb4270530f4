// The public API (rtmobile.hpp) over the Engine.
#include <algorithm>
#include <cmath>
#include <utility>

#include "format/model_bytes.h"
#include "kernels/kernels.h"
#include "rtmobile/rtmobile.hpp"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace rtmobile {
namespace {

bool check_finite_input(const std::string& nonfinite) {
  if (nonfinite == "raise") return true;
  if (nonfinite == "propagate") return false;
  throw Error(ErrorCode::kInvalidArgument,
              "nonfinite must be 'raise' or 'propagate', got '" + nonfinite + "'");
}

}  // namespace

class Session::Impl {
 public:
  Impl(ModelBytes bytes, const SessionOptions& options)
      : check_finite(check_finite_input(options.nonfinite)),
        backend(make_backend(std::move(bytes), options)) {}

  // Before anything runs, so a rejected call leaves a stream's state untouched.
  void check_frames(const float* frames, size_t num_frames) const {
    if (!check_finite || frames == nullptr) return;
    const size_t dim = backend->info().input_dim;
    const size_t n = num_frames * dim;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(frames[i]))
        throw Error(ErrorCode::kNonFinite,
                    "input frame " + std::to_string(i / dim) + ", feature " +
                        std::to_string(i % dim) + " is " +
                        (std::isnan(frames[i]) ? "NaN" : "infinite") +
                        "; nothing was processed (nonfinite='propagate' lets it through)");
    }
  }

  bool check_finite;
  std::unique_ptr<Backend> backend;
};

struct Stream::State {
  RecurrentState recurrent;
};

Session::Session(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

Session Session::from_file(const std::string& path, const SessionOptions& options) {
  return Session(std::make_shared<Impl>(
      ModelBytes::read_file(path, memory_limit_bytes(options.memory_limit_mb)), options));
}

Session Session::from_memory(const void* data, size_t size, const SessionOptions& options) {
  if (data == nullptr && size != 0)
    throw Error(ErrorCode::kInvalidArgument, "model data is null but size is non-zero");
  return Session(std::make_shared<Impl>(ModelBytes::copy(data, size), options));
}

const ModelInfo& Session::info() const { return impl_->backend->info(); }

void Session::run(const float* frames, size_t num_frames, float* logits) {
  // A fresh zero state per call: run() never sees another call's history.
  impl_->check_frames(frames, num_frames);
  RecurrentState state = impl_->backend->new_state();
  impl_->backend->process(state, frames, num_frames, logits);
}

Stream Session::stream() { return Stream(impl_); }

Stream::Stream(std::shared_ptr<Session::Impl> impl)
    : impl_(std::move(impl)), state_(std::make_unique<State>()) {
  state_->recurrent = impl_->backend->new_state();
}
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
Stream::~Stream() = default;

void Stream::push(const float* frames, size_t num_frames, float* logits) {
  impl_->check_frames(frames, num_frames);
  impl_->backend->process(state_->recurrent, frames, num_frames, logits);
}

void Stream::reset() { impl_->backend->reset(state_->recurrent); }

uint64_t Stream::frames_seen() const { return state_->recurrent.frames; }

namespace {

// The state's arrays in their public order: per layer h, then c (LSTM).
template <typename State, typename Fn>
void for_each_state_array(State& state, Fn fn) {
  for (size_t l = 0; l < state.h.size(); ++l) {
    fn(state.h[l], l, "h");
    if (l < state.c.size()) fn(state.c[l], l, "c");
  }
}

}  // namespace

size_t Stream::state_size() const {
  size_t n = 0;
  for_each_state_array(state_->recurrent, [&](const auto& a, size_t, const char*) {
    n += a.size();
  });
  return n;
}

void Stream::get_state(float* out, size_t size) const {
  const size_t want = state_size();
  if (out == nullptr || size != want)
    throw Error(ErrorCode::kInvalidArgument,
                "get_state: the buffer must hold state_size() = " + std::to_string(want) +
                    " floats, got " + (out == nullptr ? "a null pointer" : std::to_string(size)));
  for_each_state_array(state_->recurrent, [&](const auto& a, size_t, const char*) {
    std::copy(a.data(), a.data() + a.size(), out);
    out += a.size();
  });
}

void Stream::set_state(const float* state, size_t size) {
  const size_t want = state_size();
  if (state == nullptr || size != want)
    throw Error(ErrorCode::kInvalidArgument,
                "set_state: the state must hold state_size() = " + std::to_string(want) +
                    " floats, got " +
                    (state == nullptr ? "a null pointer" : std::to_string(size)));
  if (impl_->check_finite) {  // checked whole before anything changes
    const float* p = state;
    for_each_state_array(state_->recurrent, [&](const auto& a, size_t layer, const char* name) {
      for (size_t u = 0; u < a.size(); ++u, ++p)
        if (!std::isfinite(*p))
          throw Error(ErrorCode::kNonFinite,
                      "set_state: layer " + std::to_string(layer) + " " + name + "[" +
                          std::to_string(u) + "] is " + (std::isnan(*p) ? "NaN" : "infinite") +
                          "; the state was left unchanged (nonfinite='propagate' allows it)");
    });
  }
  for_each_state_array(state_->recurrent, [&](auto& a, size_t, const char*) {
    std::copy(state, state + a.size(), a.data());
    state += a.size();
  });
}

const ModelInfo& Stream::info() const { return impl_->backend->info(); }

std::vector<std::string> available_isas() {
  const KernelTable* tables[8];
  const size_t n = available_kernel_tables(tables, 8);
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.emplace_back(tables[i]->isa);
  return names;
}

const char* version() { return RTM_VERSION; }

}  // namespace rtmobile
