// Splitting work across threads: CSR rows by work (nnz + rows), so power-law graphs balance, and
// items handed out one at a time.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace sparselth {

// First row r in [0, num_rows] with rowptr[r] + r >= target (cost of rows before r).
// rowptr: (num_rows + 1,) non-decreasing. O(log num_rows), no allocation.
template <typename index_t>
inline int64_t row_at_cost(const index_t* rowptr, int64_t num_rows, int64_t target) {
  int64_t lo = 0, hi = num_rows;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(rowptr[mid]) + mid < target) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Rows [begin, end) of chunk `c` out of `chunks`, each chunk holding ~equal nnz + rows.
template <typename index_t>
inline void chunk_rows(const index_t* rowptr, int64_t num_rows, int64_t c, int64_t chunks,
                       int64_t* begin, int64_t* end) {
  const int64_t total = static_cast<int64_t>(rowptr[num_rows]) + num_rows;
  *begin = c == 0 ? 0 : row_at_cost(rowptr, num_rows, total * c / chunks);
  *end = c + 1 == chunks ? num_rows : row_at_cost(rowptr, num_rows, total * (c + 1) / chunks);
}

// Runs body(item) for item in [0, items) on `threads` threads, handing items out one at a time
// (a thread that the OS deschedules on a shared machine then holds up one item, not a share).
template <typename F>
inline void parallel_items(int64_t items, int64_t threads, const F& body) {
  if (threads <= 1 || items <= 1) {
    for (int64_t it = 0; it < items; ++it) body(it);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, items), 1, [&](int64_t, int64_t) {
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;) body(it);
  });
}

}  // namespace sparselth
