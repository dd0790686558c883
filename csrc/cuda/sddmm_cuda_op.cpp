// CUDA implementation of sparselth::sddmm_kernel (schema in csrc/ops.cpp): checks, allocates,
// dispatches over dtypes and calls the raw launcher in sddmm_cuda.cu. Built only when torch has
// CUDA.

#include <torch/library.h>

#include "cuda_op.h"
#include "sddmm_cuda.h"

namespace sparselth {
namespace {

using namespace cuda_op;

at::Tensor sddmm_kernel_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                             const at::Tensor& x_in, const at::Tensor& y_in) {
  constexpr const char* op = "sddmm_kernel";
  const auto dtype = check_dense(op, x_in, "(m, F)");
  check_on(op, "y", y_in, x_in.device());
  TORCH_CHECK_VALUE(y_in.dim() == 2 && y_in.size(1) == x_in.size(1), op,
                    ": y must be 2-D (n, F) with x's F = ", x_in.size(1), ", got shape ",
                    y_in.sizes());
  TORCH_CHECK_TYPE(y_in.scalar_type() == dtype, op, ": y must have x's dtype ", dtype, ", got ",
                   y_in.scalar_type());
  const int64_t num_rows = x_in.size(0);
  check_csr(op, rowptr_in, col_in, num_rows, x_in);

  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(),
                   x = x_in.contiguous(), y = y_in.contiguous();
  const int64_t nnz = col.numel();
  const int64_t F = x.size(1);
  at::Tensor out = at::empty({nnz}, x.options());
  if (nnz == 0) return out;
  const cudaStream_t stream = current_stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "sddmm_kernel_cuda", [&] {
    using T = typename CudaScalar<scalar_t>::type;
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "sddmm_kernel_cuda", [&] {
      C10_CUDA_CHECK((gpu::sddmm_csr_launch<T, index_t>(
          rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(),
          reinterpret_cast<const T*>(x.data_ptr<scalar_t>()),
          reinterpret_cast<const T*>(y.data_ptr<scalar_t>()),
          reinterpret_cast<T*>(out.data_ptr<scalar_t>()), num_rows, nnz, F, stream)));
    });
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("sddmm_kernel", TORCH_FN(sparselth::sddmm_kernel_cuda));
}
