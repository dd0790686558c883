// Device helpers shared by the CUDA kernels: accumulator types, conversions, vector loads
// and lane-group masks. Plain CUDA C++ (no torch headers).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sparselth {
namespace gpu {
namespace detail {

constexpr int kWarp = 32;
constexpr int kBlock = 256;
static_assert(kBlock % kWarp == 0, "blocks are made of whole warps");

template <typename T>
struct AccOf {
  using type = float;  // float, __half, __nv_bfloat16 accumulate in fp32
};
template <>
struct AccOf<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(typename AccOf<T>::type v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// N consecutive elements moved with one load instruction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_vec(const T* __restrict__ p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}

// Lanes of the calling thread's group of G (a power of two dividing 32).
__device__ __forceinline__ unsigned group_lanes(int G) {
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  return G == kWarp ? 0xffffffffu : ((1u << G) - 1u) << (lane & ~(G - 1));
}

}  // namespace detail
}  // namespace gpu
}  // namespace sparselth
