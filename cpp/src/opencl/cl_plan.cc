#include "opencl/cl_plan.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "format/half.h"
#include "rtmobile/rtmobile.hpp"

namespace rtmobile::cl {

namespace {

uint32_t to_u32(uint64_t v, const std::string& what) {
  if (v > 0xffffffffull)
    throw Error(ErrorCode::kUnsupported,
                "OpenCL backend: " + what + " (" + std::to_string(v) +
                    ") does not fit the kernels' 32-bit indices");
  return static_cast<uint32_t>(v);
}

template <typename W>
float load(const W* values, uint64_t i) {
  if constexpr (sizeof(W) == 2) return half_to_float(values[i]);
  else return values[i];
}

template <typename W>
void plan_impl(const BspMatrixView& view, MatrixPlan& plan) {
  const W* values = static_cast<const W*>(view.values);
  const uint32_t tr = plan.tile_rows;
  struct TileWork {
    uint64_t macs;
    uint32_t index;
  };
  std::vector<uint32_t> tiles;
  std::vector<TileWork> work;
  for (uint32_t i = 0; i < view.num_r; ++i) {
    const uint32_t s0 = view.strip_ptr[i], s1 = view.strip_ptr[i + 1];
    for (uint32_t t0 = s0; t0 < s1; t0 += tr) {
      const uint32_t t1 = std::min(s1, t0 + tr);
      const uint32_t lo = t0 - s0, hi = t1 - s0;  // strip-local rows of the tile
      const uint32_t piece_begin = static_cast<uint32_t>(plan.pieces.size() / kPieceFields);
      uint64_t macs = 0;
      for (uint32_t j = 0; j < view.num_c; ++j) {
        const uint32_t b = i * view.num_c + j;
        const uint32_t* r0 = view.row_idx + view.block_row_ptr[b];
        const uint32_t* r1 = view.row_idx + view.block_row_ptr[b + 1];
        const uint32_t* a = std::lower_bound(r0, r1, lo);
        const uint32_t* e = std::lower_bound(a, r1, hi);
        const uint32_t ncols = view.block_col_ptr[b + 1] - view.block_col_ptr[b];
        if (a == e || ncols == 0) continue;
        const uint32_t block_rows = static_cast<uint32_t>(r1 - r0);
        const uint32_t first_kept = static_cast<uint32_t>(a - r0);
        const uint32_t np = static_cast<uint32_t>(e - a);
        const uint32_t first = *a - lo, span = *(e - 1) - *a + 1;
        uint32_t map = kNoMap;
        if (span != np) {
          map = to_u32(plan.rowmap.size(), "row map size");
          plan.rowmap.resize(plan.rowmap.size() + span, kNotKept);
          for (uint32_t q = 0; q < np; ++q)
            plan.rowmap[map + (a[q] - lo - first)] = static_cast<uint16_t>(q);
        }
        const uint32_t w_begin = to_u32(plan.weights.size(), "weight count");
        const W* block = values + view.value_offset[b];
        for (uint32_t k = 0; k < ncols; ++k)
          for (uint32_t q = 0; q < np; ++q) {
            const float v = load(block, uint64_t{k} * block_rows + first_kept + q);
            const uint16_t h = float_to_half(v);
            if ((h & 0x7C00u) == 0x7C00u)
              throw Error(ErrorCode::kUnsupported,
                          "OpenCL backend: " + view.name + " holds " + std::to_string(v) +
                              ", outside the f16 range (|w| <= 65504) of its device weights");
            plan.weights.push_back(h);
          }
        const uint32_t piece[kPieceFields] = {
            view.block_col_ptr[b], ncols, w_begin, np, first, span, map, 0};
        plan.pieces.insert(plan.pieces.end(), piece, piece + kPieceFields);
        plan.max_piece_cols = std::max(plan.max_piece_cols, ncols);
        macs += uint64_t{np} * ncols;
      }
      const uint32_t piece_end = static_cast<uint32_t>(plan.pieces.size() / kPieceFields);
      const uint32_t tile[kTileFields] = {t0, t1 - t0, piece_begin, piece_end};
      work.push_back({macs, static_cast<uint32_t>(work.size())});
      tiles.insert(tiles.end(), tile, tile + kTileFields);
      plan.macs += macs;
    }
  }
  to_u32(plan.weights.size(), "weight count");
  // Longest first; ties keep the stored order.
  std::stable_sort(work.begin(), work.end(),
                   [](const TileWork& x, const TileWork& y) { return x.macs > y.macs; });
  plan.tiles.reserve(tiles.size());
  for (const TileWork& w : work)
    plan.tiles.insert(plan.tiles.end(), tiles.begin() + size_t{w.index} * kTileFields,
                      tiles.begin() + size_t{w.index + 1} * kTileFields);
}

}  // namespace

MatrixPlan plan_matrix(const BspMatrixView& view, uint32_t max_tile_rows) {
  MatrixPlan plan;
  plan.rows = view.rows;
  plan.cols = view.cols;
  uint32_t tallest = 1;
  for (uint32_t i = 0; i < view.num_r; ++i)
    tallest = std::max(tallest, view.strip_ptr[i + 1] - view.strip_ptr[i]);
  plan.tile_rows = std::min(max_tile_rows, (tallest + 7) / 8 * 8);
  plan.cols_idx.assign(view.col_idx, view.col_idx + view.block_col_ptr[view.num_blocks()]);
  if (plan.cols_idx.empty()) plan.cols_idx.push_back(0);  // no zero-sized buffers
  plan.perm.assign(view.row_perm, view.row_perm + view.rows);
  if (view.dtype == DType::kF16) plan_impl<uint16_t>(view, plan);
  else plan_impl<float>(view, plan);
  if (plan.pieces.empty()) plan.pieces.assign(kPieceFields, 0);
  if (plan.rowmap.empty()) plan.rowmap.push_back(kNotKept);
  if (plan.weights.empty()) plan.weights.push_back(0);
  return plan;
}

}  // namespace rtmobile::cl
