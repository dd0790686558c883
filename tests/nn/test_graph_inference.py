"""The graph layers' inference plans (eval mode, no autograd): equal to the dense formulas in
both orders, with dense and sparse features, dense and compiled sparse weights; the order
chosen by exact MACs; plans rebuilt when a weight, edge weight or graph changes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.nn import ChannelPrunedLinear, GATConv, GCNConv, GINConv, SparseLinear
from sparselth.nn._graph_plan import order_costs, sparse_product
from sparselth.ops import backend as _backend
from sparselth.testing import random_csr, tolerances

from .test_graph import dense_out, make_conv, small_graph

ORDERS = ["auto", "transform_first", "aggregate_first"]


def _features(in_dim, dtype, seed=1, density=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, in_dim, generator=g, dtype=torch.float64)
    x[torch.rand(7, in_dim, generator=g) > density] = 0
    x[3] = 0                                                    # a node without features
    return x.to(dtype)


def _infer(conv, *args, **kw):
    conv.eval()
    with torch.no_grad():
        return conv(*args, **kw)


def _reference(kind, conv, x, A, w, relu):
    with torch.no_grad():
        ref = dense_out(kind, conv, x, A, w)
    return torch.relu(ref) if relu else ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sparse_x", [False, True])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kind, kw", [("gcn", {}), ("gcn", {"bias": True}),
                                      ("gcn", {"degree": "sender"}),
                                      ("gcn", {"degree": "sender", "bias": True}), ("gin", {}),
                                      ("gin", {"bias": True})])
@pytest.mark.parametrize("dims", [(5, 3), (3, 6)])
def test_plan_equals_dense_formula(kind, kw, dims, relu, order, sparse_x, dtype):
    A = small_graph()
    conv = make_conv(kind, *dims, dtype, **kw)
    conv.order = order
    x = _features(dims[0], dtype)
    w = (torch.rand(A.nnz, generator=torch.Generator().manual_seed(3)) + 0.5).to(dtype)
    w[::4] = 0                                                 # pruned edges
    got = _infer(conv, CSR.from_dense(x) if sparse_x else x, A, w, relu=relu)
    torch.testing.assert_close(got, _reference(kind, conv, x, A, w, relu), **tolerances(dtype))
    # the autograd path gives the same
    conv.train()
    with torch.enable_grad():
        train = conv(x.clone().requires_grad_(), A, w, relu=relu)
    torch.testing.assert_close(got, train.detach(), **tolerances(dtype))


@pytest.mark.parametrize("sparse_x", [False, True])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["gcn", "gcn-sender", "gin", "gat"])
@pytest.mark.parametrize("lin_cls", [SparseLinear, ChannelPrunedLinear])
def test_compiled_sparse_lin_equals_masked_dense(lin_cls, kind, order, sparse_x):
    """A deploy-time ``lin`` (CSR or channel-pruned weight) with sparse features runs the
    sparse x sparse transform; equal to the masked dense layer."""
    dtype = torch.float64
    A = small_graph()
    kw = {"heads": 2} if kind == "gat" else {"bias": True}
    if kind == "gcn-sender":
        kind, kw = "gcn", {"bias": True, "degree": "sender"}
    conv = make_conv(kind, 6, 4, dtype, **kw)
    mask = torch.rand(conv.lin.weight.shape, generator=torch.Generator().manual_seed(4)) < 0.4
    mask[:, 1] = False                                           # an all-pruned input column
    mask[0] = False                                              # an all-pruned output row
    with torch.no_grad():
        conv.lin.weight.mul_(mask)
    x = _features(6, dtype)
    w = torch.rand(A.nnz, dtype=dtype) + 0.5
    ref = _reference(kind, conv, x, A, w, False)
    conv.lin = lin_cls.from_dense(conv.lin, mask)
    conv.order = order if kind != "gat" else "auto"
    got = _infer(conv, CSR.from_dense(x) if sparse_x else x, A, w)
    torch.testing.assert_close(got, ref, **tolerances(dtype))


def test_edge_index_input_and_deg_argument():
    dtype = torch.float64
    A = small_graph()
    ei = torch.stack([A.col.long(), A.row()])                   # [source, target]
    x = _features(4, dtype)
    for kind in ("gcn", "gin"):
        conv = make_conv(kind, 4, 3, dtype)
        ref = _reference(kind, conv, x, A, None, True)
        torch.testing.assert_close(_infer(conv, x, ei, relu=True), ref)
    gin = make_conv("gin", 4, 3, dtype)
    deg = torch.arange(7, dtype=dtype)
    with torch.no_grad():
        want = gin.train()(x, A, None, deg=deg)
    torch.testing.assert_close(_infer(gin, x, A, None, deg=deg), want)


@pytest.mark.parametrize("kind", ["gcn", "gin"])
def test_plan_rebuilt_when_inputs_change(kind):
    dtype = torch.float64
    A = small_graph()
    conv = make_conv(kind, 5, 3, dtype, bias=True)
    x = _features(5, dtype)
    w = torch.rand(A.nnz, dtype=dtype) + 0.5

    def check():
        torch.testing.assert_close(_infer(conv, x, A, w), _reference(kind, conv, x, A, w, False))

    check()
    plan = conv._plan
    check()
    assert conv._plan is plan                                   # reused
    with torch.no_grad():
        conv.lin.weight.mul_(2)                                  # in place: version changes
    check()
    with torch.no_grad():
        w[:3] = 0
    check()
    with torch.no_grad():
        conv.bias.add_(1)
    check()
    if kind == "gin":
        with torch.no_grad():
            conv.eps.fill_(-0.5)
        check()
    else:
        conv.degree = "sender"                                   # another normalisation
        check()
    conv.lin = torch.nn.Linear(5, 3, bias=False).to(dtype)       # a new module
    check()
    w = torch.rand(A.nnz, dtype=dtype)                           # a new tensor
    check()
    x = _features(5, dtype, seed=9)                              # new features, same shape
    check()
    xs = CSR.from_dense(x)                                       # now sparse
    torch.testing.assert_close(_infer(conv, xs, A, w), _reference(kind, conv, x, A, w, False))


def test_plan_follows_the_backend():
    A = small_graph()
    conv = make_conv("gcn", 5, 3, torch.float64)
    x = _features(5, torch.float64)
    _infer(conv, x, A)
    with _backend.use_backend("reference"):
        _infer(conv, x, A)
        assert conv._plan.backend == "reference"
    out = _infer(conv, x, A)
    assert conv._plan.backend == _backend.resolve("auto", x.device, x.dtype, "spmm")
    torch.testing.assert_close(out, _reference("gcn", conv, x, A, None, False))


def test_order_by_exact_macs():
    A = small_graph()
    wide = make_conv("gcn", 3, 40, torch.float64, add_self_loops="all")   # aggregate first
    narrow = make_conv("gcn", 40, 3, torch.float64, add_self_loops="all")
    _infer(wide, _features(3, torch.float64), A)
    _infer(narrow, _features(40, torch.float64), A)
    assert wide._plan.order == "aggregate_first"
    assert narrow._plan.order == "transform_first"
    # MACs of the order taken; the other order's are larger
    x = _features(3, torch.float64)
    auto = wide.macs(x, A)
    assert auto == wide.macs(x, A, order="aggregate_first")
    assert auto["total"] < wide.macs(x, A, order="transform_first")["total"]
    nnz_a = A.nnz + 7                                           # stored entries + self terms
    assert auto == {"transform": 7 * 120, "aggregate": (nnz_a - 7) * 3, "self": 7 * 3,
                    "total": 7 * 120 + nnz_a * 3}


def test_sparse_feature_macs_in_both_orders():
    A = small_graph()
    conv = make_conv("gcn", 6, 4, torch.float64, add_self_loops="all")
    with torch.no_grad():
        conv.lin.weight[:, :3] = 0
    xd = _features(6, torch.float64)
    x = CSR.from_dense(xd)
    nz_col = (conv.lin.weight != 0).sum(0)
    t = conv.macs(x, A, order="transform_first")
    assert t["transform"] == int(((xd != 0).sum(0) * nz_col).sum())
    assert t["aggregate"] + t["self"] == (A.nnz + 7) * 4
    a = conv.macs(x, A, order="aggregate_first")
    row_nnz = (xd != 0).sum(1)
    src = torch.bincount(A.col.long(), minlength=7)
    assert a["aggregate"] == int((src * row_nnz).sum()) and a["self"] == x.nnz
    assert a["transform"] == 7 * int(nz_col.sum())
    dense = conv.macs(x, A, order="transform_first", dense=True)
    assert dense["transform"] == x.nnz * 4


def test_dense_macs_count_every_weight_and_stored_edge():
    A = small_graph()
    for kind in ("gcn", "gin", "gat"):
        conv = make_conv(kind, 5, 3, torch.float64)
        x = _features(5, torch.float64)
        w = torch.zeros(A.nnz, dtype=torch.float64)
        with torch.no_grad():
            conv.lin.weight.zero_()
        full = conv.macs(x, A, w, dense=True)
        assert full["transform"] == 7 * conv.lin.weight.numel()
        assert full["total"] > conv.macs(x, A, w)["total"]


def test_order_costs_rejects_unknown_order():
    conv = make_conv("gcn", 5, 3, torch.float64)
    conv.order = "sideways"
    with pytest.raises(ValueError, match="order"):
        _infer(conv, _features(5, torch.float64), small_graph())


def test_inference_leaves_training_unchanged():
    """A plan built in eval mode is not used when training."""
    A = small_graph()
    conv = make_conv("gcn", 5, 3, torch.float64, bias=True)
    x = _features(5, torch.float64)
    _infer(conv, x, A)
    conv.train()
    w = (torch.rand(A.nnz, dtype=torch.float64) + 0.5).requires_grad_()
    out = conv(x, A, w, relu=True)
    out.sum().backward()
    assert w.grad is not None and conv.lin.weight.grad is not None


# --------------------------------------------------------------------------- sparse x sparse


def _sp_cases():
    for rows, inner, cols in [(0, 3, 4), (5, 0, 3), (9, 7, 1), (17, 33, 65), (40, 12, 130)]:
        for index_dtype in (torch.int32, torch.int64):
            for dtype in (torch.float32, torch.float64):
                yield rows, inner, cols, index_dtype, dtype


@pytest.mark.parametrize("rows, inner, cols, index_dtype, dtype", list(_sp_cases()))
def test_sparse_product_equals_dense(rows, inner, cols, index_dtype, dtype):
    A = random_csr(rows, inner, 0.3, dtype=dtype, index_dtype=index_dtype, power_law=True,
                   seed=rows + cols)
    B = random_csr(inner, cols, 0.2, dtype=dtype, index_dtype=index_dtype, empty_rows=0.3,
                   seed=inner)
    want = A.to_dense(torch.float64) @ B.to_dense(torch.float64)
    torch.testing.assert_close(sparse_product(A, B), want.to(dtype), **tolerances(dtype))
    pattern = A.with_values(None)
    torch.testing.assert_close(sparse_product(pattern, B),
                               (pattern.to_dense(torch.float64) @ B.to_dense(torch.float64))
                               .to(dtype), **tolerances(dtype))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 20), inner=st.integers(0, 20), cols=st.integers(1, 30),
       da=st.floats(0, 1), db=st.floats(0, 1), seed=st.integers(0, 1000))
def test_sparse_product_fuzz(rows, inner, cols, da, db, seed):
    A = random_csr(rows, inner, da, dtype=torch.float64, seed=seed)
    B = random_csr(inner, cols, db, dtype=torch.float64, seed=seed + 1)
    torch.testing.assert_close(sparse_product(A, B), A.to_dense() @ B.to_dense())


def test_order_costs_formula():
    x = CSR.from_dense(torch.tensor([[1.0, 0, 2], [0, 0, 0], [0, 3, 0]]))
    per_col = torch.tensor([2, 0, 1])
    agg_cols = torch.tensor([2, 1, 3])
    c = order_costs(3, 6, agg_cols, 3, 4, x, per_col, 3)
    assert c["transform_first"] == {"transform": 1 * 2 + 1 * 0 + 1 * 1, "aggregate": 6 * 4}
    assert c["aggregate_first"] == {"transform": 3 * 3, "aggregate": 2 * 2 + 1 * 0 + 3 * 1}


def test_gat_transform_caches_the_transposed_weight():
    A = small_graph()
    conv = GATConv(6, 2, heads=2).double().eval()
    x = _features(6, torch.float64)
    with torch.no_grad():
        a = conv(CSR.from_dense(x), A)
        state = conv._wt_cache
        b = conv(CSR.from_dense(x), A)
        assert conv._wt_cache is state
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, _reference("gat", conv, x, A, None, False))


def test_types_exported():
    assert issubclass(GCNConv, torch.nn.Module) and issubclass(GINConv, torch.nn.Module)


def test_sparse_product_mixed_index_dtypes():
    A = random_csr(9, 7, 0.4, dtype=torch.float64, index_dtype=torch.int32, seed=1)
    B = random_csr(7, 5, 0.4, dtype=torch.float64, index_dtype=torch.int64, seed=2)
    want = A.to_dense() @ B.to_dense()
    torch.testing.assert_close(sparse_product(A, B), want)
    torch.testing.assert_close(sparse_product(A.index_as(torch.int64), B.index_as(torch.int32)),
                               want)
