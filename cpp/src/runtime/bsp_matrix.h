// A BSP matrix prepared for execution on a fixed number of threads.
//
// Each thread computes the output rows it owns (runtime/row_partition.h: by hidden unit for
// recurrent layers, equal-work ranges otherwise). A *piece* is one thread's kept rows of one
// block; its weights are packed into panels (kernels.h: 16 rows, and 8 for the last 1-8 rows)
// at load time. A product runs, per thread: zero the thread's rows of y; the pieces in block
// order (one frame: one GEMV call over the thread's GemvPiece array; more frames: one GEMM
// call per piece), each of which reads the block's kept inputs in place through its
// column-index list (redundant-load elimination without a gather: every row of the piece uses
// the same x[C_b]) and adds its sums straight into the piece's rows of y (original row order:
// no un-permute pass); then add the biases. Every output is therefore
// ((0 + block sums, in block order) + bias): the same bits for any thread count and tiling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "format/model_view.h"
#include "kernels/kernels.h"
#include "runtime/aligned_buffer.h"
#include "runtime/row_partition.h"

namespace rtmobile {

class BspMatrix {
 public:
  // `compute` is the precision the weights are packed in (the stored one, or converted).
  // owners[row] < threads names the thread computing output row `row`. `view` and `bias`
  // need only outlive the constructor.
  BspMatrix(const BspMatrixView& view, const float* bias, const RowOwners& owners, int threads,
            DType compute);

  // The pieces point into the matrix's own buffers: not copyable.
  BspMatrix(const BspMatrix&) = delete;
  BspMatrix& operator=(const BspMatrix&) = delete;

  uint32_t rows() const { return rows_; }
  // Packed weights including panel padding, and the bytes one product reads (weights and the
  // index arrays), over all threads.
  size_t packed_values() const { return packed_values_; }
  size_t read_bytes() const;
  uint32_t cols() const { return cols_; }

  // Thread `tid`'s share of y = W x + b (original row order) for one frame: the rows it owns.
  // Nothing else of y is touched; no scratch memory is needed.
  void gemv(const KernelTable& k, int tid, const float* x, float* y) const;
  // Thread `tid`'s share of Y[t] = W X[t] + b for `frames` frames.
  void gemm(const KernelTable& k, int tid, const float* x, size_t ldx, size_t frames, float* y,
            size_t ldy) const;

 private:
  struct Piece {  // while loading: where a piece's values and indices come from
    size_t packed_offset;   // elements into packed_
    uint32_t rows, cols;    // kept rows (of this thread) and kept columns of the block
    uint32_t block;         // source block
    bool cols_contiguous;   // kept columns first_col, first_col + 1, ...
    bool rows_contiguous;   // output rows first_row, first_row + 1, ... (original order)
    uint32_t first_col, first_row;
    size_t col_idx;         // offset of the block's kept columns in col_idx_
    size_t row_idx;         // offset of the output rows in row_idx_ (when not contiguous)
    size_t kept;            // offset of the rows' positions in the block (packing only)
  };
  struct Run {  // output rows [begin, end), original order
    uint32_t begin, end;
  };
  struct ThreadWork {
    std::vector<Run> runs;     // the rows it owns, ascending
    std::vector<float> bias;   // their biases, run after run
    // In block order (the accumulation order): one GEMV batch (kernels.h), pointing into
    // col_idx_, row_idx_ and the packed weights.
    std::vector<GemvPiece> pieces;
  };

  template <typename Src, typename Dst, typename Convert>
  void pack(const BspMatrixView& view, const std::vector<std::vector<Piece>>& pieces,
            const std::vector<uint32_t>& kept, Dst* packed, Convert convert);

  // Everything is owned: nothing points into the model file's bytes, which are freed after
  // load.
  uint32_t rows_, cols_;
  DType dtype_;
  std::vector<ThreadWork> work_;
  std::vector<uint32_t> col_idx_;  // the file's kept columns of every block
  std::vector<uint32_t> row_idx_;  // output rows of the pieces whose rows are not contiguous
  AlignedBuffer<float> packed_f32_;
  AlignedBuffer<uint16_t> packed_f16_;
  size_t packed_values_ = 0;
};

}  // namespace rtmobile
