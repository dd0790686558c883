"""The shifted-window kernels (``sparselth.ops.shifted``; C++ ``shifted_spmm_kernel`` /
``shifted_sddmm_kernel``) against the pure-PyTorch reference in float32 and float64: odd shapes
(empty batch, no rows, empty rows, one column kept, windows longer than a register tile),
with and without values, shifts and bias; gradients against autograd through the reference;
second derivatives; the adjoint identity; the kernels' bounds checks."""

import pytest
import torch

from sparselth.ops.shifted import (BACKENDS, ShiftedStructure, shifted_sddmm_reference,
                                   shifted_spmm, shifted_spmm_reference, shifted_spmm_t)
from sparselth.testing import DTYPES, INDEX_DTYPES, random_csr, requires_kernel, tolerances

HAS_SPMM = requires_kernel("shifted_spmm", "cpu")
HAS_SDDMM = requires_kernel("shifted_sddmm", "cpu")
OP_BACKENDS = [pytest.param(b, marks=[] if b == "reference" else [HAS_SPMM]) for b in BACKENDS]

# (N, rows, blocks, q, wide, cols, reach): q positions on rows of `wide`, the first `cols` of
# each kept; shifts in [0, reach], so the source is q + reach long.
SHAPES = [
    (1, 1, 1, 1, 1, 1, 0),        # one of everything
    (2, 5, 3, 7, 7, 7, 2),        # nothing narrowed
    (3, 17, 4, 40, 8, 5, 3),      # rows of 8, first 5 kept
    (1, 9, 2, 35, 7, 7, 0),       # all shifts 0
    (2, 33, 5, 37, 37, 1, 4),     # one column kept
    (1, 4, 6, 300, 300, 300, 1),  # windows longer than one register tile
    (0, 3, 2, 5, 5, 5, 1),        # empty batch
    (2, 0, 2, 5, 5, 5, 1),        # no rows
    (2, 6, 3, 0, 1, 1, 1),        # no positions
    (4, 64, 16, 256, 256, 256, 2),  # enough work to run threaded
]


def structure(R, C, reach, density=0.35, seed=0, index_dtype=torch.int64, shifts=True):
    """A random structure: entry (r, block, shift) kept with probability ``density``, rows
    r % 4 == 1 empty; with its transposed parts, as ``ConvPlan`` builds them."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(R, C, reach + 1, generator=g) < density
    keep[1::4] = False
    if not shifts:
        keep[..., 1:] = False
    row, blk, koff = keep.nonzero(as_tuple=True)
    rowptr = torch.zeros(R + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=R), 0)
    t_perm = torch.sort(blk, stable=True).indices
    t_rowptr = torch.zeros(C + 1, dtype=torch.long)
    t_rowptr[1:] = torch.cumsum(torch.bincount(blk, minlength=C), 0)
    idx = index_dtype
    S = ShiftedStructure(rowptr.to(idx), blk.to(idx), None, t_rowptr.to(idx), row[t_perm].to(idx),
                         t_perm, torch.argsort(t_perm), R, C)
    return S.with_shifts(koff.to(idx) if shifts else None)


def operands(S, N, q, reach, dtype, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return rand(S.blk.numel()), rand(N, S.num_blocks, q + reach), rand(S.num_rows)


@pytest.mark.parametrize("impl", [
    pytest.param(shifted_spmm_reference, id="reference"),
    pytest.param(lambda *a: torch.ops.sparselth.shifted_spmm_kernel(*a), id="cpp",
                 marks=HAS_SPMM)])
def test_hand_computed_golden(impl):
    # row 0: 2 * src[block 1, 1 + q] + src[block 0, q] + bias 0.5; row 1: empty (its bias -1)
    rowptr, blk, koff = torch.tensor([0, 2, 2]), torch.tensor([1, 0]), torch.tensor([1, 0])
    src = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]])
    out = impl(rowptr, blk, koff, torch.tensor([2.0, 1.0]), src, torch.tensor([0.5, -1.0]), 2,
               3, 3, 3)
    assert out.tolist() == [[[41.5, 62.5, 83.5], [-1.0, -1.0, -1.0]]]


@HAS_SPMM
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("values, shifts, bias", [(True, True, True), (False, False, False),
                                                  (True, False, False), (False, True, True)])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_spmm_kernel_matches_reference(shape, values, shifts, bias, index_dtype, dtype):
    N, R, C, q, wide, cols, reach = shape
    S = structure(R, C, reach, seed=R + q, index_dtype=index_dtype, shifts=shifts)
    val, src, b = operands(S, N, q, reach, dtype)
    args = (S.rowptr, S.blk, S.koff, val if values else None, src, b if bias else None, R, q,
            wide, cols)
    got = torch.ops.sparselth.shifted_spmm_kernel(*args)
    assert got.shape == (N, R, q // wide * cols) and got.is_contiguous()
    torch.testing.assert_close(got, shifted_spmm_reference(*args), **tolerances(dtype))


@HAS_SDDMM
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shifts", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sddmm_kernel_matches_reference(shape, shifts, index_dtype, dtype):
    N, R, C, q, wide, cols, reach = shape
    S = structure(R, C, reach, seed=C + q, index_dtype=index_dtype, shifts=shifts)
    _, src, _ = operands(S, N, q, reach, dtype)
    a = torch.randn(N, R, q, dtype=torch.float64).to(dtype)
    got = torch.ops.sparselth.shifted_sddmm_kernel(S.rowptr, S.blk, S.koff, a, src)
    torch.testing.assert_close(got, shifted_sddmm_reference(S.rowptr, S.blk, S.koff, a, src),
                               **tolerances(dtype))


@pytest.mark.parametrize("backend", OP_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2], SHAPES[4]], ids=str)
def test_gradients_match_autograd_through_the_reference(shape, dtype, backend):
    N, R, C, q, wide, cols, reach = shape
    S = structure(R, C, reach, seed=3)
    tensors = [t.requires_grad_(True) for t in operands(S, N, q, reach, dtype, seed=3)]
    out = shifted_spmm(S, *tensors[:2], q, tensors[2], backend, wide, cols)
    ref_in = [t.detach().double().requires_grad_(True) for t in tensors]
    ref = shifted_spmm_reference(S.rowptr, S.blk, S.koff, ref_in[0], ref_in[1], ref_in[2], R, q,
                                 wide, cols)
    torch.testing.assert_close(out.double(), ref, **tolerances(dtype))
    go = torch.randn(ref.shape, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(out, tensors, go.to(dtype)),
                         torch.autograd.grad(ref, ref_in, go)):
        torch.testing.assert_close(got.double(), want, **tolerances(dtype))


@pytest.mark.parametrize("backend", OP_BACKENDS)
def test_gradcheck_and_adjoint(backend):
    """First and second derivatives through both ops, and <S x, y> == <x, S^T y>."""
    S = structure(3, 2, 2, density=0.5, seed=4)
    val, src, b = (t.requires_grad_(True) for t in operands(S, 1, 6, 2, torch.float64, seed=4))
    f = lambda v, s_, b_: shifted_spmm(S, v, s_, 6, b_, backend, 3, 2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (val, src, b))
    assert torch.autograd.gradgradcheck(f, (val, src, b))
    y = torch.randn(1, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        lhs = (shifted_spmm(S, val, src, 6, None, backend) * y).sum()
        rhs = (src * shifted_spmm_t(S, val, y, src.shape[2], backend)).sum()
    torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("backend", OP_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_without_shifts_it_is_a_sparse_product(backend, dtype):
    """``ShiftedStructure.from_csr``: out[0] = A @ src[0] (the sparse linear layer's route),
    with the last columns of each row dropped as the padded batches of that route are."""
    A = random_csr(13, 9, 0.4, dtype=dtype, seed=5)
    src = torch.randn(1, 9, 8, dtype=torch.float64).to(dtype)
    out = shifted_spmm(ShiftedStructure.from_csr(A), A.val, src, 8, None, backend, 8, 5)
    torch.testing.assert_close(out[0], (A.to_dense(torch.float64) @ src[0].double())[:, :5]
                               .to(dtype), **tolerances(dtype))


@HAS_SPMM
@pytest.mark.parametrize("call, exc, word", [
    (lambda s: (torch.tensor([0, 1]), torch.tensor([3]), None, None, s, None, 1, 4, 4, 4),
     ValueError, "blk must lie in"),
    (lambda s: (torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]), None, s, None, 1, 4,
                4, 4), ValueError, "koff must lie in"),
    (lambda s: (torch.tensor([0, 2]), torch.tensor([0]), None, None, s, None, 1, 4, 4, 4),
     ValueError, "rowptr must start at 0"),
    (lambda s: (torch.tensor([0, 2, 1, 2]), torch.tensor([0, 1]), None, None, s, None, 3, 4, 4,
                4), ValueError, "rowptr must be non-decreasing"),
    (lambda s: (torch.tensor([0, 1]), torch.tensor([0]), None, None, s, None, 1, 4, 3, 2),
     ValueError, "need 1 <= cols <= wide"),
    (lambda s: (torch.tensor([0, 1]), torch.tensor([0]), None, None, s.half(), None, 1, 4, 4, 4),
     TypeError, "src must be float32 or float64"),
    (lambda s: (torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), None, None, s, None,
                1, 4, 4, 4), TypeError, "rowptr and col must both be int32 or both int64"),
])
def test_spmm_kernel_rejects_bad_input(call, exc, word):
    with pytest.raises(exc, match=f"shifted_spmm: {word}"):
        torch.ops.sparselth.shifted_spmm_kernel(*call(torch.randn(1, 3, 4)))


@HAS_SDDMM
def test_sddmm_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="shifted_sddmm: a and src must have the same batch"):
        torch.ops.sparselth.shifted_sddmm_kernel(torch.tensor([0, 1]), torch.tensor([0]), None,
                                                 torch.randn(2, 1, 4), torch.randn(1, 3, 4))
