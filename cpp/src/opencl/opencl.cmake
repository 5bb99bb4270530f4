# The OpenCL backend (device = "opencl"), included from cpp/CMakeLists.txt after the rtmobile
# target exists. RTM_OPENCL: AUTO (default) builds it when OpenCL is found and otherwise builds
# without it; ON requires it; OFF never builds it. RTM_OPENCL_DLOPEN (default ON for Android,
# OFF elsewhere): look the OpenCL functions up at run time with dlopen/dlsym instead of linking
# libOpenCL, so only the OpenCL headers are needed to build, and the library still loads (and
# device 'cpu' works) where no libOpenCL.so exists. See docs/opencl.md and docs/android.md.
set(RTM_OPENCL AUTO CACHE STRING "OpenCL backend: AUTO (if found), ON (required) or OFF")
set_property(CACHE RTM_OPENCL PROPERTY STRINGS AUTO ON OFF)
if(CMAKE_SYSTEM_NAME STREQUAL "Android")
  set(_rtm_dlopen_default ON)
else()
  set(_rtm_dlopen_default OFF)
endif()
option(RTM_OPENCL_DLOPEN "Load libOpenCL at run time (dlopen) instead of linking it"
       ${_rtm_dlopen_default})

set(RTM_HAVE_OPENCL OFF)
set(RTM_OPENCL_LINKED OFF)  # librtmobile links OpenCL::OpenCL (the package config needs it)
set(_rtm_cl_found OFF)
if(NOT RTM_OPENCL STREQUAL "AUTO" AND NOT RTM_OPENCL)
  # OFF (or any false value): nothing to look for
elseif(RTM_OPENCL_DLOPEN)
  # Headers only (Khronos OpenCL-Headers, Debian opencl-headers); pass -DOpenCL_INCLUDE_DIR=...
  # when they are not in a default location (always when cross-compiling for Android).
  find_path(OpenCL_INCLUDE_DIR NAMES CL/cl.h OpenCL/cl.h DOC "OpenCL include directory")
  if(OpenCL_INCLUDE_DIR)
    set(_rtm_cl_found ON)
  elseif(RTM_OPENCL)  # ON
    message(FATAL_ERROR "rtmobile: RTM_OPENCL=ON with RTM_OPENCL_DLOPEN=ON needs the OpenCL "
                        "headers (CL/cl.h): install opencl-headers or pass "
                        "-DOpenCL_INCLUDE_DIR=<dir containing CL/cl.h>")
  endif()
elseif(RTM_OPENCL STREQUAL "AUTO")
  find_package(OpenCL QUIET)
  set(_rtm_cl_found ${OpenCL_FOUND})
else()
  find_package(OpenCL REQUIRED)
  set(_rtm_cl_found ON)
endif()

if(_rtm_cl_found)
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
    ${_rtm_cl_dir}/cl_loader.cc
    ${_rtm_cl_dir}/cl_plan.cc
    ${_rtm_cl_dir}/cl_util.cc
    ${_rtm_cl_dir}/opencl_backend.cc
    ${_rtm_cl_gen}/opencl_kernels.inc)
  target_include_directories(rtmobile PRIVATE ${_rtm_cl_gen})
  target_compile_definitions(rtmobile PRIVATE RTM_HAVE_OPENCL=1)
  if(RTM_OPENCL_DLOPEN)
    target_include_directories(rtmobile SYSTEM PRIVATE ${OpenCL_INCLUDE_DIR})
    target_compile_definitions(rtmobile PRIVATE RTM_OPENCL_DLOPEN=1)
    target_link_libraries(rtmobile PRIVATE ${CMAKE_DL_LIBS})
    message(STATUS "rtmobile: OpenCL backend ON, libOpenCL loaded at run time (dlopen; headers "
                   "${OpenCL_INCLUDE_DIR})")
  else()
    # Through the ICD loader (libOpenCL.so), which dispatches to the installed driver(s).
    target_link_libraries(rtmobile PRIVATE OpenCL::OpenCL)
    set(RTM_OPENCL_LINKED ON)
    message(STATUS "rtmobile: OpenCL backend ON (${OpenCL_LIBRARY}, OpenCL "
                   "${OpenCL_VERSION_STRING} headers)")
  endif()
elseif(RTM_OPENCL STREQUAL "AUTO")
  message(STATUS "rtmobile: OpenCL not found: building without the OpenCL backend "
                 "(device='opencl' unavailable; install ocl-icd-opencl-dev and opencl-headers, "
                 "or pass -DRTM_OPENCL=OFF to silence this)")
else()
  message(STATUS "rtmobile: OpenCL backend OFF (RTM_OPENCL=${RTM_OPENCL})")
endif()
