"""The sparse linear kernel (inference path of ``sparse_linear`` on ``cpp``) against its
reference and the masked dense layer: batch 1 (the streaming SpMV), batches around every tile
width (16/32/64 float32 lanes, 8/16/32 float64), widths around the panel widths, the weight as
a plain CSR and stacked by column panels, int16/int32/int64 columns, empty rows, all-pruned rows
and columns, input layouts, and its bad-input errors."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth.ops.sparse_linear import (LinearPlan, _use_kernel, panel_width,
                                         sparse_linear, sparse_linear_reference, tile_lanes)
from sparselth.sparse.weights import csr_from_weight
from sparselth.testing import DTYPES, INDEX_DTYPES, requires_kernel, tolerances

pytestmark = requires_kernel("sparse_linear", "cpu")


def kernel(A, x, bias=None, index_dtype=None, values=True):
    rowptr, col = A.rowptr, A.col
    if index_dtype is not None:
        rowptr, col = rowptr.to(index_dtype), col.to(index_dtype)
    return torch.ops.sparselth.sparse_linear_kernel(rowptr, col, A.val if values else None, x,
                                                    bias, A.shape[0])


def stacked(A, width, col_dtype=None):
    """``(rowptr, col, val)`` of ``A`` stacked by column panels of ``width`` columns."""
    plan = LinearPlan(A)
    rowptr, col, perm = plan._stacked(width)
    return rowptr, col if col_dtype is None else col.to(col_dtype), A.val[perm]


def case(B, in_f, out_f, density, seed, dtype, zero_rows=(0,), zero_cols=()):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(out_f, in_f, generator=g) < density
    for r in zero_rows:
        if r < out_f:
            mask[r] = False
    for c in zero_cols:
        if c < in_f:
            mask[:, c] = False
    x = torch.randn(B, in_f, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(out_f, generator=g, dtype=torch.float64).to(dtype)
    return W, mask, x, b


# Batches around the 16/32/64-sample tiles (and 1, the SpMV), widths around the 16-wide
# transpose tiles and the panel widths.
@pytest.mark.parametrize("B, in_f, out_f", [(1, 1, 1), (1, 300, 7), (2, 3, 5), (15, 17, 33),
                                            (16, 16, 16), (33, 31, 7), (64, 500, 40),
                                            (130, 257, 19), (70, 3000, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_matches_masked_dense(B, in_f, out_f, dtype, index_dtype):
    W, mask, x, b = case(B, in_f, out_f, 0.3, seed=B * 7 + in_f, dtype=dtype, zero_cols=(2,))
    A = csr_from_weight(W, mask)
    tol = tolerances(dtype)
    torch.testing.assert_close(kernel(A, x, b, index_dtype), F.linear(x, W * mask, b), **tol)
    torch.testing.assert_close(kernel(A, x, None, index_dtype, values=False),
                               F.linear(x, mask.to(dtype)), **tol)


@pytest.mark.parametrize("B", [1, 2, 15, 16, 17, 23, 24, 31, 32, 33, 47, 48, 63, 64, 65, 127, 200])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("col_dtype", [None, torch.int16])
def test_panels_every_tile_and_tail(B, dtype, col_dtype):
    """The weight stacked by panels (widths 16 and 48 over 150 columns: full and partial
    panels) gives the plain CSR's result at every batch size, with int16 or int32 columns."""
    W, mask, x, b = case(B, 150, 70, 0.25, seed=B, dtype=dtype, zero_cols=(0, 16, 149))
    A = csr_from_weight(W, mask, index_dtype=torch.int32)
    want = F.linear(x, W * mask, b)
    for width in (16, 48, 150):
        rowptr, col, val = stacked(A, width, col_dtype)
        got = torch.ops.sparselth.sparse_linear_kernel(rowptr, col, val, x, b, 70)
        torch.testing.assert_close(got, want, **tolerances(dtype))
        torch.testing.assert_close(sparse_linear_reference(rowptr, col, val, x, b, 70), want,
                                   **tolerances(dtype))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B", [1, 64, 100, 200])
def test_threads_split_blocks_and_rows(threads, B):
    """Large enough to fork: one block split by rows (B = 64), whole blocks per thread
    (B = 100: a full and a tail block; B = 200), and the SpMV by rows (B = 1)."""
    W, mask, x, b = case(B, 700, 600, 0.3, seed=B, dtype=torch.float32, zero_cols=(5,))
    A = csr_from_weight(W, mask)
    rowptr, col, val = LinearPlan(A).kernel_args(A.val, B, torch.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = torch.ops.sparselth.sparse_linear_kernel(rowptr, col, val, x, b, 600)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, F.linear(x, W * mask, b), **tolerances(torch.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_one_streams_every_column_type(dtype):
    """Batch 1 (rows of 0 to ~200 entries, so every remainder of the 16- and 4-entry steps)."""
    g = torch.Generator().manual_seed(4)
    W = torch.randn(37, 211, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(37, 211, generator=g) < torch.linspace(0, 1, 37).unsqueeze(1)
    A = csr_from_weight(W, mask, index_dtype=torch.int64)
    x = torch.randn(1, 211, generator=g, dtype=torch.float64).to(dtype)
    want = F.linear(x, W * mask)
    for col_dtype in (torch.int16, torch.int32, torch.int64):
        rp = A.rowptr.to(torch.int64 if col_dtype == torch.int64 else torch.int32)
        got = torch.ops.sparselth.sparse_linear_kernel(rp, A.col.to(col_dtype), A.val, x, None, 37)
        torch.testing.assert_close(got, want, **tolerances(dtype))


def test_empty_shapes():
    for B, in_f, out_f in [(0, 4, 3), (5, 0, 3), (5, 4, 0), (0, 0, 0), (1, 0, 2), (1, 3, 0)]:
        W, mask, x, b = case(B, in_f, out_f, 0.5, seed=1, dtype=torch.float32)
        A = csr_from_weight(W, mask)
        out = kernel(A, x, b)
        assert out.shape == (B, out_f)
        torch.testing.assert_close(out, F.linear(x, W * mask, b))


@pytest.mark.parametrize("B", [1, 40])
def test_input_layouts_and_all_pruned(B):
    W, mask, x, b = case(B, 24, 10, 0.0, seed=3, dtype=torch.float64)
    A = csr_from_weight(W, mask)
    xt = torch.randn(24, B, dtype=torch.float64).t()          # a transposed view
    torch.testing.assert_close(kernel(A, xt, b), b.expand(B, 10))
    W, mask, x, b = case(B, 24, 10, 0.5, seed=3, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    for xin in (torch.randn(24, B).t(), torch.randn(B, 48)[:, ::2], torch.randn(1, 24).expand(B, 24)):
        torch.testing.assert_close(kernel(A, xin, b), F.linear(xin, W * mask, b),
                                   **tolerances(torch.float32))


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 140), in_f=st.integers(1, 90), out_f=st.integers(1, 40),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), f64=st.booleans(),
       bias=st.booleans(), index=st.sampled_from(["int16", "int32", "int64"]),
       width=st.integers(1, 100))
def test_fuzz(B, in_f, out_f, density, seed, f64, bias, index, width):
    """Random shapes, densities, tiles and panel widths against the reference and dense."""
    dtype = torch.float64 if f64 else torch.float32
    W, mask, x, b = case(B, in_f, out_f, density, seed, dtype, zero_rows=())
    A = csr_from_weight(W, mask, index_dtype=torch.int64 if index == "int64" else torch.int32)
    b = b if bias else None
    col_dtype = torch.int16 if index == "int16" else None
    rowptr, col, val = stacked(A, width, col_dtype)
    got = torch.ops.sparselth.sparse_linear_kernel(rowptr, col, val, x, b, out_f)
    tol = tolerances(dtype)
    torch.testing.assert_close(got, sparse_linear_reference(rowptr, col, val, x, b, out_f), **tol)
    torch.testing.assert_close(got, F.linear(x, W * mask, b), **tol)


def test_panel_width_follows_the_tile():
    assert [tile_lanes(b, torch.float32) for b in (1, 23, 24, 47, 48, 500)] == [16, 16, 32, 32, 64, 64]
    assert [tile_lanes(b, torch.float64) for b in (11, 12, 24)] == [8, 16, 32]
    assert panel_width(64, torch.float32) == 128 and panel_width(16, torch.float32) == 512


def test_plan_caches_panels_and_follows_value_changes():
    W, mask, x, b = case(64, 300, 20, 0.3, seed=8, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    plan = LinearPlan(A)
    assert plan.col16.dtype == torch.int16
    with torch.no_grad():
        y = sparse_linear(x, A, b, plan=plan, backend="cpp")
        torch.testing.assert_close(y, F.linear(x, W * mask, b), **tolerances(torch.float32))
        first = plan.kernel_args(A.val, 64, torch.float32)
        assert plan.kernel_args(A.val, 64, torch.float32)[2] is first[2]   # cached
        A.val.mul_(2)                                                      # a new version
        torch.testing.assert_close(sparse_linear(x, A, b, plan=plan, backend="cpp"),
                                   F.linear(x, 2 * W * mask, b), **tolerances(torch.float32))
    assert first[0].numel() == 3 * 20 + 1                                  # 300 / 128 -> 3 panels


def test_sparse_linear_routes_inference_to_the_kernel():
    W, mask, x, b = case(50, 30, 20, 0.3, seed=5, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    assert _use_kernel(x, A.val) and _use_kernel(x[:1], A.val)  # any batch and width
    assert not _use_kernel(x.half(), A.val)
    assert not _use_kernel(x.requires_grad_(True), A.val)       # training needs autograd
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
        (dict(out_f=4), ValueError, "rowptr must have S \\* out_features \\+ 1 entries"),
        (dict(out_f=-1), ValueError, "out_features must be >= 0"),
        (dict(col=torch.tensor([0, 99])), Exception, "col"),
        (dict(col=torch.zeros(3)), TypeError, "col the same dtype or int16"),
        (dict(x=torch.randn(4, 6).long()), TypeError, "x must be float32 or float64"),
        (dict(x=torch.randn(6)), ValueError, "x must be 2-D"),
        (dict(val=torch.randn(3)), ValueError, "val must have nnz"),
        (dict(val="same", x=torch.randn(4, 6, dtype=torch.float64)), TypeError, "val has dtype"),
        (dict(bias=torch.randn(4)), ValueError, "bias must have shape"),
    ])
    def test_raises(self, kwargs, exc, word):
        with pytest.raises(exc, match=word):
            self.call(**kwargs)

    @pytest.mark.parametrize("B", [0, 1, 4])
    @pytest.mark.parametrize("bad", [6, -1])
    @pytest.mark.parametrize("col_dtype", [None, torch.int16])
    def test_out_of_range_column_is_an_error_not_a_read(self, B, bad, col_dtype):
        A = self.A
        col = A.col.clone()
        col[-1] = bad
        x = torch.randn(B, 6)
        with pytest.raises(ValueError, match="col entries must lie in"):
            torch.ops.sparselth.sparse_linear_kernel(
                A.rowptr, col if col_dtype is None else col.to(col_dtype), A.val, x, None, 5)

    @pytest.mark.parametrize("where", [3, 17, 33, 36])        # 16-group, 16-group, 4-group, tail
    @pytest.mark.parametrize("col_dtype", [torch.int16, torch.int32])
    def test_batch_one_checks_columns_as_they_stream(self, where, col_dtype):
        rowptr = torch.tensor([0, 37], dtype=torch.int32)
        col = torch.arange(37, dtype=col_dtype)
        col[where] = 40 if where % 2 else -3
        with pytest.raises(ValueError, match="col entries must lie in"):
            torch.ops.sparselth.sparse_linear_kernel(rowptr, col, torch.ones(37),
                                                     torch.randn(1, 40 - 3), None, 1)

    def test_rowptr_must_be_sorted_and_end_at_nnz(self):
        rp = self.A.rowptr.clone()
        rp[2] = int(rp[3]) + 1                # above rp[3], below nnz
        with pytest.raises(ValueError, match="non-decreasing"):
            self.call(rowptr=rp)
        rp = self.A.rowptr.clone()
        rp[-1] -= 1
        with pytest.raises(ValueError, match="end at nnz"):
            self.call(rowptr=rp)


def test_torch_compile_traces_the_kernel():
    """Inference under torch.compile(fullgraph=True) goes through the kernel's fake."""
    W, mask, x, b = case(12, 20, 9, 0.3, seed=11, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    f = torch.compile(lambda x: sparse_linear(x, A, b, backend="cpp"), fullgraph=True,
                      backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(f(x), F.linear(x, W * mask, b), **tolerances(torch.float32))


# ReLU in the store: batch 1 (the SpMV), a partial and a whole tile, float32/float64, panels.
@pytest.mark.parametrize("B", [1, 5, 64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stacked_panels", [False, True])
def test_relu_in_the_store_matches_the_reference(B, dtype, stacked_panels):
    W, mask, x, b = case(B, 90, 37, 0.3, seed=B + 3, dtype=dtype)
    A = csr_from_weight(W, mask)
    rowptr, col, val = stacked(A, 32) if stacked_panels else (A.rowptr, A.col, A.val)
    got = torch.ops.sparselth.sparse_linear_kernel(rowptr, col, val, x, b, 37, True)
    ref = sparse_linear_reference(rowptr, col, val, x, b, 37, relu=True)
    tol = tolerances(dtype)
    torch.testing.assert_close(got, ref, **tol)
    torch.testing.assert_close(got, F.relu(F.linear(x, W * mask, b)), **tol)
    assert (got >= 0).all() and (got == 0).any()
    plain = torch.ops.sparselth.sparse_linear_kernel(rowptr, col, val, x, b, 37)
    assert (plain < 0).any()                                     # relu=False keeps negatives


@pytest.mark.parametrize("B", [1, 20])
def test_relu_keeps_nan_as_torch_does(B):
    W, mask, x, b = case(B, 40, 20, 0.5, seed=1, dtype=torch.float32)
    b[3] = float("nan")
    A = csr_from_weight(W, mask)
    got = torch.ops.sparselth.sparse_linear_kernel(A.rowptr, A.col, A.val, x, b, 20, True)
    assert got[:, 3].isnan().all()
    torch.testing.assert_close(got, F.relu(F.linear(x, W * mask, b)), equal_nan=True,
                               **tolerances(torch.float32))
