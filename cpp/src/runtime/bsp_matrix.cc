#include "runtime/bsp_matrix.h"

#include <algorithm>
#include <cstring>

#include "format/half.h"

namespace rtmobile {

BspMatrix::BspMatrix(const BspMatrixView& view, const float* bias, int threads, DType compute)
    : rows_(view.rows), cols_(view.cols), dtype_(compute), bias_(bias, bias + view.rows) {
  for (uint32_t s = 0; s < rows_; ++s) {
    if (view.row_perm[s] != s) {
      row_perm_.assign(view.row_perm, view.row_perm + rows_);
      break;
    }
  }

  // Work of each stored row: the kept columns it multiplies, plus a little per-row overhead.
  std::vector<uint64_t> row_work(rows_, 1);
  for (uint32_t i = 0; i < view.num_r; ++i) {
    for (uint32_t j = 0; j < view.num_c; ++j) {
      const uint32_t b = i * view.num_c + j;
      const uint32_t ncols = view.block_col_ptr[b + 1] - view.block_col_ptr[b];
      for (uint32_t k = view.block_row_ptr[b]; k < view.block_row_ptr[b + 1]; ++k)
        row_work[view.strip_ptr[i] + view.row_idx[k]] += ncols;
    }
  }
  std::vector<uint64_t> prefix(rows_ + 1, 0);
  for (uint32_t s = 0; s < rows_; ++s) prefix[s + 1] = prefix[s] + row_work[s];

  // Balanced partition: thread t's range ends where the work prefix reaches (t+1)/threads.
  const int nthreads = threads < 1 ? 1 : threads;
  work_.resize(static_cast<size_t>(nthreads));
  uint32_t begin = 0;
  for (int t = 0; t < nthreads; ++t) {
    uint32_t end = rows_;
    if (t + 1 < nthreads) {
      const uint64_t target = prefix[rows_] * static_cast<uint64_t>(t + 1) / nthreads;
      end = static_cast<uint32_t>(std::lower_bound(prefix.begin(), prefix.end(), target) -
                                  prefix.begin());
      end = std::clamp(end, begin, rows_);
    }
    work_[t].row_begin = begin;
    work_[t].row_end = end;
    begin = end;
  }

  // Pieces: a thread's share of one block, in block order (the accumulation order).
  size_t packed_elems = 0;
  for (ThreadWork& w : work_) {
    max_thread_rows_ = std::max<size_t>(max_thread_rows_, w.row_end - w.row_begin);
    for (uint32_t i = 0; i < view.num_r; ++i) {
      const uint32_t strip0 = view.strip_ptr[i], strip1 = view.strip_ptr[i + 1];
      if (strip1 <= w.row_begin || strip0 >= w.row_end) continue;
      const uint32_t lo = std::max(w.row_begin, strip0) - strip0;  // strip-local range
      const uint32_t hi = std::min(w.row_end, strip1) - strip0;
      for (uint32_t j = 0; j < view.num_c; ++j) {
        const uint32_t b = i * view.num_c + j;
        const uint32_t* r0 = view.row_idx + view.block_row_ptr[b];
        const uint32_t* r1 = view.row_idx + view.block_row_ptr[b + 1];
        const uint32_t* a = std::lower_bound(r0, r1, lo);
        const uint32_t* e = std::lower_bound(a, r1, hi);
        const uint32_t ncols = view.block_col_ptr[b + 1] - view.block_col_ptr[b];
        if (a == e || ncols == 0) continue;
        Piece p{};
        p.block = b;
        p.first_kept = static_cast<uint32_t>(a - r0);
        p.rows = static_cast<uint32_t>(e - a);
        p.cols = ncols;
        p.panels = static_cast<uint32_t>((p.rows + kPanelRows - 1) / kPanelRows);
        p.packed_offset = packed_elems;
        packed_elems += size_t{p.panels} * kPanelRows * ncols;
        const uint32_t* cols = view.col_idx + view.block_col_ptr[b];
        p.col_idx = col_idx_.size();
        col_idx_.insert(col_idx_.end(), cols, cols + ncols);
        p.first_col = cols[0];
        p.cols_contiguous = cols[ncols - 1] - cols[0] == ncols - 1;
        p.rows_contiguous = *(e - 1) - *a == p.rows - 1;
        p.first_row = strip0 + *a - w.row_begin;
        p.local_rows = local_rows_.size();
        if (!p.rows_contiguous)
          for (const uint32_t* r = a; r != e; ++r) local_rows_.push_back(strip0 + *r - w.row_begin);
        w.pieces.push_back(p);
        max_piece_cols_ = std::max<size_t>(max_piece_cols_, ncols);
        max_piece_panels_ = std::max<size_t>(max_piece_panels_, p.panels);
      }
    }
  }
  const auto same = [](auto v) { return v; };
  if (dtype_ == DType::kF16) {
    packed_f16_ = AlignedBuffer<uint16_t>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, packed_f16_.data(), same);
    else
      pack<float>(view, packed_f16_.data(), float_to_half);
  } else {
    packed_f32_ = AlignedBuffer<float>(packed_elems);
    if (view.dtype == DType::kF16)
      pack<uint16_t>(view, packed_f32_.data(), half_to_float);
    else
      pack<float>(view, packed_f32_.data(), same);
  }
}

template <typename Src, typename Dst, typename Convert>
void BspMatrix::pack(const BspMatrixView& view, Dst* packed, Convert convert) {
  const Src* values = static_cast<const Src*>(view.values);
  for (const ThreadWork& w : work_) {
    for (const Piece& p : w.pieces) {
      const uint32_t b = p.block;
      const uint32_t block_rows = view.block_row_ptr[b + 1] - view.block_row_ptr[b];
      const uint32_t q0 = p.first_kept;
      const Src* block = values + view.value_offset[b];
      Dst* out = packed + p.packed_offset;
      for (uint32_t panel = 0; panel < p.panels; ++panel)
        for (uint32_t k = 0; k < p.cols; ++k)
          for (size_t r = 0; r < kPanelRows; ++r) {
            const size_t q = size_t{panel} * kPanelRows + r;
            out[(size_t{panel} * p.cols + k) * kPanelRows + r] =
                q < p.rows ? static_cast<Dst>(convert(block[size_t{k} * block_rows + q0 + q]))
                           : Dst{0};
          }
    }
  }
}

void BspMatrix::run_pieces(const KernelTable& k, const ThreadWork& work, const float* x,
                           size_t ldx, size_t frames, MatrixScratch& s) const {
  const size_t own = work.row_end - work.row_begin;
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

void BspMatrix::gemv(const KernelTable& k, int tid, const float* x, float* y,
                     MatrixScratch& s) const {
  gemm(k, tid, x, cols_, 1, y, rows_, s);
}

void BspMatrix::gemm(const KernelTable& k, int tid, const float* x, size_t ldx, size_t frames,
                     float* y, size_t ldy, MatrixScratch& s) const {
  const ThreadWork& work = work_[static_cast<size_t>(tid)];
  const size_t own = work.row_end - work.row_begin;
  if (own == 0) return;
  run_pieces(k, work, x, ldx, frames, s);
  const float* stored = s.stored.data();
  for (size_t t = 0; t < frames; ++t) {
    float* yt = y + t * ldy;
    const float* st = stored + t * own;
    if (row_perm_.empty()) {
      for (size_t r = 0; r < own; ++r) yt[work.row_begin + r] = st[r] + bias_[work.row_begin + r];
    } else {  // undo the matrix reorder
      const uint32_t* perm = row_perm_.data() + work.row_begin;
      for (size_t r = 0; r < own; ++r) yt[perm[r]] = st[r] + bias_[perm[r]];
    }
  }
}

}  // namespace rtmobile
