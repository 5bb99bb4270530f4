#include "opencl/cl_util.h"

#include <vector>

namespace rtmobile::cl {

std::string error_name(cl_int code) {
  switch (code) {
#define RTM_CL_ERR(name) \
  case name:             \
    return #name;
    RTM_CL_ERR(CL_SUCCESS)
    RTM_CL_ERR(CL_DEVICE_NOT_FOUND)
    RTM_CL_ERR(CL_DEVICE_NOT_AVAILABLE)
    RTM_CL_ERR(CL_COMPILER_NOT_AVAILABLE)
    RTM_CL_ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    RTM_CL_ERR(CL_OUT_OF_RESOURCES)
    RTM_CL_ERR(CL_OUT_OF_HOST_MEMORY)
    RTM_CL_ERR(CL_PROFILING_INFO_NOT_AVAILABLE)
    RTM_CL_ERR(CL_MEM_COPY_OVERLAP)
    RTM_CL_ERR(CL_IMAGE_FORMAT_MISMATCH)
    RTM_CL_ERR(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    RTM_CL_ERR(CL_BUILD_PROGRAM_FAILURE)
    RTM_CL_ERR(CL_MAP_FAILURE)
    RTM_CL_ERR(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    RTM_CL_ERR(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    RTM_CL_ERR(CL_COMPILE_PROGRAM_FAILURE)
    RTM_CL_ERR(CL_LINKER_NOT_AVAILABLE)
    RTM_CL_ERR(CL_LINK_PROGRAM_FAILURE)
    RTM_CL_ERR(CL_DEVICE_PARTITION_FAILED)
    RTM_CL_ERR(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    RTM_CL_ERR(CL_INVALID_VALUE)
    RTM_CL_ERR(CL_INVALID_DEVICE_TYPE)
    RTM_CL_ERR(CL_INVALID_PLATFORM)
    RTM_CL_ERR(CL_INVALID_DEVICE)
    RTM_CL_ERR(CL_INVALID_CONTEXT)
    RTM_CL_ERR(CL_INVALID_QUEUE_PROPERTIES)
    RTM_CL_ERR(CL_INVALID_COMMAND_QUEUE)
    RTM_CL_ERR(CL_INVALID_HOST_PTR)
    RTM_CL_ERR(CL_INVALID_MEM_OBJECT)
    RTM_CL_ERR(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    RTM_CL_ERR(CL_INVALID_IMAGE_SIZE)
    RTM_CL_ERR(CL_INVALID_SAMPLER)
    RTM_CL_ERR(CL_INVALID_BINARY)
    RTM_CL_ERR(CL_INVALID_BUILD_OPTIONS)
    RTM_CL_ERR(CL_INVALID_PROGRAM)
    RTM_CL_ERR(CL_INVALID_PROGRAM_EXECUTABLE)
    RTM_CL_ERR(CL_INVALID_KERNEL_NAME)
    RTM_CL_ERR(CL_INVALID_KERNEL_DEFINITION)
    RTM_CL_ERR(CL_INVALID_KERNEL)
    RTM_CL_ERR(CL_INVALID_ARG_INDEX)
    RTM_CL_ERR(CL_INVALID_ARG_VALUE)
    RTM_CL_ERR(CL_INVALID_ARG_SIZE)
    RTM_CL_ERR(CL_INVALID_KERNEL_ARGS)
    RTM_CL_ERR(CL_INVALID_WORK_DIMENSION)
    RTM_CL_ERR(CL_INVALID_WORK_GROUP_SIZE)
    RTM_CL_ERR(CL_INVALID_WORK_ITEM_SIZE)
    RTM_CL_ERR(CL_INVALID_GLOBAL_OFFSET)
    RTM_CL_ERR(CL_INVALID_EVENT_WAIT_LIST)
    RTM_CL_ERR(CL_INVALID_EVENT)
    RTM_CL_ERR(CL_INVALID_OPERATION)
    RTM_CL_ERR(CL_INVALID_GL_OBJECT)
    RTM_CL_ERR(CL_INVALID_BUFFER_SIZE)
    RTM_CL_ERR(CL_INVALID_MIP_LEVEL)
    RTM_CL_ERR(CL_INVALID_GLOBAL_WORK_SIZE)
    RTM_CL_ERR(CL_INVALID_PROPERTY)
    RTM_CL_ERR(CL_INVALID_IMAGE_DESCRIPTOR)
    RTM_CL_ERR(CL_INVALID_COMPILER_OPTIONS)
    RTM_CL_ERR(CL_INVALID_LINKER_OPTIONS)
    RTM_CL_ERR(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef RTM_CL_ERR
    case -1001:
      return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
      return "CL error " + std::to_string(code);
  }
}

void check(cl_int code, const char* call) {
  if (code == CL_SUCCESS) return;
  throw Error(ErrorCode::kInternal, std::string("OpenCL: ") + call + " failed: " +
                                        error_name(code) + " (" + std::to_string(code) + ")");
}

std::string device_string(cl_device_id device, cl_device_info what) {
  size_t size = 0;
  check(clGetDeviceInfo(device, what, 0, nullptr, &size), "clGetDeviceInfo");
  std::vector<char> buf(size + 1, '\0');
  check(clGetDeviceInfo(device, what, size, buf.data(), nullptr), "clGetDeviceInfo");
  return std::string(buf.data());
}

std::string platform_string(cl_platform_id platform, cl_platform_info what) {
  size_t size = 0;
  check(clGetPlatformInfo(platform, what, 0, nullptr, &size), "clGetPlatformInfo");
  std::vector<char> buf(size + 1, '\0');
  check(clGetPlatformInfo(platform, what, size, buf.data(), nullptr), "clGetPlatformInfo");
  return std::string(buf.data());
}

}  // namespace rtmobile::cl
