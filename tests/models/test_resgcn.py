"""ResGCN (the GFN/GraphCL semi-supervised backbone) on a block-diagonal batch: against a dense
per-graph reference, invariance to node order, gradients to every weight, self loops, bad
input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparselth.models import ResGCN
from sparselth.sparse import CSR, Graph, GraphBatch

from ..pretrain._batches import random_batch


def _bn(x, bn):
    return (x - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps) * \
        bn.weight.double() + bn.bias.double()


def _graph_reference(model, g: Graph, head: str):
    """One graph at a time, eval mode, dense D^-1/2 (A - diag + I) D^-1/2 with D the out-degree
    (column sums, rows are targets) plus one."""
    A = g.adj.to_dense(torch.float64)
    A = A - torch.diag(torch.diag(A))
    n = A.shape[0]
    Ahat = A + torch.eye(n, dtype=torch.float64)
    dis = Ahat.sum(0).pow(-0.5)
    An = dis[:, None] * Ahat * dis[None, :]
    x = _bn(g.x.double(), model.bn_feat)
    x = F.relu(x @ model.conv_feat.weight.double().t() + model.conv_feat.bias.double())
    for bn, conv in zip(model.bns_conv, model.convs):
        x = F.relu(An @ (_bn(x, bn) @ conv.lin.weight.double().t()) + conv.bias.double())
    h = x.sum(0, keepdim=True)
    for bn, lin in zip(model.bns_fc, model.lins):
        h = F.relu(_bn(h, bn) @ lin.weight.double().t() + lin.bias.double())
    h = _bn(h, model.bn_hidden)
    if head == "cl":
        return model.proj_head(h)
    return F.log_softmax(model.lin_class(h), -1)


def _trained_stats(model, b):
    """A few training-mode passes so the BN running statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(b)
    model.eval()


@pytest.mark.parametrize("head", ["cls", "cl"])
def test_matches_per_graph_reference(head):
    torch.manual_seed(0)
    b = random_batch([5, 1, 7, 3], num_features=4, seed=3, self_loops=True)
    model = ResGCN(4, 3, hidden=16).double()
    bd = GraphBatch(b.x.double(), b.adj, b.ptr, b.y)
    _trained_stats(model, bd)
    with torch.no_grad():
        out = model(bd) if head == "cls" else model.forward_cl(bd)
        ref = torch.cat([_graph_reference(model, bd.graph(i), head)
                         for i in range(bd.num_graphs)])
    assert out.shape == ((4, 3) if head == "cls" else (4, 16))
    torch.testing.assert_close(out, ref)


def test_invariant_to_node_order_and_graph_order():
    torch.manual_seed(1)
    b = random_batch([6, 4, 5], num_features=3, seed=4)
    model = ResGCN(3, 2, hidden=8).double()
    bd = GraphBatch(b.x.double(), b.adj, b.ptr, b.y)
    _trained_stats(model, bd)
    graphs = bd.to_graphs()
    g = torch.Generator().manual_seed(0)
    permuted = []
    for gr in graphs:
        p = torch.randperm(gr.num_nodes, generator=g)
        inv = torch.empty_like(p)
        inv[p] = torch.arange(p.numel())
        ei = gr.adj.to_edge_index()
        permuted.append(Graph(gr.x[p], CSR.from_edge_index(inv[ei], gr.num_nodes), gr.y))
    with torch.no_grad():
        a = model(bd)
        c = model(GraphBatch.from_graphs(permuted[::-1]))
    torch.testing.assert_close(c.flip(0), a)


def test_every_weight_gets_a_gradient_in_training():
    torch.manual_seed(2)
    b = random_batch([5, 6, 4, 7], num_features=3, seed=5)
    model = ResGCN(3, 2, hidden=8)
    model.train()
    loss = F.nll_loss(model(b), b.y) + model.forward_cl(b).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert set(model.encoder_state()) == {k for k in model.state_dict()
                                          if not k.startswith("lin_class.")}


def test_initialisation_and_layout_follow_the_reference():
    model = ResGCN(10, 2)
    assert model.hidden == 128 and len(model.convs) == 3 and len(model.lins) == 1
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            assert (m.weight == 1).all() and torch.allclose(m.bias, torch.full_like(m.bias, 1e-4))
    assert all((c.bias == 0).all() for c in model.convs)
    assert model.proj_head[0].weight.shape == (128, 128)


def test_no_edge_norm_sums_neighbours():
    torch.manual_seed(3)
    b = random_batch([4, 5], num_features=2, seed=6)
    model = ResGCN(2, 2, hidden=4, edge_norm=False).eval()
    conv = model.convs[0]
    x = torch.randn(b.num_nodes, 4)
    A = b.adj.to_dense()
    torch.testing.assert_close(model._conv(conv, x, b), A @ conv.lin(x) + conv.bias)


def test_single_graph_batches_and_bad_input():
    model = ResGCN(2, 2, hidden=4)
    g = Graph(torch.ones(3, 2), CSR.from_edge_index(torch.tensor([[0, 1], [1, 2]]), 3))
    out = model(GraphBatch.from_graphs([g]))       # one graph: BN of the pooled row falls back
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="features"):
        model(GraphBatch.from_graphs([Graph(torch.ones(3, 5), g.adj)]))
    with pytest.raises(TypeError):
        model(torch.ones(3, 2))
    with pytest.raises(ValueError, match="hidden"):
        ResGCN(2, 2, hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        ResGCN(2, 2, dropout=1.5)
