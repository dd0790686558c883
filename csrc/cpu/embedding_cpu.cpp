// Embedding gathers on CPU: lookups and pooled bags over a dense, row-compact, per-row CSR or
// per-row bitmask table (values stored as the output dtype, or int8 with a scale per stored
// row), the masked training-time gather (W * M)[ids], and its dense gradient.
//
// Each table layout is a small "decoder" (emit one stored row into an output row, or add it);
// one driver runs every decoder over ids or bags with at::parallel_for, prefetching the index
// entry of the id kFar ahead and the row data of the id kNear ahead (random rows of a large
// table are cache misses; the prefetches overlap them). Bags are split across threads by
// their number of ids (power-law bag sizes balance). Bitmask rows are decoded 64 bytes at a
// time with AVX-512 expand (bits -> lanes) when the compiler targets AVX-512, bit by bit
// otherwise and for the last d % lanes features.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#include <immintrin.h>
#define SPARSELTH_EMB_AVX512 1
#else
#define SPARSELTH_EMB_AVX512 0
#endif

#include "../embedding_common.h"
#include "check.h"
#include "partition.h"

namespace sparselth {
namespace {

constexpr int64_t kSerialWork = 1 << 15;  // output elements below which one thread is faster
// Prefetch distances, measured on a Zen 4 EPYC (300k x 64 float32 table, 4096 random ids,
// one thread): 24 / 8 against 12 / 4 takes the bitmask lookup from 126 to 72 us and a dense
// 256-byte row copy from 139 to 120 us.
constexpr int64_t kNear = 8;              // ids ahead whose row data is prefetched
constexpr int64_t kFar = 24;              // ids ahead whose index entries are prefetched
using embedding::kModeMean;

inline void prefetch_bytes(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 1);
}

// ----------------------------------------------------------------------------- decoders
// Each decoder provides prefetch_index(id), prefetch_data(id) and emit<ADD>(id, out_row):
// ADD = false writes the row (zeros where nothing is stored), ADD = true adds it.

// Dense or row-compact table: row id is table[remap[id]] (remap == nullptr: table[id];
// remap[id] < 0: an all-pruned row, zeros), times scale[stored row] when given, times the
// mask row when given (the training-time masked gather).
template <typename scalar_t, typename value_t, typename mask_t>
struct RowsDecoder {
  const value_t* table;
  const int32_t* remap;
  const scalar_t* scale;
  const mask_t* mask;  // nullptr, or (rows of table, d) uint8_t (a bool tensor) / scalar_t
  int64_t d;

  inline void prefetch_row(int64_t r) const {
    prefetch_bytes(table + r * d, d * static_cast<int64_t>(sizeof(value_t)));
    if constexpr (!std::is_void<mask_t>::value)
      prefetch_bytes(mask + r * d, d * static_cast<int64_t>(sizeof(mask_t)));
  }
  inline void prefetch_index(int64_t id) const {
    if (remap != nullptr) __builtin_prefetch(remap + id, 0, 1);
    else prefetch_row(id);
  }
  inline void prefetch_data(int64_t id) const {
    if (remap == nullptr) return;
    const int64_t r = remap[id];
    if (r >= 0) prefetch_row(r);
  }
  template <bool ADD>
  inline void emit(int64_t id, scalar_t* __restrict__ out) const {
    const int64_t r = remap != nullptr ? static_cast<int64_t>(remap[id]) : id;
    if (r < 0) {
      if (!ADD) std::fill(out, out + d, scalar_t(0));
      return;
    }
    const value_t* __restrict__ src = table + r * d;
    if constexpr (std::is_same<value_t, scalar_t>::value && std::is_void<mask_t>::value) {
      if (!ADD && scale == nullptr) {
        std::memcpy(out, src, d * sizeof(scalar_t));
        return;
      }
    }
    const scalar_t s = scale != nullptr ? scale[r] : scalar_t(1);
    if constexpr (std::is_void<mask_t>::value) {
#pragma omp simd
      for (int64_t f = 0; f < d; ++f) {
        const scalar_t v = static_cast<scalar_t>(src[f]) * s;
        if (ADD) out[f] += v;
        else out[f] = v;
      }
    } else {
      // v * m (not a select) so that the result is bitwise (W * M)[ids], signed zeros included.
      const mask_t* __restrict__ m = mask + r * d;
#pragma omp simd
      for (int64_t f = 0; f < d; ++f) {
        const scalar_t v = static_cast<scalar_t>(src[f]) * s * static_cast<scalar_t>(m[f]);
        if (ADD) out[f] += v;
        else out[f] = v;
      }
    }
  }
};

// Per-row CSR: the entries rowptr[id] .. rowptr[id + 1] of (col, val), times scale[id].
template <typename scalar_t, typename value_t, typename ptr_t, typename col_t>
struct CsrDecoder {
  const ptr_t* rowptr;
  const col_t* col;
  const value_t* val;
  const scalar_t* scale;
  int64_t d;

  inline void prefetch_index(int64_t id) const { __builtin_prefetch(rowptr + id, 0, 1); }
  inline void prefetch_data(int64_t id) const {
    const int64_t e = rowptr[id];
    __builtin_prefetch(col + e, 0, 1);
    __builtin_prefetch(val + e, 0, 1);
  }
  template <bool ADD>
  inline void emit(int64_t id, scalar_t* __restrict__ out) const {
    if (!ADD) std::fill(out, out + d, scalar_t(0));
    const scalar_t s = scale != nullptr ? scale[id] : scalar_t(1);
    const int64_t e1 = rowptr[id + 1];
    for (int64_t e = rowptr[id]; e < e1; ++e) {
      const scalar_t v = static_cast<scalar_t>(val[e]) * s;
      if (ADD) out[static_cast<int64_t>(col[e])] += v;
      else out[static_cast<int64_t>(col[e])] = v;
    }
  }
};

#if SPARSELTH_EMB_AVX512
// One 64-byte register of the output type and the bitmask that fills it.
template <typename scalar_t>
struct Avx;
template <>
struct Avx<float> {
  using vec = __m512;
  using bits = __mmask16;
  static constexpr int kLanes = 16;
  static inline bits load_bits(const uint8_t* p) {
    uint16_t b;
    std::memcpy(&b, p, 2);
    return b;
  }
  // The first k stored values (k <= 16) as floats in lanes 0 .. k-1 (masked load: never reads
  // past the row's values).
  static inline vec load_first(const float* p, int k) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << k) - 1u), p);
  }
  static inline vec load_first(const int8_t* p, int k) {
    const __m128i q = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << k) - 1u), p);
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
  }
  static inline vec expand(bits m, vec v) { return _mm512_maskz_expand_ps(m, v); }
  // The popcount(m) floats at p expanded to the lanes set in m (reads nothing more); on Zen 4
  // one expanding load beats a masked load plus a register expand.
  static inline vec expand_load(bits m, const float* p) {
    return _mm512_maskz_expandloadu_ps(m, p);
  }
  static inline vec set1(float s) { return _mm512_set1_ps(s); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
};
template <>
struct Avx<double> {
  using vec = __m512d;
  using bits = __mmask8;
  static constexpr int kLanes = 8;
  static inline bits load_bits(const uint8_t* p) { return *p; }
  static inline vec load_first(const double* p, int k) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << k) - 1u), p);
  }
  static inline vec load_first(const int8_t* p, int k) {
    const __m128i q = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << k) - 1u), p);
    return _mm512_cvtepi64_pd(_mm512_cvtepi8_epi64(q));
  }
  static inline vec expand(bits m, vec v) { return _mm512_maskz_expand_pd(m, v); }
  static inline vec expand_load(bits m, const double* p) {
    return _mm512_maskz_expandloadu_pd(m, p);
  }
  static inline vec set1(double s) { return _mm512_set1_pd(s); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_pd(a, b); }
  static inline vec add(vec a, vec b) { return _mm512_add_pd(a, b); }
  static inline vec loadu(const double* p) { return _mm512_loadu_pd(p); }
  static inline void storeu(double* p, vec v) { _mm512_storeu_pd(p, v); }
};
#endif

// Per-row bitmask: bit f of row id (byte f / 8, bit f % 8 of bits[id]) says whether feature f
// is stored; the row's stored values are val[rowptr[id] ..] in feature order, times scale[id].
template <typename scalar_t, typename value_t, typename ptr_t>
struct BitmaskDecoder {
  const ptr_t* rowptr;
  const uint8_t* bits;  // (rows, nb)
  int64_t nb;
  const value_t* val;
  const scalar_t* scale;
  int64_t d;
  int64_t data_lines;  // lines prefetched from a row's first value (data_lines_for)

  inline void prefetch_index(int64_t id) const {
    __builtin_prefetch(rowptr + id, 0, 1);
    prefetch_bytes(bits + id * nb, nb);
  }
  // A fixed number of lines for every row, not the row's own length: a loop whose trip count
  // changes from row to row mispredicts its exit (measured: 131 against 72 us a 4096-id batch).
  inline void prefetch_data(int64_t id) const {
    const char* c = reinterpret_cast<const char*>(val + rowptr[id]);
    for (int64_t l = 0; l < data_lines; ++l) __builtin_prefetch(c + 64 * l, 0, 1);
  }
  template <bool ADD>
  inline void emit(int64_t id, scalar_t* __restrict__ out) const {
    const uint8_t* b = bits + id * nb;
    const value_t* v = val + rowptr[id];
    const scalar_t s = scale != nullptr ? scale[id] : scalar_t(1);
    int64_t f = 0;
#if SPARSELTH_EMB_AVX512
    using A = Avx<scalar_t>;
    constexpr int L = A::kLanes;
    const typename A::vec sv = A::set1(s);
    for (; f + L <= d; f += L) {
      const typename A::bits m = A::load_bits(b + f / 8);
      const int k = __builtin_popcount(static_cast<unsigned>(m));
      typename A::vec r;
      if constexpr (std::is_same<value_t, scalar_t>::value) r = A::expand_load(m, v);
      else r = A::expand(m, A::load_first(v, k));
      if (scale != nullptr) r = A::mul(r, sv);
      if (ADD) r = A::add(r, A::loadu(out + f));
      A::storeu(out + f, r);
      v += k;
    }
#endif
    // Bit by bit: the rest of the row (all of it without AVX-512); f is a multiple of 8.
    if (!ADD) std::fill(out + f, out + d, scalar_t(0));
    for (int64_t j = f / 8; j < nb; ++j) {
      unsigned byte = b[j];
      while (byte != 0) {
        const int t = __builtin_ctz(byte);
        const scalar_t x = static_cast<scalar_t>(*v++) * s;
        if (ADD) out[j * 8 + t] += x;
        else out[j * 8 + t] = x;
        byte &= byte - 1;
      }
    }
  }
};

// Lines to prefetch from the first value of a bitmask row: those of an average row, plus one
// for a row that straddles a line boundary, never more than a full row can span.
inline int64_t data_lines_for(int64_t nnz, int64_t rows, int64_t dim, int64_t value_bytes) {
  const int64_t avg = rows > 0 ? nnz * value_bytes / rows : 0;
  const int64_t full = dim * value_bytes;
  return std::min((avg + 63) / 64, (full + 63) / 64) + 1;
}

// ----------------------------------------------------------------------------- driver

template <typename id_t>
void check_ids_in_range(const char* op, const at::Tensor& ids, int64_t num_rows) {
  const int64_t n = ids.numel();
  id_t lo = 0, hi = 0;
  min_max(ids.data_ptr<id_t>(), n, &lo, &hi);
  TORCH_CHECK_VALUE(n == 0 || (lo >= 0 && hi < num_rows), op, ": ids must be in [0, ",
                    num_rows, "), got values in [", static_cast<int64_t>(lo), ", ",
                    static_cast<int64_t>(hi), "]");
}

// Writes out (num_out, d): row o = decoded row ids[o] (no bags), or the sum (mean) of the rows
// of ids[bag_ptr[o] .. bag_ptr[o + 1]) (bags; an empty bag gives zeros).
template <typename Decoder, typename scalar_t, typename id_t>
void run_gather(const Decoder& dec, const id_t* ids, int64_t n, const int64_t* bag_ptr,
                int64_t num_out, int mode, int64_t d, scalar_t* out) {
  if (num_out == 0) return;
  if (d == 0) return;
  if (bag_ptr == nullptr) {
    const int64_t grain = std::max<int64_t>(1, kSerialWork / d);
    at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        if (i + kFar < i1) dec.prefetch_index(ids[i + kFar]);
        if (i + kNear < i1) dec.prefetch_data(ids[i + kNear]);
        dec.template emit<false>(ids[i], out + i * d);
      }
    });
    return;
  }
  const int64_t work = (n + num_out) * d;
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads * 4, num_out));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t b0, b1;
      chunk_rows(bag_ptr, num_out, c, chunks, &b0, &b1);
      const int64_t k_end = bag_ptr[b1];
      for (int64_t bag = b0; bag < b1; ++bag) {
        scalar_t* row = out + bag * d;
        std::fill(row, row + d, scalar_t(0));
        const int64_t k0 = bag_ptr[bag], k1 = bag_ptr[bag + 1];
        for (int64_t k = k0; k < k1; ++k) {
          if (k + kFar < k_end) dec.prefetch_index(ids[k + kFar]);
          if (k + kNear < k_end) dec.prefetch_data(ids[k + kNear]);
          dec.template emit<true>(ids[k], row);
        }
        if (mode == kModeMean && k1 > k0) {
          const scalar_t count = static_cast<scalar_t>(k1 - k0);
#pragma omp simd
          for (int64_t f = 0; f < d; ++f) row[f] /= count;
        }
      }
    }
  });
}

// ----------------------------------------------------------------------------- checks

void require_cpu(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.is_cpu() && t.is_contiguous(), op, ": ", name,
                    " must be a contiguous CPU tensor (got one on ", t.device(), ")");
}

void require_cpu(const char* op, const char* name, const c10::optional<at::Tensor>& t) {
  if (t.has_value()) require_cpu(op, name, *t);
}

// The (num_out, dim) output of a gather over ids or bags of a table whose values are `val`:
// checks the ids and bag pointers (their values too), then every id against num_rows, and
// calls body(scalar_t{}, value_t{}, walk) under the output, id and stored-value type dispatch,
// where walk(decoder) runs a decoder over the ids or bags into the output.
template <typename Body>
at::Tensor gather(const char* op, const at::Tensor& val, at::ScalarType out_type,
                  const at::Tensor& ids, const c10::optional<at::Tensor>& bag_ptr, int64_t mode,
                  int64_t num_rows, int64_t dim, const Body& body) {
  const int64_t num_out = embedding::check_ids_and_bags(op, ids, bag_ptr, mode, val.device());
  require_cpu(op, "ids", ids);
  require_cpu(op, "bag_ptr", bag_ptr);
  const int64_t* bp = embedding::opt_ptr<int64_t>(bag_ptr);
  if (bp != nullptr) {
    bool ok = bp[0] == 0 && bp[num_out] == ids.numel();
    for (int64_t b = 0; ok && b < num_out; ++b) ok = bp[b] <= bp[b + 1];
    TORCH_CHECK_VALUE(ok, op, ": bag_ptr must start at 0, never decrease and end at ids.numel() = ",
                      ids.numel());
  }
  at::Tensor out = at::empty({num_out, dim}, val.options().dtype(out_type));
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_gather_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_gather_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, num_rows);
      embedding::dispatch_value<scalar_t>(val, [&](auto value_tag) {
        body(scalar_t{}, value_tag, [&](const auto& dec) {
          run_gather(dec, ids.data_ptr<index_t>(), ids.numel(), bp, num_out,
                     static_cast<int>(mode), dim, out.data_ptr<scalar_t>());
        });
      });
    });
  });
  return out;
}

// ----------------------------------------------------------------------------- ops

// table: (K, d) values (float32/float64, or int8 with scale (K,)); remap: None or (R,) int32
// in [-1, K); mask: None or (K, d) bool / table dtype. Rows addressed by ids: R (remap) or K.
at::Tensor embedding_rows_cpu(const at::Tensor& table, const c10::optional<at::Tensor>& remap,
                              const c10::optional<at::Tensor>& scale,
                              const c10::optional<at::Tensor>& mask, const at::Tensor& ids,
                              const c10::optional<at::Tensor>& bag_ptr, int64_t mode) {
  constexpr const char* op = "embedding_rows";
  int64_t num_rows;
  const at::ScalarType out_type =
      embedding::check_rows_table(op, table, remap, scale, mask, &num_rows);
  require_cpu(op, "table", table);
  require_cpu(op, "remap", remap);
  require_cpu(op, "scale", scale);
  require_cpu(op, "mask", mask);
  const int64_t d = table.size(1);
  return gather(op, table, out_type, ids, bag_ptr, mode, num_rows, d,
                [&](auto scalar_tag, auto value_tag, const auto& walk) {
    using scalar_t = decltype(scalar_tag);
    using value_t = decltype(value_tag);
    embedding::dispatch_mask<scalar_t>(mask, [&](auto mask_ptr) {
      using mask_t = std::remove_const_t<std::remove_pointer_t<decltype(mask_ptr)>>;
      walk(RowsDecoder<scalar_t, value_t, mask_t>{
          static_cast<const value_t*>(table.data_ptr()), embedding::opt_ptr<int32_t>(remap),
          embedding::opt_ptr<scalar_t>(scale), mask_ptr, d});
    });
  });
}

// A per-row sparse table: rowptr (R + 1,) int32/int64 from 0 to nnz; val (nnz,) float32/float64,
// or int8 with scale (R,). CSR: index = col (nnz,) int16/int32 in [0, dim). BITMASK: index =
// bits (R, ceil(dim / 8)) uint8, bit f % 8 of byte f / 8 set when feature f is stored (padding
// bits zero, popcount of a row = its count).
template <bool BITMASK>
at::Tensor embedding_sparse_rows_cpu(const at::Tensor& rowptr, const at::Tensor& index,
                                     const at::Tensor& val,
                                     const c10::optional<at::Tensor>& scale,
                                     const at::Tensor& ids,
                                     const c10::optional<at::Tensor>& bag_ptr, int64_t mode,
                                     int64_t dim) {
  constexpr const char* op = BITMASK ? "embedding_bitmask" : "embedding_csr";
  int64_t R;
  const at::ScalarType out_type =
      embedding::check_sparse_table<BITMASK>(op, rowptr, index, val, scale, dim, &R);
  require_cpu(op, "rowptr", rowptr);
  require_cpu(op, BITMASK ? "bits" : "col", index);
  require_cpu(op, "val", val);
  require_cpu(op, "scale", scale);
  return gather(op, val, out_type, ids, bag_ptr, mode, R, dim,
                [&](auto scalar_tag, auto value_tag, const auto& walk) {
    using scalar_t = decltype(scalar_tag);
    using value_t = decltype(value_tag);
    embedding::dispatch_sparse_table<BITMASK>(rowptr, index, [&](auto ptr_tag, auto idx_tag) {
      using ptr_t = decltype(ptr_tag);
      using idx_t = decltype(idx_tag);
      check_rowptr_ends<ptr_t>(op, rowptr, val.numel(), R);
      const ptr_t* rp = rowptr.data_ptr<ptr_t>();
      const value_t* vp = static_cast<const value_t*>(val.data_ptr());
      const scalar_t* sp = embedding::opt_ptr<scalar_t>(scale);
      if constexpr (BITMASK)
        walk(BitmaskDecoder<scalar_t, value_t, ptr_t>{
            rp, index.data_ptr<uint8_t>(), index.size(1), vp, sp, dim,
            data_lines_for(val.numel(), R, dim, static_cast<int64_t>(sizeof(value_t)))});
      else
        walk(CsrDecoder<scalar_t, value_t, ptr_t, idx_t>{rp, index.data_ptr<idx_t>(), vp, sp,
                                                         dim});
    });
  });
}

// dst[f] = g[f] * mask[r, f] (ADD: +=; mask_t void: no mask). Bool masks are read as uint8_t.
template <bool ADD, typename scalar_t, typename mask_t>
inline void masked_row(scalar_t* __restrict__ dst, const scalar_t* __restrict__ g,
                       const mask_t* mask, int64_t r, int64_t d) {
  if constexpr (std::is_void<mask_t>::value) {
#pragma omp simd
    for (int64_t f = 0; f < d; ++f) {
      if (ADD) dst[f] += g[f];
      else dst[f] = g[f];
    }
  } else {
    const mask_t* __restrict__ m = mask + r * d;
#pragma omp simd
    for (int64_t f = 0; f < d; ++f) {
      const scalar_t v = g[f] * static_cast<scalar_t>(m[f]);
      if (ADD) dst[f] += v;
      else dst[f] = v;
    }
  }
}

// The gradient kernels' common part: checks, then every id against num_rows, and
// body(grad, ids, mask) with typed pointers under the dtype, id type and mask type dispatch
// (body allocates the output: it runs exactly once).
template <typename Body>
void with_grad(const char* op, const at::Tensor& grad, const at::Tensor& ids,
               const c10::optional<at::Tensor>& mask, int64_t mask_rows, int64_t num_rows,
               const Body& body) {
  embedding::check_grad(op, grad, ids, mask, mask_rows);
  require_cpu(op, "grad", grad);
  require_cpu(op, "ids", ids);
  require_cpu(op, "mask", mask);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_grad_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_grad_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, num_rows);
      embedding::dispatch_mask<scalar_t>(mask, [&](auto mask_ptr) {
        body(grad.data_ptr<scalar_t>(), ids.data_ptr<index_t>(), mask_ptr);
      });
    });
  });
}

// Dense gradient of the masked gather: out (num_rows, d) = zeros, then for every i:
// out[ids[i]] += grad[i] * mask[ids[i]]. Rows are split into one range per thread; each thread
// zeroes its range and scans all ids for those in it (no atomics, deterministic, and the
// zeroing is spread over the threads).
at::Tensor embedding_backward_cpu(const at::Tensor& grad, const c10::optional<at::Tensor>& mask,
                                  const at::Tensor& ids, int64_t num_rows) {
  constexpr const char* op = "embedding_backward";
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  at::Tensor out;
  with_grad(op, grad, ids, mask, num_rows, num_rows, [&](const auto* gp, const auto* ip,
                                                         const auto* mp) {
    using scalar_t = std::remove_const_t<std::remove_pointer_t<decltype(gp)>>;
    using mask_t = std::remove_const_t<std::remove_pointer_t<decltype(mp)>>;
    const int64_t n = ids.numel(), d = grad.size(1);
    out = at::empty({num_rows, d}, grad.options());
    if (num_rows == 0 || d == 0) return;
    scalar_t* op_ = out.data_ptr<scalar_t>();
    const int64_t work = (num_rows + n) * d;
    const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, num_rows));
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t r0 = num_rows * c / chunks, r1 = num_rows * (c + 1) / chunks;
        std::memset(op_ + r0 * d, 0, (r1 - r0) * d * sizeof(scalar_t));
        for (int64_t i = 0; i < n; ++i) {
          const int64_t r = ip[i];
          if (r < r0 || r >= r1) continue;
          masked_row<true, scalar_t, mask_t>(op_ + r * d, gp + i * d, mp, r, d);
        }
      }
    });
  });
  return out;
}

// Values of the sparse gradient: out[i] = grad[i] * mask[ids[i]] (n, d).
at::Tensor embedding_sparse_grad_cpu(const at::Tensor& grad, const at::Tensor& mask,
                                     const at::Tensor& ids) {
  constexpr const char* op = "embedding_sparse_grad";
  at::Tensor out;
  with_grad(op, grad, ids, mask, -1, mask.dim() == 2 ? mask.size(0) : 0,
            [&](const auto* gp, const auto* ip, const auto* mp) {
    using scalar_t = std::remove_const_t<std::remove_pointer_t<decltype(gp)>>;
    using mask_t = std::remove_const_t<std::remove_pointer_t<decltype(mp)>>;
    const int64_t n = ids.numel(), d = grad.size(1);
    out = at::empty_like(grad);
    if (n == 0 || d == 0) return;
    scalar_t* op_ = out.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, kSerialWork / d);
    at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        if constexpr (!std::is_void<mask_t>::value) {
          if (i + kNear < i1)
            prefetch_bytes(mp + static_cast<int64_t>(ip[i + kNear]) * d,
                           d * static_cast<int64_t>(sizeof(mask_t)));
        }
        masked_row<false, scalar_t, mask_t>(op_ + i * d, gp + i * d, mp,
                                            static_cast<int64_t>(ip[i]), d);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) {
  m.impl("embedding_rows_kernel", &embedding_rows_cpu);
  m.impl("embedding_csr_kernel", &embedding_sparse_rows_cpu<false>);
  m.impl("embedding_bitmask_kernel", &embedding_sparse_rows_cpu<true>);
  m.impl("embedding_backward_kernel", &embedding_backward_cpu);
  m.impl("embedding_sparse_grad_kernel", &embedding_sparse_grad_cpu);
}

}  // namespace sparselth
