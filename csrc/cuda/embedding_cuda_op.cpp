// CUDA implementations of sparselth::embedding_{rows,csr,bitmask,backward,sparse_grad}_kernel
// (schemas in csrc/ops.cpp): checks (csrc/embedding_common.h), allocation, dtype dispatch, then
// the raw launchers of embedding_cuda.cu. Built only when torch has CUDA. float32/float64
// outputs (int8 values with a scale per stored row); ids are range-checked by the Python ops,
// not here.

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <type_traits>

#include "../embedding_common.h"
#include "cuda_op.h"
#include "embedding_cuda.h"

namespace sparselth {
namespace {

using cuda_op::contiguous;
using embedding::opt_ptr;

// The (num_out, dim) output of a gather of a table whose values are `val`, then
// launch(scalar_t{}, value_t{}, index_t{}, out) -> cudaError_t under the output, id and
// stored-value type dispatch (the caller holds the device guard).
template <typename Launch>
at::Tensor gather(const at::Tensor& val, at::ScalarType out_type, const at::Tensor& ids,
                  int64_t num_out, int64_t dim, const Launch& launch) {
  at::Tensor out = at::empty({num_out, dim}, val.options().dtype(out_type));
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_gather_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_gather_cuda_ids", [&] {
      embedding::dispatch_value<scalar_t>(val, [&](auto value_tag) {
        C10_CUDA_CHECK(launch(scalar_t{}, value_tag, index_t{}, out));
      });
    });
  });
  return out;
}

at::Tensor embedding_rows_cuda(const at::Tensor& table_in,
                               const std::optional<at::Tensor>& remap_in,
                               const std::optional<at::Tensor>& scale_in,
                               const std::optional<at::Tensor>& mask_in,
                               const at::Tensor& ids_in,
                               const std::optional<at::Tensor>& bag_ptr_in, int64_t mode) {
  constexpr const char* op = "embedding_rows";
  cuda_op::check_cuda(op, "table", table_in);
  int64_t num_rows;
  const auto out_type =
      embedding::check_rows_table(op, table_in, remap_in, scale_in, mask_in, &num_rows);
  const int64_t num_out =
      embedding::check_ids_and_bags(op, ids_in, bag_ptr_in, mode, table_in.device());
  const c10::cuda::CUDAGuard guard(table_in.device());
  const at::Tensor table = table_in.contiguous(), ids = ids_in.contiguous();
  const auto remap = contiguous(remap_in), scale = contiguous(scale_in),
             mask = contiguous(mask_in), bag_ptr = contiguous(bag_ptr_in);
  const cudaStream_t stream = cuda_op::current_stream();
  return gather(table, out_type, ids, num_out, table.size(1),
                [&](auto scalar_tag, auto value_tag, auto index_tag, at::Tensor& out) {
    using scalar_t = decltype(scalar_tag);
    using value_t = decltype(value_tag);
    using index_t = decltype(index_tag);
    return cuda_op::with_mask<scalar_t>(mask, [&](auto mask_ptr) {
      return gpu::embedding_rows_launch(
          static_cast<const value_t*>(table.data_ptr()), opt_ptr<int32_t>(remap),
          opt_ptr<scalar_t>(scale), mask_ptr, ids.data_ptr<index_t>(), opt_ptr<int64_t>(bag_ptr),
          out.data_ptr<scalar_t>(), num_out, table.size(1), mode == embedding::kModeMean,
          stream);
    });
  });
}

// A per-row sparse table: CSR (index = col) or, BITMASK, bitmask (index = bits).
template <bool BITMASK>
at::Tensor embedding_sparse_rows_cuda(const at::Tensor& rowptr_in, const at::Tensor& index_in,
                                      const at::Tensor& val_in,
                                      const std::optional<at::Tensor>& scale_in,
                                      const at::Tensor& ids_in,
                                      const std::optional<at::Tensor>& bag_ptr_in, int64_t mode,
                                      int64_t dim) {
  constexpr const char* op = BITMASK ? "embedding_bitmask" : "embedding_csr";
  cuda_op::check_cuda(op, "val", val_in);
  int64_t R;
  const auto out_type =
      embedding::check_sparse_table<BITMASK>(op, rowptr_in, index_in, val_in, scale_in, dim, &R);
  const int64_t num_out =
      embedding::check_ids_and_bags(op, ids_in, bag_ptr_in, mode, val_in.device());
  const c10::cuda::CUDAGuard guard(val_in.device());
  const at::Tensor rowptr = rowptr_in.contiguous(), index = index_in.contiguous(),
                   val = val_in.contiguous(), ids = ids_in.contiguous();
  const auto scale = contiguous(scale_in), bag_ptr = contiguous(bag_ptr_in);
  const cudaStream_t stream = cuda_op::current_stream();
  const bool mean = mode == embedding::kModeMean;
  return gather(val, out_type, ids, num_out, dim,
                [&](auto scalar_tag, auto value_tag, auto id_tag, at::Tensor& out) {
    using scalar_t = decltype(scalar_tag);
    using value_t = decltype(value_tag);
    using id_t = decltype(id_tag);
    cudaError_t err = cudaSuccess;
    embedding::dispatch_sparse_table<BITMASK>(rowptr, index, [&](auto ptr_tag, auto idx_tag) {
      using ptr_t = decltype(ptr_tag);
      using idx_t = decltype(idx_tag);
      const ptr_t* rp = rowptr.data_ptr<ptr_t>();
      const idx_t* ip = index.data_ptr<idx_t>();
      const value_t* vp = static_cast<const value_t*>(val.data_ptr());
      const scalar_t* sp = opt_ptr<scalar_t>(scale);
      const id_t* idp = ids.data_ptr<id_t>();
      scalar_t* outp = out.data_ptr<scalar_t>();
      if constexpr (BITMASK)
        err = gpu::embedding_bitmask_launch(rp, ip, vp, sp, idp, opt_ptr<int64_t>(bag_ptr), outp,
                                            num_out, dim, mean, stream);
      else
        err = gpu::embedding_csr_launch(rp, ip, vp, sp, idp, opt_ptr<int64_t>(bag_ptr), outp,
                                        num_out, dim, mean, stream);
    });
    return err;
  });
}

// The gradient kernels: checks, then launch(grad, mask, ids) -> cudaError_t with typed
// pointers under the dtype, id type and mask type dispatch.
template <typename Launch>
void masked_grad(const char* op, const at::Tensor& grad_in, const at::Tensor& ids_in,
                 const std::optional<at::Tensor>& mask_in, int64_t mask_rows,
                 const Launch& launch) {
  cuda_op::check_cuda(op, "grad", grad_in);
  embedding::check_grad(op, grad_in, ids_in, mask_in, mask_rows);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), ids = ids_in.contiguous();
  const auto mask = contiguous(mask_in);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_grad_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_grad_cuda_ids", [&] {
      C10_CUDA_CHECK(cuda_op::with_mask<scalar_t>(mask, [&](auto mask_ptr) {
        return launch(grad.data_ptr<scalar_t>(), mask_ptr, ids.data_ptr<index_t>());
      }));
    });
  });
}

at::Tensor embedding_backward_cuda(const at::Tensor& grad, const std::optional<at::Tensor>& mask,
                                   const at::Tensor& ids, int64_t num_rows) {
  constexpr const char* op = "embedding_backward";
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  at::Tensor out;
  masked_grad(op, grad, ids, mask, num_rows, [&](const auto* gp, const auto* mp, const auto* ip) {
    out = at::empty({num_rows, grad.size(1)}, grad.options());
    return gpu::embedding_backward_launch(gp, mp, ip, out.data_ptr<std::decay_t<decltype(*gp)>>(),
                                          ids.numel(), num_rows, grad.size(1),
                                          cuda_op::current_stream());
  });
  return out;
}

at::Tensor embedding_sparse_grad_cuda(const at::Tensor& grad, const at::Tensor& mask,
                                      const at::Tensor& ids) {
  constexpr const char* op = "embedding_sparse_grad";
  at::Tensor out;
  masked_grad(op, grad, ids, mask, -1, [&](const auto* gp, const auto* mp, const auto* ip) {
    out = at::empty_like(grad, at::MemoryFormat::Contiguous);
    return gpu::embedding_sparse_grad_launch(gp, mp, ip, out.data_ptr<std::decay_t<decltype(*gp)>>(),
                                             ids.numel(), grad.size(1),
                                             cuda_op::current_stream());
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("embedding_rows_kernel", TORCH_FN(sparselth::embedding_rows_cuda));
  m.impl("embedding_csr_kernel", TORCH_FN(sparselth::embedding_sparse_rows_cuda<false>));
  m.impl("embedding_bitmask_kernel", TORCH_FN(sparselth::embedding_sparse_rows_cuda<true>));
  m.impl("embedding_backward_kernel", TORCH_FN(sparselth::embedding_backward_cuda));
  m.impl("embedding_sparse_grad_kernel", TORCH_FN(sparselth::embedding_sparse_grad_cuda));
}
