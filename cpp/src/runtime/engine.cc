#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#if defined(RTM_HAVE_OPENCL)
#include "opencl/opencl_backend.h"
#endif

namespace rtmobile {
namespace {

constexpr size_t kDefaultChunkFrames = 64;  // frames per internal chunk (bounds memory)
constexpr size_t kDefaultFrameTile = 16;    // frames per SpMM call (gathered inputs in L1/L2)
// A chunk whose multiply-adds (frames x stored weights) are fewer than this runs every
// thread's share on the calling thread, in thread order: waking the pool and two barriers per
// frame cost more than they save. Measured (2-core Xeon, 2-layer GRU 440/960, streaming): two
// threads beat one at 223k weights per frame and lost at 120k and below (32 vs 27 us at 120k).
constexpr uint64_t kSerialMacs = 160000;
constexpr int kMaxThreads = 256;

size_t resolve_count(int value, size_t fallback, int max, const char* name) {
  if (value < 0 || value > max)
    throw Error(ErrorCode::kInvalidArgument, std::string(name) + " must be in [1, " +
                                                 std::to_string(max) + "] (0 = default), got " +
                                                 std::to_string(value));
  return value == 0 ? fallback : static_cast<size_t>(value);
}

DType compute_dtype(const std::string& weights, DType stored) {
  if (weights == "stored") return stored;
  if (weights == "f32") return DType::kF32;
  if (weights == "f16") return DType::kF16;
  throw Error(ErrorCode::kInvalidArgument,
              "weights must be 'stored', 'f32' or 'f16', got '" + weights + "'");
}

int resolve_threads(int requested) {
  if (requested < 0 || requested > kMaxThreads)
    throw Error(ErrorCode::kInvalidArgument,
                "threads must be in [0, " + std::to_string(kMaxThreads) + "] (0 = auto), got " +
                    std::to_string(requested));
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hw, 1u, 4u));
}

// Thread tid's share of n hidden units, in multiples of 8 so SIMD lanes stay full.
std::pair<size_t, size_t> hidden_range(int tid, int threads, size_t n) {
  const size_t per = ((n + threads - 1) / threads + 7) / 8 * 8;
  const size_t a = std::min(n, per * static_cast<size_t>(tid));
  return {a, std::min(n, a + per)};
}

}  // namespace

Engine::Engine(ModelBytes bytes, const SessionOptions& options)
    : bytes_(std::move(bytes)),
      view_(parse_bspc(bytes_.data(), bytes_.size())),
      chunk_frames_(resolve_count(options.chunk_frames, kDefaultChunkFrames, 4096,
                                  "chunk_frames")),
      frame_tile_(resolve_count(options.frame_tile, kDefaultFrameTile, 256, "frame_tile")),
      kernels_(&select_kernels(options.isa)),
      pool_(resolve_threads(options.threads)) {
  const int threads = pool_.size();
  const uint32_t gates = gate_count(view_.kind);
  const uint32_t num_layers = view_.num_layers;
  size_t max_hidden = 0, max_gates = 0;
  for (uint32_t l = 0; l < num_layers; ++l) {
    Layer layer;
    layer.hidden = view_.hidden_dims[l];
    layer.in_dim = l == 0 ? view_.input_dim : view_.hidden_dims[l - 1];
    const BspMatrixView& w_ih = view_.matrices[2 * l];
    const BspMatrixView& w_hh = view_.matrices[2 * l + 1];
    layer.w_ih = std::make_unique<BspMatrix>(w_ih, view_.biases[2 * l].values, threads,
                                             compute_dtype(options.weights, w_ih.dtype));
    layer.w_hh = std::make_unique<BspMatrix>(w_hh, view_.biases[2 * l + 1].values, threads,
                                             compute_dtype(options.weights, w_hh.dtype));
    max_hidden = std::max<size_t>(max_hidden, layer.hidden);
    max_gates = std::max<size_t>(max_gates, size_t{gates} * layer.hidden);
    layers_.push_back(std::move(layer));
  }
  const BspMatrixView& w_out = view_.matrices[2 * num_layers];
  output_ = std::make_unique<BspMatrix>(w_out, view_.biases[2 * num_layers].values, threads,
                                        compute_dtype(options.weights, w_out.dtype));

  if (view_.has_norm) {
    norm_scale_.resize(view_.input_dim);
    for (uint32_t k = 0; k < view_.input_dim; ++k)
      norm_scale_[k] = 1.0f / std::sqrt(view_.norm_var[k] + view_.norm_eps);
    input_ = AlignedBuffer<float>(chunk_frames_ * view_.input_dim);
  }
  gates_in_ = AlignedBuffer<float>(chunk_frames_ * max_gates);
  gates_hidden_ = AlignedBuffer<float>(max_gates);
  seq_[0] = AlignedBuffer<float>(chunk_frames_ * max_hidden);
  seq_[1] = AlignedBuffer<float>(chunk_frames_ * max_hidden);

  size_t gathered = 0, acc = 0, stored = 0;
  auto grow = [&](const BspMatrix& m) {
    gathered = std::max(gathered, m.gathered_floats(frame_tile_));
    acc = std::max(acc, m.acc_floats(frame_tile_));
    stored = std::max(stored, m.stored_floats(frame_tile_));
  };
  for (const Layer& l : layers_) {
    grow(*l.w_ih);
    grow(*l.w_hh);
  }
  grow(*output_);
  scratch_.resize(static_cast<size_t>(threads));
  for (MatrixScratch& s : scratch_) {
    s.gathered = AlignedBuffer<float>(gathered);
    s.acc = AlignedBuffer<float>(acc);
    s.stored = AlignedBuffer<float>(stored);
  }

  info_.kind = view_.kind == ModelKind::kGru ? "gru" : "lstm";
  info_.input_dim = view_.input_dim;
  info_.output_dim = view_.output_dim;
  info_.hidden_dims = view_.hidden_dims;
  info_.has_normalization = view_.has_norm;
  info_.labels = view_.labels;
  info_.metadata = view_.metadata;
  info_.checksum = view_.checksum;
  info_.isa = kernels_->isa;
  info_.threads = threads;
  info_.weights = options.weights;
  info_.frame_tile = static_cast<int>(frame_tile_);
  info_.chunk_frames = static_cast<int>(chunk_frames_);
  for (size_t id = 0; id < view_.matrices.size(); ++id) {
    const BspMatrixView& m = view_.matrices[id];
    MatrixInfo mi;
    mi.name = m.name;
    mi.rows = m.rows;
    mi.cols = m.cols;
    mi.num_r = m.num_r;
    mi.num_c = m.num_c;
    mi.dtype = dtype_name(m.dtype);
    mi.stored_values = m.value_count;
    mi.nonzeros = m.nonzeros;
    info_.dense_weights += uint64_t{m.rows} * m.cols;
    info_.stored_weights += m.value_count;
    info_.nonzero_weights += m.nonzeros;
    info_.bias_params += view_.biases[id].length;
    info_.matrices.push_back(mi);
  }
  info_.compression_rate =
      info_.stored_weights == 0
          ? INFINITY
          : static_cast<double>(info_.dense_weights) / static_cast<double>(info_.stored_weights);
}

std::unique_ptr<Backend> make_backend(ModelBytes bytes, const SessionOptions& options) {
  const std::string& math = options.opencl_math;
  if (math != "auto" && math != "half" && math != "float")
    throw Error(ErrorCode::kInvalidArgument,
                "opencl_math must be 'auto', 'half' or 'float', got '" + math + "'");
  if (options.device == "cpu") {
    if (math != "auto")
      throw Error(ErrorCode::kInvalidArgument,
                  "opencl_math='" + math + "' selects the OpenCL kernels' arithmetic; device "
                  "'cpu' computes in float, so opencl_math must be 'auto'");
    return std::make_unique<Engine>(std::move(bytes), options);
  }
#if defined(RTM_HAVE_OPENCL)
  if (options.device == "opencl") return make_opencl_backend(std::move(bytes), options);
  const char* available = "cpu, opencl";
#else
  const char* available = "cpu";
#endif
  throw Error(ErrorCode::kUnsupported, "device '" + options.device +
                                           "' is not available in this build (available: " +
                                           available + ")");
}

RecurrentState Engine::new_state() const {
  RecurrentState state;
  for (const Layer& l : layers_) {
    state.h.emplace_back(l.hidden);
    if (view_.kind == ModelKind::kLstm) state.c.emplace_back(l.hidden);
  }
  return state;
}

void Backend::reset(RecurrentState& state) const {
  for (auto& h : state.h) std::memset(h.data(), 0, h.size() * sizeof(float));
  for (auto& c : state.c) std::memset(c.data(), 0, c.size() * sizeof(float));
  state.frames = 0;
}

void Engine::process(RecurrentState& state, const float* frames, size_t num_frames,
                     float* logits) {
  if (num_frames == 0) return;
  if (frames == nullptr || logits == nullptr)
    throw Error(ErrorCode::kInvalidArgument, "frames and logits must not be null");
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t in_dim = view_.input_dim;
  for (size_t c0 = 0; c0 < num_frames; c0 += chunk_frames_) {
    const size_t n = std::min(chunk_frames_, num_frames - c0);
    const float* x = frames + c0 * in_dim;
    if (view_.has_norm) {
      float* dst = input_.data();
      for (size_t t = 0; t < n; ++t)
        for (size_t k = 0; k < in_dim; ++k)
          dst[t * in_dim + k] = (x[t * in_dim + k] - view_.norm_mean[k]) * norm_scale_[k];
      x = dst;
    }
    float* out = logits + c0 * view_.output_dim;
    // Multiply-adds of this chunk: every stored weight once per frame.
    if (pool_.size() > 1 && n * info_.stored_weights < kSerialMacs) {
      run_chunk(Shares{0, pool_.size(), false}, state, x, n, out);
    } else {
      pool_.run([&](int tid) { run_chunk(Shares{tid, tid + 1, true}, state, x, n, out); });
    }
  }
  state.frames += num_frames;
}

void Engine::sync(const Shares& shares) {
  if (shares.sync) pool_.barrier();
}

void Engine::run_chunk(const Shares& shares, RecurrentState& state, const float* in,
                       size_t frames, float* logits) {
  for (size_t l = 0; l < layers_.size(); ++l) {
    float* out = seq_[l % 2].data();
    run_layer(shares, l, state, in, frames, out);
    in = out;
  }
  // The last layer's final barrier has made its whole output sequence visible.
  const size_t hidden = layers_.back().hidden;
  const size_t out_dim = view_.output_dim;
  for (int tid = shares.begin; tid < shares.end; ++tid) {
    MatrixScratch& s = scratch_[static_cast<size_t>(tid)];
    for (size_t t0 = 0; t0 < frames; t0 += frame_tile_)
      output_->gemm(*kernels_, tid, in + t0 * hidden, hidden, std::min(frame_tile_, frames - t0),
                    logits + t0 * out_dim, out_dim, s);
  }
}

void Engine::run_layer(const Shares& shares, size_t index, RecurrentState& state,
                       const float* in, size_t frames, float* out_seq) {
  const Layer& layer = layers_[index];
  const size_t hidden = layer.hidden;
  const size_t gate_rows = size_t{gate_count(view_.kind)} * hidden;
  float* gi = gates_in_.data();
  float* gh = gates_hidden_.data();
  float* h0 = state.h[index].data();
  float* cell = view_.kind == ModelKind::kLstm ? state.c[index].data() : nullptr;
  const KernelTable& k = *kernels_;
  const int threads = pool_.size();
  for (int tid = shares.begin; tid < shares.end; ++tid) {
    MatrixScratch& s = scratch_[static_cast<size_t>(tid)];
    for (size_t t0 = 0; t0 < frames; t0 += frame_tile_)
      layer.w_ih->gemm(k, tid, in + t0 * layer.in_dim, layer.in_dim,
                       std::min(frame_tile_, frames - t0), gi + t0 * gate_rows, gate_rows, s);
  }
  sync(shares);
  for (size_t t = 0; t < frames; ++t) {
    const float* h_prev = t == 0 ? h0 : out_seq + (t - 1) * hidden;
    for (int tid = shares.begin; tid < shares.end; ++tid)
      layer.w_hh->gemv(k, tid, h_prev, gh, scratch_[static_cast<size_t>(tid)]);
    sync(shares);
    for (int tid = shares.begin; tid < shares.end; ++tid) {
      const auto [a, b] = hidden_range(tid, threads, hidden);
      if (b <= a) continue;
      if (cell == nullptr)
        k.gru_gates(b - a, hidden, gi + t * gate_rows + a, gh + a, h_prev + a,
                    out_seq + t * hidden + a);
      else
        k.lstm_gates(b - a, hidden, gi + t * gate_rows + a, gh + a, cell + a,
                     out_seq + t * hidden + a);
    }
    sync(shares);
  }
  // Each thread carries its own hidden units into the next chunk.
  for (int tid = shares.begin; tid < shares.end; ++tid) {
    const auto [a, b] = hidden_range(tid, threads, hidden);
    if (b > a) std::memcpy(h0 + a, out_seq + (frames - 1) * hidden + a, (b - a) * sizeof(float));
  }
}

}  // namespace rtmobile
