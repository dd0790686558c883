"""The DGI-style objective of node-level GraphCL against a case computed by hand, and the
discriminator against ``nn.Bilinear``."""

from __future__ import annotations

import math

import pytest
import torch

from sparselth.pretrain import (BilinearDiscriminator, dgi_logits, dgi_loss, graphcl_node_loss,
                                summary)


def _sig(v):
    return 1 / (1 + math.exp(-v))


def _disc():
    d = BilinearDiscriminator(2)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]))
        d.bias.fill_(0.5)
    return d.double()


H = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)       # original graph
H_NEG = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)   # shuffled features
V1 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)                  # view 1: one node
V2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)      # view 2: two nodes


def _bce(logits, targets):
    return sum(-(t * math.log(_sig(x)) + (1 - t) * math.log(1 - _sig(x)))
               for x, t in zip(logits, targets)) / len(logits)


def _hand_logits(c):
    # D(h, c) = h . (W c) + b, W = diag(1, 2), b = 0.5
    wc = (c[0], 2 * c[1])
    return [h0 * wc[0] + h1 * wc[1] + 0.5 for h0, h1 in H.tolist() + H_NEG.tolist()]


def test_graphcl_node_loss_matches_hand_computation():
    c1 = (_sig(2.0), _sig(0.0))             # sigmoid(mean of V1)
    c2 = (_sig(0.0), _sig(1.0))             # sigmoid(mean of V2)
    l1, l2 = _hand_logits(c1), _hand_logits(c2)
    targets = [1, 1, 0, 0]
    summed = _bce([a + b for a, b in zip(l1, l2)], targets)
    both = _bce(l1, targets) + _bce(l2, targets)
    disc = _disc()
    assert summary(V1).tolist() == pytest.approx(list(c1))
    assert dgi_logits(disc, summary(V1), H, H_NEG).tolist() == pytest.approx(l1)
    got = graphcl_node_loss(disc, H, H_NEG, V1, V2)
    assert float(got.detach()) == pytest.approx(summed, rel=1e-12)
    got = graphcl_node_loss(disc, H, H_NEG, V1, V2, combine="losses")
    assert float(got.detach()) == pytest.approx(both, rel=1e-12)
    c = (_sig(0.5), _sig(0.5))              # plain DGI: the summary of H itself
    assert float(dgi_loss(disc, H, H_NEG).detach()) == pytest.approx(_bce(_hand_logits(c), targets))


def test_discriminator_is_nn_bilinear():
    torch.manual_seed(0)
    disc = BilinearDiscriminator(5)
    ref = torch.nn.Bilinear(5, 5, 1)
    with torch.no_grad():
        ref.weight.copy_(disc.weight)
        ref.bias.copy_(torch.tensor([0.3]))
        disc.bias.fill_(0.3)
    h, c = torch.randn(7, 5), torch.randn(5)
    want = ref(h, c.expand_as(h)).squeeze(1)
    torch.testing.assert_close(disc(h, c), want)
    assert float(BilinearDiscriminator(4).bias) == 0.0


def test_gradients_reach_every_input():
    disc = _disc()
    hs = [t.clone().requires_grad_(True) for t in (H, H_NEG, V1, V2)]
    graphcl_node_loss(disc, *hs).backward()
    assert all(t.grad is not None and bool(t.grad.abs().sum() > 0) for t in hs)
    assert disc.weight.grad is not None and disc.bias.grad is not None


def test_bad_inputs():
    disc = _disc()
    with pytest.raises(ValueError, match="combine"):
        graphcl_node_loss(disc, H, H_NEG, V1, V2, combine="mean")
    with pytest.raises(ValueError, match="same shape"):
        graphcl_node_loss(disc, H, H_NEG[:1], V1, V2)
    with pytest.raises(ValueError, match="h must have shape"):
        disc(torch.ones(3, 4, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="N >= 1"):
        summary(torch.ones(0, 2))
    with pytest.raises(ValueError, match="dim"):
        BilinearDiscriminator(0)
