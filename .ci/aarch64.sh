#!/usr/bin/env bash
# CI: cross-compile the C++ runtime and its tests for aarch64 (NEON kernels) and run them
# under qemu-user. ctest runs each test through CMAKE_CROSSCOMPILING_EMULATOR, which the
# toolchain file sets to `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu qemu-user >/dev/null

echo "== aarch64 (NEON) C++ unit tests under qemu-aarch64 =="
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DRTM_BUILD_PYTHON=OFF -DRTM_BUILD_TESTS=ON -DRTM_WERROR=ON
cmake --build build-aarch64 -j2
ctest --test-dir build-aarch64 --output-on-failure
