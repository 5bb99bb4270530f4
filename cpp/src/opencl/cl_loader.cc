// Run-time loading of the OpenCL library for RTM_OPENCL_DLOPEN builds (see cl_loader.h).
#define RTM_CL_LOADER_IMPL 1
#include "opencl/cl_util.h"

#if defined(RTM_OPENCL_DLOPEN)

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace rtmobile::cl::dyn {
namespace {

// Where libOpenCL.so usually is. On Android it is the GPU vendor's library; an app can load it
// only where the vendor lists it as a public native library (docs/android.md).
std::vector<std::string> candidates() {
  const char* env = std::getenv("RTM_OPENCL_LIBRARY");
  if (env != nullptr && *env != '\0') return {env};
#if defined(__ANDROID__)
#if defined(__LP64__)
  return {"libOpenCL.so", "/vendor/lib64/libOpenCL.so", "/system/vendor/lib64/libOpenCL.so",
          "/system/lib64/libOpenCL.so"};
#else
  return {"libOpenCL.so", "/vendor/lib/libOpenCL.so", "/system/vendor/lib/libOpenCL.so",
          "/system/lib/libOpenCL.so"};
#endif
#elif defined(__APPLE__)
  return {"/System/Library/Frameworks/OpenCL.framework/OpenCL"};
#else
  return {"libOpenCL.so.1", "libOpenCL.so"};  // the ICD loader (ocl-icd, Khronos loader)
#endif
}

struct Loaded {
  Api api;
  std::string error;  // why no library could be loaded; empty when api is complete
};

Loaded load() {
  Loaded out;
  std::string tried;
  for (const std::string& name : candidates()) {
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      tried += (tried.empty() ? "" : "; ") +
               (why != nullptr ? std::string(why) : name + ": not found");
      continue;
    }
    std::string missing;
#define RTM_CL_RESOLVE(name)                                                      \
  out.api.name = reinterpret_cast<decltype(out.api.name)>(dlsym(lib, #name)); \
  if (out.api.name == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(#name);
    RTM_CL_FUNCTIONS(RTM_CL_RESOLVE)
#undef RTM_CL_RESOLVE
    if (missing.empty()) {
      return out;  // never dlclose'd: drivers do not like being unloaded
    }
    tried += (tried.empty() ? "" : "; ") + name + ": lacks " + missing;
    out.api = Api{};
    dlclose(lib);
  }
  out.error =
      "device 'opencl': could not load the OpenCL library (" + tried +
      "); install the GPU vendor's OpenCL driver (or an ICD loader and PoCL), or set "
      "RTM_OPENCL_LIBRARY to the library's path";
  return out;
}

const Loaded& loaded() {
  static const Loaded instance = load();  // thread-safe, once
  return instance;
}

}  // namespace

const Api& api() {
  const Loaded& l = loaded();
  if (!l.error.empty()) throw Error(ErrorCode::kUnsupported, l.error);
  return l.api;
}

}  // namespace rtmobile::cl::dyn

#endif  // RTM_OPENCL_DLOPEN
