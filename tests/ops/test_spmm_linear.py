import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sparselth
from sparselth import CSR
from sparselth.ops.spmm_linear import spmm_linear, spmm_linear_reference
from sparselth.testing import random_csr, requires_kernel, test_backends, tolerances

BACKENDS = test_backends()


def dense_oracle(A, X, W, bias=None, relu=False):
    h = A.to_dense(torch.float64) @ X.double()
    if bias is not None:
        h = h + bias.double()
    if relu:
        h = torch.relu(h)
    return h @ W.to_dense(torch.float64).t()


def _case(m, n, F, out_f, dtype, index_dtype, seed, dw=0.2):
    A = random_csr(m, n, 0.2, dtype=dtype, index_dtype=index_dtype, power_law=m > 30,
                   seed=seed)
    W = random_csr(out_f, F, dw, dtype=dtype, index_dtype=index_dtype, empty_rows=0.3,
                   seed=seed + 1)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, F, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(F, generator=g, dtype=torch.float64).to(dtype)
    return A, X, W, b


def test_hand_computed_golden():
    # A = [[1, 0], [0, 0], [2, 1]], X = [[1, -2], [3, 4]] -> A X = [[1, -2], [0, 0], [5, 0]]
    A = CSR(torch.tensor([0, 1, 1, 3]), torch.tensor([0, 0, 1]), torch.tensor([1.0, 2.0, 1.0]),
            (3, 2))
    X = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    W = CSR(torch.tensor([0, 2, 2, 3]), torch.tensor([0, 1, 1]), torch.tensor([1.0, 10.0, -1.0]),
            (3, 2))
    b = torch.tensor([0.5, 0.5])
    for backend in BACKENDS:
        out = spmm_linear(A, X, W, bias=b, relu=True, backend=backend)
        # relu(A X + b) = [[1.5, 0], [0.5, 0.5], [5.5, 0.5]]
        assert out.tolist() == [[1.5, 0.0, 0.0], [5.5, 0.0, -0.5], [10.5, 0.0, -0.5]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m, n, F, out_f", [(0, 3, 4, 2), (5, 0, 3, 2), (7, 5, 1, 3),
                                            (9, 6, 7, 1), (40, 33, 65, 5), (61, 50, 130, 7),
                                            (23, 19, 512, 3)])
@pytest.mark.parametrize("dtype, index_dtype", [(torch.float32, torch.int32),
                                                (torch.float64, torch.int64)])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_oracle_on_odd_shapes(m, n, F, out_f, dtype, index_dtype, relu, backend):
    A, X, W, b = _case(m, n, F, out_f, dtype, index_dtype, seed=m + F)
    for bias in (None, b):
        got = spmm_linear(A, X, W, bias=bias, relu=relu, backend=backend)
        want = dense_oracle(A, X, W, bias, relu).to(dtype)
        torch.testing.assert_close(got, want, **tolerances(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_patterns_and_all_pruned_weight(backend):
    A, X, W, b = _case(20, 15, 9, 4, torch.float64, torch.int64, seed=3)
    Wp = W.with_values(None)
    torch.testing.assert_close(spmm_linear(A.with_values(None), X, Wp, bias=b, relu=True,
                                           backend=backend),
                               dense_oracle(A.with_values(None), X, Wp, b, True))
    empty = CSR(torch.zeros(5, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                torch.zeros(0, dtype=torch.float64), (4, 9))
    assert spmm_linear(A, X, empty, backend=backend).abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_the_composition(backend):
    A, X, W, b = _case(12, 10, 6, 3, torch.float64, torch.int64, seed=5)
    X = X.requires_grad_()
    wv = W.val.clone().requires_grad_()
    out = spmm_linear(A, X, W.with_values(wv), bias=b, relu=True, backend=backend)
    ref = dense_oracle(A, X, W.with_values(wv), b, True)
    torch.testing.assert_close(out, ref)
    gy = torch.randn_like(out)
    want = torch.autograd.grad(ref, [X, wv], gy)
    for got, want in zip(torch.autograd.grad(out, [X, wv], gy), want):
        torch.testing.assert_close(got, want)


@given(m=st.integers(0, 30), n=st.integers(1, 30), F=st.integers(1, 80), out_f=st.integers(1, 9),
       seed=st.integers(0, 10**6), relu=st.booleans(), f64=st.booleans(), i32=st.booleans())
def test_fuzz_against_reference(m, n, F, out_f, seed, relu, f64, i32):
    dtype = torch.float64 if f64 else torch.float32
    A, X, W, b = _case(m, n, F, out_f, dtype, torch.int32 if i32 else torch.int64, seed)
    want = spmm_linear_reference(A.rowptr, A.col, A.val, X, b, relu, W.rowptr, W.col, W.val, m)
    torch.testing.assert_close(spmm_linear(A, X, W, bias=b, relu=relu), want, **tolerances(dtype))


class TestBadInput:
    A, X, W, b = _case(6, 5, 4, 3, torch.float32, torch.int64, seed=1)

    @pytest.mark.parametrize("call, exc, word", [
        (lambda A, X, W: spmm_linear(A.to_dense(), X, W), TypeError, "A must be a sparselth.CSR"),
        (lambda A, X, W: spmm_linear(A, X, W.to_dense()), TypeError, "W must be a sparselth.CSR"),
        (lambda A, X, W: spmm_linear(A, X[:3], W), ValueError, "X must have A.shape"),
        (lambda A, X, W: spmm_linear(A, X[:, :2], W), ValueError, "W must have X.shape"),
        (lambda A, X, W: spmm_linear(A, X.double(), W), TypeError, "A.val has dtype"),
        (lambda A, X, W: spmm_linear(A, X, W.index_as(torch.int32)), TypeError, "index dtype"),
        (lambda A, X, W: spmm_linear(A, X, W, bias=torch.ones(3)), ValueError, "bias"),
    ])
    def test_raises(self, call, exc, word):
        with pytest.raises(exc, match=word):
            call(self.A, self.X, self.W)

    @requires_kernel("spmm_linear", "cpu")
    def test_raw_kernel_checks_w_columns(self):
        A, X = self.A, self.X
        with pytest.raises(ValueError, match="W's columns"):
            torch.ops.sparselth.spmm_linear_kernel(A.rowptr, A.col, A.val, X, None, False,
                                                   torch.tensor([0, 1]), torch.tensor([4]),
                                                   None, 6)
        with pytest.raises(TypeError, match="one index dtype"):
            torch.ops.sparselth.spmm_linear_kernel(A.rowptr, A.col, A.val, X, None, False,
                                                   torch.tensor([0, 1], dtype=torch.int32),
                                                   torch.tensor([0], dtype=torch.int32), None, 6)


def test_cpp_runs_the_kernel_when_built():
    if "cpp" not in sparselth.backends():
        pytest.skip("the C++ extension is not built")
    from sparselth.ops import has_kernel
    assert has_kernel("spmm_linear", "cpu")
