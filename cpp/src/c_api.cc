// The C API (rtmobile.h) over the C++ API (rtmobile.hpp). Every entry point catches
// everything: the C++ exception's ErrorCode becomes the rtm_status, anything else (including
// std::bad_alloc) becomes RTM_INTERNAL, and the message goes to the object's per-thread
// last-error slot or the caller's buffer.
#include "rtmobile/rtmobile.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rtmobile/rtmobile.hpp"

static_assert(RTM_OK == static_cast<int>(rtmobile::ErrorCode::kOk));
static_assert(RTM_INVALID_ARGUMENT == static_cast<int>(rtmobile::ErrorCode::kInvalidArgument));
static_assert(RTM_FORMAT == static_cast<int>(rtmobile::ErrorCode::kFormat));
static_assert(RTM_IO == static_cast<int>(rtmobile::ErrorCode::kIo));
static_assert(RTM_UNSUPPORTED == static_cast<int>(rtmobile::ErrorCode::kUnsupported));
static_assert(RTM_INTERNAL == static_cast<int>(rtmobile::ErrorCode::kInternal));
static_assert(RTM_RESOURCE_LIMIT == static_cast<int>(rtmobile::ErrorCode::kResourceLimit));
static_assert(RTM_NONFINITE == static_cast<int>(rtmobile::ErrorCode::kNonFinite));

namespace {

constexpr const char* kOutOfMemory = "out of memory";
constexpr const char* kMessageLost = "out of memory (the error message could not be stored)";

// Last error message per calling thread, so that threads sharing a session never read or
// overwrite each other's message. Strings are map nodes: their addresses survive rehashing,
// and only the owning thread (or destruction) changes them.
class LastError {
 public:
  void set(const char* message) noexcept {
    const std::thread::id me = std::this_thread::get_id();
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_[me] = message;
      return;
    } catch (...) {
    }
    // Could not store it (out of memory): never leave an older, unrelated message in place.
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_.erase(me);
    } catch (...) {
    }
    lost_.store(true, std::memory_order_relaxed);
  }

  const char* get() const noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = messages_.find(std::this_thread::get_id());
      if (it != messages_.end()) return it->second.c_str();
    } catch (...) {
    }
    return lost_.load(std::memory_order_relaxed) ? kMessageLost : "";
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::thread::id, std::string> messages_;
  std::atomic<bool> lost_{false};
};

// Where a failure's message goes: an object's LastError, or the caller's buffer.
struct Sink {
  LastError* last = nullptr;
  char* buf = nullptr;
  size_t len = 0;

  void write(const char* message) const noexcept {
    if (last != nullptr) last->set(message);
    if (buf != nullptr && len > 0) {
      const size_t n = std::min(std::strlen(message), len - 1);
      std::memcpy(buf, message, n);
      buf[n] = '\0';
    }
  }
};

rtm_status fail(const Sink& sink, rtm_status status, const char* message) noexcept {
  sink.write(message);
  return status;
}

// Runs fn, turning every exception into a status and a message.
template <typename Fn>
rtm_status guarded(const Sink& sink, Fn&& fn) noexcept {
  try {
    fn();
    return RTM_OK;
  } catch (const rtmobile::Error& e) {
    return fail(sink, static_cast<rtm_status>(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(sink, RTM_INTERNAL, kOutOfMemory);
  } catch (const std::exception& e) {
    return fail(sink, RTM_INTERNAL, e.what());
  } catch (...) {
    return fail(sink, RTM_INTERNAL, "unknown internal error");
  }
}

rtmobile::SessionOptions to_options(const rtm_options* options) {
  rtmobile::SessionOptions o;
  if (options != nullptr) {
    o.threads = options->threads;
    if (options->isa != nullptr) o.isa = options->isa;
    if (options->device != nullptr) o.device = options->device;
    o.memory_limit_mb = options->memory_limit_mb;
    if (options->nonfinite != nullptr) o.nonfinite = options->nonfinite;
  }
  return o;
}

}  // namespace

struct rtm_session {
  explicit rtm_session(rtmobile::Session s) : session(std::move(s)) {}
  rtmobile::Session session;
  mutable LastError last_error;
};

struct rtm_stream {
  explicit rtm_stream(rtmobile::Stream s) : stream(std::move(s)) {}
  rtmobile::Stream stream;
  mutable LastError last_error;
};

namespace {

Sink sink_of(const rtm_session* s) { return Sink{&s->last_error}; }
Sink sink_of(const rtm_stream* s) { return Sink{&s->last_error}; }

// Shared by the queries: session and out must be non-null.
template <typename T, typename Get>
rtm_status query(const rtm_session* session, T* out, const char* what, Get get) noexcept {
  if (session == nullptr) return RTM_INVALID_ARGUMENT;
  if (out == nullptr) return fail(sink_of(session), RTM_INVALID_ARGUMENT, what);
  return guarded(sink_of(session), [&] { *out = get(session->session.info()); });
}

rtm_status check_buffers(const Sink& sink, const char* fn, const float* frames, size_t num_frames,
                         const float* logits) noexcept {
  if (num_frames == 0 || (frames != nullptr && logits != nullptr)) return RTM_OK;
  const std::string_view which = frames == nullptr && logits == nullptr ? "frames and logits"
                                 : frames == nullptr                   ? "frames"
                                                                       : "logits";
  try {
    const std::string message = std::string(fn) + ": " + std::string(which) +
                                " is NULL but num_frames is " + std::to_string(num_frames);
    return fail(sink, RTM_INVALID_ARGUMENT, message.c_str());
  } catch (...) {
    return fail(sink, RTM_INVALID_ARGUMENT, "frames or logits is NULL but num_frames is not 0");
  }
}

// "<what> <index> out of range [0, <size>)"
rtm_status out_of_range(const Sink& sink, const char* what, size_t index, size_t size) noexcept {
  try {
    const std::string message = std::string(what) + " " + std::to_string(index) +
                                " out of range [0, " + std::to_string(size) + ")";
    return fail(sink, RTM_INVALID_ARGUMENT, message.c_str());
  } catch (...) {
    return fail(sink, RTM_INVALID_ARGUMENT, what);
  }
}

}  // namespace

extern "C" {

rtm_options rtm_options_default(void) {
  rtm_options o;
  o.threads = 0;
  o.isa = "auto";
  o.device = "cpu";
  o.memory_limit_mb = 0;
  o.nonfinite = "raise";
  return o;
}

const char* rtm_status_string(rtm_status status) {
  switch (status) {
    case RTM_OK: return "OK";
    case RTM_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case RTM_FORMAT: return "FORMAT";
    case RTM_IO: return "IO";
    case RTM_UNSUPPORTED: return "UNSUPPORTED";
    case RTM_INTERNAL: return "INTERNAL";
    case RTM_RESOURCE_LIMIT: return "RESOURCE_LIMIT";
    case RTM_NONFINITE: return "NONFINITE";
  }
  return "UNKNOWN";
}

const char* rtm_version(void) { return rtmobile::version(); }

rtm_status rtm_available_isa(size_t index, const char** name) {
  if (name == nullptr) return RTM_INVALID_ARGUMENT;
  *name = nullptr;
  try {
    // Filled once (thread-safe static initialisation); the strings never move afterwards.
    static const std::vector<std::string> isas = rtmobile::available_isas();
    if (index >= isas.size()) return RTM_INVALID_ARGUMENT;
    *name = isas[index].c_str();
    return RTM_OK;
  } catch (...) {
    return RTM_INTERNAL;
  }
}

rtm_status rtm_session_create_from_file(const char* path, const rtm_options* options,
                                        rtm_session** out, char* err_buf, size_t err_len) {
  const Sink sink{nullptr, err_buf, err_len};
  if (err_buf != nullptr && err_len > 0) err_buf[0] = '\0';
  if (out == nullptr)
    return fail(sink, RTM_INVALID_ARGUMENT, "rtm_session_create_from_file: out is NULL");
  *out = nullptr;
  if (path == nullptr)
    return fail(sink, RTM_INVALID_ARGUMENT, "rtm_session_create_from_file: path is NULL");
  return guarded(sink, [&] {
    *out = new rtm_session(rtmobile::Session::from_file(path, to_options(options)));
  });
}

rtm_status rtm_session_create_from_memory(const void* data, size_t size,
                                          const rtm_options* options, rtm_session** out,
                                          char* err_buf, size_t err_len) {
  const Sink sink{nullptr, err_buf, err_len};
  if (err_buf != nullptr && err_len > 0) err_buf[0] = '\0';
  if (out == nullptr)
    return fail(sink, RTM_INVALID_ARGUMENT, "rtm_session_create_from_memory: out is NULL");
  *out = nullptr;
  if (data == nullptr && size != 0)
    return fail(sink, RTM_INVALID_ARGUMENT,
                "rtm_session_create_from_memory: data is NULL but size is not 0");
  return guarded(sink, [&] {
    *out = new rtm_session(rtmobile::Session::from_memory(data, size, to_options(options)));
  });
}

void rtm_session_destroy(rtm_session* session) { delete session; }

const char* rtm_session_last_error(const rtm_session* session) {
  if (session == nullptr) return "rtm_session_last_error: session is NULL";
  return session->last_error.get();
}

rtm_status rtm_session_run(rtm_session* session, const float* frames, size_t num_frames,
                           float* logits) {
  if (session == nullptr) return RTM_INVALID_ARGUMENT;
  const Sink sink = sink_of(session);
  const rtm_status st = check_buffers(sink, "rtm_session_run", frames, num_frames, logits);
  if (st != RTM_OK) return st;
  return guarded(sink, [&] { session->session.run(frames, num_frames, logits); });
}

rtm_status rtm_session_input_dim(const rtm_session* session, size_t* out) {
  return query(session, out, "rtm_session_input_dim: out is NULL",
               [](const rtmobile::ModelInfo& i) { return size_t{i.input_dim}; });
}

rtm_status rtm_session_output_dim(const rtm_session* session, size_t* out) {
  return query(session, out, "rtm_session_output_dim: out is NULL",
               [](const rtmobile::ModelInfo& i) { return size_t{i.output_dim}; });
}

rtm_status rtm_session_num_layers(const rtm_session* session, size_t* out) {
  return query(session, out, "rtm_session_num_layers: out is NULL",
               [](const rtmobile::ModelInfo& i) { return i.hidden_dims.size(); });
}

rtm_status rtm_session_hidden_dim(const rtm_session* session, size_t layer, size_t* out) {
  if (session == nullptr) return RTM_INVALID_ARGUMENT;
  const size_t layers = session->session.info().hidden_dims.size();
  if (out != nullptr && layer >= layers)
    return out_of_range(sink_of(session), "rtm_session_hidden_dim: layer", layer, layers);
  return query(session, out, "rtm_session_hidden_dim: out is NULL",
               [layer](const rtmobile::ModelInfo& i) { return size_t{i.hidden_dims[layer]}; });
}

rtm_status rtm_session_kind(const rtm_session* session, const char** out) {
  return query(session, out, "rtm_session_kind: out is NULL",
               [](const rtmobile::ModelInfo& i) { return i.kind.c_str(); });
}

rtm_status rtm_session_label(const rtm_session* session, size_t index, const char** out) {
  if (session == nullptr) return RTM_INVALID_ARGUMENT;
  const size_t labels = session->session.info().labels.size();
  if (out != nullptr && index >= labels) {
    *out = nullptr;
    return out_of_range(sink_of(session), "rtm_session_label: index", index, labels);
  }
  return query(session, out, "rtm_session_label: out is NULL",
               [index](const rtmobile::ModelInfo& i) { return i.labels[index].c_str(); });
}

rtm_status rtm_session_compression_rate(const rtm_session* session, double* out) {
  return query(session, out, "rtm_session_compression_rate: out is NULL",
               [](const rtmobile::ModelInfo& i) { return i.compression_rate; });
}

rtm_status rtm_session_isa(const rtm_session* session, const char** out) {
  return query(session, out, "rtm_session_isa: out is NULL",
               [](const rtmobile::ModelInfo& i) { return i.isa.c_str(); });
}

rtm_status rtm_session_threads(const rtm_session* session, int* out) {
  return query(session, out, "rtm_session_threads: out is NULL",
               [](const rtmobile::ModelInfo& i) { return i.threads; });
}

rtm_status rtm_stream_create(rtm_session* session, rtm_stream** out) {
  if (session == nullptr) {
    if (out != nullptr) *out = nullptr;
    return RTM_INVALID_ARGUMENT;
  }
  const Sink sink = sink_of(session);
  if (out == nullptr) return fail(sink, RTM_INVALID_ARGUMENT, "rtm_stream_create: out is NULL");
  *out = nullptr;
  return guarded(sink, [&] { *out = new rtm_stream(session->session.stream()); });
}

rtm_status rtm_stream_push(rtm_stream* stream, const float* frames, size_t num_frames,
                           float* logits) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  const Sink sink = sink_of(stream);
  const rtm_status st = check_buffers(sink, "rtm_stream_push", frames, num_frames, logits);
  if (st != RTM_OK) return st;
  return guarded(sink, [&] { stream->stream.push(frames, num_frames, logits); });
}

rtm_status rtm_stream_reset(rtm_stream* stream) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  return guarded(sink_of(stream), [&] { stream->stream.reset(); });
}

rtm_status rtm_stream_frames_seen(const rtm_stream* stream, uint64_t* out) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  if (out == nullptr)
    return fail(sink_of(stream), RTM_INVALID_ARGUMENT, "rtm_stream_frames_seen: out is NULL");
  *out = stream->stream.frames_seen();
  return RTM_OK;
}

rtm_status rtm_stream_state_size(const rtm_stream* stream, size_t* out) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  if (out == nullptr)
    return fail(sink_of(stream), RTM_INVALID_ARGUMENT, "rtm_stream_state_size: out is NULL");
  *out = stream->stream.state_size();
  return RTM_OK;
}

rtm_status rtm_stream_get_state(const rtm_stream* stream, float* out, size_t size) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  return guarded(sink_of(stream), [&] { stream->stream.get_state(out, size); });
}

rtm_status rtm_stream_set_state(rtm_stream* stream, const float* state, size_t size) {
  if (stream == nullptr) return RTM_INVALID_ARGUMENT;
  return guarded(sink_of(stream), [&] { stream->stream.set_state(state, size); });
}

void rtm_stream_destroy(rtm_stream* stream) { delete stream; }

const char* rtm_stream_last_error(const rtm_stream* stream) {
  if (stream == nullptr) return "rtm_stream_last_error: stream is NULL";
  return stream->last_error.get();
}

}  // extern "C"
