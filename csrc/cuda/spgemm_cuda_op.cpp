// CUDA implementation of sparselth::spgemm_kernel and spgemm_sampled_kernel (schemas in
// csrc/ops.cpp): checks, allocates, dispatches over dtypes and calls the raw launchers in
// spgemm_cuda.cu. float32/float64 (the Python op widens half precision). Built only when
// torch has CUDA. Index ranges are trusted here (a sparselth.CSR validated them once).

#include <torch/library.h>

#include "cuda_op.h"
#include "spgemm_cuda.h"

namespace sparselth {
namespace {

using namespace cuda_op;

// rowptr/col pairs of A and B on `dev`, one index dtype.
void check_pair(const char* op, const at::Tensor& a_rowptr, const at::Tensor& a_col,
                const at::Tensor& b_rowptr, const at::Tensor& b_col, const at::Device& dev) {
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"a_rowptr", &a_rowptr},
                               {"a_col", &a_col}, {"b_rowptr", &b_rowptr}, {"b_col", &b_col}}) {
    check_on(op, name, *t, dev);
    TORCH_CHECK_VALUE(t->dim() == 1, op, ": ", name, " must be 1-D, got ", t->sizes());
    TORCH_CHECK_TYPE(t->scalar_type() == a_col.scalar_type() &&
                         (t->scalar_type() == at::kInt || t->scalar_type() == at::kLong),
                     op, ": all index arrays must be int32 or all int64, got ", name, " ",
                     t->scalar_type());
  }
  TORCH_CHECK_VALUE(a_rowptr.numel() >= 1 && b_rowptr.numel() >= 1, op,
                    ": a_rowptr and b_rowptr need at least one entry");
}

void check_values(const char* op, const char* name, const std::optional<at::Tensor>& val,
                  const at::Tensor& col, at::ScalarType dtype) {
  if (!val) return;
  check_on(op, name, *val, col.device());
  TORCH_CHECK_VALUE(val->dim() == 1 && val->numel() == col.numel(), op, ": ", name,
                    " must have shape (", col.numel(), ",), got ", val->sizes());
  TORCH_CHECK_TYPE(val->scalar_type() == dtype, op, ": ", name, " has dtype ",
                   val->scalar_type(), ", expected ", dtype);
}

template <typename scalar_t>
const scalar_t* opt_ptr(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<scalar_t>() : nullptr;
}

at::Tensor spgemm_kernel_cuda(const at::Tensor& a_rowptr_in, const at::Tensor& a_col_in,
                              const std::optional<at::Tensor>& a_val_in,
                              const at::Tensor& b_rowptr_in, const at::Tensor& b_col_in,
                              const std::optional<at::Tensor>& b_val_in, int64_t num_cols,
                              at::ScalarType dtype) {
  constexpr const char* op = "spgemm_kernel";
  check_cuda(op, "a_col", a_col_in);
  check_pair(op, a_rowptr_in, a_col_in, b_rowptr_in, b_col_in, a_col_in.device());
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, op,
                   ": dtype must be float32 or float64 on CUDA, got ", dtype);
  TORCH_CHECK_VALUE(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  check_values(op, "a_val", a_val_in, a_col_in, dtype);
  check_values(op, "b_val", b_val_in, b_col_in, dtype);

  const c10::cuda::CUDAGuard device_guard(a_col_in.device());
  const at::Tensor a_rowptr = a_rowptr_in.contiguous(), a_col = a_col_in.contiguous(),
                   b_rowptr = b_rowptr_in.contiguous(), b_col = b_col_in.contiguous();
  const auto a_val = contiguous(a_val_in), b_val = contiguous(b_val_in);
  const int64_t m = a_rowptr.numel() - 1;
  at::Tensor out = at::empty({m, num_cols}, a_col.options().dtype(dtype));
  if (m == 0 || num_cols == 0) return out;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(dtype, "spgemm_kernel_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(a_col.scalar_type(), "spgemm_kernel_cuda", [&] {
      C10_CUDA_CHECK((gpu::spgemm_csr_launch<scalar_t, index_t>(
          a_rowptr.data_ptr<index_t>(), a_col.data_ptr<index_t>(), opt_ptr<scalar_t>(a_val),
          b_rowptr.data_ptr<index_t>(), b_col.data_ptr<index_t>(), opt_ptr<scalar_t>(b_val),
          out.data_ptr<scalar_t>(), m, num_cols, stream)));
    });
  });
  return out;
}

at::Tensor spgemm_sampled_kernel_cuda(const at::Tensor& a_rowptr_in, const at::Tensor& a_col_in,
                                      const at::Tensor& b_rowptr_in, const at::Tensor& b_col_in,
                                      const std::optional<at::Tensor>& b_val_in,
                                      const at::Tensor& grad_in) {
  constexpr const char* op = "spgemm_sampled_kernel";
  check_cuda(op, "grad", grad_in);
  check_pair(op, a_rowptr_in, a_col_in, b_rowptr_in, b_col_in, grad_in.device());
  const auto dtype = grad_in.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, op,
                   ": grad must be float32 or float64 on CUDA, got ", dtype);
  TORCH_CHECK_VALUE(grad_in.dim() == 2 && grad_in.size(0) == a_rowptr_in.numel() - 1, op,
                    ": grad must be (num_rows of A = ", a_rowptr_in.numel() - 1,
                    ", k), got ", grad_in.sizes());
  check_values(op, "b_val", b_val_in, b_col_in, dtype);

  const c10::cuda::CUDAGuard device_guard(grad_in.device());
  const at::Tensor a_rowptr = a_rowptr_in.contiguous(), a_col = a_col_in.contiguous(),
                   b_rowptr = b_rowptr_in.contiguous(), b_col = b_col_in.contiguous(),
                   grad = grad_in.contiguous();
  const auto b_val = contiguous(b_val_in);
  const int64_t m = a_rowptr.numel() - 1;
  at::Tensor out = at::empty({a_col.numel()}, grad.options());
  if (a_col.numel() == 0) return out;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(dtype, "spgemm_sampled_kernel_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(a_col.scalar_type(), "spgemm_sampled_kernel_cuda", [&] {
      C10_CUDA_CHECK((gpu::spgemm_sampled_launch<scalar_t, index_t>(
          a_rowptr.data_ptr<index_t>(), a_col.data_ptr<index_t>(), b_rowptr.data_ptr<index_t>(),
          b_col.data_ptr<index_t>(), opt_ptr<scalar_t>(b_val), grad.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), m, grad.size(1), stream)));
    });
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("spgemm_kernel", TORCH_FN(sparselth::spgemm_kernel_cuda));
  m.impl("spgemm_sampled_kernel", TORCH_FN(sparselth::spgemm_sampled_kernel_cuda));
}
