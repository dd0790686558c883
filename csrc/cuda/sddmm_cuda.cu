// CSR-pattern SDDMM kernel. Plain CUDA C++: no torch headers (see sddmm_cuda.h).
//
// Work split: by stored entries, not rows, so power-law rows cost nothing extra. Each
// group of G lanes (G a power of two <= 32) takes kSddmmEntriesPerGroup consecutive
// entries, finds the row of its first entry by binary search in rowptr and walks
// forward. The G lanes cover the feature dimension with VEC-wide loads (16 bytes when
// F allows), G = min(32, next_pow2(ceil(F / VEC))), and the per-entry dot product is
// finished with a shuffle (butterfly) reduction inside the group.

#include "sddmm_cuda.h"
#include "cuda_common.cuh"

#include <climits>
#include <type_traits>

namespace sparselth {
namespace gpu {
namespace {

using namespace detail;

// No __launch_bounds__: see spmm_cuda.cu (it made ptxas spill).
template <typename T, typename I, int VEC>
__global__ void sddmm_kernel(const I* __restrict__ rowptr, const I* __restrict__ col,
                             const T* __restrict__ x, const T* __restrict__ y,
                             T* __restrict__ out, int64_t num_rows, int64_t nnz, int64_t F,
                             int G) {
  using A = typename AccOf<T>::type;
  const int64_t group = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / G;
  const int64_t begin = group * kSddmmEntriesPerGroup;
  if (begin >= nnz) return;  // whole group leaves together
  const int64_t end = begin + kSddmmEntriesPerGroup < nnz ? begin + kSddmmEntriesPerGroup : nnz;
  const int g_lane = static_cast<int>(threadIdx.x) & (G - 1);
  const unsigned lanes = group_lanes(G);

  // Row of entry `begin`: the last row r with rowptr[r] <= begin (empty rows skipped since
  // begin < nnz = rowptr[num_rows]). Invariant: rowptr[lo] <= begin, answer in [lo, hi).
  int64_t lo = 0;
  int64_t hi = num_rows;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(rowptr[mid]) <= begin) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  int64_t row = lo;
  int64_t row_end = rowptr[row + 1];

  for (int64_t e = begin; e < end; ++e) {
    while (e >= row_end) row_end = rowptr[++row + 1];
    const T* __restrict__ xr = x + row * F;
    const T* __restrict__ yr = y + static_cast<int64_t>(col[e]) * F;
    A acc = A(0);
    const int64_t step = static_cast<int64_t>(G) * VEC;
    for (int64_t f = static_cast<int64_t>(g_lane) * VEC; f < F; f += step) {
      const Vec<T, VEC> xv = load_vec<T, VEC>(xr + f);
      const Vec<T, VEC> yv = load_vec<T, VEC>(yr + f);
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc += to_acc(xv.v[k]) * to_acc(yv.v[k]);
    }
    for (int offset = G / 2; offset > 0; offset /= 2)
      acc += __shfl_xor_sync(lanes, acc, offset, G);
    if (g_lane == 0) out[e] = from_acc<T>(acc);
  }
}

template <typename T, typename I, int VEC>
cudaError_t launch_with_vec(const I* rowptr, const I* col, const T* x, const T* y, T* out,
                            int64_t num_rows, int64_t nnz, int64_t F, cudaStream_t stream) {
  const int64_t lanes_needed = (F + VEC - 1) / VEC;
  int G = 1;
  while (G < kWarp && G < lanes_needed) G *= 2;
  const int64_t groups = (nnz + kSddmmEntriesPerGroup - 1) / kSddmmEntriesPerGroup;
  const int64_t blocks = (groups * G + kBlock - 1) / kBlock;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  sddmm_kernel<T, I, VEC><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
      rowptr, col, x, y, out, num_rows, nnz, F, G);
  return cudaGetLastError();
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

template <typename T, typename I>
cudaError_t sddmm_csr_launch(const I* rowptr, const I* col, const T* x, const T* y, T* out,
                             int64_t num_rows, int64_t nnz, int64_t num_features,
                             cudaStream_t stream) {
  if (nnz <= 0 || num_rows <= 0) return cudaSuccess;  // nothing to write
  constexpr int kVec = 16 / sizeof(T);  // 16-byte loads of x and y
  static_assert(kVec * sizeof(T) == 16, "value types are 2, 4 or 8 bytes");
  if (num_features % kVec == 0 && aligned16(x) && aligned16(y))
    return launch_with_vec<T, I, kVec>(rowptr, col, x, y, out, num_rows, nnz, num_features,
                                       stream);
  return launch_with_vec<T, I, 1>(rowptr, col, x, y, out, num_rows, nnz, num_features, stream);
}

#define SPARSELTH_SDDMM_INSTANTIATE(T, I)                                                      \
  template cudaError_t sddmm_csr_launch<T, I>(const I*, const I*, const T*, const T*, T*,     \
                                              int64_t, int64_t, int64_t, cudaStream_t);
#define SPARSELTH_SDDMM_INSTANTIATE_T(T) \
  SPARSELTH_SDDMM_INSTANTIATE(T, int32_t) \
  SPARSELTH_SDDMM_INSTANTIATE(T, int64_t)

SPARSELTH_SDDMM_INSTANTIATE_T(float)
SPARSELTH_SDDMM_INSTANTIATE_T(double)
SPARSELTH_SDDMM_INSTANTIATE_T(__half)
SPARSELTH_SDDMM_INSTANTIATE_T(__nv_bfloat16)

#undef SPARSELTH_SDDMM_INSTANTIATE_T
#undef SPARSELTH_SDDMM_INSTANTIATE

}  // namespace gpu
}  // namespace sparselth
