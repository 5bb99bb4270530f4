#include "runtime/row_partition.h"

#include <algorithm>

namespace rtmobile {

std::vector<uint64_t> row_work(const BspMatrixView& view) {
  std::vector<uint64_t> work(view.rows, 1);  // a little per-row overhead
  for (uint32_t i = 0; i < view.num_r; ++i) {
    for (uint32_t j = 0; j < view.num_c; ++j) {
      const uint32_t b = i * view.num_c + j;
      const uint32_t ncols = view.block_col_ptr[b + 1] - view.block_col_ptr[b];
      for (uint32_t k = view.block_row_ptr[b]; k < view.block_row_ptr[b + 1]; ++k)
        work[view.row_perm[view.strip_ptr[i] + view.row_idx[k]]] += ncols;
    }
  }
  return work;
}

RowOwners balanced_row_owners(const BspMatrixView& view, int threads) {
  const std::vector<uint64_t> work = row_work(view);
  uint64_t total = 0;
  for (uint64_t w : work) total += w;
  const uint64_t nthreads = static_cast<uint64_t>(std::max(threads, 1));
  RowOwners owner(view.rows, 0);
  // Walk the stored order: thread t takes rows while the work before them is below
  // (t + 1) / threads of the total.
  uint64_t before = 0;
  uint32_t t = 0;
  for (uint32_t s = 0; s < view.rows; ++s) {
    const uint32_t row = view.row_perm[s];
    while (t + 1 < nthreads && before >= total * (t + 1) / nthreads) ++t;
    owner[row] = t;
    before += work[row];
  }
  return owner;
}

std::vector<std::pair<uint32_t, uint32_t>> hidden_unit_ranges(const BspMatrixView& w_ih,
                                                              const BspMatrixView& w_hh,
                                                              uint32_t hidden, uint32_t gates,
                                                              int threads) {
  const std::vector<uint64_t> a = row_work(w_ih), b = row_work(w_hh);
  std::vector<uint64_t> prefix(hidden + 1, 0);
  for (uint32_t u = 0; u < hidden; ++u) {
    uint64_t w = 0;
    for (uint32_t g = 0; g < gates; ++g) w += a[g * hidden + u] + b[g * hidden + u];
    prefix[u + 1] = prefix[u] + w;
  }
  const uint32_t nthreads = static_cast<uint32_t>(std::max(threads, 1));
  std::vector<std::pair<uint32_t, uint32_t>> ranges(nthreads);
  uint32_t begin = 0;
  for (uint32_t t = 0; t < nthreads; ++t) {
    uint32_t end = hidden;
    if (t + 1 < nthreads) {
      const uint64_t target = prefix[hidden] * (t + 1) / nthreads;
      const auto it = std::lower_bound(prefix.begin(), prefix.end(), target);
      end = static_cast<uint32_t>(it - prefix.begin());
      end = std::min(hidden, (end + 4) / 8 * 8);  // nearest multiple of 8
      end = std::max(end, begin);
    }
    ranges[t] = {begin, end};
    begin = end;
  }
  return ranges;
}

RowOwners gate_row_owners(const std::vector<std::pair<uint32_t, uint32_t>>& units,
                          uint32_t hidden, uint32_t gates) {
  RowOwners owner(size_t{hidden} * gates, 0);
  for (uint32_t t = 0; t < units.size(); ++t)
    for (uint32_t g = 0; g < gates; ++g)
      for (uint32_t u = units[t].first; u < units[t].second; ++u) owner[g * hidden + u] = t;
  return owner;
}

}  // namespace rtmobile
