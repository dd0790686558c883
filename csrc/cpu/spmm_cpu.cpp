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
#include "simd.h"
#include "partition.h"

namespace sparselth {
namespace {

constexpr int64_t kPrefetchDistance = 8;   // entries ahead: covers DRAM latency at ~1 row/10 ns
constexpr int64_t kSerialWork = 1 << 15;   // below this many MACs one thread beats the fork
constexpr int64_t kPrefetchBytes = 1 << 20;  // X larger than this: prefetch gathered rows

enum MaskKind { kNoMask = 0, kBoolMask = 1, kValueMask = 2 };

template <typename scalar_t, int MASK>
struct MaskType { using type = scalar_t; };
template <typename scalar_t>
struct MaskType<scalar_t, kBoolMask> { using type = bool; };

// ReLU epilogue; NaN stays NaN, as with torch.relu.
template <typename scalar_t>
inline scalar_t relu_scalar(scalar_t r) {
  return r < scalar_t(0) ? scalar_t(0) : r;
}

template <typename vec_t>
inline vec_t relu_vec(vec_t r) {
  return r < vec_t{} ? vec_t{} : r;
}

template <typename vec_t, typename scalar_t, typename mask_t>
inline vec_t load_mask(const mask_t* p) {
  if constexpr (std::is_same<mask_t, bool>::value) {
    constexpr int L = sizeof(vec_t) / sizeof(scalar_t);
    vec_t v;
    for (int l = 0; l < L; ++l) v[l] = p[l] ? scalar_t(1) : scalar_t(0);
    return v;
  } else {
    return load_vec<vec_t>(p);
  }
}

// One feature tile [f0, f0 + W) of row i, accumulated in W / L vector registers and
// stored once with the epilogue applied.
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU, int W,
          bool PREFETCH>
inline void row_tile(const index_t* col, const scalar_t* val, int64_t e0, int64_t e1,
                     int64_t nnz, const scalar_t* x,
                     const typename MaskType<scalar_t, MASK>::type* mask, int64_t F, int64_t f0,
                     scalar_t scale, const scalar_t* bias, scalar_t* out_row) {
  constexpr int kBytes = W * sizeof(scalar_t) < 64 ? W * sizeof(scalar_t) : 64;
  using vec_t = typename Simd<scalar_t, kBytes>::type;
  constexpr int L = sizeof(vec_t) / sizeof(scalar_t);
  static_assert(W % L == 0, "a register tile is whole vectors");
  constexpr int NV = W / L;
  vec_t acc[NV];
  for (int k = 0; k < NV; ++k) acc[k] = vec_t{} ;
  for (int64_t e = e0; e < e1; ++e) {
    if (PREFETCH && e + kPrefetchDistance < nnz) {
      const scalar_t* ahead = x + static_cast<int64_t>(col[e + kPrefetchDistance]) * F + f0;
      for (int l = 0; l < W * (int)sizeof(scalar_t); l += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + l, 0, 1);
      }
    }
    const int64_t off = static_cast<int64_t>(col[e]) * F + f0;
    const scalar_t* xr = x + off;
    const vec_t v = vec_t{} + (HAS_VAL ? val[e] : scalar_t(1));
    for (int k = 0; k < NV; ++k) {
      vec_t xv = load_vec<vec_t>(xr + k * L);
      if constexpr (MASK != kNoMask) xv *= load_mask<vec_t, scalar_t>(mask + off + k * L);
      acc[k] += v * xv;
    }
  }
  const vec_t sv = vec_t{} + scale;
  for (int k = 0; k < NV; ++k) {
    vec_t r = acc[k] * sv;
    if (bias != nullptr) r += load_vec<vec_t>(bias + f0 + k * L);
    if constexpr (RELU) r = relu_vec(r);
    std::memcpy(out_row + f0 + k * L, &r, sizeof(vec_t));
  }
}

// The last tile of fewer than the smallest register tile: accumulate in the output row.
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU>
inline void row_rest(const index_t* col, const scalar_t* val, int64_t e0, int64_t e1,
                     const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
                     int64_t F, int64_t f0, int64_t f1, scalar_t scale, const scalar_t* bias,
                     scalar_t* out_row) {
  for (int64_t f = f0; f < f1; ++f) out_row[f] = scalar_t(0);
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t off = static_cast<int64_t>(col[e]) * F;
    const scalar_t v = HAS_VAL ? val[e] : scalar_t(1);
    for (int64_t f = f0; f < f1; ++f) {
      scalar_t xv = x[off + f];
      if constexpr (MASK != kNoMask) xv *= static_cast<scalar_t>(mask[off + f]);
      out_row[f] += v * xv;
    }
  }
  for (int64_t f = f0; f < f1; ++f) {
    const scalar_t r = out_row[f] * scale + (bias != nullptr ? bias[f] : scalar_t(0));
    out_row[f] = RELU ? relu_scalar(r) : r;
  }
}

// Rows [row_begin, row_end) over features [fa, fb): register tiles of 256, 128, 64 and 32
// bytes, then the rest accumulates in the output row.
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU, bool PREFETCH>
void spmm_rows(const index_t* rowptr, const index_t* col, const scalar_t* val,
               const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
               const scalar_t* row_scale, const scalar_t* bias, int64_t row_begin,
               int64_t row_end, int64_t F, int64_t fa, int64_t fb, int64_t nnz, scalar_t* out) {
  constexpr int W0 = 256 / sizeof(scalar_t);
  constexpr int W1 = W0 / 2, W2 = W0 / 4, W3 = W0 / 8;
  if (F == 1) {  // SpMV (e.g. batch-1 sparse linear): a gather-dot per row, vectorisable
    for (int64_t i = row_begin; i < row_end; ++i) {
      scalar_t acc = scalar_t(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
        const int64_t j = col[e];
        scalar_t xv = x[j];
        if constexpr (MASK != kNoMask) xv *= static_cast<scalar_t>(mask[j]);
        acc += (HAS_VAL ? val[e] : scalar_t(1)) * xv;
      }
      const scalar_t r = acc * (row_scale != nullptr ? row_scale[i] : scalar_t(1)) +
                         (bias != nullptr ? bias[0] : scalar_t(0));
      out[i] = RELU ? relu_scalar(r) : r;
    }
    return;
  }
  for (int64_t i = row_begin; i < row_end; ++i) {
    const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
    const scalar_t scale = row_scale != nullptr ? row_scale[i] : scalar_t(1);
    scalar_t* out_row = out + i * F;
    int64_t f0 = fa;
    auto tile = [&](auto width) {
      constexpr int W = decltype(width)::value;
      row_tile<scalar_t, index_t, HAS_VAL, MASK, RELU, W, PREFETCH>(col, val, e0, e1, nnz, x, mask,
                                                                     F, f0, scale, bias, out_row);
      f0 += W;
    };
    while (f0 + W0 <= fb) tile(std::integral_constant<int, W0>());
    if (f0 + W1 <= fb) tile(std::integral_constant<int, W1>());
    if (f0 + W2 <= fb) tile(std::integral_constant<int, W2>());
    if (f0 + W3 <= fb) tile(std::integral_constant<int, W3>());
    if (f0 < fb)
      row_rest<scalar_t, index_t, HAS_VAL, MASK, RELU>(col, val, e0, e1, x, mask, F, f0, fb,
                                                       scale, bias, out_row);
  }
}

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
  at::Tensor out = at::empty({num_rows, F}, x.options());
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
