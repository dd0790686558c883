// Op schemas of the sparselth extension. Implementations register per dispatch key in
// csrc/cpu/<op>_cpu.cpp and csrc/cuda/<op>_cuda_op.cpp; autograd and fake (shape-only)
// implementations live in Python (sparselth/ops), where the public ops wrap these kernels.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(sparselth, m) {
  // out[i] = row_scale[i] * sum_{e in row i} val[e] * (x * x_mask)[col[e]] + bias
  // rowptr: (num_rows + 1,) int32|int64; col: (nnz,) same dtype; val: (nnz,) x.dtype or None;
  // x: (n, F) contiguous; x_mask: x.shape, bool or x.dtype; row_scale: (num_rows,); bias: (F,).
  m.def("spmm_kernel(Tensor rowptr, Tensor col, Tensor? val, Tensor x, Tensor? x_mask, "
        "Tensor? row_scale, Tensor? bias, int num_rows) -> Tensor");
  // out[e] = dot(x[row(e)], y[col[e]]) for every stored entry e of the CSR pattern.
  m.def("sddmm_kernel(Tensor rowptr, Tensor col, Tensor x, Tensor y) -> Tensor");
}

// The module object only makes `import sparselth._C` load the library (and its registrations).
static PyModuleDef sparselth_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&sparselth_module); }
