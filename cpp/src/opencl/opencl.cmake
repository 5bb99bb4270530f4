# The OpenCL backend (device = "opencl"), included from cpp/CMakeLists.txt after the rtmobile
# target exists. RTM_OPENCL: AUTO (default) builds it when the OpenCL headers and ICD loader are
# found and otherwise builds without it; ON requires it; OFF never builds it. See docs/opencl.md.
set(RTM_OPENCL AUTO CACHE STRING "OpenCL backend: AUTO (if found), ON (required) or OFF")
set_property(CACHE RTM_OPENCL PROPERTY STRINGS AUTO ON OFF)

set(RTM_HAVE_OPENCL OFF)
if(RTM_OPENCL STREQUAL "AUTO")
  find_package(OpenCL QUIET)
elseif(RTM_OPENCL)
  find_package(OpenCL REQUIRED)
endif()

if(OpenCL_FOUND)
  set(RTM_HAVE_OPENCL ON)
  set(_rtm_cl_dir ${CMAKE_CURRENT_SOURCE_DIR}/src/opencl)
  set(_rtm_cl_gen ${CMAKE_CURRENT_BINARY_DIR}/generated)
  add_custom_command(
    OUTPUT ${_rtm_cl_gen}/opencl_kernels.inc
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_rtm_cl_gen}
    COMMAND ${CMAKE_COMMAND} -DIN=${_rtm_cl_dir}/kernels.cl -DOUT=${_rtm_cl_gen}/opencl_kernels.inc
            -P ${_rtm_cl_dir}/embed_cl.cmake
    DEPENDS ${_rtm_cl_dir}/kernels.cl ${_rtm_cl_dir}/embed_cl.cmake
    COMMENT "Embedding OpenCL kernels (kernels.cl)"
    VERBATIM)
  target_sources(rtmobile PRIVATE
    ${_rtm_cl_dir}/cl_plan.cc
    ${_rtm_cl_dir}/cl_util.cc
    ${_rtm_cl_dir}/opencl_backend.cc
    ${_rtm_cl_gen}/opencl_kernels.inc)
  target_include_directories(rtmobile PRIVATE ${_rtm_cl_gen})
  target_compile_definitions(rtmobile PRIVATE RTM_HAVE_OPENCL=1)
  # Through the ICD loader (libOpenCL.so), which dispatches to the installed driver(s).
  target_link_libraries(rtmobile PRIVATE OpenCL::OpenCL)
  message(STATUS "rtmobile: OpenCL backend ON (${OpenCL_LIBRARY}, OpenCL ${OpenCL_VERSION_STRING} headers)")
elseif(RTM_OPENCL STREQUAL "AUTO")
  message(STATUS "rtmobile: OpenCL headers/ICD loader not found: building without the OpenCL "
                 "backend (device='opencl' unavailable; install ocl-icd-opencl-dev and "
                 "opencl-headers, or pass -DRTM_OPENCL=OFF to silence this)")
else()
  message(STATUS "rtmobile: OpenCL backend OFF (RTM_OPENCL=${RTM_OPENCL})")
endif()
