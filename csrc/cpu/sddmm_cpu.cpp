// CSR SDDMM on CPU: out[e] = dot(x[row(e)], y[col[e]]) for every stored entry e.
// The gradient of spmm with respect to A's values; rows split across threads by nnz + rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "check.h"
#include "partition.h"

namespace sparselth {
namespace {

constexpr int64_t kSerialWork = 1 << 15;
constexpr int64_t kPrefetchDistance = 8;

template <typename scalar_t>
struct Simd;
template <>
struct Simd<float> { typedef float type __attribute__((vector_size(32))); };
template <>
struct Simd<double> { typedef double type __attribute__((vector_size(32))); };

// dot(a, b) over F entries: two vector accumulators, then a scalar tail.
template <typename scalar_t>
inline scalar_t dot(const scalar_t* a, const scalar_t* b, int64_t F) {
  using vec_t = typename Simd<scalar_t>::type;
  constexpr int L = sizeof(vec_t) / sizeof(scalar_t);
  vec_t acc0{}, acc1{};
  int64_t f = 0;
  for (; f + 2 * L <= F; f += 2 * L) {
    vec_t a0, a1, b0, b1;
    std::memcpy(&a0, a + f, sizeof(vec_t));
    std::memcpy(&a1, a + f + L, sizeof(vec_t));
    std::memcpy(&b0, b + f, sizeof(vec_t));
    std::memcpy(&b1, b + f + L, sizeof(vec_t));
    acc0 += a0 * b0;
    acc1 += a1 * b1;
  }
  if (f + L <= F) {
    vec_t a0, b0;
    std::memcpy(&a0, a + f, sizeof(vec_t));
    std::memcpy(&b0, b + f, sizeof(vec_t));
    acc0 += a0 * b0;
    f += L;
  }
  acc0 += acc1;
  scalar_t out = scalar_t(0);
  for (int l = 0; l < L; ++l) out += acc0[l];
  for (; f < F; ++f) out += a[f] * b[f];
  return out;
}

template <typename scalar_t, typename index_t>
void sddmm_rows(const index_t* rowptr, const index_t* col, const scalar_t* x, const scalar_t* y,
                int64_t row_begin, int64_t row_end, int64_t F, int64_t nnz, scalar_t* out) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    const scalar_t* xi = x + i * F;
    for (int64_t e = rowptr[i], e1 = rowptr[i + 1]; e < e1; ++e) {
      if (e + kPrefetchDistance < nnz) {
        const char* ahead = reinterpret_cast<const char*>(
            y + static_cast<int64_t>(col[e + kPrefetchDistance]) * F);
        for (int64_t l = 0; l < F * (int64_t)sizeof(scalar_t) && l < 1024; l += 64)
          __builtin_prefetch(ahead + l, 0, 1);
      }
      out[e] = dot(xi, y + static_cast<int64_t>(col[e]) * F, F);
    }
  }
}

at::Tensor sddmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& x,
                     const at::Tensor& y) {
  constexpr const char* op = "sddmm";
  TORCH_CHECK_VALUE(x.dim() == 2 && y.dim() == 2 && x.is_contiguous() && y.is_contiguous(), op,
                    ": x and y must be contiguous 2-D tensors, got shapes ", x.sizes(), " and ",
                    y.sizes());
  const int64_t num_rows = x.size(0);
  check_csr_index(op, rowptr, col, num_rows);
  TORCH_CHECK_VALUE(x.size(1) == y.size(1), op, ": x and y must have the same number of columns, got ",
                    x.size(1), " and ", y.size(1));
  TORCH_CHECK_TYPE(x.scalar_type() == y.scalar_type() &&
                       (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
                   op, ": x and y must both be float32 or both float64 on CPU, got ",
                   x.scalar_type(), " and ", y.scalar_type());
  TORCH_CHECK_VALUE(rowptr.is_cpu() && y.is_cpu() && x.is_cpu(), op,
                    ": the CPU kernel needs CPU tensors");
  const int64_t nnz = col.numel();
  at::Tensor out = at::empty({nnz}, x.options());
  const int64_t F = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sddmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "sddmm_cpu_index", [&] {
      check_rowptr_ends<index_t>(op, rowptr, nnz, num_rows);
      if (nnz == 0) return;
      const index_t* rp = rowptr.data_ptr<index_t>();
      const index_t* cp = col.data_ptr<index_t>();
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      scalar_t* op_ = out.data_ptr<scalar_t>();
      const int64_t work = (nnz + num_rows) * std::max<int64_t>(F, 1);
      const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
      const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, num_rows));
      at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
        for (int64_t c = c_begin; c < c_end; ++c) {
          int64_t r0, r1;
          chunk_rows(rp, num_rows, c, chunks, &r0, &r1);
          sddmm_rows<scalar_t, index_t>(rp, cp, xp, yp, r0, r1, F, nnz, op_);
        }
      });
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("sddmm_kernel", &sddmm_cpu); }

}  // namespace sparselth
