// Sparse x sparse -> dense kernels (see spgemm_cuda.h). Plain CUDA C++: no torch headers.
//
// Work split: one warp per row of A (rows are independent; the warp owns its output row, so
// no atomics). A warp walks its row's stored entries in order; for each it spreads the
// named B row over its 32 lanes. Short B rows leave lanes idle: the kernels favour
// simplicity and determinism; the CPU kernel is the tuned one.

#include "spgemm_cuda.h"
#include "cuda_common.cuh"

#include <climits>

namespace sparselth {
namespace gpu {
namespace {

using namespace detail;

template <typename T, typename I, bool HAS_AVAL, bool HAS_BVAL>
__global__ void spgemm_kernel(const I* __restrict__ a_rowptr, const I* __restrict__ a_col,
                              const T* __restrict__ a_val, const I* __restrict__ b_rowptr,
                              const I* __restrict__ b_col, const T* __restrict__ b_val,
                              T* __restrict__ out, int64_t m, int64_t k) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / kWarp;
  if (row >= m) return;  // the whole warp leaves together
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  T* orow = out + row * k;
  for (int64_t c = lane; c < k; c += kWarp) orow[c] = T(0);
  __syncwarp();
  for (int64_t e = a_rowptr[row], e1 = a_rowptr[row + 1]; e < e1; ++e) {
    const int64_t j = a_col[e];
    const T a = HAS_AVAL ? a_val[e] : T(1);
    const int64_t f1 = b_rowptr[j + 1];
    // columns are distinct within B's row: each lane updates its own output entries
    for (int64_t f = b_rowptr[j] + lane; f < f1; f += kWarp) {
      orow[b_col[f]] += HAS_BVAL ? a * b_val[f] : a;
    }
    __syncwarp();  // orders this B row's updates before the next row's (same columns)
  }
}

template <typename T, typename I, bool HAS_BVAL>
__global__ void sampled_kernel(const I* __restrict__ a_rowptr, const I* __restrict__ a_col,
                               const I* __restrict__ b_rowptr, const I* __restrict__ b_col,
                               const T* __restrict__ b_val, const T* __restrict__ grad,
                               T* __restrict__ out, int64_t m, int64_t k) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / kWarp;
  if (row >= m) return;
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const T* grow = grad + row * k;
  for (int64_t e = a_rowptr[row], e1 = a_rowptr[row + 1]; e < e1; ++e) {
    const int64_t j = a_col[e];
    const int64_t f1 = b_rowptr[j + 1];
    T acc = T(0);
    for (int64_t f = b_rowptr[j] + lane; f < f1; f += kWarp) {
      const T g = grow[b_col[f]];
      acc += HAS_BVAL ? b_val[f] * g : g;
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
      acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == 0) out[e] = acc;
  }
}

inline int64_t blocks_for(int64_t m) { return (m * kWarp + kBlock - 1) / kBlock; }

}  // namespace

template <typename T, typename I>
cudaError_t spgemm_csr_launch(const I* a_rowptr, const I* a_col, const T* a_val,
                              const I* b_rowptr, const I* b_col, const T* b_val, T* out,
                              int64_t m, int64_t k, cudaStream_t stream) {
  if (m <= 0 || k <= 0) return cudaSuccess;
  const int64_t blocks = blocks_for(m);
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  const unsigned grid = static_cast<unsigned>(blocks);
  if (a_val != nullptr && b_val != nullptr)
    spgemm_kernel<T, I, true, true><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, a_val, b_rowptr,
                                                                 b_col, b_val, out, m, k);
  else if (a_val != nullptr)
    spgemm_kernel<T, I, true, false><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, a_val,
                                                                  b_rowptr, b_col, b_val, out, m, k);
  else if (b_val != nullptr)
    spgemm_kernel<T, I, false, true><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, a_val,
                                                                  b_rowptr, b_col, b_val, out, m, k);
  else
    spgemm_kernel<T, I, false, false><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, a_val,
                                                                   b_rowptr, b_col, b_val, out, m,
                                                                   k);
  return cudaGetLastError();
}

template <typename T, typename I>
cudaError_t spgemm_sampled_launch(const I* a_rowptr, const I* a_col, const I* b_rowptr,
                                  const I* b_col, const T* b_val, const T* grad, T* out,
                                  int64_t m, int64_t k, cudaStream_t stream) {
  if (m <= 0) return cudaSuccess;
  const int64_t blocks = blocks_for(m);
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  const unsigned grid = static_cast<unsigned>(blocks);
  if (b_val != nullptr)
    sampled_kernel<T, I, true><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, b_rowptr, b_col,
                                                            b_val, grad, out, m, k);
  else
    sampled_kernel<T, I, false><<<grid, kBlock, 0, stream>>>(a_rowptr, a_col, b_rowptr, b_col,
                                                             b_val, grad, out, m, k);
  return cudaGetLastError();
}

#define SPARSELTH_SPGEMM_INSTANTIATE(T, I)                                                      \
  template cudaError_t spgemm_csr_launch<T, I>(const I*, const I*, const T*, const I*,         \
                                               const I*, const T*, T*, int64_t, int64_t,       \
                                               cudaStream_t);                                  \
  template cudaError_t spgemm_sampled_launch<T, I>(const I*, const I*, const I*, const I*,     \
                                                   const T*, const T*, T*, int64_t, int64_t,   \
                                                   cudaStream_t);

SPARSELTH_SPGEMM_INSTANTIATE(float, int32_t)
SPARSELTH_SPGEMM_INSTANTIATE(float, int64_t)
SPARSELTH_SPGEMM_INSTANTIATE(double, int32_t)
SPARSELTH_SPGEMM_INSTANTIATE(double, int64_t)

#undef SPARSELTH_SPGEMM_INSTANTIATE

}  // namespace gpu
}  // namespace sparselth
