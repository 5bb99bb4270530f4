# Cross-compile for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu; tests run under qemu.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=$PWD/cmake/aarch64-linux-gnu.cmake
#   ctest --test-dir build-aarch64      (runs each test through qemu-aarch64)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(RTM_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${RTM_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${RTM_CROSS_TRIPLE}-g++)

# Headers and libraries from the target sysroot only; programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${RTM_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# add_test() commands run through this, so ctest executes the aarch64 binaries under qemu-user
# with the cross sysroot as the dynamic loader's root. Override with -DCMAKE_CROSSCOMPILING_EMULATOR=.
if(NOT DEFINED CMAKE_CROSSCOMPILING_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${RTM_CROSS_TRIPLE})
endif()
