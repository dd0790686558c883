// Boundary checks shared by the CPU kernels: cheap (O(1)) checks only; O(nnz) validation
// (index range, sorted columns) happens once when a sparselth.CSR is built.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>

namespace sparselth {

inline void check_csr_index(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                            int64_t num_rows) {
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() == num_rows + 1, op,
                    ": rowptr must have shape (num_rows + 1,) = (", num_rows + 1, ",), got ",
                    rowptr.sizes());
  TORCH_CHECK_VALUE(col.dim() == 1, op, ": col must be 1-D, got ", col.sizes());
  TORCH_CHECK_TYPE(rowptr.scalar_type() == col.scalar_type() &&
                       (col.scalar_type() == at::kInt || col.scalar_type() == at::kLong),
                   op, ": rowptr and col must both be int32 or both int64, got ",
                   rowptr.scalar_type(), " and ", col.scalar_type());
  TORCH_CHECK_VALUE(rowptr.is_contiguous() && col.is_contiguous(), op,
                    ": rowptr and col must be contiguous");
}

inline void check_same_device(const char* op, const char* name, const at::Tensor& t,
                              const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
                    " but x is on ", ref.device());
}

// rowptr[0] == 0 and rowptr[num_rows] == nnz: two reads, guards every col/val access.
template <typename index_t>
inline void check_rowptr_ends(const char* op, const at::Tensor& rowptr, int64_t nnz,
                              int64_t num_rows) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  TORCH_CHECK_VALUE(rp[0] == 0 && static_cast<int64_t>(rp[num_rows]) == nnz, op,
                    ": rowptr must start at 0 and end at nnz = ", nnz, ", got ",
                    static_cast<int64_t>(rp[0]), " and ", static_cast<int64_t>(rp[num_rows]));
}

// Smallest and largest of p[0, n) (both 0 when n == 0), vectorised: the O(n) index-range
// checks that run on every call (ids, columns, blocks) must cost little next to the product.
template <typename index_t>
inline void min_max(const index_t* p, int64_t n, index_t* lo, index_t* hi) {
  index_t a = n > 0 ? p[0] : index_t(0), b = a;
#pragma omp simd reduction(min : a) reduction(max : b)
  for (int64_t i = 0; i < n; ++i) {
    a = std::min(a, p[i]);
    b = std::max(b, p[i]);
  }
  *lo = a;
  *hi = b;
}

}  // namespace sparselth
