#include "opencl/opencl_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "format/model_view.h"
#include "opencl/cl_plan.h"
#include "opencl/cl_util.h"

namespace rtmobile {
namespace {

constexpr size_t kDefaultChunkFrames = 64;  // frames per internal chunk, as on the CPU
constexpr uint32_t kMaxTileRows = 64;       // rows per work-group
constexpr uint32_t kDefaultFrameTile = 8;   // frames per work-group in the SpMM
constexpr size_t kLocalBudget = 16384;   // bytes of local memory for gathered inputs
constexpr int kMaxThreads = 256;

// kernels.cl, turned into a raw string literal at build time (embed_cl.cmake).
const char kKernelSource[] =
#include "opencl_kernels.inc"
    ;

struct DeviceChoice {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
};

[[noreturn]] void unsupported(const std::string& what) {
  throw Error(ErrorCode::kUnsupported, "device 'opencl': " + what);
}

template <typename T>
T device_value(cl_device_id d, cl_device_info what) {
  T v{};
  cl::check(clGetDeviceInfo(d, what, sizeof v, &v, nullptr), "clGetDeviceInfo");
  return v;
}

bool usable(cl_device_id d) {
  return device_value<cl_bool>(d, CL_DEVICE_AVAILABLE) &&
         device_value<cl_bool>(d, CL_DEVICE_COMPILER_AVAILABLE);
}

// RTM_OPENCL_DEVICE=<platform>:<device> (indices as clinfo -l lists them), else the first
// usable GPU, else the first usable device of any type.
DeviceChoice choose_device() {
  cl_uint num_platforms = 0;
  const cl_int err = clGetPlatformIDs(0, nullptr, &num_platforms);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && num_platforms == 0))
    unsupported(
        "no OpenCL platform found (the OpenCL ICD loader found no driver: install the GPU "
        "vendor's OpenCL driver, or pocl-opencl-icd for a CPU device)");
  cl::check(err, "clGetPlatformIDs");
  std::vector<cl_platform_id> platforms(num_platforms);
  cl::check(clGetPlatformIDs(num_platforms, platforms.data(), nullptr), "clGetPlatformIDs");
  std::vector<std::vector<cl_device_id>> devices(num_platforms);
  for (cl_uint p = 0; p < num_platforms; ++p) {
    cl_uint n = 0;
    const cl_int e = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, nullptr, &n);
    if (e == CL_DEVICE_NOT_FOUND) continue;
    cl::check(e, "clGetDeviceIDs");
    devices[p].resize(n);
    cl::check(clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n, devices[p].data(), nullptr),
              "clGetDeviceIDs");
  }

  const char* env = std::getenv("RTM_OPENCL_DEVICE");
  if (env != nullptr && *env != '\0') {
    const std::string spec(env);
    const size_t colon = spec.find(':');
    auto parse = [&](const std::string& s) -> long {
      if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
        throw Error(ErrorCode::kInvalidArgument,
                    "RTM_OPENCL_DEVICE must be <platform>:<device> (two indices, e.g. 0:1), "
                    "got '" + spec + "'");
      return std::stol(s);
    };
    if (colon == std::string::npos) parse("");
    const long p = parse(spec.substr(0, colon)), d = parse(spec.substr(colon + 1));
    if (p >= static_cast<long>(num_platforms))
      unsupported("RTM_OPENCL_DEVICE=" + spec + ": there is no platform " + std::to_string(p) +
                  " (" + std::to_string(num_platforms) + " platform(s))");
    const auto& list = devices[static_cast<size_t>(p)];
    if (d >= static_cast<long>(list.size()))
      unsupported("RTM_OPENCL_DEVICE=" + spec + ": platform " + std::to_string(p) + " ('" +
                  cl::platform_string(platforms[static_cast<size_t>(p)], CL_PLATFORM_NAME) +
                  "') has no device " + std::to_string(d) + " (" +
                  std::to_string(list.size()) + " device(s))");
    const cl_device_id dev = list[static_cast<size_t>(d)];
    if (!usable(dev))
      unsupported("RTM_OPENCL_DEVICE=" + spec + ": device '" +
                  cl::device_string(dev, CL_DEVICE_NAME) +
                  "' is not available or has no OpenCL C compiler");
    return {platforms[static_cast<size_t>(p)], dev};
  }

  for (const cl_device_type wanted : {cl_device_type{CL_DEVICE_TYPE_GPU}, cl_device_type{CL_DEVICE_TYPE_ALL}})
    for (cl_uint p = 0; p < num_platforms; ++p)
      for (cl_device_id d : devices[p])
        if ((device_value<cl_device_type>(d, CL_DEVICE_TYPE) & wanted) != 0 && usable(d))
          return {platforms[p], d};
  std::string names;
  for (cl_platform_id p : platforms)
    names += (names.empty() ? "'" : ", '") + cl::platform_string(p, CL_PLATFORM_NAME) + "'";
  unsupported("no usable OpenCL device (available, with a compiler) on " +
              std::to_string(num_platforms) + " platform(s): " + names);
}

bool has_extension(cl_device_id d, const std::string& name) {
  const std::string list = " " + cl::device_string(d, CL_DEVICE_EXTENSIONS) + " ";
  return list.find(" " + name + " ") != std::string::npos;
}

uint32_t u32(size_t v) { return static_cast<uint32_t>(v); }

class OpenCLBackend final : public Backend {
 public:
  OpenCLBackend(const ModelView& view, const SessionOptions& options);
  ~OpenCLBackend() override {
    if (queue_) clFinish(queue_.get());
  }

  RecurrentState new_state() const override;
  void process(RecurrentState& state, const float* frames, size_t num_frames,
               float* logits) override;

 private:
  struct Matrix {
    uint32_t rows = 0, cols = 0, tile_rows = 0, frame_tile = 1, num_tiles = 0;
    uint32_t chunk_cols_spmv = 1, chunk_cols_spmm = 1;
    cl::Mem tiles, pieces, cols_idx, rowmap, weights, perm, bias;
  };
  struct Layer {
    Matrix w_ih, w_hh;
    uint32_t in_dim = 0, hidden = 0;
    cl::Mem seq;   // (chunk_frames_ + 1) x hidden: slot 0 = h before the chunk, slot t+1 = h_t
    cl::Mem cell;  // hidden (LSTM)
  };

  void build_program(const std::string& math);
  cl::Mem buffer(cl_mem_flags flags, size_t bytes, const void* host = nullptr);
  template <typename T>
  cl::Mem constant(const std::vector<T>& v) {
    return buffer(CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, v.size() * sizeof(T), v.data());
  }
  Matrix upload(const BspMatrixView& view, const VectorView& bias);
  // y[y_off + f*ldy + row] = W x[x_off + f*ldx + :] + b for f < frames.
  void spmm(const Matrix& m, cl_mem x, uint32_t x_off, uint32_t ldx, cl_mem y, uint32_t y_off,
            uint32_t ldy, uint32_t frames);
  void enqueue_write(cl_mem dst, size_t offset, size_t bytes, const void* src, bool blocking);

  ModelKind kind_;
  uint32_t input_dim_, output_dim_;
  size_t chunk_frames_ = kDefaultChunkFrames, frame_tile_ = kDefaultFrameTile;
  cl_device_id device_ = nullptr;
  cl::Context context_;
  cl::Queue queue_;
  cl::Program program_;
  cl::Kernel spmm_, gru_, lstm_;
  size_t kernel_wg_ = 1, local_mem_ = 0;
  bool half_math_ = false;
  size_t x_bytes_ = sizeof(float);  // one gathered input in local memory (half or float)
  size_t max_item_[3] = {1, 1, 1};
  std::vector<Layer> layers_;
  Matrix output_;
  cl::Mem input_, gates_in_, gates_hidden_, logits_;
  std::vector<float> norm_mean_, norm_scale_, staged_;  // empty without normalisation
  std::mutex mutex_;
};

OpenCLBackend::OpenCLBackend(const ModelView& view, const SessionOptions& options)
    : kind_(view.kind), input_dim_(view.input_dim), output_dim_(view.output_dim) {
  if (options.threads < 0 || options.threads > kMaxThreads)
    throw Error(ErrorCode::kInvalidArgument,
                "threads must be in [0, " + std::to_string(kMaxThreads) + "] (0 = auto), got " +
                    std::to_string(options.threads));
  if (options.isa != "auto")
    throw Error(ErrorCode::kInvalidArgument,
                "isa '" + options.isa + "' selects CPU kernels; device 'opencl' runs OpenCL "
                "kernels, so isa must be 'auto'");
  if (options.weights == "f32")
    throw Error(ErrorCode::kUnsupported,
                "device 'opencl' keeps its weights in f16; weights='f32' needs device 'cpu'");
  if (options.weights != "stored" && options.weights != "f16")
    throw Error(ErrorCode::kInvalidArgument,
                "weights must be 'stored', 'f32' or 'f16', got '" + options.weights + "'");
  auto count = [](int value, size_t fallback, int max, const char* name) -> size_t {
    if (value < 0 || value > max)
      throw Error(ErrorCode::kInvalidArgument, std::string(name) + " must be in [1, " +
                                                   std::to_string(max) + "] (0 = default), got " +
                                                   std::to_string(value));
    return value == 0 ? fallback : static_cast<size_t>(value);
  };
  chunk_frames_ = count(options.chunk_frames, kDefaultChunkFrames, 4096, "chunk_frames");
  frame_tile_ = count(options.frame_tile, kDefaultFrameTile, 256, "frame_tile");

  const DeviceChoice choice = choose_device();
  device_ = choice.device;
  const std::string device_name = cl::device_string(device_, CL_DEVICE_NAME);
  cl_int err = CL_SUCCESS;
  const cl_context_properties props[] = {
      CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(choice.platform), 0};
  context_ = cl::Context(clCreateContext(props, 1, &device_, nullptr, nullptr, &err));
  cl::check(err, "clCreateContext");
  queue_ = cl::Queue(clCreateCommandQueue(context_.get(), device_, 0, &err));
  cl::check(err, "clCreateCommandQueue");
  build_program(options.opencl_math);

  cl::check(clGetKernelWorkGroupInfo(spmm_.get(), device_, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof kernel_wg_, &kernel_wg_, nullptr),
            "clGetKernelWorkGroupInfo");
  cl::check(clGetDeviceInfo(device_, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof max_item_, max_item_,
                            nullptr),
            "clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES)");
  cl_ulong kernel_local = 0;
  cl::check(clGetKernelWorkGroupInfo(spmm_.get(), device_, CL_KERNEL_LOCAL_MEM_SIZE,
                                     sizeof kernel_local, &kernel_local, nullptr),
            "clGetKernelWorkGroupInfo");
  const cl_ulong dev_local = device_value<cl_ulong>(device_, CL_DEVICE_LOCAL_MEM_SIZE);
  local_mem_ = static_cast<size_t>(
      std::min<cl_ulong>(kLocalBudget, dev_local > kernel_local ? dev_local - kernel_local : 0));
  if (local_mem_ < x_bytes_)
    unsupported("device '" + device_name + "' has no local memory for the kernels");

  const uint32_t gates = gate_count(view.kind);
  size_t max_gates = 0;
  for (uint32_t l = 0; l < view.num_layers; ++l) {
    Layer layer;
    layer.hidden = view.hidden_dims[l];
    layer.in_dim = l == 0 ? view.input_dim : view.hidden_dims[l - 1];
    layer.w_ih = upload(view.matrices[2 * l], view.biases[2 * l]);
    layer.w_hh = upload(view.matrices[2 * l + 1], view.biases[2 * l + 1]);
    layer.seq = buffer(CL_MEM_READ_WRITE, (chunk_frames_ + 1) * layer.hidden * sizeof(float));
    if (view.kind == ModelKind::kLstm)
      layer.cell = buffer(CL_MEM_READ_WRITE, layer.hidden * sizeof(float));
    max_gates = std::max<size_t>(max_gates, size_t{gates} * layer.hidden);
    layers_.push_back(std::move(layer));
  }
  output_ = upload(view.matrices[2 * view.num_layers], view.biases[2 * view.num_layers]);
  input_ = buffer(CL_MEM_READ_ONLY, chunk_frames_ * view.input_dim * sizeof(float));
  gates_in_ = buffer(CL_MEM_READ_WRITE, chunk_frames_ * max_gates * sizeof(float));
  gates_hidden_ = buffer(CL_MEM_READ_WRITE, max_gates * sizeof(float));
  logits_ = buffer(CL_MEM_WRITE_ONLY, chunk_frames_ * view.output_dim * sizeof(float));
  for (const Layer& l : layers_)
    if ((chunk_frames_ + 1) * l.hidden * gates > 0xffffffffu)
      unsupported("hidden size " + std::to_string(l.hidden) + " is too large for 32-bit offsets");
  normalization(view, norm_mean_, norm_scale_);
  if (view.has_norm) staged_.resize(chunk_frames_ * view.input_dim);
  cl::check(clFinish(queue_.get()), "clFinish");

  describe_model(view);
  info_.isa = "opencl:" + device_name;
  info_.threads = 1;  // one host thread drives the device queue
  info_.weights = "f16";  // on the device, whatever the file stores
  info_.opencl_math = half_math_ ? "half" : "float";
  info_.chunk_frames = static_cast<int>(chunk_frames_);
  info_.frame_tile = 0;
  for (const Layer& l : layers_)
    info_.frame_tile = std::max<int>(info_.frame_tile, static_cast<int>(l.w_ih.frame_tile));
  info_.frame_tile = std::max<int>(info_.frame_tile, static_cast<int>(output_.frame_tile));
}

void OpenCLBackend::build_program(const std::string& math) {
  // "auto": half arithmetic where the device has it (docs/opencl.md, "fp16").
  const bool fp16 = has_extension(device_, "cl_khr_fp16");
  if (math == "half" && !fp16)
    unsupported("opencl_math='half' needs a device with cl_khr_fp16, and '" +
                cl::device_string(device_, CL_DEVICE_NAME) +
                "' does not report it (use opencl_math='auto' or 'float')");
  half_math_ = fp16 && math != "float";
  x_bytes_ = half_math_ ? 2 : sizeof(float);
  cl_int err = CL_SUCCESS;
  const char* src = kKernelSource;
  const size_t len = sizeof kKernelSource - 1;
  program_ = cl::Program(clCreateProgramWithSource(context_.get(), 1, &src, &len, &err));
  cl::check(err, "clCreateProgramWithSource");
  const auto fp = device_value<cl_device_fp_config>(device_, CL_DEVICE_SINGLE_FP_CONFIG);
  std::string opts = (fp & CL_FP_FMA) != 0 ? "-DRTM_USE_FMA=1" : "-DRTM_USE_FMA=0";
  if ((fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0)
    opts += " -cl-fp32-correctly-rounded-divide-sqrt";
  opts += half_math_ ? " -DRTM_HALF_MATH=1" : " -DRTM_HALF_MATH=0";
  err = clBuildProgram(program_.get(), 1, &device_, opts.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    std::string log;
    size_t size = 0;
    if (clGetProgramBuildInfo(program_.get(), device_, CL_PROGRAM_BUILD_LOG, 0, nullptr,
                              &size) == CL_SUCCESS) {
      std::vector<char> buf(size + 1, '\0');
      if (clGetProgramBuildInfo(program_.get(), device_, CL_PROGRAM_BUILD_LOG, size,
                                buf.data(), nullptr) == CL_SUCCESS)
        log = buf.data();
    }
    throw Error(ErrorCode::kInternal,
                "OpenCL: clBuildProgram failed: " + cl::error_name(err) + " (" +
                    std::to_string(err) + ") for device '" +
                    cl::device_string(device_, CL_DEVICE_NAME) + "' with options '" + opts +
                    "'; build log:\n" + log);
  }
  auto kernel = [&](const char* name) {
    cl::Kernel k(clCreateKernel(program_.get(), name, &err));
    cl::check(err, (std::string("clCreateKernel(") + name + ")").c_str());
    return k;
  };
  spmm_ = kernel("bsp_spmm");
  gru_ = kernel("gru_gates");
  lstm_ = kernel("lstm_gates");
}

cl::Mem OpenCLBackend::buffer(cl_mem_flags flags, size_t bytes, const void* host) {
  // No zero-sized buffers: at least 16 bytes, the host data zero-padded to that.
  constexpr size_t kMinBytes = 16;
  unsigned char padded[kMinBytes] = {};
  if (bytes < kMinBytes && host != nullptr) {
    std::memcpy(padded, host, bytes);
    host = padded;
  }
  cl_int err = CL_SUCCESS;
  cl::Mem m(clCreateBuffer(context_.get(), flags, std::max(bytes, kMinBytes),
                           const_cast<void*>(host), &err));
  cl::check(err, "clCreateBuffer");
  return m;
}

OpenCLBackend::Matrix OpenCLBackend::upload(const BspMatrixView& view, const VectorView& bias) {
  // Tile height: at most 64 rows, what the kernel and the device allow, a multiple of 8 where
  // possible (full SIMD groups).
  const size_t wg_rows = std::min(kernel_wg_, max_item_[0]);
  const uint32_t cap = wg_rows >= 8 ? u32(std::min<size_t>(kMaxTileRows, wg_rows / 8 * 8))
                                    : u32(std::max<size_t>(wg_rows, 1));
  cl::MatrixPlan plan = cl::plan_matrix(view, cap);
  Matrix m;
  m.rows = plan.rows;
  m.cols = plan.cols;
  m.tile_rows = std::min(plan.tile_rows, cap);
  m.num_tiles = plan.num_tiles();
  m.frame_tile = u32(std::clamp<size_t>(
      std::min<size_t>(kernel_wg_ / m.tile_rows, max_item_[1]), 1, frame_tile_));
  const size_t local_elems = local_mem_ / x_bytes_;  // gathered inputs that fit
  const size_t widest = std::max<uint32_t>(plan.max_piece_cols, 1);
  m.chunk_cols_spmv = u32(std::clamp<size_t>(local_elems, 1, widest));
  m.chunk_cols_spmm = u32(std::clamp<size_t>(local_elems / m.frame_tile, 1, widest));
  m.tiles = constant(plan.tiles);
  m.pieces = constant(plan.pieces);
  m.cols_idx = constant(plan.cols_idx);
  m.rowmap = constant(plan.rowmap);
  m.weights = constant(plan.weights);
  m.perm = constant(plan.perm);
  m.bias = buffer(CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bias.length * sizeof(float),
                  bias.values);
  return m;
}

void OpenCLBackend::spmm(const Matrix& m, cl_mem x, uint32_t x_off, uint32_t ldx, cl_mem y,
                         uint32_t y_off, uint32_t ldy, uint32_t frames) {
  cl_kernel k = spmm_.get();
  const uint32_t ft = frames == 1 ? 1 : m.frame_tile;
  const uint32_t chunk = frames == 1 ? m.chunk_cols_spmv : m.chunk_cols_spmm;
  cl::set_arg(k, 0, m.tiles.get());
  cl::set_arg(k, 1, m.pieces.get());
  cl::set_arg(k, 2, m.cols_idx.get());
  cl::set_arg(k, 3, m.rowmap.get());
  cl::set_arg(k, 4, m.weights.get());
  cl::set_arg(k, 5, m.perm.get());
  cl::set_arg(k, 6, m.bias.get());
  cl::set_arg(k, 7, x);
  cl::set_arg(k, 8, x_off);
  cl::set_arg(k, 9, ldx);
  cl::set_arg(k, 10, y);
  cl::set_arg(k, 11, y_off);
  cl::set_arg(k, 12, ldy);
  cl::set_arg(k, 13, frames);
  cl::set_arg(k, 14, chunk);
  cl::set_local_arg(k, 15, size_t{chunk} * ft * x_bytes_);
  const size_t global[2] = {size_t{m.num_tiles} * m.tile_rows, (frames + ft - 1) / ft * ft};
  const size_t local[2] = {m.tile_rows, ft};
  cl::check(clEnqueueNDRangeKernel(queue_.get(), k, 2, nullptr, global, local, 0, nullptr,
                                   nullptr),
            "clEnqueueNDRangeKernel(bsp_spmm)");
}

void OpenCLBackend::enqueue_write(cl_mem dst, size_t offset, size_t bytes, const void* src,
                                  bool blocking) {
  cl::check(clEnqueueWriteBuffer(queue_.get(), dst, blocking ? CL_TRUE : CL_FALSE, offset, bytes,
                                 src, 0, nullptr, nullptr),
            "clEnqueueWriteBuffer");
}

RecurrentState OpenCLBackend::new_state() const {
  RecurrentState state;
  for (const Layer& l : layers_) {
    state.h.emplace_back(l.hidden);
    if (kind_ == ModelKind::kLstm) state.c.emplace_back(l.hidden);
  }
  reset(state);
  return state;
}

void OpenCLBackend::process(RecurrentState& state, const float* frames, size_t num_frames,
                            float* logits) {
  if (num_frames == 0) return;
  if (frames == nullptr || logits == nullptr)
    throw Error(ErrorCode::kInvalidArgument, "frames and logits must not be null");
  std::lock_guard<std::mutex> lock(mutex_);
  // Non-blocking transfers read and write the caller's memory: whatever happens, the queue is
  // drained before this function returns.
  struct Drain {
    cl_command_queue q;
    ~Drain() { clFinish(q); }
  } drain{queue_.get()};

  const bool lstm = kind_ == ModelKind::kLstm;
  for (size_t l = 0; l < layers_.size(); ++l) {  // the state lives on the host between calls
    const size_t bytes = layers_[l].hidden * sizeof(float);
    enqueue_write(layers_[l].seq.get(), 0, bytes, state.h[l].data(), false);
    if (lstm) enqueue_write(layers_[l].cell.get(), 0, bytes, state.c[l].data(), false);
  }
  const size_t in_dim = input_dim_, out_dim = output_dim_;
  const uint32_t gates = gate_count(kind_);
  for (size_t c0 = 0; c0 < num_frames; c0 += chunk_frames_) {
    const size_t n = std::min(chunk_frames_, num_frames - c0);
    const float* x = frames + c0 * in_dim;
    if (!norm_scale_.empty()) {  // the CPU engine's arithmetic, on the host
      float* dst = staged_.data();
      for (size_t t = 0; t < n; ++t)
        for (size_t k = 0; k < in_dim; ++k)
          dst[t * in_dim + k] = (x[t * in_dim + k] - norm_mean_[k]) * norm_scale_[k];
      x = dst;
    }
    // Blocking: the staging buffer is reused by the next chunk.
    enqueue_write(input_.get(), 0, n * in_dim * sizeof(float), x, true);

    cl_mem in = input_.get();
    uint32_t in_off = 0;
    for (Layer& layer : layers_) {
      const uint32_t h = layer.hidden, rows = gates * h;
      spmm(layer.w_ih, in, in_off, layer.in_dim, gates_in_.get(), 0, rows, u32(n));
      cl_kernel gk = lstm ? lstm_.get() : gru_.get();
      cl::set_arg(gk, 0, gates_in_.get());
      cl::set_arg(gk, 2, gates_hidden_.get());
      if (lstm) {
        cl::set_arg(gk, 3, layer.cell.get());
        cl::set_arg(gk, 4, layer.seq.get());
        cl::set_arg(gk, 6, h);
      } else {
        cl::set_arg(gk, 3, layer.seq.get());
        cl::set_arg(gk, 5, h);
      }
      const size_t global = h;
      for (uint32_t t = 0; t < n; ++t) {
        spmm(layer.w_hh, layer.seq.get(), t * h, h, gates_hidden_.get(), 0, rows, 1);
        cl::set_arg(gk, 1, t * rows);
        cl::set_arg(gk, lstm ? 5u : 4u, t * h);
        cl::check(clEnqueueNDRangeKernel(queue_.get(), gk, 1, nullptr, &global, nullptr, 0,
                                         nullptr, nullptr),
                  lstm ? "clEnqueueNDRangeKernel(lstm_gates)" : "clEnqueueNDRangeKernel(gru_gates)");
      }
      in = layer.seq.get();
      in_off = h;  // slots 1..n
    }
    const uint32_t last = layers_.back().hidden;
    spmm(output_, in, last, last, logits_.get(), 0, u32(out_dim), u32(n));
    cl::check(clEnqueueReadBuffer(queue_.get(), logits_.get(), CL_FALSE, 0,
                                  n * out_dim * sizeof(float), logits + c0 * out_dim, 0, nullptr,
                                  nullptr),
              "clEnqueueReadBuffer(logits)");
    for (Layer& layer : layers_)  // h after the chunk becomes slot 0 of the next one
      cl::check(clEnqueueCopyBuffer(queue_.get(), layer.seq.get(), layer.seq.get(),
                                    n * layer.hidden * sizeof(float), 0,
                                    layer.hidden * sizeof(float), 0, nullptr, nullptr),
                "clEnqueueCopyBuffer");
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t bytes = layers_[l].hidden * sizeof(float);
    cl::check(clEnqueueReadBuffer(queue_.get(), layers_[l].seq.get(), CL_FALSE, 0, bytes,
                                  state.h[l].data(), 0, nullptr, nullptr),
              "clEnqueueReadBuffer(h)");
    if (lstm)
      cl::check(clEnqueueReadBuffer(queue_.get(), layers_[l].cell.get(), CL_FALSE, 0, bytes,
                                    state.c[l].data(), 0, nullptr, nullptr),
                "clEnqueueReadBuffer(c)");
  }
  cl::check(clFinish(queue_.get()), "clFinish");
  state.frames += num_frames;
}

}  // namespace

std::unique_ptr<Backend> make_opencl_backend(const ModelView& view,
                                             const SessionOptions& options) {
  return std::make_unique<OpenCLBackend>(view, options);
}

}  // namespace rtmobile
