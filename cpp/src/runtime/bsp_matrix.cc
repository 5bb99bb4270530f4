#include "runtime/bsp_matrix.h"

#include <algorithm>
#include <cstring>

#include "format/half.h"

namespace rtmobile {

BspMatrix::BspMatrix(const BspMatrixView& view, const float* bias, const RowOwners& owners,
                     int threads, DType compute)
    : rows_(view.rows), cols_(view.cols), dtype_(compute) {
  const size_t nthreads = static_cast<size_t>(threads < 1 ? 1 : threads);
  work_.resize(nthreads);
  // Each thread's rows in stored order: local[s] is stored row s's index among its owner's.
  std::vector<uint32_t> local(rows_);
  {
    std::vector<uint32_t> count(nthreads, 0);
    for (uint32_t row = 0; row < rows_; ++row) ++count[owners[row]];
    for (size_t t = 0; t < nthreads; ++t) {
      work_[t].out_rows.reserve(count[t]);
      work_[t].out_bias.reserve(count[t]);
    }
  }
  for (uint32_t s = 0; s < rows_; ++s) {
    const uint32_t row = view.row_perm[s];
    ThreadWork& w = work_[owners[row]];
    local[s] = static_cast<uint32_t>(w.out_rows.size());
    w.out_rows.push_back(row);
    w.out_bias.push_back(bias[row]);
  }
  for (ThreadWork& w : work_) {
    w.out_contiguous = true;
    for (size_t i = 1; i < w.out_rows.size(); ++i)
      w.out_contiguous = w.out_contiguous && w.out_rows[i] == w.out_rows[0] + i;
    max_thread_rows_ = std::max(max_thread_rows_, w.out_rows.size());
  }

  // Pieces: a thread's rows of one block, in block order (the accumulation order).
  // Every vector is reserved to its final size (or a bound), so the load's peak memory stays
  // within the plan (memory_plan.cc) without growth slack.
  const size_t kept_rows = view.block_row_ptr[view.num_blocks()];
  std::vector<uint32_t> kept;  // per piece, its rows' positions in the block (for packing)
  kept.reserve(kept_rows);
  local_rows_.reserve(kept_rows);
  std::vector<uint32_t> rows;  // scratch: local rows of the piece being built
  rows.reserve(max_thread_rows_);
  size_t nonempty_blocks = 0;
  for (uint32_t b = 0; b < view.num_blocks(); ++b)
    nonempty_blocks += view.block_col_ptr[b + 1] > view.block_col_ptr[b] ? 1 : 0;
  size_t packed_elems = 0, piece_cols = 0;
  for (uint32_t t = 0; t < nthreads; ++t) {
    ThreadWork& w = work_[t];
    if (w.out_rows.empty()) continue;
    w.pieces.reserve(nonempty_blocks);
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
          const uint32_t s = strip0 + view.row_idx[k];
          if (owners[view.row_perm[s]] != t) continue;
          kept.push_back(k - k0);
          rows.push_back(local[s]);
        }
        if (rows.empty()) continue;
        p.block = b;
        p.rows = static_cast<uint32_t>(rows.size());
        p.cols = ncols;
        p.panels = static_cast<uint32_t>((p.rows + kPanelRows - 1) / kPanelRows);
        p.packed_offset = packed_elems;
        packed_elems += size_t{p.panels} * kPanelRows * ncols;
        const uint32_t* cols = view.col_idx + view.block_col_ptr[b];
        p.col_idx = piece_cols;
        piece_cols += ncols;
        p.first_col = cols[0];
        p.cols_contiguous = cols[ncols - 1] - cols[0] == ncols - 1;
        p.rows_contiguous = rows.back() - rows.front() == p.rows - 1;
        p.first_row = rows.front();
        p.local_rows = local_rows_.size();
        if (!p.rows_contiguous) local_rows_.insert(local_rows_.end(), rows.begin(), rows.end());
        w.pieces.push_back(p);
        max_piece_cols_ = std::max<size_t>(max_piece_cols_, ncols);
        max_piece_panels_ = std::max<size_t>(max_piece_panels_, p.panels);
      }
    }
  }
  col_idx_.reserve(piece_cols);
  for (const ThreadWork& w : work_) {
    for (const Piece& p : w.pieces) {
      const uint32_t* cols = view.col_idx + view.block_col_ptr[p.block];
      col_idx_.insert(col_idx_.end(), cols, cols + p.cols);
    }
  }
  packed_values_ = packed_elems;
  const auto same = [](auto v) { return v; };
  if (dtype_ == DType::kF16) {
    packed_f16_ = AlignedBuffer<uint16_t>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, kept, packed_f16_.data(), same);
    else
      pack<float>(view, kept, packed_f16_.data(), float_to_half);
  } else {
    packed_f32_ = AlignedBuffer<float>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, kept, packed_f32_.data(), half_to_float);
    else
      pack<float>(view, kept, packed_f32_.data(), same);
  }
}

template <typename Src, typename Dst, typename Convert>
void BspMatrix::pack(const BspMatrixView& view, const std::vector<uint32_t>& kept,
                     Dst* packed, Convert convert) {
  const Src* values = static_cast<const Src*>(view.values);
  for (const ThreadWork& w : work_) {
    for (const Piece& p : w.pieces) {
      const uint32_t b = p.block;
      const uint32_t block_rows = view.block_row_ptr[b + 1] - view.block_row_ptr[b];
      const uint32_t* q_of = kept.data() + p.kept;
      const Src* block = values + view.value_offset[b];
      Dst* out = packed + p.packed_offset;
      for (uint32_t panel = 0; panel < p.panels; ++panel)
        for (uint32_t k = 0; k < p.cols; ++k)
          for (size_t r = 0; r < kPanelRows; ++r) {
            const size_t q = size_t{panel} * kPanelRows + r;
            out[(size_t{panel} * p.cols + k) * kPanelRows + r] =
                q < p.rows ? static_cast<Dst>(convert(block[size_t{k} * block_rows + q_of[q]]))
                           : Dst{0};
          }
    }
  }
}

void BspMatrix::run_pieces(const KernelTable& k, const ThreadWork& work, const float* x,
                           size_t ldx, size_t frames, MatrixScratch& s) const {
  const size_t own = work.out_rows.size();
  float* stored = s.stored.data();
  std::memset(stored, 0, sizeof(float) * own * frames);
  for (const Piece& p : work.pieces) {
    const float* xg;
    size_t ldxg;
    if (p.cols_contiguous) {
      xg = x + p.first_col;
      ldxg = ldx;
    } else {  // gather the block's kept inputs once for all its rows
      float* g = s.gathered.data();
      const uint32_t* cols = col_idx_.data() + p.col_idx;
      for (size_t t = 0; t < frames; ++t)
        for (uint32_t c = 0; c < p.cols; ++c) g[t * p.cols + c] = x[t * ldx + cols[c]];
      xg = g;
      ldxg = p.cols;
    }
    const size_t ld_acc = size_t{p.panels} * kPanelRows;
    float* acc = s.acc.data();
    if (dtype_ == DType::kF16) {
      const uint16_t* w = packed_f16_.data() + p.packed_offset;
      if (frames == 1) k.f16_gemv(w, p.panels, p.cols, xg, acc);
      else k.f16_gemm(w, p.panels, p.cols, xg, ldxg, frames, acc, ld_acc);
    } else {
      const float* w = packed_f32_.data() + p.packed_offset;
      if (frames == 1) k.f32_gemv(w, p.panels, p.cols, xg, acc);
      else k.f32_gemm(w, p.panels, p.cols, xg, ldxg, frames, acc, ld_acc);
    }
    for (size_t t = 0; t < frames; ++t) {
      float* dst = stored + t * own;
      const float* a = acc + t * ld_acc;
      if (p.rows_contiguous) {
        float* d = dst + p.first_row;
        for (uint32_t r = 0; r < p.rows; ++r) d[r] += a[r];
      } else {
        const uint32_t* idx = local_rows_.data() + p.local_rows;
        for (uint32_t r = 0; r < p.rows; ++r) dst[idx[r]] += a[r];
      }
    }
  }
}

size_t BspMatrix::read_bytes() const {
  size_t bytes = packed_values_ * (dtype_ == DType::kF16 ? 2 : 4);
  for (const ThreadWork& w : work_)
    for (const Piece& p : w.pieces)
      bytes += (p.cols_contiguous ? 0 : 4 * size_t{p.cols}) +
               (p.rows_contiguous ? 0 : 4 * size_t{p.rows});
  return bytes;
}

void BspMatrix::gemv(const KernelTable& k, int tid, const float* x, float* y,
                     MatrixScratch& s) const {
  gemm(k, tid, x, cols_, 1, y, rows_, s);
}

void BspMatrix::gemm(const KernelTable& k, int tid, const float* x, size_t ldx, size_t frames,
                     float* y, size_t ldy, MatrixScratch& s) const {
  const ThreadWork& work = work_[static_cast<size_t>(tid)];
  const size_t own = work.out_rows.size();
  if (own == 0) return;
  run_pieces(k, work, x, ldx, frames, s);
  const float* stored = s.stored.data();
  const float* bias = work.out_bias.data();
  for (size_t t = 0; t < frames; ++t) {
    float* yt = y + t * ldy;
    const float* st = stored + t * own;
    if (work.out_contiguous) {
      float* dst = yt + work.out_rows[0];
      for (size_t r = 0; r < own; ++r) dst[r] = st[r] + bias[r];
    } else {  // undo the matrix reorder
      const uint32_t* rows = work.out_rows.data();
      for (size_t r = 0; r < own; ++r) yt[rows[r]] = st[r] + bias[r];
    }
  }
}

}  // namespace rtmobile
