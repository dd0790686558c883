"""``torch.library.opcheck`` on every op of the ``sparselth`` namespace: the C++ kernels (schema,
fake implementation, dynamic-shape tracing) and the Python custom ops over them (also their
autograd registration), one test per op and backend on small inputs, so a failure names the op.
A last test fails when an op is registered without a case here."""

from __future__ import annotations

import pytest
import torch

import sparselth  # noqa: F401  (registers every op)
from sparselth.ops import backend as _backend
from sparselth.ops.shifted import BACKENDS as SHIFTED_BACKENDS
from sparselth.ops.shifted import ShiftedStructure
from sparselth.sparse.embedding_formats import compress_embedding
from sparselth.testing import random_csr, requires_kernel, test_backends

F64 = torch.float64


def _grad(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _csr(seed=0):
    A = random_csr(7, 5, 0.4, dtype=F64, seed=seed, empty_rows=0.3)
    At = A.t()
    return A, At.rowptr, At.col, A.csr_to_csc_perm()


def _shifted(seed=0):
    """A (5 rows, 3 blocks) structure with shifts in [0, 2] over windows of q = 4 of L = 6."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(5, 3, 3, generator=g) < 0.4
    row, blk, koff = keep.nonzero(as_tuple=True)
    rowptr = torch.zeros(6, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=5), 0)
    t_perm = torch.sort(blk, stable=True).indices
    t_rowptr = torch.zeros(4, dtype=torch.long)
    t_rowptr[1:] = torch.cumsum(torch.bincount(blk, minlength=3), 0)
    S = ShiftedStructure(rowptr, blk, None, t_rowptr, row[t_perm], t_perm, torch.argsort(t_perm),
                         5, 3).with_shifts(koff)
    return S, torch.randn(blk.numel(), dtype=F64, generator=g), torch.randn(2, 3, 6, dtype=F64,
                                                                          generator=g)


def _table(fmt=None, quantize=None):
    g = torch.Generator().manual_seed(1)
    W = torch.randn(9, 6, generator=g, dtype=torch.float32)
    M = torch.rand(9, 6, generator=g) < 0.5
    ids = torch.tensor([3, 0, 8, 3, 5])
    bag_ptr = torch.tensor([0, 2, 2, 5])
    return W, M, ids, bag_ptr, (compress_embedding(W, M, fmt, quantize) if fmt else None)


# --------------------------------------------------------------------------- C++ kernels
def spmm_kernel(_):
    A, *_t = _csr()
    X = torch.randn(5, 3, dtype=F64)
    return (A.rowptr, A.col, A.val, X, X > 0, torch.rand(7, dtype=F64), torch.randn(3, dtype=F64),
            7, True)


def spmm_linear_kernel(_):
    A, *_t = _csr()
    W = random_csr(4, 3, 0.5, dtype=F64, seed=2)
    return (A.rowptr, A.col, A.val, torch.randn(5, 3, dtype=F64), torch.randn(3, dtype=F64), True,
            W.rowptr, W.col, W.val, 7)


def sddmm_kernel(_):
    A, *_t = _csr()
    return A.rowptr, A.col, torch.randn(7, 3, dtype=F64), torch.randn(5, 3, dtype=F64)


def shifted_spmm_kernel(_):
    S, val, src = _shifted()
    return S.rowptr, S.blk, S.koff, val, src, torch.randn(5, dtype=F64), 5, 4, 2, 1


def shifted_sddmm_kernel(_):
    S, val, src = _shifted()
    return S.rowptr, S.blk, S.koff, torch.randn(2, 5, 4, dtype=F64), src


def sparse_conv2d_kernel(_):
    from sparselth.ops.sparse_conv_tiles import TiledConv
    g = torch.Generator().manual_seed(2)
    keep = torch.rand(5, 3, 3, 3, generator=g) < 0.4
    r, c, ky, kx = keep.nonzero(as_tuple=True)
    conv = TiledConv(r, c, ky, kx, 5, 3, (3, 3), (1, 1), (1, 1), 3, torch.long)
    tile, cb, perm, blkptr, lo = conv.layout(4, 6, 2, 8)
    return (torch.randn(2, 3, 4, 6, dtype=F64, generator=g), blkptr, lo,
            torch.randn(r.numel(), dtype=F64, generator=g), torch.randn(5, dtype=F64), 5, cb,
            [3, 3], [1, 1], [1, 1], [1, 1], [4, 6], list(tile))


def sparse_linear_kernel(_):
    A, *_t = _csr()
    return A.rowptr, A.col, A.val, torch.randn(4, 5, dtype=F64), torch.randn(7, dtype=F64), 7


def embedding_rows_kernel(_):
    W, M, ids, bag_ptr, t = _table("row_compact", "int8")
    return t.table, t.remap, t.scale, None, ids, bag_ptr, 1


def embedding_csr_kernel(_):
    W, M, ids, bag_ptr, t = _table("csr")
    return t.rowptr, t.col, t.values, t.scale, ids, None, 0, 6


def embedding_bitmask_kernel(_):
    W, M, ids, bag_ptr, t = _table("bitmask", "int8")
    return t.rowptr, t.bits, t.values, t.scale, ids.int(), bag_ptr, 1, 6


def embedding_backward_kernel(_):
    W, M, ids, bag_ptr, t = _table()
    return torch.randn(5, 6), M, ids, 9


def embedding_sparse_grad_kernel(_):
    W, M, ids, bag_ptr, t = _table()
    return torch.randn(5, 6), M.float(), ids


# --------------------------------------------------------------------------- custom ops
def spmm(backend):
    A, t_rowptr, t_col, t_perm = _csr()
    return (A.rowptr, A.col, _grad(A.val), _grad(torch.randn(5, 3, dtype=F64)), None,
            _grad(torch.rand(7, dtype=F64)), _grad(torch.randn(3, dtype=F64)), t_rowptr, t_col,
            t_perm, 7, backend)


def sddmm(backend):
    A, t_rowptr, t_col, t_perm = _csr()
    return (A.rowptr, A.col, _grad(torch.randn(7, 3, dtype=F64)),
            _grad(torch.randn(5, 3, dtype=F64)), t_rowptr, t_col, t_perm, backend)


def shifted_spmm(backend):
    S, val, src = _shifted()
    return (S.rowptr, S.blk, S.koff, _grad(val), _grad(src), _grad(torch.randn(5, dtype=F64)),
            S.t_rowptr, S.t_blk, S.t_perm, S.t_iperm, 5, 4, 2, 1, S.kmax, S.kmin, backend)


def shifted_sddmm(backend):
    S, val, src = _shifted()
    return (S.rowptr, S.blk, S.koff, _grad(torch.randn(2, 5, 4, dtype=F64)), _grad(src),
            S.t_rowptr, S.t_blk, S.t_perm, S.t_iperm, S.kmax, S.kmin, backend)


def embedding_gather(backend):
    W, M, ids, bag_ptr, t = _table("bitmask")
    return "bitmask", t.rowptr, t.bits, t.values, None, ids, bag_ptr, 1, 6, backend


def masked_embedding(backend):
    W, M, ids, bag_ptr, t = _table()
    return _grad(W), M, ids, bag_ptr, 0, 3, False, backend


def embedding_dense_grad(backend):
    W, M, ids, bag_ptr, t = _table()
    return torch.randn(5, 6), M, ids, 9, backend


def phase_interleave_kernel(_):
    return torch.randn(2, 4 * 3, 3, 4, dtype=F64), [2, 2], [5, 7]


def _spgemm_operands():
    A = random_csr(8, 6, 0.4, dtype=F64, power_law=True, seed=1)
    B = random_csr(6, 5, 0.4, dtype=F64, seed=2)
    return A, B, torch.randn(8, 5, dtype=F64)


def spgemm_kernel(_):
    A, B, _g = _spgemm_operands()
    return A.rowptr, A.col, A.val, B.rowptr, B.col, None, 5, F64


def spgemm_sampled_kernel(_):
    A, B, grad = _spgemm_operands()
    return A.rowptr, A.col, B.rowptr, B.col, B.val, grad


def spgemm(backend):
    A, B, _g = _spgemm_operands()
    At, Bt = A.t(), B.t()
    return (A.rowptr, A.col, _grad(A.val), B.rowptr, B.col, _grad(B.val), At.rowptr, At.col,
            A.csr_to_csc_perm(), Bt.rowptr, Bt.col, B.csr_to_csc_perm(), 5, F64, backend)


def spgemm_sampled(backend):
    A, B, grad = _spgemm_operands()
    return A.rowptr, A.col, B.rowptr, B.col, B.val, grad, backend


KERNELS = [spmm_kernel, spmm_linear_kernel, spgemm_kernel, spgemm_sampled_kernel, sddmm_kernel,
           shifted_spmm_kernel, shifted_sddmm_kernel,
           sparse_conv2d_kernel, sparse_linear_kernel, embedding_rows_kernel, embedding_csr_kernel,
           embedding_bitmask_kernel, embedding_backward_kernel, embedding_sparse_grad_kernel,
           phase_interleave_kernel]
# custom op -> (its backends, the kernel its case runs)
CUSTOM_OPS = {spmm: (test_backends(), "spmm"), sddmm: (test_backends(), "sddmm"),
              shifted_spmm: (SHIFTED_BACKENDS, "shifted_spmm"),
              shifted_sddmm: (SHIFTED_BACKENDS, "shifted_sddmm"),
              embedding_gather: (test_backends(), "embedding_bitmask"),
              masked_embedding: (test_backends(), "embedding_rows"),
              embedding_dense_grad: (test_backends(), "embedding_backward"),
              spgemm: (test_backends(), "spgemm"),
              spgemm_sampled: (test_backends(), "spgemm_sampled")}


def _cases():
    for build in KERNELS:
        yield pytest.param(build, "cpp", id=build.__name__,
                           marks=requires_kernel(build.__name__, "cpu"))
    for build, (names, kernel) in CUSTOM_OPS.items():
        for backend in names:
            marks = [] if backend == "reference" else [requires_kernel(kernel, "cpu", backend)]
            yield pytest.param(build, backend, id=f"{build.__name__}-{backend}", marks=marks)


@pytest.mark.parametrize("build, backend", list(_cases()))
def test_opcheck(build, backend):
    op = getattr(torch.ops.sparselth, build.__name__).default
    torch.library.opcheck(op, build(backend))


def test_every_op_has_a_case():
    registered = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("sparselth::")}
    covered = {b.__name__ for b in KERNELS} | {b.__name__ for b in CUSTOM_OPS}
    if not _backend._extension_loaded():
        covered = {n for n in covered if not n.endswith("_kernel")}
    assert registered == covered, f"ops without an opcheck case: {sorted(registered - covered)}"
