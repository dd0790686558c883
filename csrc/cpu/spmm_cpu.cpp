// CSR SpMM on CPU: out = act(row_scale * (A @ (x * x_mask)) + bias), act = ReLU or identity.
// Rows are split across threads by nnz + rows (balanced on power-law degrees); each row is
// accumulated over feature tiles held in registers (vectorised over F), X rows are prefetched
// a few entries ahead, and the epilogue (row scale, bias, ReLU) is fused into the single store.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>

#include "check.h"
#include "alloc.h"
#include "partition.h"
#include "spmm_rows.h"

namespace sparselth {
namespace {

using namespace spmm_rows_detail;

template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU>
void spmm_launch(const at::Tensor& rowptr, const at::Tensor& col,
                 const c10::optional<at::Tensor>& val, const at::Tensor& x,
                 const c10::optional<at::Tensor>& x_mask,
                 const c10::optional<at::Tensor>& row_scale,
                 const c10::optional<at::Tensor>& bias, int64_t num_rows, at::Tensor& out) {
  using mask_t = typename MaskType<scalar_t, MASK>::type;
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  const scalar_t* vp = HAS_VAL ? val->data_ptr<scalar_t>() : nullptr;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const mask_t* mp = MASK != kNoMask ? x_mask->data_ptr<mask_t>() : nullptr;
  const scalar_t* sp = row_scale.has_value() ? row_scale->data_ptr<scalar_t>() : nullptr;
  const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t F = x.size(1);
  const int64_t nnz = col.numel();
  const int64_t work = (nnz + num_rows) * std::max<int64_t>(F, 1);
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, num_rows));
  // Software prefetch pays only when the gathered rows of X come from beyond the L2 cache.
  const bool prefetch = x.numel() * static_cast<int64_t>(sizeof(scalar_t)) > kPrefetchBytes;
  // Whole rows of X per gathered entry: measured faster than feature tiling (cache-sized
  // column blocks of X, several passes over the structure) on power-law graphs here.
  at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      int64_t r0, r1;
      chunk_rows(rp, num_rows, c, chunks, &r0, &r1);
      if (prefetch)
        spmm_rows<scalar_t, index_t, HAS_VAL, MASK, RELU, true>(rp, cp, vp, xp, mp, sp, bp, r0,
                                                                r1, F, 0, F, nnz, op);
      else
        spmm_rows<scalar_t, index_t, HAS_VAL, MASK, RELU, false>(rp, cp, vp, xp, mp, sp, bp, r0,
                                                                 r1, F, 0, F, nnz, op);
    }
  });
}

#define SPMM_ARGS rowptr, col, val, x, x_mask, row_scale, bias, num_rows, out

at::Tensor spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                    const c10::optional<at::Tensor>& val, const at::Tensor& x,
                    const c10::optional<at::Tensor>& x_mask,
                    const c10::optional<at::Tensor>& row_scale,
                    const c10::optional<at::Tensor>& bias, int64_t num_rows, bool relu) {
  constexpr const char* op = "spmm";
  check_csr_index(op, rowptr, col, num_rows);
  TORCH_CHECK_VALUE(x.dim() == 2 && x.is_contiguous(), op,
                    ": x must be a contiguous 2-D tensor, got shape ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                   ": x must be float32 or float64 on CPU, got ", x.scalar_type());
  const int64_t F = x.size(1);
  if (val.has_value()) {
    TORCH_CHECK_VALUE(val->dim() == 1 && val->numel() == col.numel() && val->is_contiguous(),
                      op, ": val must be contiguous with shape (nnz,) = (", col.numel(),
                      ",), got ", val->sizes());
    TORCH_CHECK_TYPE(val->scalar_type() == x.scalar_type(), op, ": val dtype ",
                     val->scalar_type(), " differs from x dtype ", x.scalar_type());
  }
  if (x_mask.has_value()) {
    TORCH_CHECK_VALUE(x_mask->sizes() == x.sizes() && x_mask->is_contiguous(), op,
                      ": x_mask must be contiguous with x's shape ", x.sizes(), ", got ",
                      x_mask->sizes());
    TORCH_CHECK_TYPE(x_mask->scalar_type() == at::kBool ||
                         x_mask->scalar_type() == x.scalar_type(),
                     op, ": x_mask must be bool or x's dtype, got ", x_mask->scalar_type());
  }
  if (row_scale.has_value()) {
    TORCH_CHECK_VALUE(row_scale->dim() == 1 && row_scale->numel() == num_rows &&
                          row_scale->is_contiguous(),
                      op, ": row_scale must have shape (num_rows,) = (", num_rows, ",)");
    TORCH_CHECK_TYPE(row_scale->scalar_type() == x.scalar_type(), op,
                     ": row_scale dtype must equal x's");
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->numel() == F && bias->is_contiguous(), op,
                      ": bias must have shape (F,) = (", F, ",)");
    TORCH_CHECK_TYPE(bias->scalar_type() == x.scalar_type(), op, ": bias dtype must equal x's");
  }
  for (const at::Tensor* t : {&rowptr, &col}) check_same_device(op, "index", *t, x);
  TORCH_CHECK_VALUE(rowptr.is_cpu(), op, ": the CPU kernel got tensors on ", rowptr.device());
  at::Tensor out = empty_large({num_rows, F}, x.scalar_type());
  if (num_rows == 0 || F == 0) return out;
  const bool has_val = val.has_value();
  const int mask_kind = !x_mask.has_value()                 ? kNoMask
                        : x_mask->scalar_type() == at::kBool ? kBoolMask
                                                             : kValueMask;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "spmm_cpu_index", [&] {
      check_rowptr_ends<index_t>(op, rowptr, col.numel(), num_rows);
      auto go = [&](auto has_val, auto mask, auto act) {
        spmm_launch<scalar_t, index_t, decltype(has_val)::value, decltype(mask)::value,
                    decltype(act)::value>(SPMM_ARGS);
      };
      auto with_mask = [&](auto has_val, auto act) {
        if (mask_kind == kNoMask) go(has_val, std::integral_constant<int, kNoMask>(), act);
        else if (mask_kind == kBoolMask) go(has_val, std::integral_constant<int, kBoolMask>(), act);
        else go(has_val, std::integral_constant<int, kValueMask>(), act);
      };
      auto with_act = [&](auto has_val) {
        if (relu) with_mask(has_val, std::true_type());
        else with_mask(has_val, std::false_type());
      };
      if (has_val) with_act(std::true_type());
      else with_act(std::false_type());
    });
  });
  return out;
}
#undef SPMM_ARGS

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("spmm_kernel", &spmm_cpu); }

}  // namespace sparselth
