"""CycleGAN training: the replay buffer's rule, the learning-rate schedule, masks that keep
pruned weights at zero, determinism, and generators that learn a trivial translation."""

from __future__ import annotations

import pytest
import torch

from sparselth.models import CycleGANGenerator, PatchGANDiscriminator, prunable_weights
from sparselth.train import CycleGANTrainConfig, CycleGANTrainer, ReplayBuffer

pytestmark = pytest.mark.usefixtures("one_thread")


def _nets(seed=0):
    torch.manual_seed(seed)
    return {"G_AB": CycleGANGenerator(1, 4, 1), "G_BA": CycleGANGenerator(1, 4, 1),
            "D_A": PatchGANDiscriminator(1, 4, 2), "D_B": PatchGANDiscriminator(1, 4, 2)}


def _domains():
    g = torch.Generator().manual_seed(0)
    a = (-0.5 + 0.05 * torch.randn(16, 1, 12, 12, generator=g)).clamp(-1, 1)
    b = (0.5 + 0.05 * torch.randn(16, 1, 12, 12, generator=g)).clamp(-1, 1)
    return a, b


def test_replay_buffer():
    buf = ReplayBuffer(3, torch.Generator().manual_seed(0))
    x = torch.arange(3.0).reshape(3, 1)
    assert torch.equal(buf.push_and_pop(x), x) and len(buf.images) == 3
    outs = torch.cat([buf.push_and_pop(torch.full((1, 1), 10.0 + i)) for i in range(40)])
    old = outs[outs < 10]
    assert 0 < old.numel() < 40                       # about half come from the pool
    assert set(old.tolist()) <= set(range(3)) | {10.0 + i for i in range(40)}
    assert torch.equal(ReplayBuffer(0).push_and_pop(x), x)


def test_lr_schedule():
    c = CycleGANTrainConfig(iterations=10, decay_start=6, lr=1.0)
    assert [round(c.lr_at(i), 6) for i in (0, 5, 6, 8, 10)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="decay_start"):
        CycleGANTrainConfig(iterations=10, decay_start=11)


def test_masks_and_determinism():
    a, b = _domains()
    cfg = CycleGANTrainConfig(iterations=3, batch_size=2, decay_start=1, buffer_size=2)

    def run():
        nets = _nets()
        gen = torch.Generator().manual_seed(1)
        masks = {k: {n: (torch.rand(p.shape, generator=gen) > 0.5).float()
                     for n, p in nets[k].named_parameters() if n in prunable_weights(nets[k])}
                 for k in ("G_AB", "D_B")}
        tr = CycleGANTrainer(nets, a, b, cfg, masks=masks)
        hist = tr.train(evaluate=lambda nets: {"m": float(nets["G_AB"](a[:2]).mean())},
                        eval_every=2)
        return nets, masks, hist
    n1, masks, h1 = run()
    n2, _, h2 = run()
    assert h1 == h2 and [h["iteration"] for h in h1] == [2, 3]
    for k, mk in masks.items():
        params = {n: p.detach() for n, p in n1[k].named_parameters()}
        for n, m in mk.items():
            assert float(params[n][m == 0].abs().sum()) == 0.0, (k, n)
        for (n, p), q in zip(n1[k].state_dict().items(), n2[k].state_dict().values()):
            assert torch.equal(p, q), n


def test_learns_a_constant_shift():
    a, b = _domains()
    nets = _nets()
    tr = CycleGANTrainer(nets, a, b, CycleGANTrainConfig(iterations=60, batch_size=4, lr=2e-3,
                                                         decay_start=60, seed=0))
    with torch.no_grad():
        before = float((nets["G_AB"](a) - 0.5).abs().mean())
    tr.train()
    nets["G_AB"].eval()
    with torch.no_grad():
        after = float((nets["G_AB"](a) - 0.5).abs().mean())
    assert after < 0.5 * before


def test_bad_arguments():
    a, b = _domains()
    with pytest.raises(ValueError, match="keys"):
        CycleGANTrainer({"G_AB": None}, a, b)
    with pytest.raises(ValueError, match="one image shape"):
        CycleGANTrainer(_nets(), a, b[:, :, :8, :8])
    with pytest.raises(ValueError, match="unknown net"):
        CycleGANTrainer(_nets(), a, b, masks={"G": {}})
