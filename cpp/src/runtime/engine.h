// Runs a validated model: normalisation, the recurrent stack and the output layer, in chunks
// of frames. Input projections and the output layer are block SpMMs over all frames of a
// chunk; only the hidden-to-hidden product steps frame by frame.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "format/model_bytes.h"
#include "format/model_view.h"
#include "kernels/kernels.h"
#include "rtmobile/rtmobile.hpp"
#include "runtime/aligned_buffer.h"
#include "runtime/bsp_matrix.h"
#include "runtime/thread_pool.h"

namespace rtmobile {

struct RecurrentState {
  std::vector<AlignedBuffer<float>> h;  // per layer
  std::vector<AlignedBuffer<float>> c;  // per layer (LSTM only)
  uint64_t frames = 0;
};

// What a Session runs on: the CPU engine below, or another device's (OpenCL). The recurrent
// state lives on the host, so streams work the same on every backend.
class Backend {
 public:
  virtual ~Backend() = default;
  const ModelInfo& info() const { return info_; }
  // What make_backend decided around the backend: the memory bound and the input rule.
  void record_session_options(uint64_t planned_bytes, const std::string& nonfinite) {
    info_.planned_bytes = planned_bytes;
    info_.nonfinite = nonfinite;
  }
  virtual RecurrentState new_state() const = 0;
  void reset(RecurrentState& state) const;
  // logits[t] for frames[t], t < num_frames, continuing from `state`. Serialised internally.
  virtual void process(RecurrentState& state, const float* frames, size_t num_frames,
                       float* logits) = 0;

 protected:
  // What the file says, the same for every backend: kind, dimensions, labels, metadata,
  // checksum, per-matrix blocks and counts, totals and compression rate. Backends add how they
  // run it (isa, threads, weights, ...).
  void describe_model(const ModelView& view);
  // The input normalisation (x - mean) * scale, scale = 1 / sqrt(var + eps); both empty when
  // the file has none.
  static void normalization(const ModelView& view, std::vector<float>& mean,
                            std::vector<float>& scale);

  ModelInfo info_;
};

// Plans the session's memory from the headers and checks it against options.memory_limit_mb,
// then validates the bytes and builds the backend named by options.device. The backend keeps
// its own copies of everything it uses: the bytes are freed when this returns.
std::unique_ptr<Backend> make_backend(ModelBytes bytes, const SessionOptions& options);

class Engine final : public Backend {
 public:
  // `view` need only outlive the constructor.
  Engine(const ModelView& view, const SessionOptions& options);

  RecurrentState new_state() const override;
  void process(RecurrentState& state, const float* frames, size_t num_frames,
               float* logits) override;

 private:
  struct Layer {
    std::unique_ptr<BspMatrix> w_ih, w_hh;
    uint32_t in_dim, hidden;
    std::vector<std::pair<uint32_t, uint32_t>> units;  // per thread: its hidden units
  };
  // Which threads' shares of the work a call runs: one thread's, inside the pool (sync:
  // barriers between the steps), or all of them in thread order on the calling thread (no
  // barriers; the same arithmetic, so the same bits).
  struct Shares {
    int begin, end;
    bool sync;
  };
  void sync(const Shares& shares);
  // One chunk: every layer, then the output layer. In the pool: one wake-up per chunk;
  // barriers order the steps.
  void run_chunk(const Shares& shares, RecurrentState& state, const float* in, size_t frames,
                 float* logits);
  void run_layer(const Shares& shares, size_t layer, RecurrentState& state, const float* in,
                 size_t frames, float* out_seq);
  ModelKind kind_;
  uint32_t input_dim_, output_dim_;
  size_t chunk_frames_, frame_tile_;
  const KernelTable* kernels_;
  ThreadPool pool_;
  bool threads_explicit_;  // threads > 0 was asked for: use the pool for short calls too
  std::vector<Layer> layers_;
  std::unique_ptr<BspMatrix> output_;
  std::vector<float> norm_mean_, norm_scale_;  // empty without normalisation
  AlignedBuffer<float> input_, gates_in_, gates_hidden_, seq_[2];
  std::mutex mutex_;
};

}  // namespace rtmobile
