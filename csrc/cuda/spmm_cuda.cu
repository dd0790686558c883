// CSR x dense SpMM kernels. Plain CUDA C++: no torch headers (see spmm_cuda.h).
//
// Work split:
//  * spmm_rows_kernel: a group of G lanes (G a power of two <= 32) per row; the lanes
//    cover the feature dimension with VEC-wide loads (16 bytes when F allows), so
//    G = min(32, next_pow2(ceil(F / VEC))) and small F packs several rows into a warp.
//    The group stages G (col, val) pairs at a time in registers (one coalesced load)
//    and broadcasts them with shuffles. Rows longer than kSpmmLongRowNnz are skipped.
//  * spmm_long_rows_kernel: a block per long row (power-law hubs). The block is
//    kBlock / G slices of G lanes; each slice takes a contiguous part of the row and
//    the slices' partial sums are reduced in shared memory in a fixed order, so the
//    result is deterministic and no atomics are needed. Blocks find the long rows by
//    scanning rows interleaved across the grid, so clustered hubs are spread out.
// Presence of val / x_mask / row_scale / bias, the ReLU epilogue and the mask type are
// template parameters; nothing optional is tested inside the entry loop.
// Kernels carry no __launch_bounds__(kBlock): with it ptxas (CUDA 13, sm_90) squeezed them
// to 32 registers and spilled; without it they use <= 48 registers and never spill.

#include "spmm_cuda.h"
#include "cuda_common.cuh"

#include <climits>
#include <type_traits>

namespace sparselth {
namespace gpu {
namespace {

using namespace detail;

// Mask element -> multiplier: bool masks keep (1) or drop (0); value masks multiply.
template <typename A, typename M>
__device__ __forceinline__ A mask_factor(M m) {
  if constexpr (std::is_same_v<M, uint8_t>) {
    return m != 0 ? A(1) : A(0);
  } else {
    return A(to_acc(m));
  }
}


// acc[k] += sum_{e in [begin, end)} val[e] * (x * x_mask)[col[e], f + k] for the calling lane's
// features f .. f + VEC - 1 (only if `active`). All G lanes of the group call this with the same
// begin/end: lane g loads entry base + g, then the group walks the staged entries by shuffle.
template <typename T, typename I, typename MaskT, int VEC, bool HAS_VAL>
__device__ __forceinline__ void accumulate_entries(
    const I* __restrict__ col, const T* __restrict__ val, const T* __restrict__ x,
    const MaskT* __restrict__ x_mask, int64_t begin, int64_t end, int64_t F, int64_t f,
    bool active, int G, int g_lane, unsigned lanes, typename AccOf<T>::type (&acc)[VEC]) {
  using A = typename AccOf<T>::type;
  for (int64_t base = begin; base < end; base += G) {
    const int64_t e = base + g_lane;
    I c = 0;
    A v = A(1);
    if (e < end) {
      c = col[e];
      if constexpr (HAS_VAL) v = to_acc(val[e]);
    }
    const int count = end - base < G ? static_cast<int>(end - base) : G;
#pragma unroll 4
    for (int j = 0; j < count; ++j) {
      const int64_t cj = static_cast<int64_t>(__shfl_sync(lanes, c, j, G));
      A vj = A(1);
      if constexpr (HAS_VAL) vj = __shfl_sync(lanes, v, j, G);
      if (active) {
        const int64_t off = cj * F + f;
        const Vec<T, VEC> xv = load_vec<T, VEC>(x + off);
        if constexpr (std::is_void_v<MaskT>) {
#pragma unroll
          for (int k = 0; k < VEC; ++k) acc[k] += vj * to_acc(xv.v[k]);
        } else {
          const Vec<MaskT, VEC> mv = load_vec<MaskT, VEC>(x_mask + off);
#pragma unroll
          for (int k = 0; k < VEC; ++k) acc[k] += vj * (to_acc(xv.v[k]) * mask_factor<A>(mv.v[k]));
        }
      }
    }
  }
}

template <typename T, bool HAS_SCALE, bool HAS_BIAS, bool RELU>
__device__ __forceinline__ typename AccOf<T>::type epilogue(typename AccOf<T>::type sum,
                                                            typename AccOf<T>::type scale,
                                                            const T* __restrict__ bias,
                                                            int64_t f) {
  using A = typename AccOf<T>::type;
  if constexpr (HAS_SCALE) sum *= scale;
  if constexpr (HAS_BIAS) sum += to_acc(bias[f]);
  if constexpr (RELU) sum = sum < A(0) ? A(0) : sum;  // NaN stays NaN, as with torch.relu
  return sum;
}

template <typename T, typename I, typename MaskT, int VEC, bool HAS_VAL, bool HAS_SCALE,
          bool HAS_BIAS, bool RELU>
__global__ void spmm_rows_kernel(const I* __restrict__ rowptr, const I* __restrict__ col,
                                 const T* __restrict__ val, const T* __restrict__ x,
                                 const MaskT* __restrict__ x_mask,
                                 const T* __restrict__ row_scale, const T* __restrict__ bias,
                                 T* __restrict__ out, int64_t num_rows, int64_t F, int G,
                                 int64_t long_row_nnz) {
  using A = typename AccOf<T>::type;
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / G;
  if (row >= num_rows) return;  // whole group leaves together
  const int64_t begin = rowptr[row];
  const int64_t end = rowptr[row + 1];
  if (end - begin > long_row_nnz) return;  // spmm_long_rows_kernel's row
  const int g_lane = static_cast<int>(threadIdx.x) & (G - 1);
  const unsigned lanes = group_lanes(G);
  A scale = A(1);
  if constexpr (HAS_SCALE) scale = to_acc(row_scale[row]);

  for (int64_t f0 = 0; f0 < F; f0 += static_cast<int64_t>(G) * VEC) {
    const int64_t f = f0 + static_cast<int64_t>(g_lane) * VEC;
    const bool active = f < F;  // VEC divides F, so f < F means f + VEC <= F
    A acc[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] = A(0);
    accumulate_entries<T, I, MaskT, VEC, HAS_VAL>(col, val, x, x_mask, begin, end, F, f, active,
                                                  G, g_lane, lanes, acc);
    if (active) {
      Vec<T, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k)
        o.v[k] = from_acc<T>(epilogue<T, HAS_SCALE, HAS_BIAS, RELU>(acc[k], scale, bias, f + k));
      *reinterpret_cast<Vec<T, VEC>*>(out + row * F + f) = o;
    }
  }
}

template <typename T, typename I, typename MaskT, int VEC, bool HAS_VAL, bool HAS_SCALE,
          bool HAS_BIAS, bool RELU>
__global__ void spmm_long_rows_kernel(const I* __restrict__ rowptr, const I* __restrict__ col,
                                      const T* __restrict__ val, const T* __restrict__ x,
                                      const MaskT* __restrict__ x_mask,
                                      const T* __restrict__ row_scale,
                                      const T* __restrict__ bias, T* __restrict__ out,
                                      int64_t num_rows, int64_t F, int G,
                                      int64_t long_row_nnz) {
  using A = typename AccOf<T>::type;
  __shared__ A partial[kBlock * VEC];  // [slice][g_lane][k] == [threadIdx.x][k]
  __shared__ int64_t long_rows[kBlock];
  __shared__ int num_long;

  const int tid = static_cast<int>(threadIdx.x);
  const int slices = kBlock / G;
  const int slice = tid / G;
  const int g_lane = tid & (G - 1);
  const unsigned lanes = group_lanes(G);
  const int64_t GV = static_cast<int64_t>(G) * VEC;  // features per pass, <= kBlock
  const int64_t grid = gridDim.x;

  // Iteration `first` checks rows first + t * grid for t in [0, kBlock).
  for (int64_t first = blockIdx.x; first < num_rows; first += grid * kBlock) {
    if (tid == 0) num_long = 0;
    __syncthreads();
    const int64_t r = first + tid * grid;
    if (r < num_rows && static_cast<int64_t>(rowptr[r + 1]) - rowptr[r] > long_row_nnz)
      long_rows[atomicAdd(&num_long, 1)] = r;
    __syncthreads();
    const int count = num_long;

    for (int i = 0; i < count; ++i) {  // block-uniform loop: the barriers below are safe
      const int64_t row = long_rows[i];
      const int64_t begin = rowptr[row];
      const int64_t end = rowptr[row + 1];
      // Contiguous, G-aligned share of the row per slice.
      const int64_t share = ((end - begin + slices - 1) / slices + G - 1) / G * G;
      const int64_t s_begin = begin + slice * share < end ? begin + slice * share : end;
      const int64_t s_end = s_begin + share < end ? s_begin + share : end;
      A scale = A(1);
      if constexpr (HAS_SCALE) scale = to_acc(row_scale[row]);

      for (int64_t f0 = 0; f0 < F; f0 += GV) {
        const int64_t f = f0 + static_cast<int64_t>(g_lane) * VEC;
        A acc[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k] = A(0);
        accumulate_entries<T, I, MaskT, VEC, HAS_VAL>(col, val, x, x_mask, s_begin, s_end, F, f,
                                                      f < F, G, g_lane, lanes, acc);
#pragma unroll
        for (int k = 0; k < VEC; ++k) partial[tid * VEC + k] = acc[k];
        __syncthreads();
        if (tid < GV && f0 + tid < F) {
          A sum = A(0);
          for (int s = 0; s < slices; ++s) sum += partial[s * GV + tid];
          out[row * F + f0 + tid] =
              from_acc<T>(epilogue<T, HAS_SCALE, HAS_BIAS, RELU>(sum, scale, bias, f0 + tid));
        }
        __syncthreads();
      }
    }
    __syncthreads();  // num_long / long_rows are rewritten by the next iteration
  }
}

// Compile-time dispatch helper: calls fn(std::integral_constant<bool, b>{}).
template <typename Fn>
cudaError_t dispatch_bool(bool b, Fn&& fn) {
  return b ? fn(std::true_type{}) : fn(std::false_type{});
}

template <typename MaskT>
constexpr size_t mask_elem_bytes() {
  if constexpr (std::is_void_v<MaskT>) {
    return 1;  // no mask: any pointer (nullptr) passes
  } else {
    return sizeof(MaskT);
  }
}

inline bool aligned(const void* p, size_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <typename T, typename I, typename MaskT, int VEC>
cudaError_t launch_with_vec(const I* rowptr, const I* col, const T* val, const T* x,
                            const MaskT* x_mask, const T* row_scale, const T* bias, T* out,
                            int64_t num_rows, int64_t nnz, int64_t F, bool relu,
                            cudaStream_t stream) {
  const int64_t lanes_needed = (F + VEC - 1) / VEC;
  int G = 1;
  while (G < kWarp && G < lanes_needed) G *= 2;

  const int64_t row_blocks = (num_rows * G + kBlock - 1) / kBlock;
  if (row_blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  const bool has_long_rows = nnz > kSpmmLongRowNnz;
  int long_blocks = 0;
  if (has_long_rows) {
    int device = 0;
    int sms = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err != cudaSuccess) return err;
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    const int64_t wanted = static_cast<int64_t>(sms) * (2048 / kBlock);  // one full wave
    long_blocks = static_cast<int>(num_rows < wanted ? num_rows : wanted);
  }

  return dispatch_bool(val != nullptr, [&](auto has_val) {
    return dispatch_bool(row_scale != nullptr, [&](auto has_scale) {
      return dispatch_bool(bias != nullptr, [&](auto has_bias) {
        return dispatch_bool(relu, [&](auto has_relu) {
          constexpr bool kVal = decltype(has_val)::value;
          constexpr bool kScale = decltype(has_scale)::value;
          constexpr bool kBias = decltype(has_bias)::value;
          constexpr bool kRelu = decltype(has_relu)::value;
          spmm_rows_kernel<T, I, MaskT, VEC, kVal, kScale, kBias, kRelu>
              <<<static_cast<unsigned>(row_blocks), kBlock, 0, stream>>>(
                  rowptr, col, val, x, x_mask, row_scale, bias, out, num_rows, F, G,
                  kSpmmLongRowNnz);
          if (has_long_rows) {
            spmm_long_rows_kernel<T, I, MaskT, VEC, kVal, kScale, kBias, kRelu>
                <<<static_cast<unsigned>(long_blocks), kBlock, 0, stream>>>(
                    rowptr, col, val, x, x_mask, row_scale, bias, out, num_rows, F, G,
                    kSpmmLongRowNnz);
          }
          return cudaGetLastError();
        });
      });
    });
  });
}

template <typename T, typename I, typename MaskT>
cudaError_t launch_with_mask(const I* rowptr, const I* col, const T* val, const T* x,
                             const MaskT* x_mask, const T* row_scale, const T* bias, T* out,
                             int64_t num_rows, int64_t nnz, int64_t F, bool relu,
                             cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);  // 16-byte loads of x
  static_assert(kVec * sizeof(T) == 16, "value types are 2, 4 or 8 bytes");
  constexpr size_t kMaskBytes = kVec * mask_elem_bytes<MaskT>();
  const bool vec_ok =
      F % kVec == 0 && aligned(x, 16) && aligned(out, 16) && aligned(x_mask, kMaskBytes);
  if (vec_ok)
    return launch_with_vec<T, I, MaskT, kVec>(rowptr, col, val, x, x_mask, row_scale, bias, out,
                                              num_rows, nnz, F, relu, stream);
  return launch_with_vec<T, I, MaskT, 1>(rowptr, col, val, x, x_mask, row_scale, bias, out,
                                         num_rows, nnz, F, relu, stream);
}

}  // namespace

template <typename T, typename I, typename M>
cudaError_t spmm_csr_launch(const I* rowptr, const I* col, const T* val, const T* x,
                            const M* x_mask, const T* row_scale, const T* bias, T* out,
                            int64_t num_rows, int64_t nnz, int64_t num_features, bool relu,
                            cudaStream_t stream) {
  static_assert(std::is_same_v<M, T> || std::is_same_v<M, uint8_t>,
                "x_mask holds x's dtype or bool (uint8_t)");
  if (num_rows <= 0 || num_features <= 0) return cudaSuccess;  // nothing to write
  if (x_mask == nullptr)  // one no-mask instance shared by both mask types
    return launch_with_mask<T, I, void>(rowptr, col, val, x, nullptr, row_scale, bias, out,
                                        num_rows, nnz, num_features, relu, stream);
  return launch_with_mask<T, I, M>(rowptr, col, val, x, x_mask, row_scale, bias, out, num_rows,
                                   nnz, num_features, relu, stream);
}

#define SPARSELTH_SPMM_INSTANTIATE(T, I, M)                                                   \
  template cudaError_t spmm_csr_launch<T, I, M>(const I*, const I*, const T*, const T*,    \
                                                const M*, const T*, const T*, T*, int64_t, \
                                                int64_t, int64_t, bool, cudaStream_t);
#define SPARSELTH_SPMM_INSTANTIATE_T(T)       \
  SPARSELTH_SPMM_INSTANTIATE(T, int32_t, T)       \
  SPARSELTH_SPMM_INSTANTIATE(T, int32_t, uint8_t) \
  SPARSELTH_SPMM_INSTANTIATE(T, int64_t, T)       \
  SPARSELTH_SPMM_INSTANTIATE(T, int64_t, uint8_t)

SPARSELTH_SPMM_INSTANTIATE_T(float)
SPARSELTH_SPMM_INSTANTIATE_T(double)
SPARSELTH_SPMM_INSTANTIATE_T(__half)
SPARSELTH_SPMM_INSTANTIATE_T(__nv_bfloat16)

#undef SPARSELTH_SPMM_INSTANTIATE_T
#undef SPARSELTH_SPMM_INSTANTIATE

}  // namespace gpu
}  // namespace sparselth
