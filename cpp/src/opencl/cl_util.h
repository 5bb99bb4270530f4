// OpenCL plumbing: the headers at a fixed API level, RAII handles for cl objects, and error
// checks that name the failing call and the CL error code.
#pragma once

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120  // OpenCL 1.2: what Adreno/Mali drivers and PoCL all have
#endif
#if defined(__APPLE__)
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif
#include "opencl/cl_loader.h"  // RTM_OPENCL_DLOPEN: clXxx(...) calls go through dlsym'd pointers

#include <string>
#include <utility>

#include "rtmobile/rtmobile.hpp"

namespace rtmobile::cl {

// "CL_OUT_OF_RESOURCES", ..., or "CL error <code>" for codes it does not know.
std::string error_name(cl_int code);

// Throws Error(kInternal, "OpenCL: <call> failed: <CL_ERROR_NAME> (<code>)") unless CL_SUCCESS.
void check(cl_int code, const char* call);

// A move-only owner of one cl object; Release is one of the release() overloads below.
template <typename T, cl_int (*Release)(T)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T h) : h_(h) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  ~Handle() { reset(); }

  T get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }
  void reset() {
    if (h_ != nullptr) Release(h_);
    h_ = nullptr;
  }

 private:
  T h_ = nullptr;
};

// Plain functions (a template argument cannot be a run-time looked-up pointer).
inline cl_int release(cl_context h) { return clReleaseContext(h); }
inline cl_int release(cl_command_queue h) { return clReleaseCommandQueue(h); }
inline cl_int release(cl_program h) { return clReleaseProgram(h); }
inline cl_int release(cl_kernel h) { return clReleaseKernel(h); }
inline cl_int release(cl_mem h) { return clReleaseMemObject(h); }

using Context = Handle<cl_context, release>;
using Queue = Handle<cl_command_queue, release>;
using Program = Handle<cl_program, release>;
using Kernel = Handle<cl_kernel, release>;
using Mem = Handle<cl_mem, release>;

// String-valued device/platform queries.
std::string device_string(cl_device_id device, cl_device_info what);
std::string platform_string(cl_platform_id platform, cl_platform_info what);

// Sets kernel argument `index` (a value or a cl_mem), checking the result.
template <typename T>
void set_arg(cl_kernel k, cl_uint index, const T& value) {
  check(clSetKernelArg(k, index, sizeof(T), &value), "clSetKernelArg");
}
inline void set_local_arg(cl_kernel k, cl_uint index, size_t bytes) {
  check(clSetKernelArg(k, index, bytes, nullptr), "clSetKernelArg(__local)");
}

}  // namespace rtmobile::cl
