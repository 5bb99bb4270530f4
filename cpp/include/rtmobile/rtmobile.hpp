// RTMobile runtime: run BSP-pruned recurrent models stored in BSPC files.
//
// The whole public C++ surface. A Session loads and validates a model, picks kernels for the
// CPU and plans the work for its threads; run() processes a whole utterance, a Stream carries
// the recurrent state across chunks of frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_WIN32)
#define RTMOBILE_API __declspec(dllexport)
#else
#define RTMOBILE_API __attribute__((visibility("default")))
#endif

namespace rtmobile {

enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // a caller passed something unusable (shape, option, null)
  kFormat = 2,           // the model bytes break the BSPC spec
  kIo = 3,               // the model file could not be opened or read
  kUnsupported = 4,      // valid model or option this build or CPU cannot run
  kInternal = 5,
  kResourceLimit = 6,    // the model needs more memory than SessionOptions::memory_limit_mb
  kNonFinite = 7,        // an input frame holds NaN or infinity (SessionOptions::nonfinite)
};

class RTMOBILE_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// The model bytes are malformed; what() names the section, its index and the field.
class RTMOBILE_API FormatError : public Error {
 public:
  explicit FormatError(const std::string& message) : Error(ErrorCode::kFormat, message) {}
};

struct SessionOptions {
  int threads = 0;            // 0: auto (see docs/runtime.md, Threads)
  std::string isa = "auto";   // "auto" or a name from available_isas()
  std::string device = "cpu"; // "cpu", or "opencl" where the build and machine have it
  // Execution tuning; `rtmobile tune` measures good values for a model on a machine.
  std::string weights = "stored";  // "stored", "f32", or "f16" (halves the weight traffic)
  int frame_tile = 0;              // frames per block SpMM call, 1..256; 0 = 16
  int chunk_frames = 0;            // frames per internal chunk, 1..4096; 0 = 64
  // Device 'opencl' only: the arithmetic of the block SpMM/SpMV. "auto": half precision where
  // the device reports cl_khr_fp16, else float; "half" (error without cl_khr_fp16); "float".
  std::string opencl_math = "auto";
  // Refuse a model whose session would allocate more than this many MiB (an upper bound computed
  // from the file's headers before anything large is allocated; ModelInfo::planned_bytes).
  // 0 = the default, 1024 MiB.
  uint64_t memory_limit_mb = 0;
  // Input frames holding NaN or infinity: "raise" (the default) rejects the whole call with
  // kNonFinite before any frame is processed, so a stream's state stays as it was; "propagate"
  // skips the check: the non-finite values flow into the logits and into the recurrent state,
  // which then stays non-finite until Stream::reset().
  std::string nonfinite = "raise";
};

struct MatrixInfo {
  std::string name;  // "l0.w_ih", "l0.w_hh", ..., "out.w"
  uint32_t rows = 0, cols = 0, num_r = 0, num_c = 0;
  std::string dtype;              // "f32" or "f16"
  uint64_t stored_values = 0;     // weights kept in the file (dense blocks of BSP)
  uint64_t nonzeros = 0;          // of those, the ones that are not exactly zero
  // What one product with the matrix reads on the CPU: packed weights including the zero rows
  // that pad each piece's last panel (16 or 8 rows; at most 7 per piece), and those bytes plus
  // the kept-column and scattered-row indices. 0 on backends that do not report it (opencl).
  uint64_t packed_values = 0;
  uint64_t read_bytes = 0;
};

struct ModelInfo {
  std::string kind;  // "gru" or "lstm"
  uint32_t input_dim = 0, output_dim = 0;
  std::vector<uint32_t> hidden_dims;
  std::vector<MatrixInfo> matrices;
  uint64_t dense_weights = 0;   // rows*cols summed over all weight matrices
  uint64_t stored_weights = 0;  // values stored (BSP blocks)
  uint64_t nonzero_weights = 0;
  uint64_t bias_params = 0;
  double compression_rate = 1.0;  // dense_weights / stored_weights, as in the paper
  bool has_normalization = false;
  std::vector<std::string> labels;
  std::string metadata;  // the file's METADATA section (JSON text), empty when absent
  uint32_t checksum = 0;
  std::string isa;  // kernels in use
  int threads = 1;
  std::string weights;  // options.weights as applied: "stored", "f32" or "f16"
  int frame_tile = 0, chunk_frames = 0;  // the values in use
  std::string opencl_math;  // device 'opencl': "half" or "float" as in use; "" on the CPU
  uint64_t planned_bytes = 0;  // the memory bound checked against memory_limit_mb
  std::string nonfinite;       // options.nonfinite as applied
};

class Stream;

class RTMOBILE_API Session {
 public:
  // Reads the whole file, validates it and keeps what it needs: the file is never read again,
  // so rewriting, truncating or deleting it afterwards does not affect the session. FIFOs,
  // devices and directories are rejected (kIo) without blocking.
  static Session from_file(const std::string& path, const SessionOptions& options = {});
  // Copies the bytes; the caller's buffer may be freed afterwards.
  static Session from_memory(const void* data, size_t size, const SessionOptions& options = {});

  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  const ModelInfo& info() const;

  // frames: T x input_dim, row-major; logits: T x output_dim, row-major. Starts from a zero
  // state. Not reentrant on one Session: concurrent calls are serialised.
  void run(const float* frames, size_t num_frames, float* logits);

  Stream stream();

  class Impl;

 private:
  explicit Session(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// Carries the recurrent state across push() calls: pushing an utterance in chunks of any
// size gives the same logits as one Session::run over it.
class RTMOBILE_API Stream {
 public:
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  ~Stream();

  void push(const float* frames, size_t num_frames, float* logits);
  void reset();
  uint64_t frames_seen() const;
  const ModelInfo& info() const;

  // The recurrent state, to pause and resume a stream or fork one: layer by layer, the
  // layer's h (hidden_dims[l] floats), then for an LSTM its c; state_size() floats in all.
  size_t state_size() const;
  // `size` must be state_size() (kInvalidArgument otherwise).
  void get_state(float* out, size_t size) const;
  // Replaces the state; frames_seen() is left as it is. A wrong size is kInvalidArgument, and
  // with nonfinite "raise" a NaN or infinite value is kNonFinite naming it; either way the
  // state is left unchanged.
  void set_state(const float* state, size_t size);

 private:
  friend class Session;
  struct State;
  explicit Stream(std::shared_ptr<Session::Impl> impl);
  std::shared_ptr<Session::Impl> impl_;
  std::unique_ptr<State> state_;
};

// ISAs this CPU and build can run, best first; always ends with "scalar".
RTMOBILE_API std::vector<std::string> available_isas();

RTMOBILE_API const char* version();

}  // namespace rtmobile
