// Splitting CSR rows across threads by work (nnz + rows), so power-law graphs balance.
#pragma once
#include <algorithm>
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

}  // namespace sparselth
