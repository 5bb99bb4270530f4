#!/usr/bin/env bash
# CI: the installed CMake package works for an app. Builds the C/C++ library alone, installs it
# into a temporary prefix, checks the installed tree, builds cpp/examples against it with
# find_package(rtmobile) and runs the C and C++ example apps on the committed fixture
# cpp/examples/tiny_gru.bspc (no Python needed at build or run time).
#
# Two configurations:
#   static  the default (librtmobile.a; OpenCL linked when found)
#   shared  -DBUILD_SHARED_LIBS=ON -DRTM_OPENCL_DLOPEN=ON (librtmobile.so; libOpenCL loaded at
#           run time, as on Android)
# RTM_INSTALL_EXAMPLE_CONFIGS="static" (or "shared") runs just one. -j2 unless RTM_JOBS is set.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${RTM_JOBS:-2}
configs=${RTM_INSTALL_EXAMPLE_CONFIGS:-"static shared"}
model=cpp/examples/tiny_gru.bspc
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "install_example: FAIL: $*" >&2
  exit 1
}

for config in $configs; do
  case $config in
    static) build=build-install; extra=() ;;
    shared) build=build-install-shared; extra=(-DBUILD_SHARED_LIBS=ON -DRTM_OPENCL_DLOPEN=ON) ;;
    *) fail "unknown configuration '$config' (static or shared)" ;;
  esac
  prefix=$tmp/$config
  echo "== $config: build and install the library alone into $prefix =="
  rm -rf "$build" "$build-examples"
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DRTM_BUILD_PYTHON=OFF \
    -DRTM_BUILD_TESTS=OFF "${extra[@]}"
  cmake --build "$build" -j"$jobs"
  cmake --install "$build" --prefix "$prefix"

  echo "== $config: installed tree =="
  (cd "$prefix" && find . -type f -o -type l | sort)
  libdir=
  for d in lib lib64; do
    if [ -f "$prefix/$d/cmake/rtmobile/rtmobileConfig.cmake" ]; then libdir=$prefix/$d; fi
  done
  [ -n "$libdir" ] || fail "no lib/cmake/rtmobile/rtmobileConfig.cmake under $prefix"
  for f in "$prefix/include/rtmobile/rtmobile.h" "$prefix/include/rtmobile/rtmobile.hpp" \
    "$libdir/cmake/rtmobile/rtmobileConfig.cmake" \
    "$libdir/cmake/rtmobile/rtmobileConfigVersion.cmake" \
    "$libdir/cmake/rtmobile/rtmobileTargets.cmake"; do
    [ -f "$f" ] || fail "missing $f"
  done
  if [ "$config" = static ]; then
    [ -f "$libdir/librtmobile.a" ] || fail "missing $libdir/librtmobile.a"
  else
    ls "$libdir"/librtmobile.so* >/dev/null 2>&1 || fail "missing $libdir/librtmobile.so"
    # The C API is exported (the library is built with hidden visibility).
    nm -D --defined-only "$libdir/librtmobile.so" | grep -q " T rtm_session_create_from_file$" ||
      fail "librtmobile.so does not export rtm_session_create_from_file"
  fi

  echo "== $config: build cpp/examples against the installed package =="
  cmake -S cpp/examples -B "$build-examples" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DRTM_EXAMPLES_WERROR=ON
  cmake --build "$build-examples" -j"$jobs"
  app=$build-examples/app
  app_cpp=$build-examples/app_cpp

  echo "== $config: run =="
  "$app" "$model"
  "$app_cpp" "$model" 257
  # OpenCL from the installed library, where the build and the machine have it.
  if out=$("$app_cpp" "$model" 100 --device opencl 2>&1); then
    echo "$out"
  elif grep -q -E "not available in this build|no OpenCL platform|could not load the OpenCL" <<<"$out"; then
    echo "(device 'opencl' skipped: $out)"
  else
    echo "$out" >&2
    fail "app_cpp --device opencl failed"
  fi

  if [ "$config" = shared ]; then  # dlopen: a missing libOpenCL only disables device 'opencl'
    if out=$(RTM_OPENCL_LIBRARY=$tmp/no/libOpenCL.so "$app_cpp" "$model" 10 --device opencl 2>&1)
    then
      fail "device 'opencl' opened without its library"
    fi
    grep -q "could not load the OpenCL library" <<<"$out" || fail "unexpected message: $out"
    echo "without libOpenCL: $out"
    RTM_OPENCL_LIBRARY=$tmp/no/libOpenCL.so "$app_cpp" "$model" 10 >/dev/null ||
      fail "device 'cpu' failed without libOpenCL"
  fi

  echo "== $config: errors exit non-zero with the library's message =="
  if "$app" "$tmp/missing.bspc" 2>"$tmp/err"; then fail "a missing model file was accepted"; fi
  grep -q "IO" "$tmp/err" || fail "no IO error message: $(cat "$tmp/err")"
  cat "$tmp/err"
  cp "$model" "$tmp/corrupt.bspc"
  printf '\xff\xff\xff\xff' | dd of="$tmp/corrupt.bspc" bs=1 seek=200 conv=notrunc status=none
  if "$app" "$tmp/corrupt.bspc" 2>"$tmp/err"; then fail "a corrupt model file was accepted"; fi
  grep -q "FORMAT" "$tmp/err" || fail "no FORMAT error message: $(cat "$tmp/err")"
  cat "$tmp/err"
  if "$app_cpp" "$tmp/corrupt.bspc" 2>"$tmp/err"; then fail "app_cpp accepted a corrupt model"; fi
  cat "$tmp/err"

  echo "== $config: dynamic dependencies =="
  for exe in "$app" "$app_cpp"; do
    deps=$(ldd "$exe")
    echo "$exe:"
    echo "$deps"
    if grep -q -i python <<<"$deps"; then fail "$exe depends on libpython"; fi
    if [ "$config" = shared ]; then
      grep -q "librtmobile.so" <<<"$deps" || fail "$exe does not use the shared librtmobile"
      if grep -q "libOpenCL" <<<"$deps"; then fail "$exe links libOpenCL despite dlopen"; fi
      if grep -q "not found" <<<"$deps"; then fail "$exe has unresolved libraries"; fi
    fi
  done
  if [ "$config" = shared ] && ldd "$libdir/librtmobile.so" | grep -q libOpenCL; then
    fail "librtmobile.so links libOpenCL despite RTM_OPENCL_DLOPEN=ON"
  fi
done
echo "install_example: OK ($configs)"
