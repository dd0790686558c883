"""The CUDA kernels (csrc/cuda): nvcc compiles every .cu file and the host compiler checks
every wrapper (always, when nvcc is on PATH), and on a GPU ``torch.ops.sparselth.spmm_kernel``
/ ``sddmm_kernel`` match a pure-torch reference for every dtype, index dtype and optional
input, on awkward shapes."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sparselth.testing import GPU_DTYPES, INDEX_DTYPES, requires_kernel, tolerances

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Compile check: no GPU needed.


@pytest.mark.slow
def test_cuda_sources_compile_with_nvcc():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH, so csrc/cuda/*.cu cannot be compiled here")
    if os.environ.get("SPARSELTH_CUDA_CHECKED") == "1":
        pytest.skip("csrc/cuda/*.cu were compiled by .ci/check_cuda.sh earlier in this run")
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "check_cuda.sh")], capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"check_cuda.sh failed:\n{proc.stdout}\n{proc.stderr}"
    for name in ("spmm_cuda.cu", "sddmm_cuda.cu", "embedding_cuda.cu"):
        assert f"ok   csrc/cuda/{name}" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------
# GPU tests: the registered CUDA implementations against a float64 torch reference.


requires_spmm = requires_kernel("spmm", "cuda")
requires_sddmm = requires_kernel("sddmm", "cuda")
# Feature widths: 1, below/above a warp, not a multiple of any vector width, several passes.
FEATURES = (1, 3, 8, 33, 64, 130, 264)


def make_csr(kind: str, index_dtype: torch.dtype, seed: int = 0):
    """(rowptr, col, num_rows, num_cols) built on the CPU, sorted, duplicate-free."""
    g = torch.Generator().manual_seed(seed)
    if kind == "empty_rows":  # short rows, a third of them empty
        m, n = 60, 45
        deg = torch.randint(1, 9, (m,), generator=g) * (torch.rand(m, generator=g) > 0.33)
    elif kind == "power_law":  # heavy tail: hubs above the long-row threshold (256) up to n
        m, n = 3000, 2500
        u = torch.rand(m, generator=g).clamp(min=1e-3)
        deg = (2.0 * u ** -1.2).long().clamp(max=n) * (torch.rand(m, generator=g) > 0.1)
        deg[:3] = torch.tensor([n, 1000, 300])  # clustered hubs at the start
    elif kind == "all_long":  # every row handled by the long-row kernel
        m, n = 20, 900
        deg = torch.randint(257, 900, (m,), generator=g)
    elif kind == "no_entries":
        m, n = 7, 5
        deg = torch.zeros(m, dtype=torch.long)
    elif kind == "one":
        m, n = 1, 1
        deg = torch.ones(1, dtype=torch.long)
    elif kind == "no_rows":
        m, n = 0, 4
        deg = torch.zeros(0, dtype=torch.long)
    else:
        raise ValueError(kind)
    cols = [torch.randperm(n, generator=g)[: int(d)].sort().values for d in deg]
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)
    rowptr = torch.zeros(m + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(deg.long(), 0)
    return rowptr.to(index_dtype), col.to(index_dtype), m, n


GRAPHS = ("empty_rows", "power_law", "all_long", "no_entries", "one", "no_rows")


def small_ints(shape, dtype, g, lo=-3, hi=3):
    """Small integers: every dtype and fp32 accumulation represent the results exactly."""
    return torch.randint(lo, hi + 1, shape, generator=g).to(dtype)


def ref_spmm(rowptr, col, val, x, x_mask, row_scale, bias, num_rows):
    xd = x.double()
    if x_mask is not None:
        xd = xd * x_mask.double()
    row = torch.repeat_interleave(torch.arange(num_rows, device=x.device),
                                  (rowptr[1:] - rowptr[:-1]).long())
    msg = xd[col.long()]
    if val is not None:
        msg = msg * val.double()[:, None]
    out = torch.zeros(num_rows, x.shape[1], dtype=torch.float64, device=x.device)
    out.index_add_(0, row, msg)
    if row_scale is not None:
        out = out * row_scale.double()[:, None]
    if bias is not None:
        out = out + bias.double()
    return out


def ref_sddmm(rowptr, col, x, y):
    row = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device),
                                  (rowptr[1:] - rowptr[:-1]).long())
    return (x.double()[row] * y.double()[col.long()]).sum(-1)


# (val, mask kind, row_scale, bias): none, each alone, everything (both mask kinds).
OPTIONS = (
    (False, None, False, False),
    (True, None, False, False),
    (False, "bool", False, False),
    (False, "value", False, False),
    (False, None, True, False),
    (False, None, False, True),
    (True, "bool", True, True),
    (True, "value", True, True),
)


def spmm_inputs(rowptr, col, m, n, F, dtype, options, g, misalign=False):
    has_val, mask_kind, has_scale, has_bias = options
    nnz = col.numel()
    if misalign:  # contiguous but offset by one element: forces the scalar (VEC = 1) path
        x = small_ints((n * F + 1,), dtype, g)[1:].view(n, F)
    else:
        x = small_ints((n, F), dtype, g)
    val = small_ints((nnz,), dtype, g, -2, 2) if has_val else None
    if mask_kind == "bool":
        x_mask = torch.rand(n, F, generator=g) > 0.3
    elif mask_kind == "value":
        x_mask = small_ints((n, F), dtype, g, 0, 2)
    else:
        x_mask = None
    row_scale = small_ints((m,), dtype, g, -2, 2) if has_scale else None
    bias = small_ints((F,), dtype, g) if has_bias else None
    dev = "cuda"
    to = lambda t: None if t is None else t.to(dev)  # noqa: E731
    return (to(rowptr), to(col), to(val), to(x), to(x_mask), to(row_scale), to(bias), m)


@requires_spmm
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("F", (4, 8, 64, 128))
def test_spmm_kernel_unaligned_and_noncontiguous(dtype, F):
    rowptr, col, m, n = make_csr("power_law", torch.int64)
    g = torch.Generator().manual_seed(2)
    options = (True, "value", True, True)
    args = spmm_inputs(rowptr, col, m, n, F, dtype, options, g, misalign=True)
    out = torch.ops.sparselth.spmm_kernel(*args)
    torch.testing.assert_close(out, ref_spmm(*args).to(dtype), atol=0, rtol=0)
    rowptr_c, col_c, val, x, x_mask, row_scale, bias, m = args
    x_t = x.t().contiguous().t()  # same values, column-major strides
    out_t = torch.ops.sparselth.spmm_kernel(rowptr_c, col_c, val, x_t, x_mask, row_scale, bias, m)
    torch.testing.assert_close(out_t, out, atol=0, rtol=0)


@requires_spmm
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_spmm_kernel_random_values_and_determinism(dtype):
    rowptr, col, m, n = make_csr("power_law", torch.int32, seed=3)
    g = torch.Generator().manual_seed(3)
    for F in (1, 33, 128):
        x = torch.randn(n, F, generator=g).to(dtype).cuda()
        val = torch.randn(col.numel(), generator=g).to(dtype).cuda()
        args = (rowptr.cuda(), col.cuda(), val, x, None, None, None, m)
        out = torch.ops.sparselth.spmm_kernel(*args)
        torch.testing.assert_close(out.double(), ref_spmm(*args), **tolerances(dtype))
        again = torch.ops.sparselth.spmm_kernel(*args)
        assert torch.equal(out, again), "spmm_kernel is not deterministic"


def _spmm_exact(rowptr, col, m, n, dtype, g):
    for F, options in itertools.product(FEATURES, OPTIONS):
        args = spmm_inputs(rowptr, col, m, n, F, dtype, options, g)
        out = torch.ops.sparselth.spmm_kernel(*args)
        assert out.shape == (m, F) and out.dtype == dtype and out.is_cuda
        want = ref_spmm(*args).to(dtype)  # exact value, rounded once like the kernel
        torch.testing.assert_close(out, want, atol=0, rtol=0,
                                   msg=lambda s: f"F={F} options={options}: {s}")


def _sddmm_exact(rowptr, col, m, n, dtype, g):
    for F in FEATURES + (0,):
        x = small_ints((m, F), dtype, g).cuda()
        y = small_ints((n, F), dtype, g).cuda()
        out = torch.ops.sparselth.sddmm_kernel(rowptr.cuda(), col.cuda(), x, y)
        assert out.shape == (col.numel(),) and out.dtype == dtype and out.is_cuda
        want = ref_sddmm(rowptr.cuda(), col.cuda(), x, y).to(dtype)
        torch.testing.assert_close(out, want, atol=0, rtol=0, msg=lambda s: f"F={F}: {s}")


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("op, check", [
    pytest.param("spmm", _spmm_exact, marks=requires_spmm, id="spmm"),
    pytest.param("sddmm", _sddmm_exact, marks=requires_sddmm, id="sddmm")])
def test_kernel_exact_on_small_integers(op, check, dtype, index_dtype, graph):
    rowptr, col, m, n = make_csr(graph, index_dtype)
    check(rowptr, col, m, n, dtype, torch.Generator().manual_seed(1))


@requires_sddmm
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_sddmm_kernel_random_unaligned(dtype):
    rowptr, col, m, n = make_csr("power_law", torch.int64, seed=5)
    g = torch.Generator().manual_seed(5)
    for F in (1, 16, 33, 128):
        x = torch.randn(m * F + 1, generator=g).to(dtype).cuda()[1:].view(m, F)
        y = torch.randn(n, F, generator=g).to(dtype).cuda()
        out = torch.ops.sparselth.sddmm_kernel(rowptr.cuda(), col.cuda(), x, y)
        want = ref_sddmm(rowptr.cuda(), col.cuda(), x, y)
        torch.testing.assert_close(out.double(), want, **tolerances(dtype))


@requires_spmm
@requires_sddmm
def test_cuda_kernels_reject_bad_inputs():
    rowptr, col, m, n = make_csr("empty_rows", torch.int64)
    rowptr, col = rowptr.cuda(), col.cuda()
    x = torch.randn(n, 8, device="cuda")
    with pytest.raises(ValueError, match="spmm_kernel: rowptr"):
        torch.ops.sparselth.spmm_kernel(rowptr, col, None, x, None, None, None, m + 1)
    with pytest.raises(TypeError, match="spmm_kernel: col must have rowptr's dtype"):
        torch.ops.sparselth.spmm_kernel(rowptr, col.int(), None, x, None, None, None, m)
    with pytest.raises(ValueError, match="spmm_kernel: bias"):
        torch.ops.sparselth.spmm_kernel(rowptr, col, None, x, None, None, x[0, :3], m)
    with pytest.raises(ValueError, match="spmm_kernel: x_mask"):
        torch.ops.sparselth.spmm_kernel(rowptr, col, None, x, x[:, :3] > 0, None, None, m)
    with pytest.raises(TypeError, match="sddmm_kernel: y"):
        torch.ops.sparselth.sddmm_kernel(rowptr, col, torch.randn(m, 8, device="cuda"),
                                         torch.randn(n, 8, device="cuda").double())
