import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.ops import sddmm
from sparselth.testing import ODD_CASES, random_csr, skip_if_slow, test_backends, tolerances

BACKENDS = test_backends()


def dense_oracle(A, X, Y):
    return (X.double() @ Y.double().t())[A.row(), A.col.long()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_golden(backend):
    A = CSR(torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1]), None, (3, 3))
    X = torch.tensor([[1.0, 2.0], [5.0, 5.0], [0.0, 1.0]])
    Y = torch.tensor([[3.0, 4.0], [1.0, 1.0], [-1.0, 2.0]])
    assert sddmm(A, X, Y, backend=backend).tolist() == [11.0, 3.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, index_dtype, dtype", ODD_CASES)
def test_matches_oracle_on_odd_shapes(shape, index_dtype, dtype, backend):
    rows, cols, F = shape
    A = random_csr(rows, cols, 0.3, dtype=dtype, index_dtype=index_dtype, power_law=rows > 50, seed=F)
    skip_if_slow(backend, A.nnz * F)
    g = torch.Generator().manual_seed(rows)
    X = torch.randn(rows, F, generator=g, dtype=torch.float64).to(dtype)
    Y = torch.randn(cols, F, generator=g, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(sddmm(A, X, Y, backend=backend), dense_oracle(A, X, Y).to(dtype),
                               **tolerances(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    A = random_csr(8, 6, 0.4, dtype=torch.float64, seed=1)
    X = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: sddmm(A, x, y, backend=backend), (X, Y))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])  # triton: own fuzz
@given(rows=st.integers(0, 30), cols=st.integers(1, 30), F=st.integers(1, 70),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), i32=st.booleans())
def test_fuzz(backend, rows, cols, F, density, seed, i32):
    A = random_csr(rows, cols, density, index_dtype=torch.int32 if i32 else torch.int64, seed=seed)
    X = torch.randn(rows, F, dtype=torch.float64)
    Y = torch.randn(cols, F, dtype=torch.float64)
    torch.testing.assert_close(sddmm(A, X, Y, backend=backend), dense_oracle(A, X, Y))


@pytest.mark.parametrize("call, exc, word", [
    (lambda A, X, Y: sddmm(A, X[:3], Y), ValueError, "X must have"),
    (lambda A, X, Y: sddmm(A, X, Y[:, :2]), ValueError, "same number of columns"),
    (lambda A, X, Y: sddmm(A, X, Y.double()), TypeError, "dtypes differ"),
    (lambda A, X, Y: sddmm(A, X, Y[:2]), ValueError, "Y must have"),
    (lambda A, X, Y: sddmm(None, X, Y), TypeError, "CSR"),
])
def test_bad_input(call, exc, word):
    A = random_csr(5, 4, 0.5)
    with pytest.raises(exc, match=word):
        call(A, torch.randn(5, 3), torch.randn(4, 3))


def test_torch_compile_fullgraph_matches_eager():
    A = random_csr(7, 5, 0.5, dtype=torch.float64)
    A.t()                          # the transpose is cached before tracing (as modules do)
    X = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.compile(lambda x, y: sddmm(A, x, y).exp().sum(), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(X, Y), sddmm(A, X, Y).exp().sum())
