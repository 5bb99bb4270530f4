// RTM_OPENCL_DLOPEN builds: the OpenCL entry points are looked up at run time with dlopen/dlsym
// instead of being linked, so the library loads (and device 'cpu' works) on a machine without
// libOpenCL.so, and an Android app need not link the vendor's library. Included by cl_util.h
// after <CL/cl.h>; every clXxx(...) call in the backend then goes through the table below.
// See docs/opencl.md and docs/android.md.
#pragma once

#if defined(RTM_OPENCL_DLOPEN)

// Every OpenCL function the backend calls. A new one goes here and into the redirects below
// (a missing one is an undefined symbol when linking the tests of a dlopen build).
#define RTM_CL_FUNCTIONS(X) \
  X(clBuildProgram)         \
  X(clCreateBuffer)         \
  X(clCreateCommandQueue)   \
  X(clCreateContext)        \
  X(clCreateKernel)         \
  X(clCreateProgramWithSource) \
  X(clEnqueueCopyBuffer)    \
  X(clEnqueueNDRangeKernel) \
  X(clEnqueueReadBuffer)    \
  X(clEnqueueWriteBuffer)   \
  X(clFinish)               \
  X(clGetDeviceIDs)         \
  X(clGetDeviceInfo)        \
  X(clGetKernelWorkGroupInfo) \
  X(clGetPlatformIDs)       \
  X(clGetPlatformInfo)      \
  X(clGetProgramBuildInfo)  \
  X(clReleaseCommandQueue)  \
  X(clReleaseContext)       \
  X(clReleaseKernel)        \
  X(clReleaseMemObject)     \
  X(clReleaseProgram)       \
  X(clSetKernelArg)

namespace rtmobile::cl::dyn {

struct Api {
#define RTM_CL_POINTER(name) decltype(&::name) name = nullptr;
  RTM_CL_FUNCTIONS(RTM_CL_POINTER)
#undef RTM_CL_POINTER
};

// The table, loaded on first use (thread-safe, once per process; the library is never
// unloaded). Tries $RTM_OPENCL_LIBRARY when set, else the usual names and, on Android, the
// vendor paths. Throws Error(kUnsupported, "device 'opencl': ...") naming what it tried when
// no library loads or one lacks a function.
const Api& api();

}  // namespace rtmobile::cl::dyn

#ifndef RTM_CL_LOADER_IMPL
// A macro does not expand inside its own expansion, so the member access keeps its name.
#define RTM_CL_REDIRECT(name) (::rtmobile::cl::dyn::api().name)
#define clBuildProgram RTM_CL_REDIRECT(clBuildProgram)
#define clCreateBuffer RTM_CL_REDIRECT(clCreateBuffer)
#define clCreateCommandQueue RTM_CL_REDIRECT(clCreateCommandQueue)
#define clCreateContext RTM_CL_REDIRECT(clCreateContext)
#define clCreateKernel RTM_CL_REDIRECT(clCreateKernel)
#define clCreateProgramWithSource RTM_CL_REDIRECT(clCreateProgramWithSource)
#define clEnqueueCopyBuffer RTM_CL_REDIRECT(clEnqueueCopyBuffer)
#define clEnqueueNDRangeKernel RTM_CL_REDIRECT(clEnqueueNDRangeKernel)
#define clEnqueueReadBuffer RTM_CL_REDIRECT(clEnqueueReadBuffer)
#define clEnqueueWriteBuffer RTM_CL_REDIRECT(clEnqueueWriteBuffer)
#define clFinish RTM_CL_REDIRECT(clFinish)
#define clGetDeviceIDs RTM_CL_REDIRECT(clGetDeviceIDs)
#define clGetDeviceInfo RTM_CL_REDIRECT(clGetDeviceInfo)
#define clGetKernelWorkGroupInfo RTM_CL_REDIRECT(clGetKernelWorkGroupInfo)
#define clGetPlatformIDs RTM_CL_REDIRECT(clGetPlatformIDs)
#define clGetPlatformInfo RTM_CL_REDIRECT(clGetPlatformInfo)
#define clGetProgramBuildInfo RTM_CL_REDIRECT(clGetProgramBuildInfo)
#define clReleaseCommandQueue RTM_CL_REDIRECT(clReleaseCommandQueue)
#define clReleaseContext RTM_CL_REDIRECT(clReleaseContext)
#define clReleaseKernel RTM_CL_REDIRECT(clReleaseKernel)
#define clReleaseMemObject RTM_CL_REDIRECT(clReleaseMemObject)
#define clReleaseProgram RTM_CL_REDIRECT(clReleaseProgram)
#define clSetKernelArg RTM_CL_REDIRECT(clSetKernelArg)
#endif

#endif  // RTM_OPENCL_DLOPEN
