// Sparse linear layer on CPU in the row-major layout (schema in csrc/ops.cpp):
//
//   out[n, h] = bias[h] + sum_{e in row h of W} val[e] * x[n, col[e]]
//
// for x (B, F) and out (B, H) row-major and W a CSR (H, F). Samples go in blocks of S: a block
// of x is transposed once into a small (F, S) buffer that stays in cache, every output feature
// h accumulates the buffer rows its stored weights name in S-lane vector registers, and the
// (H, S) block of results is transposed back into out with the bias. Neither a (F, B) copy of
// the input nor a (H, B) copy of the output is made: at large B those two global transposes
// cost more than the sparse product itself (PubMed-size layer: 34 ms of transpose for a 25 ms
// product), which is what the SpMM-over-x^T route pays.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
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

constexpr int64_t kBufferBytes = 256 * 1024;  // the (F, S) block of x: at most half an L2
constexpr int64_t kSerialWork = 1 << 18;      // MACs below which one thread beats the fork
constexpr int64_t kTransposeTile = 16;        // square tiles of the two block transposes

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

// xt[f * S + i] = x[(n0 + i) * F + f] for float32, 16x16 tiles through registers.
template <int S>
inline void load_block_f32(const float* x, int64_t F, int64_t n0, int64_t nb, float* xt) {
  __m512 r[16];
  for (int64_t ib = 0; ib < S; ib += 16) {
    const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, nb - ib));
    for (int64_t fb = 0; fb < F; fb += 16) {
      const int64_t w = std::min<int64_t>(16, F - fb);
      const __mmask16 m = static_cast<__mmask16>(w == 16 ? 0xFFFF : (1u << w) - 1);
      for (int k = 0; k < 16; ++k)
        r[k] = k < rows ? _mm512_maskz_loadu_ps(m, x + (n0 + ib + k) * F + fb) : _mm512_setzero_ps();
      transpose16(r);
      for (int k = 0; k < w; ++k) _mm512_storeu_ps(xt + (fb + k) * S + ib, r[k]);
    }
  }
}

// out[(n0 + i) * H + h] = ot[h * S + i] + bias[h] for float32, 16x16 tiles through registers.
template <int S>
inline void store_block_f32(const float* ot, const float* bias, int64_t H, int64_t n0, int64_t nb,
                            float* out) {
  __m512 r[16];
  for (int64_t hb = 0; hb < H; hb += 16) {
    const int64_t w = std::min<int64_t>(16, H - hb);
    const __mmask16 m = static_cast<__mmask16>(w == 16 ? 0xFFFF : (1u << w) - 1);
    const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(m, bias + hb) : _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 16) {
      for (int k = 0; k < 16; ++k)
        r[k] = k < w ? _mm512_loadu_ps(ot + (hb + k) * S + ib) : _mm512_setzero_ps();
      transpose16(r);
      const int64_t rows = std::min<int64_t>(16, nb - ib);
      for (int k = 0; k < rows; ++k)
        _mm512_mask_storeu_ps(out + (n0 + ib + k) * H + hb, m, _mm512_add_ps(r[k], b));
    }
  }
}
#endif

// xt[f * S + i] = x[(n0 + i) * F + f] for i < nb, zero for nb <= i < S.
template <typename scalar_t, int S>
inline void load_block(const scalar_t* x, int64_t F, int64_t n0, int64_t nb, scalar_t* xt) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<scalar_t, float> && S % 16 == 0) {
    load_block_f32<S>(x, F, n0, nb, xt);
    return;
  }
#endif
  if (nb < S) std::fill(xt, xt + F * S, scalar_t(0));
  for (int64_t ib = 0; ib < nb; ib += kTransposeTile) {
    const int64_t ie = std::min<int64_t>(nb, ib + kTransposeTile);
    for (int64_t fb = 0; fb < F; fb += kTransposeTile) {
      const int64_t fe = std::min<int64_t>(F, fb + kTransposeTile);
      for (int64_t i = ib; i < ie; ++i) {
        const scalar_t* xr = x + (n0 + i) * F;
        for (int64_t f = fb; f < fe; ++f) xt[f * S + i] = xr[f];
      }
    }
  }
}

// ot[h * S + i] = sum_{e in row h} val[e] * xt[col[e] * S + i], in S / L vector registers.
template <typename scalar_t, typename index_t, bool HAS_VAL, int S>
inline void block_product(const index_t* rp, const index_t* col, const scalar_t* val, int64_t H,
                          const scalar_t* xt, scalar_t* ot) {
  constexpr int kBytes = S * sizeof(scalar_t) < 64 ? S * sizeof(scalar_t) : 64;
  using vec_t = typename Simd<scalar_t, kBytes>::type;
  constexpr int L = sizeof(vec_t) / sizeof(scalar_t);
  static_assert(S % L == 0, "a block is whole vectors");
  constexpr int NV = S / L;
  for (int64_t h = 0; h < H; ++h) {
    vec_t acc[NV];
    for (int k = 0; k < NV; ++k) acc[k] = vec_t{};
    const int64_t e1 = rp[h + 1];
    for (int64_t e = rp[h]; e < e1; ++e) {
      const scalar_t* p = xt + static_cast<int64_t>(col[e]) * S;
      const vec_t v = vec_t{} + (HAS_VAL ? val[e] : scalar_t(1));
      for (int k = 0; k < NV; ++k) acc[k] += v * load_vec<vec_t>(p + k * L);
    }
    std::memcpy(ot + h * S, acc, sizeof(acc));
  }
}

// out[(n0 + i) * H + h] = ot[h * S + i] + bias[h] for i < nb.
template <typename scalar_t, int S>
inline void store_block(const scalar_t* ot, const scalar_t* bias, int64_t H, int64_t n0,
                        int64_t nb, scalar_t* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<scalar_t, float> && S % 16 == 0) {
    store_block_f32<S>(ot, bias, H, n0, nb, out);
    return;
  }
#endif
  for (int64_t hb = 0; hb < H; hb += kTransposeTile) {
    const int64_t he = std::min<int64_t>(H, hb + kTransposeTile);
    for (int64_t i = 0; i < nb; ++i) {
      scalar_t* orow = out + (n0 + i) * H;
      for (int64_t h = hb; h < he; ++h)
        orow[h] = ot[h * S + i] + (bias != nullptr ? bias[h] : scalar_t(0));
    }
  }
}

template <typename scalar_t, typename index_t, bool HAS_VAL, int S>
void linear_launch(const at::Tensor& rowptr, const at::Tensor& col,
                   const c10::optional<at::Tensor>& val, const at::Tensor& x,
                   const c10::optional<at::Tensor>& bias, at::Tensor& out) {
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  const scalar_t* vp = HAS_VAL ? val->data_ptr<scalar_t>() : nullptr;
  const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t B = x.size(0), F = x.size(1), H = out.size(1);
  const int64_t blocks = (B + S - 1) / S;
  const int64_t work = (col.numel() + H) * B;
  const int64_t threads = work < kSerialWork ? 1 : at::get_num_threads();
  // Each call of body gets its own buffers, so a thread allocates once per item range.
  auto body = [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> xt(static_cast<size_t>(F * S)), ot(static_cast<size_t>(H * S));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * S, nb = std::min<int64_t>(S, B - n0);
      load_block<scalar_t, S>(xp, F, n0, nb, xt.data());
      block_product<scalar_t, index_t, HAS_VAL, S>(rp, cp, vp, H, xt.data(), ot.data());
      store_block<scalar_t, S>(ot.data(), bp, H, n0, nb, op);
    }
  };
  if (threads <= 1 || blocks <= 1) {
    body(0, blocks);
    return;
  }
  // Contiguous runs of blocks handed out dynamically: enough runs to balance a noisy machine,
  // few enough that the per-run buffer allocation stays negligible.
  const int64_t runs = std::min<int64_t>(blocks, 8 * threads);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, runs), 1, [&](int64_t, int64_t) {
    for (int64_t r; (r = next.fetch_add(1, std::memory_order_relaxed)) < runs;)
      body(blocks * r / runs, blocks * (r + 1) / runs);
  });
}

// S (samples per block): the largest of 4, 2 or 1 vectors of lanes whose (F, S) buffer fits in
// kBufferBytes and that a small batch still fills (padding lanes are wasted work).
template <typename scalar_t, typename index_t, bool HAS_VAL>
void linear_dispatch_block(const at::Tensor& rowptr, const at::Tensor& col,
                           const c10::optional<at::Tensor>& val, const at::Tensor& x,
                           const c10::optional<at::Tensor>& bias, at::Tensor& out) {
  constexpr int L = 64 / sizeof(scalar_t);
  const int64_t B = x.size(0), F = x.size(1);
  const int64_t row_bytes = std::max<int64_t>(F, 1) * static_cast<int64_t>(sizeof(scalar_t));
  auto fits = [&](int64_t S) { return row_bytes * S <= kBufferBytes && B > S / 2; };
  if (fits(4 * L))
    linear_launch<scalar_t, index_t, HAS_VAL, 4 * L>(rowptr, col, val, x, bias, out);
  else if (fits(2 * L))
    linear_launch<scalar_t, index_t, HAS_VAL, 2 * L>(rowptr, col, val, x, bias, out);
  else
    linear_launch<scalar_t, index_t, HAS_VAL, L>(rowptr, col, val, x, bias, out);
}

// Every column index in [0, in_features): the kernel indexes a block buffer with them, so this
// O(nnz) pass (vectorised; nnz is far below the product's nnz * batch MACs) runs on every call.
template <typename index_t>
void check_columns(const char* op, const at::Tensor& col, int64_t in_features) {
  if (col.numel() == 0) return;
  index_t lo, hi;
  min_max(col.data_ptr<index_t>(), col.numel(), &lo, &hi);
  TORCH_CHECK_VALUE(lo >= 0 && static_cast<int64_t>(hi) < in_features, op,
                    ": col entries must lie in [0, in_features = ", in_features, "), got [",
                    static_cast<int64_t>(lo), ", ", static_cast<int64_t>(hi), "]");
}

at::Tensor sparse_linear_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                             const c10::optional<at::Tensor>& val, const at::Tensor& x,
                             const c10::optional<at::Tensor>& bias, int64_t out_features) {
  const char* op = "sparse_linear_kernel";
  check_csr_index(op, rowptr, col, out_features);
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
  const at::Tensor& rp = rowptr;
  const at::Tensor& cl = col;
  const at::Tensor xc = x.contiguous();
  const c10::optional<at::Tensor> vc =
      val.has_value() ? c10::optional<at::Tensor>(val->contiguous()) : c10::nullopt;
  const c10::optional<at::Tensor> bc =
      bias.has_value() ? c10::optional<at::Tensor>(bias->contiguous()) : c10::nullopt;
  at::Tensor out = at::empty({xc.size(0), out_features}, xc.options());
  AT_DISPATCH_INDEX_TYPES(rp.scalar_type(), "sparse_linear_cpu", [&] {
    check_rowptr_ends<index_t>(op, rp, cl.numel(), out_features);
    check_columns<index_t>(op, cl, xc.size(1));
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sparse_linear_cpu", [&] {
      if (vc.has_value())
        linear_dispatch_block<scalar_t, index_t, true>(rp, cl, vc, xc, bc, out);
      else
        linear_dispatch_block<scalar_t, index_t, false>(rp, cl, vc, xc, bc, out);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("sparse_linear_kernel", &sparse_linear_cpu); }

}  // namespace sparselth
