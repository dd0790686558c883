import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sparselth
from sparselth import CSR
from sparselth.ops import spgemm, spgemm_reference
from sparselth.testing import DTYPES, INDEX_DTYPES, ODD_SHAPES, random_csr, test_backends, tolerances

spgemm_mod = importlib.import_module("sparselth.ops.spgemm")  # the module (the op shadows it)


def dense_oracle(A, B):
    return A.to_dense(torch.float64) @ B.to_dense(torch.float64)


def _work(A, B):
    lens = (B.rowptr[1:] - B.rowptr[:-1]).long()
    return int(lens[A.col.long()].sum()) if A.nnz else 0


def _pair(m, n, k, dtype=torch.float64, index_dtype=torch.int64, a_density=0.3, b_density=0.3,
          seed=0, power_law=False, a_values=True, b_values=True):
    A = random_csr(m, n, a_density, dtype=dtype, index_dtype=index_dtype, power_law=power_law,
                   values=a_values, seed=seed)
    B = random_csr(n, k, b_density, dtype=dtype, index_dtype=index_dtype, values=b_values,
                   seed=seed + 1)
    return A, B


def test_hand_computed_golden_with_empty_rows():
    # A = [[0, 2, 0], [0, 0, 0], [1, 0, 3]], B = [[1, 0], [0, 4], [5, 0]]
    A = CSR(torch.tensor([0, 1, 1, 3]), torch.tensor([1, 0, 2]), torch.tensor([2.0, 1.0, 3.0]), (3, 3))
    B = CSR(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0]), torch.tensor([1.0, 4.0, 5.0]), (3, 2))
    for b in test_backends():
        assert spgemm(A, B, backend=b).tolist() == [[0.0, 8.0], [0.0, 0.0], [16.0, 0.0]]
        # patterns multiply by ones
        assert spgemm(A.with_values(None), B, backend=b).tolist() == [[0.0, 4.0], [0.0, 0.0], [6.0, 0.0]]
        assert spgemm(A, B.with_values(None), backend=b).tolist() == [[0.0, 2.0], [0.0, 0.0], [4.0, 0.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_forward_matches_oracle_on_odd_shapes(shape, index_dtype, dtype):
    m, n, k = shape
    A, B = _pair(m, n, k, dtype, index_dtype, seed=m * 7 + k, power_law=m > 50)
    expected = dense_oracle(A, B).to(dtype)
    for b in test_backends(max_work=_work(A, B) + A.nnz):
        torch.testing.assert_close(spgemm(A, B, backend=b), expected, **tolerances(dtype))


@pytest.mark.parametrize("a_values", [True, False])
@pytest.mark.parametrize("b_values", [True, False])
def test_patterns_multiply_by_ones(a_values, b_values):
    A, B = _pair(23, 19, 29, a_values=a_values, b_values=b_values, seed=4)
    expected = dense_oracle(A, B)
    if not a_values and not b_values:
        expected = expected.to(torch.get_default_dtype())
    for b in test_backends(max_work=_work(A, B)):
        out = spgemm(A, B, backend=b)
        assert out.dtype == expected.dtype
        torch.testing.assert_close(out, expected, **tolerances(out.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, b_density", [(64, 0.2), (64, 0.03), (100, 0.5), (300, 0.4),
                                          (1100, 0.5), (1100, 0.01), (40000, 0.0005)])
def test_both_cpu_routes(dtype, k, b_density):
    """Narrow or dense-enough B takes the vectorised expand route, wide sparse B the scalar
    scatter (the kernel picks by cost); both equal the oracle, one chunk or several."""
    A, B = _pair(37, 41, k, dtype, torch.int32, a_density=0.2, b_density=b_density, seed=k,
                 power_law=True)
    for b in test_backends(max_work=_work(A, B) if k <= 300 else 10**9):
        torch.testing.assert_close(spgemm(A, B, backend=b), dense_oracle(A, B).to(dtype),
                                   **tolerances(dtype))


def test_all_pruned_rows_and_columns_one_column_and_zero_size():
    dtype = torch.float64
    A, B = _pair(20, 15, 12, dtype, seed=3)
    dense_b = B.to_dense()
    dense_b[::2] = 0          # all-pruned rows of B (A's entries there contribute nothing)
    dense_b[:, 3:7] = 0       # all-pruned columns of B (zero output columns)
    B2 = CSR.from_dense(dense_b)
    cases = [(A, B2), (A, CSR.from_dense(torch.zeros(15, 12, dtype=dtype))),
             _pair(9, 15, 1, dtype, seed=5), _pair(0, 4, 3, dtype), _pair(4, 0, 3, dtype),
             _pair(4, 3, 0, dtype), _pair(0, 0, 0, dtype)]
    for A_, B_ in cases:
        for b in test_backends(max_work=_work(A_, B_)):
            out = spgemm(A_, B_, backend=b)
            assert out.shape == (A_.shape[0], B_.shape[1])
            torch.testing.assert_close(out, dense_oracle(A_, B_))


def test_mixed_index_dtypes():
    A, _ = _pair(13, 11, 7, index_dtype=torch.int32, seed=2)
    _, B = _pair(13, 11, 7, index_dtype=torch.int64, seed=2)
    for b in test_backends():
        torch.testing.assert_close(spgemm(A, B, backend=b), dense_oracle(A, B))


def test_large_enough_to_run_threaded():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for k, bd in [(64, 0.2), (700, 0.01)]:
            A, B = _pair(3000, 500, k, torch.float32, a_density=0.02, b_density=bd, seed=9,
                         power_law=True)
            for b in test_backends(max_work=10**9):
                torch.testing.assert_close(spgemm(A, B, backend=b), dense_oracle(A, B).float(),
                                           atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_beyond_two_huge_pages(dtype):
    # >= 4 MiB outputs come from huge-page memory of their own (csrc/cpu/alloc.h): same values,
    # an ordinary tensor (in-place ops, views, autograd), freed with it.
    A, B = _pair(9000, 300, 130, dtype, a_density=0.01, b_density=0.1, seed=4)
    want = dense_oracle(A, B).to(dtype)
    for b in test_backends(max_work=10**9):
        out = spgemm(A, B, backend=b)
        assert out.numel() * out.element_size() >= 4 << 20 and out.is_contiguous()
        torch.testing.assert_close(out, want, **tolerances(dtype))
        out.add_(1).mul_(2)
        torch.testing.assert_close(out[::7], (want[::7] + 1) * 2, **tolerances(dtype))
    Bv = B.val.clone().requires_grad_(True)
    out = spgemm(A, CSR(B.rowptr, B.col, Bv, B.shape))
    out.sum().backward()
    # d sum(A @ B) / d B[j, c] = sum_i A[i, j]
    b_row = torch.repeat_interleave(torch.arange(B.shape[0]), (B.rowptr[1:] - B.rowptr[:-1]).long())
    want_grad = A.to_dense(torch.float64).sum(0)[b_row].to(dtype)
    torch.testing.assert_close(Bv.grad, want_grad, **tolerances(dtype))


def test_repeated_products_follow_changes_of_b():
    # the CPU kernel reuses the per-row header of the last B it saw while B's index tensors
    # come back unchanged; every change must be seen
    A, B = _pair(40, 30, 64, torch.float32, a_density=0.2, b_density=0.15, seed=5)
    A2, B2 = _pair(40, 30, 64, torch.float32, a_density=0.2, b_density=0.15, seed=6)
    tol = tolerances(torch.float32)
    for b in test_backends():
        for _ in range(2):   # alternating tables
            torch.testing.assert_close(spgemm(A, B, backend=b), dense_oracle(A, B).float(), **tol)
            torch.testing.assert_close(spgemm(A, B2, backend=b), dense_oracle(A, B2).float(),
                                       **tol)
        val, col = B.val.clone(), B.col.clone()
        Bc = CSR(B.rowptr, col, val, B.shape)
        spgemm(A, Bc, backend=b)
        val.mul_(3)   # values are read at every call
        torch.testing.assert_close(spgemm(A, Bc, backend=b), dense_oracle(A, Bc).float(), **tol)
        ends = B.rowptr[1:].tolist()   # the last entry of a row whose last column < 63
        e = next(x - 1 for i, x in enumerate(ends) if x > B.rowptr[i] and col[x - 1] < 63)
        col[e] = 63   # still sorted and unique in its row
        torch.testing.assert_close(spgemm(A, Bc, backend=b), dense_oracle(A, Bc).float(), **tol)
        if b == "cpp":
            col[e] = 64   # out of range for 64 columns: checked again after the change
            with pytest.raises(ValueError, match="B's columns|col indices"):
                spgemm(A, Bc, backend=b)
            col[e] = 3
    with torch.inference_mode():
        Bi = CSR(B.rowptr.clone(), B.col.clone(), B.val.clone(), B.shape)
        for _ in range(2):
            torch.testing.assert_close(spgemm(A, Bi), dense_oracle(A, Bi).float(), **tol)


@pytest.mark.parametrize("route", ["sampled", "dense"])
@pytest.mark.parametrize("backend", test_backends())
def test_gradients_match_dense_autograd(backend, route, monkeypatch):
    """Both routes of the gradient with respect to B's values (sampled product on the
    transposes, or A^T @ grad then a gather) and the gradient with respect to A's values."""
    monkeypatch.setattr(spgemm_mod, "_SAMPLED_PAIR_COST", 0.0 if route == "sampled" else 1e30)
    dtype = torch.float64
    small = backend == "triton"
    A, B = _pair(7 if small else 23, 6 if small else 17, 5 if small else 13, dtype, seed=11,
                 power_law=not small)
    av = A.val.clone().requires_grad_(True)
    bv = B.val.clone().requires_grad_(True)
    out = spgemm(A.with_values(av), B.with_values(bv), backend=backend)
    gy = torch.randn_like(out)
    grads = torch.autograd.grad(out, [av, bv], gy)

    dav, dbv = av.detach().clone().requires_grad_(True), bv.detach().clone().requires_grad_(True)
    DA = torch.zeros(A.shape, dtype=dtype).index_put((A.row(), A.col.long()), dav)
    DB = torch.zeros(B.shape, dtype=dtype).index_put((B.row(), B.col.long()), dbv)
    ref_grads = torch.autograd.grad(DA @ DB, [dav, dbv], gy)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_only_requested_gradients():
    A, B = _pair(12, 9, 8, seed=6)
    bv = B.val.clone().requires_grad_(True)
    out = spgemm(A, B.with_values(bv))
    (g,) = torch.autograd.grad(out.sum(), [bv])
    assert g.shape == bv.shape
    av = A.val.clone().requires_grad_(True)
    out = spgemm(A.with_values(av), B.with_values(None))
    (g,) = torch.autograd.grad(out.sum(), [av])
    torch.testing.assert_close(g, B.with_values(None).to_dense(torch.float64).sum(1)[A.col.long()])


@pytest.mark.parametrize("backend", test_backends())
def test_gradcheck(backend):
    small = backend == "triton"
    A, B = _pair(5 if small else 9, 4 if small else 7, 3 if small else 6, torch.float64,
                 a_density=0.5, b_density=0.5, seed=2)
    av = A.val.clone().requires_grad_(True)
    bv = B.val.clone().requires_grad_(True)
    f = lambda x, y: spgemm(A.with_values(x), B.with_values(y), backend=backend)
    assert torch.autograd.gradcheck(f, (av, bv))


@given(m=st.integers(0, 30), n=st.integers(0, 30), k=st.integers(0, 140),
       da=st.floats(0.0, 1.0), db=st.floats(0.0, 1.0), seed=st.integers(0, 10**6),
       i32=st.booleans(), f64=st.booleans(), power=st.booleans(), av=st.booleans(),
       bv=st.booleans())
def test_fuzz_against_oracle(m, n, k, da, db, seed, i32, f64, power, av, bv):
    dtype = torch.float64 if f64 else torch.float32
    idx = torch.int32 if i32 else torch.int64
    A = random_csr(m, n, da, dtype=dtype, index_dtype=idx, values=av, power_law=power, seed=seed)
    B = random_csr(n, k, db, dtype=dtype, index_dtype=idx, values=bv, seed=seed + 1)
    expected = dense_oracle(A, B).to(dtype if (av or bv) else torch.get_default_dtype())
    for b in [b for b in test_backends() if b != "triton"]:
        torch.testing.assert_close(spgemm(A, B, backend=b), expected, **tolerances(expected.dtype))


@given(m=st.integers(1, 6), n=st.integers(1, 6), k=st.integers(1, 20), seed=st.integers(0, 10**6))
def test_fuzz_triton_small(m, n, k, seed):
    if "triton" not in test_backends():
        pytest.skip("Triton does not run here (needs a GPU or TRITON_INTERPRET=1)")
    A, B = _pair(m, n, k, torch.float64, a_density=0.6, b_density=0.6, seed=seed)
    torch.testing.assert_close(spgemm(A, B, backend="triton"), dense_oracle(A, B))


class TestBadInput:
    A = random_csr(4, 5, 0.5)
    B = random_csr(5, 3, 0.5)

    @pytest.mark.parametrize("call, exc, word", [
        (lambda A, B: spgemm(A.to_dense(), B), TypeError, "A must be a sparselth.CSR"),
        (lambda A, B: spgemm(A, B.to_dense()), TypeError, "B must be a sparselth.CSR"),
        (lambda A, B: spgemm(A, A), ValueError, "B must have A.shape\\[1\\] = 5 rows"),
        (lambda A, B: spgemm(A, B.to(dtype=torch.float64)), TypeError, "A.val has dtype"),
        (lambda A, B: spgemm(A, B, backend="mkl"), ValueError, "backend"),
    ])
    def test_raises(self, call, exc, word):
        with pytest.raises(exc, match=word):
            call(self.A, self.B)

    def test_raw_kernel_checks_indices(self):
        if "cpp" not in sparselth.backends():
            pytest.skip("the C++ extension is not built")
        ok = torch.tensor([0, 1]), torch.tensor([0])
        with pytest.raises(ValueError, match="A's columns must name rows of B"):
            torch.ops.sparselth.spgemm_kernel(torch.tensor([0, 1]), torch.tensor([3]), None,
                                              *ok, None, 2, torch.float32)
        with pytest.raises(ValueError, match="B's columns must lie in"):
            torch.ops.sparselth.spgemm_kernel(*ok, None, torch.tensor([0, 1]), torch.tensor([5]),
                                              None, 2, torch.float32)
        with pytest.raises(ValueError, match="rowptr must start at 0"):
            torch.ops.sparselth.spgemm_kernel(torch.tensor([0, 4]), torch.tensor([0]), None,
                                              *ok, None, 2, torch.float32)
        with pytest.raises(TypeError, match="share a dtype"):
            torch.ops.sparselth.spgemm_kernel(*ok, None, torch.tensor([0, 1], dtype=torch.int32),
                                              torch.tensor([0], dtype=torch.int32), None, 2,
                                              torch.float32)
        with pytest.raises(ValueError, match="grad must be"):
            torch.ops.sparselth.spgemm_sampled_kernel(*ok, *ok, None, torch.zeros(3, 2))


def test_reference_is_the_formula():
    A, B = _pair(17, 13, 11, seed=8)
    out = spgemm_reference(A.rowptr, A.col, A.val, B.rowptr, B.col, B.val, 11, torch.float64)
    torch.testing.assert_close(out, dense_oracle(A, B))


def test_torch_compile_fullgraph_matches_eager():
    A, B = _pair(30, 20, 16, torch.float32, seed=9)
    A.t(), B.t()   # transposes cached outside the compiled region (with_values keeps B's)
    bv = B.val.clone().requires_grad_(True)
    w = torch.randn(16, 4)

    def f(v):
        return torch.relu(spgemm(A, B.with_values(v))) @ w

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(bv)
    torch.testing.assert_close(out, f(bv))
    (g,) = torch.autograd.grad(out.sum(), [bv])
    (g_ref,) = torch.autograd.grad(f(bv).sum(), [bv])
    torch.testing.assert_close(g, g_ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU, or a CPU-only torch")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_gpu_backends_match_oracle(dtype, index_dtype):
    A, B = _pair(300, 200, 130, torch.float64, index_dtype, a_density=0.05, b_density=0.1,
                 seed=21, power_law=True)
    A, B = A.to("cuda", dtype), B.to("cuda", dtype)
    expected = (A.to_dense(torch.float64) @ B.to_dense(torch.float64)).to(dtype)
    for b in test_backends("cuda"):
        torch.testing.assert_close(spgemm(A, B, backend=b), expected, **tolerances(dtype))
        if dtype == torch.float64:
            av = A.val.clone().requires_grad_(True)
            bv = B.val.clone().requires_grad_(True)
            out = spgemm(A.with_values(av), B.with_values(bv), backend=b)
            gy = torch.randn_like(out)
            ga, gb = torch.autograd.grad(out, [av, bv], gy)
            ref_a, ref_b = torch.autograd.grad(spgemm(A.with_values(av), B.with_values(bv),
                                                      backend="reference"), [av, bv], gy)
            torch.testing.assert_close(ga, ref_a)
            torch.testing.assert_close(gb, ref_b)
