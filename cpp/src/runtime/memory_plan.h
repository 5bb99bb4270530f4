// An upper bound on the bytes a session allocates while it loads a model and runs it, computed
// from the file's headers alone (format/model_view.h: read_layout) before anything large is
// allocated, so a file cannot make the runtime allocate more than
// SessionOptions::memory_limit_mb: a small file can describe huge dimensions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/model_view.h"
#include "kernels/kernels.h"

namespace rtmobile {

// How a backend will lay the model out: what the bound depends on besides the file.
struct MemoryShape {
  int threads = 1;              // row partitions of every matrix (CPU threads; 1 on OpenCL)
  size_t chunk_frames = 64;     // frames per internal chunk
  size_t frame_tile = 16;       // frames per SpMM call (no buffer depends on it any more)
  uint32_t pad_rows = kMaxPadRows;  // zero rows packing may add per piece (CPU panels,
                                    // kernels.h; an OpenCL tile of 64 rows: 63)
  uint32_t weight_bytes = 0;    // bytes per packed weight; 0 = the file's dtype
  uint32_t weight_copies = 1;   // packed copies alive at once (OpenCL: host plan and device)
};

// Bytes of: the model file's in-memory copy, the reader's tables, the packed weights and their
// index tables, the chunk buffers, labels and metadata (the kernels need no per-thread
// scratch). Saturates instead of overflowing. A stream's recurrent state (4 bytes per hidden
// unit, twice for an LSTM) is extra.
uint64_t planned_session_bytes(const ModelLayout& layout, uint64_t file_bytes,
                               const MemoryShape& shape);

// The limit SessionOptions::memory_limit_mb asks for, in bytes (0 = the default).
uint64_t memory_limit_bytes(uint64_t memory_limit_mb);

// Throws Error(kResourceLimit) naming both figures when `planned` exceeds `limit`.
void check_memory_limit(uint64_t planned, uint64_t limit);

}  // namespace rtmobile
