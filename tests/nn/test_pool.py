"""Graph readouts (sum/mean as an SpMM with a pooling matrix, max as a segment reduce) against
a per-graph torch reference, empty graphs included."""

from __future__ import annotations

import pytest
import torch

from sparselth.nn import global_pool, pooling_matrix
from sparselth.ops import use_backend

COUNTS = [3, 0, 1, 5, 0, 2]


def _reference(x, counts, reduce):
    out, lo = [], 0
    for n in counts:
        rows = x[lo:lo + n]
        lo += n
        if n == 0:
            out.append(torch.zeros(x.shape[1], dtype=x.dtype))
        else:
            out.append({"sum": rows.sum(0), "mean": rows.mean(0),
                        "max": rows.max(0).values}[reduce])
    return torch.stack(out)


def _ptr(counts):
    return torch.cumsum(torch.tensor([0] + counts), 0)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_pool_matches_reference_with_empty_graphs(reduce, backend):
    x = torch.randn(sum(COUNTS), 7, dtype=torch.float64, requires_grad=True)
    with use_backend(backend):
        got = global_pool(x, _ptr(COUNTS), reduce)
    want = _reference(x, COUNTS, reduce)
    torch.testing.assert_close(got, want)
    assert torch.isfinite(got).all()
    g1, = torch.autograd.grad(got.sum(), x)
    g2, = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g2)


def test_pooling_matrix_and_all_empty():
    P = pooling_matrix(_ptr(COUNTS), sum(COUNTS))
    assert P.shape == (6, 11) and P.nnz == 11 and P.val is None
    x = torch.zeros(0, 3)
    for reduce in ("sum", "mean", "max"):
        out = global_pool(x, torch.zeros(3, dtype=torch.long), reduce)
        assert out.shape == (2, 3) and bool((out == 0).all())


def test_pool_bad_arguments():
    with pytest.raises(ValueError, match="reduce"):
        global_pool(torch.ones(2, 2), torch.tensor([0, 2]), "median")
    with pytest.raises(TypeError, match="ptr"):
        global_pool(torch.ones(2, 2), torch.tensor([0.0, 2.0]))
    with pytest.raises(TypeError, match="x"):
        global_pool(torch.ones(2), torch.tensor([0, 2]))


def test_pool_under_torch_compile():
    ptr = _ptr(COUNTS)
    x = torch.randn(sum(COUNTS), 4)
    for reduce in ("sum", "mean", "max"):
        f = torch.compile(lambda t, r=reduce: global_pool(t, ptr, r), fullgraph=True,
                          backend="aot_eager")
        torch.testing.assert_close(f(x), _reference(x, COUNTS, reduce))
