// The OpenCL backend (device = "opencl"): BSP block SpMM/SpMV and the gate updates as OpenCL
// kernels, weights on the device in f16, arithmetic in f32. Built only with RTM_HAVE_OPENCL.
// See docs/opencl.md.
#pragma once

#include <memory>

#include "format/model_bytes.h"
#include "rtmobile/rtmobile.hpp"
#include "runtime/engine.h"

namespace rtmobile {

// Picks the device (first GPU, else the first device; RTM_OPENCL_DEVICE=platform:device
// overrides), builds the kernels and uploads the weights. Throws Error(kUnsupported) when no
// OpenCL platform or device exists, Error(kInternal) naming the call and CL error on a failure.
std::unique_ptr<Backend> make_opencl_backend(ModelBytes bytes, const SessionOptions& options);

}  // namespace rtmobile
