// Sparse linear layer on CPU (schema in csrc/ops.cpp):
//
//   out[n, h] = act(bias[h] + sum_{s < S} sum_{e in row s * H + h} val[e] * x[n, col[e]])
//   (act: ReLU when `relu`, the next layer's activation fused into the store; else identity)
//
// for x (B, F) with any strides, out (B, H) row-major, and a CSR weight (H, F) stored as S
// stacked "panels" of H rows each (rowptr has S * H + 1 entries; S = 1 is the plain CSR).
// sparselth/ops/sparse_linear.py stacks a weight by column panels: segment (s, h) holds the
// entries of row h whose columns fall in panel s. Any split computes the same sum; a panel
// split makes the kernel fast.
//
// Batch >= 2: register tiles that reuse each loaded weight across T samples (the XNNPACK
// sparse-inference design). A block of T samples of x is packed batch-contiguous into an
// aligned (F, T) buffer (transposed through registers when x is row-major, copied when x is a
// transposed view); each stored weight is broadcast once and multiply-adds T / L vector
// registers (T = 64 float32: 4 AVX-512 registers per weight). Panel by panel, the (panel width,
// T) slice of that buffer stays in L1 while every output row of a chunk adds its entries of the
// panel; the chunk's partial sums wait in a small buffer (L2) between panels, and the last panel
// hands them to a 16x16 register transpose that adds the bias and writes out.
// Measured on a 2-core AMD EPYC (Zen 4; one thread): a multiply-add with its operand from L1
// runs at 45-54 GMAC/s (one 64-byte load per cycle), from L2 at ~28 (half a line per cycle), so
// without panels a 1024-wide layer is L2-bound at 18-27 GMAC/s per kept MAC; with 32 KiB panels
// the product runs at 35-40 (dense BLAS: 35-47 per MAC on the same layers).
//
// Batch 1: each stored weight is used once, so the cost is bytes and instructions. val and col
// (int16 when in_features < 32768: 6 bytes per weight) stream once, x stays in L1. Zen 4's
// AVX-512 gather moves ~0.7 entries per cycle; four x values per 8-byte word of columns through
// masked broadcasts move ~1.1 (4.3 G entries/s measured, against 2.2 for gathers).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "check.h"
#include "simd.h"

namespace sparselth {
namespace {

constexpr int64_t kSerialWork = 1 << 18;  // MACs below which one thread beats the fork
constexpr int64_t kRowChunk = 512;        // rows per work item: partial sums <= 128 KiB (L2)
constexpr int64_t kTransposeTile = 16;    // square tiles of the generic transposes
constexpr int64_t kSerialSpmv = 1 << 16;  // stored weights below which batch 1 runs on one thread

template <typename scalar_t>
constexpr int kLanes = 64 / static_cast<int>(sizeof(scalar_t));  // one 64-byte vector

// A view of x: element (n, f) at p[n * sn + f * sf].
template <typename scalar_t>
struct Input {
  const scalar_t* p;
  int64_t sn, sf;
};

#if defined(__AVX512F__)
// In-register transpose of a 16x16 float tile: r[i] holds row i on entry, column i on exit.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int k = 0; k < 16; k += 2) {
    t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 16; k += 4) {
    u[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
    u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
    u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
  }
  for (int k = 0; k < 16; k += 8) {
    for (int j = 0; j < 4; ++j) {
      t[k + j] = _mm512_shuffle_f32x4(u[k + j], u[k + j + 4], 0x88);
      t[k + j + 4] = _mm512_shuffle_f32x4(u[k + j], u[k + j + 4], 0xDD);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}

// xb[f * T + i] = x[n0 + i, f] (zero for i >= nb) from a row-major float x, 16x16 tiles.
template <int T>
inline void pack_rows_f32(const float* x, int64_t sn, int64_t F, int64_t n0, int64_t nb,
                          float* xb) {
  __m512 r[16];
  for (int64_t ib = 0; ib < T; ib += 16) {
    const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, nb - ib));
    for (int64_t fb = 0; fb < F; fb += 16) {
      const int64_t w = std::min<int64_t>(16, F - fb);
      const __mmask16 m = static_cast<__mmask16>(w == 16 ? 0xFFFF : (1u << w) - 1);
      for (int k = 0; k < 16; ++k)
        r[k] = k < rows ? _mm512_maskz_loadu_ps(m, x + (n0 + ib + k) * sn + fb)
                        : _mm512_setzero_ps();
      transpose16(r);
      for (int k = 0; k < w; ++k) _mm512_storeu_ps(xb + (fb + k) * T + ib, r[k]);
    }
  }
}

// out[(n0 + i) * H + h] = act(ob[(h - h0) * T + i] + bias[h]) for float, 16x16 register tiles.
template <int T>
inline void store_rows_f32(const float* ob, const float* bias, bool relu, int64_t H, int64_t h0,
                           int64_t h1, int64_t n0, int64_t nb, float* out) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 r[16];
  for (int64_t hb = h0; hb < h1; hb += 16) {
    const int64_t w = std::min<int64_t>(16, h1 - hb);
    const __mmask16 m = static_cast<__mmask16>(w == 16 ? 0xFFFF : (1u << w) - 1);
    const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(m, bias + hb) : _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 16) {
      for (int k = 0; k < 16; ++k)
        r[k] = k < w ? _mm512_loadu_ps(ob + (hb - h0 + k) * T + ib) : _mm512_setzero_ps();
      transpose16(r);
      const int64_t rows = std::min<int64_t>(16, nb - ib);
      for (int k = 0; k < rows; ++k) {
        const __m512 v = _mm512_add_ps(r[k], b);   // max(0, NaN) is NaN, as torch.relu
        _mm512_mask_storeu_ps(out + (n0 + ib + k) * H + hb, m, relu ? _mm512_max_ps(zero, v) : v);
      }
    }
  }
}
#endif

// xb[f * T + i] = x[n0 + i, f] for i < nb, zero for nb <= i < T.
template <typename scalar_t, int T>
void pack_block(Input<scalar_t> x, int64_t F, int64_t n0, int64_t nb, scalar_t* xb) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<scalar_t, float> && T % 16 == 0) {
    if (x.sf == 1) {
      pack_rows_f32<T>(x.p, x.sn, F, n0, nb, xb);
      return;
    }
  }
#endif
  if (nb < T) {
    for (int64_t f = 0; f < F; ++f) std::fill(xb + f * T + nb, xb + (f + 1) * T, scalar_t(0));
  }
  if (x.sn == 1) {  // a transposed view: each feature's samples are contiguous
    for (int64_t f = 0; f < F; ++f)
      std::memcpy(xb + f * T, x.p + f * x.sf + n0, static_cast<size_t>(nb) * sizeof(scalar_t));
    return;
  }
  for (int64_t ib = 0; ib < nb; ib += kTransposeTile) {
    const int64_t ie = std::min<int64_t>(nb, ib + kTransposeTile);
    for (int64_t fb = 0; fb < F; fb += kTransposeTile) {
      const int64_t fe = std::min<int64_t>(F, fb + kTransposeTile);
      for (int64_t i = ib; i < ie; ++i) {
        const scalar_t* xr = x.p + (n0 + i) * x.sn;
        for (int64_t f = fb; f < fe; ++f) xb[f * T + i] = xr[f * x.sf];
      }
    }
  }
}

// ob[(h - h0) * T + i] = sum_s sum_{e in segment (s, h)} val[e] * xb[col[e] * T + i] for the
// rows [h0, h1): panel by panel, T / L vector registers per row, U independent accumulator
// sets so that at least 4 multiply-add chains are in flight (their latency is 4 cycles).
template <typename scalar_t, typename index_t, typename col_t, int T>
void tile_product(const index_t* rp, const col_t* col, const scalar_t* val, int64_t S,
                  int64_t H, int64_t h0, int64_t h1, const scalar_t* xb, scalar_t* ob) {
  using vec_t = typename Simd<scalar_t, 64>::type;
  constexpr int L = kLanes<scalar_t>;
  static_assert(T % L == 0, "a tile is whole 64-byte vectors");
  constexpr int NV = T / L;
  constexpr int U = NV >= 4 ? 1 : 4 / NV;
  for (int64_t s = 0; s < S; ++s) {
    const index_t* r = rp + s * H;
    for (int64_t h = h0; h < h1; ++h) {
      int64_t e = r[h];
      const int64_t e1 = r[h + 1];
      if (e == e1 && s > 0) continue;  // nothing to add (common in a very sparse layer)
      scalar_t* o = ob + (h - h0) * T;
      vec_t acc[U][NV];
      for (int k = 0; k < NV; ++k) acc[0][k] = s == 0 ? vec_t{} : load_vec<vec_t>(o + k * L);
      for (int u = 1; u < U; ++u)
        for (int k = 0; k < NV; ++k) acc[u][k] = vec_t{};
      for (; e + U <= e1; e += U) {
        for (int u = 0; u < U; ++u) {
          const scalar_t* p = xb + static_cast<int64_t>(col[e + u]) * T;
          const vec_t w = vec_t{} + val[e + u];
          for (int k = 0; k < NV; ++k) acc[u][k] += w * load_vec<vec_t>(p + k * L);
        }
      }
      for (; e < e1; ++e) {
        const scalar_t* p = xb + static_cast<int64_t>(col[e]) * T;
        const vec_t w = vec_t{} + val[e];
        for (int k = 0; k < NV; ++k) acc[0][k] += w * load_vec<vec_t>(p + k * L);
      }
      for (int u = 1; u < U; ++u)
        for (int k = 0; k < NV; ++k) acc[0][k] += acc[u][k];
      for (int k = 0; k < NV; ++k) store_vec(o + k * L, acc[0][k]);
    }
  }
}

// out[(n0 + i) * H + h] = act(ob[(h - h0) * T + i] + bias[h]) for i < nb, h in [h0, h1).
template <typename scalar_t, int T>
void store_rows(const scalar_t* ob, const scalar_t* bias, bool relu, int64_t H, int64_t h0,
                int64_t h1, int64_t n0, int64_t nb, scalar_t* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<scalar_t, float> && T % 16 == 0) {
    store_rows_f32<T>(ob, bias, relu, H, h0, h1, n0, nb, out);
    return;
  }
#endif
  for (int64_t hb = h0; hb < h1; hb += kTransposeTile) {
    const int64_t he = std::min<int64_t>(h1, hb + kTransposeTile);
    for (int64_t i = 0; i < nb; ++i) {
      scalar_t* orow = out + (n0 + i) * H;
      for (int64_t h = hb; h < he; ++h) {
        const scalar_t v = ob[(h - h0) * T + i] + (bias != nullptr ? bias[h] : scalar_t(0));
        orow[h] = relu && v < scalar_t(0) ? scalar_t(0) : v;
      }
    }
  }
}

// Per-thread scratch memory, 64-byte aligned, kept between calls (up to kScratchBytes per slot):
// a fresh buffer per call costs an allocation and, when large, first-touch page faults.
constexpr size_t kScratchBytes = size_t(8) << 20;

class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  // At least `bytes` bytes, valid until the next call of this slot on this thread.
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(p_);
      size_ = (bytes + 63) & ~size_t(63);
      p_ = std::aligned_alloc(64, size_);
      TORCH_CHECK(p_ != nullptr, "sparse_linear_kernel: out of memory (", size_, " bytes)");
    }
    return p_;
  }
  // Give back a buffer above the cap (one huge call should not pin memory for good).
  void trim() {
    if (size_ > kScratchBytes) {
      std::free(p_);
      p_ = nullptr;
      size_ = 0;
    }
  }

 private:
  void* p_ = nullptr;
  size_t size_ = 0;
};

inline Scratch& scratch(int slot) {
  thread_local Scratch slots[2];
  return slots[slot];
}

// The batch is cut into blocks of T samples (the last one of the fewest whole vectors that
// hold the rest), the rows into chunks; a work item is one (block, chunk).
struct Blocks {
  int64_t main_nv, tail_nv, full, count;  // vectors per block, full blocks, all blocks
};

// Vectors per block: 4 (T = 64 float32) from 3 vectors of samples on, 2 from 1.5, else 1;
// sparselth/ops/sparse_linear.py sizes its panels by the same rule (panel_width).
inline Blocks plan_blocks(int64_t B, int L) {
  const int64_t nv = B >= 3 * L ? 4 : 2 * B >= 3 * L ? 2 : 1;
  const int64_t T = nv * L;
  const int64_t full = B / T, rest = B - full * T;
  const int64_t tail = rest == 0 ? 0 : rest <= L ? 1 : rest <= 2 * L ? 2 : 4;
  return {nv, tail, full, full + (rest > 0 ? 1 : 0)};
}

template <typename scalar_t, typename index_t, typename col_t>
struct TileJob {
  const index_t* rp;
  const col_t* col;
  const scalar_t* val;
  const scalar_t* bias;
  bool relu;
  Input<scalar_t> x;
  scalar_t* out;
  int64_t S, H, F, B;
  Blocks blocks;

  int64_t lanes(int64_t b) const {
    return (b < blocks.full ? blocks.main_nv : blocks.tail_nv) * kLanes<scalar_t>;
  }
  int64_t first(int64_t b) const { return b * blocks.main_nv * kLanes<scalar_t>; }

  // f(std::integral_constant<int, T>()) with T the lanes of block b.
  template <typename Fn>
  void with_lanes(int64_t b, const Fn& f) const {
    constexpr int L = kLanes<scalar_t>;
    switch (lanes(b) / L) {
      case 1: f(std::integral_constant<int, L>()); break;
      case 2: f(std::integral_constant<int, 2 * L>()); break;
      default: f(std::integral_constant<int, 4 * L>()); break;
    }
  }
  // Block b packed into xb (F * lanes(b) elements).
  void pack(int64_t b, scalar_t* xb) const {
    with_lanes(b, [&](auto t) {
      constexpr int T = decltype(t)::value;
      pack_block<scalar_t, T>(x, F, first(b), std::min<int64_t>(T, B - first(b)), xb);
    });
  }
  // Rows [h0, h1) of block b from its packed xb, partial sums in ob.
  void run(int64_t b, const scalar_t* xb, int64_t h0, int64_t h1, scalar_t* ob) const {
    with_lanes(b, [&](auto t) {
      constexpr int T = decltype(t)::value;
      tile_product<scalar_t, index_t, col_t, T>(rp, col, val, S, H, h0, h1, xb, ob);
      store_rows<scalar_t, T>(ob, bias, relu, H, h0, h1, first(b),
                              std::min<int64_t>(T, B - first(b)), out);
    });
  }
};

// A block is packed right before its rows run, so its panels come from L2, not L3: one thread
// goes block by block; with at least as many blocks as threads each work item is a whole
// block; otherwise (few blocks) all are packed first and the rows are split between threads.
template <typename scalar_t, typename index_t, typename col_t>
void tiles_launch(const index_t* rp, const col_t* col, const scalar_t* val, int64_t S,
                  Input<scalar_t> x, int64_t B, int64_t F, const scalar_t* bias, bool relu,
                  int64_t H, int64_t nnz, at::Tensor& out) {
  constexpr int L = kLanes<scalar_t>;
  const Blocks blocks = plan_blocks(B, L);
  const int64_t block_size = F * blocks.main_nv * L;   // elements of a packed block
  const TileJob<scalar_t, index_t, col_t> job{rp, col, val, bias, relu, x, out.data_ptr<scalar_t>(),
                                              S, H, F, B, blocks};
  const int64_t threads = (nnz + H) * B < kSerialWork ? 1 : at::get_num_threads();
  const int64_t sums_size = std::min(H, kRowChunk) * blocks.main_nv * L;
  auto buffer = [](int slot, int64_t elements) {
    return static_cast<scalar_t*>(
        scratch(slot).get(sizeof(scalar_t) * static_cast<size_t>(std::max<int64_t>(1, elements))));
  };
  // Whole blocks, each packed into the worker's scratch, rows in chunks of kRowChunk.
  auto whole_blocks = [&](int64_t b0, int64_t b1) {
    scalar_t* xb = buffer(0, block_size);
    scalar_t* ob = buffer(1, sums_size);
    for (int64_t b = b0; b < b1; ++b) {
      job.pack(b, xb);
      for (int64_t h0 = 0; h0 < H; h0 += kRowChunk)
        job.run(b, xb, h0, std::min(H, h0 + kRowChunk), ob);
    }
    scratch(0).trim();
  };
  if (threads <= 1) {
    whole_blocks(0, blocks.count);
    return;
  }
  if (blocks.count >= threads) {
    std::atomic<int64_t> next{0};
    at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
      for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < blocks.count;)
        whole_blocks(b, b + 1);
    });
    return;
  }
  // Fewer blocks than threads: pack them all (this thread's scratch), then two row chunks per
  // thread, handed out dynamically.
  scalar_t* xbuf = buffer(0, blocks.count * block_size);
  for (int64_t b = 0; b < blocks.count; ++b) job.pack(b, xbuf + b * block_size);
  const int64_t chunks = std::max<int64_t>(
      (H + kRowChunk - 1) / kRowChunk,
      std::min<int64_t>((H + 63) / 64, (2 * threads + blocks.count - 1) / blocks.count));
  const int64_t chunk_rows = (H + chunks - 1) / chunks, items = blocks.count * chunks;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, items), 1, [&](int64_t, int64_t) {
    scalar_t* ob = buffer(1, chunk_rows * blocks.main_nv * L);
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const int64_t b = i / chunks, h0 = std::min(H, (i % chunks) * chunk_rows);
      job.run(b, xbuf + b * block_size, h0, std::min(H, h0 + chunk_rows), ob);
    }
  });
  scratch(0).trim();
}

// ------------------------------------------------------------------------------- batch 1

#if defined(__AVX512F__) && defined(__AVX512VL__)
// x[c[0]], ..., x[c[3]] in the lanes of a 128-bit vector: the columns come in 8-byte words
// (4 int16 or 2 int32 each, split with shifts), each x value in one masked broadcast. Measured
// on Zen 4: 4.3 G entries/s, against 2.2 for AVX-512 gathers and 2.8 for scalar loads.
template <typename col_t>
inline __m128 gather4(const float* x, const col_t* c) {
  int64_t c0, c1, c2, c3;
  if constexpr (sizeof(col_t) == 2) {
    uint64_t w;
    std::memcpy(&w, c, 8);
    c0 = static_cast<int16_t>(w);
    c1 = static_cast<int16_t>(w >> 16);
    c2 = static_cast<int16_t>(w >> 32);
    c3 = static_cast<int16_t>(w >> 48);
  } else {
    uint64_t w0, w1;
    std::memcpy(&w0, c, 8);
    std::memcpy(&w1, c + 2, 8);
    c0 = static_cast<int32_t>(w0);
    c1 = static_cast<int32_t>(w0 >> 32);
    c2 = static_cast<int32_t>(w1);
    c3 = static_cast<int32_t>(w1 >> 32);
  }
  __m128 v = _mm_load_ss(x + c0);
  v = _mm_mask_broadcastss_ps(v, 2, _mm_load_ss(x + c1));
  v = _mm_mask_broadcastss_ps(v, 4, _mm_load_ss(x + c2));
  return _mm_mask_broadcastss_ps(v, 8, _mm_load_ss(x + c3));
}

// Lanes of 16 columns at or above f (negative ones too: an unsigned compare).
inline __mmask16 out_of_range16(const int16_t* c, __m512i f) {
  return _mm512_cmpge_epu32_mask(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                     reinterpret_cast<const __m256i*>(c))), f);
}
inline __mmask16 out_of_range16(const int32_t* c, __m512i f) {
  return _mm512_cmpge_epu32_mask(_mm512_loadu_si512(c), f);
}
inline __mmask8 out_of_range4(const int16_t* c, __m128i f) {
  return _mm_cmpge_epu32_mask(_mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c))), f);
}
inline __mmask8 out_of_range4(const int32_t* c, __m128i f) {
  return _mm_cmpge_epu32_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)), f);
}

// sum_{e in [e0, e1)} val[e] * x[col[e]] for float32 with int16/int32 columns, 16 at a time.
// The columns are checked against in_features as they stream (a group with one out of range
// is skipped and sets *bad), so no separate pass over them is needed.
template <typename col_t>
inline float gather_dot_f32(const col_t* col, const float* val, int64_t e0, int64_t e1,
                            const float* x, int64_t F, bool* bad) {
  using ucol_t = std::make_unsigned_t<col_t>;
  const __m512i f = _mm512_set1_epi32(static_cast<int32_t>(std::min<int64_t>(F, INT32_MAX)));
  __m512 acc = _mm512_setzero_ps();
  int64_t e = e0;
  for (; e + 16 <= e1; e += 16) {
    if (out_of_range16(col + e, f) != 0) {
      *bad = true;
      continue;
    }
    const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(gather4(x, col + e)),
                                           gather4(x, col + e + 4), 1);
    const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(gather4(x, col + e + 8)),
                                           gather4(x, col + e + 12), 1);
    const __m512 g = _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(val + e), g, acc);
  }
  __m128 part = _mm_setzero_ps();
  for (; e + 4 <= e1; e += 4) {
    if (out_of_range4(col + e, _mm512_castsi512_si128(f)) != 0) {
      *bad = true;
      continue;
    }
    part = _mm_fmadd_ps(_mm_loadu_ps(val + e), gather4(x, col + e), part);
  }
  acc = _mm512_add_ps(acc, _mm512_zextps128_ps512(part));
  float rest = 0.f;
  for (; e < e1; ++e) {
    if (static_cast<int64_t>(static_cast<ucol_t>(col[e])) >= F) {
      *bad = true;
      continue;
    }
    rest += val[e] * x[static_cast<int64_t>(col[e])];
  }
  return _mm512_reduce_add_ps(acc) + rest;
}
#endif

// Whether batch 1 checks its columns as it streams them (float32, int16/int32 columns).
template <typename scalar_t, typename col_t>
constexpr bool kStreamChecked =
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__)
    std::is_same_v<scalar_t, float> && sizeof(col_t) <= 4;
#else
    false;
#endif

// sum_{e in [e0, e1)} val[e] * x[col[e]], four independent partial sums.
template <typename scalar_t, typename col_t>
inline scalar_t gather_dot(const col_t* col, const scalar_t* val, int64_t e0, int64_t e1,
                           const scalar_t* x) {
  scalar_t a[4] = {0, 0, 0, 0};
  int64_t e = e0;
  for (; e + 4 <= e1; e += 4)
    for (int u = 0; u < 4; ++u) a[u] += val[e + u] * x[static_cast<int64_t>(col[e + u])];
  for (; e < e1; ++e) a[0] += val[e] * x[static_cast<int64_t>(col[e])];
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// out[h] = act(bias[h] + sum over row h's entries); returns whether a column was out of range
// (only looked for where kStreamChecked, else the caller has checked them).
template <typename scalar_t, typename index_t, typename col_t>
bool spmv_launch(const index_t* rp, const col_t* col, const scalar_t* val, int64_t S,
                 const scalar_t* x, int64_t F, const scalar_t* bias, bool relu, int64_t H,
                 int64_t nnz, scalar_t* out) {
  std::atomic<bool> any_bad{false};
  auto rows = [&](int64_t h0, int64_t h1) {
    bool bad = false;
    for (int64_t h = h0; h < h1; ++h) {
      scalar_t acc = bias != nullptr ? bias[h] : scalar_t(0);
      for (int64_t s = 0; s < S; ++s) {
        const int64_t e0 = rp[s * H + h], e1 = rp[s * H + h + 1];
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__)
        if constexpr (kStreamChecked<scalar_t, col_t>) {
          acc += gather_dot_f32(col, val, e0, e1, x, F, &bad);
          continue;
        }
#endif
        acc += gather_dot<scalar_t, col_t>(col, val, e0, e1, x);
      }
      out[h] = relu && acc < scalar_t(0) ? scalar_t(0) : acc;
    }
    if (bad) any_bad.store(true, std::memory_order_relaxed);
  };
  if (nnz < kSerialSpmv || at::get_num_threads() <= 1)
    rows(0, H);
  else
    at::parallel_for(0, H, 256, rows);
  return any_bad.load();
}

// ------------------------------------------------------------------------------- checks

// Every column index in [0, in_features): the kernels index x with them, so this O(nnz) pass
// (vectorised: ~1/10 of a batch-1 product, far less from batch 2 on) runs on every call.
template <typename col_t>
void check_columns(const char* op, const at::Tensor& col, int64_t in_features) {
  if (col.numel() == 0) return;
  col_t lo, hi;
  min_max_vec(col.data_ptr<col_t>(), col.numel(), &lo, &hi);
  TORCH_CHECK_VALUE(lo >= 0 && static_cast<int64_t>(hi) < in_features, op,
                    ": col entries must lie in [0, in_features = ", in_features, "), got [",
                    static_cast<int64_t>(lo), ", ", static_cast<int64_t>(hi), "]");
}

// rowptr non-decreasing (with its ends checked, every segment then lies in [0, nnz)).
template <typename index_t>
void check_rowptr_sorted(const char* op, const at::Tensor& rowptr) {
  using vec_t = typename Simd<index_t, 64>::type;
  constexpr int64_t L = 64 / static_cast<int64_t>(sizeof(index_t));
  const index_t* rp = rowptr.data_ptr<index_t>();
  const int64_t n = rowptr.numel();
  vec_t bad{};
  int64_t i = 1;
  for (; i + L <= n; i += L)
    bad |= load_vec<vec_t>(rp + i) < load_vec<vec_t>(rp + i - 1);
  bool sorted = true;
  for (int64_t l = 0; l < L; ++l) sorted = sorted && bad[l] == 0;
  for (; i < n; ++i) sorted = sorted && rp[i] >= rp[i - 1];
  TORCH_CHECK_VALUE(sorted, op, ": rowptr must be non-decreasing");
}

template <typename scalar_t, typename index_t, typename col_t>
void linear_dispatch(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                     const at::Tensor& x, const c10::optional<at::Tensor>& bias, bool relu,
                     int64_t S, int64_t H, at::Tensor& out) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const col_t* cp = col.data_ptr<col_t>();
  const scalar_t* vp = val.data_ptr<scalar_t>();
  const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
  const int64_t B = x.size(0), F = x.size(1);
  if (B == 1) {
    const at::Tensor xc = x.contiguous();
    if (spmv_launch<scalar_t, index_t, col_t>(rp, cp, vp, S, xc.data_ptr<scalar_t>(), F, bp,
                                              relu, H, col.numel(), out.data_ptr<scalar_t>()))
      check_columns<col_t>("sparse_linear_kernel", col, F);   // raises with the range found
    return;
  }
  const Input<scalar_t> in{x.data_ptr<scalar_t>(), x.stride(0), x.stride(1)};
  tiles_launch<scalar_t, index_t, col_t>(rp, cp, vp, S, in, B, F, bp, relu, H, col.numel(), out);
}

at::Tensor sparse_linear_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                             const c10::optional<at::Tensor>& val, const at::Tensor& x,
                             const c10::optional<at::Tensor>& bias, int64_t out_features,
                             bool relu) {
  const char* op = "sparse_linear_kernel";
  TORCH_CHECK_VALUE(out_features >= 0, op, ": out_features must be >= 0, got ", out_features);
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.numel() >= out_features + 1 &&
                        (out_features == 0 ? rowptr.numel() == 1
                                           : (rowptr.numel() - 1) % out_features == 0),
                    op, ": rowptr must have S * out_features + 1 entries (S >= 1 stacked "
                    "panels), got shape ", rowptr.sizes(), " for out_features = ", out_features);
  TORCH_CHECK_VALUE(col.dim() == 1, op, ": col must be 1-D, got ", col.sizes());
  TORCH_CHECK_TYPE((rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong) &&
                       (col.scalar_type() == rowptr.scalar_type() ||
                        col.scalar_type() == at::kShort),
                   op, ": rowptr must be int32 or int64 and col the same dtype or int16, got ",
                   rowptr.scalar_type(), " and ", col.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be 2-D (batch, in_features), got shape ",
                    x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                   ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.device().is_cpu() && rowptr.device().is_cpu() && col.device().is_cpu(),
                    op, ": all inputs must be CPU tensors");
  if (val.has_value()) {
    TORCH_CHECK_VALUE(val->dim() == 1 && val->numel() == col.numel(), op,
                      ": val must have nnz = ", col.numel(), " entries, got shape ", val->sizes());
    TORCH_CHECK_TYPE(val->scalar_type() == x.scalar_type(), op, ": val has dtype ",
                     val->scalar_type(), " but x has ", x.scalar_type());
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->numel() == out_features, op,
                      ": bias must have shape (", out_features, "), got ", bias->sizes());
    TORCH_CHECK_TYPE(bias->scalar_type() == x.scalar_type(), op, ": bias has dtype ",
                     bias->scalar_type(), " but x has ", x.scalar_type());
  }
  const int64_t H = out_features;
  const int64_t S = H == 0 ? 1 : (rowptr.numel() - 1) / H;
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  // x keeps its layout when either dimension is unit-stride (a transposed view packs faster).
  const at::Tensor xc = (x.stride(1) == 1 || x.stride(0) == 1) ? x : x.contiguous();
  const at::Tensor vc = val.has_value() ? val->contiguous() : at::ones({cl.numel()}, x.options());
  const c10::optional<at::Tensor> bc =
      bias.has_value() ? c10::optional<at::Tensor>(bias->contiguous()) : c10::nullopt;
  at::Tensor out = at::empty({xc.size(0), H}, xc.options());
  AT_DISPATCH_INDEX_TYPES(rp.scalar_type(), "sparse_linear_cpu", [&] {
    check_rowptr_ends<index_t>(op, rp, cl.numel(), S * H);
    check_rowptr_sorted<index_t>(op, rp);
    const bool short_col = cl.scalar_type() == at::kShort;
    // batch 1 in float32 with int16/int32 columns checks them as it streams them
    const bool streamed = xc.size(0) == 1 && H > 0 && xc.scalar_type() == at::kFloat &&
                          (short_col ? kStreamChecked<float, int16_t>
                                     : kStreamChecked<float, index_t>);
    if (!streamed) {
      if (short_col)
        check_columns<int16_t>(op, cl, xc.size(1));
      else
        check_columns<index_t>(op, cl, xc.size(1));
    }
    if (out.numel() == 0) return;
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sparse_linear_cpu", [&] {
      if (short_col)
        linear_dispatch<scalar_t, index_t, int16_t>(rp, cl, vc, xc, bc, relu, S, H, out);
      else
        linear_dispatch<scalar_t, index_t, index_t>(rp, cl, vc, xc, bc, relu, S, H, out);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("sparse_linear_kernel", &sparse_linear_cpu); }

}  // namespace sparselth
