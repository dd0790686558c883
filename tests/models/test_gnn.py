import pytest
import torch
import torch.nn.functional as F

import sparselth
import sparselth.prune as prune
from sparselth import CSR, Ticket
from sparselth.data import contextual_sbm, power_law_graph
from sparselth.models import GAT, GCN, GIN
from sparselth.nn import GATConv, GCNConv, GINConv
from sparselth.testing import tolerances

N, F_IN, C = 60, 12, 3


def graph(index_dtype=torch.int64):
    ei = power_law_graph(N, 3, seed=11)
    ei = torch.cat([ei, ei.flip(0)], 1)                         # symmetric, like Planetoid
    A = CSR.from_edge_index(ei.flip(0), num_nodes=N, index_dtype=index_dtype)
    return A.with_values(None)                                  # duplicates were summed


def build(name, A, **kw):
    torch.manual_seed(0)
    if name == "gcn":
        return GCN(A, F_IN, C, hidden=16, **kw)
    if name == "gin":
        return GIN(A, F_IN, C, hidden=16, **kw)
    return GAT(A, F_IN, C, hidden=4, heads=3, **kw)


MODELS = ["gcn", "gin", "gat"]


def features(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, F_IN, generator=g, dtype=torch.float64)
    x[torch.rand(N, F_IN, generator=g) < 0.5] = 0
    return x.to(dtype)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("name", MODELS)
def test_contract(name, index_dtype):
    A = graph(index_dtype)
    m = build(name, A)
    sd = m.state_dict()
    for key in ("graph_rowptr", "graph_col", "graph_num_nodes", "edge_mask"):
        assert key in sd
    assert m.graph_rowptr.dtype == index_dtype and m.graph_col.dtype == index_dtype
    assert int(m.graph_num_nodes) == N
    expected_nnz = A.nnz + (N if name == "gat" else 0)         # GAT: self loops before masking
    assert isinstance(m.edge_mask, torch.nn.Parameter) and m.edge_mask.requires_grad
    assert m.edge_mask.shape == (expected_nnz,) and bool((m.edge_mask == 1).all())
    adj = m.adjacency()
    assert isinstance(adj, CSR) and adj.nnz == expected_nnz and adj.shape == (N, N)
    assert m.adjacency() is adj                                  # cached
    params = dict(m.named_parameters())
    names = m.ugs_weight_names()
    assert all(n in params for n in names)
    if name == "gat":
        assert len(names) == 6 and "conv1.att_src" in names
    else:
        assert names == ["conv1.lin.weight", "conv2.lin.weight"]
    if name == "gin":
        assert "pred.weight" in params and "pred.weight" not in names
        assert m.pred.bias is None
    frozen = build(name, A, learn_edge_mask=False)
    assert not frozen.edge_mask.requires_grad


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_and_edge_mask_gradient(name):
    m = build(name, graph())
    x = features(torch.float32)
    y = m(x)
    assert y.shape == (N, C)
    F.cross_entropy(y, torch.arange(N) % C).backward()
    assert m.edge_mask.grad is not None and m.edge_mask.grad.abs().sum() > 0
    for n in m.ugs_weight_names():
        assert m.get_parameter(n).grad is not None


def test_models_match_hand_built_layers():
    A = graph()
    x = features()
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    gcn = build("gcn", A).double().eval()
    with torch.no_grad():
        gcn.edge_mask.copy_(w)
    h = F.relu(gcn.conv1(x, A, w))
    torch.testing.assert_close(gcn(x), gcn.conv2(h, A, w))
    gin = build("gin", A).double().eval()
    h1 = F.relu(gin.conv1(x, A))
    torch.testing.assert_close(gin(x), (gin.pred(h1) + F.relu(gin.conv2(h1, A))) / 2)
    gat = build("gat", A).double().eval()
    As = A.add_self_loops()
    torch.testing.assert_close(gat(x), gat.conv2(F.elu(gat.conv1(x, As)), As))
    assert isinstance(gat.conv1, GATConv) and gat.conv1.heads == 3 and gat.conv1.concat
    assert gat.conv2.heads == 1 and gat.conv2.attn_dropout == 0.0 and gat.conv1.attn_dropout == 0.6
    assert isinstance(gcn.conv1, GCNConv) and isinstance(gin.conv1, GINConv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", MODELS)
def test_compact_graph_keeps_output(name, dtype):
    m = build(name, graph()).to(dtype).eval()
    x = features(dtype)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        m.edge_mask.mul_(torch.rand(m.edge_mask.shape, generator=g, dtype=dtype) + 0.5)
        m.edge_mask[torch.rand(m.edge_mask.shape, generator=g) < 0.4] = 0
    before = m(x)
    kept = int((m.edge_mask != 0).sum())
    deg = m.graph_deg.clone() if name == "gin" else None
    macs_before = m.macs(x)
    assert m.compact_graph() is m
    assert m.edge_mask.numel() == kept == m.adjacency().nnz and bool((m.edge_mask != 0).all())
    assert m.edge_mask.requires_grad
    torch.testing.assert_close(m(x), before, **tolerances(dtype))
    assert m.macs(x) == macs_before                              # zero edges were free already
    if name == "gin":
        torch.testing.assert_close(m.graph_deg, deg)
    # a fresh model loads the compacted state and gives the same output
    fresh = build(name, graph()).to(dtype).eval()
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(fresh(x), before, **tolerances(dtype))
    # compacting again is a no-op; gradients reach the compacted mask
    m.compact_graph()
    m.train()
    m(x).sum().backward()
    assert m.edge_mask.grad.shape == (kept,)


def _gcn_oracle(m, x, w):
    """The UGS reference GCN in dense float64: rows of the mask matrix are senders,
    ``Â = D^-1/2 (A_m + I)^T D^-1/2`` with ``D`` its row sums (``"sender"``), or the usual
    ``D^-1/2 (A_w + I) D^-1/2`` over targets (``"receiver"``)."""
    A = m.adjacency()
    n = A.shape[0]
    Aw = torch.zeros(n, n, dtype=torch.float64).index_put(
        (A.row(), A.col.long()), w.detach().double(), accumulate=True)   # rows = targets
    out = x.double()
    for i, conv in enumerate((m.conv1, m.conv2)):
        if conv.degree == "sender":
            M = Aw.t() + torch.eye(n, dtype=torch.float64)                  # rows = senders
            d = torch.diag(M.sum(1).pow(-0.5))
            ahat = (M @ d).t() @ d
        else:
            M = Aw + torch.eye(n, dtype=torch.float64)
            d = torch.diag(M.sum(1).pow(-0.5))
            ahat = d @ M @ d
        out = ahat @ (out @ conv._weight().detach().double().t())
        if i == 0:
            out = torch.relu(out)
    return out


@pytest.mark.parametrize("sparse_x", [False, True])
@pytest.mark.parametrize("degree", ["sender", "receiver"])
def test_gcn_degree_every_path_equals_the_oracle(degree, sparse_x):
    """Training path, cached inference plan (fused), compacted graph and a compiled sparse
    conv2 all give the dense oracle's output, with an asymmetric pruned soft mask."""
    from sparselth.nn import SparseLinear

    torch.manual_seed(0)
    kw = {} if degree == "sender" else {"degree": "receiver"}
    m = GCN(graph(), F_IN, C, hidden=8, dropout=0.0, **kw).double()
    assert m.conv1.degree == m.conv2.degree == degree
    x = features()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        m.edge_mask.mul_(torch.rand(m.edge_mask.shape, generator=g, dtype=torch.float64) + 0.5)
        m.edge_mask[torch.rand(m.edge_mask.shape, generator=g) < 0.3] = 0
    xin = CSR.from_dense(x) if sparse_x else x
    want = _gcn_oracle(m, x, m.edge_mask)
    m.train()
    train = m(xin)
    torch.testing.assert_close(train, want)
    train.sum().backward()
    assert m.edge_mask.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(xin), want)                 # cached plan
        m.compact_graph()
        torch.testing.assert_close(m(xin), want)                 # pruned edges dropped
        mask2 = torch.rand(m.conv2.lin.weight.shape, generator=g) < 0.5
        m.conv2.lin.weight.mul_(mask2)
        want = _gcn_oracle(m, x, m.edge_mask)
        m.conv2.lin = SparseLinear.from_dense(m.conv2.lin, mask2)
        torch.testing.assert_close(m(xin), want)                 # fused with a sparse conv2
        m.fuse = False
        torch.testing.assert_close(m(xin), want)
    # the two forms differ on this asymmetric mask
    other = "receiver" if degree == "sender" else "sender"
    m.conv1.degree = m.conv2.degree = other
    with torch.no_grad():
        assert (m(xin) - want).abs().max() > 1e-6


def test_gcn_bad_degree():
    with pytest.raises(ValueError, match="degree must be 'receiver' or 'sender'"):
        GCN(graph(), F_IN, C, degree="in")


def test_gat_quirk_refuses_compaction():
    m = build("gat", graph(), zero_logit_quirk=True)
    with torch.no_grad():
        m.edge_mask[:5] = 0
    with pytest.raises(ValueError, match="^GAT.compact_graph"):
        m.compact_graph()


@pytest.mark.parametrize("name", MODELS)
def test_macs_drop_when_edges_or_weights_zeroed(name):
    m = build(name, graph())
    x = features(torch.float32)
    full = m.macs(x)
    assert full["total"] == sum(v["total"] for k, v in full.items() if isinstance(v, dict))
    assert full["conv1"]["transform"] == N * m.conv1.lin.weight.numel()
    with torch.no_grad():
        m.edge_mask[::3] = 0
    fewer_edges = m.macs(x)
    assert fewer_edges["conv1"]["aggregate"] < full["conv1"]["aggregate"]
    assert fewer_edges["total"] < full["total"]
    with torch.no_grad():
        m.conv1.lin.weight[:, ::2] = 0
    fewer_w = m.macs(x)
    assert fewer_w["conv1"]["transform"] < full["conv1"]["transform"]
    assert fewer_w["total"] < fewer_edges["total"]
    # sparse features: counted per stored feature
    xs = CSR.from_dense(x)
    assert m.macs(xs)["conv1"]["transform"] < fewer_w["conv1"]["transform"]


def test_gcn_paper_formula():
    m = build("gcn", graph())
    x = features(torch.float32)
    info = m.macs(x)
    nnz_w = m.conv1.lin.weight.numel() + m.conv2.lin.weight.numel()
    assert info["paper_formula"] == N * nnz_w + 2 * m.edge_mask.numel() * 16


@pytest.mark.parametrize("name", MODELS)
def test_sparse_features_equal_dense(name):
    m = build(name, graph()).double().eval()
    x = features()
    torch.testing.assert_close(m(CSR.from_dense(x)), m(x))


@pytest.mark.parametrize("name", MODELS)
def test_prune_apply_with_edge_mask(name):
    m = build(name, graph())
    x = features(torch.float32)
    g = torch.Generator().manual_seed(1)
    em = torch.rand(m.edge_mask.shape, generator=g) > 0.3
    wm = torch.rand(m.conv1.lin.weight.shape, generator=g) > 0.5
    prune.apply(m, {"edge_mask": em, "conv1.lin.weight": wm})
    assert bool((m.edge_mask[~em] == 0).all()) and bool((m.conv1.lin.weight[~wm] == 0).all())
    y = m(x)
    F.cross_entropy(y, torch.arange(N) % C).backward()
    assert bool((m.edge_mask.grad[~em] == 0).all())
    assert prune.sparsity(m)["layers"]["edge_mask"] == pytest.approx(float((~em).float().mean()))
    # compaction also compacts the installed mask buffer, and masked training still works
    m.eval()
    before = m(x)
    m.compact_graph()
    assert m.edge_mask_mask.shape == m.edge_mask.shape and bool(m.edge_mask_mask.all())
    torch.testing.assert_close(m(x), before)
    m.train()
    m.zero_grad()
    m(x).sum().backward()
    assert m.edge_mask.grad.shape == m.edge_mask.shape


def test_ticket_round_trip_gcn(tmp_path):
    A = graph(torch.int32)
    m = build("gcn", A)
    theta0 = {k: v.clone() for k, v in m.state_dict().items()}
    em = torch.rand(m.edge_mask.shape, generator=torch.Generator().manual_seed(0)) > 0.2
    masks = {"edge_mask": em,
             "conv1.lin.weight": m.conv1.lin.weight.abs() > m.conv1.lin.weight.abs().median(),
             "conv2.lin.weight": torch.ones_like(m.conv2.lin.weight, dtype=torch.bool)}
    prune.apply(m, masks)
    with torch.no_grad():
        m.edge_mask.mul_(0.9)                                    # "trained" values
    x = features(torch.float32)
    m.eval()
    want = m(x)
    ticket = Ticket.from_model(m, init_state=theta0, seed=0)
    ticket.save(tmp_path / "glt")
    t2 = Ticket.load(tmp_path / "glt")
    assert t2.masks == ticket.masks and "edge_mask" in t2.masks
    assert t2.trained_state["graph_col"].dtype == torch.int32
    fresh = build("gcn", A)
    t2.apply_to(fresh)
    fresh.eval()
    torch.testing.assert_close(fresh(x), want)
    rewound = t2.apply_to(build("gcn", A), state="init")
    assert bool((rewound.edge_mask[~em] == 0).all()) and bool((rewound.edge_mask[em] == 1).all())


def test_edge_index_constructor_and_bad_input():
    ei = power_law_graph(N, 3, seed=11)
    m = GCN(ei, F_IN, C, hidden=8, num_nodes=N)
    A = CSR.from_edge_index(ei.flip(0), num_nodes=N)
    assert torch.equal(m.graph_col.long(), A.col.long())
    with pytest.raises(TypeError, match="^GCN: adj must be"):
        GCN("graph", F_IN, C)
    with pytest.raises(ValueError, match="^GIN: adj must be square"):
        GIN(CSR.from_dense(torch.ones(3, 4)), F_IN, C)
    with pytest.raises(ValueError, match="^GATConv: adj_t must have shape"):
        GAT(A, F_IN, C, hidden=2, heads=2)(torch.randn(N + 1, F_IN))


def test_gcn_learns_contextual_sbm():
    data = contextual_sbm(num_nodes=120, num_classes=3, num_features=F_IN, seed=0)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    torch.manual_seed(0)
    m = GCN(A, data.num_features, data.num_classes, hidden=16)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(m(data.x)[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_deepcopy_and_functional_call(name):
    import copy
    m = build(name, graph()).eval()
    x = features(torch.float32)
    prune.apply(m, {"edge_mask": torch.rand(m.edge_mask.shape,
                                            generator=torch.Generator().manual_seed(2)) > 0.3})
    want = m(x)
    c = copy.deepcopy(m)
    assert c.adjacency().col is c.graph_col
    prune.remove(c)
    c.compact_graph()
    torch.testing.assert_close(c(x), want)
    assert c.macs(x) == m.macs(x)
    # a substituted edge mask (as a soft-mask wrapper passes it) receives the gradient
    em = m.edge_mask.detach().clone().requires_grad_()
    torch.func.functional_call(m, {"edge_mask": em * 1.0}, (x,)).sum().backward()
    assert em.grad is not None and em.grad.abs().sum() > 0


@pytest.mark.parametrize("sparse_x", [False, True])
@pytest.mark.parametrize("skip_dead", [True, False])
@pytest.mark.parametrize("kept", [0.3, 0.0, 1.0])
@pytest.mark.parametrize("sparse_lin1", [False, True])
def test_gcn_fuses_conv2_transform_into_conv1_at_inference(sparse_x, skip_dead, kept, sparse_lin1,
                                                          monkeypatch):
    """conv2's transform runs in conv1's aggregation (the fused kernel), over the hidden
    channels conv2 reads only (or all); equal to the unfused and the masked dense model."""
    from sparselth.nn import SparseLinear
    from sparselth.nn import _graph_plan

    torch.manual_seed(0)
    m = GCN(graph(), F_IN, C, hidden=8).double().eval()     # hidden < F_IN: transform first
    with torch.no_grad():
        m.conv1.bias = torch.nn.Parameter(torch.randn(8, dtype=torch.float64))
    x = features(torch.float64)
    x = CSR.from_dense(x * (x > 0.5)) if sparse_x else x
    g = torch.Generator().manual_seed(0)
    mask2 = torch.rand(m.conv2.lin.weight.shape, generator=g) < kept
    mask2[:, 0] = kept > 0                                        # a live channel, or none
    mask1 = torch.rand(m.conv1.lin.weight.shape, generator=g) < 0.5
    with torch.no_grad():
        m.conv2.lin.weight.mul_(mask2)
        m.conv1.lin.weight.mul_(mask1)
        m.edge_mask[::4] = 0
        want = m(x)
    m.conv2.lin = SparseLinear.from_dense(m.conv2.lin, mask2)
    if sparse_lin1:
        m.conv1.lin = SparseLinear.from_dense(m.conv1.lin, mask1)
    m.skip_dead_channels = skip_dead
    calls = []
    real = _graph_plan.LiveChannels.run if skip_dead else _graph_plan.Plan.run_fused

    def spy(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(_graph_plan.LiveChannels if skip_dead else _graph_plan.Plan,
                        "run" if skip_dead else "run_fused", spy)
    with torch.no_grad():
        got = m(x)
        live = m.live_channels()
        m.fuse = False
        unfused = m(x)
    fusable = m.conv1._plan.order == "transform_first" and "cpp" in sparselth.backends()
    assert len(calls) == int(fusable)
    if fusable and skip_dead:
        assert live == int(mask2.any(0).sum())
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(unfused, want)


@pytest.mark.parametrize("name", MODELS)
def test_loaded_graph_buffers_are_checked_before_the_kernels(name):
    """The stored graph may come from a state dict: a column past the nodes or a rowptr past
    the entries is refused with a ValueError naming the buffer, never read by a kernel."""
    m = build(name, graph()).eval()
    x = features(torch.float32)
    for buf, index, value in (("graph_col", 0, N + 5), ("graph_rowptr", 3, 10**6)):
        sd = dict(m.state_dict())
        sd[buf] = sd[buf].clone()
        sd[buf][index] = value
        bad = build(name, graph()).eval()
        bad.load_state_dict(sd)
        with torch.no_grad(), pytest.raises(ValueError, match=buf):
            bad(x)
