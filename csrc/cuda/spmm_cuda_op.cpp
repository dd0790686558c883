// CUDA implementation of sparselth::spmm_kernel (schema in csrc/ops.cpp): checks, allocates,
// dispatches over dtypes and calls the raw launcher in spmm_cuda.cu. Built only when torch has
// CUDA. Uses the c10/cuda headers (not ATen/cuda/CUDAContext.h) so that no cuBLAS/cuSPARSE
// headers are needed.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "spmm_cuda.h"

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

template <typename scalar_t>
const typename CudaScalar<scalar_t>::type* cuda_ptr(const std::optional<at::Tensor>& t) {
  return t ? reinterpret_cast<const typename CudaScalar<scalar_t>::type*>(t->data_ptr<scalar_t>())
           : nullptr;
}

void check_cuda_on(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.is_cuda() && t.device() == x.device(), "spmm_kernel: ", name,
              " must be on x's device ", x.device(), ", got ", t.device());
}

at::Tensor spmm_kernel_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                            const std::optional<at::Tensor>& val_in, const at::Tensor& x_in,
                            const std::optional<at::Tensor>& x_mask_in,
                            const std::optional<at::Tensor>& row_scale_in,
                            const std::optional<at::Tensor>& bias_in, int64_t num_rows) {
  TORCH_CHECK(x_in.is_cuda(), "spmm_kernel: x must be a CUDA tensor, got ", x_in.device());
  TORCH_CHECK(x_in.dim() == 2, "spmm_kernel: x must be 2-D (n, F), got shape ", x_in.sizes());
  const auto dtype = x_in.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "spmm_kernel: x must be float32/float64/float16/bfloat16, got ", dtype);
  TORCH_CHECK(num_rows >= 0, "spmm_kernel: num_rows must be >= 0, got ", num_rows);
  check_cuda_on(rowptr_in, "rowptr", x_in);
  check_cuda_on(col_in, "col", x_in);
  TORCH_CHECK(rowptr_in.scalar_type() == at::kInt || rowptr_in.scalar_type() == at::kLong,
              "spmm_kernel: rowptr must be int32 or int64, got ", rowptr_in.scalar_type());
  TORCH_CHECK(col_in.scalar_type() == rowptr_in.scalar_type(),
              "spmm_kernel: col must have rowptr's dtype ", rowptr_in.scalar_type(), ", got ",
              col_in.scalar_type());
  TORCH_CHECK(rowptr_in.dim() == 1 && rowptr_in.numel() == num_rows + 1,
              "spmm_kernel: rowptr must have shape (num_rows + 1,) = (", num_rows + 1,
              ",), got ", rowptr_in.sizes());
  TORCH_CHECK(col_in.dim() == 1, "spmm_kernel: col must be 1-D, got shape ", col_in.sizes());
  const int64_t nnz = col_in.numel();
  const int64_t F = x_in.size(1);
  if (val_in) {
    check_cuda_on(*val_in, "val", x_in);
    TORCH_CHECK(val_in->scalar_type() == dtype, "spmm_kernel: val must have x's dtype ", dtype,
                ", got ", val_in->scalar_type());
    TORCH_CHECK(val_in->dim() == 1 && val_in->numel() == nnz,
                "spmm_kernel: val must have shape (nnz,) = (", nnz, ",), got ", val_in->sizes());
  }
  if (x_mask_in) {
    check_cuda_on(*x_mask_in, "x_mask", x_in);
    TORCH_CHECK(x_mask_in->scalar_type() == at::kBool || x_mask_in->scalar_type() == dtype,
                "spmm_kernel: x_mask must be bool or x's dtype ", dtype, ", got ",
                x_mask_in->scalar_type());
    TORCH_CHECK(x_mask_in->sizes() == x_in.sizes(), "spmm_kernel: x_mask must have x's shape ",
                x_in.sizes(), ", got ", x_mask_in->sizes());
  }
  if (row_scale_in) {
    check_cuda_on(*row_scale_in, "row_scale", x_in);
    TORCH_CHECK(row_scale_in->scalar_type() == dtype,
                "spmm_kernel: row_scale must have x's dtype ", dtype, ", got ",
                row_scale_in->scalar_type());
    TORCH_CHECK(row_scale_in->dim() == 1 && row_scale_in->numel() == num_rows,
                "spmm_kernel: row_scale must have shape (num_rows,) = (", num_rows, ",), got ",
                row_scale_in->sizes());
  }
  if (bias_in) {
    check_cuda_on(*bias_in, "bias", x_in);
    TORCH_CHECK(bias_in->scalar_type() == dtype, "spmm_kernel: bias must have x's dtype ",
                dtype, ", got ", bias_in->scalar_type());
    TORCH_CHECK(bias_in->dim() == 1 && bias_in->numel() == F,
                "spmm_kernel: bias must have shape (F,) = (", F, ",), got ", bias_in->sizes());
  }

  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous();
  const at::Tensor col = col_in.contiguous();
  const at::Tensor x = x_in.contiguous();
  std::optional<at::Tensor> val, x_mask, row_scale, bias;
  if (val_in) val = val_in->contiguous();
  if (x_mask_in) x_mask = x_mask_in->contiguous();
  if (row_scale_in) row_scale = row_scale_in->contiguous();
  if (bias_in) bias = bias_in->contiguous();

  at::Tensor out = at::empty({num_rows, F}, x.options());
  if (num_rows == 0 || F == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "spmm_kernel_cuda", [&] {
    using T = typename CudaScalar<scalar_t>::type;
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "spmm_kernel_cuda", [&] {
      const T* val_ptr = cuda_ptr<scalar_t>(val);
      const T* x_ptr = reinterpret_cast<const T*>(x.data_ptr<scalar_t>());
      const T* scale_ptr = cuda_ptr<scalar_t>(row_scale);
      const T* bias_ptr = cuda_ptr<scalar_t>(bias);
      T* out_ptr = reinterpret_cast<T*>(out.data_ptr<scalar_t>());
      cudaError_t err;
      if (x_mask && x_mask->scalar_type() == at::kBool) {
        err = gpu::spmm_csr_launch<T, index_t, uint8_t>(
            rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), val_ptr, x_ptr,
            reinterpret_cast<const uint8_t*>(x_mask->data_ptr<bool>()), scale_ptr, bias_ptr,
            out_ptr, num_rows, nnz, F, stream);
      } else {
        err = gpu::spmm_csr_launch<T, index_t, T>(
            rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), val_ptr, x_ptr,
            cuda_ptr<scalar_t>(x_mask), scale_ptr, bias_ptr, out_ptr, num_rows, nnz, F, stream);
      }
      C10_CUDA_CHECK(err);
    });
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("spmm_kernel", TORCH_FN(sparselth::spmm_kernel_cuda));
}
