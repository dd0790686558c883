// CUDA implementation of sparselth::spmm_kernel (schema in csrc/ops.cpp): checks, allocates,
// dispatches over dtypes and calls the raw launcher in spmm_cuda.cu. Built only when torch has
// CUDA.

#include <torch/library.h>

#include <type_traits>

#include "cuda_op.h"
#include "spmm_cuda.h"

namespace sparselth {
namespace {

using namespace cuda_op;

// An optional per-row or per-feature operand: on x's device, x's dtype, shape (len,).
void check_vector(const char* op, const char* name, const std::optional<at::Tensor>& t,
                  const at::Tensor& x, int64_t len, const char* len_name) {
  if (!t) return;
  check_on(op, name, *t, x.device());
  TORCH_CHECK_TYPE(t->scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ",
                   x.scalar_type(), ", got ", t->scalar_type());
  TORCH_CHECK_VALUE(t->dim() == 1 && t->numel() == len, op, ": ", name, " must have shape (",
                    len_name, ",) = (", len, ",), got ", t->sizes());
}

at::Tensor spmm_kernel_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                            const std::optional<at::Tensor>& val_in, const at::Tensor& x_in,
                            const std::optional<at::Tensor>& x_mask_in,
                            const std::optional<at::Tensor>& row_scale_in,
                            const std::optional<at::Tensor>& bias_in, int64_t num_rows,
                            bool relu) {
  constexpr const char* op = "spmm_kernel";
  const auto dtype = check_dense(op, x_in, "(n, F)");
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  check_csr(op, rowptr_in, col_in, num_rows, x_in);
  const int64_t nnz = col_in.numel();
  const int64_t F = x_in.size(1);
  check_vector(op, "val", val_in, x_in, nnz, "nnz");
  check_vector(op, "row_scale", row_scale_in, x_in, num_rows, "num_rows");
  check_vector(op, "bias", bias_in, x_in, F, "F");
  if (x_mask_in) {
    check_on(op, "x_mask", *x_mask_in, x_in.device());
    TORCH_CHECK_TYPE(x_mask_in->scalar_type() == at::kBool || x_mask_in->scalar_type() == dtype,
                     op, ": x_mask must be bool or x's dtype ", dtype, ", got ",
                     x_mask_in->scalar_type());
    TORCH_CHECK_VALUE(x_mask_in->sizes() == x_in.sizes(), op, ": x_mask must have x's shape ",
                      x_in.sizes(), ", got ", x_mask_in->sizes());
  }

  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(),
                   x = x_in.contiguous();
  const auto val = contiguous(val_in), x_mask = contiguous(x_mask_in),
             row_scale = contiguous(row_scale_in), bias = contiguous(bias_in);
  at::Tensor out = at::empty({num_rows, F}, x.options());
  if (num_rows == 0 || F == 0) return out;
  const cudaStream_t stream = current_stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "spmm_kernel_cuda", [&] {
    using T = typename CudaScalar<scalar_t>::type;
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "spmm_kernel_cuda", [&] {
      C10_CUDA_CHECK(with_mask<scalar_t>(x_mask, [&](auto mask_ptr) {
        using M = std::remove_const_t<std::remove_pointer_t<decltype(mask_ptr)>>;
        return gpu::spmm_csr_launch<T, index_t, M>(
            rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), cuda_ptr<scalar_t>(val),
            reinterpret_cast<const T*>(x.data_ptr<scalar_t>()), mask_ptr,
            cuda_ptr<scalar_t>(row_scale), cuda_ptr<scalar_t>(bias),
            reinterpret_cast<T*>(out.data_ptr<scalar_t>()), num_rows, nnz, F, relu, stream);
      }));
    });
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("spmm_kernel", TORCH_FN(sparselth::spmm_kernel_cuda));
}
