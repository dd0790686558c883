// The row kernel of the CSR SpMM on CPU, shared by spmm_cpu.cpp and spmm_linear_cpu.cpp:
// row i of act(row_scale * (A @ (x * x_mask)) + bias) over features [fa, fb), accumulated
// in register tiles of 256, 128, 64 and 32 bytes (vectorised over F) with the epilogue fused
// into the single store; gathered rows of x are prefetched a few entries ahead.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simd.h"

namespace sparselth {
namespace spmm_rows_detail {

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

// The last N (< the smallest register tile) features [f0, f0 + N): N accumulators whose
// count is known at compile time, so they live in registers (an accumulation in the output
// row measured 4x slower at F = 7: each entry's adds waited on the previous entry's stores).
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU, int N>
inline void row_rest_n(const index_t* col, const scalar_t* val, int64_t e0, int64_t e1,
                       const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
                       int64_t F, int64_t f0, scalar_t scale, const scalar_t* bias,
                       scalar_t* out_row) {
  scalar_t acc[N];
  for (int f = 0; f < N; ++f) acc[f] = scalar_t(0);
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t off = static_cast<int64_t>(col[e]) * F + f0;
    const scalar_t v = HAS_VAL ? val[e] : scalar_t(1);
    for (int f = 0; f < N; ++f) {
      scalar_t xv = x[off + f];
      if constexpr (MASK != kNoMask) xv *= static_cast<scalar_t>(mask[off + f]);
      acc[f] += v * xv;
    }
  }
  for (int f = 0; f < N; ++f) {
    const scalar_t r = acc[f] * scale + (bias != nullptr ? bias[f0 + f] : scalar_t(0));
    out_row[f0 + f] = RELU ? relu_scalar(r) : r;
  }
}

// The last f1 - f0 features, fewer than the smallest register tile (32 bytes).
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU>
inline void row_rest(const index_t* col, const scalar_t* val, int64_t e0, int64_t e1,
                     const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
                     int64_t F, int64_t f0, int64_t f1, scalar_t scale, const scalar_t* bias,
                     scalar_t* out_row) {
  constexpr int kMax = 32 / sizeof(scalar_t);   // f1 - f0 < kMax
  auto run = [&](auto n) {
    constexpr int N = decltype(n)::value;
    if constexpr (N < kMax)
      row_rest_n<scalar_t, index_t, HAS_VAL, MASK, RELU, N>(col, val, e0, e1, x, mask, F, f0,
                                                            scale, bias, out_row);
  };
  switch (f1 - f0) {
    case 1: run(std::integral_constant<int, 1>()); break;
    case 2: run(std::integral_constant<int, 2>()); break;
    case 3: run(std::integral_constant<int, 3>()); break;
    case 4: run(std::integral_constant<int, 4>()); break;
    case 5: run(std::integral_constant<int, 5>()); break;
    case 6: run(std::integral_constant<int, 6>()); break;
    case 7: run(std::integral_constant<int, 7>()); break;
    default: break;
  }
  static_assert(32 / sizeof(float) == 8, "the cases above cover every rest of a float tile");
}

// Row i over features [fa, fb) into out_row (F >= 2): register tiles of 256, 128, 64 and 32
// bytes, then the rest accumulates in the output row.
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU, bool PREFETCH>
inline void spmm_row(const index_t* rowptr, const index_t* col, const scalar_t* val,
                     const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
                     const scalar_t* row_scale, const scalar_t* bias, int64_t i, int64_t F,
                     int64_t fa, int64_t fb, int64_t nnz, scalar_t* out_row) {
  constexpr int W0 = 256 / sizeof(scalar_t);
  constexpr int W1 = W0 / 2, W2 = W0 / 4, W3 = W0 / 8;
  const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
  const scalar_t scale = row_scale != nullptr ? row_scale[i] : scalar_t(1);
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
    row_rest<scalar_t, index_t, HAS_VAL, MASK, RELU>(col, val, e0, e1, x, mask, F, f0, fb, scale,
                                                     bias, out_row);
}

// Rows [row_begin, row_end) over features [fa, fb), each into its row of out (m, F).
template <typename scalar_t, typename index_t, bool HAS_VAL, int MASK, bool RELU, bool PREFETCH>
void spmm_rows(const index_t* rowptr, const index_t* col, const scalar_t* val,
               const scalar_t* x, const typename MaskType<scalar_t, MASK>::type* mask,
               const scalar_t* row_scale, const scalar_t* bias, int64_t row_begin,
               int64_t row_end, int64_t F, int64_t fa, int64_t fb, int64_t nnz, scalar_t* out) {
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
    spmm_row<scalar_t, index_t, HAS_VAL, MASK, RELU, PREFETCH>(rowptr, col, val, x, mask,
                                                                row_scale, bias, i, F, fa, fb,
                                                                nnz, out + i * F);
  }
}

}  // namespace spmm_rows_detail
}  // namespace sparselth
