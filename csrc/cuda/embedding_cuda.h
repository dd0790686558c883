// Embedding gathers on CUDA: raw-pointer launchers (no torch headers). One warp per output row
// (an id, or a bag of ids); lanes cover the features.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace sparselth {
namespace gpu {

// Shared by the gathers (device memory of the current device, contiguous, row-major):
//   ids      (n) I in [0, R) (not validated here: the Python ops check the range)
//   bag_ptr  (num_out + 1) int64 from 0 to n, non-decreasing; or nullptr: no bags, num_out == n
//   out      (num_out, dim) T, written in full: row o = stored row ids[o] (no bags), or the sum
//            of the rows ids[bag_ptr[o] .. bag_ptr[o + 1]), divided by the bag size if `mean`
//            (an empty bag gives zeros)
//   scale    per stored row T, or nullptr (1); required when V is int8_t (quantised values)
// T in {float, double}; V in {T, int8_t}; I in {int32_t, int64_t}. Accumulates in T. Enqueues on
// `stream`, does not synchronise, returns the launch error (cudaSuccess if none).

// Dense / row-compact: row id = table[remap[id]] * scale * mask (remap nullptr: table[id];
// remap[id] < 0: zeros). table (K, dim) V; remap (R) int32 or nullptr; scale (K);
// mask (K, dim) M or nullptr, M in {uint8_t (a torch bool tensor), T}.
template <typename T, typename V, typename I, typename M>
cudaError_t embedding_rows_launch(const V* table, const int32_t* remap, const T* scale,
                                  const M* mask, const I* ids, const int64_t* bag_ptr, T* out,
                                  int64_t num_out, int64_t dim, bool mean, cudaStream_t stream);

// Per-row CSR: row id has val[e] * scale[id] at feature col[e], rowptr[id] <= e < rowptr[id+1].
// rowptr (R + 1) P in {int32_t, int64_t}; col (nnz) C in {int16_t, int32_t}, distinct within a
// row and in [0, dim); val (nnz) V; scale (R).
template <typename T, typename V, typename P, typename C, typename I>
cudaError_t embedding_csr_launch(const P* rowptr, const C* col, const V* val, const T* scale,
                                 const I* ids, const int64_t* bag_ptr, T* out, int64_t num_out,
                                 int64_t dim, bool mean, cudaStream_t stream);

// Per-row bitmask: bits (R, ceil(dim / 8)) uint8, bit f % 8 of byte f / 8 set when feature f is
// stored (padding bits zero); row id's values are val[rowptr[id] ..] in feature order, times
// scale[id]. rowptr (R + 1) P; val (nnz) V; scale (R).
template <typename T, typename V, typename P, typename I>
cudaError_t embedding_bitmask_launch(const P* rowptr, const uint8_t* bits, const V* val,
                                     const T* scale, const I* ids, const int64_t* bag_ptr,
                                     T* out, int64_t num_out, int64_t dim, bool mean,
                                     cudaStream_t stream);

// Dense gradient of the masked gather: out (num_rows, dim) T is zeroed, then
// out[ids[i]] += grad[i] * mask[ids[i]] (atomic adds; mask nullptr: ones). grad (n, dim) T;
// mask (num_rows, dim) M in {uint8_t, T}.
template <typename T, typename M, typename I>
cudaError_t embedding_backward_launch(const T* grad, const M* mask, const I* ids, T* out,
                                      int64_t n, int64_t num_rows, int64_t dim,
                                      cudaStream_t stream);

// Values of the sparse gradient: out (n, dim) T = grad[i] * mask[ids[i]]. grad (n, dim) T;
// mask (rows, dim) M in {uint8_t, T}.
template <typename T, typename M, typename I>
cudaError_t embedding_sparse_grad_launch(const T* grad, const M* mask, const I* ids, T* out,
                                         int64_t n, int64_t dim, cudaStream_t stream);

}  // namespace gpu
}  // namespace sparselth
