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

#include "check.h"
#include "partition.h"

namespace sparselth {
namespace {

constexpr int64_t kSerialWork = 1 << 15;  // output elements below which one thread is faster
constexpr int64_t kNear = 4;              // ids ahead whose row data is prefetched
constexpr int64_t kFar = 12;              // ids ahead whose index entries are prefetched
constexpr int kModeSum = 0, kModeMean = 1;

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

  inline void prefetch_index(int64_t id) const {
    __builtin_prefetch(rowptr + id, 0, 1);
    prefetch_bytes(bits + id * nb, nb);
  }
  inline void prefetch_data(int64_t id) const {
    const int64_t e0 = rowptr[id], e1 = rowptr[id + 1];
    prefetch_bytes(val + e0, (e1 - e0) * static_cast<int64_t>(sizeof(value_t)));
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
      typename A::vec r = A::expand(m, A::load_first(v, k));
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

// ----------------------------------------------------------------------------- driver

template <typename id_t>
void check_ids_in_range(const char* op, const at::Tensor& ids, int64_t num_rows) {
  const id_t* p = ids.data_ptr<id_t>();
  const int64_t n = ids.numel();
  int64_t lo = 0, hi = 0;
  if (n > 0) {
    id_t mn = p[0], mx = p[0];
#pragma omp simd reduction(min : mn) reduction(max : mx)
    for (int64_t i = 0; i < n; ++i) {
      mn = p[i] < mn ? p[i] : mn;
      mx = p[i] > mx ? p[i] : mx;
    }
    lo = mn;
    hi = mx;
  }
  TORCH_CHECK_VALUE(n == 0 || (lo >= 0 && hi < num_rows), op, ": ids must be in [0, ",
                    num_rows, "), got values in [", lo, ", ", hi, "]");
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

struct Common {
  int64_t num_out;
  const int64_t* bag_ptr;
};

// ids: 1-D int32/int64 contiguous; bag_ptr: (B + 1,) int64, 0 .. ids.numel(), non-decreasing.
Common check_ids_and_bags(const char* op, const at::Tensor& ids,
                          const c10::optional<at::Tensor>& bag_ptr, int64_t mode) {
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.is_contiguous(), op,
                    ": ids must be a contiguous 1-D tensor, got shape ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(ids.is_cpu(), op, ": the CPU kernel got ids on ", ids.device());
  TORCH_CHECK_VALUE(mode == kModeSum || mode == kModeMean, op,
                    ": mode must be 0 (sum) or 1 (mean), got ", mode);
  Common c{ids.numel(), nullptr};
  if (bag_ptr.has_value()) {
    const at::Tensor& bp = *bag_ptr;
    TORCH_CHECK_VALUE(bp.dim() == 1 && bp.numel() >= 1 && bp.is_contiguous() && bp.is_cpu(),
                      op, ": bag_ptr must be a contiguous 1-D CPU tensor of B + 1 entries");
    TORCH_CHECK_TYPE(bp.scalar_type() == at::kLong, op, ": bag_ptr must be int64, got ",
                     bp.scalar_type());
    const int64_t* p = bp.data_ptr<int64_t>();
    const int64_t B = bp.numel() - 1;
    bool ok = p[0] == 0 && p[B] == ids.numel();
    for (int64_t b = 0; ok && b < B; ++b) ok = p[b] <= p[b + 1];
    TORCH_CHECK_VALUE(ok, op, ": bag_ptr must start at 0, never decrease and end at ids.numel() = ",
                      ids.numel());
    c.num_out = B;
    c.bag_ptr = p;
  }
  return c;
}

void check_values(const char* op, const at::Tensor& val, const c10::optional<at::Tensor>& scale,
                  int64_t scale_len, at::ScalarType* out_type) {
  TORCH_CHECK_VALUE(val.is_contiguous() && val.is_cpu(), op,
                    ": stored values must be a contiguous CPU tensor");
  const auto vt = val.scalar_type();
  TORCH_CHECK_TYPE(vt == at::kFloat || vt == at::kDouble || vt == at::kChar, op,
                   ": stored values must be float32, float64 or int8, got ", vt);
  if (vt == at::kChar) {
    TORCH_CHECK_VALUE(scale.has_value(), op, ": int8 values need a scale per stored row");
  }
  if (scale.has_value()) {
    TORCH_CHECK_VALUE(scale->dim() == 1 && scale->numel() == scale_len && scale->is_contiguous(),
                      op, ": scale must be contiguous with shape (", scale_len, ",), got ",
                      scale->sizes());
    TORCH_CHECK_TYPE(scale->scalar_type() == at::kFloat || scale->scalar_type() == at::kDouble,
                     op, ": scale must be float32 or float64, got ", scale->scalar_type());
    TORCH_CHECK_TYPE(vt == at::kChar || vt == scale->scalar_type(), op,
                     ": scale dtype ", scale->scalar_type(), " differs from the values' ", vt);
  }
  *out_type = vt == at::kChar ? scale->scalar_type() : vt;
}

template <typename scalar_t>
const scalar_t* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<scalar_t>() : nullptr;
}

// Calls fn(value_t) with value_t = scalar_t or int8_t (the stored values' type).
template <typename scalar_t, typename Fn>
void dispatch_value(const at::Tensor& val, Fn&& fn) {
  if (val.scalar_type() == at::kChar) fn(int8_t{});
  else fn(scalar_t{});
}

// ----------------------------------------------------------------------------- ops

// table: (K, d) values (float32/float64, or int8 with scale (K,)); remap: None or (R,) int32
// in [-1, K); mask: None or (K, d) bool / table dtype. Rows addressed by ids: R (remap) or K.
at::Tensor embedding_rows_cpu(const at::Tensor& table, const c10::optional<at::Tensor>& remap,
                              const c10::optional<at::Tensor>& scale,
                              const c10::optional<at::Tensor>& mask, const at::Tensor& ids,
                              const c10::optional<at::Tensor>& bag_ptr, int64_t mode) {
  constexpr const char* op = "embedding_rows";
  TORCH_CHECK_VALUE(table.dim() == 2, op, ": table must be 2-D, got shape ", table.sizes());
  const int64_t K = table.size(0), d = table.size(1);
  at::ScalarType out_type;
  check_values(op, table, scale, K, &out_type);
  int64_t num_rows = K;
  if (remap.has_value()) {
    TORCH_CHECK_VALUE(remap->dim() == 1 && remap->is_contiguous() && remap->is_cpu(), op,
                      ": remap must be a contiguous 1-D CPU tensor");
    TORCH_CHECK_TYPE(remap->scalar_type() == at::kInt, op, ": remap must be int32, got ",
                     remap->scalar_type());
    num_rows = remap->numel();
  }
  if (mask.has_value()) {
    TORCH_CHECK_VALUE(mask->sizes() == table.sizes() && mask->is_contiguous() && mask->is_cpu(),
                      op, ": mask must be contiguous with the table's shape ", table.sizes(),
                      ", got ", mask->sizes());
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool || mask->scalar_type() == out_type, op,
                     ": mask must be bool or the output dtype ", out_type, ", got ",
                     mask->scalar_type());
  }
  const Common c = check_ids_and_bags(op, ids, bag_ptr, mode);
  at::Tensor out = at::empty({c.num_out, d}, table.options().dtype(out_type));
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_rows_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_rows_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, num_rows);
      const int32_t* rp = remap.has_value() ? remap->data_ptr<int32_t>() : nullptr;
      dispatch_value<scalar_t>(table, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* tp = static_cast<const value_t*>(table.data_ptr());
        auto run = [&](auto mask_tag) {
          using mask_t = std::remove_pointer_t<decltype(mask_tag)>;
          const mask_t* mp = nullptr;
          if constexpr (!std::is_void<mask_t>::value) mp = static_cast<const mask_t*>(mask->data_ptr());
          RowsDecoder<scalar_t, value_t, mask_t> dec{tp, rp, opt_ptr<scalar_t>(scale), mp, d};
          run_gather(dec, ids.data_ptr<index_t>(), ids.numel(), c.bag_ptr, c.num_out,
                     static_cast<int>(mode), d, out.data_ptr<scalar_t>());
        };
        if (!mask.has_value()) run(static_cast<void*>(nullptr));
        else if (mask->scalar_type() == at::kBool) run(static_cast<uint8_t*>(nullptr));
        else run(static_cast<scalar_t*>(nullptr));
      });
    });
  });
  return out;
}

// rowptr: (R + 1,) int32/int64 from 0 to nnz; col: (nnz,) int16/int32 in [0, dim); val: (nnz,)
// float32/float64, or int8 with scale (R,).
at::Tensor embedding_csr_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                             const at::Tensor& val, const c10::optional<at::Tensor>& scale,
                             const at::Tensor& ids, const c10::optional<at::Tensor>& bag_ptr,
                             int64_t mode, int64_t dim) {
  constexpr const char* op = "embedding_csr";
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() >= 1 && rowptr.is_contiguous() &&
                        rowptr.is_cpu(),
                    op, ": rowptr must be a contiguous 1-D CPU tensor of R + 1 entries");
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, op,
                   ": rowptr must be int32 or int64, got ", rowptr.scalar_type());
  TORCH_CHECK_VALUE(col.dim() == 1 && col.is_contiguous() && col.is_cpu(), op,
                    ": col must be a contiguous 1-D CPU tensor");
  TORCH_CHECK_TYPE(col.scalar_type() == at::kShort || col.scalar_type() == at::kInt, op,
                   ": col must be int16 or int32, got ", col.scalar_type());
  TORCH_CHECK_VALUE(val.dim() == 1 && val.numel() == col.numel(), op,
                    ": val must have shape (nnz,) = (", col.numel(), ",), got ", val.sizes());
  TORCH_CHECK_VALUE(dim >= 0, op, ": dim must be >= 0, got ", dim);
  const int64_t R = rowptr.numel() - 1;
  at::ScalarType out_type;
  check_values(op, val, scale, R, &out_type);
  const Common c = check_ids_and_bags(op, ids, bag_ptr, mode);
  at::Tensor out = at::empty({c.num_out, dim}, val.options().dtype(out_type));
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_csr_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_csr_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, R);
      dispatch_value<scalar_t>(val, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* vp = static_cast<const value_t*>(val.data_ptr());
        auto run = [&](auto ptr_tag, auto col_tag) {
          using ptr_t = decltype(ptr_tag);
          using col_t = decltype(col_tag);
          check_rowptr_ends<ptr_t>(op, rowptr, col.numel(), R);
          CsrDecoder<scalar_t, value_t, ptr_t, col_t> dec{
              rowptr.data_ptr<ptr_t>(), col.data_ptr<col_t>(), vp, opt_ptr<scalar_t>(scale),
              dim};
          run_gather(dec, ids.data_ptr<index_t>(), ids.numel(), c.bag_ptr, c.num_out,
                     static_cast<int>(mode), dim, out.data_ptr<scalar_t>());
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

// rowptr: (R + 1,) int32/int64 from 0 to nnz; bits: (R, ceil(dim / 8)) uint8, bit f % 8 of
// byte f / 8 set when feature f is stored (padding bits zero, popcount of row = its count);
// val: (nnz,) float32/float64, or int8 with scale (R,).
at::Tensor embedding_bitmask_cpu(const at::Tensor& rowptr, const at::Tensor& bits,
                                 const at::Tensor& val, const c10::optional<at::Tensor>& scale,
                                 const at::Tensor& ids, const c10::optional<at::Tensor>& bag_ptr,
                                 int64_t mode, int64_t dim) {
  constexpr const char* op = "embedding_bitmask";
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() >= 1 && rowptr.is_contiguous() &&
                        rowptr.is_cpu(),
                    op, ": rowptr must be a contiguous 1-D CPU tensor of R + 1 entries");
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, op,
                   ": rowptr must be int32 or int64, got ", rowptr.scalar_type());
  TORCH_CHECK_VALUE(dim >= 0, op, ": dim must be >= 0, got ", dim);
  const int64_t R = rowptr.numel() - 1;
  const int64_t nb = (dim + 7) / 8;
  TORCH_CHECK_VALUE(bits.dim() == 2 && bits.size(0) == R && bits.size(1) == nb &&
                        bits.is_contiguous() && bits.is_cpu(),
                    op, ": bits must be a contiguous (", R, ", ", nb, ") CPU tensor, got ",
                    bits.sizes());
  TORCH_CHECK_TYPE(bits.scalar_type() == at::kByte, op, ": bits must be uint8, got ",
                   bits.scalar_type());
  TORCH_CHECK_VALUE(val.dim() == 1, op, ": val must be 1-D, got ", val.sizes());
  at::ScalarType out_type;
  check_values(op, val, scale, R, &out_type);
  const Common c = check_ids_and_bags(op, ids, bag_ptr, mode);
  at::Tensor out = at::empty({c.num_out, dim}, val.options().dtype(out_type));
  AT_DISPATCH_FLOATING_TYPES(out_type, "embedding_bitmask_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_bitmask_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, R);
      dispatch_value<scalar_t>(val, [&](auto value_tag) {
        using value_t = decltype(value_tag);
        const value_t* vp = static_cast<const value_t*>(val.data_ptr());
        auto run = [&](auto ptr_tag) {
          using ptr_t = decltype(ptr_tag);
          check_rowptr_ends<ptr_t>(op, rowptr, val.numel(), R);
          BitmaskDecoder<scalar_t, value_t, ptr_t> dec{
              rowptr.data_ptr<ptr_t>(), bits.data_ptr<uint8_t>(), nb, vp,
              opt_ptr<scalar_t>(scale), dim};
          run_gather(dec, ids.data_ptr<index_t>(), ids.numel(), c.bag_ptr, c.num_out,
                     static_cast<int>(mode), dim, out.data_ptr<scalar_t>());
        };
        if (rowptr.scalar_type() == at::kInt) run(int32_t{});
        else run(int64_t{});
      });
    });
  });
  return out;
}

// dst[f] += g[f] * mask[r, f] (mask_t void: no mask). Bool masks are read as uint8_t (0/1):
// a uint8 -> float conversion vectorises, a C++ bool one does not.
template <typename scalar_t, typename mask_t>
inline void add_masked_row(scalar_t* __restrict__ dst, const scalar_t* __restrict__ g,
                           const mask_t* mask, int64_t r, int64_t d) {
  if constexpr (std::is_void<mask_t>::value) {
#pragma omp simd
    for (int64_t f = 0; f < d; ++f) dst[f] += g[f];
  } else {
    const mask_t* __restrict__ m = mask + r * d;
#pragma omp simd
    for (int64_t f = 0; f < d; ++f) dst[f] += g[f] * static_cast<scalar_t>(m[f]);
  }
}

// Dense gradient of the masked gather: out (num_rows, d) = zeros, then for every i:
// out[ids[i]] += grad[i] * mask[ids[i]]. Rows are split into one range per thread; each thread
// zeroes its range and scans all ids for those in it (no atomics, deterministic, and the
// zeroing is spread over the threads).
at::Tensor embedding_backward_cpu(const at::Tensor& grad, const c10::optional<at::Tensor>& mask,
                                  const at::Tensor& ids, int64_t num_rows) {
  constexpr const char* op = "embedding_backward";
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.is_contiguous() && grad.is_cpu(), op,
                    ": grad must be a contiguous 2-D CPU tensor, got shape ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble, op,
                   ": grad must be float32 or float64, got ", grad.scalar_type());
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.is_contiguous() && ids.numel() == grad.size(0), op,
                    ": ids must be contiguous with shape (", grad.size(0), ",), got ",
                    ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  const int64_t d = grad.size(1);
  if (mask.has_value()) {
    TORCH_CHECK_VALUE(mask->dim() == 2 && mask->size(0) == num_rows && mask->size(1) == d &&
                          mask->is_contiguous() && mask->is_cpu(),
                      op, ": mask must be a contiguous (", num_rows, ", ", d, ") CPU tensor, got ",
                      mask->sizes());
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool || mask->scalar_type() == grad.scalar_type(),
                     op, ": mask must be bool or grad's dtype, got ", mask->scalar_type());
  }
  at::Tensor out = at::empty({num_rows, d}, grad.options());
  if (num_rows == 0 || d == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_backward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_backward_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, num_rows);
      const index_t* ip = ids.data_ptr<index_t>();
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      scalar_t* op_ = out.data_ptr<scalar_t>();
      const int64_t n = ids.numel();
      auto run = [&](auto mask_tag) {
        using mask_t = std::remove_pointer_t<decltype(mask_tag)>;
        const mask_t* mp = nullptr;
        if constexpr (!std::is_void<mask_t>::value) mp = static_cast<const mask_t*>(mask->data_ptr());
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
              scalar_t* __restrict__ dst = op_ + r * d;
              const scalar_t* __restrict__ g = gp + i * d;
              add_masked_row<scalar_t, mask_t>(dst, g, mp, r, d);
            }
          }
        });
      };
      if (!mask.has_value()) run(static_cast<void*>(nullptr));
      else if (mask->scalar_type() == at::kBool) run(static_cast<uint8_t*>(nullptr));
      else run(static_cast<scalar_t*>(nullptr));
    });
  });
  return out;
}

// dst[f] = g[f] * mask[r, f] (outside the dispatch macros: no pragma in a macro argument).
template <typename scalar_t, typename mask_t>
inline void mul_masked_row(scalar_t* __restrict__ dst, const scalar_t* __restrict__ g,
                           const mask_t* mask, int64_t r, int64_t d) {
  const mask_t* __restrict__ m = mask + r * d;
#pragma omp simd
  for (int64_t f = 0; f < d; ++f) dst[f] = g[f] * static_cast<scalar_t>(m[f]);
}

// Values of the sparse gradient: out[i] = grad[i] * mask[ids[i]] (n, d).
at::Tensor embedding_sparse_grad_cpu(const at::Tensor& grad, const at::Tensor& mask,
                                     const at::Tensor& ids) {
  constexpr const char* op = "embedding_sparse_grad";
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.is_contiguous() && grad.is_cpu(), op,
                    ": grad must be a contiguous 2-D CPU tensor, got shape ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble, op,
                   ": grad must be float32 or float64, got ", grad.scalar_type());
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.is_contiguous() && ids.numel() == grad.size(0), op,
                    ": ids must be contiguous with shape (", grad.size(0), ",), got ",
                    ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, op,
                   ": ids must be int32 or int64, got ", ids.scalar_type());
  const int64_t d = grad.size(1);
  TORCH_CHECK_VALUE(mask.dim() == 2 && mask.size(1) == d && mask.is_contiguous() && mask.is_cpu(),
                    op, ": mask must be a contiguous (rows, ", d, ") CPU tensor, got ",
                    mask.sizes());
  TORCH_CHECK_TYPE(mask.scalar_type() == at::kBool || mask.scalar_type() == grad.scalar_type(),
                   op, ": mask must be bool or grad's dtype, got ", mask.scalar_type());
  at::Tensor out = at::empty_like(grad);
  const int64_t n = ids.numel();
  if (n == 0 || d == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "embedding_sparse_grad_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "embedding_sparse_grad_cpu_ids", [&] {
      check_ids_in_range<index_t>(op, ids, mask.size(0));
      const index_t* ip = ids.data_ptr<index_t>();
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      scalar_t* op_ = out.data_ptr<scalar_t>();
      auto run = [&](auto mask_tag) {
        using mask_t = std::remove_pointer_t<decltype(mask_tag)>;
        const mask_t* mp = static_cast<const mask_t*>(mask.data_ptr());
        const int64_t grain = std::max<int64_t>(1, kSerialWork / d);
        at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            if (i + kNear < i1) prefetch_bytes(mp + static_cast<int64_t>(ip[i + kNear]) * d,
                                               d * static_cast<int64_t>(sizeof(mask_t)));
            mul_masked_row<scalar_t, mask_t>(op_ + i * d, gp + i * d, mp,
                                             static_cast<int64_t>(ip[i]), d);
          }
        });
      };
      if (mask.scalar_type() == at::kBool) run(static_cast<uint8_t*>(nullptr));
      else run(static_cast<scalar_t*>(nullptr));
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) {
  m.impl("embedding_rows_kernel", &embedding_rows_cpu);
  m.impl("embedding_csr_kernel", &embedding_csr_cpu);
  m.impl("embedding_bitmask_kernel", &embedding_bitmask_cpu);
  m.impl("embedding_backward_kernel", &embedding_backward_cpu);
  m.impl("embedding_sparse_grad_kernel", &embedding_sparse_grad_cpu);
}

}  // namespace sparselth
