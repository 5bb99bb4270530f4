// The kernel interface: one table of function pointers per ISA, filled once per Session from
// CPU detection (dispatch.cc). Every table is tested against the scalar one (kernel_test.cc,
// tests/test_kernels.py), so a new ISA cannot go untested.
//
// Weights reach the kernels packed in row panels: kPanelRows consecutive (kept) rows, and for
// each column the kPanelRows values of those rows contiguous (64 bytes for f32). The last
// panel of a piece is zero-padded. Every output element is accumulated in column order from
// zero, so the GEMV and every frame-tiling of the GEMM give bit-identical results; streaming
// in chunks therefore equals an offline run exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rtmobile {

constexpr size_t kPanelRows = 16;

// acc[p*16 + r] = sum_k W[p][k][r] * x[k], for p < panels, k < cols.
using GemvF32Fn = void (*)(const float* w, size_t panels, size_t cols, const float* x,
                           float* acc);
using GemvF16Fn = void (*)(const uint16_t* w, size_t panels, size_t cols, const float* x,
                           float* acc);
// acc[t*ld_acc + p*16 + r] = sum_k W[p][k][r] * x[t*ldx + k], for t < frames.
using GemmF32Fn = void (*)(const float* w, size_t panels, size_t cols, const float* x,
                           size_t ldx, size_t frames, float* acc, size_t ld_acc);
using GemmF16Fn = void (*)(const uint16_t* w, size_t panels, size_t cols, const float* x,
                           size_t ldx, size_t frames, float* acc, size_t ld_acc);
// y[i] = f(x[i]) for i < n; x and y may alias.
using UnaryFn = void (*)(size_t n, const float* x, float* y);
// GRU update for n hidden units. gi and gh hold the r, z, n pre-activations (biases included)
// at offsets 0, stride, 2*stride: r = s(gi_r + gh_r), z = s(gi_z + gh_z),
// c = tanh(gi_n + r * gh_n), h_out = (1 - z) * c + z * h_prev. h_out may alias h_prev.
using GruGatesFn = void (*)(size_t n, size_t stride, const float* gi, const float* gh,
                            const float* h_prev, float* h_out);
// LSTM update (gate order i, f, g, o at offsets 0, stride, 2*stride, 3*stride):
// c = s(f) * c + s(i) * tanh(g); h = s(o) * tanh(c). c is updated in place.
using LstmGatesFn = void (*)(size_t n, size_t stride, const float* gi, const float* gh,
                             float* c, float* h_out);

struct KernelTable {
  const char* isa;
  GemvF32Fn f32_gemv;
  GemvF16Fn f16_gemv;
  GemmF32Fn f32_gemm;
  GemmF16Fn f16_gemm;
  UnaryFn sigmoid;
  UnaryFn tanh;
  GruGatesFn gru_gates;
  LstmGatesFn lstm_gates;
};

// Per-ISA tables (defined in their own files, compiled with their own flags).
const KernelTable& scalar_kernels();
#if defined(RTM_HAVE_AVX512)
const KernelTable& avx512_kernels();
#endif
#if defined(RTM_HAVE_AVX2)
const KernelTable& avx2_kernels();
#endif
#if defined(RTM_HAVE_NEON)
const KernelTable& neon_kernels();
#endif

// Whether the running CPU (and OS) can execute the named ISA's instructions.
bool cpu_supports(std::string_view isa);

// Tables usable here, best first; the last one is always scalar.
size_t available_kernel_tables(const KernelTable** out, size_t capacity);

// "auto" picks the best; otherwise the named ISA, or throws Error(kUnsupported).
const KernelTable& select_kernels(std::string_view isa);

}  // namespace rtmobile
