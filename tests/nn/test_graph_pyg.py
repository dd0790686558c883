"""The graph layers follow PyG: ``edge_index[0]`` sources, ``[1]`` targets, a sparse matrix
passed as ``adj_t`` (rows = targets); :class:`GCNConv` has PyG's signature and defaults and,
with the same weights, gives PyG's output for every combination of its options; GINConv
(mean) and GATConv likewise where their semantics are PyG's."""

import inspect
import itertools

import pytest
import torch

from sparselth import CSR
from sparselth.nn import GATConv, GCNConv, GINConv, adj_t_from_edge_index


def directed_graph(N=9, E=24, loops=(2, 5), seed=0):
    """Random directed edges without duplicates, a few stored self loops, isolated nodes
    possible; ``[source, target]`` columns in arbitrary order."""
    g = torch.Generator().manual_seed(seed)
    pairs = set()
    while len(pairs) < E:
        s, t = torch.randint(0, N, (2,), generator=g).tolist()
        if s != t:
            pairs.add((s, t))
    pairs |= {(i, i) for i in loops}
    ei = torch.tensor(sorted(pairs)).t()
    return ei[:, torch.randperm(ei.shape[1], generator=g)]


def _conv(kind, in_dim, out_dim, **kw):
    torch.manual_seed(0)
    conv = {"gcn": GCNConv, "gin": GINConv, "gat": GATConv}[kind](in_dim, out_dim, **kw).double()
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.normal_()
    return conv


# ----------------------------------------------------------------------------- the convention


@pytest.mark.parametrize("kind, kw", [("gcn", {}), ("gcn", {"degree": "sender"}),
                                      ("gcn", {"add_self_loops": "all"}), ("gin", {}),
                                      ("gat", {"heads": 2})])
def test_edge_index_equals_adj_t_from_edge_index_on_a_directed_graph(kind, kw):
    N = 9
    ei = directed_graph(N)
    conv = _conv(kind, 4, 3, **kw)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    w = torch.rand(ei.shape[1], generator=g, dtype=torch.float64) + 0.5
    adj_t = adj_t_from_edge_index(ei, N)
    assert adj_t.shape == (N, N) and adj_t.val is None
    torch.testing.assert_close(conv(x, ei), conv(x, adj_t))
    torch.testing.assert_close(conv(x, ei, w), conv(x, adj_t_from_edge_index(ei, N, w)))
    torch.testing.assert_close(conv(x, ei, w), conv(x, adj_t, adj_t_from_edge_index(ei, N, w).val))
    # the adjacency itself (rows = sources) aggregates the other way round
    backwards = CSR.from_edge_index(ei, num_nodes=N)
    assert (conv(x, backwards) - conv(x, ei)).abs().max() > 1e-3


def test_messages_flow_from_edge_index_0_to_edge_index_1():
    """One edge 0 -> 1, no normalisation: node 1 receives x_0 W^T, node 0 nothing."""
    ei = torch.tensor([[0], [1]])
    conv = GCNConv(2, 2, normalize=False, bias=False).double()
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    want = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(conv(x, ei), want)
    adj_t = adj_t_from_edge_index(ei, 2)
    assert adj_t.to_dense().tolist() == [[0.0, 0.0], [1.0, 0.0]]    # adj_t[target, source]
    torch.testing.assert_close(conv(x, adj_t), want)


def test_adj_t_from_edge_index_keeps_duplicate_counts_and_checks_arguments():
    ei = torch.tensor([[1, 1, 2], [0, 0, 0]])                 # 1 -> 0 twice
    adj_t = adj_t_from_edge_index(ei, 3)
    assert adj_t.to_dense()[0].tolist() == [0.0, 2.0, 1.0]
    conv = _conv("gcn", 2, 2)
    x = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(conv(x, ei), conv(x, adj_t))
    with pytest.raises(ValueError, match="^adj_t_from_edge_index: edge_index must have shape"):
        adj_t_from_edge_index(torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="^adj_t_from_edge_index: edge_index must hold integer"):
        adj_t_from_edge_index(torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="^adj_t_from_edge_index: edge_weight must have shape"):
        adj_t_from_edge_index(ei, 3, torch.ones(2))
    with pytest.raises(ValueError, match="^adj_t_from_edge_index: num_nodes"):
        adj_t_from_edge_index(ei, -1)


@pytest.mark.parametrize("kind", ["gcn", "gin", "gat"])
def test_adj_t_with_trained_weights_is_read_at_every_call(kind):
    """``adj_t_from_edge_index(ei, N, w)`` with ``w`` requiring grad re-reads ``w``: after an
    in-place update the layer (and its inference plan) sees the new weights."""
    N = 9
    ei = directed_graph(N)
    conv = _conv(kind, 4, 3)
    x = torch.randn(N, 4, dtype=torch.float64)
    w = (torch.rand(ei.shape[1], dtype=torch.float64) + 0.5).requires_grad_()
    adj_t = adj_t_from_edge_index(ei, N, w)
    conv(x, adj_t).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    for train in (True, False):
        conv.train(train)
        with torch.no_grad():
            before = conv(x, adj_t)
            w.mul_(torch.linspace(0.5, 2.0, w.numel(), dtype=torch.float64))
            torch.testing.assert_close(conv(x, adj_t), conv(x, ei, w))
            assert (conv(x, adj_t) - before).abs().max() > 1e-6


@pytest.mark.parametrize("kind", ["gcn", "gin", "gat"])
def test_graph_keywords(kind):
    N = 9
    ei = directed_graph(N)
    adj_t = adj_t_from_edge_index(ei, N)
    conv = _conv(kind, 4, 3)
    x = torch.randn(N, 4, dtype=torch.float64)
    want = conv(x, adj_t)
    torch.testing.assert_close(conv(x, adj_t=adj_t), want)
    torch.testing.assert_close(conv(x, adj=adj_t), want)              # the earlier name
    torch.testing.assert_close(conv(x, edge_index=ei), want)          # PyG's name
    assert conv.macs(x, adj=adj_t) == conv.macs(x, adj_t)
    name = type(conv).__name__
    with pytest.raises(TypeError, match=f"^{name}: pass the graph once, got adj_t and adj"):
        conv(x, adj_t, adj=adj_t)
    with pytest.raises(TypeError, match=f"^{name}: missing the graph"):
        conv(x)


# ----------------------------------------------------------------------------- PyG's GCNConv


def test_gcn_signature_and_defaults_are_pygs():
    pyg = pytest.importorskip("torch_geometric.nn")
    ours = inspect.signature(GCNConv.__init__).parameters
    theirs = inspect.signature(pyg.GCNConv.__init__).parameters
    names = [n for n in theirs if n not in ("self", "kwargs")]
    assert list(ours)[1:len(names) + 1] == ["in_dim", "out_dim"] + names[2:]
    for n in names[2:]:
        assert ours[n].default == theirs[n].default, n
    conv = GCNConv(4, 3)
    assert conv.bias is not None and not conv.improved and not conv.cached
    assert conv.add_self_loops == "remaining" and conv.normalize
    assert GCNConv(4, 3, normalize=False).add_self_loops is False
    with pytest.raises(ValueError, match="^GCNConv: add_self_loops needs normalize=True"):
        GCNConv(4, 3, add_self_loops=True, normalize=False)
    with pytest.raises(ValueError, match="^GCNConv: add_self_loops must be"):
        GCNConv(4, 3, add_self_loops="some")


def _pyg_gcn(conv, **kw):
    pyg = pytest.importorskip("torch_geometric.nn")
    ref = pyg.GCNConv(conv.in_dim, conv.out_dim, **kw).double()
    with torch.no_grad():
        ref.lin.weight.copy_(conv.lin.weight)
        if conv.bias is not None:
            ref.bias.copy_(conv.bias)
    return ref


@pytest.mark.parametrize("improved, add_self_loops, normalize, bias",
                         list(itertools.product([False, True], [False, True], [False, True],
                                                [False, True])))
def test_gcn_equals_pyg(improved, add_self_loops, normalize, bias):
    pytest.importorskip("torch_geometric")
    kw = dict(improved=improved, add_self_loops=add_self_loops, normalize=normalize, bias=bias)
    if add_self_loops and not normalize:                       # PyG refuses it too
        with pytest.raises(ValueError):
            GCNConv(5, 3, **kw)
        return
    N = 9
    ei = directed_graph(N)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, 5, generator=g, dtype=torch.float64)
    w = torch.rand(ei.shape[1], generator=g, dtype=torch.float64) + 0.25
    for dims in ((5, 3), (5, 8)):                              # transform / aggregate first
        conv = _conv("gcn", *dims, **kw)
        xd = torch.randn(N, dims[0], generator=g, dtype=torch.float64)
        ref = _pyg_gcn(conv, **kw)
        for weight in (None, w):
            pyg_weight = weight
            if weight is None and improved and add_self_loops:
                # PyG's edge_index path drops the fill value 2 when no edge_weight is given (its
                # loops then weigh 1, unlike its adj_t path and its A + 2I); every loop weighs
                # 2 here, which is PyG given those weights explicitly
                pyg_weight = torch.where(ei[0] == ei[1], 2.0, 1.0).double()
            want = ref(xd, ei, pyg_weight)
            tol = dict(rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(conv(xd, ei, weight), want, **tol)
            torch.testing.assert_close(conv(xd, adj_t_from_edge_index(ei, N, weight)), want, **tol)
            conv.eval()
            with torch.no_grad():                               # the inference plan
                torch.testing.assert_close(conv(xd, ei, weight), want, **tol)
            conv.train()
    assert x.shape == (N, 5)


def test_gcn_cached_reuses_the_first_graph_like_pyg():
    pytest.importorskip("torch_geometric")
    N = 9
    ei, other = directed_graph(N), directed_graph(N, seed=3)
    conv = _conv("gcn", 4, 3, cached=True)
    ref = _pyg_gcn(conv, cached=True)
    x = torch.randn(N, 4, dtype=torch.float64)
    first = conv(x, ei)
    torch.testing.assert_close(first, ref(x, ei))
    torch.testing.assert_close(conv(x, other), first)           # the cached graph, as PyG
    torch.testing.assert_close(ref(x, other), first)
    conv.improved = True                                        # a setting change drops it
    assert (conv(x, other) - first).abs().max() > 1e-3
    with pytest.raises(ValueError, match="^GCNConv: cached=True holds the graph"):
        conv(torch.randn(N + 1, 4, dtype=torch.float64), ei)


def test_gcn_remaining_self_loops_macs():
    """PyG's remaining self loops: a node with a stored loop adds no diagonal entry."""
    N = 9
    ei = directed_graph(N, loops=(2, 5))
    x = torch.randn(N, 4, dtype=torch.float64)
    remaining, every = _conv("gcn", 4, 3), _conv("gcn", 4, 3, add_self_loops="all")
    none = _conv("gcn", 4, 3, add_self_loops=False)
    assert remaining.macs(x, ei, order="transform_first")["self"] == (N - 2) * 3
    assert every.macs(x, ei, order="transform_first")["self"] == N * 3
    assert none.macs(x, ei, order="transform_first")["self"] == 0


# ----------------------------------------------------------------------------- GIN and GAT


@pytest.mark.parametrize("bias, train_eps", [(False, True), (True, False)])
def test_gin_equals_pygs_gin_with_a_linear_and_mean(bias, train_eps):
    pyg = pytest.importorskip("torch_geometric.nn")
    N = 9
    ei = directed_graph(N)
    conv = _conv("gin", 4, 3, eps=0.3, train_eps=train_eps, bias=bias)
    ref = pyg.GINConv(torch.nn.Linear(4, 3, bias=bias), eps=0.3, train_eps=train_eps,
                      aggr="mean").double()
    with torch.no_grad():                        # after construction: PyG resets its nn
        ref.nn.weight.copy_(conv.lin.weight)
        if bias:
            ref.nn.bias.copy_(conv.bias)
    x = torch.randn(N, 4, dtype=torch.float64)
    torch.testing.assert_close(conv(x, ei), ref(x, ei), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv(x, adj_t_from_edge_index(ei, N)), ref(x, ei), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("heads, concat, add_self_loops, bias",
                         [(1, True, True, True), (3, True, False, True), (2, False, True, False),
                          (2, True, True, False)])
def test_gat_equals_pyg(heads, concat, add_self_loops, bias):
    pyg = pytest.importorskip("torch_geometric.nn")
    N = 9
    ei = directed_graph(N)
    conv = _conv("gat", 4, 3, heads=heads, concat=concat, add_self_loops=add_self_loops,
                 bias=bias)
    ref = pyg.GATConv(4, 3, heads=heads, concat=concat, add_self_loops=add_self_loops,
                      bias=bias).double()
    with torch.no_grad():
        ref.lin.weight.copy_(conv.lin.weight)
        ref.att_src.copy_(conv.att_src.unsqueeze(0))
        ref.att_dst.copy_(conv.att_dst.unsqueeze(0))
        if bias:
            ref.bias.copy_(conv.bias)
    x = torch.randn(N, 4, dtype=torch.float64)
    torch.testing.assert_close(conv(x, ei), ref(x, ei), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv(x, adj_t_from_edge_index(ei, N)), ref(x, ei), rtol=1e-5,
                               atol=1e-5)


def test_gat_defaults_are_pygs():
    pyg = pytest.importorskip("torch_geometric.nn")
    ours = inspect.signature(GATConv.__init__).parameters
    theirs = inspect.signature(pyg.GATConv.__init__).parameters
    for n in ("heads", "concat", "negative_slope", "add_self_loops", "bias"):
        assert ours[n].default == theirs[n].default, n
    assert ours["attn_dropout"].default == theirs["dropout"].default
