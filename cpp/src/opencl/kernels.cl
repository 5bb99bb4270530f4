// RTMobile OpenCL kernels (OpenCL C 1.2). Embedded into the library at build time
// (embed_cl.cmake); the host builds them once per Session with
//   -DRTM_USE_FMA=0|1    1 where the device reports CL_FP_FMA: MAC is fma() (one rounding, the
//                        CPU kernels' arithmetic); otherwise mad() (fast, may round twice).
//   -DRTM_HALF_MATH=0|1  1 only where the device reports cl_khr_fp16 (and the session did not
//                        ask for opencl_math='float'): the SpMM multiplies in half precision.
// See docs/opencl.md.
//
// Weights are stored on the device as IEEE binary16.
// * RTM_HALF_MATH=0 (every device): read with vload_half, which needs no cl_khr_fp16; the
//   gathered inputs are float and the multiply-accumulate is float (half storage, float math).
// * RTM_HALF_MATH=1 (cl_khr_fp16): the gathered inputs are rounded once to half when they go
//   to local memory (half the local memory per column, so twice the columns per chunk), each
//   product w * x is a half multiply (two columns at a time as half2, packed math on mobile
//   GPUs), and the products are summed in float. Summing in float keeps the error to about two
//   half roundings per product (~1e-3 relative), independent of the number of columns, which
//   stays within the f16 tolerance; half accumulation would not. Inputs beyond the half range
//   (|x| > 65504) become inf in this mode.
// The gate kernels always compute in float.
//
// Every output element is computed by one work-item in a fixed order (blocks in order, each
// block's kept columns in order from zero, then + bias), independent of how many frames a
// launch covers and of the work-group shape: the SpMV of one frame and the SpMM of a chunk give
// the same bits, so streaming equals an offline run exactly on a given device, in either mode.

#pragma OPENCL FP_CONTRACT OFF

#ifndef RTM_USE_FMA
#define RTM_USE_FMA 0
#endif
#if RTM_USE_FMA
#define MAC(a, b, c) fma((a), (b), (c))
#else
#define MAC(a, b, c) mad((a), (b), (c))
#endif

#ifndef RTM_HALF_MATH
#define RTM_HALF_MATH 0
#endif
#if RTM_HALF_MATH
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
typedef half rtm_x_t;  // gathered inputs in local memory
#define RTM_TO_X(v) convert_half_rte(v)
#else
typedef float rtm_x_t;
#define RTM_TO_X(v) (v)
#endif

#define RTM_NO_MAP 0xffffffffu
#define RTM_NOT_KEPT 0xffffu

// ---------------------------------------------------------------------------------------------
// Activations without lookup tables: the CPU's activation_math.h, step for step.
// exp: Cody-Waite reduction x = n ln2 + r, a degree-6 polynomial for e^r, 2^n built in the
// exponent bits; the argument is clamped to [-87, 87] so 2^n stays a normal float.

inline float rtm_clamp_exp_arg(float x) {  // comparisons are false for NaN: NaN is kept
  return x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
}

inline float rtm_exp_clamped(float x) {
  const float n = rint(x * 1.44269504088896341f);
  if (isnan(n)) return n;
  float r = MAC(n, -0.693359375f, x);
  r = MAC(n, 2.12194440e-4f, r);
  float p = MAC(1.9875691500e-4f, r, 1.3981999507e-3f);
  p = MAC(p, r, 8.3334519073e-3f);
  p = MAC(p, r, 4.1665795894e-2f);
  p = MAC(p, r, 1.6666665459e-1f);
  p = MAC(p, r, 5.0000001201e-1f);
  p = MAC(p, r * r, r) + 1.0f;
  return p * as_float((convert_int(n) + 127) << 23);
}

inline float rtm_sigmoid(float x) {
  return 1.0f / (1.0f + rtm_exp_clamped(rtm_clamp_exp_arg(-x)));
}

inline float rtm_tanh(float x) {
  const float e = rtm_exp_clamped(rtm_clamp_exp_arg(-2.0f * fabs(x)));
  const float t = (1.0f - e) / (1.0f + e);
  return copysign(t, x);
}

// ---------------------------------------------------------------------------------------------
// Block SpMM: Y[f] = W X[f] + b for the frames of one launch (frames = 1 is the SpMV).
//
// One work-group = one row tile (up to get_local_size(0) consecutive stored rows of one strip)
// times get_local_size(1) frames; work-item (r, fl) owns stored row row0 + r of frame f0 + fl.
// For each piece (the tile's share of one block, in block order) the work-group gathers the
// block's kept inputs X[f][C_b] into local memory once, in chunks of chunk_cols columns, and
// every row of the tile reuses them (redundant-load elimination). A piece's weights are
// column-major over its kept rows (for each kept column, the values of its np kept rows are
// contiguous), so the work-items of a tile read consecutive halves (coalesced).
//
// tiles:  4 uints per tile: first stored row, rows, first piece, end piece.
// pieces: 8 uints per piece: first gathered column (into cols), kept columns, first weight
//         (halves), kept rows np, tile-local first kept row, span of kept rows, rowmap offset
//         (RTM_NO_MAP when the kept rows are the contiguous run [first, first + np)), 0.
// rowmap: for a non-contiguous piece, per tile row in [first, first + span): its index among
//         the piece's kept rows, or RTM_NOT_KEPT.
// perm:   stored row -> original row (the matrix reorder is undone on output).

__kernel void bsp_spmm(__global const uint* tiles, __global const uint* pieces,
                       __global const uint* cols, __global const ushort* rowmap,
                       __global const half* w, __global const uint* perm,
                       __global const float* bias, __global const float* x, uint x_off,
                       uint ldx, __global float* y, uint y_off, uint ldy, uint frames,
                       uint chunk_cols, __local rtm_x_t* xs) {
  const uint tile = get_group_id(0);
  const uint r = get_local_id(0);
  const uint fl = get_local_id(1);
  const uint tile_rows = get_local_size(0);
  const uint frame_tile = get_local_size(1);
  const uint f0 = get_group_id(1) * frame_tile;
  const uint nf = min(frame_tile, frames - f0);  // frames of this group (uniform, >= 1)
  const uint lid = fl * tile_rows + r;
  const uint group_size = tile_rows * frame_tile;

  const uint row0 = tiles[4 * tile], nrows = tiles[4 * tile + 1];
  const uint p_begin = tiles[4 * tile + 2], p_end = tiles[4 * tile + 3];
  const bool active = fl < nf;

  float total = 0.0f;
  for (uint p = p_begin; p < p_end; ++p) {  // uniform over the work-group
    __global const uint* P = pieces + 8 * p;
    const uint c_begin = P[0], ncols = P[1], w_begin = P[2], np = P[3];
    const uint first = P[4], span = P[5], map = P[6];
    uint q = RTM_NOT_KEPT;
    if (r >= first && r - first < span)
      q = map == RTM_NO_MAP ? r - first : (uint)rowmap[map + (r - first)];
    const bool kept = active && q != RTM_NOT_KEPT;

    float partial = 0.0f;
    for (uint c0 = 0; c0 < ncols; c0 += chunk_cols) {
      const uint nc = min(chunk_cols, ncols - c0);
      barrier(CLK_LOCAL_MEM_FENCE);  // the previous chunk's readers are done
      for (uint i = lid; i < nc * nf; i += group_size) {
        const uint tf = i / nc, k = i - tf * nc;
        xs[tf * chunk_cols + k] = RTM_TO_X(x[x_off + (f0 + tf) * ldx + cols[c_begin + c0 + k]]);
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      if (kept) {
        __local const rtm_x_t* xf = xs + fl * chunk_cols;
        uint wi = w_begin + c0 * np + q;
#if RTM_HALF_MATH
        // Two columns per step as half2; the products are added in column order, so the
        // result is the same as one column at a time.
        uint k = 0;
        for (; k + 1 < nc; k += 2, wi += 2 * np) {
          const half2 p = (half2)(w[wi], w[wi + np]) * vload2(0, xf + k);
          partial += convert_float(p.s0);
          partial += convert_float(p.s1);
        }
        if (k < nc) partial += convert_float(w[wi] * xf[k]);
#else
        for (uint k = 0; k < nc; ++k, wi += np) partial = MAC(vload_half(wi, w), xf[k], partial);
#endif
      }
    }
    if (kept) total += partial;
  }
  if (active && r < nrows) {
    const uint o = perm[row0 + r];
    y[y_off + (f0 + fl) * ldy + o] = total + bias[o];
  }
}

// ---------------------------------------------------------------------------------------------
// Gate updates for one frame, one work-item per hidden unit. gi (at gi_off) and gh hold the
// gate pre-activations with biases, gates at offsets 0, H, 2H (, 3H). seq holds h_prev at
// prev_off and receives h at prev_off + H.

// GRU (r, z, n): r = s(gi_r + gh_r), z = s(gi_z + gh_z), c = tanh(gi_n + r gh_n),
// h = (1 - z) c + z h_prev, computed as z (h_prev - c) + c.
__kernel void gru_gates(__global const float* gi, uint gi_off, __global const float* gh,
                        __global float* seq, uint prev_off, uint hidden) {
  const uint i = get_global_id(0);
  if (i >= hidden) return;
  const __global float* g = gi + gi_off;
  const float rg = rtm_sigmoid(g[i] + gh[i]);
  const float zg = rtm_sigmoid(g[hidden + i] + gh[hidden + i]);
  const float c = rtm_tanh(MAC(rg, gh[2 * hidden + i], g[2 * hidden + i]));
  const float h = seq[prev_off + i];
  seq[prev_off + hidden + i] = MAC(zg, h - c, c);
}

// LSTM (i, f, g, o): c = s(f) c + s(i) tanh(g); h = s(o) tanh(c). c is updated in place.
__kernel void lstm_gates(__global const float* gi, uint gi_off, __global const float* gh,
                         __global float* cell, __global float* seq, uint prev_off,
                         uint hidden) {
  const uint i = get_global_id(0);
  if (i >= hidden) return;
  const __global float* g = gi + gi_off;
  const float ig = rtm_sigmoid(g[i] + gh[i]);
  const float fg = rtm_sigmoid(g[hidden + i] + gh[hidden + i]);
  const float gg = rtm_tanh(g[2 * hidden + i] + gh[2 * hidden + i]);
  const float og = rtm_sigmoid(g[3 * hidden + i] + gh[3 * hidden + i]);
  const float c = MAC(fg, cell[i], ig * gg);
  cell[i] = c;
  seq[prev_off + hidden + i] = og * rtm_tanh(c);
}
