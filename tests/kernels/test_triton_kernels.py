"""Triton SpMM / SDDMM kernels against a slow, obviously correct float64 torch reference.

Runs on CPU tensors in the Triton interpreter (TRITON_INTERPRET=1, set by tests/conftest.py
before Triton is imported), so sizes stay small; where Triton was imported in compiled mode,
the GPU is used instead (and the module is skipped, saying why, where neither runs).
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparselth.testing import (DTYPES, HALF_DTYPES, INDEX_DTYPES, requires_triton,
                               tolerances, triton_device)

pytestmark = requires_triton
DEVICE = triton_device() or "cpu"
ROOT = Path(__file__).resolve().parents[2]


def _launchers():
    from sparselth import kernels
    return kernels.spmm.spmm, kernels.sddmm.sddmm


def spmm(*args):
    return _launchers()[0](*args)


def sddmm(*args):
    return _launchers()[1](*args)


# ---------------------------------------------------------------------------------------------
# Inputs and reference
# ---------------------------------------------------------------------------------------------
def make_csr(row_lengths, n, index_dtype, gen):
    """CSR pattern with the given row lengths; sorted, distinct columns in [0, n)."""
    cols = [torch.randperm(n, generator=gen)[:k].sort().values for k in row_lengths]
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    lengths = torch.tensor(list(row_lengths), dtype=torch.int64)
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    return rowptr.to(index_dtype), col.to(index_dtype)


def to_dense(rowptr, col, val, m, n):
    row = torch.repeat_interleave(torch.arange(m), rowptr.long().cpu().diff())
    v = torch.ones(col.numel(), dtype=torch.float64) if val is None else val.double().cpu()
    dense = torch.zeros(m, n, dtype=torch.float64)
    dense.index_put_((row, col.long().cpu()), v, accumulate=True)
    return dense


def ref_spmm(rowptr, col, val, x, x_mask, row_scale, bias, m):
    xm = x.double().cpu()
    if x_mask is not None:
        xm = xm * x_mask.double().cpu()
    out = to_dense(rowptr, col, val, m, x.shape[0]) @ xm
    if row_scale is not None:
        out = row_scale.double().cpu()[:, None] * out
    if bias is not None:
        out = out + bias.double().cpu()
    return out


def ref_sddmm(rowptr, col, x, y):
    row = torch.repeat_interleave(torch.arange(x.shape[0]), rowptr.long().cpu().diff())
    return (x.double().cpu()[row] * y.double().cpu()[col.long().cpu()]).sum(-1)


def make_operands(rowptr, col, m, n, F, dtype, gen, *, val, mask, scale, bias):
    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    x = rand(n, F)
    v = rand(col.numel()) if val else None
    if mask == "bool":
        x_mask = torch.rand(n, F, generator=gen) < 0.6
    elif mask == "float":  # soft mask: checks a multiply, not a select
        x_mask = torch.rand(n, F, generator=gen, dtype=torch.float64).to(dtype)
    else:
        x_mask = None
    rs = rand(m) if scale else None
    b = rand(F) if bias else None
    return [t.to(DEVICE) if t is not None else None for t in (v, x, x_mask, rs, b)]


def check_spmm(row_lengths, n, F, dtype, index_dtype, seed=0, **flags):
    gen = torch.Generator().manual_seed(seed)
    m = len(row_lengths)
    rowptr, col = make_csr(row_lengths, n, index_dtype, gen)
    val, x, x_mask, rs, b = make_operands(rowptr, col, m, n, F, dtype, gen, **flags)
    rowptr, col = rowptr.to(DEVICE), col.to(DEVICE)
    out = spmm(rowptr, col, val, x, x_mask, rs, b, m)
    assert out.shape == (m, F) and out.dtype == dtype and out.device == x.device
    torch.testing.assert_close(out.double().cpu(), ref_spmm(rowptr, col, val, x, x_mask, rs, b, m),
                               **tolerances(dtype))


def check_sddmm(row_lengths, n, F, dtype, index_dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    m = len(row_lengths)
    rowptr, col = make_csr(row_lengths, n, index_dtype, gen)
    x = torch.randn(m, F, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)
    y = torch.randn(n, F, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)
    rowptr, col = rowptr.to(DEVICE), col.to(DEVICE)
    out = sddmm(rowptr, col, x, y)
    assert out.shape == (col.numel(),) and out.dtype == dtype
    torch.testing.assert_close(out.double().cpu(), ref_sddmm(rowptr, col, x, y), **tolerances(dtype))


ALL_ON = dict(val=True, mask="float", scale=True, bias=True)
ALL_OFF = dict(val=False, mask=None, scale=False, bias=False)

# (row lengths, n, F): not multiples of any block, empty rows, one row, one column, F = 1,
# F over one feature tile, nothing stored, no rows, no features, power-law rows longer than
# one nnz chunk.
SHAPES = {
    "empty_rows": ([0, 3, 0, 0, 7, 1, 0, 2, 0], 7, 5),
    "one_row": ([6], 10, 4),
    "one_col": ([1, 0, 1, 1, 0, 1], 1, 3),
    "F1": ([2, 4, 0, 1, 3], 6, 1),
    "F_odd": ([3, 0, 5, 2, 9, 1, 4], 9, 37),
    "all_empty": ([0, 0, 0, 0], 5, 6),
    "no_rows": ([], 3, 4),
    "F0": ([1, 2, 0], 3, 0),
    "power_law": ([int(90 / (i + 1) ** 1.3) for i in range(24)], 90, 7),
}


# ---------------------------------------------------------------------------------------------
# SpMM
# ---------------------------------------------------------------------------------------------
def test_spmm_golden():
    # A = [[1, 0, 2],
    #      [0, 0, 0],
    #      [0, 3, 0]]
    rowptr = torch.tensor([0, 2, 2, 3], device=DEVICE)
    col = torch.tensor([0, 2, 1], device=DEVICE)
    val = torch.tensor([1.0, 2.0, 3.0], device=DEVICE)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device=DEVICE)
    out = spmm(rowptr, col, val, x, None, None, None, 3)
    torch.testing.assert_close(out.cpu(), torch.tensor([[11.0, 14.0], [0.0, 0.0], [9.0, 12.0]]))

    x_mask = torch.tensor([[True, False], [True, True], [False, True]], device=DEVICE)
    row_scale = torch.tensor([2.0, 5.0, -1.0], device=DEVICE)
    bias = torch.tensor([0.5, -0.5], device=DEVICE)
    out = spmm(rowptr, col, val, x, x_mask, row_scale, bias, 3)
    # masked x = [[1, 0], [3, 4], [0, 6]]; A @ it = [[1, 12], [0, 0], [9, 12]]
    torch.testing.assert_close(out.cpu(), torch.tensor([[2.5, 23.5], [0.5, -0.5], [-8.5, -12.5]]))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("flags", ["on", "off"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_spmm_shapes(shape, flags, dtype, index_dtype):
    row_lengths, n, F = SHAPES[shape]
    check_spmm(row_lengths, n, F, dtype, index_dtype, **(ALL_ON if flags == "on" else ALL_OFF))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("val", [False, True])
def test_spmm_operands(val, mask, scale, bias, dtype, index_dtype):
    check_spmm([2, 0, 3, 1, 5], 6, 5, dtype, index_dtype, seed=1,
               val=val, mask=mask, scale=scale, bias=bias)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_spmm_half(dtype):
    check_spmm([3, 0, 20, 1], 24, 35, dtype, torch.int32, **ALL_ON)


def test_spmm_long_row():
    # one row with many chunks of nnz, next to empty rows
    check_spmm([0, 150, 0, 1], 150, 3, torch.float32, torch.int64, **ALL_ON)


def test_spmm_strided_inputs():
    gen = torch.Generator().manual_seed(3)
    m, n, F = 5, 7, 6
    rowptr, col = make_csr([3, 0, 7, 1, 2], n, torch.int32, gen)
    x = torch.randn(F, n, generator=gen, dtype=torch.float64).t()  # column-major
    x_mask = (torch.rand(F, n, generator=gen) < 0.5).t()
    assert not x.is_contiguous() and not x_mask.is_contiguous()
    val = torch.randn(col.numel(), generator=gen, dtype=torch.float64)
    x, x_mask, val, rowptr, col = (t.to(DEVICE) for t in (x, x_mask, val, rowptr, col))
    out = spmm(rowptr, col, val, x, x_mask, None, None, m)
    torch.testing.assert_close(out.cpu(), ref_spmm(rowptr, col, val, x, x_mask, None, None, m),
                               **tolerances(torch.float64))


def test_spmm_empty_keeps_scale_and_bias():
    rowptr = torch.zeros(4, dtype=torch.int64, device=DEVICE)
    col = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    x = torch.randn(5, 3, device=DEVICE)
    row_scale = torch.tensor([1.0, float("inf"), 2.0], device=DEVICE)
    bias = torch.tensor([1.0, 2.0, 3.0], device=DEVICE)
    out = spmm(rowptr, col, None, x, None, row_scale, bias, 3)
    expected = row_scale.cpu()[:, None] * torch.zeros(3, 3) + bias.cpu()  # 0 * inf = nan
    torch.testing.assert_close(out.cpu(), expected, equal_nan=True)


def test_spmm_rejects_bad_inputs():
    rowptr = torch.tensor([0, 1, 2], device=DEVICE)
    col = torch.tensor([0, 1], device=DEVICE)
    x = torch.randn(2, 3, device=DEVICE)
    with pytest.raises(ValueError, match="spmm: rowptr.numel"):
        spmm(rowptr, col, None, x, None, None, None, 3)
    with pytest.raises(TypeError, match="spmm: rowptr and col"):
        spmm(rowptr, col.int(), None, x, None, None, None, 2)
    with pytest.raises(ValueError, match="spmm: val"):
        spmm(rowptr, col, torch.ones(3, device=DEVICE), x, None, None, None, 2)
    with pytest.raises(ValueError, match="spmm: bias"):
        spmm(rowptr, col, None, x, None, None, torch.ones(2, device=DEVICE), 2)
    with pytest.raises(TypeError, match="spmm: x.dtype"):
        spmm(rowptr, col, None, x.int(), None, None, None, 2)


# ---------------------------------------------------------------------------------------------
# SDDMM
# ---------------------------------------------------------------------------------------------
def test_sddmm_golden():
    rowptr = torch.tensor([0, 2, 2, 3], device=DEVICE)
    col = torch.tensor([0, 1, 1], device=DEVICE)
    x = torch.tensor([[1.0, 2.0], [9.0, 9.0], [3.0, -1.0]], device=DEVICE)
    y = torch.tensor([[1.0, 1.0], [2.0, 0.5]], device=DEVICE)
    out = sddmm(rowptr, col, x, y)
    torch.testing.assert_close(out.cpu(), torch.tensor([3.0, 3.0, 5.5]))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_sddmm_shapes(shape, dtype, index_dtype):
    row_lengths, n, F = SHAPES[shape]
    check_sddmm(row_lengths, n, F, dtype, index_dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_sddmm_half(dtype):
    check_sddmm([3, 0, 20, 1], 24, 35, dtype, torch.int64)


def test_sddmm_strided_inputs():
    gen = torch.Generator().manual_seed(4)
    rowptr, col = make_csr([2, 0, 5, 1], 6, torch.int64, gen)
    x = torch.randn(40, 4, generator=gen, dtype=torch.float64).t()  # (4, 40) column-major
    y = torch.randn(6, 80, generator=gen, dtype=torch.float64)[:, ::2]  # stride 2 in F
    rowptr, col, x, y = (t.to(DEVICE) for t in (rowptr, col, x, y))
    out = sddmm(rowptr, col, x, y)
    torch.testing.assert_close(out.cpu(), ref_sddmm(rowptr, col, x, y), **tolerances(torch.float64))


def test_sddmm_rejects_bad_inputs():
    rowptr = torch.tensor([0, 1, 2], device=DEVICE)
    col = torch.tensor([0, 1], device=DEVICE)
    x = torch.randn(2, 3, device=DEVICE)
    with pytest.raises(ValueError, match="sddmm: x and y"):
        sddmm(rowptr, col, x, torch.randn(2, 4, device=DEVICE))
    with pytest.raises(ValueError, match="sddmm: rowptr.numel"):
        sddmm(rowptr, col, torch.randn(3, 3, device=DEVICE), x)
    with pytest.raises(TypeError, match="sddmm: x and y must share"):
        sddmm(rowptr, col, x, x.double())


# ---------------------------------------------------------------------------------------------
# Fuzz
# ---------------------------------------------------------------------------------------------
@st.composite
def problems(draw):
    n = draw(st.integers(1, 8))
    m = draw(st.integers(0, 6))
    row_lengths = draw(st.lists(st.integers(0, n), min_size=m, max_size=m))
    F = draw(st.sampled_from([0, 1, 3, 8, 33]))
    return row_lengths, n, F


FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True)


@FUZZ
@given(problem=problems(), dtype=st.sampled_from(list(DTYPES)),
       index_dtype=st.sampled_from(list(INDEX_DTYPES)),
       val=st.booleans(), mask=st.sampled_from([None, "bool", "float"]), scale=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_spmm_fuzz(problem, dtype, index_dtype, val, mask, scale, bias, seed):
    row_lengths, n, F = problem
    check_spmm(row_lengths, n, F, dtype, index_dtype, seed=seed,
               val=val, mask=mask, scale=scale, bias=bias)


@FUZZ
@given(problem=problems(), dtype=st.sampled_from(list(DTYPES)),
       index_dtype=st.sampled_from(list(INDEX_DTYPES)),
       seed=st.integers(0, 2**16))
def test_sddmm_fuzz(problem, dtype, index_dtype, seed):
    row_lengths, n, F = problem
    check_sddmm(row_lengths, n, F, dtype, index_dtype, seed=seed)


# ---------------------------------------------------------------------------------------------
# Packaging
# ---------------------------------------------------------------------------------------------
def test_package_import_does_not_import_triton():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import kernels; "
            "assert 'triton' not in sys.modules, 'kernels imported triton'; "
            "assert kernels.available(); "
            "assert callable(kernels.spmm.spmm) and callable(kernels.sddmm.sddmm)")
    subprocess.run([sys.executable, "-c", code, str(ROOT)], check=True, timeout=120)
