# cmake -DCLANG=<clang or empty> -DSRC=<kernels.cl> -P check_kernels.cmake
# Compile-checks kernels.cl with clang's OpenCL C front end for the SPIR target, which
# supports cl_khr_fp16, in every variant the backend can build: RTM_USE_FMA=0|1 x
# RTM_HALF_MATH=0|1. The half variant is otherwise only compiled on devices that report
# cl_khr_fp16 (PoCL's CPU device does not). Skips (exit 0) without clang.
if(NOT CLANG)
  message("SKIPPED: no clang found to compile-check ${SRC} (install clang to enable this test)")
  return()
endif()
foreach(fma 0 1)
  foreach(half 0 1)
    execute_process(
      COMMAND ${CLANG} -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -target spir64
              -fsyntax-only -Wall -Wextra -Werror -DRTM_USE_FMA=${fma} -DRTM_HALF_MATH=${half}
              ${SRC}
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "kernels.cl does not compile with -DRTM_USE_FMA=${fma} "
                          "-DRTM_HALF_MATH=${half}:\n${out}")
    endif()
    message("ok: -DRTM_USE_FMA=${fma} -DRTM_HALF_MATH=${half}")
  endforeach()
endforeach()
