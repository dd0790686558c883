// Embedding gather kernels. Plain CUDA C++: no torch headers (see embedding_cuda.h).
//
// One warp per output row (an id, or a bag): lane l owns features l, l + 32, ... of the row,
// so loads of a dense row are coalesced.
//  * rows: lanes gather table[r, f] (times scale, mask) and add up the bag in registers.
//  * bitmask and csr share one warp-row kernel (sparse_rows_kernel) with a per-format row
//    decoder (put_row): bitmask lanes decode their own features (ballot + popc), csr spreads a
//    row's entries over the lanes and scatters them into the zeroed output row.
//  * gradients: a warp per id; the dense one atomicAdds into the zeroed gradient.

#include "embedding_cuda.h"
#include "cuda_common.cuh"

#include <climits>
#include <type_traits>

namespace sparselth {
namespace gpu {
namespace {

using namespace detail;

constexpr int kWarpsPerBlock = kBlock / kWarp;

template <typename T, typename V>
__device__ __forceinline__ T value_of(V v) {
  if constexpr (std::is_same_v<V, int8_t>) {
    return static_cast<T>(static_cast<int>(v));
  } else {
    return v;
  }
}

template <typename T, typename M>
__device__ __forceinline__ T mask_value(M m) {
  if constexpr (std::is_same_v<M, uint8_t>) {
    return m != 0 ? T(1) : T(0);
  } else {
    return m;
  }
}

// The warp's output row and its range of ids; false when the warp has no row.
__device__ __forceinline__ bool warp_row(const int64_t* bag_ptr, int64_t num_out, int64_t* o,
                                         int64_t* k0, int64_t* k1) {
  *o = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / kWarp;
  if (*o >= num_out) return false;
  if (bag_ptr != nullptr) {
    *k0 = bag_ptr[*o];
    *k1 = bag_ptr[*o + 1];
  } else {
    *k0 = *o;
    *k1 = *o + 1;
  }
  return true;
}

template <typename T, typename V, typename I, typename M>
__global__ void rows_kernel(const V* __restrict__ table, const int32_t* __restrict__ remap,
                            const T* __restrict__ scale, const M* __restrict__ mask,
                            const I* __restrict__ ids, const int64_t* __restrict__ bag_ptr,
                            T* __restrict__ out, int64_t num_out, int64_t dim, bool mean) {
  int64_t o, k0, k1;
  if (!warp_row(bag_ptr, num_out, &o, &k0, &k1)) return;
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  for (int64_t f = lane; f < dim; f += kWarp) {
    T acc = T(0);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t id = static_cast<int64_t>(ids[k]);
      const int64_t r = remap != nullptr ? static_cast<int64_t>(remap[id]) : id;
      if (r < 0) continue;  // all-pruned row
      T v = value_of<T>(table[r * dim + f]);
      if (scale != nullptr) v *= scale[r];
      if constexpr (!std::is_void_v<M>) {
        if (mask != nullptr) v *= mask_value<T>(mask[r * dim + f]);
      }
      acc += v;
    }
    if (mean && k1 > k0) acc /= static_cast<T>(k1 - k0);
    out[o * dim + f] = acc;
  }
}

// Adds (or, `add` false, writes) row `id` of a per-row sparse table into the warp's output row
// `dst`, lane `lane` of the warp calling it (a warp-uniform call: every lane reaches each ballot;
// `below` masks the lanes below this one, `nb` = ceil(dim / 8) bytes per bitmask row).
//  * CSR (index = col): the entries rowptr[id] .. rowptr[id + 1] are spread over the lanes and
//    added at their columns, so any lane may write any feature (the caller zeroes the row first
//    and syncs the warp between ids).
//  * bitmask (index = bits, (rows, ceil(dim / 8))): per 32-feature chunk each lane tests its
//    bit; __ballot_sync gives the chunk's bits and __popc of the lanes below gives each set
//    feature's position in the row's values; lane l writes features l, l + 32, ... only.
template <bool BITMASK, typename T, typename V, typename P, typename C>
__device__ __forceinline__ void put_row(const P* rowptr, const C* index, const V* val,
                                        const T* scale, int64_t id, T* dst, int64_t dim,
                                        int lane, unsigned below, int64_t nb, bool add) {
  if constexpr (BITMASK) {
    const uint8_t* b = index + id * nb;
    int64_t base = static_cast<int64_t>(rowptr[id]);
    const T s = scale != nullptr ? scale[id] : T(1);
    for (int64_t f0 = 0; f0 < dim; f0 += kWarp) {
      const int64_t f = f0 + lane;
      const bool set = f < dim && ((b[f >> 3] >> (f & 7)) & 1) != 0;
      const unsigned ballot = __ballot_sync(0xffffffffu, set);
      const T v = set ? value_of<T>(val[base + __popc(ballot & below)]) * s : T(0);
      if (f < dim) {
        if (add) dst[f] += v;
        else dst[f] = v;
      }
      base += __popc(ballot);
    }
  } else {
    const int64_t e1 = static_cast<int64_t>(rowptr[id + 1]);
    const T s = scale != nullptr ? scale[id] : T(1);
    for (int64_t e = static_cast<int64_t>(rowptr[id]) + lane; e < e1; e += kWarp) {
      dst[static_cast<int64_t>(index[e])] += value_of<T>(val[e]) * s;
    }
  }
}

// One warp per output row of a per-row sparse table: zeroes the row where needed (CSR always,
// bitmask for bags), puts each of its ids' stored rows, then divides a bag by its size for
// `mean`. The loop over ids is warp-uniform; for CSR, __syncwarp orders the writes of
// consecutive ids (columns are distinct within a row, so the lanes of one id never collide).
template <bool BITMASK, typename T, typename V, typename P, typename C, typename I>
__global__ void sparse_rows_kernel(const P* __restrict__ rowptr, const C* __restrict__ index,
                                   const V* __restrict__ val, const T* __restrict__ scale,
                                   const I* __restrict__ ids, const int64_t* __restrict__ bag_ptr,
                                   T* __restrict__ out, int64_t num_out, int64_t dim, bool mean) {
  int64_t o, k0, k1;
  if (!warp_row(bag_ptr, num_out, &o, &k0, &k1)) return;
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const unsigned below = (1u << lane) - 1u;  // lanes < this one (bitmask)
  const int64_t nb = (dim + 7) / 8;          // bytes per bitmask row
  T* dst = out + o * dim;
  const bool bags = bag_ptr != nullptr;
  const bool add = !BITMASK || bags;
  if (add) {
    for (int64_t f = lane; f < dim; f += kWarp) dst[f] = T(0);
  }
  if constexpr (!BITMASK) __syncwarp();
  for (int64_t k = k0; k < k1; ++k) {
    put_row<BITMASK>(rowptr, index, val, scale, static_cast<int64_t>(ids[k]), dst, dim, lane,
                     below, nb, add);
    if constexpr (!BITMASK) __syncwarp();
  }
  if (add && mean && k1 > k0) {  // (a CSR lookup divides by 1)
    const T count = static_cast<T>(k1 - k0);
    for (int64_t f = lane; f < dim; f += kWarp) dst[f] /= count;
  }
}

// One warp per id i: g = grad[i] * mask[ids[i]] (M void: no mask); SCATTER adds g into
// out[ids[i]] (atomic: ids repeat), otherwise out[i] = g.
template <bool SCATTER, typename T, typename M, typename I>
__global__ void masked_grad_kernel(const T* __restrict__ grad, const M* __restrict__ mask,
                                   const I* __restrict__ ids, T* __restrict__ out, int64_t n,
                                   int64_t dim) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / kWarp;
  if (i >= n) return;
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const int64_t r = static_cast<int64_t>(ids[i]);
  for (int64_t f = lane; f < dim; f += kWarp) {
    T g = grad[i * dim + f];
    if constexpr (!std::is_void_v<M>) g *= mask_value<T>(mask[r * dim + f]);
    if constexpr (SCATTER) atomicAdd(out + r * dim + f, g);
    else out[i * dim + f] = g;
  }
}

// kernel<<<blocks of kWarpsPerBlock warps, one warp per row>>>(args...) on `stream`.
template <typename... Params, typename... Args>
cudaError_t launch_warps(void (*kernel)(Params...), int64_t rows, cudaStream_t stream,
                         const Args&... args) {
  if (rows <= 0) return cudaSuccess;
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace

template <typename T, typename V, typename I, typename M>
cudaError_t embedding_rows_launch(const V* table, const int32_t* remap, const T* scale,
                                  const M* mask, const I* ids, const int64_t* bag_ptr, T* out,
                                  int64_t num_out, int64_t dim, bool mean, cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double rows");
  static_assert(std::is_same_v<V, T> || std::is_same_v<V, int8_t>, "values: T or int8");
  if (dim <= 0) return cudaSuccess;
  if (mask == nullptr) {  // one no-mask instance for both mask types
    return launch_warps(rows_kernel<T, V, I, void>, num_out, stream, table, remap, scale,
                        nullptr, ids, bag_ptr, out, num_out, dim, mean);
  }
  return launch_warps(rows_kernel<T, V, I, M>, num_out, stream, table, remap, scale, mask, ids,
                      bag_ptr, out, num_out, dim, mean);
}

template <typename T, typename V, typename P, typename C, typename I>
cudaError_t embedding_csr_launch(const P* rowptr, const C* col, const V* val, const T* scale,
                                 const I* ids, const int64_t* bag_ptr, T* out, int64_t num_out,
                                 int64_t dim, bool mean, cudaStream_t stream) {
  if (dim <= 0) return cudaSuccess;
  return launch_warps(sparse_rows_kernel<false, T, V, P, C, I>, num_out, stream, rowptr, col, val,
                      scale, ids, bag_ptr, out, num_out, dim, mean);
}

template <typename T, typename V, typename P, typename I>
cudaError_t embedding_bitmask_launch(const P* rowptr, const uint8_t* bits, const V* val,
                                     const T* scale, const I* ids, const int64_t* bag_ptr,
                                     T* out, int64_t num_out, int64_t dim, bool mean,
                                     cudaStream_t stream) {
  if (dim <= 0) return cudaSuccess;
  return launch_warps(sparse_rows_kernel<true, T, V, P, uint8_t, I>, num_out, stream, rowptr,
                      bits, val, scale, ids, bag_ptr, out, num_out, dim, mean);
}

template <typename T, typename M, typename I>
cudaError_t embedding_backward_launch(const T* grad, const M* mask, const I* ids, T* out,
                                      int64_t n, int64_t num_rows, int64_t dim,
                                      cudaStream_t stream) {
  if (num_rows <= 0 || dim <= 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(out, 0, static_cast<size_t>(num_rows * dim) * sizeof(T),
                                    stream);
  if (err != cudaSuccess) return err;
  if (mask == nullptr) {
    return launch_warps(masked_grad_kernel<true, T, void, I>, n, stream, grad, nullptr, ids, out,
                        n, dim);
  }
  return launch_warps(masked_grad_kernel<true, T, M, I>, n, stream, grad, mask, ids, out, n, dim);
}

template <typename T, typename M, typename I>
cudaError_t embedding_sparse_grad_launch(const T* grad, const M* mask, const I* ids, T* out,
                                         int64_t n, int64_t dim, cudaStream_t stream) {
  if (dim <= 0) return cudaSuccess;
  return launch_warps(masked_grad_kernel<false, T, M, I>, n, stream, grad, mask, ids, out, n,
                      dim);
}

#define SL_ROWS(T, V, I, M)                                                                 \
  template cudaError_t embedding_rows_launch<T, V, I, M>(                                   \
      const V*, const int32_t*, const T*, const M*, const I*, const int64_t*, T*, int64_t, \
      int64_t, bool, cudaStream_t);
#define SL_CSR(T, V, P, C, I)                                                                 \
  template cudaError_t embedding_csr_launch<T, V, P, C, I>(const P*, const C*, const V*,      \
                                                           const T*, const I*, const int64_t*, \
                                                           T*, int64_t, int64_t, bool,         \
                                                           cudaStream_t);
#define SL_BITMASK(T, V, P, I)                                                               \
  template cudaError_t embedding_bitmask_launch<T, V, P, I>(                                 \
      const P*, const uint8_t*, const V*, const T*, const I*, const int64_t*, T*, int64_t, \
      int64_t, bool, cudaStream_t);
#define SL_BACKWARD(T, M, I)                                                                 \
  template cudaError_t embedding_backward_launch<T, M, I>(const T*, const M*, const I*, T*, \
                                                          int64_t, int64_t, int64_t,        \
                                                          cudaStream_t);                    \
  template cudaError_t embedding_sparse_grad_launch<T, M, I>(const T*, const M*, const I*, T*, \
                                                             int64_t, int64_t, cudaStream_t);

#define SL_FOR_IDS(T, V)                                                            \
  SL_ROWS(T, V, int32_t, uint8_t) SL_ROWS(T, V, int32_t, T)                         \
  SL_ROWS(T, V, int64_t, uint8_t) SL_ROWS(T, V, int64_t, T)                         \
  SL_CSR(T, V, int32_t, int16_t, int32_t) SL_CSR(T, V, int32_t, int16_t, int64_t)   \
  SL_CSR(T, V, int32_t, int32_t, int32_t) SL_CSR(T, V, int32_t, int32_t, int64_t)   \
  SL_CSR(T, V, int64_t, int16_t, int32_t) SL_CSR(T, V, int64_t, int16_t, int64_t)   \
  SL_CSR(T, V, int64_t, int32_t, int32_t) SL_CSR(T, V, int64_t, int32_t, int64_t)   \
  SL_BITMASK(T, V, int32_t, int32_t) SL_BITMASK(T, V, int32_t, int64_t)             \
  SL_BITMASK(T, V, int64_t, int32_t) SL_BITMASK(T, V, int64_t, int64_t)

SL_FOR_IDS(float, float)
SL_FOR_IDS(float, int8_t)
SL_FOR_IDS(double, double)
SL_FOR_IDS(double, int8_t)
SL_BACKWARD(float, uint8_t, int32_t)
SL_BACKWARD(float, uint8_t, int64_t)
SL_BACKWARD(float, float, int32_t)
SL_BACKWARD(float, float, int64_t)
SL_BACKWARD(double, uint8_t, int32_t)
SL_BACKWARD(double, uint8_t, int64_t)
SL_BACKWARD(double, double, int32_t)
SL_BACKWARD(double, double, int64_t)

#undef SL_FOR_IDS
#undef SL_BACKWARD
#undef SL_BITMASK
#undef SL_CSR
#undef SL_ROWS

}  // namespace gpu
}  // namespace sparselth
