// CUDA implementations of sparselth::embedding_{rows,csr,bitmask,backward}_kernel (schemas in
// csrc/ops.cpp): checks, allocation, dtype dispatch, then the raw launchers of
// embedding_cuda.cu. Built only when torch has CUDA. float32/float64 outputs (int8 values with a
// scale per stored row); ids are range-checked by the Python ops, not here.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "embedding_cuda.h"

namespace sparselth {
namespace {

void on_device(const char* op, const char* name, const at::Tensor& t, const at::Device& dev) {
  TORCH_CHECK_VALUE(t.is_cuda() && t.device() == dev, op, ": ", name, " must be on ", dev,
                    ", got ", t.device());
}

// ids (n,) int32/int64 and bag_ptr (B + 1,) int64 on `dev`; returns the number of output rows.
int64_t check_ids(const char* op, const at::Tensor& ids, const std::optional<at::Tensor>& bag_ptr,
                  int64_t mode, const at::Device& dev) {
  on_device(op, "ids", ids, dev);
  TORCH_CHECK_VALUE(ids.dim() == 1, op, ": ids must be 1-D, got shape ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(mode == 0 || mode == 1, op, ": mode must be 0 (sum) or 1 (mean), got ",
                    mode);
  if (!bag_ptr) return ids.numel();
  on_device(op, "bag_ptr", *bag_ptr, dev);
  TORCH_CHECK_VALUE(bag_ptr->dim() == 1 && bag_ptr->numel() >= 1, op,
                    ": bag_ptr must be 1-D with B + 1 entries");
  TORCH_CHECK_TYPE(bag_ptr->scalar_type() == at::kLong, op, ": bag_ptr must be int64, got ",
                   bag_ptr->scalar_type());
  return bag_ptr->numel() - 1;
}

// Output dtype: the values' (float32/float64), or the scale's for int8 values.
at::ScalarType check_values(const char* op, const at::Tensor& val,
                            const std::optional<at::Tensor>& scale, int64_t scale_len,
                            const at::Device& dev) {
  const auto vt = val.scalar_type();
  TORCH_CHECK_TYPE(vt == at::kFloat || vt == at::kDouble || vt == at::kChar, op,
                   ": stored values must be float32, float64 or int8 on CUDA, got ", vt);
  TORCH_CHECK_VALUE(vt != at::kChar || scale.has_value(), op,
                    ": int8 values need a scale per stored row");
  if (scale) {
    on_device(op, "scale", *scale, dev);
    TORCH_CHECK_VALUE(scale->dim() == 1 && scale->numel() == scale_len, op,
                      ": scale must have shape (", scale_len, ",), got ", scale->sizes());
    const auto st = scale->scalar_type();
    TORCH_CHECK_TYPE((st == at::kFloat || st == at::kDouble) && (vt == at::kChar || vt == st),
                     op, ": scale must be float32/float64 and match float values, got ", st);
    return vt == at::kChar ? st : vt;
  }
  return vt;
}

template <typename T>
const T* opt_ptr(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& t) {
  if (!t) return std::nullopt;
  return t->contiguous();
}

// fn(value_t) with value_t = scalar_t or int8_t.
template <typename scalar_t, typename Fn>
void dispatch_value(const at::Tensor& val, Fn&& fn) {
  if (val.scalar_type() == at::kChar) fn(int8_t{});
  else fn(scalar_t{});
}

at::Tensor embedding_rows_cuda(const at::Tensor& table_in,
                               const std::optional<at::Tensor>& remap_in,
                               const std::optional<at::Tensor>& scale_in,
                               const std::optional<at::Tensor>& mask_in,
                               const at::Tensor& ids_in,
                               const std::optional<at::Tensor>& bag_ptr_in, int64_t mode) {
  constexpr const char* op = "embedding_rows";
  TORCH_CHECK_VALUE(table_in.is_cuda(), op, ": table must be a CUDA tensor");
  TORCH_CHECK_VALUE(table_in.dim() == 2, op, ": table must be 2-D, got ", table_in.sizes());
  const at::Device dev = table_in.device();
  const int64_t K = table_in.size(0), dim = table_in.size(1);
  const at::ScalarType out_type = check_values(op, table_in, scale_in, K, dev);
  if (remap_in) {
    on_device(op, "remap", *remap_in, dev);
    TORCH_CHECK_TYPE(remap_in->scalar_type() == at::kInt && remap_in->dim() == 1, op,
                     ": remap must be 1-D int32");
  }
  if (mask_in) {
    on_device(op, "mask", *mask_in, dev);
    TORCH_CHECK_VALUE(mask_in->sizes() == table_in.sizes(), op,
                      ": mask must have the table's shape ", table_in.sizes());
    TORCH_CHECK_TYPE(mask_in->scalar_type() == at::kBool || mask_in->scalar_type() == out_type,
                     op, ": mask must be bool or the output dtype, got ", mask_in->scalar_type());
  }
  const int64_t num_out = check_ids(op, ids_in, bag_ptr_in, mode, dev);

  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor table = table_in.contiguous(), ids = ids_in.contiguous();
  const auto remap = contiguous(remap_in), scale = contiguous(scale_in),
             mask = contiguous(mask_in), bag_ptr = contiguous(bag_ptr_in);
  at::Tensor out = at::empty({num_out, dim}, table.options().dtype(out_type));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_rows_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_rows_cuda_ids", [&] {
      dispatch_value<scalar_t>(table, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* tp = static_cast<const value_t*>(table.data_ptr());
        const int32_t* rp = opt_ptr<int32_t>(remap);
        const int64_t* bp = opt_ptr<int64_t>(bag_ptr);
        cudaError_t err;
        if (mask && mask->scalar_type() == at::kBool) {
          err = gpu::embedding_rows_launch<scalar_t, value_t, index_t, uint8_t>(
              tp, rp, opt_ptr<scalar_t>(scale),
              reinterpret_cast<const uint8_t*>(mask->data_ptr<bool>()), ids.data_ptr<index_t>(),
              bp, out.data_ptr<scalar_t>(), num_out, dim, mode == 1, stream);
        } else {
          err = gpu::embedding_rows_launch<scalar_t, value_t, index_t, scalar_t>(
              tp, rp, opt_ptr<scalar_t>(scale), opt_ptr<scalar_t>(mask),
              ids.data_ptr<index_t>(), bp, out.data_ptr<scalar_t>(), num_out, dim, mode == 1,
              stream);
        }
        C10_CUDA_CHECK(err);
      });
    });
  });
  return out;
}

void check_rowptr(const char* op, const at::Tensor& rowptr, const at::Device& dev) {
  on_device(op, "rowptr", rowptr, dev);
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() >= 1, op,
                    ": rowptr must be 1-D with R + 1 entries");
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, op,
                   ": rowptr must be int32 or int64, got ", rowptr.scalar_type());
}

at::Tensor embedding_csr_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                              const at::Tensor& val_in,
                              const std::optional<at::Tensor>& scale_in,
                              const at::Tensor& ids_in,
                              const std::optional<at::Tensor>& bag_ptr_in, int64_t mode,
                              int64_t dim) {
  constexpr const char* op = "embedding_csr";
  TORCH_CHECK_VALUE(val_in.is_cuda(), op, ": val must be a CUDA tensor");
  const at::Device dev = val_in.device();
  check_rowptr(op, rowptr_in, dev);
  on_device(op, "col", col_in, dev);
  TORCH_CHECK_TYPE(col_in.scalar_type() == at::kShort || col_in.scalar_type() == at::kInt, op,
                   ": col must be int16 or int32, got ", col_in.scalar_type());
  TORCH_CHECK_VALUE(col_in.dim() == 1 && val_in.dim() == 1 && val_in.numel() == col_in.numel(),
                    op, ": col and val must be 1-D of the same length");
  TORCH_CHECK_VALUE(dim >= 0, op, ": dim must be >= 0, got ", dim);
  const int64_t R = rowptr_in.numel() - 1;
  const at::ScalarType out_type = check_values(op, val_in, scale_in, R, dev);
  const int64_t num_out = check_ids(op, ids_in, bag_ptr_in, mode, dev);

  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(),
                   val = val_in.contiguous(), ids = ids_in.contiguous();
  const auto scale = contiguous(scale_in), bag_ptr = contiguous(bag_ptr_in);
  at::Tensor out = at::empty({num_out, dim}, val.options().dtype(out_type));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_csr_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_csr_cuda_ids", [&] {
      dispatch_value<scalar_t>(val, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* vp = static_cast<const value_t*>(val.data_ptr());
        auto run = [&](auto ptr_tag, auto col_tag) {
          using ptr_t = decltype(ptr_tag);
          using col_t = decltype(col_tag);
          C10_CUDA_CHECK((gpu::embedding_csr_launch<scalar_t, value_t, ptr_t, col_t, index_t>(
              rowptr.data_ptr<ptr_t>(), col.data_ptr<col_t>(), vp, opt_ptr<scalar_t>(scale),
              ids.data_ptr<index_t>(), opt_ptr<int64_t>(bag_ptr), out.data_ptr<scalar_t>(),
              num_out, dim, mode == 1, stream)));
        };
        const bool p32 = rowptr.scalar_type() == at::kInt;
        const bool c16 = col.scalar_type() == at::kShort;
        if (p32 && c16) run(int32_t{}, int16_t{});
        else if (p32) run(int32_t{}, int32_t{});
        else if (c16) run(int64_t{}, int16_t{});
        else run(int64_t{}, int32_t{});
      });
    });
  });
  return out;
}

at::Tensor embedding_bitmask_cuda(const at::Tensor& rowptr_in, const at::Tensor& bits_in,
                                  const at::Tensor& val_in,
                                  const std::optional<at::Tensor>& scale_in,
                                  const at::Tensor& ids_in,
                                  const std::optional<at::Tensor>& bag_ptr_in, int64_t mode,
                                  int64_t dim) {
  constexpr const char* op = "embedding_bitmask";
  TORCH_CHECK_VALUE(val_in.is_cuda(), op, ": val must be a CUDA tensor");
  const at::Device dev = val_in.device();
  check_rowptr(op, rowptr_in, dev);
  TORCH_CHECK_VALUE(dim >= 0, op, ": dim must be >= 0, got ", dim);
  const int64_t R = rowptr_in.numel() - 1;
  on_device(op, "bits", bits_in, dev);
  TORCH_CHECK_TYPE(bits_in.scalar_type() == at::kByte, op, ": bits must be uint8, got ",
                   bits_in.scalar_type());
  TORCH_CHECK_VALUE(bits_in.dim() == 2 && bits_in.size(0) == R && bits_in.size(1) == (dim + 7) / 8,
                    op, ": bits must have shape (", R, ", ", (dim + 7) / 8, "), got ",
                    bits_in.sizes());
  TORCH_CHECK_VALUE(val_in.dim() == 1, op, ": val must be 1-D");
  const at::ScalarType out_type = check_values(op, val_in, scale_in, R, dev);
  const int64_t num_out = check_ids(op, ids_in, bag_ptr_in, mode, dev);

  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor rowptr = rowptr_in.contiguous(), bits = bits_in.contiguous(),
                   val = val_in.contiguous(), ids = ids_in.contiguous();
  const auto scale = contiguous(scale_in), bag_ptr = contiguous(bag_ptr_in);
  at::Tensor out = at::empty({num_out, dim}, val.options().dtype(out_type));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_bitmask_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_bitmask_cuda_ids", [&] {
      dispatch_value<scalar_t>(val, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* vp = static_cast<const value_t*>(val.data_ptr());
        auto run = [&](auto ptr_tag) {
          using ptr_t = decltype(ptr_tag);
          C10_CUDA_CHECK((gpu::embedding_bitmask_launch<scalar_t, value_t, ptr_t, index_t>(
              rowptr.data_ptr<ptr_t>(), bits.data_ptr<uint8_t>(), vp, opt_ptr<scalar_t>(scale),
              ids.data_ptr<index_t>(), opt_ptr<int64_t>(bag_ptr), out.data_ptr<scalar_t>(),
              num_out, dim, mode == 1, stream)));
        };
        if (rowptr.scalar_type() == at::kInt) run(int32_t{});
        else run(int64_t{});
      });
    });
  });
  return out;
}

at::Tensor embedding_backward_cuda(const at::Tensor& grad_in,
                                   const std::optional<at::Tensor>& mask_in,
                                   const at::Tensor& ids_in, int64_t num_rows) {
  constexpr const char* op = "embedding_backward";
  TORCH_CHECK_VALUE(grad_in.is_cuda() && grad_in.dim() == 2, op,
                    ": grad must be a 2-D CUDA tensor, got ", grad_in.sizes());
  TORCH_CHECK_TYPE(grad_in.scalar_type() == at::kFloat || grad_in.scalar_type() == at::kDouble,
                   op, ": grad must be float32 or float64, got ", grad_in.scalar_type());
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  const at::Device dev = grad_in.device();
  const int64_t n = check_ids(op, ids_in, std::nullopt, 0, dev);
  TORCH_CHECK_VALUE(n == grad_in.size(0), op, ": ids must have grad.size(0) = ", grad_in.size(0),
                    " entries, got ", n);
  const int64_t dim = grad_in.size(1);
  if (mask_in) {
    on_device(op, "mask", *mask_in, dev);
    TORCH_CHECK_VALUE(mask_in->dim() == 2 && mask_in->size(0) == num_rows &&
                          mask_in->size(1) == dim,
                      op, ": mask must have shape (", num_rows, ", ", dim, ")");
    TORCH_CHECK_TYPE(mask_in->scalar_type() == at::kBool ||
                         mask_in->scalar_type() == grad_in.scalar_type(),
                     op, ": mask must be bool or grad's dtype, got ", mask_in->scalar_type());
  }
  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor grad = grad_in.contiguous(), ids = ids_in.contiguous();
  const auto mask = contiguous(mask_in);
  at::Tensor out = at::empty({num_rows, dim}, grad.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_backward_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_backward_cuda_ids", [&] {
      cudaError_t err;
      if (mask && mask->scalar_type() == at::kBool) {
        err = gpu::embedding_backward_launch<scalar_t, uint8_t, index_t>(
            grad.data_ptr<scalar_t>(), reinterpret_cast<const uint8_t*>(mask->data_ptr<bool>()),
            ids.data_ptr<index_t>(), out.data_ptr<scalar_t>(), n, num_rows, dim, stream);
      } else {
        err = gpu::embedding_backward_launch<scalar_t, scalar_t, index_t>(
            grad.data_ptr<scalar_t>(), opt_ptr<scalar_t>(mask), ids.data_ptr<index_t>(),
            out.data_ptr<scalar_t>(), n, num_rows, dim, stream);
      }
      C10_CUDA_CHECK(err);
    });
  });
  return out;
}

at::Tensor embedding_sparse_grad_cuda(const at::Tensor& grad_in, const at::Tensor& mask_in,
                                      const at::Tensor& ids_in) {
  constexpr const char* op = "embedding_sparse_grad";
  TORCH_CHECK_VALUE(grad_in.is_cuda() && grad_in.dim() == 2, op,
                    ": grad must be a 2-D CUDA tensor, got ", grad_in.sizes());
  TORCH_CHECK_TYPE(grad_in.scalar_type() == at::kFloat || grad_in.scalar_type() == at::kDouble,
                   op, ": grad must be float32 or float64, got ", grad_in.scalar_type());
  const at::Device dev = grad_in.device();
  const int64_t n = check_ids(op, ids_in, std::nullopt, 0, dev);
  TORCH_CHECK_VALUE(n == grad_in.size(0), op, ": ids must have grad.size(0) = ", grad_in.size(0),
                    " entries, got ", n);
  const int64_t dim = grad_in.size(1);
  on_device(op, "mask", mask_in, dev);
  TORCH_CHECK_VALUE(mask_in.dim() == 2 && mask_in.size(1) == dim, op,
                    ": mask must have shape (rows, ", dim, "), got ", mask_in.sizes());
  TORCH_CHECK_TYPE(mask_in.scalar_type() == at::kBool ||
                       mask_in.scalar_type() == grad_in.scalar_type(),
                   op, ": mask must be bool or grad's dtype, got ", mask_in.scalar_type());
  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor grad = grad_in.contiguous(), ids = ids_in.contiguous(),
                   mask = mask_in.contiguous();
  at::Tensor out = at::empty_like(grad);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_sparse_grad_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_sparse_grad_cuda_ids", [&] {
      cudaError_t err;
      if (mask.scalar_type() == at::kBool) {
        err = gpu::embedding_sparse_grad_launch<scalar_t, uint8_t, index_t>(
            grad.data_ptr<scalar_t>(), reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>()),
            ids.data_ptr<index_t>(), out.data_ptr<scalar_t>(), n, dim, stream);
      } else {
        err = gpu::embedding_sparse_grad_launch<scalar_t, scalar_t, index_t>(
            grad.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(), ids.data_ptr<index_t>(),
            out.data_ptr<scalar_t>(), n, dim, stream);
      }
      C10_CUDA_CHECK(err);
    });
  });
  return out;
}

}  // namespace
}  // namespace sparselth

TORCH_LIBRARY_IMPL(sparselth, CUDA, m) {
  m.impl("embedding_rows_kernel", TORCH_FN(sparselth::embedding_rows_cuda));
  m.impl("embedding_csr_kernel", TORCH_FN(sparselth::embedding_csr_cuda));
  m.impl("embedding_bitmask_kernel", TORCH_FN(sparselth::embedding_bitmask_cuda));
  m.impl("embedding_backward_kernel", TORCH_FN(sparselth::embedding_backward_cuda));
  m.impl("embedding_sparse_grad_kernel", TORCH_FN(sparselth::embedding_sparse_grad_cuda));
}
