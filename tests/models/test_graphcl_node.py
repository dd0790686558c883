"""Node-level GraphCL's GCN encoder against a dense reference (dense and CSR features), and
the model's loss against its composition from the pieces."""

from __future__ import annotations

import pytest
import torch

from sparselth import CSR
from sparselth.models import FIRST_LAYER_KEY, GCNNodeEncoder, GraphCLNode
from sparselth.pretrain import graphcl_node_loss


def _graph(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.rand(n, n, generator=g) < 0.35, diagonal=1)
    a = (upper | upper.t()).double()
    r, c = a.nonzero(as_tuple=True)
    return a, CSR.from_coo(r, c, None, (n, n))


def test_encoder_matches_dense_gcn_with_prelu():
    torch.manual_seed(0)
    a, adj = _graph()
    enc = GCNNodeEncoder(6, 4).double()
    with torch.no_grad():
        enc.conv.bias.copy_(torch.randn(4))
        enc.act.weight.fill_(0.1)
    x = torch.rand(9, 6, dtype=torch.float64) * (torch.rand(9, 6) < 0.3)
    a_hat = a + torch.eye(9, dtype=torch.float64)
    d = a_hat.sum(1).rsqrt()
    z = (d[:, None] * a_hat * d[None, :]) @ x @ enc.conv.lin.weight.t() + enc.conv.bias
    want = torch.where(z > 0, z, 0.1 * z)
    torch.testing.assert_close(enc(x, adj), want)
    torch.testing.assert_close(enc(CSR.from_dense(x), adj), want)


def test_init_and_checkpoint_key():
    torch.manual_seed(0)
    m = GraphCLNode(30, 16)
    assert float(m.encoder.conv.bias.abs().sum()) == 0.0
    assert float(m.encoder.act.weight) == pytest.approx(0.25)
    bound = (6 / (30 + 16)) ** 0.5
    assert float(m.encoder.conv.lin.weight.abs().max()) <= bound
    assert m.state_dict()[FIRST_LAYER_KEY].shape == (16, 30)


def test_loss_is_the_objective_of_the_parts():
    torch.manual_seed(1)
    a, adj = _graph(8)
    _, adj2 = _graph(5, seed=3)
    m = GraphCLNode(6, 4, combine="losses").double()
    x = torch.rand(8, 6, dtype=torch.float64)
    xs = x[torch.randperm(8)]
    x2 = torch.rand(5, 6, dtype=torch.float64)
    got = m.loss(x, adj, xs, (x[:8], adj), (x2, adj2))
    e = m.encoder
    want = graphcl_node_loss(m.disc, e(x, adj), e(xs, adj), e(x, adj), e(x2, adj2), "losses")
    torch.testing.assert_close(got, want)
    got.backward()
    assert all(p.grad is not None for p in m.parameters())
    h = m.embed(x, adj)
    assert h.shape == (8, 4) and not h.requires_grad


def test_bad_arguments():
    with pytest.raises(ValueError, match="combine"):
        GraphCLNode(3, combine="sum")
    with pytest.raises(ValueError, match="hidden"):
        GCNNodeEncoder(3, 0)
    with pytest.raises(TypeError, match="adj"):
        GCNNodeEncoder(3, 2)(torch.ones(2, 3), torch.ones(2, 2))
