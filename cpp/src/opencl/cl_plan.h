// How one BSP matrix is laid out for the bsp_spmm kernel (kernels.cl). Host-only code (no
// OpenCL calls): the backend uploads these arrays once.
//
// Stored rows (the file's order, where rows of equal block pattern are adjacent, most work
// first) are cut into row tiles of at most `tile_rows` consecutive rows inside one strip; one
// work-group runs one tile. A tile's share of a block is a piece: the block's kept columns
// (gathered once per work-group into local memory) times the tile rows kept in the block, with
// its weights column-major over those rows so the work-items read consecutive halves. Tiles are
// listed longest first (most multiply-adds), so a GPU's dynamic work-group scheduler starts the
// long ones early and the short ones fill in at the end (longest-processing-time order).
#pragma once

#include <cstdint>
#include <vector>

#include "format/model_view.h"

namespace rtmobile::cl {

constexpr uint32_t kNoMap = 0xffffffffu;    // piece rows are one contiguous run
constexpr uint16_t kNotKept = 0xffffu;      // rowmap entry of a tile row the piece skips
constexpr uint32_t kTileFields = 4;         // first stored row, rows, first piece, end piece
constexpr uint32_t kPieceFields = 8;        // see kernels.cl

struct MatrixPlan {
  uint32_t rows = 0, cols = 0;
  uint32_t tile_rows = 0;         // local size (dimension 0) of the launches
  uint32_t max_piece_cols = 0;    // widest block (sizes the local-memory chunk)
  std::vector<uint32_t> tiles;    // kTileFields per tile, longest first
  std::vector<uint32_t> pieces;   // kPieceFields per piece
  std::vector<uint32_t> cols_idx; // the file's col_idx (pieces index into it)
  std::vector<uint16_t> rowmap;
  std::vector<uint16_t> weights;  // IEEE binary16 bits
  std::vector<uint32_t> perm;     // stored row -> original row
  uint64_t macs = 0;              // multiply-adds per frame

  uint32_t num_tiles() const { return static_cast<uint32_t>(tiles.size() / kTileFields); }
};

// Plans `view` for work-groups of at most `max_tile_rows` rows (a multiple of 8). The tile
// height actually used is the largest strip rounded up to 8, capped at max_tile_rows. Throws
// Error(kUnsupported) when a weight does not fit in f16 or an index does not fit in 32 bits.
MatrixPlan plan_matrix(const BspMatrixView& view, uint32_t max_tile_rows);

}  // namespace rtmobile::cl
