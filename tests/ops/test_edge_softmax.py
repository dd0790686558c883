import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.ops import edge_softmax, edge_softmax_reference
from sparselth.testing import DTYPES, INDEX_DTYPES, random_csr, tolerances


def dense_oracle(A, logits, keep=None):
    """Dense (m, n[, H]) softmax with -inf outside the kept pattern; all-excluded rows -> 0."""
    squeeze = logits.dim() == 1
    x = logits.unsqueeze(1) if squeeze else logits
    H = x.shape[1]
    k = torch.ones_like(x, dtype=torch.bool) if keep is None else (
        keep.unsqueeze(1) if keep.dim() == 1 else keep).expand_as(x)
    m, n = A.shape
    dense = torch.full((m, n, H), float("-inf"), dtype=x.dtype)
    dense = dense.index_put((A.row(), A.col.long()), torch.where(k, x, float("-inf")))
    sm = torch.softmax(dense, dim=1)
    sm = torch.nan_to_num(sm, nan=0.0)
    out = sm[A.row(), A.col.long()]
    return out.squeeze(1) if squeeze else out


def test_hand_computed_golden_with_empty_row():
    # row 0: entries 0, 1; row 1: empty; row 2: entries 2, 3, 4 (entry 3 excluded)
    A = CSR(torch.tensor([0, 2, 2, 5]), torch.tensor([0, 2, 0, 1, 2]), None, (3, 3))
    s = torch.tensor([0.0, math.log(3.0), 1.0, 100.0, 1.0])
    keep = torch.tensor([True, True, True, False, True])
    out = edge_softmax(A, s, keep)
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75, 0.5, 0.0, 0.5]))
    assert out[3].item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("heads", [None, 1, 3])
@pytest.mark.parametrize("with_keep", [False, True])
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (7, 5), (33, 29), (60, 60)])
def test_matches_oracles(shape, with_keep, heads, index_dtype, dtype):
    rows, cols = shape
    A = random_csr(rows, cols, 0.3, index_dtype=index_dtype, power_law=rows > 50, seed=rows + cols)
    g = torch.Generator().manual_seed(rows)
    lshape = (A.nnz,) if heads is None else (A.nnz, heads)
    logits = (3 * torch.randn(lshape, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    keep = (torch.rand(lshape, generator=g) < 0.7) if with_keep else None
    out = edge_softmax(A, logits, keep)
    ref = edge_softmax_reference(A, logits.detach(), keep)
    dense = dense_oracle(A, logits, keep)
    torch.testing.assert_close(out, ref, **tolerances(dtype))
    torch.testing.assert_close(out, dense, **tolerances(dtype))
    if keep is not None:
        assert bool((out[~keep] == 0).all())
    grad = torch.randn(lshape, generator=g, dtype=torch.float64).to(dtype)
    (g1,) = torch.autograd.grad(out, logits, grad, allow_unused=True)
    (g2,) = torch.autograd.grad(dense, logits, grad, allow_unused=True)
    if A.nnz:
        torch.testing.assert_close(g1, g2, **tolerances(dtype))


def test_rows_sum_to_one():
    A = random_csr(40, 40, 0.2, seed=3, empty_rows=0.3)
    out = edge_softmax(A, torch.randn(A.nnz, 2))
    sums = torch.zeros(40, 2).index_add_(0, A.row(), out)
    counts = A.rowptr[1:] - A.rowptr[:-1]
    torch.testing.assert_close(sums[counts > 0], torch.ones(int((counts > 0).sum()), 2))
    assert bool((sums[counts == 0] == 0).all())


def test_stable_for_huge_logits_and_excluded_rows():
    A = CSR(torch.tensor([0, 3, 5]), torch.tensor([0, 1, 2, 0, 1]), None, (2, 3))
    s = torch.tensor([1000.0, 999.0, -1000.0, 5.0, 6.0], requires_grad=True)
    keep = torch.tensor([True, True, True, False, False])   # row 1 fully excluded
    out = edge_softmax(A, s, keep)
    assert torch.isfinite(out).all()
    e = 1 / (1 + math.exp(-1.0))
    torch.testing.assert_close(out, torch.tensor([e, 1 - e, 0.0, 0.0, 0.0]))
    out.pow(2).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[3].item() == 0.0 and s.grad[4].item() == 0.0


def test_gradcheck_and_gradgradcheck():
    A = CSR(torch.tensor([0, 2, 2, 5, 6, 6]), torch.tensor([1, 3, 0, 2, 4, 4]), None, (5, 5))
    s = torch.randn(A.nnz, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True, True], [True, False], [True, True], [False, False],
                         [True, True], [True, True]])
    assert torch.autograd.gradcheck(lambda t: edge_softmax(A, t, keep), (s,))
    assert torch.autograd.gradgradcheck(lambda t: edge_softmax(A, t, keep), (s,))
    s1 = torch.randn(A.nnz, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: edge_softmax(A, t), (s1,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    A = random_csr(20, 20, 0.3, seed=1)
    s = torch.randn(A.nnz, 2)
    out = edge_softmax(A, s.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), edge_softmax(A, s), **tolerances(dtype))


def test_no_grad_path_matches_autograd_path():
    A = random_csr(30, 30, 0.2, seed=5)
    s = torch.randn(A.nnz, 3)
    with torch.no_grad():
        a = edge_softmax(A, s)
    b = edge_softmax(A, s.clone().requires_grad_())
    torch.testing.assert_close(a, b.detach())


@pytest.mark.parametrize("call, exc, word", [
    (lambda A, s: edge_softmax(None, s), TypeError, "A must be a sparselth.CSR"),
    (lambda A, s: edge_softmax(A, s[:-1]), ValueError, "logits must have shape"),
    (lambda A, s: edge_softmax(A, s.long()), TypeError, "logits must be floating"),
    (lambda A, s: edge_softmax(A, s.view(-1, 1, 1)), ValueError, "logits must have shape"),
    (lambda A, s: edge_softmax(A, s, (s > 0.5).float()), TypeError, "keep must have dtype"),
    (lambda A, s: edge_softmax(A, s, torch.ones(3, dtype=torch.bool)), ValueError,
     "keep must have shape"),
    (lambda A, s: edge_softmax(A, s, [True]), TypeError, "keep must be"),
    (lambda A, s: edge_softmax(A, [1.0]), TypeError, "logits must be a torch.Tensor"),
])
def test_bad_input(call, exc, word):
    A = random_csr(6, 6, 0.5, seed=2)
    s = torch.randn(A.nnz)
    with pytest.raises(exc, match="^edge_softmax: " + word):
        call(A, s)


@given(rows=st.integers(0, 25), cols=st.integers(1, 25), density=st.floats(0.0, 1.0),
       heads=st.sampled_from([None, 1, 2, 4]), keep_p=st.sampled_from([None, 0.0, 0.5, 0.9]),
       scale=st.sampled_from([0.1, 1.0, 50.0]), seed=st.integers(0, 10**6), i32=st.booleans())
def test_fuzz_against_reference(rows, cols, density, heads, keep_p, scale, seed, i32):
    A = random_csr(rows, cols, density, index_dtype=torch.int32 if i32 else torch.int64, seed=seed)
    g = torch.Generator().manual_seed(seed)
    lshape = (A.nnz,) if heads is None else (A.nnz, heads)
    s = scale * torch.randn(lshape, generator=g, dtype=torch.float64)
    keep = None if keep_p is None else torch.rand(lshape, generator=g) < keep_p
    torch.testing.assert_close(edge_softmax(A, s, keep), edge_softmax_reference(A, s, keep))


def _torch_softmax_per_row(A, logits, keep):
    """torch.softmax over each row's kept logits (the documented semantics); 0 elsewhere."""
    x = logits if logits.dim() == 2 else logits.unsqueeze(1)
    k = torch.ones_like(x, dtype=torch.bool) if keep is None else (
        keep.unsqueeze(1) if keep.dim() == 1 else keep).expand_as(x)
    out = torch.zeros_like(x)
    rowptr = A.rowptr.tolist()
    for i in range(A.shape[0]):
        for h in range(x.shape[1]):
            idx = torch.arange(rowptr[i], rowptr[i + 1])[k[rowptr[i]:rowptr[i + 1], h]]
            if idx.numel():
                out[idx, h] = torch.softmax(x[idx, h], 0)
    return out if logits.dim() == 2 else out.squeeze(1)


def test_non_finite_logits_follow_torch_softmax_per_row():
    """kernel == reference == torch.softmax of each row's kept logits, for rows holding
    +inf, -inf, NaN, all -inf, an excluded NaN, and rows with nothing kept."""
    inf, nan = float("inf"), float("nan")
    rows = [[inf, 1.0], [-inf, -inf], [nan, 0.0], [-inf, 2.0, 3.0], [inf, inf], [inf, -inf],
            [nan, 1.0, 2.0], [-inf, 5.0], [1.0, 2.0]]
    keep_rows = [[1, 1], [1, 1], [1, 1], [1, 1, 1], [1, 1], [1, 1], [0, 1, 1], [0, 0], [1, 0]]
    counts = torch.tensor([len(r) for r in rows])
    rowptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    col = torch.cat([torch.arange(len(r)) for r in rows])
    A = CSR(rowptr, col, None, (len(rows), 3))
    flat = torch.tensor([v for r in rows for v in r], dtype=torch.float64)
    keep = torch.tensor([bool(v) for r in keep_rows for v in r])
    for k in (None, keep):
        for logits in (flat, torch.stack([flat, flat.flip(0)], 1)):
            kk = None if k is None else (k if logits.dim() == 1 else k.unsqueeze(1))
            want = _torch_softmax_per_row(A, logits, kk)
            out = edge_softmax(A, logits, k)
            ref = edge_softmax_reference(A, logits, k)
            torch.testing.assert_close(out, want, equal_nan=True, rtol=0, atol=1e-15)
            torch.testing.assert_close(ref, want, equal_nan=True, rtol=0, atol=1e-15)
            if k is not None:
                assert bool((out[~k] == 0).all())      # excluded entries: 0, never NaN
    out = edge_softmax(A, flat)
    assert bool(torch.isnan(out[rowptr[1]:rowptr[2]]).all())          # all -inf: NaN
    assert out[rowptr[7]:rowptr[8]].tolist() == [0.0, 1.0]             # -inf next to 5: 0, 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_non_finite_logits_in_low_precision(dtype):
    A = CSR(torch.tensor([0, 2, 4, 6]), torch.tensor([0, 1, 0, 1, 0, 1]), None, (3, 2))
    s = torch.tensor([float("inf"), 1.0, float("-inf"), float("-inf"), 0.5, 1.5], dtype=dtype)
    want = _torch_softmax_per_row(A, s.float(), None).to(dtype)
    torch.testing.assert_close(edge_softmax(A, s), want, equal_nan=True)
    torch.testing.assert_close(edge_softmax_reference(A, s), want, equal_nan=True)
