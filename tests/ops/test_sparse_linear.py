"""The row-major sparse linear kernel (inference path of ``sparse_linear`` on ``cpp``) against
the masked dense layer: every block size, odd batches and widths, empty rows, both index
dtypes, with and without stored values and bias, and its bad-input errors."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth.ops.sparse_linear import _use_row_major, sparse_linear
from sparselth.sparse.weights import csr_from_weight
from sparselth.testing import DTYPES, INDEX_DTYPES, requires_kernel, tolerances

pytestmark = requires_kernel("sparse_linear", "cpu")


def kernel(A, x, bias=None, index_dtype=None, values=True):
    rowptr, col = A.rowptr, A.col
    if index_dtype is not None:
        rowptr, col = rowptr.to(index_dtype), col.to(index_dtype)
    return torch.ops.sparselth.sparse_linear_kernel(rowptr, col, A.val if values else None, x,
                                                    bias, A.shape[0])


def case(B, in_f, out_f, density, seed, dtype, zero_rows=(0,)):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(out_f, in_f, generator=g) < density
    for r in zero_rows:
        if r < out_f:
            mask[r] = False
    x = torch.randn(B, in_f, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(out_f, generator=g, dtype=torch.float64).to(dtype)
    return W, mask, x, b


# Batches around the 16/32/64-sample blocks, widths around the 16-wide transpose tiles, and an
# in_features large enough to force the smallest block (its buffer must fit 256 KiB).
@pytest.mark.parametrize("B, in_f, out_f", [(1, 1, 1), (2, 3, 5), (15, 17, 33), (16, 16, 16),
                                            (33, 31, 7), (64, 500, 40), (130, 257, 19),
                                            (70, 3000, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_matches_masked_dense(B, in_f, out_f, dtype, index_dtype):
    W, mask, x, b = case(B, in_f, out_f, 0.3, seed=B * 7 + in_f, dtype=dtype)
    A = csr_from_weight(W, mask)
    tol = tolerances(dtype)
    torch.testing.assert_close(kernel(A, x, b, index_dtype), F.linear(x, W * mask, b), **tol)
    torch.testing.assert_close(kernel(A, x, None, index_dtype, values=False),
                               F.linear(x, mask.to(dtype)), **tol)


def test_empty_shapes():
    for B, in_f, out_f in [(0, 4, 3), (5, 0, 3), (5, 4, 0), (0, 0, 0)]:
        W, mask, x, b = case(B, in_f, out_f, 0.5, seed=1, dtype=torch.float32)
        A = csr_from_weight(W, mask)
        out = kernel(A, x, b)
        assert out.shape == (B, out_f)
        torch.testing.assert_close(out, F.linear(x, W * mask, b))


def test_non_contiguous_input_and_all_pruned():
    W, mask, x, b = case(40, 24, 10, 0.0, seed=3, dtype=torch.float64)
    A = csr_from_weight(W, mask)
    xt = torch.randn(24, 40, dtype=torch.float64).t()          # a transposed view
    torch.testing.assert_close(kernel(A, xt, b), b.expand(40, 10))


@settings(max_examples=40, deadline=None)
@given(B=st.integers(2, 90), in_f=st.integers(1, 70), out_f=st.integers(1, 40),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), f64=st.booleans(),
       bias=st.booleans(), i32=st.booleans())
def test_fuzz(B, in_f, out_f, density, seed, f64, bias, i32):
    dtype = torch.float64 if f64 else torch.float32
    W, mask, x, b = case(B, in_f, out_f, density, seed, dtype, zero_rows=())
    A = csr_from_weight(W, mask)
    b = b if bias else None
    got = kernel(A, x, b, torch.int32 if i32 else torch.int64)
    torch.testing.assert_close(got, F.linear(x, W * mask, b), **tolerances(dtype))


def test_sparse_linear_routes_inference_to_the_row_major_kernel():
    W, mask, x, b = case(50, 30, 20, 0.3, seed=5, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    assert _use_row_major(50, 30, x, A.val)
    assert not _use_row_major(1, 30, x, A.val)                  # batch 1: the SpMV path
    assert not _use_row_major(50, 4096, x, A.val)               # wide input: the SpMM route
    assert not _use_row_major(50, 30, x.requires_grad_(True), A.val)   # training needs autograd
    with torch.no_grad():
        torch.testing.assert_close(sparse_linear(x, A, b, backend="cpp"), F.linear(x, W * mask, b),
                                   **tolerances(torch.float32))


class TestBadInput:
    W, mask, x, b = case(4, 6, 5, 0.5, seed=9, dtype=torch.float32)
    A = csr_from_weight(W, mask)

    def call(self, rowptr=None, col=None, val="same", x=None, bias=None, out_f=5):
        A = self.A
        return torch.ops.sparselth.sparse_linear_kernel(
            A.rowptr if rowptr is None else rowptr, A.col if col is None else col,
            A.val if isinstance(val, str) else val, self.x if x is None else x, bias, out_f)

    @pytest.mark.parametrize("kwargs, exc, word", [
        (dict(out_f=4), ValueError, "rowptr must have shape"),
        (dict(col=torch.tensor([0, 99])), Exception, "col"),
        (dict(x=torch.randn(4, 6).long()), TypeError, "x must be float32 or float64"),
        (dict(x=torch.randn(6)), ValueError, "x must be 2-D"),
        (dict(val=torch.randn(3)), ValueError, "val must have nnz"),
        (dict(val="same", x=torch.randn(4, 6, dtype=torch.float64)), TypeError, "val has dtype"),
        (dict(bias=torch.randn(4)), ValueError, "bias must have shape"),
    ])
    def test_raises(self, kwargs, exc, word):
        with pytest.raises(exc, match=word):
            self.call(**kwargs)

    def test_out_of_range_column_is_an_error_not_a_read(self):
        A = self.A
        col = A.col.clone()
        col[-1] = 6
        with pytest.raises(ValueError, match="col entries must lie in"):
            self.call(col=col)


def test_torch_compile_traces_the_row_major_kernel():
    """Inference under torch.compile(fullgraph=True) goes through the kernel's fake."""
    W, mask, x, b = case(12, 20, 9, 0.3, seed=11, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    f = torch.compile(lambda x: sparse_linear(x, A, b, backend="cpp"), fullgraph=True,
                      backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(f(x), F.linear(x, W * mask, b), **tolerances(torch.float32))
