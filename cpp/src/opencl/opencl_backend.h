// The OpenCL backend (device = "opencl"): BSP block SpMM/SpMV and the gate updates as OpenCL
// kernels, weights on the device in f16; the SpMM multiplies in half precision where the device
// has cl_khr_fp16 (SessionOptions::opencl_math), else in f32; gates in f32. Built only with
// RTM_HAVE_OPENCL. See docs/opencl.md.
#pragma once

#include <memory>

#include "format/model_view.h"
#include "rtmobile/rtmobile.hpp"
#include "runtime/engine.h"

namespace rtmobile {

// Picks the device (first GPU, else the first device; RTM_OPENCL_DEVICE=platform:device
// overrides), builds the kernels and uploads the weights. Throws Error(kUnsupported) when no
// OpenCL platform or device exists (or, in RTM_OPENCL_DLOPEN builds, no libOpenCL loads) and
// for opencl_math='half' without cl_khr_fp16, Error(kInternal) naming the call and CL error on
// a failure. `view` need only outlive the call: the weights are uploaded, the rest copied.
std::unique_ptr<Backend> make_opencl_backend(const ModelView& view,
                                             const SessionOptions& options);

}  // namespace rtmobile
