"""SNGAN training: the losses by hand, the EMA, masks that keep pruned weights at exactly zero
(G and D), determinism and mid-run resume, and a generator that learns a trivial target."""

from __future__ import annotations

import math

import pytest
import torch

from sparselth.models import SNGANDiscriminator, SNGANGenerator, prunable_weights
from sparselth.train import (ParamEMA, SNGANTrainConfig, SNGANTrainer, hinge_d_loss,
                             hinge_g_loss, kd_d_loss)


def _nets(seed=0):
    torch.manual_seed(seed)
    return (SNGANGenerator(latent_dim=8, ch=4, bottom_width=4, image_size=8, channels=1),
            SNGANDiscriminator(ch=4, channels=1))


def _images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


pytestmark = pytest.mark.usefixtures("one_thread")   # small ops: threads only contend

CFG = SNGANTrainConfig(iterations=4, n_critic=2, d_batch=8, g_batch=8, seed=3)


def test_losses_by_hand():
    r, f = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(hinge_d_loss(r, f)) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert float(hinge_g_loss(f)) == pytest.approx(1.0)
    s, t = torch.tensor([0.0]), torch.tensor([math.log(3.0)])      # σ(t) = 0.75
    exact = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(kd_d_loss(s, t)) == pytest.approx(exact)
    assert float(kd_d_loss(t, t)) == pytest.approx(0.0, abs=1e-7)


def test_ema_average_and_swap():
    lin = torch.nn.Linear(2, 1)
    ema = ParamEMA(lin, decay=0.5)
    w0 = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(2.0)
    ema.update(lin)
    with ema.swapped_in(lin):
        assert torch.allclose(lin.weight, w0 + 1.0)
    assert torch.allclose(lin.weight, w0 + 2.0)
    with pytest.raises(ValueError, match="decay"):
        ParamEMA(lin, decay=1.0)


def test_masks_keep_pruned_weights_at_zero():
    G, D = _nets()
    gen = torch.Generator().manual_seed(0)
    gm = {n: (torch.rand(p.shape, generator=gen) > 0.5).float()
          for n, p in G.named_parameters() if n in prunable_weights(G)}
    dm = {n: (torch.rand(p.shape, generator=gen) > 0.3).float()
          for n, p in D.named_parameters() if n in prunable_weights(D)}
    tr = SNGANTrainer(G, D, _images(), CFG, g_masks=gm, d_masks=dm, teacher=_nets(1)[1])
    tr.train()
    for model, masks in ((G, gm), (D, dm)):
        params = {k: p.detach() for k, p in model.named_parameters()}
        for n, m in masks.items():
            assert float(params[n][m == 0].abs().max()) == 0.0, n
            assert float(params[n][m == 1].abs().min()) > 0.0 or m.sum() == 0, n
    ema = tr.ema.avg
    assert all(float(ema[n][m == 0].abs().max()) == 0.0 for n, m in gm.items())


def test_deterministic_and_resumable():
    def run(split):
        G, D = _nets()
        tr = SNGANTrainer(G, D, _images(), CFG)
        if split:
            tr.train(2)
            state = tr.state_dict()
            G2, D2 = _nets(7)                         # other weights: all come from the state
            tr = SNGANTrainer(G2, D2, _images(), CFG)
            tr.load_state_dict(state)
        tr.train(evaluate=lambda g: {"mean": float(g.sample(4, torch.Generator().manual_seed(0))
                                                   .mean())}, eval_every=2)
        return tr
    a, b = run(False), run(True)
    for (n, p), q in zip(a.G.state_dict().items(), b.G.state_dict().values()):
        assert torch.equal(p, q), n
    assert [h["iteration"] for h in a.history] == [2, 4]
    assert a.history[-1] == b.history[-1]


def test_generator_learns_a_constant_image():
    G, D = _nets()
    target = torch.full((64, 1, 8, 8), -0.6)
    tr = SNGANTrainer(G, D, target, SNGANTrainConfig(iterations=150, n_critic=1, d_batch=16,
                                                     g_batch=16, lr=2e-3, ema_decay=0.9,
                                                     seed=0))
    before = float((G.sample(32) - (-0.6)).abs().mean())
    tr.train()
    after = tr.evaluate(lambda g: {"err": float((g.sample(32) + 0.6).abs().mean())})["err"]
    assert after < 0.5 * before


def test_bad_arguments_name_themselves():
    G, D = _nets()
    with pytest.raises(ValueError, match="images"):
        SNGANTrainer(G, D, torch.zeros(4, 8, 8), CFG)
    with pytest.raises(ValueError, match="g_masks"):
        SNGANTrainer(G, D, _images(), CFG, g_masks={"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="n_critic"):
        SNGANTrainConfig(n_critic=0)
    with pytest.raises(TypeError, match="config"):
        SNGANTrainer(G, D, _images(), {"iterations": 1})
