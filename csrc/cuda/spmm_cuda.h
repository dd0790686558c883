// CSR x dense SpMM on CUDA: raw-pointer launcher (no torch headers).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace sparselth {
namespace gpu {

// Rows with more stored entries than this are computed by a second kernel that
// splits each such row over a whole thread block (power-law hubs); shorter rows
// get a group of lanes each.
constexpr int64_t kSpmmLongRowNnz = 256;

// out[i, :] = row_scale[i] * sum_{rowptr[i] <= e < rowptr[i+1]} val[e] * (x * x_mask)[col[e], :]
//             + bias[:], then max(., 0) when relu
//
// Buffers (device memory of the current device, contiguous, row-major):
//   rowptr     (num_rows + 1) I, non-decreasing, rowptr[0] == 0, rowptr[num_rows] == nnz
//   col        (nnz) I, each in [0, n) where x is (n, num_features)
//   val        (nnz) T or nullptr (every value 1)
//   x          (n, num_features) T
//   x_mask     (n, num_features) M or nullptr (no mask); M is T or uint8_t (a torch bool tensor,
//              0 = drop, anything else = keep)
//   row_scale  (num_rows) T or nullptr (scale 1)
//   bias       (num_features) T or nullptr (bias 0)
//   out        (num_rows, num_features) T, written in full (empty rows get row_scale*0 + bias)
// Accumulates in float for float/__half/__nv_bfloat16 and in double for double. Enqueues on
// `stream` and does not synchronise; returns the launch error (cudaSuccess if none). Inputs are
// not validated here (the torch wrapper does that).
//
// Instantiated for T in {float, double, __half, __nv_bfloat16}, I in {int32_t, int64_t},
// M in {T, uint8_t}.
template <typename T, typename I, typename M>
cudaError_t spmm_csr_launch(const I* rowptr, const I* col, const T* val, const T* x,
                            const M* x_mask, const T* row_scale, const T* bias, T* out,
                            int64_t num_rows, int64_t nnz, int64_t num_features, bool relu,
                            cudaStream_t stream);

}  // namespace gpu
}  // namespace sparselth
