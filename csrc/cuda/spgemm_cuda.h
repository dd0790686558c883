// Sparse x sparse -> dense (row-wise Gustavson) on CUDA: raw-pointer launchers (no torch
// headers).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace sparselth {
namespace gpu {

// out = A @ B for CSR A (m, n) and B (n, k): one warp per row i of A zeroes out[i, :], then for
// each stored (i, j) its lanes add A[i, j] * B[j, c] for the stored entries (j, c) of B's row
// j (distinct columns, so no two lanes meet; a warp barrier orders successive B rows).
// Deterministic: no atomics.
//
// Buffers (device memory of the current device, contiguous):
//   a_rowptr (m + 1) I, a_col (nnz(A)) I in [0, n), a_val (nnz(A)) T or nullptr (ones)
//   b_rowptr (n + 1) I, b_col (nnz(B)) I in [0, k), b_val (nnz(B)) T or nullptr (ones)
//   out      (m, k) T, row-major, written in full
// Enqueues on `stream` and does not synchronise; returns the launch error (cudaSuccess if
// none). Instantiated for T in {float, double}, I in {int32_t, int64_t}.
template <typename T, typename I>
cudaError_t spgemm_csr_launch(const I* a_rowptr, const I* a_col, const T* a_val,
                              const I* b_rowptr, const I* b_col, const T* b_val, T* out,
                              int64_t m, int64_t k, cudaStream_t stream);

// out[e] = sum_{f in B row a_col[e]} b_val[f] * grad[row(e), b_col[f]] for every stored e of
// A (the gradient of spgemm with respect to A's values): one warp per row of A, its lanes
// over B's row, a shuffle reduction per entry.
//   grad (m, k) T row-major; out (nnz(A)) T, written in full. Other buffers as above.
template <typename T, typename I>
cudaError_t spgemm_sampled_launch(const I* a_rowptr, const I* a_col, const I* b_rowptr,
                                  const I* b_col, const T* b_val, const T* grad, T* out,
                                  int64_t m, int64_t k, cudaStream_t stream);

}  // namespace gpu
}  // namespace sparselth
