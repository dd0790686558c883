import inspect

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.ops import spmm
from sparselth.testing import random_csr


def test_from_edge_index_sorts_and_sums_duplicates():
    ei = torch.tensor([[2, 0, 2, 0, 1], [1, 3, 1, 0, 2]])
    val = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    A = CSR.from_edge_index(ei, num_nodes=4, values=val)
    assert A.shape == (4, 4) and A.nnz == 4
    assert A.rowptr.tolist() == [0, 2, 3, 4, 4]
    assert A.col.tolist() == [0, 3, 2, 1]
    assert A.val.tolist() == [4.0, 2.0, 5.0, 4.0]
    assert A.col.dtype == torch.int32 and A.rowptr.dtype == torch.int32


def test_pattern_duplicates_become_counts_and_pattern_stays_valueless():
    A = CSR.from_edge_index(torch.tensor([[0, 0, 1], [1, 1, 0]]))
    assert A.val.tolist() == [2.0, 1.0]
    B = CSR.from_edge_index(torch.tensor([[0, 1], [1, 0]]))
    assert B.val is None and B.to_dense().tolist() == [[0, 1], [1, 0]]


def test_empty_and_isolated():
    A = CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long), num_nodes=3)
    assert A.nnz == 0 and A.rowptr.tolist() == [0, 0, 0, 0]
    assert A.to_dense().abs().sum() == 0 and A.t().shape == (3, 3)
    Z = CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long))
    assert Z.shape == (0, 0)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (40, 3), (3, 40), (0, 4)])
def test_dense_roundtrip_and_transpose(shape, index_dtype):
    A = random_csr(*shape, density=0.3, index_dtype=index_dtype, dtype=torch.float64)
    D = A.to_dense()
    assert A.index_dtype == index_dtype
    torch.testing.assert_close(CSR.from_dense(D).to_dense(), D)
    At = A.t()
    torch.testing.assert_close(At.to_dense(), D.t())
    assert At.t() is A  # cached both ways
    perm = A.csr_to_csc_perm()
    torch.testing.assert_close(A.val[perm], At.val)
    CSR(At.rowptr, At.col, At.val, At.shape)  # the transpose is a valid CSR


def test_scipy_and_torch_roundtrips():
    rng = np.random.default_rng(0)
    m = sp.random(30, 20, density=0.2, random_state=rng, format="coo")
    coo = sp.coo_matrix((np.r_[m.data, m.data], (np.r_[m.row, m.row], np.r_[m.col, m.col])), shape=m.shape)
    A = CSR.from_scipy(coo)  # duplicates summed
    np.testing.assert_allclose(A.to_dense().numpy(), coo.toarray(), rtol=1e-6)
    np.testing.assert_allclose(A.to_scipy().toarray(), coo.toarray(), rtol=1e-6)
    D = torch.from_numpy(coo.toarray())
    for layout in (torch.sparse_csr, torch.sparse_coo):
        T = D.to_sparse_csr() if layout == torch.sparse_csr else D.to_sparse()
        B = CSR.from_torch(T)
        torch.testing.assert_close(B.to_dense(), D)
        torch.testing.assert_close(B.to_torch(layout).to_dense(), D)
    torch.testing.assert_close(CSR.from_torch(D).to_dense(), D)


def test_torch_sparse_interop_when_installed():
    torch_sparse = pytest.importorskip("torch_sparse", reason="torch_sparse is an optional peer")
    A = random_csr(9, 7, density=0.4)
    B = CSR.from_torch_sparse(A.to_torch_sparse())
    torch.testing.assert_close(B.to_dense(), A.to_dense())
    assert torch_sparse is not None


def test_gcn_norm_matches_dense_formula():
    A = random_csr(25, 25, density=0.2, dtype=torch.float64, values=False, empty_rows=0.3)
    N = A.gcn_norm(dtype=torch.float64).to_dense()
    D = A.to_dense(torch.float64)
    D = D + torch.diag((torch.diagonal(D) == 0).double())
    d = D.sum(1).pow(-0.5)
    torch.testing.assert_close(N, d[:, None] * D * d[None, :])


def test_bipartite_norm_and_adjacency():
    R = random_csr(6, 9, density=0.4, values=False, dtype=torch.float64)
    D = R.to_dense(torch.float64)
    du, di = D.sum(1).pow(-0.5), D.sum(0).pow(-0.5)
    du[torch.isinf(du)] = 0
    di[torch.isinf(di)] = 0
    torch.testing.assert_close(R.bipartite_norm(torch.float64).to_dense(), du[:, None] * D * di[None, :])
    full = R.bipartite_adjacency(dtype=torch.float64).to_dense()
    Z = torch.zeros(15, 15, dtype=torch.float64)
    Z[:6, 6:] = D
    Z[6:, :6] = D.t()
    d = Z.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    torch.testing.assert_close(full, d[:, None] * Z * d[None, :])


@pytest.mark.parametrize("bad, exc, word", [
    (dict(edge_index=torch.tensor([[0, -1], [1, 0]])), ValueError, "negative"),
    (dict(edge_index=torch.tensor([[0, 5], [1, 0]]), num_nodes=3), ValueError, "out of range"),
    (dict(edge_index=torch.tensor([[0.0, 1.0], [1.0, 0.0]])), TypeError, "integer"),
    (dict(edge_index=torch.tensor([0, 1, 2])), ValueError, "shape"),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), values=torch.ones(3)), ValueError, "values"),
    (dict(edge_index=torch.tensor([[0, 1], [1, 0]]), values=torch.ones(2, dtype=torch.int64)), TypeError, "values"),
    (dict(edge_index=[[0, 1], [1, 0]]), TypeError, "edge_index"),
])
def test_from_edge_index_rejects_bad_input(bad, exc, word):
    with pytest.raises(exc, match=word):
        CSR.from_edge_index(**bad)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(rowptr=torch.tensor([0, 2, 1]), col=torch.tensor([0, 1]), shape=(2, 2)), ValueError, "rowptr"),
    (dict(rowptr=torch.tensor([0, 1, 2]), col=torch.tensor([0, 2]), shape=(2, 2)), ValueError, "col indices"),
    (dict(rowptr=torch.tensor([0, 2]), col=torch.tensor([1, 0]), shape=(1, 2)), ValueError, "sorted"),
    (dict(rowptr=torch.tensor([0, 2]), col=torch.tensor([1, 1]), shape=(1, 2)), ValueError, "duplicates"),
    (dict(rowptr=torch.tensor([0, 1], dtype=torch.int32), col=torch.tensor([0]), shape=(1, 1)), TypeError, "share a dtype"),
    (dict(rowptr=torch.tensor([0, 1]), col=torch.tensor([0]), val=torch.ones(2), shape=(1, 1)), ValueError, "val"),
    (dict(rowptr=torch.tensor([0.0, 1.0]), col=torch.tensor([0]), shape=(1, 1)), TypeError, "rowptr"),
    (dict(rowptr=torch.tensor([0, 1]), col=torch.tensor([0]), shape=(1, 1, 1)), ValueError, "shape"),
    (dict(rowptr=torch.tensor([0, 1, 1]), col=torch.tensor([0]), shape=(1, 1)), ValueError, "rowptr"),
])
def test_constructor_validates(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        CSR(**kwargs)


def test_from_dense_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        CSR.from_dense(torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match="dense"):
        CSR.from_dense([[1.0]])


def test_with_values_keeps_cached_transpose_consistent():
    A = random_csr(10, 12, density=0.3, dtype=torch.float64)
    A.t()
    B = A.with_values(torch.arange(A.nnz, dtype=torch.float64))
    torch.testing.assert_close(B.t().to_dense(), B.to_dense().t())
    with pytest.raises(ValueError, match="with_values"):
        A.with_values(torch.ones(A.nnz + 1, dtype=torch.float64))


@given(rows=st.integers(0, 12), cols=st.integers(0, 12), e=st.integers(0, 60),
       seed=st.integers(0, 10_000), i32=st.booleans())
def test_from_edge_index_fuzz_matches_dense_accumulation(rows, cols, e, seed, i32):
    g = torch.Generator().manual_seed(seed)
    if rows == 0 or cols == 0:
        e = 0
    r = torch.randint(0, max(rows, 1), (e,), generator=g)
    c = torch.randint(0, max(cols, 1), (e,), generator=g)
    v = torch.randn(e, generator=g, dtype=torch.float64)
    A = CSR.from_edge_index(torch.stack([r, c]), num_nodes=rows, values=v, num_cols=cols,
                            index_dtype=torch.int32 if i32 else torch.int64)
    D = torch.zeros(rows, cols, dtype=torch.float64)
    D.index_put_((r, c), v, accumulate=True)
    torch.testing.assert_close(A.to_dense(), D)
    CSR(A.rowptr, A.col, A.val, A.shape)  # revalidates
    torch.testing.assert_close(A.t().to_dense(), D.t())


# --------------------------------------------------------------------------- trust boundaries


def test_public_constructor_always_validates():
    """No public path builds a CSR without the O(nnz) check: ``validate`` is not part of the
    signature, and the ``validate=False`` of older code is ignored (with a warning)."""
    assert "validate" not in inspect.signature(CSR).parameters
    bad = [(torch.tensor([0, 1, 2]), torch.tensor([0, 7]), "col"),       # column past the end
           (torch.tensor([0, 5, 2]), torch.tensor([0, 1]), "rowptr"),    # rowptr past nnz
           (torch.tensor([0, 2, 1]), torch.tensor([0, 1]), "rowptr")]    # decreasing
    for rowptr, col, word in bad:
        with pytest.warns(DeprecationWarning, match="validate=False is ignored"):
            with pytest.raises(ValueError, match=word):
                CSR(rowptr, col, None, (2, 3), validate=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        CSR(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), None, (1, 1), check=False)


def test_from_coo_sorts_shapes_whose_key_overflows():
    """``row * cols + col`` overflows int64 for cols = 2**62: the entries still keep their
    coordinates, duplicates are still summed (against the same coordinates on a small shape)."""
    rows = torch.tensor([4, 0])
    cols = torch.tensor([0, 1])
    A = CSR.from_coo(rows, cols, None, (5, 2**62))
    assert A.to_edge_index().tolist() == [[0, 4], [1, 0]]
    assert A.rowptr.tolist() == [0, 1, 1, 1, 1, 2] and A.index_dtype == torch.int64
    g = torch.Generator().manual_seed(0)
    r = torch.randint(0, 6, (40,), generator=g)
    c = torch.randint(0, 5, (40,), generator=g)
    v = torch.randn(40, generator=g, dtype=torch.float64)
    small = CSR.from_coo(r, c, v, (6, 5))
    huge = CSR.from_coo(r, c, v, (6, 2**62))
    assert torch.equal(huge.to_edge_index(), small.to_edge_index())
    torch.testing.assert_close(huge.val, small.val)


def test_shapes_a_rowptr_cannot_hold_name_the_shape():
    with pytest.raises(ValueError, match=r"shape\[0\]"):
        CSR.from_coo(torch.tensor([0]), torch.tensor([0]), None, (2**62, 1))
    with pytest.raises(ValueError, match="shape"):
        CSR(torch.tensor([0]), torch.tensor([], dtype=torch.long), None, (0, 2**63))
    A = CSR.from_coo(torch.tensor([0]), torch.tensor([2**61]), None, (1, 2**62))
    with pytest.raises(ValueError, match="transpose"):
        A.t()


@pytest.mark.parametrize("duplicates", [False, True])
def test_values_requiring_grad_serve_many_optimisation_steps(duplicates):
    """``from_edge_index(ei, values=v)`` with an unsorted ``ei`` and a trainable ``v``: the CSR
    re-reads ``v`` at every use, so each step backpropagates and sees the updated values."""
    ei = torch.tensor([[2, 0, 1, 2, 0], [1, 2, 0, 0, 0]])
    if duplicates:
        ei = torch.cat([ei, ei[:, :2]], 1)
    v = torch.nn.Parameter(torch.rand(ei.shape[1], dtype=torch.float64))
    A = CSR.from_edge_index(ei, num_nodes=3, values=v)
    At = A.t()
    X = torch.randn(3, 4, dtype=torch.float64)
    opt = torch.optim.SGD([v], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        dense = torch.zeros(3, 3, dtype=torch.float64).index_put((ei[0], ei[1]), v, accumulate=True)
        want_out = dense @ X
        (want,) = torch.autograd.grad(want_out.square().sum(), v)
        out = spmm(A, X)
        torch.testing.assert_close(out, want_out)
        torch.testing.assert_close(At.to_dense(), dense.t())
        (out.square().sum() + 0 * At.val.sum()).backward()
        torch.testing.assert_close(v.grad, want)
        opt.step()
    B = A.to(dtype=torch.float32)          # a cast keeps re-reading v
    torch.testing.assert_close(B.val, A.val.float())
    B.val.sum().backward()
    B.val.sum().backward()


@pytest.mark.parametrize("layout", ["csc", "bsr", "bsc"])
def test_from_torch_accepts_csc_and_block_layouts(layout):
    g = torch.Generator().manual_seed(1)
    D = torch.randn(6, 8, generator=g, dtype=torch.float64)
    D[:2, :4] = 0                                       # an all-zero block
    D[D.abs() < 0.5] = 0
    T = {"csc": lambda: D.to_sparse_csc(), "bsr": lambda: D.to_sparse_bsr((2, 4)),
         "bsc": lambda: D.to_sparse_bsc((3, 2))}[layout]()
    A = CSR.from_torch(T)
    assert A.shape == (6, 8)
    torch.testing.assert_close(A.to_dense(), T.to_dense())
    torch.testing.assert_close(A.t().to_dense(), T.to_dense().t())
    CSR(A.rowptr, A.col, A.val, A.shape)            # a valid structure
    if layout == "csc":
        assert A.nnz == int((D != 0).sum())


def test_from_torch_refuses_hybrid_tensors():
    T = torch.randn(4, 3).to_sparse(sparse_dim=1)            # each stored entry a (3,) row
    with pytest.raises(ValueError, match="hybrid"):
        CSR.from_torch(T)


def test_a_structure_edited_in_place_is_checked_again_before_a_kernel_reads_it():
    from sparselth.ops import spmm
    A = CSR.from_coo(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.ones(2), (2, 3))
    assert torch.equal(spmm(A, torch.eye(3), backend="cpp"), A.to_dense())
    A.col[1] = 99                       # out of range after construction
    with pytest.raises(ValueError, match="col"):
        spmm(A, torch.eye(3), backend="cpp")
    A.col[1] = 2                        # valid again: accepted
    assert torch.equal(spmm(A, torch.eye(3), backend="cpp"), A.to_dense())


def test_a_saved_csr_is_validated_when_loaded_with_weights_only(tmp_path):
    A = CSR.from_coo(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.ones(2), (2, 3))
    torch.save(A, tmp_path / "a.pt")
    B = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(B.to_dense(), A.to_dense())
    A.col[1] = 99
    torch.save(A, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="col"):
        torch.load(tmp_path / "bad.pt", weights_only=True)


@pytest.mark.parametrize("shape", [(1, 2.5), (2.0, 3), (True, 3), ("2", 3)])
def test_a_shape_of_non_ints_is_refused(shape):
    with pytest.raises(TypeError, match="shape"):
        CSR.from_coo(torch.tensor([0]), torch.tensor([0]), None, shape)
