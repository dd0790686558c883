import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sparselth
from sparselth import CSR
from sparselth.ops import spmm
from sparselth.testing import (ODD_CASES, random_csr, requires_kernel, skip_if_slow,
                               test_backends, tolerances)

BACKENDS = test_backends()


def dense_oracle(A, X, x_mask=None, row_scale=None, bias=None, relu=False):
    """The formula, computed densely in float64."""
    Xm = X.double() if x_mask is None else X.double() * x_mask.double()
    out = A.to_dense(torch.float64) @ Xm
    if row_scale is not None:
        out = out * row_scale.double()[:, None]
    if bias is not None:
        out = out + bias.double()
    return torch.relu(out) if relu else out


def _inputs(A, F, dtype, seed, mask=None, scale=False, bias=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(A.shape[1], F, generator=g, dtype=torch.float64).to(dtype)
    m = None
    if mask == "bool":
        m = torch.rand(A.shape[1], F, generator=g) > 0.4
    elif mask == "float":
        m = (torch.rand(A.shape[1], F, generator=g) > 0.4).to(dtype)
    s = torch.rand(A.shape[0], generator=g, dtype=torch.float64).to(dtype) if scale else None
    b = torch.randn(F, generator=g, dtype=torch.float64).to(dtype) if bias else None
    return X, m, s, b


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_golden_with_empty_rows(backend):
    # [[0, 2, 0], [0, 0, 0], [1, 0, 3]] @ [[1, 2], [3, 4], [5, 6]]
    A = CSR(torch.tensor([0, 1, 1, 3]), torch.tensor([1, 0, 2]), torch.tensor([2.0, 1.0, 3.0]), (3, 3))
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert spmm(A, X, backend=backend).tolist() == [[6.0, 8.0], [0.0, 0.0], [16.0, 20.0]]
    out = spmm(A, X, row_scale=torch.tensor([1.0, 2.0, 0.5]), bias=torch.tensor([1.0, -1.0]),
               backend=backend)
    assert out.tolist() == [[7.0, 7.0], [1.0, -1.0], [9.0, 9.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, index_dtype, dtype", ODD_CASES)
def test_forward_matches_oracle_on_odd_shapes(shape, index_dtype, dtype, backend):
    rows, cols, F = shape
    A = random_csr(rows, cols, 0.3, dtype=dtype, index_dtype=index_dtype, seed=rows * 7 + F)
    skip_if_slow(backend, A.nnz * F)
    X, _, _, _ = _inputs(A, F, dtype, seed=1)
    expected = dense_oracle(A, X).to(dtype)
    torch.testing.assert_close(spmm(A, X, backend=backend), expected, **tolerances(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("values", [True, False])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_options_match_oracle(values, mask, scale, bias, backend):
    dtype = torch.float64
    A = random_csr(41, 37, 0.2, dtype=dtype, values=values, power_law=True, seed=3)
    skip_if_slow(backend, A.nnz * 19)
    X, m, s, bb = _inputs(A, 19, dtype, seed=2, mask=mask, scale=scale, bias=bias)
    expected = dense_oracle(A, X, m, s, bb)
    torch.testing.assert_close(spmm(A, X, x_mask=m, row_scale=s, bias=bb, backend=backend),
                               expected, **tolerances(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F", [1, 3, 7, 8, 19, 64, 100, 130])
@pytest.mark.parametrize("dtype, index_dtype", [(torch.float32, torch.int32),
                                                (torch.float64, torch.int64)])
def test_relu_epilogue_matches_oracle(F, dtype, index_dtype, backend):
    """ReLU after scale and bias, on every register tile width and the scalar rest; empty and
    all-pruned rows get relu(bias)."""
    A = random_csr(53, 41, 0.15, dtype=dtype, index_dtype=index_dtype, power_law=True,
                   empty_rows=0.2, seed=F)
    skip_if_slow(backend, A.nnz * F)
    X, m, s, bb = _inputs(A, F, dtype, seed=F, mask="float", scale=True, bias=True)
    for kw in ({}, {"row_scale": s, "bias": bb}, {"x_mask": m, "bias": bb}):
        oracle_kw = {k: v for k, v in kw.items()}
        expected = dense_oracle(A, X, oracle_kw.get("x_mask"), oracle_kw.get("row_scale"),
                                oracle_kw.get("bias"), relu=True).to(dtype)
        got = spmm(A, X, relu=True, backend=backend, **kw)
        torch.testing.assert_close(got, expected, **tolerances(dtype))
        assert bool((got >= 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_keeps_nan_like_torch(backend):
    A = CSR(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1]), torch.tensor([1.0, -1.0]), (3, 2))
    X = torch.tensor([[float("nan"), -2.0], [3.0, -4.0]])
    got = spmm(A, X, relu=True, backend=backend)
    torch.testing.assert_close(got, torch.relu(spmm(A, X, backend=backend)), equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_gradient_matches_dense_autograd(backend):
    A = random_csr(11, 9, 0.4, dtype=torch.float64, seed=5)
    X = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    out = spmm(A, X, bias=b, relu=True, backend=backend)
    ref = torch.relu(A.to_dense(torch.float64) @ X + b)
    torch.testing.assert_close(out, ref)
    gy = torch.randn_like(out)
    want = torch.autograd.grad(ref, [X, b], gy)
    for got, want in zip(torch.autograd.grad(out, [X, b], gy), want):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spmm_impl_is_the_unchecked_kernel(backend):
    from sparselth.ops.spmm import spmm_impl
    A = random_csr(12, 10, 0.3, dtype=torch.float32, seed=1)
    X, _, s, bb = _inputs(A, 5, torch.float32, seed=1, scale=True, bias=True)
    fn = spmm_impl(X.device, X.dtype, backend)
    got = fn(A.rowptr, A.col, A.val, X, None, s, bb, 12, True)
    torch.testing.assert_close(got, spmm(A, X, row_scale=s, bias=bb, relu=True, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F", [1, 3, 8, 16, 24, 64, 100, 130])
def test_power_law_rows_float32(F, backend):
    A = random_csr(300, 250, 0.05, power_law=True, index_dtype=torch.int32, seed=F)
    skip_if_slow(backend, A.nnz * F)
    X, _, _, _ = _inputs(A, F, torch.float32, seed=F)
    torch.testing.assert_close(spmm(A, X, backend=backend), dense_oracle(A, X).float(),
                               **tolerances(torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_enough_to_run_threaded(backend):
    A = random_csr(3000, 2000, 0.01, power_law=True, seed=5)
    skip_if_slow(backend, A.nnz * 40)
    X, m, s, bb = _inputs(A, 40, torch.float32, seed=5, mask="bool", scale=True, bias=True)
    expected = dense_oracle(A, X, m, s, bb).float()
    torch.testing.assert_close(spmm(A, X, x_mask=m, row_scale=s, bias=bb, backend=backend),
                               expected, **tolerances(torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_x(backend):
    A = random_csr(20, 30, 0.3, dtype=torch.float64)
    X = torch.randn(12, 30, dtype=torch.float64).t()
    torch.testing.assert_close(spmm(A, X, backend=backend), dense_oracle(A, X))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("values", [True, False])
def test_gradients_match_dense_autograd(backend, values):
    dtype = torch.float64
    A = random_csr(23, 17, 0.3, dtype=dtype, values=values, seed=11)
    X, m, s, bb = _inputs(A, 6, dtype, seed=4, mask="float", scale=True, bias=True)
    val = A.values(dtype).clone().requires_grad_(True)
    tensors = [t.clone().requires_grad_(True) for t in (X, m, s, bb)]
    out = spmm(A.with_values(val), tensors[0], x_mask=tensors[1], row_scale=tensors[2],
               bias=tensors[3], backend=backend)
    gy = torch.randn_like(out)
    grads = torch.autograd.grad(out, [val] + tensors, gy)

    dval = val.detach().clone().requires_grad_(True)
    dense_t = [t.detach().clone().requires_grad_(True) for t in tensors]
    D = torch.zeros(A.shape, dtype=dtype).index_put((A.row(), A.col.long()), dval)
    ref = (D @ (dense_t[0] * dense_t[1])) * dense_t[2][:, None] + dense_t[3]
    ref_grads = torch.autograd.grad(ref, [dval] + dense_t, gy)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    A = random_csr(9, 7, 0.4, dtype=torch.float64, seed=2)
    X = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    val = A.val.clone().requires_grad_(True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(9, dtype=torch.float64, requires_grad=True)
    f = lambda v, x, s, b: spmm(A.with_values(v), x, row_scale=s, bias=b, backend=backend)
    assert torch.autograd.gradcheck(f, (val, X, scale, bias))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_gradgradcheck(backend):
    """Second derivatives (not in the Triton interpreter: first derivatives go through it)."""
    A = random_csr(9, 7, 0.4, dtype=torch.float64, seed=2)
    X = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    val = A.val.clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda v, x: spmm(A.with_values(v), x, backend=backend), (val, X))


def test_bool_mask_gradient_only_flows_to_kept_entries():
    A = random_csr(10, 8, 0.5, dtype=torch.float64)
    X = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    m = torch.rand(8, 5) > 0.5
    spmm(A, X, x_mask=m).sum().backward()
    assert (X.grad[~m] == 0).all()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])  # triton: own fuzz
@given(rows=st.integers(0, 40), cols=st.integers(1, 40), F=st.integers(1, 70),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), i32=st.booleans(),
       values=st.booleans(), f64=st.booleans(), power=st.booleans(), relu=st.booleans())
def test_fuzz_against_oracle(backend, rows, cols, F, density, seed, i32, values, f64, power, relu):
    dtype = torch.float64 if f64 else torch.float32
    A = random_csr(rows, cols, density, dtype=dtype, index_dtype=torch.int32 if i32 else torch.int64,
                   values=values, power_law=power, seed=seed)
    X, m, s, bb = _inputs(A, F, dtype, seed=seed, mask="bool", scale=True, bias=True)
    expected = dense_oracle(A, X, m, s, bb, relu=relu).to(dtype)
    torch.testing.assert_close(spmm(A, X, x_mask=m, row_scale=s, bias=bb, relu=relu,
                                    backend=backend), expected, **tolerances(dtype))


class TestBadInput:
    A = random_csr(4, 5, 0.5)
    X = torch.randn(5, 3)

    @pytest.mark.parametrize("call, exc, word", [
        (lambda A, X: spmm(A.to_dense(), X), TypeError, "A must be a sparselth.CSR"),
        (lambda A, X: spmm(A, X.numpy()), TypeError, "X must be a torch.Tensor"),
        (lambda A, X: spmm(A, X[0]), ValueError, "X must be 2-D"),
        (lambda A, X: spmm(A, torch.randn(4, 3)), ValueError, "A.shape\\[1\\] = 5"),
        (lambda A, X: spmm(A, X.double()), TypeError, "A.val has dtype"),
        (lambda A, X: spmm(A, X.long()), TypeError, "X must be float"),
        (lambda A, X: spmm(A, X, x_mask=torch.ones(5, 2, dtype=torch.bool)), ValueError, "x_mask"),
        (lambda A, X: spmm(A, X, x_mask=torch.ones(5, 3, dtype=torch.float64)), TypeError, "x_mask"),
        (lambda A, X: spmm(A, X, row_scale=torch.ones(5)), ValueError, "row_scale"),
        (lambda A, X: spmm(A, X, bias=torch.ones(4)), ValueError, "bias"),
        (lambda A, X: spmm(A, X, bias=torch.ones(3, dtype=torch.float64)), TypeError, "bias"),
        (lambda A, X: spmm(A, X, backend="mkl"), ValueError, "backend"),
        (lambda A, X: spmm(A.with_values(None), X.half(), backend="cpp") if "cpp" in sparselth.backends()
            else (_ for _ in ()).throw(TypeError("cpp")), TypeError, "cpp"),
    ])
    def test_raises(self, call, exc, word):
        with pytest.raises(exc, match=word):
            call(self.A, self.X)

    @requires_kernel("spmm", "cpu")
    def test_raw_kernel_checks_rowptr_against_nnz(self):
        with pytest.raises(ValueError, match="rowptr"):
            torch.ops.sparselth.spmm_kernel(torch.tensor([0, 5]), torch.tensor([0]), None,
                                            torch.randn(1, 2), None, None, None, 1)
        with pytest.raises(TypeError, match="rowptr and col must both be"):
            torch.ops.sparselth.spmm_kernel(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32),
                                            None, torch.randn(1, 2), None, None, None, 1)


def test_backend_selection_by_context_and_env():
    A = random_csr(6, 6, 0.5)
    X = torch.randn(6, 2)
    with sparselth.use_backend("reference"):
        torch.testing.assert_close(spmm(A, X), dense_oracle(A, X).float())
    with pytest.raises(ValueError, match="use_backend"):
        with sparselth.use_backend("nope"):
            pass
    code = ("import torch, sparselth; from sparselth.ops import backend as b; "
            "print(b.resolve('auto', torch.device('cpu'), torch.float32, 'x'))")
    env = dict(os.environ, SPARSELTH_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    assert "reference" in sparselth.backends()


def test_torch_compile_fullgraph_matches_eager():
    A = random_csr(30, 20, 0.3, seed=9)
    A.t()
    X = torch.randn(20, 8, requires_grad=True)
    w = torch.randn(8, 4)

    def f(X):
        return torch.relu(spmm(A, X @ w if False else X)) @ w

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(X)
    torch.testing.assert_close(out, f(X))
    out.sum().backward()
    g = X.grad.clone()
    X.grad = None
    f(X).sum().backward()
    torch.testing.assert_close(g, X.grad)


def test_csr_matmul_is_spmm_and_spgemm():
    from sparselth.testing import random_csr
    A = random_csr(7, 5, 0.4, dtype=torch.float64, seed=3)
    B = random_csr(5, 4, 0.5, dtype=torch.float64, seed=4)
    X = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(A @ X, A.to_dense() @ X)
    torch.testing.assert_close(A @ X[:, 0], A.to_dense() @ X[:, 0])
    torch.testing.assert_close(A @ B, A.to_dense() @ B.to_dense())
    with pytest.raises(TypeError):
        A @ 3
