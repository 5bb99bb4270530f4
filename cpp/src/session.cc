// The public API (rtmobile.hpp) over the Engine.
#include <utility>

#include "format/model_bytes.h"
#include "kernels/kernels.h"
#include "rtmobile/rtmobile.hpp"
#include "runtime/engine.h"

namespace rtmobile {

class Session::Impl {
 public:
  Impl(ModelBytes bytes, const SessionOptions& options)
      : backend(make_backend(std::move(bytes), options)) {}
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
  return Session(std::make_shared<Impl>(ModelBytes::map_file(path), options));
}

Session Session::from_memory(const void* data, size_t size, const SessionOptions& options) {
  if (data == nullptr && size != 0)
    throw Error(ErrorCode::kInvalidArgument, "model data is null but size is non-zero");
  return Session(std::make_shared<Impl>(ModelBytes::copy(data, size), options));
}

const ModelInfo& Session::info() const { return impl_->backend->info(); }

void Session::run(const float* frames, size_t num_frames, float* logits) {
  // A fresh zero state per call: run() never sees another call's history.
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
