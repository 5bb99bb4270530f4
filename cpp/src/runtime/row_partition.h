// Which thread computes which output rows of a BSP matrix (matrix reorder for load balance).
//
// Recurrent layers are split by hidden unit: a thread owns a range of units and, in W_ih and
// W_hh alike, the gate rows of those units (r, z, n for a GRU; i, f, g, o for an LSTM). The
// thread then computes its units' gate pre-activations and, with no barrier in between, their
// gate math; only the next frame's W_hh, which reads the whole hidden state, waits for the
// others: one barrier per layer and frame. Unit ranges are cut where the kept columns summed
// over the units' rows (the work) reach equal shares, in multiples of 8 units (SIMD lanes).
// Other matrices (the output layer) are cut into equal-work ranges of their stored rows.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "format/model_view.h"

namespace rtmobile {

// owner[row] = the thread computing output row `row` (original row order).
using RowOwners = std::vector<uint32_t>;

// Kept columns multiplied by each output row (original row order).
std::vector<uint64_t> row_work(const BspMatrixView& view);

// Equal-work contiguous ranges of the stored rows, one per thread.
RowOwners balanced_row_owners(const BspMatrixView& view, int threads);

// Per thread, its hidden units [begin, end) of a layer with `hidden` units and `gates` gate
// row blocks, balanced by the summed work of W_ih and W_hh; multiples of 8 except the last.
std::vector<std::pair<uint32_t, uint32_t>> hidden_unit_ranges(const BspMatrixView& w_ih,
                                                              const BspMatrixView& w_hh,
                                                              uint32_t hidden, uint32_t gates,
                                                              int threads);

// The gate rows of each thread's units: row g * hidden + u belongs to the owner of unit u.
RowOwners gate_row_owners(const std::vector<std::pair<uint32_t, uint32_t>>& units,
                          uint32_t hidden, uint32_t gates);

}  // namespace rtmobile
