// Register-tiled direct sparse convolution on CPU (schema in csrc/ops.cpp, the kernel core in
// sparse_conv_tiles.h, the Python side in sparselth/ops/sparse_conv.py): inference only; the
// gradients of a sparse convolution run on the shifted-window kernels (shifted_cpu.cpp).
//
// out[n, r, y, x] = bias[r] + sum_{e of row r} val[e] * x[n, c, y * sy + ky * dy - pt,
//                                                        x * sx + kx * dx - pl]
// with zeros outside the input, where entry e's input channel c and tap (ky, kx) are encoded in
// its scratch offset lo[e] (layout in sparse_conv_tiles.h). Entries are grouped by (channel
// block b, row r): those of (b, r) are [blkptr[b * R + r], blkptr[b * R + r + 1]) and read
// input channels in [b * CB, (b + 1) * CB).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "check.h"
#include "alloc.h"
#include "partition.h"
#include "sparse_conv_tiles.h"

namespace sparselth {
namespace {

using conv_tiles::Geometry;
using conv_tiles::Tiling;

constexpr int64_t kSerialWork = 1 << 18;  // MACs below which one thread beats the fork

// A 64-byte aligned, zeroed scratch buffer of n elements owned by the calling thread.
template <typename scalar_t>
scalar_t* thread_scratch(int64_t n) {
  thread_local std::vector<char> buf;
  const size_t bytes = static_cast<size_t>(n) * sizeof(scalar_t) + 64;
  if (buf.size() < bytes) buf.assign(bytes, 0);
  char* p = buf.data();
  p += (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64;
  std::memset(p, 0, static_cast<size_t>(n) * sizeof(scalar_t));
  return reinterpret_cast<scalar_t*>(p);
}

template <typename scalar_t, typename index_t>
void run_tiles(const Geometry& g, const Tiling& t, const at::Tensor& x, const index_t* bp,
               const int32_t* lo, const scalar_t* vp, const scalar_t* biasp,
               const int64_t* first, const int64_t* row_cost, scalar_t* op) {
  const conv_tiles::TileRun<scalar_t, index_t> tr{g, t, x.data_ptr<scalar_t>(), bp, lo, vp,
                                                  biasp, first, op};
  const int64_t nnz = static_cast<int64_t>(bp[t.nblk * g.R]);
  const int64_t work = (nnz + g.R) * g.Ho * g.Wo * g.N;
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  const int64_t outer = t.tile_groups * t.tiles_y * t.tiles_x;
  // Few tiles for the threads: split the output channels too (each part stages its own copy
  // of the input, so no more parts than balancing needs).
  int64_t chunks = 1;
  if (threads > 1 && outer < 2 * threads)
    chunks = std::min<int64_t>(std::max<int64_t>(g.R, 1), (2 * threads + outer - 1) / outer);
  const int64_t scratch = t.scratch_elems(g.KW) + conv_tiles::lanes<scalar_t>();
  parallel_items(outer * chunks, threads, [&](int64_t it) {
    const int64_t k = it % chunks, tile = it / chunks;
    const int64_t tx = tile % t.tiles_x, ty = (tile / t.tiles_x) % t.tiles_y;
    const int64_t grp = tile / (t.tiles_x * t.tiles_y);
    int64_t r0, r1;
    chunk_rows(row_cost, g.R, k, chunks, &r0, &r1);
    if (r0 < r1) tr.run(grp * t.NI, ty, tx, r0, r1, thread_scratch<scalar_t>(scratch));
  });
}

// Smallest and largest of p[0, n) (n > 0), a vector of lanes at a time: a running scalar
// min/max is a chain of n dependent steps, a tenth of the convolution's time on small images.
inline void int32_range(const int32_t* p, int64_t n, int32_t* lo, int32_t* hi) {
  using ivec = Simd<int32_t, conv_tiles::kVecBytes>::type;
  constexpr int64_t L = conv_tiles::kVecBytes / 4;
  ivec mn = broadcast_vec<ivec>(p[0]), mx = mn;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const ivec v = load_vec<ivec>(p + i);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  int32_t a = p[0], b = p[0];
  for (; i < n; ++i) {
    a = std::min(a, p[i]);
    b = std::max(b, p[i]);
  }
  for (int64_t l = 0; l < L; ++l) {
    a = std::min(a, mn[l]);
    b = std::max(b, mx[l]);
  }
  *lo = a;
  *hi = b;
}

// Checks blkptr (monotone, ends at nnz); the first channel block of each row (nblk: none) and
// the per-row entry counts as a prefix (the balance of the row chunks).
template <typename index_t>
void scan_blocks(const char* op, const index_t* bp, int64_t nblk, int64_t R, int64_t nnz,
                 int64_t* first, int64_t* row_cost) {
  TORCH_CHECK_VALUE(bp[0] == 0 && static_cast<int64_t>(bp[nblk * R]) == nnz, op,
                    ": blkptr must start at 0 and end at nnz = ", nnz, ", got ",
                    static_cast<int64_t>(bp[0]), " and ", static_cast<int64_t>(bp[nblk * R]));
  bool sorted = true;
  for (int64_t i = 0; i < nblk * R; ++i) sorted &= bp[i] <= bp[i + 1];
  TORCH_CHECK_VALUE(sorted, op, ": blkptr must be non-decreasing");
  std::fill(first, first + R, nblk);
  std::fill(row_cost, row_cost + R + 1, 0);
  for (int64_t b = nblk - 1; b >= 0; --b)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t n = bp[b * R + r + 1] - bp[b * R + r];
      if (n > 0) first[r] = b;
      row_cost[r + 1] += n;
    }
  for (int64_t r = 0; r < R; ++r) row_cost[r + 1] += row_cost[r];
}

std::array<int64_t, 2> pair_arg(const char* op, const char* name, at::IntArrayRef v,
                                int64_t minimum) {
  TORCH_CHECK_VALUE(v.size() == 2, op, ": ", name, " must have 2 elements, got ", v);
  TORCH_CHECK_VALUE(v[0] >= minimum && v[1] >= minimum, op, ": ", name, " must be >= ",
                    minimum, ", got ", v);
  return {v[0], v[1]};
}

at::Tensor sparse_conv2d_cpu(const at::Tensor& x, const at::Tensor& blkptr, const at::Tensor& lo,
                             const at::Tensor& val, const c10::optional<at::Tensor>& bias,
                             int64_t out_channels, int64_t channel_block,
                             at::IntArrayRef kernel_size, at::IntArrayRef stride,
                             at::IntArrayRef dilation, at::IntArrayRef padding,
                             at::IntArrayRef output_size, at::IntArrayRef tile) {
  constexpr const char* op = "sparse_conv2d";
  TORCH_CHECK_VALUE(x.dim() == 4 && x.is_contiguous(), op,
                    ": x must be a contiguous 4-D tensor (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                   ": x must be float32 or float64 on CPU, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.is_cpu(), op, ": the CPU kernel got x on ", x.device());
  TORCH_CHECK_VALUE(out_channels >= 0 && channel_block >= 1, op,
                    ": out_channels must be >= 0 and channel_block >= 1, got ", out_channels,
                    " and ", channel_block);
  const auto k = pair_arg(op, "kernel_size", kernel_size, 1);
  const auto s = pair_arg(op, "stride", stride, 1);
  const auto d = pair_arg(op, "dilation", dilation, 1);
  const auto p = pair_arg(op, "padding", padding, std::numeric_limits<int64_t>::min() / 4);
  const auto o = pair_arg(op, "output_size", output_size, 0);
  TORCH_CHECK_VALUE(tile.size() == 3, op, ": tile must be [rows, cols, images], got ", tile);
  const Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), out_channels, o[0], o[1],
                   k[0],      k[1],      s[0],      s[1],      d[0],         d[1], p[0], p[1]};
  const int64_t nblk = std::max<int64_t>(1, (g.C + channel_block - 1) / channel_block);
  const int64_t nnz = lo.numel();
  TORCH_CHECK_VALUE(blkptr.dim() == 1 && blkptr.numel() == nblk * out_channels + 1 &&
                        blkptr.is_contiguous(),
                    op, ": blkptr must have shape (ceil(C / channel_block) * out_channels + 1,) = (",
                    nblk * out_channels + 1, ",), got ", blkptr.sizes());
  TORCH_CHECK_TYPE(blkptr.scalar_type() == at::kInt || blkptr.scalar_type() == at::kLong, op,
                   ": blkptr must be int32 or int64, got ", blkptr.scalar_type());
  TORCH_CHECK_VALUE(lo.dim() == 1 && lo.is_contiguous(), op, ": lo must be a contiguous 1-D tensor, got ",
                    lo.sizes());
  TORCH_CHECK_TYPE(lo.scalar_type() == at::kInt, op, ": lo must be int32, got ", lo.scalar_type());
  TORCH_CHECK_VALUE(val.dim() == 1 && val.numel() == nnz && val.is_contiguous(), op,
                    ": val must be contiguous with shape (nnz,) = (", nnz, ",), got ", val.sizes());
  TORCH_CHECK_TYPE(val.scalar_type() == x.scalar_type(), op, ": val dtype ", val.scalar_type(),
                   " differs from x dtype ", x.scalar_type());
  check_same_device(op, "blkptr", blkptr, x);
  check_same_device(op, "lo", lo, x);
  check_same_device(op, "val", val, x);
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->numel() == out_channels && bias->is_contiguous(),
                      op, ": bias must have shape (out_channels,) = (", out_channels, ",)");
    TORCH_CHECK_TYPE(bias->scalar_type() == x.scalar_type(), op, ": bias dtype must equal x's");
    check_same_device(op, "bias", *bias, x);
  }
  at::Tensor out = empty_large({g.N, g.R, g.Ho, g.Wo}, x.scalar_type());
  if (out.numel() == 0) return out;
  Tiling t;
  const int64_t V = x.scalar_type() == at::kFloat ? conv_tiles::lanes<float>()
                                                  : conv_tiles::lanes<double>();
  const char* why = conv_tiles::make_tiling(g, V, channel_block, tile[0], tile[1], tile[2], &t);
  TORCH_CHECK_VALUE(why == nullptr, op, ": tile ", tile, " cannot run on a ", g.Ho, "x", g.Wo,
                    " output of ", g.N, " images: ", why ? why : "");
  const int64_t max_lo = t.max_offset(g.KW);
  TORCH_CHECK_VALUE(max_lo < (int64_t(1) << 31), op, ": channel_block ", channel_block,
                    " needs too large a scratch buffer");
  if (nnz > 0) {
    int32_t lmin = 0, lmax = 0;
    int32_range(lo.data_ptr<int32_t>(), nnz, &lmin, &lmax);
    TORCH_CHECK_VALUE(lmin >= 0 && lmax <= max_lo, op, ": lo must lie in [0, ", max_lo,
                      "] for this tile, got min ", lmin, " max ", lmax);
  }
  std::vector<int64_t> first(g.R), row_cost(g.R + 1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv2d_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(blkptr.scalar_type(), "sparse_conv2d_cpu_index", [&] {
      const index_t* bp = blkptr.data_ptr<index_t>();
      scan_blocks<index_t>(op, bp, nblk, g.R, nnz, first.data(), row_cost.data());
      run_tiles<scalar_t, index_t>(g, t, x, bp, lo.data_ptr<int32_t>(), val.data_ptr<scalar_t>(),
                                   bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr,
                                   first.data(), row_cost.data(), out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("sparse_conv2d_kernel", &sparse_conv2d_cpu); }

}  // namespace sparselth
