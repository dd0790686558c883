// Checks and type dispatch shared by the embedding wrappers on CPU (csrc/cpu/embedding_cpu.cpp)
// and CUDA (csrc/cuda/embedding_cuda_op.cpp): the shapes and dtypes of each table layout, of
// the ids and bags and of the gradient inputs, and the compile-time tags (stored value type,
// index types, mask type) the kernels are templated on. Layout and memory checks (contiguity,
// bag pointer values) stay with each backend.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

namespace sparselth {
namespace embedding {

constexpr int64_t kModeSum = 0, kModeMean = 1;

inline void check_device(const char* op, const char* name, const at::Tensor& t,
                         const at::Device& dev) {
  TORCH_CHECK_VALUE(t.device() == dev, op, ": ", name, " must be on ", dev, ", got ",
                    t.device());
}

template <typename T>
const T* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

// The output dtype of a gather: the stored values' (float32/float64), or the scale's for int8
// values. scale: (scale_len,) per stored row, on val's device.
inline at::ScalarType check_values(const char* op, const at::Tensor& val,
                                   const std::optional<at::Tensor>& scale, int64_t scale_len) {
  const auto vt = val.scalar_type();
  TORCH_CHECK_TYPE(vt == at::kFloat || vt == at::kDouble || vt == at::kChar, op,
                   ": stored values must be float32, float64 or int8, got ", vt);
  TORCH_CHECK_VALUE(vt != at::kChar || scale.has_value(), op,
                    ": int8 values need a scale per stored row");
  if (!scale.has_value()) return vt;
  check_device(op, "scale", *scale, val.device());
  TORCH_CHECK_VALUE(scale->dim() == 1 && scale->numel() == scale_len, op,
                    ": scale must have shape (", scale_len, ",), got ", scale->sizes());
  const auto st = scale->scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble, op,
                   ": scale must be float32 or float64, got ", st);
  TORCH_CHECK_TYPE(vt == at::kChar || vt == st, op, ": scale dtype ", st,
                   " differs from the values' ", vt);
  return vt == at::kChar ? st : vt;
}

// ids (n,) int32/int64 and bag_ptr (B + 1,) int64 on `dev`, mode 0 (sum) or 1 (mean); returns
// the number of output rows (n without bags, B with).
inline int64_t check_ids_and_bags(const char* op, const at::Tensor& ids,
                                  const std::optional<at::Tensor>& bag_ptr, int64_t mode,
                                  const at::Device& dev) {
  check_device(op, "ids", ids, dev);
  TORCH_CHECK_VALUE(ids.dim() == 1, op, ": ids must be 1-D, got shape ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(mode == kModeSum || mode == kModeMean, op,
                    ": mode must be 0 (sum) or 1 (mean), got ", mode);
  if (!bag_ptr.has_value()) return ids.numel();
  check_device(op, "bag_ptr", *bag_ptr, dev);
  TORCH_CHECK_VALUE(bag_ptr->dim() == 1 && bag_ptr->numel() >= 1, op,
                    ": bag_ptr must be 1-D with B + 1 entries, got shape ", bag_ptr->sizes());
  TORCH_CHECK_TYPE(bag_ptr->scalar_type() == at::kLong, op, ": bag_ptr must be int64, got ",
                   bag_ptr->scalar_type());
  return bag_ptr->numel() - 1;
}

// Dense / row-compact table: table (K, d), remap (R,) int32 or None, scale (K,), mask (K, d)
// bool or the output dtype. Returns the output dtype; *num_rows = rows the ids address (R or K).
inline at::ScalarType check_rows_table(const char* op, const at::Tensor& table,
                                       const std::optional<at::Tensor>& remap,
                                       const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& mask,
                                       int64_t* num_rows) {
  TORCH_CHECK_VALUE(table.dim() == 2, op, ": table must be 2-D, got shape ", table.sizes());
  const at::ScalarType out_type = check_values(op, table, scale, table.size(0));
  *num_rows = table.size(0);
  if (remap.has_value()) {
    check_device(op, "remap", *remap, table.device());
    TORCH_CHECK_VALUE(remap->dim() == 1, op, ": remap must be 1-D, got shape ", remap->sizes());
    TORCH_CHECK_TYPE(remap->scalar_type() == at::kInt, op, ": remap must be int32, got ",
                     remap->scalar_type());
    *num_rows = remap->numel();
  }
  if (mask.has_value()) {
    check_device(op, "mask", *mask, table.device());
    TORCH_CHECK_VALUE(mask->sizes() == table.sizes(), op, ": mask must have the table's shape ",
                      table.sizes(), ", got ", mask->sizes());
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool || mask->scalar_type() == out_type, op,
                     ": mask must be bool or the output dtype ", out_type, ", got ",
                     mask->scalar_type());
  }
  return out_type;
}

// rowptr (R + 1,) int32/int64 of a per-row sparse table, on val's device; returns R.
inline int64_t check_table_rowptr(const char* op, const at::Tensor& rowptr, const at::Tensor& val,
                                  int64_t dim) {
  check_device(op, "rowptr", rowptr, val.device());
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() >= 1, op,
                    ": rowptr must be 1-D with R + 1 entries, got shape ", rowptr.sizes());
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, op,
                   ": rowptr must be int32 or int64, got ", rowptr.scalar_type());
  TORCH_CHECK_VALUE(dim >= 0, op, ": dim must be >= 0, got ", dim);
  return rowptr.numel() - 1;
}

// Per-row CSR: rowptr (R + 1,), col (nnz,) int16/int32, val (nnz,), scale (R,). Returns the
// output dtype; *num_rows = R.
inline at::ScalarType check_csr_table(const char* op, const at::Tensor& rowptr,
                                      const at::Tensor& col, const at::Tensor& val,
                                      const std::optional<at::Tensor>& scale, int64_t dim,
                                      int64_t* num_rows) {
  *num_rows = check_table_rowptr(op, rowptr, val, dim);
  check_device(op, "col", col, val.device());
  TORCH_CHECK_TYPE(col.scalar_type() == at::kShort || col.scalar_type() == at::kInt, op,
                   ": col must be int16 or int32, got ", col.scalar_type());
  TORCH_CHECK_VALUE(col.dim() == 1 && val.dim() == 1 && val.numel() == col.numel(), op,
                    ": col and val must be 1-D of the same length (nnz,), got ", col.sizes(),
                    " and ", val.sizes());
  return check_values(op, val, scale, *num_rows);
}

// Per-row bitmask: rowptr (R + 1,), bits (R, ceil(dim / 8)) uint8, val (nnz,), scale (R,).
// Returns the output dtype; *num_rows = R.
inline at::ScalarType check_bitmask_table(const char* op, const at::Tensor& rowptr,
                                          const at::Tensor& bits, const at::Tensor& val,
                                          const std::optional<at::Tensor>& scale, int64_t dim,
                                          int64_t* num_rows) {
  const int64_t R = *num_rows = check_table_rowptr(op, rowptr, val, dim);
  check_device(op, "bits", bits, val.device());
  TORCH_CHECK_TYPE(bits.scalar_type() == at::kByte, op, ": bits must be uint8, got ",
                   bits.scalar_type());
  TORCH_CHECK_VALUE(bits.dim() == 2 && bits.size(0) == R && bits.size(1) == (dim + 7) / 8, op,
                    ": bits must have shape (", R, ", ", (dim + 7) / 8, "), got ", bits.sizes());
  TORCH_CHECK_VALUE(val.dim() == 1, op, ": val must be 1-D, got shape ", val.sizes());
  return check_values(op, val, scale, R);
}

// A per-row sparse table: CSR (`index` = col) or, BITMASK, bitmask (`index` = bits).
template <bool BITMASK>
inline at::ScalarType check_sparse_table(const char* op, const at::Tensor& rowptr,
                                         const at::Tensor& index, const at::Tensor& val,
                                         const std::optional<at::Tensor>& scale, int64_t dim,
                                         int64_t* num_rows) {
  if constexpr (BITMASK) return check_bitmask_table(op, rowptr, index, val, scale, dim, num_rows);
  else return check_csr_table(op, rowptr, index, val, scale, dim, num_rows);
}

// Gradient kernels: grad (n, d) float32/float64; ids (n,) int32/int64 and mask (mask_rows, d)
// bool or grad's dtype, both on grad's device (mask_rows < 0: any number of rows).
inline void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& ids,
                       const std::optional<at::Tensor>& mask, int64_t mask_rows) {
  TORCH_CHECK_VALUE(grad.dim() == 2, op, ": grad must be 2-D, got shape ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble, op,
                   ": grad must be float32 or float64, got ", grad.scalar_type());
  check_device(op, "ids", ids, grad.device());
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.numel() == grad.size(0), op,
                    ": ids must have shape (", grad.size(0), ",), got ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  if (!mask.has_value()) return;
  check_device(op, "mask", *mask, grad.device());
  TORCH_CHECK_VALUE(mask->dim() == 2 && (mask_rows < 0 || mask->size(0) == mask_rows) &&
                        mask->size(1) == grad.size(1),
                    op, ": mask must have shape (", mask_rows < 0 ? "rows" : "num_rows", ", ",
                    grad.size(1), "), got ", mask->sizes());
  TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool || mask->scalar_type() == grad.scalar_type(),
                   op, ": mask must be bool or grad's dtype, got ", mask->scalar_type());
}

// fn(value_t{}) with value_t = int8_t for quantised values, scalar_t otherwise.
template <typename scalar_t, typename Fn>
void dispatch_value(const at::Tensor& val, Fn&& fn) {
  if (val.scalar_type() == at::kChar) fn(int8_t{});
  else fn(scalar_t{});
}

// fn(ptr_t{}) for an int32 / int64 rowptr.
template <typename Fn>
void dispatch_rowptr(const at::Tensor& rowptr, Fn&& fn) {
  if (rowptr.scalar_type() == at::kInt) fn(int32_t{});
  else fn(int64_t{});
}

// fn(ptr_t{}, col_t{}) for an int32 / int64 rowptr and an int16 / int32 col.
template <typename Fn>
void dispatch_csr_index(const at::Tensor& rowptr, const at::Tensor& col, Fn&& fn) {
  dispatch_rowptr(rowptr, [&](auto ptr_tag) {
    if (col.scalar_type() == at::kShort) fn(ptr_tag, int16_t{});
    else fn(ptr_tag, int32_t{});
  });
}

// fn(ptr_t{}, index_t{}) for a per-row sparse table: its rowptr type and, BITMASK, uint8_t
// (bits), else its col type.
template <bool BITMASK, typename Fn>
void dispatch_sparse_table(const at::Tensor& rowptr, const at::Tensor& index, Fn&& fn) {
  if constexpr (BITMASK) dispatch_rowptr(rowptr, [&](auto ptr_tag) { fn(ptr_tag, uint8_t{}); });
  else dispatch_csr_index(rowptr, index, fn);
}

// fn(mask) with mask a const uint8_t* for a bool tensor (read as 0/1 bytes: a byte -> float
// conversion vectorises, a C++ bool one does not), a const scalar_t* for a value mask, and a
// null const absent_t* when there is none.
template <typename scalar_t, typename absent_t = void, typename Fn>
void dispatch_mask(const std::optional<at::Tensor>& mask, Fn&& fn) {
  if (!mask.has_value()) fn(static_cast<const absent_t*>(nullptr));
  else if (mask->scalar_type() == at::kBool) fn(static_cast<const uint8_t*>(mask->data_ptr()));
  else fn(static_cast<const scalar_t*>(mask->data_ptr()));
}

}  // namespace embedding
}  // namespace sparselth
