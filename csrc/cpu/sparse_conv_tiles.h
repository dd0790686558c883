// Register-tiled direct sparse convolution: the core of csrc/cpu/sparse_conv_cpu.cpp, free of
// ATen so that it can be built and timed on its own.
//
// Output NCHW, weights by output channel (the XNNPACK sparse-inference design, extended from
// 1x1 to any kernel): a tile of vectors of output positions (NI images x a TH x TW block of
// each) stays in registers while the stored weights of one output channel stream past, each
// loaded weight reused across up to kMaxVecs vectors:
//
//   acc[v] += val[e] * scratch[lo[e] + offset(v)]        for e in the entries of (block, row)
//
// `scratch` holds the tile's input window for a block of CB input channels, once per kernel
// column kx and row phase (stride > 1 splits rows into phases): KW copies shifted so that every
// tap reads an aligned window (misaligned 64-byte loads run at ~0.7 of aligned ones on Zen 4),
// small enough (tens of KB) to stay in L1 while every output channel passes over it. Partial
// sums of a channel block go through the output tensor (the first block of a row starts from
// the bias), so one (block, row) visit costs a vector load and store per accumulator against
// (entries of the visit) FMAs per accumulator. Entries are grouped by (channel block, output
// channel), so the weight stream is sequential while a block is staged.
//
// The scratch layout does not depend on the vector width (sparselth/ops/sparse_conv.py computes
// the entry offsets once per plan and input size):
//   copy (c_local, kx, phase) at ((c_local * KW + kx) * PY + phase) * BS, image i at i * IS,
//   row rr of the window at rr * TW;  IS = round16(round16(TH * TW) + reach * TW), BS = NI * IS;
//   lo[e] = ((c_local * KW + kx) * PY + phase(ky)) * BS + shift(ky) * TW,
// where ky * dy = shift(ky) * sy + phase_row[phase(ky)] and phases are numbered in order of
// first appearance over ky = 0, 1, ...
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace sparselth {
namespace conv_tiles {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;  // one zmm register per vector
#else
constexpr int kVecBytes = 32;  // one ymm register (two NEON registers) per vector
#endif
// Accumulator vectors per visit: 8 leaves room for the broadcast weight and load temporaries in
// 16 registers (AVX2) and hides the FMA latency (4 cycles at 2 per cycle).
constexpr int kMaxVecs = 8;
constexpr int64_t kMaxTileVecs = 64;  // vectors of one image's tile (visited kMaxVecs at a time)
constexpr int64_t kMaxRowVecs = 16;   // vectors of one scratch row (TW <= 16 V)
constexpr int64_t kMaxKW = 16;        // kernel columns
constexpr int64_t kAlign = 16;  // elements: the layout's unit (a multiple of every lane count)

template <typename scalar_t>
constexpr int64_t lanes() { return kVecBytes / static_cast<int64_t>(sizeof(scalar_t)); }
static_assert(kAlign % lanes<float>() == 0 && kAlign % lanes<double>() == 0,
              "the layout's unit must hold whole vectors");

// out[n, r, y, x] = bias[r] + sum val * in[n, c, y * sy + ky * dy - pt, x * sx + kx * dx - pl]
// over the stored (r, c, ky, kx); reads outside the (N, C, H, W) input are zeros.
struct Geometry {
  int64_t N, C, H, W, R, Ho, Wo;
  int64_t KH, KW, sy, sx, dy, dx, pt, pl;
};

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

struct Group { int64_t img0, nimg, j0, nvec; };  // accumulators of one visit

struct Tiling {
  int64_t CB = 1, nblk = 1;      // input channels per channel block, channel blocks
  int64_t TH = 1, TW = 1, NI = 1;  // output rows x columns per image, images per tile
  bool flat = true;              // TW == Wo: vectors run across rows; else TW % V == 0
  int64_t V = 1, VI = 1;         // lanes, vectors per image
  int64_t PY = 1, reach = 0;     // row phases, largest row shift (in rows of a phase)
  int64_t IS = 0, BS = 0;        // scratch elements per (copy, image), per copy (NI * IS)
  int64_t tiles_y = 1, tiles_x = 1, tile_groups = 1;
  std::vector<int64_t> phase_of, shift_of;  // per ky: phase index, row shift
  std::vector<int64_t> phase_row;            // per phase index: the phase (0 <= p < sy)
  std::vector<Group> groups;                 // the visits that cover a tile's vectors
  int64_t scratch_elems(int64_t KW) const { return CB * KW * PY * BS; }
  // Largest entry offset whose reads stay inside the scratch.
  int64_t max_offset(int64_t KW) const {
    return scratch_elems(KW) - ((NI - 1) * IS + round_up(TH * TW, kAlign));
  }
};

// The tiling of `g` with V lanes, channel blocks of CB and tiles of TH x TW x NI. Returns
// nullptr, or why such tiles cannot run.
inline const char* make_tiling(const Geometry& g, int64_t V, int64_t CB, int64_t TH,
                               int64_t TW, int64_t NI, Tiling* t) {
  if (TH < 1 || TW < 1 || NI < 1) return "tile sizes must be >= 1";
  if (TW > g.Wo) return "the tile is wider than the output";
  if (TH > g.Ho) return "the tile is taller than the output";
  if (TW < g.Wo && TW % kAlign != 0) return "a tile narrower than the output must be a multiple of 16 wide";
  if (NI > 1 && TH != g.Ho) return "several images per tile need whole-image tiles";
  if (NI > g.N) return "more images per tile than in the batch";
  t->CB = CB;
  t->nblk = std::max<int64_t>(1, (g.C + CB - 1) / CB);
  t->TH = TH;
  t->TW = TW;
  t->NI = NI;
  t->flat = TW == g.Wo;
  t->V = V;
  t->VI = (TH * TW + V - 1) / V;
  if (t->VI > kMaxTileVecs) return "the tile holds more than 64 vectors";
  if ((TW + V - 1) / V > kMaxRowVecs) return "the tile is more than 16 vectors wide";
  if (g.KW > kMaxKW) return "the kernel is more than 16 columns wide";
  t->phase_of.assign(g.KH, 0);
  t->shift_of.assign(g.KH, 0);
  t->phase_row.clear();
  t->reach = 0;
  for (int64_t ky = 0; ky < g.KH; ++ky) {
    const int64_t o = ky * g.dy, p = o % g.sy;
    auto it = std::find(t->phase_row.begin(), t->phase_row.end(), p);
    if (it == t->phase_row.end()) it = t->phase_row.insert(t->phase_row.end(), p);
    t->phase_of[ky] = it - t->phase_row.begin();
    t->shift_of[ky] = o / g.sy;
    t->reach = std::max(t->reach, t->shift_of[ky]);
  }
  t->PY = static_cast<int64_t>(t->phase_row.size());
  t->IS = round_up(round_up(TH * TW, kAlign) + t->reach * TW, kAlign);
  t->BS = NI * t->IS;
  t->tiles_y = (g.Ho + TH - 1) / TH;
  t->tiles_x = (g.Wo + TW - 1) / TW;
  t->tile_groups = (g.N + NI - 1) / NI;
  t->groups.clear();
  if (t->VI <= kMaxVecs) {  // whole images per visit
    const int64_t per = std::max<int64_t>(1, kMaxVecs / t->VI);
    for (int64_t i = 0; i < NI; i += per) t->groups.push_back({i, std::min(per, NI - i), 0, t->VI});
  } else {                  // one image per visit, kMaxVecs vectors at a time
    for (int64_t i = 0; i < NI; ++i)
      for (int64_t j = 0; j < t->VI; j += kMaxVecs)
        t->groups.push_back({i, 1, j, std::min<int64_t>(kMaxVecs, t->VI - j)});
  }
  return nullptr;
}

// How a tile's input rows are copied into the scratch, worked out once per tile: for kernel
// column kx, scratch column xx holds input column xin0[kx] + xx * sx, which lies inside the
// input for xx in [xa[kx], xb[kx]); with stride 1, vector q of a row has lanes [lo, hi) there.
struct RowCopies {
  int64_t xin0[kMaxKW], xa[kMaxKW], xb[kMaxKW];
  int8_t lo[kMaxKW][kMaxRowVecs], hi[kMaxKW][kMaxRowVecs];
};

// dst[0, TW) = in_row[xin0 + xx * sx], zeros outside the input (columns of `rc` for kx). With
// stride 1 whole vectors (masked loads at the edges): the last one may write up to V - 1
// elements past dst + TW.
template <typename scalar_t>
inline void stage_row(const scalar_t* in_row, const RowCopies& rc, int64_t kx, int64_t sx,
                      int64_t TW, scalar_t* dst) {
  using vec = typename Simd<scalar_t, kVecBytes>::type;
  constexpr int64_t V = lanes<scalar_t>();
  const scalar_t* src = in_row + rc.xin0[kx];
  if (sx == 1) {
    for (int64_t xx = 0, q = 0; xx < TW; xx += V, ++q) {
      const int64_t lo = rc.lo[kx][q], hi = rc.hi[kx][q];
      const vec v = lo == 0 && hi == V ? load_vec<vec>(src + xx)
                    : lo == hi         ? broadcast_vec<vec>(scalar_t(0))
                                       : load_vec_range<vec>(src + xx, lo, hi);
      std::memcpy(dst + xx, &v, sizeof(vec));
    }
    return;
  }
  const int64_t xa = rc.xa[kx], xb = rc.xb[kx];
  for (int64_t xx = 0; xx < xa; ++xx) dst[xx] = scalar_t(0);
  for (int64_t xx = xa; xx < xb; ++xx) dst[xx] = src[xx * sx];
  for (int64_t xx = xb; xx < TW; ++xx) dst[xx] = scalar_t(0);
}

// dst[0, n) = 0 (whole vectors: up to V - 1 elements past dst + n).
template <typename scalar_t>
inline void zero_row(scalar_t* dst, int64_t n) {
  using vec = typename Simd<scalar_t, kVecBytes>::type;
  constexpr int64_t V = lanes<scalar_t>();
  const vec z = broadcast_vec<vec>(scalar_t(0));
  for (int64_t xx = 0; xx < n; xx += V) std::memcpy(dst + xx, &z, sizeof(vec));
}

// The visits of rows [r0, r1) to one staged channel block (the block's entries of row r are
// [bp[r], bp[r + 1])): for each row with entries, NI images x VI vectors start from the bias
// (the row's first block, first[r] == blk; rows without entries, first[r] == nblk, get the
// bias alone at block 0) or from the partial sums at
// dst_r + i * img_stride + ooff[j] (dst_r = dst + r * row_stride; m[j] valid lanes, FULL: all),
// take the entries and go back. Images i >= nvalid are neither read nor written. scr points at
// the first image and vector of the visit. Out of line: inlined into its caller, GCC 12 keeps
// the accumulators on the stack inside the entry loop.
template <typename scalar_t, typename index_t, int NI, int VI, bool FULL>
__attribute__((noinline)) void visit_rows(const index_t* bp, int64_t r0, int64_t r1, int64_t blk,
                                          int64_t nblk, const int64_t* first, const scalar_t* bias,
                                          const int32_t* lo, const scalar_t* val,
                                          const scalar_t* scr, int64_t IS, scalar_t* dst,
                                          int64_t row_stride, int64_t img_stride, int64_t nvalid,
                                          const int64_t* ooff, const int64_t* m) {
  using vec = typename Simd<scalar_t, kVecBytes>::type;
  constexpr int64_t V = lanes<scalar_t>();
  static_assert(NI * VI <= kMaxVecs, "a visit holds at most kMaxVecs accumulators");
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t e0 = bp[r], e1 = bp[r + 1];
    if (e0 == e1 && !(blk == 0 && first[r] == nblk)) continue;  // (no entries: the bias)
    const bool from_bias = first[r] >= blk;
    const scalar_t b = bias != nullptr ? bias[r] : scalar_t(0);
    scalar_t* d = dst + r * row_stride;
    vec acc[NI * VI];
#pragma GCC unroll 8
    for (int i = 0; i < NI; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < VI; ++j) {
        vec& a = acc[i * VI + j];
        const scalar_t* src = d + i * img_stride + ooff[j];
        if (from_bias || (!FULL && i >= nvalid)) {
          a = broadcast_vec<vec>(b);
        } else if (FULL || m[j] == V) {
          a = load_vec<vec>(src);
        } else {
          vec part = broadcast_vec<vec>(scalar_t(0));  // a copy: acc's address is never taken
          std::memcpy(&part, src, m[j] * sizeof(scalar_t));
          a = part;
        }
      }
    for (int64_t e = e0; e < e1; ++e) {
      const scalar_t* s = scr + lo[e];
      const vec w = broadcast_vec<vec>(val[e]);
#pragma GCC unroll 8
      for (int i = 0; i < NI; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < VI; ++j) acc[i * VI + j] += w * load_vec<vec>(s + i * IS + j * V);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NI; ++i) {
      if (!FULL && i >= nvalid) continue;
#pragma GCC unroll 8
      for (int j = 0; j < VI; ++j) {
        const vec a = acc[i * VI + j];
        scalar_t* to = d + i * img_stride + ooff[j];
        if (FULL || m[j] == V) std::memcpy(to, &a, sizeof(vec));
        else std::memcpy(to, &a, m[j] * sizeof(scalar_t));
      }
    }
  }
}

template <typename scalar_t, typename index_t>
using VisitFn = void (*)(const index_t*, int64_t, int64_t, int64_t, int64_t, const int64_t*,
                         const scalar_t*, const int32_t*, const scalar_t*, const scalar_t*,
                         int64_t, scalar_t*, int64_t, int64_t, int64_t, const int64_t*,
                         const int64_t*);

// The visits of a group of nimg images x nvec vectors.
template <typename scalar_t, typename index_t, bool FULL>
VisitFn<scalar_t, index_t> visit_for(int64_t nimg, int64_t nvec) {
#define SPARSELTH_VISIT(ni, vi) \
  if (nimg == ni && nvec == vi) return &visit_rows<scalar_t, index_t, ni, vi, FULL>;
  SPARSELTH_VISIT(1, 1) SPARSELTH_VISIT(1, 2) SPARSELTH_VISIT(1, 3) SPARSELTH_VISIT(1, 4)
  SPARSELTH_VISIT(1, 5) SPARSELTH_VISIT(1, 6) SPARSELTH_VISIT(1, 7) SPARSELTH_VISIT(1, 8)
  SPARSELTH_VISIT(2, 1) SPARSELTH_VISIT(2, 2) SPARSELTH_VISIT(2, 3) SPARSELTH_VISIT(2, 4)
  SPARSELTH_VISIT(3, 1) SPARSELTH_VISIT(3, 2) SPARSELTH_VISIT(4, 1) SPARSELTH_VISIT(4, 2)
  SPARSELTH_VISIT(5, 1) SPARSELTH_VISIT(6, 1) SPARSELTH_VISIT(7, 1) SPARSELTH_VISIT(8, 1)
#undef SPARSELTH_VISIT
  return nullptr;
}

// A tile's work: images [n0, n0 + NI), output rows [y0, y0 + TH), columns [x0, x0 + TW),
// output channels [r0, r1). `scr` holds scratch_elems(KW) + lanes elements (the caller's,
// reused; staging writes whole vectors, in increasing address order).
template <typename scalar_t, typename index_t>
struct TileRun {
  const Geometry& g;
  const Tiling& t;
  const scalar_t* in;       // (N, C, H, W)
  const index_t* blkptr;    // (nblk * R + 1,)
  const int32_t* lo;        // (nnz,)
  const scalar_t* val;      // (nnz,)
  const scalar_t* bias;     // (R,) or nullptr
  const int64_t* first;     // (R,): the first channel block with entries of each row (nblk: none)
  scalar_t* out;            // (N, R, Ho, Wo)

  void row_copies(int64_t x0, RowCopies* rc) const {
    const int64_t V = t.V;
    for (int64_t kx = 0; kx < g.KW; ++kx) {
      const int64_t xin0 = x0 * g.sx + kx * g.dx - g.pl;
      rc->xin0[kx] = xin0;
      // xx in [xa, xb) <=> 0 <= xin0 + xx * sx < W
      const int64_t xa = xin0 >= 0 ? 0 : (-xin0 + g.sx - 1) / g.sx;
      const int64_t xb = g.W - xin0 <= 0 ? 0 : (g.W - xin0 + g.sx - 1) / g.sx;
      rc->xa[kx] = std::min(xa, t.TW);
      rc->xb[kx] = std::clamp<int64_t>(xb, rc->xa[kx], t.TW);
      for (int64_t xx = 0, q = 0; xx < t.TW; xx += V, ++q) {
        const int64_t lo = std::clamp<int64_t>(rc->xa[kx] - xx, 0, V);
        rc->lo[kx][q] = static_cast<int8_t>(lo);
        rc->hi[kx][q] = static_cast<int8_t>(std::clamp<int64_t>(rc->xb[kx] - xx, lo, V));
      }
    }
  }

  // Input row of phase pi, window row rr (-1: outside the input).
  int64_t input_row(int64_t y0, int64_t pi, int64_t rr) const {
    const int64_t yi = (y0 + rr) * g.sy + t.phase_row[pi] - g.pt;
    return yi >= 0 && yi < g.H ? yi : -1;
  }

  using lane_int = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;

  // Whole-plane copies are possible: every window row is a whole input row (stride 1, the
  // output as wide as the input), so a copy is one contiguous run of the input with the columns
  // that a kx shift wraps into the neighbouring row cleared (`wrap`: per kx, lane masks over the
  // window; empty when no column of kx wraps).
  bool contiguous() const { return t.flat && g.sx == 1 && g.sy == 1 && g.Wo == g.W; }

  void wrap_masks(std::vector<std::vector<lane_int>>* wrap) const {
    const int64_t n = (t.TH + t.reach) * t.TW + t.V;
    wrap->assign(g.KW, {});
    for (int64_t kx = 0; kx < g.KW; ++kx) {
      const int64_t shift = kx * g.dx - g.pl;
      if (shift == 0) continue;
      (*wrap)[kx].resize(n);
      for (int64_t p = 0; p < n; ++p) {
        const int64_t xi = p % t.TW + shift;
        (*wrap)[kx][p] = xi >= 0 && xi < g.W ? lane_int(-1) : lane_int(0);
      }
    }
  }

  // dst[0, rows * TW) = the window of one (channel, kx) copy of one image, by whole planes.
  void stage_plane(const scalar_t* plane, int64_t y0, int64_t kx, const lane_int* wrap,
                   scalar_t* dst) const {
    using vec = typename Simd<scalar_t, kVecBytes>::type;
    using ivec = typename Simd<lane_int, kVecBytes>::type;
    constexpr int64_t V = lanes<scalar_t>();
    const int64_t rows = t.TH + t.reach, HW = g.H * g.W;
    const int64_t ra = std::clamp<int64_t>(g.pt - y0, 0, rows);
    const int64_t rb = std::clamp<int64_t>(g.H + g.pt - y0, ra, rows);
    zero_row(dst, ra * t.TW);
    const int64_t n = (rb - ra) * t.TW, s0 = (y0 + ra - g.pt) * g.W + kx * g.dx - g.pl;
    const int64_t end = std::min(n, HW - s0);  // copy positions [0, n) read plane[s0 + p]
    scalar_t* d = dst + ra * t.TW;
    for (int64_t p = 0; p < n; p += V) {
      const int64_t lo = std::clamp<int64_t>(-(s0 + p), 0, V);
      const int64_t hi = std::clamp<int64_t>(end - p, lo, V);
      vec v = lo == 0 && hi == V ? load_vec<vec>(plane + s0 + p)
              : lo == hi         ? broadcast_vec<vec>(scalar_t(0))
                                 : load_vec_range<vec>(plane + s0 + p, lo, hi);
      if (wrap != nullptr) {
        ivec bits;
        std::memcpy(&bits, &v, sizeof(vec));
        bits &= load_vec<ivec>(wrap + ra * t.TW + p);
        std::memcpy(&v, &bits, sizeof(vec));
      }
      std::memcpy(d + p, &v, sizeof(vec));
    }
    zero_row(dst + rb * t.TW, (rows - rb) * t.TW);
  }

  void stage(int64_t b, int64_t n0, int64_t y0, const RowCopies& rc,
             const std::vector<std::vector<lane_int>>& wrap, scalar_t* scr) const {
    const int64_t c0 = b * t.CB, c1 = std::min(g.C, c0 + t.CB);
    const int64_t rows = t.TH + t.reach;
    if (contiguous()) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t kx = 0; kx < g.KW; ++kx) {
          scalar_t* copy = scr + ((c - c0) * g.KW + kx) * t.BS;
          const lane_int* w = wrap[kx].empty() ? nullptr : wrap[kx].data();
          for (int64_t i = 0; i < t.NI && n0 + i < g.N; ++i)
            stage_plane(in + ((n0 + i) * g.C + c) * g.H * g.W, y0, kx, w, copy + i * t.IS);
        }
      return;
    }
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t kx = 0; kx < g.KW; ++kx)
        for (int64_t pi = 0; pi < t.PY; ++pi) {
          scalar_t* copy = scr + (((c - c0) * g.KW + kx) * t.PY + pi) * t.BS;
          for (int64_t i = 0; i < t.NI && n0 + i < g.N; ++i) {  // (images past N: never stored)
            scalar_t* dst = copy + i * t.IS;
            const scalar_t* plane = in + ((n0 + i) * g.C + c) * g.H * g.W;
            for (int64_t rr = 0; rr < rows; ++rr) {
              const int64_t yi = input_row(y0, pi, rr);
              if (yi < 0) zero_row(dst + rr * t.TW, t.TW);
              else stage_row(plane + yi * g.W, rc, kx, g.sx, t.TW, dst + rr * t.TW);
            }
          }
        }
  }

  // Asks for block b's input rows to be in cache by the time it is staged.
  void prefetch(int64_t b, int64_t n0, int64_t y0, const RowCopies& rc) const {
    const int64_t c0 = b * t.CB, c1 = std::min(g.C, c0 + t.CB);
    const int64_t rows = t.TH + t.reach;
    const int64_t x_lo = std::max<int64_t>(0, rc.xin0[0]);
    const int64_t x_hi = std::min(g.W, rc.xin0[g.KW - 1] + t.TW * g.sx);
    if (x_hi <= x_lo) return;
    for (int64_t i = 0; i < t.NI && n0 + i < g.N; ++i)
      for (int64_t c = c0; c < c1; ++c) {
        const scalar_t* plane = in + ((n0 + i) * g.C + c) * g.H * g.W;
        for (int64_t pi = 0; pi < t.PY; ++pi)
          for (int64_t rr = 0; rr < rows; ++rr) {
            const int64_t yi = input_row(y0, pi, rr);
            if (yi < 0) continue;
            const char* p0 = reinterpret_cast<const char*>(plane + yi * g.W + x_lo);
            const char* p1 = reinterpret_cast<const char*>(plane + yi * g.W + x_hi);
            for (const char* p = p0; p < p1; p += 64) __builtin_prefetch(p, 0, 3);
            __builtin_prefetch(p1 - 1, 0, 3);
          }
      }
  }

  void run(int64_t n0, int64_t ty, int64_t tx, int64_t r0, int64_t r1, scalar_t* scr) const {
    const int64_t V = t.V, y0 = ty * t.TH, x0 = tx * t.TW;
    // Output offset and valid lanes of each vector of an image's tile.
    int64_t ooff[kMaxTileVecs], m[kMaxTileVecs];
    const int64_t per_row = std::max<int64_t>(1, t.TW / V);
    for (int64_t j = 0; j < t.VI; ++j) {
      if (t.flat) {
        const int64_t valid = std::min(t.TH, g.Ho - y0) * g.Wo;
        ooff[j] = j * V;
        m[j] = std::clamp<int64_t>(valid - j * V, 0, V);
      } else {
        const int64_t yy = j / per_row, xx = (j % per_row) * V;
        ooff[j] = yy * g.Wo + xx;
        m[j] = y0 + yy < g.Ho ? std::clamp<int64_t>(g.Wo - x0 - xx, 0, V) : 0;
      }
    }
    // Each group's visits, resolved once per tile (full: every lane of every image stored).
    struct Call {
      VisitFn<scalar_t, index_t> fn;
      int64_t scr_off, dst_off, nvalid, j0;
    };
    Call calls[kMaxTileVecs];
    int64_t ncalls = 0;
    const int64_t HWo = g.Ho * g.Wo, R = g.R, img_stride = R * HWo;
    for (const Group& gr : t.groups) {
      const int64_t nvalid = std::clamp<int64_t>(g.N - (n0 + gr.img0), 0, gr.nimg);
      bool full = nvalid == gr.nimg;
      for (int64_t j = gr.j0; j < gr.j0 + gr.nvec; ++j) full &= m[j] == V;
      if (nvalid > 0)
        calls[ncalls++] = {full ? visit_for<scalar_t, index_t, true>(gr.nimg, gr.nvec)
                                : visit_for<scalar_t, index_t, false>(gr.nimg, gr.nvec),
                           gr.img0 * t.IS + gr.j0 * V, gr.img0 * img_stride, nvalid, gr.j0};
    }
    scalar_t* base = out + n0 * img_stride + y0 * g.Wo + x0;
    RowCopies rc;
    row_copies(x0, &rc);
    std::vector<std::vector<lane_int>> wrap;
    if (contiguous()) wrap_masks(&wrap);
    for (int64_t blk = 0; blk < t.nblk; ++blk) {
      const index_t* bp = blkptr + blk * R;
      // (block 0 also writes the bias of rows without entries)
      if (bp[r0] == bp[r1] && blk > 0) continue;
      if (bp[r0] != bp[r1]) stage(blk, n0, y0, rc, wrap, scr);
      if (blk + 1 < t.nblk) prefetch(blk + 1, n0, y0, rc);
      for (int64_t k = 0; k < ncalls; ++k) {
        const Call& c = calls[k];
        c.fn(bp, r0, r1, blk, t.nblk, first, bias, lo, val, scr + c.scr_off, t.IS, base + c.dst_off, HWo,
             img_stride, c.nvalid, ooff + c.j0, m + c.j0);
      }
    }
  }
};

}  // namespace conv_tiles
}  // namespace sparselth
