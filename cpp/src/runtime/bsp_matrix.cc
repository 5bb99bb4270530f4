#include "runtime/bsp_matrix.h"

#include <algorithm>
#include <cstring>

#include "format/half.h"

namespace rtmobile {

BspMatrix::BspMatrix(const BspMatrixView& view, const float* bias, const RowOwners& owners,
                     int threads, DType compute)
    : rows_(view.rows), cols_(view.cols), dtype_(compute) {
  static_assert(sizeof(Piece) + sizeof(GemvPiece) <= 104,
                "memory_plan.cc counts 104 bytes per piece (kPieceBytes)");
  const size_t nthreads = static_cast<size_t>(threads < 1 ? 1 : threads);
  work_.resize(nthreads);
  // Each thread's rows as ascending runs of original rows, with their biases. Every vector is
  // reserved to its final size (or a bound), so the load's peak memory stays within the plan
  // (memory_plan.cc) without growth slack.
  constexpr uint32_t kNone = ~uint32_t{0};
  size_t max_thread_rows = 0;
  {
    std::vector<size_t> count(nthreads, 0), runs(nthreads, 0);
    std::vector<uint32_t> next(nthreads, kNone);  // the row that would extend the last run
    for (uint32_t row = 0; row < rows_; ++row) {
      const uint32_t t = owners[row];
      ++count[t];
      if (next[t] != row) ++runs[t];
      next[t] = row + 1;
    }
    for (size_t t = 0; t < nthreads; ++t) {
      work_[t].runs.reserve(runs[t]);
      work_[t].bias.reserve(count[t]);
      max_thread_rows = std::max(max_thread_rows, count[t]);
    }
  }
  for (uint32_t row = 0; row < rows_; ++row) {
    ThreadWork& w = work_[owners[row]];
    if (w.runs.empty() || w.runs.back().end != row) w.runs.push_back(Run{row, row});
    ++w.runs.back().end;
    w.bias.push_back(bias[row]);
  }

  // Pieces: a thread's rows of one block, in block order (the accumulation order).
  const size_t kept_rows = view.block_row_ptr[view.num_blocks()];
  std::vector<uint32_t> kept;  // per piece, its rows' positions in the block (for packing)
  kept.reserve(kept_rows);
  row_idx_.reserve(kept_rows);
  std::vector<uint32_t> rows;  // scratch: output rows of the piece being built
  rows.reserve(max_thread_rows);
  size_t nonempty_blocks = 0;
  for (uint32_t b = 0; b < view.num_blocks(); ++b)
    nonempty_blocks += view.block_col_ptr[b + 1] > view.block_col_ptr[b] ? 1 : 0;
  size_t packed_elems = 0;
  bool any_scattered_cols = false;
  std::vector<std::vector<Piece>> pieces(nthreads);  // freed once the GEMV batches are built
  for (uint32_t t = 0; t < nthreads; ++t) {
    ThreadWork& w = work_[t];
    if (w.runs.empty()) continue;
    pieces[t].reserve(nonempty_blocks);
    for (uint32_t i = 0; i < view.num_r; ++i) {
      const uint32_t strip0 = view.strip_ptr[i];
      for (uint32_t j = 0; j < view.num_c; ++j) {
        const uint32_t b = i * view.num_c + j;
        const uint32_t ncols = view.block_col_ptr[b + 1] - view.block_col_ptr[b];
        if (ncols == 0) continue;
        Piece p{};
        p.kept = kept.size();
        rows.clear();
        const uint32_t k0 = view.block_row_ptr[b], k1 = view.block_row_ptr[b + 1];
        for (uint32_t k = k0; k < k1; ++k) {
          const uint32_t row = view.row_perm[strip0 + view.row_idx[k]];
          if (owners[row] != t) continue;
          kept.push_back(k - k0);
          rows.push_back(row);
        }
        if (rows.empty()) continue;
        p.block = b;
        p.rows = static_cast<uint32_t>(rows.size());
        p.cols = ncols;
        p.packed_offset = packed_elems;
        packed_elems += packed_rows(p.rows) * size_t{ncols};
        const uint32_t* cols = view.col_idx + view.block_col_ptr[b];
        p.col_idx = view.block_col_ptr[b];
        p.first_col = cols[0];
        p.cols_contiguous = cols[ncols - 1] - cols[0] == ncols - 1;  // strictly increasing
        any_scattered_cols = any_scattered_cols || !p.cols_contiguous;
        p.first_row = rows.front();
        p.rows_contiguous = true;  // the file's row permutation may put them in any order
        for (uint32_t r = 1; r < p.rows && p.rows_contiguous; ++r)
          p.rows_contiguous = rows[r] == p.first_row + r;
        p.row_idx = row_idx_.size();
        if (!p.rows_contiguous) row_idx_.insert(row_idx_.end(), rows.begin(), rows.end());
        pieces[t].push_back(p);
      }
    }
  }
  if (any_scattered_cols) {
    const size_t n = view.block_col_ptr[view.num_blocks()];
    col_idx_.assign(view.col_idx, view.col_idx + n);
  }
  packed_values_ = packed_elems;
  const auto same = [](auto v) { return v; };
  if (dtype_ == DType::kF16) {
    packed_f16_ = AlignedBuffer<uint16_t>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, pieces, kept, packed_f16_.data(), same);
    else
      pack<float>(view, pieces, kept, packed_f16_.data(), float_to_half);
  } else {
    packed_f32_ = AlignedBuffer<float>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, pieces, kept, packed_f32_.data(), half_to_float);
    else
      pack<float>(view, pieces, kept, packed_f32_.data(), same);
  }
  // The GEMV batches: every pointer into this matrix's own buffers, now in their final place.
  for (size_t t = 0; t < nthreads; ++t) {
    work_[t].pieces.reserve(pieces[t].size());
    for (const Piece& p : pieces[t]) {
      GemvPiece g{};
      if (dtype_ == DType::kF16)
        g.w = packed_f16_.data() + p.packed_offset;
      else
        g.w = packed_f32_.data() + p.packed_offset;
      g.col_idx = p.cols_contiguous ? nullptr : col_idx_.data() + p.col_idx;
      g.row_idx = p.rows_contiguous ? nullptr : row_idx_.data() + p.row_idx;
      g.rows = p.rows;
      g.cols = p.cols;
      g.x_off = p.cols_contiguous ? p.first_col : 0;
      g.y_off = p.rows_contiguous ? p.first_row : 0;
      work_[t].pieces.push_back(g);
    }
  }
}

template <typename Src, typename Dst, typename Convert>
void BspMatrix::pack(const BspMatrixView& view, const std::vector<std::vector<Piece>>& pieces,
                     const std::vector<uint32_t>& kept, Dst* packed, Convert convert) {
  const Src* values = static_cast<const Src*>(view.values);
  for (const std::vector<Piece>& thread_pieces : pieces) {
    for (const Piece& p : thread_pieces) {
      const uint32_t b = p.block;
      const uint32_t block_rows = view.block_row_ptr[b + 1] - view.block_row_ptr[b];
      const uint32_t* q_of = kept.data() + p.kept;
      const Src* block = values + view.value_offset[b];
      Dst* out = packed + p.packed_offset;
      // Panels of 16 rows, then one of 8 (kernels.h: panel_split); zero rows past p.rows.
      const PanelSplit split = panel_split(p.rows);
      size_t r0 = 0;
      auto panel = [&](size_t width) {
        for (uint32_t k = 0; k < p.cols; ++k)
          for (size_t r = 0; r < width; ++r) {
            const size_t q = r0 + r;
            *out++ = q < p.rows
                         ? static_cast<Dst>(convert(block[size_t{k} * block_rows + q_of[q]]))
                         : Dst{0};
          }
        r0 += width;
      };
      for (size_t f = 0; f < split.full; ++f) panel(kPanelRows);
      if (split.tail8) panel(kTailRows);
    }
  }
}

size_t BspMatrix::read_bytes() const {
  size_t bytes = packed_values_ * (dtype_ == DType::kF16 ? 2 : 4);
  for (const ThreadWork& w : work_)
    for (const GemvPiece& p : w.pieces)
      bytes += (p.col_idx == nullptr ? 0 : 4 * size_t{p.cols}) +
               (p.row_idx == nullptr ? 0 : 4 * size_t{p.rows});
  return bytes;
}

void BspMatrix::gemv(const KernelTable& k, int tid, const float* x, float* y) const {
  gemm(k, tid, x, cols_, 1, y, rows_);
}

void BspMatrix::gemm(const KernelTable& k, int tid, const float* x, size_t ldx, size_t frames,
                     float* y, size_t ldy) const {
  const ThreadWork& work = work_[static_cast<size_t>(tid)];
  if (work.runs.empty()) return;
  // Sums start from zero in y itself, ...
  for (size_t t = 0; t < frames; ++t)
    for (const Run& run : work.runs)
      std::memset(y + t * ldy + run.begin, 0, sizeof(float) * (run.end - run.begin));
  // ... take each block's sum in block order (the kernels add into y): one frame as one
  // GEMV batch, more frames one GEMM call per piece ...
  const std::vector<GemvPiece>& pieces = work.pieces;
  const bool f16 = dtype_ == DType::kF16;
  if (frames == 1) {
    if (f16) k.f16_gemv(pieces.data(), pieces.size(), x, y);
    else k.f32_gemv(pieces.data(), pieces.size(), x, y);
  } else {
    for (const GemvPiece& p : pieces) {
      if (f16)
        k.f16_gemm(static_cast<const uint16_t*>(p.w), p.rows, p.cols, p.col_idx, x + p.x_off,
                   ldx, frames, p.row_idx, y + p.y_off, ldy);
      else
        k.f32_gemm(static_cast<const float*>(p.w), p.rows, p.cols, p.col_idx, x + p.x_off, ldx,
                   frames, p.row_idx, y + p.y_off, ldy);
    }
  }
  // ... and then the bias.
  for (size_t t = 0; t < frames; ++t) {
    const float* b = work.bias.data();
    for (const Run& run : work.runs) {
      const size_t n = run.end - run.begin;
      k.add(n, b, y + t * ldy + run.begin);
      b += n;
    }
  }
}

}  // namespace rtmobile
