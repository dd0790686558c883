// CSR-pattern SDDMM on CUDA: raw-pointer launcher (no torch headers).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace sparselth {
namespace gpu {

// Stored entries handled by one group of lanes; the split is by entries, not rows, so
// long rows cost no more than short ones.
constexpr int64_t kSddmmEntriesPerGroup = 32;

// out[e] = dot(x[row(e), :], y[col[e], :]) for every stored entry e in CSR order, where
// row(e) is the i with rowptr[i] <= e < rowptr[i+1].
//
// Buffers (device memory of the current device, contiguous, row-major):
//   rowptr  (num_rows + 1) I, non-decreasing, rowptr[0] == 0, rowptr[num_rows] == nnz
//   col     (nnz) I, each in [0, n)
//   x       (num_rows, num_features) T
//   y       (n, num_features) T
//   out     (nnz) T, written in full (zeros when num_features == 0)
// Accumulates in float for float/__half/__nv_bfloat16 and in double for double. Enqueues on
// `stream` and does not synchronise; returns the launch error (cudaSuccess if none).
//
// Instantiated for T in {float, double, __half, __nv_bfloat16}, I in {int32_t, int64_t}.
template <typename T, typename I>
cudaError_t sddmm_csr_launch(const I* rowptr, const I* col, const T* x, const T* y, T* out,
                             int64_t num_rows, int64_t nnz, int64_t num_features,
                             cudaStream_t stream);

}  // namespace gpu
}  // namespace sparselth
