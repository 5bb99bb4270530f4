// Roofline probe for bench/bench_gru.py: this machine's read bandwidth at any working set (a
// read-only stream), a STREAM-like triad for reference, and the single-precision FMA peak, each
// with 1..N threads. Python cannot measure either honestly (interpreter overhead, no control
// over vector width), so this is a tiny C++ program built with -O3 -march=native.
//
//   roofline --threads 1,2 --read-bytes 65536,131072,1073741824
//            --triad-bytes 1073741824 --reps 10 --fma-ms 200   (one line)
//
// Output: one JSON object per line on stdout, in the order of the options' lists, per thread
// count.
//   {"kind":"read","threads":T,"working_set_bytes":..,"isa":"avx512"|"avx2"|"scalar",
//    "gbs":best,"samples_gbs":[..]}
//   {"kind":"triad","threads":T,"working_set_bytes":..,"gbs":best,"samples_gbs":[..]}
//   {"kind":"fma","isa":"avx512"|"avx2"|"scalar","threads":T,"gflops":best,"samples_gflops":[..]}
//
// Read: the sum of one array of doubles of --read-bytes bytes (each value a total over all
// threads, every thread reading its own slice), read as 4 concurrent streams per thread with
// independent vector accumulators so that the loads, not the add latency, limit it (at least
// 8 KiB per thread, whatever is asked; the line says what was read). Each timing reads the array
// many times over when it fits a cache, so a value is the bandwidth of whatever level holds that
// working set: bench_gru.py sweeps powers of two (to find where the bandwidth drops, i.e.
// the cache sizes this machine really has) and then measures each model's own working set. A
// GEMV only reads its weights; a pure read stream has no stores to share the bus with and none of
// the write-allocate reads the triad does not count, so it runs at or above the triad, and the
// triad is no bound for a GEMV: bench_gru.py takes the read bandwidth as the memory roof.
// Triad: a[i] = b[i] + s * c[i] over doubles, three arrays of a third of --triad-bytes each;
// bytes counted as STREAM does (2 reads + 1 write per element, no write-allocate traffic).
// FMA: independent accumulator chains (enough to cover FMA latency x throughput) of the widest
// vectors the build targets; flops = 2 x lanes x chains x iterations per thread. --fma-ms 0
// skips it.
// Every timing is the best of --reps after one warm-up timing; worker 0 is the main thread, so T
// threads use T cores. Each working set is allocated and first-touched (by the thread that reads
// it) once, before its timings.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int> threads{1, 2};
  std::vector<double> read_bytes;
  std::vector<double> triad_bytes;
  int reps = 10;
  double fma_ms = 200.0;
};

// Bytes moved per timing: enough that a timing lasts milliseconds even at cache bandwidth
// (2 ms at 200 GB/s, 20 ms at 20 GB/s), at least one pass.
constexpr double kBytesPerTiming = 4e8;

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: roofline [--threads 1,2] [--read-bytes B,B,..]"
               " [--triad-bytes B,..] [--reps 10] [--fma-ms 200]\n",
               msg);
  std::exit(2);
}

std::vector<double> parse_list(const char* s, bool allow_zero = false) {
  std::vector<double> out;
  std::string item;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (item.empty()) usage("empty list item");
      char* end = nullptr;
      double v = std::strtod(item.c_str(), &end);
      if (*end != '\0' || !(v > 0 || (allow_zero && v == 0)))
        usage("list items must be positive numbers");
      out.push_back(v);
      item.clear();
      if (*p == '\0') break;
    } else {
      item.push_back(*p);
    }
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--threads") {
      o.threads.clear();
      for (double t : parse_list(v)) o.threads.push_back(static_cast<int>(t));
    } else if (a == "--read-bytes") {
      o.read_bytes = parse_list(v);
    } else if (a == "--triad-bytes") {
      o.triad_bytes = parse_list(v);
    } else if (a == "--reps") {
      o.reps = std::max(1, static_cast<int>(parse_list(v).at(0)));
    } else if (a == "--fma-ms") {
      o.fma_ms = parse_list(v, true).at(0);
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  return o;
}

// Runs work(thread_index) on n threads (the caller is thread 0) released together; returns the
// seconds from the release until the last one finishes.
double run_parallel(int n, const std::function<void(int)>& work) {
  std::atomic<int> ready{0};
  std::atomic<int> done{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      work(t);
      done.fetch_add(1);
    });
  }
  while (ready.load() != n - 1) {
  }
  auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  work(0);
  while (done.load() != n - 1) {
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& th : pool) th.join();
  return s;
}

struct Arrays {
  double* a = nullptr;
  double* b = nullptr;
  double* c = nullptr;
  size_t n = 0;
};

double* alloc(size_t n) {
  void* p = std::aligned_alloc(64, ((n * sizeof(double) + 63) / 64) * 64);
  if (!p) usage("out of memory");
  return static_cast<double*>(p);
}

// Best-of-reps triad bandwidth (GB/s) with `threads` threads over three arrays of n doubles.
std::vector<double> triad(size_t n, int threads, int reps, double& checksum) {
  Arrays x{alloc(n), alloc(n), alloc(n), n};
  auto lo = [&](int t) { return n * static_cast<size_t>(t) / static_cast<size_t>(threads); };
  // First touch by the thread that will use each chunk.
  run_parallel(threads, [&](int t) {
    for (size_t i = lo(t); i < lo(t + 1); ++i) {
      x.a[i] = 0.0;
      x.b[i] = 1.0 + static_cast<double>(i % 7);
      x.c[i] = 0.5;
    }
  });
  const double bytes_per_pass = 3.0 * sizeof(double) * static_cast<double>(n);
  const int passes = std::max(1, static_cast<int>(kBytesPerTiming / bytes_per_pass));
  std::vector<double> out;
  for (int r = 0; r < reps + 1; ++r) {  // the first timing is a warm-up
    const double s = 1.0 + 1e-9 * r;
    double sec = run_parallel(threads, [&](int t) {
      double* __restrict a = x.a;
      const double* __restrict b = x.b;
      const double* __restrict c = x.c;
      const size_t i0 = lo(t), i1 = lo(t + 1);
      for (int p = 0; p < passes; ++p) {
        for (size_t i = i0; i < i1; ++i) a[i] = b[i] + s * c[i];
        asm volatile("" ::: "memory");
      }
    });
    if (r > 0) out.push_back(bytes_per_pass * passes / sec / 1e9);
  }
  for (size_t i = 0; i < n; i += 4096) checksum += x.a[i];
  std::free(x.a);
  std::free(x.b);
  std::free(x.c);
  return out;
}

// Sum of p[0..n) with Chains independent accumulators of the widest vectors the build targets:
// one chain would wait out the add latency on every load; Chains >= latency x adds per cycle keeps
// the loads the limit. No -ffast-math, so without the intrinsics the compiler could not
// reassociate (vectorize) a plain double sum.
// The array is read as Streams contiguous parts in lockstep, Chains / Streams accumulators each:
// the hardware prefetchers follow each stream separately, and one stream leaves a core with too
// few misses in flight to reach the bandwidth (here 17 GB/s from one stream, 24 from four, over
// 192 MB), while a GEMV reads several weight rows at once.
template <typename V, int Lanes, int Chains, int Streams, V (*Zero)(), V (*Load)(const double*),
          V (*Add)(V, V)>
double sum_streams(const double* p, size_t n) {
  static_assert(Chains % Streams == 0, "every stream gets the same number of accumulators");
  static_assert((Chains & (Chains - 1)) == 0, "the reduction tree halves the accumulators");
  constexpr int per = Chains / Streams;
  constexpr size_t step = static_cast<size_t>(Lanes) * per;  // doubles per stream per iteration
  // Stream starts on whole steps and whole cache lines (8 doubles): no split loads.
  constexpr size_t unit = step % 8 == 0 ? step : step * 8;
  const size_t m = n / Streams / unit * unit;
  V acc[Chains];
  for (int k = 0; k < Chains; ++k) acc[k] = Zero();
  for (size_t i = 0; i < m; i += step) {
#pragma GCC unroll 32
    for (int s = 0; s < Streams; ++s) {
#pragma GCC unroll 32
      for (int k = 0; k < per; ++k)
        acc[s * per + k] = Add(acc[s * per + k], Load(p + s * m + i + k * Lanes));
    }
  }
  // Reduce the accumulators as a tree of vector adds, then the lanes: a pass over a small
  // (L1/L2) working set must not be dominated by a long chain of scalar adds.
  for (int w = Chains / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] = Add(acc[k], acc[k + w]);
  alignas(64) double v[Lanes];
  std::memcpy(v, &acc[0], sizeof v);
  double r = 0;
  for (double d : v) r += d;
  for (size_t i = Streams * m; i < n; ++i) r += p[i];
  return r;
}

#if defined(__AVX512F__)
__m512d zero_512d() { return _mm512_setzero_pd(); }
__m512d load_512d(const double* p) { return _mm512_loadu_pd(p); }
__m512d add_512d(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
#elif defined(__AVX2__)
__m256d zero_256d() { return _mm256_setzero_pd(); }
__m256d load_256d(const double* p) { return _mm256_loadu_pd(p); }
__m256d add_256d(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
#else
double zero_scalar() { return 0.0; }
double load_scalar(const double* p) { return *p; }
double add_scalar(double a, double b) { return a + b; }
#endif

struct ReadKernel {
  const char* isa;
  double (*run)(const double*, size_t);
};

// Only the widest ISA: unlike the FMA peak, the bandwidth does not depend on the vector width
// once the loads are wide enough, and a second ISA would double the probe's run time.
// Chains cover add latency (4 cycles) x 2 loads per cycle (16 zmm: with room to spare) and fit
// the registers (32 zmm, 16 ymm); 4 streams.
ReadKernel read_kernel() {
#if defined(__AVX512F__)
  return {"avx512", sum_streams<__m512d, 8, 16, 4, zero_512d, load_512d, add_512d>};
#elif defined(__AVX2__)
  return {"avx2", sum_streams<__m256d, 4, 8, 4, zero_256d, load_256d, add_256d>};
#else
  return {"scalar", sum_streams<double, 1, 8, 4, zero_scalar, load_scalar, add_scalar>};
#endif
}

// Best-of-reps read bandwidth (GB/s) with `threads` threads summing their slices of one array
// of n doubles.
std::vector<double> read_stream(size_t n, int threads, int reps, double& checksum) {
  double* x = alloc(n);
  // Slices start on a cache line (8 doubles) so that no line is read by two threads.
  auto lo = [&](int t) {
    return t == threads ? n : n * static_cast<size_t>(t) / static_cast<size_t>(threads) / 8 * 8;
  };
  // First touch by the thread that will read each slice.
  run_parallel(threads, [&](int t) {
    for (size_t i = lo(t); i < lo(t + 1); ++i) x[i] = 1.0 + static_cast<double>(i % 7);
  });
  const ReadKernel k = read_kernel();
  const double bytes_per_pass = sizeof(double) * static_cast<double>(n);
  const int passes = std::max(1, static_cast<int>(kBytesPerTiming / bytes_per_pass));
  std::vector<double> sink(static_cast<size_t>(threads));
  std::vector<double> out;
  for (int r = 0; r < reps + 1; ++r) {  // the first timing is a warm-up
    double sec = run_parallel(threads, [&](int t) {
      const size_t i0 = lo(t), i1 = lo(t + 1);
      double s = 0;
      for (int p = 0; p < passes; ++p) {
        s += k.run(x + i0, i1 - i0);
        // The array does not change between passes; without this the sum could be hoisted.
        asm volatile("" ::: "memory");
      }
      sink[t] = s;
    });
    for (double s : sink) checksum += s;
    if (r > 0) out.push_back(bytes_per_pass * passes / sec / 1e9);
  }
  std::free(x);
  return out;
}

// One kernel per vector ISA the build targets; the machine's peak is the best of them.
template <typename V, int Lanes, int Chains, V (*Set1)(float), V (*Fma)(V, V, V)>
float fma_chains(long iters, float seed) {
  V acc[Chains];
  for (int k = 0; k < Chains; ++k) acc[k] = Set1(seed + 0.001f * k);
  const V m = Set1(0.9999999f), a = Set1(1e-7f);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int k = 0; k < Chains; ++k) acc[k] = Fma(acc[k], m, a);
  }
  alignas(64) float v[Chains * Lanes];
  std::memcpy(v, acc, sizeof acc);
  float r = 0;
  for (float f : v) r += f;
  return r;
}

float set1_scalar(float x) { return x; }
float fma_scalar(float a, float b, float c) { return a * b + c; }
#if defined(__AVX512F__)
__m512 set1_512(float x) { return _mm512_set1_ps(x); }
__m512 fma_512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
#endif
#if defined(__AVX2__) && defined(__FMA__)
__m256 set1_256(float x) { return _mm256_set1_ps(x); }
__m256 fma_256(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
#endif

struct FmaKernel {
  const char* isa;
  int lanes;
  int chains;
  float (*run)(long, float);
};

// Chains cover FMA latency (4-5 cycles) x throughput (2 per cycle) and fit the registers.
const std::vector<FmaKernel>& fma_kernels() {
  static const std::vector<FmaKernel> k = {
#if defined(__AVX512F__)
      {"avx512", 16, 24,
       fma_chains<__m512, 16, 24, set1_512, fma_512>},
#endif
#if defined(__AVX2__) && defined(__FMA__)
      {"avx2", 8, 12,
       fma_chains<__m256, 8, 12, set1_256, fma_256>},
#endif
      {"scalar", 1, 8, fma_chains<float, 1, 8, set1_scalar, fma_scalar>},
  };
  return k;
}

// Best-of-reps FMA throughput (GFLOP/s) with `threads` threads, each running its own chains.
std::vector<double> fma_peak(const FmaKernel& k, int threads, int reps, double ms,
                             double& checksum) {
  long iters = 1 << 16;
  // Calibrate on one thread so one timing lasts about `ms` milliseconds.
  for (;;) {
    auto t0 = Clock::now();
    checksum += k.run(iters, 1.0f);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > ms * 1e-3 / 4 || iters > (1L << 40)) {
      iters = static_cast<long>(iters * (ms * 1e-3) / s) + 1;
      break;
    }
    iters *= 4;
  }
  std::vector<float> sink(static_cast<size_t>(threads));
  std::vector<double> out;
  for (int r = 0; r < reps + 1; ++r) {
    double sec = run_parallel(threads, [&](int t) { sink[t] = k.run(iters, 1.0f + t); });
    for (float f : sink) checksum += f;
    if (r > 0) out.push_back(2.0 * k.lanes * k.chains * static_cast<double>(iters) * threads / sec / 1e9);
  }
  return out;
}

void print_samples(const std::vector<double>& v) {
  std::printf("[");
  for (size_t i = 0; i < v.size(); ++i) std::printf("%s%.3f", i ? "," : "", v[i]);
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  double checksum = 0;
  for (int t : o.threads) {
    if (t < 1 || t > 1024) usage("threads must be in [1, 1024]");
    // At least 8 KiB per thread (L1-resident anyway): each of a thread's 4 streams then covers
    // whole vector steps, and the per-pass overhead stays small against the pass.
    const size_t min_n = 1024 * static_cast<size_t>(t);
    for (double bytes : o.read_bytes) {
      const size_t n = std::max(min_n, static_cast<size_t>(bytes / sizeof(double)));
      std::vector<double> rd = read_stream(n, t, o.reps, checksum);
      std::printf(
          "{\"kind\":\"read\",\"threads\":%d,\"working_set_bytes\":%zu,\"isa\":\"%s\","
          "\"gbs\":%.3f,\"samples_gbs\":",
          t, n * sizeof(double), read_kernel().isa, *std::max_element(rd.begin(), rd.end()));
      print_samples(rd);
      std::printf("}\n");
      std::fflush(stdout);
    }
    for (double bytes : o.triad_bytes) {
      const size_t n = std::max(min_n, static_cast<size_t>(bytes / 3 / sizeof(double)));
      std::vector<double> s = triad(n, t, o.reps, checksum);
      std::printf(
          "{\"kind\":\"triad\",\"threads\":%d,\"working_set_bytes\":%zu,\"gbs\":%.3f,"
          "\"samples_gbs\":",
          t, 3 * n * sizeof(double), *std::max_element(s.begin(), s.end()));
      print_samples(s);
      std::printf("}\n");
      std::fflush(stdout);
    }
    if (o.fma_ms <= 0) continue;
    for (const FmaKernel& k : fma_kernels()) {
      if (std::strcmp(k.isa, "scalar") == 0 && fma_kernels().size() > 1) continue;
      std::vector<double> f = fma_peak(k, t, o.reps, o.fma_ms, checksum);
      std::printf("{\"kind\":\"fma\",\"isa\":\"%s\",\"lanes\":%d,\"chains\":%d,\"threads\":%d,"
                  "\"gflops\":%.3f,\"samples_gflops\":",
                  k.isa, k.lanes, k.chains, t, *std::max_element(f.begin(), f.end()));
      print_samples(f);
      std::printf("}\n");
      std::fflush(stdout);
    }
  }
  std::fprintf(stderr, "checksum %g\n", checksum);
  return 0;
}
