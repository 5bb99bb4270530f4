// The public API (rtmobile.hpp) over the Engine.
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
