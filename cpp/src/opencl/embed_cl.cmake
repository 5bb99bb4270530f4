# cmake -DIN=<kernels.cl> -DOUT=<opencl_kernels.inc> -P embed_cl.cmake
# Wraps an OpenCL C source in a C++ raw string literal, so the library carries its kernels and
# never looks for a file at run time.
file(READ "${IN}" source)
set(delim "RTMCL")
string(FIND "${source}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )${delim}\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by embed_cl.cmake; do not edit.\nR\"${delim}(${source})${delim}\"\n")
# Only touch the output when it changes (no needless rebuilds).
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
