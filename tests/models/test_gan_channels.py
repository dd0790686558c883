"""Channel tickets of the SNGAN generator: the pruned small generator computes what the big
one computes with the removed hidden channels masked, the ranking keeps the right channels,
keep_for_macs hits a MAC target, and old state dicts still load."""

from __future__ import annotations

import copy

import pytest
import torch

import sparselth
from sparselth.metrics import count_macs
from sparselth.models import (SNGANGenerator, channel_masks, channel_prune_generator,
                              hidden_channels, keep_for_macs, prunable_weights)
from sparselth.prune import channel_scores, keep_channels, kept_count

pytestmark = pytest.mark.usefixtures("one_thread")


def _trained_like(seed: int = 0) -> SNGANGenerator:
    """A tiny float64 G with spread BN scales and non-trivial running statistics."""
    torch.manual_seed(seed)
    G = SNGANGenerator(latent_dim=8, ch=12, bottom_width=2, image_size=8, channels=3).double()
    with torch.no_grad():
        for b in G.blocks:
            b.b2.weight.copy_(torch.randn(12, dtype=torch.float64))
            b.b2.bias.normal_()
            b.b2.running_mean.normal_()
            b.b2.running_var.uniform_(0.5, 2.0)
            b.c1.bias.normal_()
    return G


def _masked(G, masks):
    ref = copy.deepcopy(G)
    with torch.no_grad():
        for name, m in masks.items():
            ref.get_parameter(name).mul_(m.to(torch.float64))
    return ref


@pytest.mark.parametrize("score", ["bn", "l1"])
@pytest.mark.parametrize("train", [False, True])
def test_pruned_generator_equals_the_masked_big_one(score, train):
    G = _trained_like()
    G.train(train)
    small = channel_prune_generator(G, 0.5, score)
    assert small.hidden == [6, 6] and small.training == train
    assert [tuple(b.c1.weight.shape) for b in small.blocks] == [(6, 12, 3, 3)] * 2
    assert [tuple(b.c2.weight.shape) for b in small.blocks] == [(12, 6, 3, 3)] * 2
    ref = _masked(G, channel_masks(G, hidden_channels(G, 0.5, score)))
    ref.train(train)
    z = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = small(z), ref(z)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # and it is not simply the unpruned generator
    with torch.no_grad():
        assert (G(z) - want).abs().max() > 1e-3


def test_ranking_keeps_the_largest_scores():
    G = _trained_like()
    gamma = G.blocks[0].b2.weight.detach().abs()
    kept = hidden_channels(G, 0.25, "bn")[0]
    assert kept.tolist() == sorted(torch.topk(gamma, 3).indices.tolist())
    l1 = G.blocks[1].c1.weight.detach().abs().sum((1, 2, 3))
    kept = hidden_channels(G, 0.25, "l1")[1]
    assert kept.tolist() == sorted(torch.topk(l1, 3).indices.tolist())
    # ties keep the lower index; at least one channel
    assert keep_channels(torch.tensor([1.0, 2.0, 2.0, 2.0, 0.5]), 0.4).tolist() == [1, 2]
    assert kept_count(10, 0.01) == 1 and kept_count(10, 0.25) == 3 and kept_count(10, 1.0) == 10
    assert torch.equal(channel_scores(G.blocks[0].b2, "bn"), gamma.double())


def test_channel_masks_are_a_ticket_with_the_small_generator_macs():
    G = _trained_like().float()
    small = channel_prune_generator(G, 1 / 3)
    masks = channel_masks(G, hidden_channels(G, 1 / 3))
    z = torch.zeros(1, 8)
    assert count_macs(G, z, masks=masks)["total"]["macs"] == \
        count_macs(small, z)["total"]["macs_dense"]
    assert set(masks) <= set(prunable_weights(G))
    ticket = sparselth.Ticket.from_model(G, masks)      # a ticket of G itself
    assert ticket.sparsity()["overall"] > 0


def test_keep_for_macs_matches_an_unstructured_ticket():
    torch.manual_seed(0)
    G = SNGANGenerator(latent_dim=8, ch=16, bottom_width=2, image_size=8, channels=3)
    z = torch.zeros(1, 8)
    masks = sparselth.prune.magnitude(G, 0.7, include=prunable_weights(G))
    target = int(count_macs(G, z, masks=masks)["total"]["macs"])
    keep = keep_for_macs(G, target)
    got = count_macs(channel_prune_generator(G, keep), z)["total"]["macs_dense"]
    # one hidden channel in every block changes the MACs by at most this step
    step = sum(count_macs(G, z)["layers"][f"blocks.{i}.{c}"]["macs_dense"] // 16
               for i in range(2) for c in ("c1", "c2"))
    assert abs(got - target) <= step // 2
    assert keep_for_macs(G, int(count_macs(G, z)["total"]["macs_dense"])) == 1.0
    with pytest.raises(ValueError, match="target_macs"):
        keep_for_macs(G, 10)
    with pytest.raises(ValueError, match="target_macs"):
        keep_for_macs(G, 0)


def test_hidden_widths_and_old_state_dicts():
    torch.manual_seed(0)
    old = SNGANGenerator(latent_dim=8, ch=6, bottom_width=2, image_size=8)
    new = SNGANGenerator(latent_dim=8, ch=6, bottom_width=2, image_size=8, hidden=6)
    new.load_state_dict(old.state_dict())            # the names did not change
    mixed = SNGANGenerator(latent_dim=8, ch=6, bottom_width=2, image_size=8, hidden=[2, 5])
    assert [b.b2.num_features for b in mixed.blocks] == [2, 5]
    assert mixed(torch.randn(2, 8)).shape == (2, 3, 8, 8)
    for bad in ([2], 0, [2, 0], "4"):
        with pytest.raises(ValueError, match="hidden"):
            SNGANGenerator(latent_dim=8, ch=6, bottom_width=2, image_size=8, hidden=bad)


def test_refused_inputs():
    G = _trained_like()
    with pytest.raises(ValueError, match="score"):
        channel_prune_generator(G, 0.5, score="l2")
    with pytest.raises(ValueError, match="keep"):
        channel_prune_generator(G, 0.0)
    with pytest.raises(TypeError, match="G"):
        channel_prune_generator(torch.nn.Linear(2, 2), 0.5)
    masked = copy.deepcopy(G)
    sparselth.prune.apply(masked, channel_masks(G, hidden_channels(G, 0.5)))
    with pytest.raises(ValueError, match="remove"):
        channel_prune_generator(masked, 0.5)
