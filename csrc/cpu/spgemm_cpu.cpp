// Sparse x sparse -> dense on CPU (row-wise Gustavson with a dense accumulator row).
//
// spgemm_kernel: out (m, k) = A (m, n) @ B (n, k). Row i of out is the accumulator: zeroed,
// then for every stored (i, j) of A the stored entries of B's row j are added in,
// out[i, B.col[f]] += A[i, j] * B.val[f]. The cost follows sum_i sum_{j in row i} nnz(B row j)
// (plus m * k for the zeroed output), not n * k.
//
// spgemm_sampled_kernel: out[e] = sum_{f in B row A.col[e]} B.val[f] * grad[row(e), B.col[f]]
// for every stored e of A: the gradient of spgemm with respect to A's values, and, applied to
// the transposes (B^T, A^T, grad^T), with respect to B's values. Same loops, a gather in
// place of the scatter, the same cost.
//
// Rows of A are split across threads by their work (power-law rows balance). Two ways to add
// a B row into the accumulator, chosen per call by their cost (expand_pays):
// - expand (AVX-512): a header gives each row of B its start and a bitmask of its columns
//   (built on a call, kept for the next while B's index tensors are unchanged); an A entry
//   adds B's row one 16-lane group (8 for float64) at a time, the group's stored values
//   expanded from memory to their lanes, into register accumulators (chunks of 8 groups).
//   Branch-free, ~6.5 cycles a group whether B's rows are in L1 or not (the expanding loads
//   bound it): pays for narrow outputs (LightGCN tables, k = 64), where the scatter below
//   loses a mispredicted loop exit and memory-ordering stalls per entry.
// - scatter: out[i, B.col[f]] += ..., one stored entry at a time: pays for wide, very sparse
//   B rows (features times a 98 %-pruned weight, k = 512).
// Both prefetch the B row that an entry a few steps ahead names: its row pointer (or header)
// first, then its values.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define SPARSELTH_SPGEMM_AVX512 1
#else
#define SPARSELTH_SPGEMM_AVX512 0
#endif

#include "alloc.h"
#include "check.h"

namespace sparselth {
namespace {

constexpr int64_t kSerialWork = 1 << 15;   // below this many MACs one thread beats the fork
constexpr int64_t kNear = 12;              // A entries ahead whose B row data is prefetched
constexpr int64_t kFar = 32;               // A entries ahead whose B row pointer is prefetched
constexpr int64_t kPrefetchBytes = 1 << 20;  // B larger than this: prefetch its rows

// Prefetch helpers must be inlined early: GCC 12 otherwise finds them free of side effects
// (a prefetch is not one), and deletes the calls.
#define SPARSELTH_PREFETCH_FN __attribute__((always_inline)) inline

// The CSR operands of one product, as raw pointers. val == nullptr: a pattern (ones).
template <typename scalar_t, typename index_t>
struct Operands {
  const index_t* a_rowptr;
  const index_t* a_col;
  const scalar_t* a_val;
  const index_t* b_rowptr;
  const index_t* b_col;
  const scalar_t* b_val;
  int64_t a_nnz;
};

// Prefetch the B row that A entry e names: its row pointer when FAR, else its data (the row
// pointer is then expected in cache). At most two lines of columns and of values.
template <bool FAR, typename scalar_t, typename index_t>
SPARSELTH_PREFETCH_FN void prefetch_b_row(const Operands<scalar_t, index_t>& p, int64_t e) {
  if (e >= p.a_nnz) return;
  const int64_t j = p.a_col[e];
  if (FAR) {
    __builtin_prefetch(p.b_rowptr + j, 0, 1);
    return;
  }
  const int64_t s = p.b_rowptr[j];
  const char* c = reinterpret_cast<const char*>(p.b_col + s);
  __builtin_prefetch(c, 0, 1);
  __builtin_prefetch(c + 64, 0, 1);
  if (p.b_val != nullptr) {
    const char* v = reinterpret_cast<const char*>(p.b_val + s);
    __builtin_prefetch(v, 0, 1);
    __builtin_prefetch(v + 64, 0, 1);
  }
}

template <bool PREFETCH, typename scalar_t, typename index_t>
SPARSELTH_PREFETCH_FN void prefetch_ahead(const Operands<scalar_t, index_t>& p, int64_t e) {
  if constexpr (PREFETCH) {
    prefetch_b_row<true>(p, e + kFar);
    prefetch_b_row<false>(p, e + kNear);
  }
}

// Rows [r0, r1) of out = A @ B; out rows are written in full.
template <typename scalar_t, typename index_t, bool HAS_AVAL, bool HAS_BVAL, bool PREFETCH>
void spgemm_rows(const Operands<scalar_t, index_t>& p, int64_t r0, int64_t r1, int64_t k,
                 scalar_t* __restrict__ out) {
  for (int64_t i = r0; i < r1; ++i) {
    scalar_t* __restrict__ acc = out + i * k;
    std::fill(acc, acc + k, scalar_t(0));
    for (int64_t e = p.a_rowptr[i], e1 = p.a_rowptr[i + 1]; e < e1; ++e) {
      prefetch_ahead<PREFETCH>(p, e);
      const int64_t j = p.a_col[e];
      const scalar_t v = HAS_AVAL ? p.a_val[e] : scalar_t(1);
      const int64_t f0 = p.b_rowptr[j], f1 = p.b_rowptr[j + 1];
      const index_t* __restrict__ bc = p.b_col;
      const scalar_t* __restrict__ bv = p.b_val;
      // Columns are unique within a row of B: no two iterations touch the same acc entry.
#pragma GCC unroll 4
      for (int64_t f = f0; f < f1; ++f) acc[bc[f]] += HAS_BVAL ? v * bv[f] : v;
    }
  }
}

// Rows [r0, r1) of A of the sampled product (the gradient with respect to A's values).
template <typename scalar_t, typename index_t, bool HAS_BVAL, bool PREFETCH>
void sampled_rows(const Operands<scalar_t, index_t>& p, const scalar_t* grad, int64_t r0,
                  int64_t r1, int64_t k, scalar_t* __restrict__ out) {
  for (int64_t i = r0; i < r1; ++i) {
    const scalar_t* __restrict__ g = grad + i * k;
    for (int64_t e = p.a_rowptr[i], e1 = p.a_rowptr[i + 1]; e < e1; ++e) {
      prefetch_ahead<PREFETCH>(p, e);
      const int64_t j = p.a_col[e];
      const int64_t f0 = p.b_rowptr[j], f1 = p.b_rowptr[j + 1];
      const index_t* __restrict__ bc = p.b_col;
      const scalar_t* __restrict__ bv = p.b_val;
      scalar_t s0 = scalar_t(0), s1 = scalar_t(0);
      int64_t f = f0;
      for (; f + 1 < f1; f += 2) {
        s0 += (HAS_BVAL ? bv[f] : scalar_t(1)) * g[bc[f]];
        s1 += (HAS_BVAL ? bv[f + 1] : scalar_t(1)) * g[bc[f + 1]];
      }
      if (f < f1) s0 += (HAS_BVAL ? bv[f] : scalar_t(1)) * g[bc[f]];
      out[e] = s0 + s1;
    }
  }
}

// Work of each row of A (its MACs plus `row_cost`), as a prefix sum: cost[r] = work of rows
// [0, r). Used to split rows across threads; O(nnz(A)).
template <typename index_t>
std::vector<int64_t> row_costs(const index_t* a_rowptr, const index_t* a_col,
                               const index_t* b_rowptr, int64_t m, int64_t row_cost) {
  std::vector<int64_t> cost(m + 1);
  cost[0] = 0;
  for (int64_t i = 0; i < m; ++i) {
    int64_t w = row_cost;
    for (int64_t e = a_rowptr[i]; e < a_rowptr[i + 1]; ++e) {
      const int64_t j = a_col[e];
      w += static_cast<int64_t>(b_rowptr[j + 1]) - static_cast<int64_t>(b_rowptr[j]) + 1;
    }
    cost[i + 1] = cost[i] + w;
  }
  return cost;
}

// Runs body(r0, r1) over row ranges of A: one range when the estimated work is small or one
// thread runs, else one range of about equal work per thread.
template <typename index_t, typename Body>
void for_row_chunks(const index_t* a_rowptr, const index_t* a_col, const index_t* b_rowptr,
                    int64_t m, int64_t n, int64_t a_nnz, int64_t b_nnz, int64_t row_cost,
                    const Body& body) {
  const int64_t estimate = a_nnz * (n > 0 ? b_nnz / n + 1 : 1) + m * row_cost;
  const int64_t threads = estimate < kSerialWork ? 1 : at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, m));
  if (chunks == 1) {
    body(0, m);
    return;
  }
  const std::vector<int64_t> cost = row_costs(a_rowptr, a_col, b_rowptr, m, row_cost);
  auto row_at = [&](int64_t c) -> int64_t {
    if (c == 0) return 0;
    if (c == chunks) return m;
    const int64_t target = cost[m] / chunks * c + cost[m] % chunks * c / chunks;
    return std::lower_bound(cost.begin(), cost.end(), target) - cost.begin();
  };
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = std::min(row_at(c), m), r1 = std::min(row_at(c + 1), m);
      if (r0 < r1) body(r0, r1);
    }
  });
}

#if SPARSELTH_SPGEMM_AVX512
// ------------------------------------------------------------------ AVX-512 expand path
// One 64-byte register of scalar_t, and its lane bitmask.
template <typename scalar_t>
struct Vec512;

template <>
struct Vec512<float> {
  using vec = __m512;
  using bits = __mmask16;
  static constexpr int L = 16;
  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec set1(float v) { return _mm512_set1_ps(v); }
  // The popcount(m) values at p, expanded to the lanes set in m (reads nothing more).
  static inline vec expand(bits m, const float* p) { return _mm512_maskz_expandloadu_ps(m, p); }
  static inline vec ones(bits m) { return _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0f)); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline void store(float* p, bits m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
};

template <>
struct Vec512<double> {
  using vec = __m512d;
  using bits = __mmask8;
  static constexpr int L = 8;
  static inline vec zero() { return _mm512_setzero_pd(); }
  static inline vec set1(double v) { return _mm512_set1_pd(v); }
  static inline vec expand(bits m, const double* p) { return _mm512_maskz_expandloadu_pd(m, p); }
  static inline vec ones(bits m) { return _mm512_maskz_mov_pd(m, _mm512_set1_pd(1.0)); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_pd(a, b, c); }
  static inline void store(double* p, bits m, vec v) { _mm512_mask_storeu_pd(p, m, v); }
};

// Output columns are handled in chunks of NG groups (NG * L columns) accumulated in NG
// registers: NG = 1, 2, 4 or 8, the smallest covering k, else 8 (128 float32 / 64 float64
// columns a chunk, several chunks a row).
constexpr int kMaxChunkGroups = 8;

// Per row j of B, `stride` words: [start = b_rowptr[j]; when there are several chunks, the
// offset of each chunk's first value from start (uint16, 4 a word); the column bits, bit
// c % 64 of word c / 64, padded to whole chunks]. 16 bytes a row for k <= 64 (4 rows a cache
// line). Built once per call, O(n * stride + nnz(B)).
struct Header {
  std::vector<uint64_t> words;
  int64_t stride;
  int64_t offset_words;  // words of chunk offsets after start (0 for one chunk)
  int64_t chunks;
};

template <typename index_t, int L>
Header build_header(const index_t* b_rowptr, const index_t* b_col, int64_t n, int64_t k,
                    int ng) {
  const int64_t chunk_cols = static_cast<int64_t>(ng) * L;
  const int64_t chunks = (k + chunk_cols - 1) / chunk_cols;
  const int64_t offset_words = chunks > 1 ? (chunks + 3) / 4 : 0;
  const int64_t mask_words = std::max<int64_t>(1, (chunks * chunk_cols + 63) / 64);
  Header h{std::vector<uint64_t>(n * (1 + offset_words + mask_words)),
           1 + offset_words + mask_words, offset_words, chunks};
  const int64_t grain = std::max<int64_t>(1, 4096 / h.stride);
  at::parallel_for(0, n, grain, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      uint64_t* w = h.words.data() + j * h.stride;
      std::fill(w, w + h.stride, uint64_t(0));
      w[0] = static_cast<uint64_t>(b_rowptr[j]);
      uint64_t* bitmap = w + 1 + offset_words;
      uint16_t* offsets = reinterpret_cast<uint16_t*>(w + 1);
      int64_t chunk = 0;
      for (int64_t f = b_rowptr[j]; f < b_rowptr[j + 1]; ++f) {
        const uint64_t c = static_cast<uint64_t>(b_col[f]);
        bitmap[c >> 6] |= uint64_t(1) << (c & 63);
        // columns ascend: the first value of every later chunk comes at or after f
        for (; offset_words > 0 && chunk < static_cast<int64_t>(c) / chunk_cols; ++chunk)
          offsets[chunk + 1] = static_cast<uint16_t>(f - b_rowptr[j]);
      }
      for (; offset_words > 0 && chunk + 1 < chunks; ++chunk)
        offsets[chunk + 1] = static_cast<uint16_t>(b_rowptr[j + 1] - b_rowptr[j]);
    }
  });
  return h;
}

// The header of the last B whose product took the expand path, kept while the same index
// tensors come back unchanged (same data, same version counter: an in-place write bumps it)
// with the same k and chunking: LightGCN multiplies by one table at every call, and building
// the header (O(n + nnz(B))) and checking B's indices cost 2.5-5 ms a call on a 150k x 64
// table, a tenth of the product. One entry; it holds B's index tensors (never its values),
// so their memory cannot be reused by other tensors while the entry names them.
struct HeaderCacheEntry {
  at::Tensor rowptr, col;
  int64_t rowptr_version = -1, col_version = -1, k = -1, lanes = 0;
  int ng = 0;
  std::shared_ptr<const Header> header;
};

std::mutex g_header_mutex;
// Never destroyed: no tensor outlives the allocator at exit.
HeaderCacheEntry& g_header_cache = *new HeaderCacheEntry();

// Inference tensors keep no version counter: their headers are not cached.
bool cacheable(const at::Tensor& b_rowptr, const at::Tensor& b_col) {
  return !b_rowptr.is_inference() && !b_col.is_inference();
}

bool same_unchanged(const at::Tensor& t, const at::Tensor& held, int64_t version) {
  return held.defined() && t.data_ptr() == held.data_ptr() && t.numel() == held.numel() &&
         t.scalar_type() == held.scalar_type() && t._version() == version;
}

// The cached header of (b_rowptr, b_col) for k columns, or nullptr. ng = 0, lanes = 0: any
// chunking (B's indices were checked against k when the entry was made).
std::shared_ptr<const Header> cached_header(const at::Tensor& b_rowptr, const at::Tensor& b_col,
                                            int64_t k, int ng, int64_t lanes) {
  if (!cacheable(b_rowptr, b_col)) return nullptr;
  std::lock_guard<std::mutex> lock(g_header_mutex);
  const HeaderCacheEntry& c = g_header_cache;
  if (c.header == nullptr || c.k != k || (ng != 0 && (c.ng != ng || c.lanes != lanes)) ||
      !same_unchanged(b_rowptr, c.rowptr, c.rowptr_version) ||
      !same_unchanged(b_col, c.col, c.col_version))
    return nullptr;
  return c.header;
}

void cache_header(const at::Tensor& b_rowptr, const at::Tensor& b_col, int64_t k, int ng,
                  int64_t lanes, std::shared_ptr<const Header> header) {
  if (!cacheable(b_rowptr, b_col)) return;
  std::lock_guard<std::mutex> lock(g_header_mutex);
  g_header_cache = HeaderCacheEntry{b_rowptr, b_col, b_rowptr._version(), b_col._version(),
                                    k, lanes, ng, std::move(header)};
}

// The column bits of group g (lanes g * L .. g * L + L - 1) of a bitmap: L = 16 or 8 bits,
// read as one 2- or 1-byte word (little endian).
template <int L>
inline uint32_t group_bits(const uint64_t* bitmap, int64_t g) {
  static_assert(L == 16 || L == 8, "groups are 16 float32 or 8 float64 lanes");
  if constexpr (L == 16) {
    uint16_t b;
    std::memcpy(&b, reinterpret_cast<const char*>(bitmap) + 2 * g, 2);
    return b;
  } else {
    return reinterpret_cast<const uint8_t*>(bitmap)[g];
  }
}

template <typename scalar_t, typename index_t>
SPARSELTH_PREFETCH_FN void prefetch_header_row(const index_t* a_col, int64_t e, int64_t a_nnz,
                                               const uint64_t* header, int64_t stride,
                                               const scalar_t* b_val, bool near) {
  if (e >= a_nnz) return;
  const uint64_t* w = header + static_cast<int64_t>(a_col[e]) * stride;
  if (!near) {
    __builtin_prefetch(w, 0, 1);
    return;
  }
  if (b_val != nullptr) {
    const char* v = reinterpret_cast<const char*>(b_val + w[0]);
    __builtin_prefetch(v, 0, 1);
    __builtin_prefetch(v + 64, 0, 1);
  }
}

// Rows [r0, r1) of out = A @ B through the header, one chunk of NG groups at a time: every
// group of the chunk for every entry of the row (no branches), accumulated in NG registers,
// stored once.
template <typename scalar_t, typename index_t, bool HAS_AVAL, bool HAS_BVAL, int NG>
void spgemm_rows_expand(const Operands<scalar_t, index_t>& p, const Header& h, int64_t r0,
                        int64_t r1, int64_t k, scalar_t* __restrict__ out) {
  using V = Vec512<scalar_t>;
  using vec = typename V::vec;
  using bits = typename V::bits;
  constexpr int L = V::L;
  const uint64_t* header = h.words.data();
  const int64_t stride = h.stride;
  const int64_t bitmap_at = 1 + h.offset_words;
  for (int64_t i = r0; i < r1; ++i) {
    scalar_t* __restrict__ orow = out + i * k;
    const int64_t e0 = p.a_rowptr[i], e1 = p.a_rowptr[i + 1];
    for (int64_t chunk = 0; chunk < h.chunks; ++chunk) {
      vec acc[NG];
      for (int g = 0; g < NG; ++g) acc[g] = V::zero();
      for (int64_t e = e0; e < e1; ++e) {
        if (chunk == 0) {
          prefetch_header_row(p.a_col, e + kFar, p.a_nnz, header, stride, p.b_val, false);
          prefetch_header_row(p.a_col, e + kNear, p.a_nnz, header, stride, p.b_val, true);
        }
        const uint64_t* w = header + static_cast<int64_t>(p.a_col[e]) * stride;
        const scalar_t* vp = nullptr;
        if constexpr (HAS_BVAL) {
          vp = p.b_val + w[0];
          if (chunk > 0) vp += reinterpret_cast<const uint16_t*>(w + 1)[chunk];
        }
        const vec av = V::set1(HAS_AVAL ? p.a_val[e] : scalar_t(1));
        const uint64_t* bitmap = w + bitmap_at;
        for (int g = 0; g < NG; ++g) {
          const uint32_t m = group_bits<L>(bitmap, chunk * NG + g);
          vec v;
          if constexpr (HAS_BVAL) {
            v = V::expand(static_cast<bits>(m), vp);
            vp += __builtin_popcount(m);
          } else {
            v = V::ones(static_cast<bits>(m));
          }
          acc[g] = V::fmadd(av, v, acc[g]);
        }
      }
      for (int g = 0; g < NG; ++g) {
        const int64_t col = (chunk * NG + g) * L;
        if (col >= k) break;
        const int64_t lanes = std::min<int64_t>(L, k - col);
        V::store(orow + col, static_cast<bits>((uint64_t(1) << lanes) - 1), acc[g]);
      }
    }
  }
}

// Cycles per A entry, measured on an AVX-512 EPYC (Zen 4): the expand path ~6.5 per group
// of columns whatever the sparsity; the scatter ~2 per stored entry of the B row plus ~40
// (a mispredicted loop exit, the B row's first lines). LightGCN tables (k = 64, 80-95 %
// pruned): expand 26 against 46-64; Cora features times 86.6 %-pruned weights (k = 512,
// 69 entries a row): expand 208 against 177.
template <typename scalar_t>
inline bool expand_pays(int64_t k, int64_t n, int64_t b_nnz) {
  constexpr int L = Vec512<scalar_t>::L;
  if (k > 65535) return false;  // chunk offsets are uint16
  const double groups = static_cast<double>((k + L - 1) / L);
  const double per_row = n > 0 ? static_cast<double>(b_nnz) / static_cast<double>(n) : 0.0;
  return 6.5 * groups < 2.0 * per_row + 40.0;
}

template <typename scalar_t, typename index_t, bool HA, bool HB>
void spgemm_expand(const Operands<scalar_t, index_t>& p, const at::Tensor& b_rowptr,
                   const at::Tensor& b_col, int64_t m, int64_t n, int64_t k, int64_t b_nnz,
                   scalar_t* out) {
  constexpr int L = Vec512<scalar_t>::L;
  const int64_t groups = (k + L - 1) / L;
  static_assert(kMaxChunkGroups == 8, "the dispatch below covers 1, 2, 4 and 8 groups");
  const int ng = groups <= 1 ? 1 : groups <= 2 ? 2 : groups <= 4 ? 4 : 8;
  std::shared_ptr<const Header> cached = cached_header(b_rowptr, b_col, k, ng, L);
  if (cached == nullptr) {
    cached = std::make_shared<const Header>(build_header<index_t, L>(p.b_rowptr, p.b_col, n, k,
                                                                     ng));
    cache_header(b_rowptr, b_col, k, ng, L, cached);
  }
  const Header& h = *cached;
  auto run = [&](auto ng_c) {
    constexpr int NG = decltype(ng_c)::value;
    for_row_chunks(p.a_rowptr, p.a_col, p.b_rowptr, m, n, p.a_nnz, b_nnz,
                   std::max<int64_t>(groups, 1), [&](int64_t r0, int64_t r1) {
                     spgemm_rows_expand<scalar_t, index_t, HA, HB, NG>(p, h, r0, r1, k, out);
                   });
  };
  if (ng == 1) run(std::integral_constant<int, 1>());
  else if (ng == 2) run(std::integral_constant<int, 2>());
  else if (ng == 4) run(std::integral_constant<int, 4>());
  else run(std::integral_constant<int, 8>());
}
#endif  // SPARSELTH_SPGEMM_AVX512

// Cheap checks of the CSR pair plus the O(nnz) index ranges: A's columns name rows of B, B's
// columns lie in [0, num_cols). Both index arrays share one dtype.
void check_pair(const char* op, const at::Tensor& a_rowptr, const at::Tensor& a_col,
                const at::Tensor& b_rowptr, const at::Tensor& b_col, int64_t num_cols,
                bool b_validated = false) {
  TORCH_CHECK_VALUE(a_rowptr.dim() == 1 && a_rowptr.numel() >= 1, op,
                    ": a_rowptr must be 1-D with at least one entry, got ", a_rowptr.sizes());
  TORCH_CHECK_VALUE(b_rowptr.dim() == 1 && b_rowptr.numel() >= 1, op,
                    ": b_rowptr must be 1-D with at least one entry, got ", b_rowptr.sizes());
  check_csr_index(op, a_rowptr, a_col, a_rowptr.numel() - 1);
  check_csr_index(op, b_rowptr, b_col, b_rowptr.numel() - 1);
  TORCH_CHECK_TYPE(a_col.scalar_type() == b_col.scalar_type(), op,
                   ": A and B indices must share a dtype, got ", a_col.scalar_type(), " and ",
                   b_col.scalar_type());
  TORCH_CHECK_VALUE(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  for (const at::Tensor* t : {&a_rowptr, &a_col, &b_rowptr, &b_col})
    TORCH_CHECK_VALUE(t->is_cpu(), op, ": the CPU kernel got tensors on ", t->device());
  const int64_t m = a_rowptr.numel() - 1, n = b_rowptr.numel() - 1;
  AT_DISPATCH_INDEX_TYPES(a_col.scalar_type(), "spgemm_check", [&] {
    check_rowptr_ends<index_t>(op, a_rowptr, a_col.numel(), m);
    index_t lo, hi;
    min_max(a_col.data_ptr<index_t>(), a_col.numel(), &lo, &hi);
    TORCH_CHECK_VALUE(a_col.numel() == 0 || (lo >= 0 && hi < n), op,
                      ": A's columns must name rows of B, in [0, ", n, "), got min ",
                      static_cast<int64_t>(lo), " max ", static_cast<int64_t>(hi));
    if (b_validated) return;
    check_rowptr_ends<index_t>(op, b_rowptr, b_col.numel(), n);
    min_max(b_col.data_ptr<index_t>(), b_col.numel(), &lo, &hi);
    TORCH_CHECK_VALUE(b_col.numel() == 0 || (lo >= 0 && hi < num_cols), op,
                      ": B's columns must lie in [0, num_cols = ", num_cols, "), got min ",
                      static_cast<int64_t>(lo), " max ", static_cast<int64_t>(hi));
  });
}

void check_values(const char* op, const char* name, const c10::optional<at::Tensor>& val,
                  const at::Tensor& col, at::ScalarType dtype) {
  if (!val.has_value()) return;
  TORCH_CHECK_VALUE(val->dim() == 1 && val->numel() == col.numel() && val->is_contiguous(), op,
                    ": ", name, " must be contiguous with shape (", col.numel(), ",), got ",
                    val->sizes());
  TORCH_CHECK_TYPE(val->scalar_type() == dtype, op, ": ", name, " has dtype ",
                   val->scalar_type(), ", expected ", dtype);
  TORCH_CHECK_VALUE(val->is_cpu(), op, ": the CPU kernel got ", name, " on ", val->device());
}

template <typename scalar_t, typename index_t>
Operands<scalar_t, index_t> operands(const at::Tensor& a_rowptr, const at::Tensor& a_col,
                                     const c10::optional<at::Tensor>& a_val,
                                     const at::Tensor& b_rowptr, const at::Tensor& b_col,
                                     const c10::optional<at::Tensor>& b_val) {
  return {a_rowptr.data_ptr<index_t>(), a_col.data_ptr<index_t>(),
          a_val.has_value() ? a_val->data_ptr<scalar_t>() : nullptr,
          b_rowptr.data_ptr<index_t>(), b_col.data_ptr<index_t>(),
          b_val.has_value() ? b_val->data_ptr<scalar_t>() : nullptr, a_col.numel()};
}

bool b_beyond_cache(const at::Tensor& b_col, const c10::optional<at::Tensor>& b_val) {
  const int64_t bytes = b_col.numel() * (b_col.element_size() +
                                         (b_val.has_value() ? b_val->element_size() : 0));
  return bytes > kPrefetchBytes;
}

at::Tensor spgemm_cpu(const at::Tensor& a_rowptr, const at::Tensor& a_col,
                      const c10::optional<at::Tensor>& a_val, const at::Tensor& b_rowptr,
                      const at::Tensor& b_col, const c10::optional<at::Tensor>& b_val,
                      int64_t num_cols, at::ScalarType dtype) {
  constexpr const char* op = "spgemm";
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, op,
                   ": dtype must be float32 or float64 on CPU, got ", dtype);
  // B's indices were checked when its cached header was made
  bool b_validated = false;
#if SPARSELTH_SPGEMM_AVX512
  b_validated = cached_header(b_rowptr, b_col, num_cols, 0, 0) != nullptr;
#endif
  check_pair(op, a_rowptr, a_col, b_rowptr, b_col, num_cols, b_validated);
  check_values(op, "a_val", a_val, a_col, dtype);
  check_values(op, "b_val", b_val, b_col, dtype);
  const int64_t m = a_rowptr.numel() - 1, n = b_rowptr.numel() - 1, k = num_cols;
  at::Tensor out = empty_large({m, k}, dtype);
  if (m == 0 || k == 0) return out;
  const bool prefetch = b_beyond_cache(b_col, b_val);
  AT_DISPATCH_FLOATING_TYPES(dtype, "spgemm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(a_col.scalar_type(), "spgemm_cpu_index", [&] {
      const auto p = operands<scalar_t, index_t>(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val);
      scalar_t* o = out.data_ptr<scalar_t>();
      auto run = [&](auto has_a, auto has_b, auto pf) {
        constexpr bool HA = decltype(has_a)::value, HB = decltype(has_b)::value,
                       PF = decltype(pf)::value;
#if SPARSELTH_SPGEMM_AVX512
        if (expand_pays<scalar_t>(k, n, b_col.numel())) {
          spgemm_expand<scalar_t, index_t, HA, HB>(p, b_rowptr, b_col, m, n, k, b_col.numel(),
                                                   o);
          return;
        }
#endif
        for_row_chunks(p.a_rowptr, p.a_col, p.b_rowptr, m, n, p.a_nnz, b_col.numel(),
                       std::max<int64_t>(k / 16, 1), [&](int64_t r0, int64_t r1) {
                         spgemm_rows<scalar_t, index_t, HA, HB, PF>(p, r0, r1, k, o);
                       });
      };
      using T = std::true_type;
      using F = std::false_type;
      auto with_prefetch = [&](auto has_a, auto has_b) {
        if (prefetch) run(has_a, has_b, T()); else run(has_a, has_b, F());
      };
      if (p.a_val != nullptr) {
        if (p.b_val != nullptr) with_prefetch(T(), T()); else with_prefetch(T(), F());
      } else {
        if (p.b_val != nullptr) with_prefetch(F(), T()); else with_prefetch(F(), F());
      }
    });
  });
  return out;
}

at::Tensor spgemm_sampled_cpu(const at::Tensor& a_rowptr, const at::Tensor& a_col,
                              const at::Tensor& b_rowptr, const at::Tensor& b_col,
                              const c10::optional<at::Tensor>& b_val, const at::Tensor& grad) {
  constexpr const char* op = "spgemm_sampled";
  const int64_t m = a_rowptr.numel() - 1;
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.is_contiguous() && grad.size(0) == m, op,
                    ": grad must be a contiguous (num_rows of A = ", m, ", k) tensor, got ",
                    grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble, op,
                   ": grad must be float32 or float64 on CPU, got ", grad.scalar_type());
  TORCH_CHECK_VALUE(grad.is_cpu(), op, ": the CPU kernel got grad on ", grad.device());
  const int64_t k = grad.size(1);
  check_pair(op, a_rowptr, a_col, b_rowptr, b_col, k);
  check_values(op, "b_val", b_val, b_col, grad.scalar_type());
  const int64_t n = b_rowptr.numel() - 1;
  at::Tensor out = at::empty({a_col.numel()}, grad.options());
  if (a_col.numel() == 0) return out;
  const bool prefetch = b_beyond_cache(b_col, b_val);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "spgemm_sampled_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(a_col.scalar_type(), "spgemm_sampled_cpu_index", [&] {
      const auto p = operands<scalar_t, index_t>(a_rowptr, a_col, c10::nullopt, b_rowptr, b_col,
                                                 b_val);
      const scalar_t* g = grad.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      auto run = [&](auto has_b, auto pf) {
        constexpr bool HB = decltype(has_b)::value, PF = decltype(pf)::value;
        for_row_chunks(p.a_rowptr, p.a_col, p.b_rowptr, m, n, p.a_nnz, b_col.numel(), 1,
                       [&](int64_t r0, int64_t r1) {
                         sampled_rows<scalar_t, index_t, HB, PF>(p, g, r0, r1, k, o);
                       });
      };
      using T = std::true_type;
      using F = std::false_type;
      if (p.b_val != nullptr) {
        if (prefetch) run(T(), T()); else run(T(), F());
      } else {
        if (prefetch) run(F(), T()); else run(F(), F());
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) {
  m.impl("spgemm_kernel", &spgemm_cpu);
  m.impl("spgemm_sampled_kernel", &spgemm_sampled_cpu);
}

}  // namespace sparselth
