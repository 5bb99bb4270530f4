#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/cpu_count.h"
#include "runtime/memory_plan.h"
#include "runtime/row_partition.h"

#if defined(RTM_HAVE_OPENCL)
#include "opencl/opencl_backend.h"
#endif

namespace rtmobile {
namespace {

constexpr size_t kDefaultChunkFrames = 64;  // frames per internal chunk (bounds memory)
constexpr size_t kDefaultFrameTile = 16;    // frames per SpMM call (the tile's inputs in L1/L2)
// A chunk whose multiply-adds (frames x stored weights) are fewer than this runs every
// thread's share on the calling thread, in thread order: waking the pool and two barriers per
// frame cost more than they save. Measured (2-core Xeon, 2-layer GRU 440/960, streaming): two
// threads beat one at 223k weights per frame and lost at 120k and below (32 vs 27 us at 120k).
constexpr uint64_t kSerialMacs = 160000;
// With the default thread count (threads = 0), calls shorter than this run on the calling
// thread: a streamed frame's share of a layer takes microseconds, so any delay in waking a
// second thread (another process on its core) costs more than the split saves. An explicit
// thread count, or one from a tuning file that measured it faster, uses the pool for them.
constexpr size_t kAutoParallelFrames = 16;
constexpr int kMaxThreads = 256;
constexpr int kMaxAutoThreads = 4;

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
  return std::clamp(usable_cpus(), 1, kMaxAutoThreads);
}

}  // namespace

Engine::Engine(const ModelView& view, const SessionOptions& options)
    : kind_(view.kind),
      input_dim_(view.input_dim),
      output_dim_(view.output_dim),
      chunk_frames_(resolve_count(options.chunk_frames, kDefaultChunkFrames, 4096,
                                  "chunk_frames")),
      frame_tile_(resolve_count(options.frame_tile, kDefaultFrameTile, 256, "frame_tile")),
      kernels_(&select_kernels(options.isa)),
      pool_(resolve_threads(options.threads)),
      threads_explicit_(options.threads > 0) {
  const int threads = pool_.size();
  const uint32_t gates = gate_count(view.kind);
  const uint32_t num_layers = view.num_layers;
  size_t max_hidden = 0, max_gates = 0;
  for (uint32_t l = 0; l < num_layers; ++l) {
    Layer layer;
    layer.hidden = view.hidden_dims[l];
    layer.in_dim = l == 0 ? view.input_dim : view.hidden_dims[l - 1];
    const BspMatrixView& w_ih = view.matrices[2 * l];
    const BspMatrixView& w_hh = view.matrices[2 * l + 1];
    layer.units = hidden_unit_ranges(w_ih, w_hh, layer.hidden, gates, threads);
    const RowOwners owners = gate_row_owners(layer.units, layer.hidden, gates);
    layer.w_ih = std::make_unique<BspMatrix>(w_ih, view.biases[2 * l].values, owners, threads,
                                             compute_dtype(options.weights, w_ih.dtype));
    layer.w_hh = std::make_unique<BspMatrix>(w_hh, view.biases[2 * l + 1].values, owners,
                                             threads, compute_dtype(options.weights, w_hh.dtype));
    max_hidden = std::max<size_t>(max_hidden, layer.hidden);
    max_gates = std::max<size_t>(max_gates, size_t{gates} * layer.hidden);
    layers_.push_back(std::move(layer));
  }
  const BspMatrixView& w_out = view.matrices[2 * num_layers];
  output_ = std::make_unique<BspMatrix>(w_out, view.biases[2 * num_layers].values,
                                        balanced_row_owners(w_out, threads), threads,
                                        compute_dtype(options.weights, w_out.dtype));

  normalization(view, norm_mean_, norm_scale_);
  if (view.has_norm) input_ = AlignedBuffer<float>(chunk_frames_ * view.input_dim);
  gates_in_ = AlignedBuffer<float>(chunk_frames_ * max_gates);
  gates_hidden_ = AlignedBuffer<float>(max_gates);
  seq_[0] = AlignedBuffer<float>(chunk_frames_ * max_hidden);
  seq_[1] = AlignedBuffer<float>(chunk_frames_ * max_hidden);

  describe_model(view);
  info_.isa = kernels_->isa;
  info_.threads = threads;
  info_.weights = options.weights;
  info_.frame_tile = static_cast<int>(frame_tile_);
  info_.chunk_frames = static_cast<int>(chunk_frames_);
  for (size_t id = 0; id < info_.matrices.size(); ++id) {
    const BspMatrix& packed = id == 2 * num_layers ? *output_
                              : id % 2 == 0        ? *layers_[id / 2].w_ih
                                                   : *layers_[id / 2].w_hh;
    info_.matrices[id].packed_values = packed.packed_values();
    info_.matrices[id].read_bytes = packed.read_bytes();
  }
}

void Backend::describe_model(const ModelView& view) {
  info_.kind = view.kind == ModelKind::kGru ? "gru" : "lstm";
  info_.input_dim = view.input_dim;
  info_.output_dim = view.output_dim;
  info_.hidden_dims = view.hidden_dims;
  info_.has_normalization = view.has_norm;
  info_.labels = view.labels;
  info_.metadata = view.metadata;
  info_.checksum = view.checksum;
  for (size_t id = 0; id < view.matrices.size(); ++id) {
    const BspMatrixView& m = view.matrices[id];
    MatrixInfo mi;
    mi.name = m.name;
    mi.rows = m.rows;
    mi.cols = m.cols;
    mi.num_r = m.num_r;
    mi.num_c = m.num_c;
    mi.dtype = dtype_name(m.dtype);  // the file's, whatever a backend computes in
    mi.stored_values = m.value_count;
    mi.nonzeros = m.nonzeros;
    info_.dense_weights += uint64_t{m.rows} * m.cols;
    info_.stored_weights += m.value_count;
    info_.nonzero_weights += m.nonzeros;
    info_.bias_params += view.biases[id].length;
    info_.matrices.push_back(mi);
  }
  info_.compression_rate =
      info_.stored_weights == 0
          ? INFINITY
          : static_cast<double>(info_.dense_weights) / static_cast<double>(info_.stored_weights);
}

void Backend::normalization(const ModelView& view, std::vector<float>& mean,
                            std::vector<float>& scale) {
  mean.clear();
  scale.clear();
  if (!view.has_norm) return;
  mean.assign(view.norm_mean, view.norm_mean + view.input_dim);
  scale.resize(view.input_dim);
  for (uint32_t k = 0; k < view.input_dim; ++k)
    scale[k] = 1.0f / std::sqrt(view.norm_var[k] + view.norm_eps);
}

std::unique_ptr<Backend> make_device_backend(const ModelView& view,
                                             const SessionOptions& options);

std::unique_ptr<Backend> make_backend(ModelBytes bytes, const SessionOptions& options) {
  const uint64_t limit = memory_limit_bytes(options.memory_limit_mb);
  const ModelLayout layout = read_layout(bytes.data(), bytes.size());
  MemoryShape shape;
  shape.chunk_frames = resolve_count(options.chunk_frames, kDefaultChunkFrames, 4096,
                                     "chunk_frames");
  shape.frame_tile = resolve_count(options.frame_tile, kDefaultFrameTile, 256, "frame_tile");
  if (options.device == "opencl") {  // one packed copy on the host, one on the device, f16
    shape.pad_rows = 63;
    shape.weight_bytes = 2;
    shape.weight_copies = 2;
  } else {
    shape.threads = resolve_threads(options.threads);
    if (options.weights == "f32") shape.weight_bytes = 4;
    if (options.weights == "f16") shape.weight_bytes = 2;
  }
  const uint64_t planned = planned_session_bytes(layout, bytes.size(), shape);
  check_memory_limit(planned, limit);
  const ModelView view = parse_bspc(bytes.data(), bytes.size());
  std::unique_ptr<Backend> backend = make_device_backend(view, options);
  backend->record_session_options(planned, options.nonfinite);
  return backend;
}

std::unique_ptr<Backend> make_device_backend(const ModelView& view,
                                             const SessionOptions& options) {
  const std::string& math = options.opencl_math;
  if (math != "auto" && math != "half" && math != "float")
    throw Error(ErrorCode::kInvalidArgument,
                "opencl_math must be 'auto', 'half' or 'float', got '" + math + "'");
  if (options.device == "cpu") {
    if (math != "auto")
      throw Error(ErrorCode::kInvalidArgument,
                  "opencl_math='" + math + "' selects the OpenCL kernels' arithmetic; device "
                  "'cpu' computes in float, so opencl_math must be 'auto'");
    return std::make_unique<Engine>(view, options);
  }
#if defined(RTM_HAVE_OPENCL)
  if (options.device == "opencl") return make_opencl_backend(view, options);
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
    if (kind_ == ModelKind::kLstm) state.c.emplace_back(l.hidden);
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
  const size_t in_dim = input_dim_;
  for (size_t c0 = 0; c0 < num_frames; c0 += chunk_frames_) {
    const size_t n = std::min(chunk_frames_, num_frames - c0);
    const float* x = frames + c0 * in_dim;
    if (!norm_scale_.empty()) {
      float* dst = input_.data();
      for (size_t t = 0; t < n; ++t)
        for (size_t k = 0; k < in_dim; ++k)
          dst[t * in_dim + k] = (x[t * in_dim + k] - norm_mean_[k]) * norm_scale_[k];
      x = dst;
    }
    float* out = logits + c0 * output_dim_;
    // Multiply-adds of this chunk: every stored weight once per frame.
    const bool serial = n * info_.stored_weights < kSerialMacs ||
                        (!threads_explicit_ && num_frames < kAutoParallelFrames);
    if (pool_.size() > 1 && serial) {
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
  const size_t out_dim = output_dim_;
  for (int tid = shares.begin; tid < shares.end; ++tid)
    for (size_t t0 = 0; t0 < frames; t0 += frame_tile_)
      output_->gemm(*kernels_, tid, in + t0 * hidden, hidden, std::min(frame_tile_, frames - t0),
                    logits + t0 * out_dim, out_dim);
}

void Engine::run_layer(const Shares& shares, size_t index, RecurrentState& state,
                       const float* in, size_t frames, float* out_seq) {
  // Thread tid owns hidden units layer.units[tid] and their gate rows in W_ih and W_hh
  // (row_partition.h): it computes those rows and then those units' gates with no barrier in
  // between. The one barrier per frame makes the new hidden state whole for every thread's
  // next W_hh product; the last frame's barrier also makes the layer's output sequence whole
  // for the next layer.
  const Layer& layer = layers_[index];
  const size_t hidden = layer.hidden;
  const size_t gate_rows = size_t{gate_count(kind_)} * hidden;
  float* gi = gates_in_.data();
  float* gh = gates_hidden_.data();
  float* h0 = state.h[index].data();
  float* cell = kind_ == ModelKind::kLstm ? state.c[index].data() : nullptr;
  const KernelTable& k = *kernels_;
  for (int tid = shares.begin; tid < shares.end; ++tid)
    for (size_t t0 = 0; t0 < frames; t0 += frame_tile_)
      layer.w_ih->gemm(k, tid, in + t0 * layer.in_dim, layer.in_dim,
                       std::min(frame_tile_, frames - t0), gi + t0 * gate_rows, gate_rows);
  for (size_t t = 0; t < frames; ++t) {
    const float* h_prev = t == 0 ? h0 : out_seq + (t - 1) * hidden;
    for (int tid = shares.begin; tid < shares.end; ++tid) {
      layer.w_hh->gemv(k, tid, h_prev, gh);
      const auto [a, b] = layer.units[static_cast<size_t>(tid)];
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
    const auto [a, b] = layer.units[static_cast<size_t>(tid)];
    if (b > a) std::memcpy(h0 + a, out_seq + (frames - 1) * hidden + a, (b - a) * sizeof(float));
  }
}

}  // namespace rtmobile
