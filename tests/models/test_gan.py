"""The GAN-ticket models: the paper's sizes (prunable weight counts of PAPERS.md §2), shapes at
CPU sizes, the reference initialisation, and refused inputs."""

from __future__ import annotations

import pytest
import torch

from sparselth.models import (CycleGANGenerator, PatchGANDiscriminator, SNGANDiscriminator,
                              SNGANGenerator, gan_init, prunable_weights)


pytestmark = pytest.mark.usefixtures("one_thread")


def _prunable(model) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in prunable_weights(model))


def test_paper_sizes():
    assert _prunable(SNGANGenerator()) == 3_742_464          # PAPERS.md §2.1
    assert _prunable(SNGANDiscriminator()) == 1_052_416
    assert _prunable(CycleGANGenerator()) == 11_372_928      # §2.5
    g = SNGANGenerator()
    assert g.l1.weight.shape == (4096, 128)
    assert not any(n.startswith("l1") for n in prunable_weights(g))
    assert all("parametrizations.weight.original" in n
               for n in prunable_weights(SNGANDiscriminator()))


def test_cpu_sized_shapes_and_ranges():
    torch.manual_seed(0)
    g = SNGANGenerator(latent_dim=16, ch=8, bottom_width=7, image_size=28, channels=1)
    d = SNGANDiscriminator(ch=8, channels=1)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 1, 28, 28) and float(x.abs().max()) <= 1.0
    assert d(x).shape == (3, 1)
    assert g.sample(2, torch.Generator().manual_seed(1)).shape == (2, 1, 28, 28)
    c = CycleGANGenerator(channels=1, ngf=4, n_res=2)
    y = c(torch.rand(2, 1, 28, 28) * 2 - 1)
    assert y.shape == (2, 1, 28, 28) and float(y.abs().max()) <= 1.0
    assert PatchGANDiscriminator(channels=1, ndf=4).forward(y).shape == (2, 1)


def test_generator_gradients_reach_every_prunable_weight():
    g = SNGANGenerator(latent_dim=8, ch=4, bottom_width=4, image_size=16, channels=3)
    d = SNGANDiscriminator(ch=4)
    (-d(g(torch.randn(4, 8))).mean()).backward()
    params = dict(g.named_parameters())
    for name in prunable_weights(g):
        assert params[name].grad is not None and float(params[name].grad.abs().sum()) > 0, name


def test_reference_initialisation():
    torch.manual_seed(0)
    g = SNGANGenerator(ch=64, bottom_width=4, image_size=16)
    w = g.blocks[0].c1.weight
    bound = (6 / (64 * 9 + 64 * 9)) ** 0.5                    # Xavier-uniform, gain 1
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
    assert float(g.blocks[0].c1.bias.abs().max()) == 0.0
    bn = torch.cat([g.blocks[0].b1.weight, g.blocks[1].b1.weight, g.b5.weight]).detach()
    assert abs(float(bn.mean()) - 1) < 0.01 and 0.01 < float(bn.std()) < 0.03
    d = gan_init(SNGANDiscriminator(ch=16))
    assert float(d.block1.c1.parametrizations.weight.original.abs().max()) <= (6 / (27 + 144)) ** .5


@pytest.mark.parametrize("make, bad", [
    (lambda: SNGANGenerator(latent_dim=8, ch=4, bottom_width=4, image_size=16), torch.randn(2, 9)),
    (lambda: SNGANDiscriminator(ch=4, channels=1), torch.randn(2, 3, 8, 8)),
    (lambda: CycleGANGenerator(channels=1, ngf=4, n_res=1), torch.randn(1, 1, 10, 10)),
    (lambda: PatchGANDiscriminator(channels=3, ndf=4), torch.randn(1, 1, 32, 32)),
])
def test_wrong_inputs_are_refused(make, bad):
    with pytest.raises(ValueError):
        make()(bad)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="power of two"):
        SNGANGenerator(bottom_width=3, image_size=32)
    with pytest.raises(ValueError, match="ch"):
        SNGANDiscriminator(ch=0)
    with pytest.raises(ValueError, match="n_res"):
        CycleGANGenerator(n_res=-1)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 8, 7, 7), (3, 1, 1, 1)])
def test_nearest_upsampling_is_f_interpolate_bit_for_bit(shape):
    import torch.nn.functional as F

    from sparselth.models import upsample_nearest2x

    x = torch.randn(*shape, dtype=torch.float64)
    y = upsample_nearest2x(x)
    assert y.is_contiguous() and torch.equal(y, F.interpolate(x, scale_factor=2, mode="nearest"))
    x = torch.randn(*shape, requires_grad=True)     # and it trains (gradients flow)
    upsample_nearest2x(x).sum().backward()
    assert torch.equal(x.grad, torch.full(shape, 4.0))
