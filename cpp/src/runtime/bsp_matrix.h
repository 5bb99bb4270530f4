// A BSP matrix prepared for execution on a fixed number of threads.
//
// Matrix reorder: rows (in the file's stored order, where rows of equal block pattern are
// adjacent) are cut into one contiguous range per thread so every thread gets the same work
// (kept columns summed over its rows), not the same row count.
// Redundant-load elimination: each (thread, block) piece gathers its block's kept inputs once
// into a small contiguous buffer, and all of the piece's rows reuse it.
// Each piece's weights are packed into 16-row panels (kernels.h) at load time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "format/model_view.h"
#include "kernels/kernels.h"
#include "runtime/aligned_buffer.h"

namespace rtmobile {

// Per-thread scratch, sized by the executor for the largest matrix it runs.
struct MatrixScratch {
  AlignedBuffer<float> gathered;  // frames x kept cols
  AlignedBuffer<float> acc;       // frames x panel rows
  AlignedBuffer<float> stored;    // frames x the thread's rows, in stored order
};

class BspMatrix {
 public:
  // `compute` is the precision the weights are packed in (the stored one, or converted).
  // `view` and `bias` need only outlive the constructor.
  BspMatrix(const BspMatrixView& view, const float* bias, int threads, DType compute);

  uint32_t rows() const { return rows_; }
  uint32_t cols() const { return cols_; }

  // Scratch sizes a thread needs for `frames` frames at once.
  size_t gathered_floats(size_t frames) const { return frames * max_piece_cols_; }
  size_t acc_floats(size_t frames) const { return frames * max_piece_panels_ * kPanelRows; }
  size_t stored_floats(size_t frames) const { return frames * max_thread_rows_; }

  // Thread `tid`'s share of y = W x + b (original row order) for one frame.
  void gemv(const KernelTable& k, int tid, const float* x, float* y, MatrixScratch& s) const;
  // Thread `tid`'s share of Y[t] = W X[t] + b for `frames` frames (at most the scratch size).
  void gemm(const KernelTable& k, int tid, const float* x, size_t ldx, size_t frames, float* y,
            size_t ldy, MatrixScratch& s) const;

 private:
  struct Piece {
    size_t packed_offset;        // elements into packed_
    uint32_t panels, cols, rows;  // rows: valid rows of the piece
    size_t col_idx;              // offset of its kept input columns in col_idx_
    bool cols_contiguous;
    uint32_t first_col;
    bool rows_contiguous;
    uint32_t first_row;   // thread-local stored row (when contiguous)
    size_t local_rows;    // offset into local_rows_ (when not contiguous)
    uint32_t block;       // source block and the index of the piece's first kept row in it
    uint32_t first_kept;
  };
  struct ThreadWork {
    uint32_t row_begin = 0, row_end = 0;  // stored rows
    std::vector<Piece> pieces;
  };

  template <typename Src, typename Dst, typename Convert>
  void pack(const BspMatrixView& view, Dst* packed, Convert convert);
  void run_pieces(const KernelTable& k, const ThreadWork& work, const float* x, size_t ldx,
                  size_t frames, MatrixScratch& s) const;

  // Everything is owned: nothing points into the model file's bytes, which are freed after
  // load.
  uint32_t rows_, cols_;
  DType dtype_;
  std::vector<uint32_t> row_perm_;  // empty when the permutation is the identity
  std::vector<float> bias_;
  std::vector<ThreadWork> work_;
  std::vector<uint32_t> col_idx_;  // kept columns of the pieces' blocks
  std::vector<uint32_t> local_rows_;
  AlignedBuffer<float> packed_f32_;
  AlignedBuffer<uint16_t> packed_f16_;
  size_t max_piece_cols_ = 0, max_piece_panels_ = 0, max_thread_rows_ = 0;
};

}  // namespace rtmobile
