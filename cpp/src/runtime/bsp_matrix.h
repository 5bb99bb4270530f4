// A BSP matrix prepared for execution on a fixed number of threads.
//
// Each thread computes the output rows it owns (runtime/row_partition.h: by hidden unit for
// recurrent layers, equal-work ranges otherwise); its rows are kept in the file's stored order,
// where rows of equal block pattern are adjacent.
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
#include "runtime/row_partition.h"

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
  // owners[row] < threads names the thread computing output row `row`. `view` and `bias`
  // need only outlive the constructor.
  BspMatrix(const BspMatrixView& view, const float* bias, const RowOwners& owners, int threads,
            DType compute);

  uint32_t rows() const { return rows_; }
  // Packed weights including panel padding, and the bytes one product reads (weights and the
  // index arrays), over all threads.
  size_t packed_values() const { return packed_values_; }
  size_t read_bytes() const;
  uint32_t cols() const { return cols_; }

  // Scratch sizes a thread needs for `frames` frames at once.
  size_t gathered_floats(size_t frames) const { return frames * max_piece_cols_; }
  size_t acc_floats(size_t frames) const { return frames * max_piece_panels_ * kPanelRows; }
  size_t stored_floats(size_t frames) const { return frames * max_thread_rows_; }

  // Thread `tid`'s share of y = W x + b (original row order) for one frame: the rows it owns.
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
    uint32_t first_row;   // thread-local row (when contiguous)
    size_t local_rows;    // offset into local_rows_ (when not contiguous)
    uint32_t block;       // source block
    size_t kept;          // offset of the piece's rows' positions in the block (packing only)
  };
  struct ThreadWork {
    std::vector<uint32_t> out_rows;  // original rows owned, in stored order (local row i)
    std::vector<float> out_bias;     // their biases
    bool out_contiguous = false;     // out_rows[i] == out_rows[0] + i
    std::vector<Piece> pieces;
  };

  template <typename Src, typename Dst, typename Convert>
  void pack(const BspMatrixView& view, const std::vector<uint32_t>& kept, Dst* packed,
            Convert convert);
  void run_pieces(const KernelTable& k, const ThreadWork& work, const float* x, size_t ldx,
                  size_t frames, MatrixScratch& s) const;

  // Everything is owned: nothing points into the model file's bytes, which are freed after
  // load.
  uint32_t rows_, cols_;
  DType dtype_;
  std::vector<ThreadWork> work_;
  std::vector<uint32_t> col_idx_;  // kept columns of the pieces' blocks
  std::vector<uint32_t> local_rows_;
  AlignedBuffer<float> packed_f32_;
  AlignedBuffer<uint16_t> packed_f16_;
  size_t packed_values_ = 0;
  size_t max_piece_cols_ = 0, max_piece_panels_ = 0, max_thread_rows_ = 0;
};

}  // namespace rtmobile
