// Shifted-window sparse products on CPU (schemas in csrc/ops.cpp): the direct (no im2col)
// sparse convolution, its gradients, and the sparse linear layer as the special case with no
// shifts (sparselth/ops/shifted.py wraps them with autograd).
//
// A sparse weight is a CSR over output rows (output channels) whose stored entries each name
// a source block `blk` (an input channel, times a stride phase) and a shift `koff` (a kernel
// tap) into that block:
//
//   shifted_spmm:  out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q]
//   shifted_sddmm: dval[e]      = sum_n sum_{q < Q} a[n, row(e), q] * src[n, blk[e], koff[e] + q]
//
// When src is the zero-padded (for stride > 1, polyphase-split) input laid out on the output's
// "wide" grid (sparselth/ops/sparse_conv.py builds it), the first is a direct convolution: each
// stored weight adds one shifted input window to a register tile of the output plane, so a
// 3x3 conv reads its input ~once instead of materialising a 9x im2col copy. The second is the
// weight gradient; the input gradient is shifted_spmm again on the transposed structure.
// koff = None means all shifts are 0: out = W @ src[n] per sample, i.e. an SpMM (sparse linear).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <type_traits>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "check.h"
#include "partition.h"

namespace sparselth {
namespace {

constexpr int64_t kPrefetchAhead = 4;     // entries ahead whose source window is prefetched
constexpr int64_t kSerialWork = 1 << 18;  // MACs below which one thread beats the fork
// Output tile kept in registers: 16 of the 32 zmm registers with AVX-512, 8 of 16 ymm otherwise
// (more would spill; fewer leave the per-entry index and value loads unamortised).
#if defined(__AVX512F__)
constexpr int64_t kTileBytes = 1024;
#else
constexpr int64_t kTileBytes = 256;
#endif

// Where a row's results go: position q of the wide grid (rows of `wide` positions) lands at
// out_row[(q / wide) * cols + q % wide] when q % wide < cols; the wide grid's extra columns
// (the kernel's reach) are dropped, so the output needs no copy to its final layout.
template <typename scalar_t>
struct RowStore {
  scalar_t* out_row;
  int64_t wide, cols;
  scalar_t b;

  inline void put(int64_t q0, const scalar_t* acc, int64_t w) const {
    if (wide == cols) {
#pragma omp simd
      for (int64_t t = 0; t < w; ++t) out_row[q0 + t] = acc[t] + b;
      return;
    }
    int64_t q = q0;
    const int64_t end = q0 + w;
    while (q < end) {
      const int64_t y = q / wide, x = q - y * wide;
      const int64_t row_end = std::min(end, q - x + wide);
      const int64_t stop = std::min(row_end, q - x + cols);
      scalar_t* dst = out_row + y * cols + x;
      const scalar_t* a = acc + (q - q0);
#pragma omp simd
      for (int64_t t = 0; t < stop - q; ++t) dst[t] = a[t] + b;
      q = row_end;
    }
  }

};

// Positions [q0, q0 + W): b + sum_e val[e] * src[off(e) + q0 + t] in W register accumulators.
template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF, int W>
inline void gather_tile(const index_t* blk, const index_t* koff, const scalar_t* val,
                        int64_t e0, int64_t e1, const scalar_t* src, int64_t Ls, int64_t q0,
                        const RowStore<scalar_t>& store) {
  static_assert(W > 0 && (W & (W - 1)) == 0, "tile width is a power of two");
  scalar_t acc[W];
  for (int t = 0; t < W; ++t) acc[t] = scalar_t(0);
  for (int64_t e = e0; e < e1; ++e) {
    if (e + kPrefetchAhead < e1) {
      const int64_t pe = e + kPrefetchAhead;
      const scalar_t* ahead =
          src + static_cast<int64_t>(blk[pe]) * Ls + (HAS_KOFF ? static_cast<int64_t>(koff[pe]) : 0) + q0;
      for (int l = 0; l < W * static_cast<int>(sizeof(scalar_t)); l += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + l, 0, 3);
    }
    const scalar_t* s =
        src + static_cast<int64_t>(blk[e]) * Ls + (HAS_KOFF ? static_cast<int64_t>(koff[e]) : 0) + q0;
    const scalar_t v = HAS_VAL ? val[e] : scalar_t(1);
#pragma omp simd
    for (int t = 0; t < W; ++t) acc[t] += v * s[t];
  }
  store.put(q0, acc, W);
}

#if defined(__AVX512F__) || defined(__AVX2__)
// sum_e val[e] * x[blk[e]] for float32 values and int32 indices with hardware gathers, two
// independent accumulators (the compiler's own vectorisation of this loop is ~2x slower).
template <bool HAS_VAL>
inline float gather_dot_f32(const int32_t* blk, const float* val, int64_t e0, int64_t e1,
                            const float* x) {
  int64_t e = e0;
  float total = 0.f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.f);
  for (; e + 32 <= e1; e += 32) {
    const __m512 g0 = _mm512_i32gather_ps(_mm512_loadu_si512(blk + e), x, 4);
    const __m512 g1 = _mm512_i32gather_ps(_mm512_loadu_si512(blk + e + 16), x, 4);
    a0 = _mm512_fmadd_ps(HAS_VAL ? _mm512_loadu_ps(val + e) : one, g0, a0);
    a1 = _mm512_fmadd_ps(HAS_VAL ? _mm512_loadu_ps(val + e + 16) : one, g1, a1);
  }
  for (; e < e1; e += 16) {
    const __mmask16 m = e1 - e >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (e1 - e)) - 1);
    const __m512i idx = _mm512_maskz_loadu_epi32(m, blk + e);
    const __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4);
    a0 = _mm512_fmadd_ps(HAS_VAL ? _mm512_maskz_loadu_ps(m, val + e) : one, g, a0);
  }
  total = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  const __m256 one = _mm256_set1_ps(1.f);
  for (; e + 16 <= e1; e += 16) {
    const __m256 g0 = _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + e)), 4);
    const __m256 g1 = _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + e + 8)), 4);
    a0 = _mm256_fmadd_ps(HAS_VAL ? _mm256_loadu_ps(val + e) : one, g0, a0);
    a1 = _mm256_fmadd_ps(HAS_VAL ? _mm256_loadu_ps(val + e + 8) : one, g1, a1);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(a0, a1));
  for (int k = 0; k < 8; ++k) total += t[k];
  for (; e < e1; ++e) total += (HAS_VAL ? val[e] : 1.f) * x[blk[e]];
#endif
  return total;
}
#endif

// One output position (a linear layer at batch 1, or a column of a narrow tile): a gathered
// dot product over the row's entries, vectorised across entries with independent
// accumulators (a single one would serialise on the add latency).
template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF>
inline scalar_t gather_dot(const index_t* blk, const index_t* koff, const scalar_t* val,
                           int64_t e0, int64_t e1, const scalar_t* src, int64_t Ls) {
#if defined(__AVX512F__) || defined(__AVX2__)
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<index_t, int32_t> && !HAS_KOFF) {
    if (Ls == 1) return gather_dot_f32<HAS_VAL>(blk, val, e0, e1, src);
  }
#endif
  constexpr int V = 128 / sizeof(scalar_t);  // two vectors of lanes
  scalar_t acc[V];
  for (int t = 0; t < V; ++t) acc[t] = scalar_t(0);
  int64_t e = e0;
  if (Ls == 1 && !HAS_KOFF) {
    for (; e + V <= e1; e += V) {
#pragma omp simd
      for (int t = 0; t < V; ++t) acc[t] += (HAS_VAL ? val[e + t] : scalar_t(1)) * src[blk[e + t]];
    }
  } else {
    for (; e + V <= e1; e += V) {
#pragma omp simd
      for (int t = 0; t < V; ++t) {
        const int64_t o = static_cast<int64_t>(blk[e + t]) * Ls +
                          (HAS_KOFF ? static_cast<int64_t>(koff[e + t]) : 0);
        acc[t] += (HAS_VAL ? val[e + t] : scalar_t(1)) * src[o];
      }
    }
  }
  scalar_t total = scalar_t(0);
  for (; e < e1; ++e) {
    const int64_t o = static_cast<int64_t>(blk[e]) * Ls + (HAS_KOFF ? static_cast<int64_t>(koff[e]) : 0);
    total += (HAS_VAL ? val[e] : scalar_t(1)) * src[o];
  }
  for (int t = 0; t < V; ++t) total += acc[t];
  return total;
}

// Fewer positions than the smallest vector tile: one gathered dot product per position.
template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF>
inline void gather_rest(const index_t* blk, const index_t* koff, const scalar_t* val, int64_t e0,
                        int64_t e1, const scalar_t* src, int64_t Ls, int64_t q0, int64_t q1,
                        const RowStore<scalar_t>& store) {
  constexpr int kMax = 32 / sizeof(scalar_t);
  scalar_t acc[kMax];
  const int64_t w = q1 - q0;  // < kMax
  for (int64_t t = 0; t < w; ++t)
    acc[t] = gather_dot<scalar_t, index_t, HAS_VAL, HAS_KOFF>(blk, koff, val, e0, e1,
                                                              src + q0 + t, Ls);
  store.put(q0, acc, w);
}

// Positions [q0, qb) of one row, W at a time, then halving down to 32-byte tiles; what is left
// (fewer than 32 bytes) goes position by position as gathered dot products.
template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF, int W>
inline void gather_tiles(const index_t* blk, const index_t* koff, const scalar_t* val, int64_t e0,
                         int64_t e1, const scalar_t* src, int64_t Ls, int64_t q0, int64_t qb,
                         const RowStore<scalar_t>& store) {
  if constexpr (W * sizeof(scalar_t) >= 32) {
    for (; q0 + W <= qb; q0 += W)
      gather_tile<scalar_t, index_t, HAS_VAL, HAS_KOFF, W>(blk, koff, val, e0, e1, src, Ls, q0, store);
    gather_tiles<scalar_t, index_t, HAS_VAL, HAS_KOFF, W / 2>(blk, koff, val, e0, e1, src, Ls, q0,
                                                              qb, store);
  } else if (q0 < qb) {
    gather_rest<scalar_t, index_t, HAS_VAL, HAS_KOFF>(blk, koff, val, e0, e1, src, Ls, q0, qb, store);
  }
}

template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF>
inline void gather_row(const index_t* blk, const index_t* koff, const scalar_t* val, int64_t e0,
                       int64_t e1, const scalar_t* src, int64_t Ls, int64_t qa, int64_t qb,
                       const RowStore<scalar_t>& store) {
  constexpr int W0 = kTileBytes / sizeof(scalar_t);
  gather_tiles<scalar_t, index_t, HAS_VAL, HAS_KOFF, W0>(blk, koff, val, e0, e1, src, Ls, qa, qb, store);
}

template <typename scalar_t, typename index_t, bool HAS_VAL, bool HAS_KOFF>
void shifted_spmm_launch(const at::Tensor& rowptr, const at::Tensor& blk,
                         const c10::optional<at::Tensor>& koff,
                         const c10::optional<at::Tensor>& val, const at::Tensor& src,
                         const c10::optional<at::Tensor>& bias, int64_t R, int64_t Q,
                         int64_t wide, int64_t cols, at::Tensor& out) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* bp = blk.data_ptr<index_t>();
  const index_t* kp = HAS_KOFF ? koff->data_ptr<index_t>() : nullptr;
  const scalar_t* vp = HAS_VAL ? val->data_ptr<scalar_t>() : nullptr;
  const scalar_t* biasp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
  const scalar_t* sp = src.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t N = src.size(0), C = src.size(1), Ls = src.size(2);
  const int64_t nnz = blk.numel();
  const int64_t out_len = Q / wide * cols;
  // Work items: (sample, output tile, row chunk), handed out dynamically.
  const int64_t tile = kTileBytes / static_cast<int64_t>(sizeof(scalar_t));
  const int64_t n_tiles = (Q + tile - 1) / tile;
  const int64_t work = (nnz + R) * std::max<int64_t>(Q, 1) * N;
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t outer = N * n_tiles;
  int64_t chunks = 1;
  if (outer < 4 * threads)
    chunks = std::min<int64_t>(std::max<int64_t>(R, 1), (4 * threads + outer - 1) / outer);
  const int64_t items = outer * chunks;
  parallel_items(items, threads, [&](int64_t it) {
    const int64_t n = it / (n_tiles * chunks);
    const int64_t rest = it % (n_tiles * chunks);
    const int64_t qt = rest / chunks, c = rest % chunks;
    int64_t r0, r1;
    chunk_rows(rp, R, c, chunks, &r0, &r1);
    const int64_t qa = qt * tile, qb = std::min(Q, qa + tile);
    const scalar_t* src_n = sp + n * C * Ls;
    for (int64_t r = r0; r < r1; ++r) {
      const RowStore<scalar_t> store{op + (n * R + r) * out_len, wide, cols,
                                     biasp != nullptr ? biasp[r] : scalar_t(0)};
      gather_row<scalar_t, index_t, HAS_VAL, HAS_KOFF>(bp, kp, vp, rp[r], rp[r + 1], src_n, Ls, qa,
                                                       qb, store);
    }
  });
}

// Checks shared by both kernels; returns nothing, throws ValueError/TypeError naming the input.
template <typename index_t>
void check_structure(const char* op, const at::Tensor& rowptr, const at::Tensor& blk,
                     const c10::optional<at::Tensor>& koff, int64_t R, int64_t C, int64_t Ls,
                     int64_t Q) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const int64_t nnz = blk.numel();
  TORCH_CHECK_VALUE(rp[0] == 0 && static_cast<int64_t>(rp[R]) == nnz, op,
                    ": rowptr must start at 0 and end at nnz = ", nnz, ", got ",
                    static_cast<int64_t>(rp[0]), " and ", static_cast<int64_t>(rp[R]));
  bool sorted = true;
  for (int64_t r = 0; r < R; ++r) sorted &= rp[r] <= rp[r + 1];
  TORCH_CHECK_VALUE(sorted, op, ": rowptr must be non-decreasing");
  const index_t* bp = blk.data_ptr<index_t>();
  index_t bmin = 0, bmax = 0;
  min_max(bp, nnz, &bmin, &bmax);
  TORCH_CHECK_VALUE(nnz == 0 || (bmin >= 0 && static_cast<int64_t>(bmax) < C), op,
                    ": blk must lie in [0, ", C, ") (src.size(1)), got min ",
                    static_cast<int64_t>(bmin), " max ", static_cast<int64_t>(bmax));
  if (koff.has_value() && nnz > 0) {
    index_t kmin = 0, kmax = 0;
    min_max(koff->data_ptr<index_t>(), nnz, &kmin, &kmax);
    TORCH_CHECK_VALUE(kmin >= 0 && static_cast<int64_t>(kmax) + Q <= Ls, op,
                      ": koff must lie in [0, src.size(2) - q] = [0, ", Ls - Q, "], got min ",
                      static_cast<int64_t>(kmin), " max ", static_cast<int64_t>(kmax));
  } else {
    TORCH_CHECK_VALUE(Q <= Ls, op, ": q = ", Q, " exceeds src.size(2) = ", Ls);
  }
}

void check_common(const char* op, const at::Tensor& rowptr, const at::Tensor& blk,
                  const c10::optional<at::Tensor>& koff, const at::Tensor& src, int64_t R) {
  check_csr_index(op, rowptr, blk, R);
  TORCH_CHECK_VALUE(src.dim() == 3 && src.is_contiguous(), op,
                    ": src must be a contiguous 3-D tensor (N, blocks, length), got shape ",
                    src.sizes());
  TORCH_CHECK_TYPE(src.scalar_type() == at::kFloat || src.scalar_type() == at::kDouble, op,
                   ": src must be float32 or float64 on CPU, got ", src.scalar_type());
  TORCH_CHECK_VALUE(rowptr.is_cpu() && src.is_cpu(), op, ": the CPU kernel got tensors on ",
                    rowptr.device(), " and ", src.device());
  if (koff.has_value()) {
    TORCH_CHECK_VALUE(koff->dim() == 1 && koff->numel() == blk.numel() && koff->is_contiguous(),
                      op, ": koff must be contiguous with shape (nnz,) = (", blk.numel(), ",)");
    TORCH_CHECK_TYPE(koff->scalar_type() == blk.scalar_type(), op,
                     ": koff must have the index dtype of blk, got ", koff->scalar_type());
    check_same_device(op, "koff", *koff, src);
  }
  check_same_device(op, "rowptr", rowptr, src);
  check_same_device(op, "blk", blk, src);
}

#define SHIFTED_SPMM_LAUNCH(V, K)                                                          \
  shifted_spmm_launch<scalar_t, index_t, V, K>(rowptr, blk, koff, val, src, bias, num_rows, q, \
                                               wide, cols, out)

at::Tensor shifted_spmm_cpu(const at::Tensor& rowptr, const at::Tensor& blk,
                            const c10::optional<at::Tensor>& koff,
                            const c10::optional<at::Tensor>& val, const at::Tensor& src,
                            const c10::optional<at::Tensor>& bias, int64_t num_rows, int64_t q,
                            int64_t wide, int64_t cols) {
  constexpr const char* op = "shifted_spmm";
  TORCH_CHECK_VALUE(num_rows >= 0 && q >= 0, op, ": num_rows and q must be >= 0, got ",
                    num_rows, " and ", q);
  TORCH_CHECK_VALUE(wide >= 1 && cols >= 1 && cols <= wide && q % wide == 0, op,
                    ": need 1 <= cols <= wide and q a multiple of wide, got q = ", q,
                    ", wide = ", wide, ", cols = ", cols);
  check_common(op, rowptr, blk, koff, src, num_rows);
  if (val.has_value()) {
    TORCH_CHECK_VALUE(val->dim() == 1 && val->numel() == blk.numel() && val->is_contiguous(), op,
                      ": val must be contiguous with shape (nnz,) = (", blk.numel(), ",), got ",
                      val->sizes());
    TORCH_CHECK_TYPE(val->scalar_type() == src.scalar_type(), op, ": val dtype ",
                     val->scalar_type(), " differs from src dtype ", src.scalar_type());
    check_same_device(op, "val", *val, src);
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->numel() == num_rows && bias->is_contiguous(), op,
                      ": bias must have shape (num_rows,) = (", num_rows, ",)");
    TORCH_CHECK_TYPE(bias->scalar_type() == src.scalar_type(), op,
                     ": bias dtype must equal src's");
    check_same_device(op, "bias", *bias, src);
  }
  at::Tensor out = at::empty({src.size(0), num_rows, q / wide * cols}, src.options());
  const bool has_val = val.has_value(), has_koff = koff.has_value();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "shifted_spmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(blk.scalar_type(), "shifted_spmm_cpu_index", [&] {
      check_structure<index_t>(op, rowptr, blk, koff, num_rows, src.size(1), src.size(2), q);
      if (out.numel() == 0) return;
      if (has_val && has_koff) SHIFTED_SPMM_LAUNCH(true, true);
      else if (has_val) SHIFTED_SPMM_LAUNCH(true, false);
      else if (has_koff) SHIFTED_SPMM_LAUNCH(false, true);
      else SHIFTED_SPMM_LAUNCH(false, false);
    });
  });
  return out;
}
#undef SHIFTED_SPMM_LAUNCH

// sum_{q < Q} a[q] * s[q] with W independent accumulators (hides the FMA latency).
template <typename scalar_t>
inline scalar_t window_dot(const scalar_t* a, const scalar_t* s, int64_t Q) {
  constexpr int W = 256 / sizeof(scalar_t);
  scalar_t acc[W];
  for (int t = 0; t < W; ++t) acc[t] = scalar_t(0);
  int64_t q = 0;
  for (; q + W <= Q; q += W) {
#pragma omp simd
    for (int t = 0; t < W; ++t) acc[t] += a[q + t] * s[q + t];
  }
  scalar_t tail = scalar_t(0);
  for (; q < Q; ++q) tail += a[q] * s[q];
  scalar_t total = scalar_t(0);
#pragma omp simd reduction(+ : total)
  for (int t = 0; t < W; ++t) total += acc[t];
  return total + tail;
}

template <typename scalar_t, typename index_t, bool HAS_KOFF>
void shifted_sddmm_launch(const at::Tensor& rowptr, const at::Tensor& blk,
                          const c10::optional<at::Tensor>& koff, const at::Tensor& a,
                          const at::Tensor& src, at::Tensor& out) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* bp = blk.data_ptr<index_t>();
  const index_t* kp = HAS_KOFF ? koff->data_ptr<index_t>() : nullptr;
  const scalar_t* ap = a.data_ptr<scalar_t>();
  const scalar_t* sp = src.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t N = src.size(0), C = src.size(1), Ls = src.size(2);
  const int64_t R = a.size(1), Q = a.size(2);
  const int64_t nnz = blk.numel();
  const int64_t work = nnz * std::max<int64_t>(Q, 1) * N;
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads == 1 ? 1 : 2 * threads, R));
  // A chunk is a balanced range of rows (so of entries: no write conflicts); its thread walks
  // the samples in order, so one sample's source stays in cache across the chunk's rows.
  parallel_items(chunks, threads, [&](int64_t c) {
    int64_t r0, r1;
    chunk_rows(rp, R, c, chunks, &r0, &r1);
    for (int64_t e = rp[r0]; e < rp[r1]; ++e) op[e] = scalar_t(0);
    for (int64_t n = 0; n < N; ++n) {
      const scalar_t* src_n = sp + n * C * Ls;
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* a_row = ap + (n * R + r) * Q;
        for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
          const scalar_t* s = src_n + static_cast<int64_t>(bp[e]) * Ls +
                              (HAS_KOFF ? static_cast<int64_t>(kp[e]) : 0);
          op[e] += window_dot<scalar_t>(a_row, s, Q);
        }
      }
    }
  });
}

at::Tensor shifted_sddmm_cpu(const at::Tensor& rowptr, const at::Tensor& blk,
                             const c10::optional<at::Tensor>& koff, const at::Tensor& a,
                             const at::Tensor& src) {
  constexpr const char* op = "shifted_sddmm";
  TORCH_CHECK_VALUE(a.dim() == 3 && a.is_contiguous(), op,
                    ": a must be a contiguous 3-D tensor (N, rows, q), got shape ", a.sizes());
  const int64_t R = a.size(1), Q = a.size(2);
  check_common(op, rowptr, blk, koff, src, R);
  TORCH_CHECK_VALUE(a.size(0) == src.size(0), op, ": a and src must have the same batch size, got ",
                    a.size(0), " and ", src.size(0));
  TORCH_CHECK_TYPE(a.scalar_type() == src.scalar_type(), op, ": a dtype ", a.scalar_type(),
                   " differs from src dtype ", src.scalar_type());
  check_same_device(op, "a", a, src);
  at::Tensor out = at::zeros({blk.numel()}, src.options());
  const bool has_koff = koff.has_value();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "shifted_sddmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(blk.scalar_type(), "shifted_sddmm_cpu_index", [&] {
      check_structure<index_t>(op, rowptr, blk, koff, R, src.size(1), src.size(2), Q);
      if (blk.numel() == 0 || Q == 0 || src.size(0) == 0) return;
      if (has_koff) shifted_sddmm_launch<scalar_t, index_t, true>(rowptr, blk, koff, a, src, out);
      else shifted_sddmm_launch<scalar_t, index_t, false>(rowptr, blk, koff, a, src, out);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) {
  m.impl("shifted_spmm_kernel", &shifted_spmm_cpu);
  m.impl("shifted_sddmm_kernel", &shifted_sddmm_cpu);
}

}  // namespace sparselth
