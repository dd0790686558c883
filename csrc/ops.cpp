// Every op schema of the sparselth extension. Implementations register per dispatch key
// (TORCH_LIBRARY_IMPL) in csrc/cpu/<op>_cpu.cpp and csrc/cuda/<op>_cuda_op.cpp; autograd and
// fake (shape-only) implementations live in Python (sparselth/ops/<op>.py), where the public
// ops wrap these kernels.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(sparselth, m) {
  // out[i] = row_scale[i] * sum_{e in row i} val[e] * (x * x_mask)[col[e]] + bias, then
  // max(out[i], 0) when relu.
  // rowptr: (num_rows + 1,) int32|int64; col: (nnz,) same dtype; val: (nnz,) x.dtype or None;
  // x: (n, F) contiguous; x_mask: x.shape, bool or x.dtype; row_scale: (num_rows,); bias: (F,).
  m.def("spmm_kernel(Tensor rowptr, Tensor col, Tensor? val, Tensor x, Tensor? x_mask, "
        "Tensor? row_scale, Tensor? bias, int num_rows, bool relu=False) -> Tensor");
  // SpMM fused with a following sparse linear map (csrc/cpu/spmm_linear_cpu.cpp):
  // out[i, j] = sum_{e in W row j} w_val[e] * h_i[w_col[e]], h_i = act(sum_{k in A row i}
  // val[k] x[col[k]] + bias), act = ReLU when relu. A (num_rows x n) and W (out_features x F)
  // CSR with one index dtype; x (n, F) contiguous; bias (F,); w_col in [0, F) (checked).
  m.def("spmm_linear_kernel(Tensor rowptr, Tensor col, Tensor? val, Tensor x, Tensor? bias, "
        "bool relu, Tensor w_rowptr, Tensor w_col, Tensor? w_val, int num_rows) -> Tensor");
  // out[e] = dot(x[row(e)], y[col[e]]) for every stored entry e of the CSR pattern.
  m.def("sddmm_kernel(Tensor rowptr, Tensor col, Tensor x, Tensor y) -> Tensor");
  // Sparse x sparse -> dense (csrc/cpu/spgemm_cpu.cpp, csrc/cuda/spgemm_cuda.cu): out (m, k) =
  // A (m, n) @ B (n, k), both CSR with one index dtype (int32|int64); a_val, b_val: (nnz,)
  // `dtype` (float32|float64) or None (ones). A's columns lie in [0, n), B's in [0, num_cols)
  // (checked). Gustavson: row i of out accumulates B's rows named by row i of A.
  m.def("spgemm_kernel(Tensor a_rowptr, Tensor a_col, Tensor? a_val, Tensor b_rowptr, "
        "Tensor b_col, Tensor? b_val, int num_cols, ScalarType dtype) -> Tensor");
  // out[e] = sum_{f in B row a_col[e]} b_val[f] * grad[row(e), b_col[f]] for every stored e of
  // A: spgemm's gradient with respect to A's values (on transposes: B's). grad (m, k); (nnz(A),).
  m.def("spgemm_sampled_kernel(Tensor a_rowptr, Tensor a_col, Tensor b_rowptr, Tensor b_col, "
        "Tensor? b_val, Tensor grad) -> Tensor");

  // Shifted-window products (csrc/cpu/shifted_cpu.cpp): the direct sparse convolution and, with
  // no shifts, the sparse linear layer.
  // out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q], q < q_len.
  // rowptr: (num_rows + 1,) int32|int64; blk, koff: (nnz,) same dtype (koff None = zeros);
  // val: (nnz,) or None (ones); src: (N, blocks, L) contiguous; bias: (num_rows,) or None.
  // Requires 0 <= blk < blocks and 0 <= koff <= L - q (checked).
  // The q positions form rows of `wide`; only the first `cols` of each row are stored, so the
  // result is (N, num_rows, q / wide * cols) (wide = cols = q: everything, in order).
  m.def("shifted_spmm_kernel(Tensor rowptr, Tensor blk, Tensor? koff, Tensor? val, Tensor src, "
        "Tensor? bias, int num_rows, int q, int wide, int cols) -> Tensor");
  // out[e] = sum_n sum_{q < a.size(2)} a[n, row(e), q] * src[n, blk[e], koff[e] + q].
  // a: (N, num_rows, q) contiguous, src as above. Returns (nnz,).
  m.def("shifted_sddmm_kernel(Tensor rowptr, Tensor blk, Tensor? koff, Tensor a, Tensor src) "
        "-> Tensor");

  // Register-tiled direct sparse convolution (csrc/cpu/sparse_conv_cpu.cpp), inference only:
  // out[n, r, y, x] = bias[r] + sum_e val[e] * x[n, c(e), y * stride[0] + ky(e) * dilation[0] -
  // padding[0], x * stride[1] + kx(e) * dilation[1] - padding[1]], zeros outside x; out is
  // (N, out_channels, output_size[0], output_size[1]). x: (N, C, H, W) contiguous
  // float32/float64. Entries grouped by (channel block b, row r) in blkptr
  // ((ceil(C / channel_block) * out_channels + 1,) int32|int64); lo (nnz,) int32: each entry's
  // offset in the scratch of tiles [rows, cols, images] = tile, encoding c - b * channel_block,
  // ky and kx (layout in csrc/cpu/sparse_conv_tiles.h; range checked); val (nnz,);
  // bias (out_channels,) or None.
  m.def("sparse_conv2d_kernel(Tensor x, Tensor blkptr, Tensor lo, Tensor val, Tensor? bias, "
        "int out_channels, int channel_block, int[] kernel_size, int[] stride, int[] dilation, "
        "int[] padding, int[] output_size, int[] tile) -> Tensor");

  // Phase interleave (csrc/cpu/phase_interleave_cpu.cpp): out[n, r, i * sy + py, j * sx + px]
  // = z[n, (py * sx + px) * R + r, i, j]; z (N, sy * sx * R, Hm, Wm) float32/float64, out
  // (N, R, output_size[0], output_size[1]): a strided transposed convolution's phases, merged.
  m.def("phase_interleave_kernel(Tensor z, int[] stride, int[] output_size) -> Tensor");

  // Row-major sparse linear layer (csrc/cpu/sparse_linear_cpu.cpp):
  // out[n, h] = bias[h] + sum_s sum_{e in row s * out_features + h} val[e] * x[n, col[e]]:
  // F.linear with a CSR weight (out_features, in_features) given as S >= 1 stacked panels
  // (rowptr: S * out_features + 1 entries, int32|int64; S = 1: the plain CSR); col: (nnz,)
  // rowptr's dtype or int16; x (batch, in_features), any strides; the result row-major; relu:
  // ReLU applied in the store (the next activation fused).
  m.def("sparse_linear_kernel(Tensor rowptr, Tensor col, Tensor? val, Tensor x, Tensor? bias, "
        "int out_features, bool relu=False) -> Tensor");

  // Embedding gathers (csrc/cpu/embedding_cpu.cpp, csrc/cuda/embedding_cuda.cu). Every one
  // returns (num_out, d): without bag_ptr row o is the stored row ids[o]; with bag_ptr
  // ((B + 1,) int64, 0 .. ids.numel()) row b is the sum (mode 0) or mean (mode 1) of the rows of
  // ids[bag_ptr[b] : bag_ptr[b + 1]], zeros for an empty bag. ids: (n,) int32|int64, in range.
  // Values: float32/float64, or int8 times scale[stored row] (output dtype = scale's).
  // Dense / row-compact: row id = table[remap[id]] * mask (remap None: table[id]; remap[id]
  // == -1: zeros). table (K, d); remap (R,) int32; scale (K,); mask (K, d) bool or out dtype.
  m.def("embedding_rows_kernel(Tensor table, Tensor? remap, Tensor? scale, Tensor? mask, "
        "Tensor ids, Tensor? bag_ptr, int mode) -> Tensor");
  // Per-row CSR: row id has val[e] at feature col[e] for rowptr[id] <= e < rowptr[id + 1].
  // rowptr (R + 1,) int32|int64; col (nnz,) int16|int32 in [0, dim); val (nnz,); scale (R,).
  m.def("embedding_csr_kernel(Tensor rowptr, Tensor col, Tensor val, Tensor? scale, "
        "Tensor ids, Tensor? bag_ptr, int mode, int dim) -> Tensor");
  // Per-row bitmask: bits (R, ceil(dim / 8)) uint8, bit f % 8 of byte f / 8 marks feature f as
  // stored; row id's stored values are val[rowptr[id] ..] in feature order; scale (R,).
  m.def("embedding_bitmask_kernel(Tensor rowptr, Tensor bits, Tensor val, Tensor? scale, "
        "Tensor ids, Tensor? bag_ptr, int mode, int dim) -> Tensor");
  // Dense gradient of the masked gather: out (num_rows, d) = 0; out[ids[i]] += grad[i] *
  // mask[ids[i]] (mask None: ones). grad (n, d) float32/float64; mask (num_rows, d).
  m.def("embedding_backward_kernel(Tensor grad, Tensor? mask, Tensor ids, int num_rows) "
        "-> Tensor");
  // Values of the sparse (COO) gradient of the masked gather: out (n, d) = grad * mask[ids].
  m.def("embedding_sparse_grad_kernel(Tensor grad, Tensor mask, Tensor ids) -> Tensor");
}

// The module object only makes `import sparselth._C` load the library (and its registrations).
static PyModuleDef sparselth_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&sparselth_module); }
