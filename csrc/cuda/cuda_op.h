// Shared by the torch-facing CUDA wrappers (csrc/cuda/*_op.cpp): the CUDA type of a torch
// scalar type, typed data pointers, device and CSR checks, and the mask-type dispatch. Uses
// the c10/cuda headers only (not ATen/cuda/CUDAContext.h), so no cuBLAS/cuSPARSE headers are
// needed.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <optional>
#include <type_traits>

namespace sparselth {
namespace cuda_op {

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

// t's elements as the CUDA type of scalar_t; nullptr for an absent optional.
template <typename scalar_t>
const typename CudaScalar<scalar_t>::type* cuda_ptr(const std::optional<at::Tensor>& t) {
  return t ? reinterpret_cast<const typename CudaScalar<scalar_t>::type*>(t->data_ptr<scalar_t>())
           : nullptr;
}

inline std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& t) {
  if (!t) return std::nullopt;
  return t->contiguous();
}

inline void check_cuda(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got ", t.device());
}

inline void check_on(const char* op, const char* name, const at::Tensor& t,
                     const at::Device& dev) {
  TORCH_CHECK_VALUE(t.is_cuda() && t.device() == dev, op, ": ", name, " must be on ", dev,
                    ", got ", t.device());
}

// x: a 2-D float32/float64/float16/bfloat16 CUDA tensor; returns its dtype.
inline at::ScalarType check_dense(const char* op, const at::Tensor& x, const char* shape) {
  check_cuda(op, "x", x);
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be 2-D ", shape, ", got shape ", x.sizes());
  const auto dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                       dtype == at::kBFloat16,
                   op, ": x must be float32/float64/float16/bfloat16, got ", dtype);
  return dtype;
}

// The CSR index of num_rows rows on x's device: rowptr (num_rows + 1,) int32|int64 and a 1-D
// col of the same dtype.
inline void check_csr(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                      int64_t num_rows, const at::Tensor& x) {
  check_on(op, "rowptr", rowptr, x.device());
  check_on(op, "col", col, x.device());
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, op,
                   ": rowptr must be int32 or int64, got ", rowptr.scalar_type());
  TORCH_CHECK_TYPE(col.scalar_type() == rowptr.scalar_type(), op,
                   ": col must have rowptr's dtype ", rowptr.scalar_type(), ", got ",
                   col.scalar_type());
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() == num_rows + 1, op,
                    ": rowptr must have shape (num_rows + 1,) = (", num_rows + 1, ",), got ",
                    rowptr.sizes());
  TORCH_CHECK_VALUE(col.dim() == 1, op, ": col must be 1-D, got shape ", col.sizes());
}

// fn(mask) with mask a const uint8_t* for a bool tensor (0 = drop), the CUDA type of scalar_t
// for a value mask, and a null const absent_t* when there is none; returns fn's result.
template <typename scalar_t, typename absent_t = typename CudaScalar<scalar_t>::type,
          typename Fn>
auto with_mask(const std::optional<at::Tensor>& mask, Fn&& fn) {
  if (!mask) return fn(static_cast<const absent_t*>(nullptr));
  if (mask->scalar_type() == at::kBool)
    return fn(reinterpret_cast<const uint8_t*>(mask->data_ptr<bool>()));
  return fn(cuda_ptr<scalar_t>(mask));
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace cuda_op
}  // namespace sparselth
