import pytest
import torch
import torch.nn.functional as F

from sparselth import CSR
from sparselth.data import power_law_graph
from sparselth.nn import GATConv, GCNConv, GINConv
from sparselth.testing import DTYPES, INDEX_DTYPES, tolerances

# ----------------------------------------------------------------------------- dense oracles


def dense_weights(A, w):
    """Dense (N, N) rows = targets with values w (ones if None), differentiable in w."""
    N = A.shape[0]
    vals = torch.ones(A.nnz, dtype=torch.float64) if w is None else w
    return torch.zeros(N, N, dtype=vals.dtype).index_put((A.row(), A.col.long()), vals,
                                                         accumulate=True)


def gcn_dense(conv, x, Aw, loop_stored=None, weighted=True):
    """Rows of ``Aw`` are targets: receiver degrees are its row sums, sender degrees its
    column sums. Self loops as ``conv.add_self_loops`` says: ``"all"`` adds ``fill * I``;
    ``"remaining"`` (PyG's) keeps a stored loop (``loop_stored``, default: a non-zero
    diagonal) with its weight, or the fill value when the graph is unweighted, and gives
    every other node a loop of the fill value."""
    N = Aw.shape[0]
    fill = 2.0 if conv.improved else 1.0
    eye = torch.eye(N, dtype=Aw.dtype)
    if loop_stored is None:
        loop_stored = Aw.diagonal() != 0
    if conv.add_self_loops == "all":
        Ahat = Aw + fill * eye
    elif conv.add_self_loops == "remaining":
        own = Aw.diagonal() if weighted else torch.full((N,), fill, dtype=Aw.dtype)
        diag = torch.where(loop_stored, own, torch.full((N,), fill, dtype=Aw.dtype))
        Ahat = Aw - torch.diag(Aw.diagonal()) + torch.diag(diag)
    else:
        Ahat = Aw
    if conv.normalize:
        deg = Ahat.sum(0) if conv.degree == "sender" else Ahat.sum(1)
        d = torch.where(deg > 0, deg, torch.ones_like(deg)).pow(-0.5) * (deg > 0)
        Ahat = d[:, None] * Ahat * d[None, :]
    y = Ahat @ (x @ conv.lin.weight.t())
    return y if conv.bias is None else y + conv.bias


def gin_dense(conv, x, Aw, deg):
    inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
    agg = (Aw @ x) * inv[:, None]
    y = ((1 + conv.eps) * x + agg) @ conv.lin.weight.t()
    return y if conv.bias is None else y + conv.bias


def gat_dense(conv, x, pattern, Aw, quirk=False):
    """Dense attention with -inf outside the (kept) pattern; with ``conv.add_self_loops`` the
    stored loops are replaced by one loop of weight 1 per node."""
    N, H, C = x.shape[0], conv.heads, conv.out_dim
    if conv.add_self_loops:
        eye = torch.eye(N, dtype=torch.bool)
        pattern = (pattern & ~eye) | eye
        Aw = torch.where(eye, torch.ones_like(Aw), Aw)
    z = (x @ conv.lin.weight.t()).view(N, H, C)
    s_src = (z * conv.att_src).sum(-1)           # (N, H)
    s_dst = (z * conv.att_dst).sum(-1)
    e = F.leaky_relu(s_dst.t()[:, :, None] + s_src.t()[:, None, :], conv.negative_slope)  # (H,N,N)
    e = e * Aw[None]
    allowed = pattern if quirk else pattern & (Aw != 0)
    e = e.masked_fill(~allowed[None], float("-inf"))
    alpha = torch.nan_to_num(torch.softmax(e, dim=2), nan=0.0)
    out = torch.einsum("hij,jhc->ihc", alpha, z)
    out = out.reshape(N, H * C) if conv.concat else out.mean(1)
    return out if conv.bias is None else out + conv.bias


def dense_pattern(A):
    return dense_weights(A, None) != 0


# ----------------------------------------------------------------------------- graphs


def small_graph(index_dtype=torch.int64):
    """7 nodes, rows = targets: row 3 empty, a self loop on 5, node 6 isolated."""
    edges = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 4), (4, 1), (4, 2), (5, 5), (5, 0),
             (2, 5), (1, 3)]
    tgt = torch.tensor([e[0] for e in edges])
    src = torch.tensor([e[1] for e in edges])
    return CSR.from_coo(tgt, src, None, (7, 7), index_dtype=index_dtype)


def make_conv(kind, in_dim, out_dim, dtype, **kw):
    torch.manual_seed(0)
    if kind == "gcn":
        conv = GCNConv(in_dim, out_dim, **kw)
    elif kind == "gin":
        conv = GINConv(in_dim, out_dim, **kw)
        with torch.no_grad():
            conv.eps.fill_(0.3)
    else:
        conv = GATConv(in_dim, out_dim, **kw)
    conv = conv.to(dtype)
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.normal_()
    return conv


def dense_out(kind, conv, x, A, w, quirk=False):
    Aw = dense_weights(A, w)
    if kind == "gcn":
        return gcn_dense(conv, x, Aw, dense_pattern(A).diagonal(), w is not None)
    if kind == "gin":
        deg = (A.rowptr[1:] - A.rowptr[:-1]).to(x.dtype)
        return gin_dense(conv, x, Aw, deg)
    return gat_dense(conv, x, dense_pattern(A), Aw, quirk)


KINDS = [("gcn", {"bias": False}), ("gcn", {}),
         ("gcn", {"degree": "sender", "add_self_loops": "all", "bias": False}),
         ("gcn", {"degree": "sender", "improved": True}), ("gin", {}), ("gin", {"bias": True}),
         ("gat", {"heads": 3, "bias": False}),
         ("gat", {"heads": 2, "concat": False, "add_self_loops": False})]


def grads(out, tensors, R):
    return torch.autograd.grad((out * R).sum(), tensors, allow_unused=True)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dims", [(5, 3), (3, 6)])   # transform first / aggregate first
@pytest.mark.parametrize("kind, kw", KINDS)
def test_forward_and_gradients_match_dense(kind, kw, dims, index_dtype, dtype):
    A = small_graph(index_dtype)
    in_dim, out_dim = dims
    conv = make_conv(kind, in_dim, out_dim, dtype, **kw)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, in_dim, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = (torch.rand(A.nnz, generator=g, dtype=torch.float64) + 0.5).to(dtype).requires_grad_()
    out = conv(x, A, w)
    ref = dense_out(kind, conv, x, A, w)
    tol = tolerances(dtype)
    torch.testing.assert_close(out, ref, **tol)
    params = [p for p in conv.parameters()]
    R = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype)
    got = grads(out, [x, w] + params, R)
    want = grads(ref, [x, w] + params, R)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("kind, kw", KINDS)
def test_without_edge_weight_equals_ones(kind, kw):
    A = small_graph()
    conv = make_conv(kind, 4, 3, torch.float64, **kw)
    x = torch.randn(7, 4, dtype=torch.float64)
    ones = torch.ones(A.nnz, dtype=torch.float64)
    if kind == "gcn" and conv.improved and conv.add_self_loops == "remaining":
        ones[A.row() == A.col.long()] = 2.0     # PyG: an unweighted stored loop takes the fill
    torch.testing.assert_close(conv(x, A), conv(x, A, ones))
    torch.testing.assert_close(conv(x, A), dense_out(kind, conv, x, A, None))


def test_csr_values_multiply_edge_weight():
    A = small_graph()
    vals = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    x = torch.randn(7, 4, dtype=torch.float64)
    for kind, kw in KINDS[::2]:
        conv = make_conv(kind, 4, 3, torch.float64, **kw)
        torch.testing.assert_close(conv(x, A.with_values(vals), w), conv(x, A, vals * w))


@pytest.mark.parametrize("kind, kw", KINDS)
def test_gradcheck_edge_weight_small_graph(kind, kw):
    A = small_graph()
    conv = make_conv(kind, 3, 2, torch.float64, **kw)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(A.nnz, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x_, w_: conv(x_, A, w_), (x, w))


@pytest.mark.parametrize("kind, kw", KINDS)
def test_one_node_graph(kind, kw):
    conv = make_conv(kind, 3, 2, torch.float64, **kw)
    x = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    loop = CSR(torch.tensor([0, 1]), torch.tensor([0]), None, (1, 1))
    w = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_, w_: conv(x_, loop, w_), (x, w))
    torch.testing.assert_close(conv(x, loop, w), dense_out(kind, conv, x, loop, w))
    empty = CSR(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), None, (1, 1))
    torch.testing.assert_close(conv(x, empty), dense_out(kind, conv, x, empty, None))
    ei = torch.zeros(2, 0, dtype=torch.long)
    torch.testing.assert_close(conv(x, ei), conv(x, empty))


@pytest.mark.parametrize("kind, kw", KINDS)
def test_edge_index_equals_csr(kind, kw):
    g = torch.Generator().manual_seed(4)
    N = 9
    ei = power_law_graph(N, 2, seed=3)
    ei = ei[:, torch.randperm(ei.shape[1], generator=g)]          # arbitrary column order
    conv = make_conv(kind, 4, 3, torch.float64, **kw)
    x = torch.randn(N, 4, dtype=torch.float64, generator=g)
    w = (torch.rand(ei.shape[1], dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    out_ei = conv(x, ei, w)
    # CSR over targets with the weights in CSR order
    A = CSR.from_edge_index(ei.flip(0), num_nodes=N, values=w.detach())
    wc = A.val.clone().requires_grad_()
    out_csr = conv(x, A.with_values(None), wc)
    torch.testing.assert_close(out_ei, out_csr)
    R = torch.randn(out_ei.shape, dtype=torch.float64, generator=g)
    (gw,) = grads(out_ei, [w], R)
    (gwc,) = grads(out_csr, [wc], R)
    # gradient of column e = gradient of its CSR entry
    key = ei[1] * N + ei[0]
    order = torch.argsort(key)
    torch.testing.assert_close(gw[order], gwc)
    # cached conversion: same tensor again gives the same result
    torch.testing.assert_close(conv(x, ei, w), out_ei)


def test_edge_index_duplicates_are_merged():
    ei = torch.tensor([[1, 1, 2, 0], [0, 0, 0, 2]])          # 1->0 twice
    w = torch.tensor([0.5, 0.25, 2.0, 1.0], dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64)
    A = CSR(torch.tensor([0, 2, 2, 3]), torch.tensor([1, 2, 0]), None, (3, 3))
    for kind, kw in (("gcn", {}), ("gat", {"heads": 2})):
        conv = make_conv(kind, 4, 3, torch.float64, **kw)
        torch.testing.assert_close(conv(x, ei, w), conv(x, A, torch.tensor([0.75, 2.0, 1.0],
                                                                            dtype=torch.float64)))
        torch.testing.assert_close(conv(x, ei), conv(x, A, torch.tensor([2.0, 1.0, 1.0],
                                                                         dtype=torch.float64)))
    # GIN's mean counts every column with that target (3 for node 0)
    conv = make_conv("gin", 4, 3, torch.float64)
    deg = torch.tensor([3.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(conv(x, ei, w),
                               conv(x, A, torch.tensor([0.75, 2.0, 1.0], dtype=torch.float64),
                                    deg=deg))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, kw", KINDS)
def test_sparse_node_features_equal_dense(kind, kw, dtype):
    A = small_graph()
    conv = make_conv(kind, 6, 3, dtype, **kw)
    g = torch.Generator().manual_seed(2)
    xd = torch.randn(7, 6, generator=g, dtype=torch.float64)
    xd[torch.rand(7, 6, generator=g) < 0.6] = 0
    xd = xd.to(dtype)
    xs = CSR.from_dense(xd)
    w = (torch.rand(A.nnz, generator=g) + 0.5).to(dtype).requires_grad_()
    out_d, out_s = conv(xd, A, w), conv(xs, A, w)
    torch.testing.assert_close(out_s, out_d, **tolerances(dtype))
    R = torch.randn(out_d.shape, generator=g).to(dtype)
    for a, b in zip(grads(out_s, [w, conv.lin.weight], R), grads(out_d, [w, conv.lin.weight], R)):
        torch.testing.assert_close(a, b, **tolerances(dtype))
    # binary sparse features (pattern CSR) multiply by ones
    xb = CSR.from_dense(xd, keep_values=False)
    torch.testing.assert_close(conv(xb, A, w), conv((xd != 0).to(dtype), A, w), **tolerances(dtype))
    # MACs: per stored feature times kept weights in its column
    macs = conv.macs(xs, A, w)["transform"]
    nzw = (conv.lin.weight != 0).sum(0)
    assert macs == int(((xd != 0).sum(0) * nzw).sum())


@pytest.mark.parametrize("kind, kw", KINDS)
def test_power_law_graph(kind, kw):
    N = 120
    ei = power_law_graph(N, 3, seed=7)
    A = CSR.from_edge_index(ei.flip(0), num_nodes=N)
    conv = make_conv(kind, 8, 5, torch.float64, **kw)
    x = torch.randn(N, 8, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(A.nnz, dtype=torch.float64) + 0.1).requires_grad_()
    out = conv(x, A, w)
    ref = dense_out(kind, conv, x, A, w)
    torch.testing.assert_close(out, ref)
    R = torch.randn(out.shape, dtype=torch.float64)
    for a, b in zip(grads(out, [x, w], R), grads(ref, [x, w], R)):
        torch.testing.assert_close(a, b)


def test_gat_pruned_edges_removed_vs_quirk():
    A = small_graph()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    w = torch.rand(A.nnz, generator=g, dtype=torch.float64) + 0.5
    w[[0, 3, 8]] = 0.0                                          # 8 = the self loop of node 5
    conv = make_conv("gat", 4, 3, torch.float64, heads=2, add_self_loops=False)
    quirk = make_conv("gat", 4, 3, torch.float64, heads=2, add_self_loops=False,
                      zero_logit_quirk=True)
    quirk.load_state_dict(conv.state_dict())
    out, out_q = conv(x, A, w), quirk(x, A, w)
    # true sparse GAT: identical to the graph without those entries
    keep = w != 0
    rows = A.row()[keep]
    Ak = CSR.from_coo(rows, A.col.long()[keep], None, A.shape)
    torch.testing.assert_close(out, conv(x, Ak, w[keep]))
    torch.testing.assert_close(out, gat_dense(conv, x, dense_pattern(A), dense_weights(A, w)))
    # quirk: pruned edges keep logit 0 and stay in the softmax
    torch.testing.assert_close(out_q, gat_dense(quirk, x, dense_pattern(A), dense_weights(A, w),
                                                quirk=True))
    assert not torch.allclose(out, out_q)
    assert conv.macs(x, A, w)["aggregate"] == int(keep.sum()) * 2 * 3
    assert quirk.macs(x, A, w)["aggregate"] == A.nnz * 2 * 3


def test_gat_attention_dropout_only_in_training():
    A = small_graph()
    conv = make_conv("gat", 4, 3, torch.float64, heads=2, attn_dropout=0.5)
    x = torch.randn(7, 4, dtype=torch.float64)
    conv.eval()
    torch.testing.assert_close(conv(x, A),
                               gat_dense(conv, x, dense_pattern(A), dense_weights(A, None)))
    conv.train()
    torch.manual_seed(0)
    assert not torch.allclose(conv(x, A), conv.eval()(x, A))


def test_gin_deg_keeps_original_denominator_after_compaction():
    A = small_graph()
    conv = make_conv("gin", 4, 3, torch.float64)
    x = torch.randn(7, 4, dtype=torch.float64)
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    w[[1, 4, 5]] = 0
    full = conv(x, A, w)
    keep = w != 0
    Ak = CSR.from_coo(A.row()[keep], A.col.long()[keep], None, A.shape)
    deg = (A.rowptr[1:] - A.rowptr[:-1]).double()
    torch.testing.assert_close(conv(x, Ak, w[keep], deg=deg), full)
    assert not torch.allclose(conv(x, Ak, w[keep]), full)      # own degrees differ


def test_gcn_normalisation_cache_sees_in_place_updates():
    A = small_graph()
    conv = make_conv("gcn", 4, 3, torch.float64)
    x = torch.randn(7, 4, dtype=torch.float64)
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    a = conv(x, A, w)
    torch.testing.assert_close(conv(x, A, w), a)
    assert conv._norm_cache is not None
    w[2] = 0.0                                                  # bumps the version
    torch.testing.assert_close(conv(x, A, w), gcn_dense(conv, x, dense_weights(A, w)))
    # with a gradient needed nothing is cached, the result is the same
    conv._norm_cache = None
    wg = w.clone().requires_grad_()
    torch.testing.assert_close(conv(x, A, wg), conv(x, A, w))


def test_gcn_gradient_flows_through_degrees():
    # a single edge 1 -> 0 with weight w: y_0 = (w x_1 + x_0) / (1 + w) after W (1x1 identity)
    A = CSR(torch.tensor([0, 1, 1]), torch.tensor([1]), None, (2, 2))
    conv = GCNConv(1, 1).double()
    with torch.no_grad():
        conv.lin.weight.fill_(1.0)
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    y = conv(x, A, w)
    # Â_00 = 1/(1+w), Â_01 = w / sqrt((1+w) * 1)
    torch.testing.assert_close(y[0, 0], torch.tensor(0.5 + 3 / 2 ** 0.5, dtype=torch.float64))
    y[0, 0].backward()
    d = -1 / 4 + 3 * (1 / 2 ** 0.5 - 0.5 / 2 ** 1.5)
    torch.testing.assert_close(w.grad, torch.tensor([d], dtype=torch.float64))


def _reference_ugs_gcn(x, W, edges, mask, N):
    """The UGS reference's GCN layer (``torch_normalize_adj`` + ``net_gcn``), written from its
    code: a dense adjacency whose rows are *senders* (``adj[s, t]`` = message s -> t) times the
    mask, ``+ I``, ``d`` = row sums, ``Â = (A D^-1/2)^T D^-1/2``, then ``Â (x W^T)``."""
    adj = torch.zeros(N, N, dtype=torch.float64)
    for (s, t), m in zip(edges, mask):
        adj[s, t] += m
    adj = adj + torch.eye(N, dtype=torch.float64)
    r_inv_sqrt = torch.diag(adj.sum(1).pow(-0.5))
    ahat = (adj @ r_inv_sqrt).t() @ r_inv_sqrt
    return ahat @ (x @ W.t())


def test_gcn_sender_degree_equals_the_ugs_reference():
    g = torch.Generator().manual_seed(5)
    N = 7
    edges = [(1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (4, 2), (1, 4), (2, 4), (0, 5), (5, 2),
             (3, 1), (6, 6)]                            # (source, target); 6 -> 6 a stored loop
    ei = torch.tensor(edges).t()
    mask = torch.rand(len(edges), generator=g, dtype=torch.float64) + 0.25
    mask[3] = 0.0                                       # a pruned edge
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    sender = make_conv("gcn", 4, 3, torch.float64, degree="sender", add_self_loops="all",
                       bias=False)
    receiver = make_conv("gcn", 4, 3, torch.float64, add_self_loops="all", bias=False)
    ref = _reference_ugs_gcn(x, sender.lin.weight.detach(), edges, mask, N)
    torch.testing.assert_close(sender(x, ei, mask), ref, rtol=1e-12, atol=1e-12)
    A = CSR.from_edge_index(ei.flip(0), num_nodes=N, values=mask)
    torch.testing.assert_close(sender(x, A.with_values(None), A.val), ref, rtol=1e-12,
                               atol=1e-12)
    # the asymmetric mask makes the receiver form differ from the reference
    assert (receiver(x, ei, mask) - ref).abs().max() > 1e-3
    # a symmetric mask on a symmetric graph: both forms are the reference
    sym = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 5), (5, 2)]
    ms = torch.tensor([0.3, 0.3, 1.2, 1.2, 0.7, 0.7], dtype=torch.float64)
    eis = torch.tensor(sym).t()
    ref = _reference_ugs_gcn(x, sender.lin.weight.detach(), sym, ms, N)
    torch.testing.assert_close(sender(x, eis, ms), ref)
    torch.testing.assert_close(receiver(x, eis, ms), ref)


def test_gcn_sender_gradient_flows_through_degrees():
    # a single edge 1 -> 0 with weight w; sender degrees: D_1 = 1 + w (node 1 sends), D_0 = 1
    # y_0 = x_0 + w x_1 / sqrt(1 + w), y_1 = x_1 / (1 + w)   (W = 1x1 identity)
    A = CSR(torch.tensor([0, 1, 1]), torch.tensor([1]), None, (2, 2))
    conv = GCNConv(1, 1, degree="sender").double()
    with torch.no_grad():
        conv.lin.weight.fill_(1.0)
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    y = conv(x, A, w)
    torch.testing.assert_close(y[:, 0], torch.tensor([1 + 3 / 2 ** 0.5, 1.5],
                                                     dtype=torch.float64))
    (y[0, 0] + y[1, 0]).backward()
    # d/dw [3 w (1 + w)^-1/2] = 3 (1 + w)^-1/2 - 1.5 w (1 + w)^-3/2; d/dw [3 / (1 + w)] = -3/4
    d = 3 / 2 ** 0.5 - 1.5 / 2 ** 1.5 - 0.75
    torch.testing.assert_close(w.grad, torch.tensor([d], dtype=torch.float64))


@pytest.mark.parametrize("degree", ["receiver", "sender"])
def test_gcn_all_pruned_edges_leave_the_identity(degree):
    A = small_graph()
    conv = make_conv("gcn", 4, 3, torch.float64, degree=degree, add_self_loops="all", bias=False)
    x = torch.randn(7, 4, dtype=torch.float64)
    w = torch.zeros(A.nnz, dtype=torch.float64, requires_grad=True)
    out = conv(x, A, w)
    torch.testing.assert_close(out, conv.lin(x))
    R = torch.randn(out.shape, dtype=torch.float64)
    (got,) = grads(out, [w], R)
    (want,) = grads(dense_out("gcn", conv, x, A, w), [w], R)
    torch.testing.assert_close(got, want)
    assert got.abs().sum() > 0                           # pruned edges still get a gradient


def test_gcn_degree_modes_differ_on_the_asymmetric_test_graph():
    A = small_graph()
    x = torch.randn(7, 4, dtype=torch.float64)
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    a = make_conv("gcn", 4, 3, torch.float64)(x, A, w)
    b = make_conv("gcn", 4, 3, torch.float64, degree="sender")(x, A, w)
    assert (a - b).abs().max() > 1e-3


def test_gcn_degree_switch_drops_the_cached_normalisation():
    A = small_graph()
    conv = make_conv("gcn", 4, 3, torch.float64)
    x = torch.randn(7, 4, dtype=torch.float64)
    w = torch.rand(A.nnz, dtype=torch.float64) + 0.5
    conv(x, A, w)
    assert conv._norm_cache is not None
    conv.degree = "sender"
    torch.testing.assert_close(conv(x, A, w), gcn_dense(conv, x, dense_weights(A, w)))
    assert "degree='sender'" in repr(conv)
    with pytest.raises(ValueError, match="^GCNConv: degree must be 'receiver' or 'sender'"):
        conv.degree = "in"
    with pytest.raises(ValueError, match="^GCNConv: degree must be"):
        GCNConv(4, 3, degree="source")
    assert conv.degree == "sender"


@pytest.mark.parametrize("kind, kw", KINDS)
def test_macs_drop_with_pruning(kind, kw):
    A = small_graph()
    conv = make_conv(kind, 5, 4, torch.float64, **kw)
    x = torch.randn(7, 5, dtype=torch.float64)
    w = torch.ones(A.nnz, dtype=torch.float64)
    full = conv.macs(x, A, w)
    assert full["transform"] == 7 * conv.lin.weight.numel()
    w[:4] = 0
    fewer_edges = conv.macs(x, A, w)
    assert fewer_edges["aggregate"] < full["aggregate"]
    with torch.no_grad():
        conv.lin.weight[:, :2] = 0
    fewer_w = conv.macs(x, A, w)
    assert fewer_w["transform"] == 7 * int((conv.lin.weight != 0).sum()) < full["transform"]
    assert fewer_w["total"] == sum(v for k, v in fewer_w.items() if k != "total")


@pytest.mark.parametrize("call, exc, word", [
    (lambda c, x, A: c(x[:, :2], A), ValueError, "x must have shape"),
    (lambda c, x, A: c(x.long(), A), TypeError, "x must be floating"),
    (lambda c, x, A: c([1.0], A), TypeError, "x must be a dense tensor or a sparselth.CSR"),
    (lambda c, x, A: c(x[:5], A), ValueError, "adj_t must have shape"),
    (lambda c, x, A: c(x, A, torch.ones(3)), ValueError, "edge_weight must have shape"),
    (lambda c, x, A: c(x, A, torch.ones(A.nnz, dtype=torch.long)), TypeError,
     "edge_weight must be floating"),
    (lambda c, x, A: c(x, A, torch.ones(A.nnz, 1)), ValueError, "edge_weight must be 1-D"),
    (lambda c, x, A: c(x, "graph"), TypeError, "adj_t must be a sparselth.CSR"),
    (lambda c, x, A: c(x, torch.tensor([[0, 9], [1, 2]])), ValueError, "edge_index entries"),
    (lambda c, x, A: c(x, torch.zeros(3, 4, dtype=torch.long)), ValueError,
     "edge_index must have shape"),
    (lambda c, x, A: c(x, torch.zeros(2, 4)), TypeError, "edge_index must hold integer"),
    (lambda c, x, A: c(x, torch.zeros(2, 4, dtype=torch.long), torch.ones(3)), ValueError,
     "edge_weight must have shape"),
])
@pytest.mark.parametrize("cls", [GCNConv, GINConv, GATConv])
def test_bad_input(cls, call, exc, word):
    A = small_graph()
    conv = cls(4, 3)
    x = torch.randn(7, 4)
    with pytest.raises(exc, match=f"^{cls.__name__}: {word}"):
        call(conv, x, A)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="^GCNConv: in_dim"):
        GCNConv(0, 3)
    with pytest.raises(ValueError, match="^GATConv: heads"):
        GATConv(3, 3, heads=0)
    with pytest.raises(ValueError, match="^GATConv: attn_dropout"):
        GATConv(3, 3, attn_dropout=1.0)
    with pytest.raises(ValueError, match="^GINConv: deg must have shape"):
        GINConv(4, 3)(torch.randn(7, 4), small_graph(), deg=torch.ones(3))


def test_parameter_names():
    assert {n for n, _ in GCNConv(4, 3).named_parameters()} == {"lin.weight", "bias"}
    assert {n for n, _ in GCNConv(4, 3, bias=False).named_parameters()} == {"lin.weight"}
    assert {n for n, _ in GINConv(4, 3).named_parameters()} == {"lin.weight", "eps"}
    assert {n for n, _ in GINConv(4, 3, train_eps=False).named_parameters()} == {"lin.weight"}
    gat = GATConv(4, 3, heads=2, bias=True)
    shapes = {n: tuple(p.shape) for n, p in gat.named_parameters()}
    assert shapes == {"lin.weight": (6, 4), "att_src": (2, 3), "att_dst": (2, 3), "bias": (6,)}
