#!/usr/bin/env bash
# CI: fuzz the BSPC reader and the engine behind Session::from_memory (docs/fuzzing.md).
# Builds bspc_fuzz with clang (libFuzzer + ASan + UBSan, the library instrumented too) in
# build-fuzz/, replays the generated seeds and cpp/fuzz/regressions/ once (ctest), then fuzzes
# from those seeds and from files the Python writer makes (cpp/fuzz/writer_seeds.py).
# Any finding (sanitizer report, crash, leak, failed check, timeout, out-of-memory) exits
# non-zero and leaves the input in build-fuzz/artifacts/.
#
#   .ci/fuzz.sh                    the CI run: about a minute of fuzzing
#   .ci/fuzz.sh -runs=1000000      any libFuzzer flags instead of -max_total_time=60
#
# New inputs accumulate in build-fuzz/corpus/ (kept between local runs; CI starts from the
# seeds). CC/CXX default to clang-15; RTM_JOBS sets the build's parallelism (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-fuzz
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# The sanitizers' own search for llvm-symbolizer fails with clang-15 beside Debian's llvm-14
# symbolizer ("invalid path to external symbolizer"): name it, so stacks show file:line.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for symbolizer in llvm-symbolizer-15 llvm-symbolizer; do
    if command -v "$symbolizer" >/dev/null; then
      export ASAN_SYMBOLIZER_PATH=$(command -v "$symbolizer")
      break
    fi
  done
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

CC=${CC:-clang-15} CXX=${CXX:-clang++-15} cmake -S . -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRTM_FUZZ=ON -DRTM_BUILD_TESTS=OFF -DRTM_OPENCL=OFF
cmake --build "$build" -j "${RTM_JOBS:-2}"
ctest --test-dir "$build" --output-on-failure  # writes the seeds, replays them and regressions

# Seeds from the product's Python writer too, where it is installed (CI: pip install ".[test]").
seeds=("$build/cpp/fuzz/seeds")
python=${PYTHON:-python3}
if "$python" -c "import rtmobile_train.bspc" 2>/dev/null; then
  "$python" cpp/fuzz/writer_seeds.py "$build/writer-seeds"
  seeds+=("$build/writer-seeds")
else
  echo "fuzz: rtmobile_train is not importable by $python: no writer seeds this run"
fi

if [ $# -eq 0 ]; then set -- -max_total_time=60; fi
mkdir -p "$build/corpus" "$build/artifacts"
# -max_len: the seeds are 3-8 KB; twice the largest leaves room to grow sections.
# -timeout: one input takes milliseconds; seconds mean a hang.
# -rss_limit_mb / -malloc_limit_mb: the sessions these inputs make need a few MB (a file's
# buffers scale with its size), the harness at most 64 MB of frames; one allocation or a peak
# past 2 GB is a finding, not the machine running out of memory.
"$build/cpp/fuzz/bspc_fuzz" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
  -artifact_prefix="$build/artifacts/" -print_final_stats=1 "$@" \
  "$build/corpus" "${seeds[@]}" cpp/fuzz/regressions
