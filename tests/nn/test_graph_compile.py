"""The graph layers and their ops under PyTorch's transforms: ``torch.compile(fullgraph=True)``
with an ``adj_t`` or an ``edge_index``, ``torch.func.grad`` / ``jacrev`` against autograd,
``torch.export`` of a model in eval mode, and shape-only use on meta tensors."""

import pytest
import torch

from sparselth import CSR
from sparselth.models import GCN, GIN
from sparselth.nn import GATConv, GCNConv, GINConv, adj_t_from_edge_index
from sparselth.ops import edge_softmax, sddmm, spmm

N = 8
# directed, a stored self loop on 2, node 7 receives nothing
EDGES = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 6, 2, 1],
                      [1, 2, 3, 4, 5, 0, 3, 4, 2, 6]])


def _conv(kind, **kw):
    torch.manual_seed(0)
    conv = {"gcn": GCNConv, "gin": GINConv, "gat": GATConv}[kind](4, 3, **kw).double()
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.normal_()
    return conv


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    w = torch.rand(EDGES.shape[1], generator=g, dtype=torch.float64) + 0.5
    return x, w


def _graph(kind_of_graph, w):
    """``(graph, weights in its order)``."""
    if kind_of_graph == "edge_index":
        return EDGES, w
    A = adj_t_from_edge_index(EDGES, N, w)
    return A.with_values(None), A.val


@pytest.mark.parametrize("graph", ["adj_t", "edge_index"])
@pytest.mark.parametrize("kind, kw", [("gcn", {}), ("gcn", {"add_self_loops": "all",
                                                             "degree": "sender"}),
                                      ("gin", {}), ("gat", {"heads": 2})])
def test_compile_fullgraph_equals_eager(kind, kw, graph):
    torch._dynamo.reset()                         # each case compiles its own lambda afresh
    conv = _conv(kind, **kw)
    x, w = _inputs()
    g, wg = _graph(graph, w)
    if kind == "gat" and graph == "edge_index":
        f = torch.compile(lambda x_, w_: conv(x_, g, w_), fullgraph=True, backend="aot_eager")
        with pytest.raises(Exception, match="pass adj_t"):
            f(x, wg)
        return
    xa, wa = x.clone().requires_grad_(), wg.clone().requires_grad_()
    want = conv(xa, g, wa)
    gx, gw = torch.autograd.grad(want.square().sum(), (xa, wa))
    f = torch.compile(lambda x_, w_: conv(x_, g, w_), fullgraph=True, backend="aot_eager")
    xc, wc = x.clone().requires_grad_(), wg.clone().requires_grad_()
    got = f(xc, wc)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got.square().sum(), (xc, wc)), (gx, gw)):
        torch.testing.assert_close(a, b)
    conv.eval()                                   # inference traces the same path
    with torch.no_grad():
        torch.testing.assert_close(f(x, wg), conv(x, g, wg))


def test_compile_inductor_gcn_with_a_fresh_adj_t():
    """The default backend, an ``adj_t`` whose transpose was never computed eagerly."""
    torch._dynamo.reset()
    conv = _conv("gcn")
    x, w = _inputs()
    A = adj_t_from_edge_index(EDGES, N, w)
    want = conv(x, adj_t_from_edge_index(EDGES, N, w))
    f = torch.compile(conv, fullgraph=True)
    torch.testing.assert_close(f(x, A), want)


# ----------------------------------------------------------------------------- torch.func


def _check_func_grad(fn, *args):
    """``torch.func.grad`` of ``fn`` w.r.t. every argument equals autograd's."""
    got = torch.func.grad(fn, argnums=tuple(range(len(args))))(*args)
    leaves = [a.clone().requires_grad_() for a in args]
    want = torch.autograd.grad(fn(*leaves), leaves)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_func_grad_through_the_ops():
    x, w = _inputs()
    A = adj_t_from_edge_index(EDGES, N)
    y = torch.randn(N, 4, dtype=torch.float64)
    _check_func_grad(lambda v, x_: spmm(A.with_values(v), x_).sin().sum(), A.values(torch.float64),
                     x)
    _check_func_grad(lambda x_, y_: sddmm(A, x_, y_).square().sum(), x, y)
    s = torch.randn(A.nnz, 2, dtype=torch.float64)
    _check_func_grad(lambda s_: (edge_softmax(A, s_) * torch.arange(
        2.0, dtype=torch.float64)).square().sum(), s)
    for fn, arg in ((lambda x_: spmm(A, x_), x), (lambda v: sddmm(A, v, y), x),
                    (lambda s_: edge_softmax(A, s_), s)):
        torch.testing.assert_close(torch.func.jacrev(fn)(arg),
                                   torch.autograd.functional.jacobian(fn, arg))


@pytest.mark.parametrize("kind", ["gcn", "gin", "gat"])
@pytest.mark.parametrize("graph", ["adj_t", "edge_index"])
def test_func_grad_through_graph_layers(kind, graph):
    conv = _conv(kind)
    x, w = _inputs()
    g, wg = _graph(graph, w)
    _check_func_grad(lambda x_, w_: conv(x_, g, w_).square().sum(), x, wg)
    params = {k: v.detach() for k, v in conv.named_parameters()}

    def loss(p):
        return torch.func.functional_call(conv, p, (x, g, wg)).square().sum()

    got = torch.func.grad(loss)(params)
    want = torch.autograd.grad(conv(x, g, wg).square().sum(), list(conv.parameters()))
    for (name, _), b in zip(conv.named_parameters(), want):
        torch.testing.assert_close(got[name], b)


# ----------------------------------------------------------------------------- torch.export


@pytest.mark.parametrize("model_cls", [GCN, GIN])
def test_export_graph_model_in_eval_mode(model_cls):
    torch.manual_seed(0)
    model = model_cls(EDGES, 4, 3, hidden=16, num_nodes=N).double().eval()
    x, _ = _inputs()
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("kind", ["gcn", "gat"])
def test_export_layer_holding_an_adj_t(kind):
    """A module holding its ``adj_t``: exported, and the CSR still serves eager calls after
    (nothing traced is cached on it)."""
    class Net(torch.nn.Module):
        def __init__(self, A):
            super().__init__()
            self.conv = _conv(kind)
            self.adj_t = A

        def forward(self, x):
            return torch.relu(self.conv(x, self.adj_t))

    net = Net(adj_t_from_edge_index(EDGES, N)).eval()
    x, _ = _inputs()
    program = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), net(x))
    torch.testing.assert_close(net(x), torch.relu(_conv(kind)(x, EDGES)))


# ----------------------------------------------------------------------------- meta tensors


@pytest.mark.parametrize("kind, width", [("gcn", 3), ("gin", 3), ("gat", 6)])
def test_meta_tensors_give_shapes(kind, width):
    conv = _conv(kind, **({"heads": 2} if kind == "gat" else {})).to("meta")
    x = torch.empty(N, 4, dtype=torch.float64, device="meta")
    ei = EDGES.to("meta")
    A = adj_t_from_edge_index(EDGES, N)
    Am = A.to("meta")
    w = torch.empty(EDGES.shape[1], dtype=torch.float64, device="meta")
    for train, grad in ((True, True), (False, False)):
        conv.train(train)
        with torch.set_grad_enabled(grad):
            for g, wg in ((ei, w), (Am, w[:A.nnz]), (ei, None)):
                out = conv(x, g, wg)
                assert out.is_meta and out.shape == (N, width) and out.dtype == torch.float64
    name = type(conv).__name__
    with pytest.raises(ValueError, match=f"^{name}: edge_weight must have shape"):
        conv(x, ei, w[:3])
    with pytest.raises(ValueError, match=f"^{name}: x must have shape"):
        conv(x[:, :2], ei)
    model = GCN(EDGES, 4, 3, hidden=5, num_nodes=N).to("meta").eval()
    with torch.no_grad():
        assert model(torch.empty(N, 4, device="meta")).shape == (N, 3)
