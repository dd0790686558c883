// CUDA implementation of sparselth::sddmm_kernel (schema in csrc/ops.cpp): checks, allocates,
// dispatches over dtypes and calls the raw launcher in sddmm_cuda.cu. Built only when torch has
// CUDA. Uses the c10/cuda headers (not ATen/cuda/CUDAContext.h) so that no cuBLAS/cuSPARSE
// headers are needed.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "sddmm_cuda.h"

namespace sparselth {
namespace {

// torch scalar type -> the CUDA type the kernels are instantiated for.
template <typename scalar_t>
struct CudaScalar {
  using type = scalar_t;
};
template <>
struct CudaScalar<at::Half> {
  using type = __half;
};
template <>
struct CudaScalar<at::BFloat16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(at::Half) == sizeof(__half), "at::Half and __half share a layout");
static_assert(sizeof(at::BFloat16) == sizeof(__nv_bfloat16),
              "at::BFloat16 and __nv_bfloat16 share a layout");

at::Tensor sddmm_kernel_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                             const at::Tensor& x_in, const at::Tensor& y_in) {
  TORCH_CHECK(x_in.is_cuda(), "sddmm_kernel: x must be a CUDA tensor, got ", x_in.device());
  const auto check_device = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.is_cuda() && t.device() == x_in.device(), "sddmm_kernel: ", name,
                " must be on x's device ", x_in.device(), ", got ", t.device());
  };
  check_device(rowptr_in, "rowptr");
  check_device(col_in, "col");
  check_device(y_in, "y");
  TORCH_CHECK(x_in.dim() == 2, "sddmm_kernel: x must be 2-D (m, F), got shape ", x_in.sizes());
  TORCH_CHECK(y_in.dim() == 2 && y_in.size(1) == x_in.size(1),
              "sddmm_kernel: y must be 2-D (n, F) with x's F = ", x_in.size(1), ", got shape ",
              y_in.sizes());
  const auto dtype = x_in.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "sddmm_kernel: x must be float32/float64/float16/bfloat16, got ", dtype);
  TORCH_CHECK(y_in.scalar_type() == dtype, "sddmm_kernel: y must have x's dtype ", dtype,
              ", got ", y_in.scalar_type());
  TORCH_CHECK(rowptr_in.scalar_type() == at::kInt || rowptr_in.scalar_type() == at::kLong,
              "sddmm_kernel: rowptr must be int32 or int64, got ", rowptr_in.scalar_type());
  TORCH_CHECK(col_in.scalar_type() == rowptr_in.scalar_type(),
              "sddmm_kernel: col must have rowptr's dtype ", rowptr_in.scalar_type(), ", got ",
              col_in.scalar_type());
  const int64_t num_rows = x_in.size(0);
  TORCH_CHECK(rowptr_in.dim() == 1 && rowptr_in.numel() == num_rows + 1,
              "sddmm_kernel: rowptr must have shape (x.size(0) + 1,) = (", num_rows + 1,
              ",), got ", rowptr_in.sizes());
  TORCH_CHECK(col_in.dim() == 1, "sddmm_kernel: col must be 1-D, got shape ", col_in.sizes());

  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous();
  const at::Tensor col = col_in.contiguous();
  const at::Tensor x = x_in.contiguous();
  const at::Tensor y = y_in.contiguous();
  const int64_t nnz = col.numel();
  const int64_t F = x.size(1);

  at::Tensor out = at::empty({nnz}, x.options());
  if (nnz == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

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
