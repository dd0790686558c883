// CSR SpMM fused with a following sparse linear map on CPU:
//   out (m, out_features) = act(A @ x + bias) @ W^T,  W a CSR (out_features, F).
// A GNN layer's aggregation (A @ x, its bias and ReLU) followed by the next layer's pruned
// transform: each row of act(A @ x + bias) is accumulated in register tiles (spmm_rows.h)
// into a per-thread row buffer of F values (L1/L2), then W's stored entries read it, so the
// (m, F) intermediate is never written to or read back from memory. Rows are split across
// threads by nnz + rows, as in spmm_cpu.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "check.h"
#include "partition.h"
#include "spmm_rows.h"

namespace sparselth {
namespace {

using namespace spmm_rows_detail;

// out_row[j] = sum_{e in W row j} w_val[e] * h[w_col[e]]: the pruned transform of one row.
template <typename scalar_t, typename index_t, bool W_VAL>
inline void sparse_rows_dot(const index_t* w_rowptr, const index_t* w_col, const scalar_t* w_val,
                            int64_t out_features, const scalar_t* h, scalar_t* out_row) {
  for (int64_t j = 0; j < out_features; ++j) {
    scalar_t acc = scalar_t(0);
    for (int64_t e = w_rowptr[j]; e < w_rowptr[j + 1]; ++e)
      acc += (W_VAL ? w_val[e] : scalar_t(1)) * h[w_col[e]];
    out_row[j] = acc;
  }
}

template <typename scalar_t, typename index_t, bool HAS_VAL, bool RELU, bool W_VAL>
void spmm_linear_launch(const at::Tensor& rowptr, const at::Tensor& col,
                        const c10::optional<at::Tensor>& val, const at::Tensor& x,
                        const c10::optional<at::Tensor>& bias, const at::Tensor& w_rowptr,
                        const at::Tensor& w_col, const c10::optional<at::Tensor>& w_val,
                        int64_t num_rows, at::Tensor& out) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  const scalar_t* vp = HAS_VAL ? val->data_ptr<scalar_t>() : nullptr;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
  const index_t* wrp = w_rowptr.data_ptr<index_t>();
  const index_t* wcp = w_col.data_ptr<index_t>();
  const scalar_t* wvp = W_VAL ? w_val->data_ptr<scalar_t>() : nullptr;
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t F = x.size(1);
  const int64_t out_f = out.size(1);
  const int64_t nnz = col.numel();
  const int64_t work = (nnz + num_rows) * F + num_rows * w_col.numel();
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, num_rows));
  const bool prefetch = x.numel() * static_cast<int64_t>(sizeof(scalar_t)) > kPrefetchBytes;
  at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<scalar_t> h(static_cast<size_t>(F));
    for (int64_t c = c_begin; c < c_end; ++c) {
      int64_t r0, r1;
      chunk_rows(rp, num_rows, c, chunks, &r0, &r1);
      for (int64_t i = r0; i < r1; ++i) {
        if (prefetch)
          spmm_row<scalar_t, index_t, HAS_VAL, kNoMask, RELU, true>(
              rp, cp, vp, xp, nullptr, nullptr, bp, i, F, 0, F, nnz, h.data());
        else
          spmm_row<scalar_t, index_t, HAS_VAL, kNoMask, RELU, false>(
              rp, cp, vp, xp, nullptr, nullptr, bp, i, F, 0, F, nnz, h.data());
        sparse_rows_dot<scalar_t, index_t, W_VAL>(wrp, wcp, wvp, out_f, h.data(),
                                                  op + i * out_f);
      }
    }
  });
}

at::Tensor spmm_linear_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                           const c10::optional<at::Tensor>& val, const at::Tensor& x,
                           const c10::optional<at::Tensor>& bias, bool relu,
                           const at::Tensor& w_rowptr, const at::Tensor& w_col,
                           const c10::optional<at::Tensor>& w_val, int64_t num_rows) {
  constexpr const char* op = "spmm_linear";
  check_csr_index(op, rowptr, col, num_rows);
  TORCH_CHECK_VALUE(w_rowptr.dim() == 1 && w_rowptr.numel() >= 1, op,
                    ": w_rowptr must be 1-D with out_features + 1 entries, got ",
                    w_rowptr.sizes());
  const int64_t out_f = w_rowptr.numel() - 1;
  check_csr_index(op, w_rowptr, w_col, out_f);
  TORCH_CHECK_TYPE(w_col.scalar_type() == col.scalar_type(), op,
                   ": A and W must share one index dtype, got ", col.scalar_type(), " and ",
                   w_col.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 2 && x.is_contiguous(), op,
                    ": x must be a contiguous 2-D tensor, got shape ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                   ": x must be float32 or float64 on CPU, got ", x.scalar_type());
  const int64_t F = x.size(1);
  for (const c10::optional<at::Tensor>* t : {&val, &w_val}) {
    if (!t->has_value()) continue;
    TORCH_CHECK_VALUE((*t)->dim() == 1 && (*t)->is_contiguous(), op,
                      ": values must be contiguous and 1-D, got ", (*t)->sizes());
    TORCH_CHECK_TYPE((*t)->scalar_type() == x.scalar_type(), op, ": values dtype ",
                     (*t)->scalar_type(), " differs from x dtype ", x.scalar_type());
  }
  TORCH_CHECK_VALUE(!val.has_value() || val->numel() == col.numel(), op,
                    ": val must have shape (nnz,) = (", col.numel(), ",)");
  TORCH_CHECK_VALUE(!w_val.has_value() || w_val->numel() == w_col.numel(), op,
                    ": w_val must have shape (nnz(W),) = (", w_col.numel(), ",)");
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->numel() == F && bias->is_contiguous(), op,
                      ": bias must have shape (F,) = (", F, ",)");
    TORCH_CHECK_TYPE(bias->scalar_type() == x.scalar_type(), op, ": bias dtype must equal x's");
  }
  for (const at::Tensor* t : {&rowptr, &col, &w_rowptr, &w_col}) {
    check_same_device(op, "index", *t, x);
  }
  TORCH_CHECK_VALUE(x.is_cpu(), op, ": the CPU kernel got tensors on ", x.device());
  at::Tensor out = at::empty({num_rows, out_f}, x.options());
  if (num_rows == 0 || out_f == 0) return out;
  if (F == 0) return out.zero_();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_linear_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "spmm_linear_cpu_index", [&] {
      check_rowptr_ends<index_t>(op, rowptr, col.numel(), num_rows);
      check_rowptr_ends<index_t>(op, w_rowptr, w_col.numel(), out_f);
      index_t lo, hi;   // W is small (a layer's kept weights): its range is checked per call
      min_max<index_t>(w_col.data_ptr<index_t>(), w_col.numel(), &lo, &hi);
      TORCH_CHECK_VALUE(w_col.numel() == 0 || (lo >= 0 && hi < F), op,
                        ": W's columns must lie in [0, F) = [0, ", F, "), got [",
                        static_cast<int64_t>(lo), ", ", static_cast<int64_t>(hi), "]");
      auto go = [&](auto has_val, auto act, auto w_has_val) {
        spmm_linear_launch<scalar_t, index_t, decltype(has_val)::value, decltype(act)::value,
                           decltype(w_has_val)::value>(rowptr, col, val, x, bias, w_rowptr,
                                                       w_col, w_val, num_rows, out);
      };
      auto with_w = [&](auto has_val, auto act) {
        if (w_val.has_value()) go(has_val, act, std::true_type());
        else go(has_val, act, std::false_type());
      };
      auto with_act = [&](auto has_val) {
        if (relu) with_w(has_val, std::true_type());
        else with_w(has_val, std::false_type());
      };
      if (val.has_value()) with_act(std::true_type());
      else with_act(std::false_type());
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("spmm_linear_kernel", &spmm_linear_cpu); }

}  // namespace sparselth
