"""GraphCL's GIN encoder and projection head on a block-diagonal batch: against a dense
per-graph reference, no NaN on empty or single-node graphs, a training step with NT-Xent, and
torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparselth.models import GINSumConv, GraphCLGIN
from sparselth.pretrain import graphcl_views, nt_xent
from sparselth.sparse import CSR, Graph, GraphBatch

from ..pretrain._batches import random_batch


def _dense_reference(model, b):
    """Layer by layer with a dense block adjacency, BN over the batch, per-graph sums."""
    A = b.adj.to_dense(torch.float64)
    x = b.x.double()
    pooled = []
    for conv, bn in zip(model.convs, model.bns):
        w1, b1 = conv.lin1.weight.double(), conv.lin1.bias.double()
        w2, b2 = conv.lin2.weight.double(), conv.lin2.bias.double()
        h = F.relu(F.relu((x + A @ x) @ w1.t() + b1) @ w2.t() + b2)
        mu, var = h.mean(0), h.var(0, unbiased=False)
        x = (h - mu) / torch.sqrt(var + bn.eps) * bn.weight.double() + bn.bias.double()
        pooled.append(torch.stack([x[int(b.ptr[i]):int(b.ptr[i + 1])].sum(0)
                                   for i in range(b.num_graphs)]))
    return torch.cat(pooled, 1)


@pytest.mark.parametrize("in_dim", [3, 40])      # aggregate-first and transform-first paths
def test_encoder_matches_dense_reference(in_dim):
    torch.manual_seed(0)
    b = random_batch([4, 0, 1, 7, 3], num_features=in_dim, seed=2)
    model = GraphCLGIN(in_dim).double()
    h = model.embed(GraphBatch(b.x.double(), b.adj, b.ptr, b.y))
    assert h.shape == (5, 96) and model.embedding_dim == 96
    torch.testing.assert_close(h, _dense_reference(model, b))
    z = model(b)
    assert z.shape == (5, 96)
    assert all(m.bias.abs().sum() == 0 for m in model.proj_head if hasattr(m, "bias"))


def test_no_nan_on_empty_and_single_node_graphs():
    model = GraphCLGIN(2)
    empty = Graph(torch.zeros(0, 2), CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 0))
    single = Graph(torch.ones(1, 2), CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 1))
    for graphs in ([single], [empty, single], [single, single], [empty, single, empty]):
        b = GraphBatch.from_graphs(graphs)
        for train in (True, False):
            model.train(train)
            z = model(b)
            assert z.shape == (len(graphs), 96) and torch.isfinite(z).all()


def test_a_training_step_lowers_nothing_to_nan():
    torch.manual_seed(0)
    b = random_batch([5, 1, 6, 3, 8, 2], num_features=4, seed=3)
    model = GraphCLGIN(4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v1, v2 = graphcl_views(b, "random4", generator=g)
        loss = nt_xent(model(v1), model(v2), temperature=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _PyGStandIn:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_accepts_graph_lists_and_pyg_like_batches():
    model = GraphCLGIN(2).eval()
    b = random_batch([3, 2], num_features=2, seed=1)
    ref = model(b)
    torch.testing.assert_close(model(b.to_graphs()), ref)
    ei = b.adj.to_edge_index().flip(0)                        # PyG's [source, target]
    pyg = _PyGStandIn(x=b.x, edge_index=ei, batch=b.batch, num_graphs=2)
    torch.testing.assert_close(model(pyg), ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden"):
        GraphCLGIN(3, hidden=0)
    with pytest.raises(ValueError, match="readout"):
        GraphCLGIN(3, readout="median")
    with pytest.raises(ValueError, match="in_dim"):
        GINSumConv(0, 3)
    model = GraphCLGIN(3)
    with pytest.raises(ValueError, match="features"):
        model(random_batch([2], num_features=5))
    with pytest.raises(TypeError, match="GraphBatch"):
        model(torch.ones(2, 3))


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    b = random_batch([4, 1, 6, 3], num_features=3, seed=4)
    model = GraphCLGIN(3)
    b.adj.t()                                   # as embed() does before encoding
    f = torch.compile(lambda x: model.encode(x, b.adj, b.ptr), fullgraph=True,
                      backend="aot_eager")
    out = f(b.x)
    torch.testing.assert_close(out, model.embed(b))
    params = [p for n, p in model.named_parameters() if not n.startswith("proj_head")]
    grads = torch.autograd.grad(out.square().sum(), params)
    want = torch.autograd.grad(model.embed(b).square().sum(), params)
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w)
    compiled = torch.compile(model, backend="aot_eager")      # the module, GraphBatch input
    b2 = random_batch([2, 5, 3], num_features=3, seed=5)
    torch.testing.assert_close(compiled(b2), model(b2))
