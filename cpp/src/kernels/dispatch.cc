// The one dispatch point: picks a kernel table from CPU detection when a Session is created.
#include <string>

#if defined(RTM_HAVE_AVX2)
#include <cpuid.h>
#endif

#include "kernels/kernels.h"
#include "rtmobile/rtmobile.hpp"

namespace rtmobile {

#if defined(RTM_HAVE_AVX2)
namespace {
// F16C from CPUID leaf 1 (ECX bit 29): clang before 16 rejects __builtin_cpu_supports("f16c").
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

#if defined(RTM_HAVE_AVX512)
// Whether the OS saves the AVX-512 state on context switches: OSXSAVE (CPUID leaf 1, ECX bit
// 27), then XCR0 bits 1-2 (SSE, AVX) and 5-7 (opmask, upper halves of ZMM0-15, ZMM16-31).
// Recent gcc and clang check this inside __builtin_cpu_supports("avx512f") as well; this does
// not rely on the compiler's version.
bool os_saves_zmm_state() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0u));
  return (xcr0_lo & 0xe6u) == 0xe6u;
}
#endif
}  // namespace
#endif

bool cpu_supports(std::string_view isa) {
  if (isa == "scalar") return true;
#if defined(RTM_HAVE_AVX512)
  if (isa == "avx512") {
    // avx512.cc needs AVX-512F only (its FMA and half-to-float forms included); it is also
    // compiled with -mfma -mf16c, which every AVX-512F CPU has, so those are checked too.
    return os_saves_zmm_state() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("fma") && cpu_has_f16c();
  }
#endif
#if defined(RTM_HAVE_AVX2)
  if (isa == "avx2") {
    // __builtin_cpu_supports also checks that the OS saves the YMM state (OSXSAVE/XCR0).
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  }
#endif
#if defined(RTM_HAVE_NEON) && defined(__aarch64__)
  // Advanced SIMD is mandatory in AArch64, so every aarch64 CPU runs the NEON table.
  if (isa == "neon") return true;
#endif
  return false;
}

size_t available_kernel_tables(const KernelTable** out, size_t capacity) {
  size_t n = 0;
  auto add = [&](const KernelTable& t) {
    if (n < capacity && cpu_supports(t.isa)) out[n++] = &t;
  };
#if defined(RTM_HAVE_AVX512)
  add(avx512_kernels());
#endif
#if defined(RTM_HAVE_AVX2)
  add(avx2_kernels());
#endif
#if defined(RTM_HAVE_NEON)
  add(neon_kernels());
#endif
  add(scalar_kernels());
  return n;
}

const KernelTable& select_kernels(std::string_view isa) {
  const KernelTable* tables[8];
  const size_t n = available_kernel_tables(tables, 8);
  if (isa == "auto") return *tables[0];
  for (size_t i = 0; i < n; ++i)
    if (isa == tables[i]->isa) return *tables[i];
  std::string names;
  for (size_t i = 0; i < n; ++i) names += std::string(i ? ", " : "") + tables[i]->isa;
  throw Error(ErrorCode::kUnsupported, "isa '" + std::string(isa) +
                                           "' is not available on this CPU/build (available: " +
                                           names + ", or 'auto')");
}

}  // namespace rtmobile
