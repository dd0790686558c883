"""``sparselth.compile`` on GAN generator tickets: the SNGAN generator (nearest-neighbour
upsampling between layers, a 1x1 shortcut, BatchNorm) and the CycleGAN generator
(reflection padding, instance norm, residual blocks, ConvTranspose2d upsampling), pruned by
global magnitude over their conv weights as GAN IMP prunes them; the compiled output must
equal the masked dense model's."""

from __future__ import annotations

import copy

import pytest
import torch

import sparselth
from sparselth.models import CycleGANGenerator, SNGANGenerator, prunable_weights

from ._tickets import FAST


def _ticket(G, sparsity: float):
    masks = sparselth.prune.magnitude(G, sparsity, include=prunable_weights(G))
    return sparselth.Ticket.from_model(G, masks)


def _masked_reference(G, ticket, x):
    ref = ticket.apply_to(copy.deepcopy(G))
    sparselth.prune.remove(ref)
    with torch.no_grad():
        return ref.eval()(x)


@pytest.mark.parametrize("sparsity", [0.7, 0.9])
def test_sngan_generator_ticket_compiles_exactly(sparsity):
    torch.manual_seed(0)
    G = SNGANGenerator(latent_dim=16, ch=32, bottom_width=4, image_size=16).eval()
    with torch.no_grad():  # running statistics that are not the identity
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ticket = _ticket(G, sparsity)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    compiled, report = sparselth.compile(G, ticket, example_inputs=z, **FAST)
    convs = [n for n in prunable_weights(G)]
    assert {f"{n}.weight" for n in report.routes} >= set(convs)
    assert any(r != "dense" for r in report.routes.values())     # a sparse route was taken
    with torch.no_grad():
        got = compiled(z)
    want = _masked_reference(G, ticket, z)
    assert got.shape == (3, 3, 16, 16)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert report.end_to_end["max_rel_error"] <= 1e-4
    assert report.end_to_end["promised_speedup"] > 1.5
    # other noise gives other images, still the masked model's
    z2 = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(compiled(z2), _masked_reference(G, ticket, z2),
                                   rtol=1e-4, atol=1e-5)


def test_cyclegan_generator_ticket_compiles_exactly():
    torch.manual_seed(0)
    G = CycleGANGenerator(channels=3, ngf=8, n_res=2).eval()
    ticket = _ticket(G, 0.8)
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    compiled, report = sparselth.compile(G, ticket, example_inputs=x, **FAST)
    transposed = [n for n, m in G.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == 2 and all(n in report.routes for n in transposed)
    with torch.no_grad():
        got = compiled(x)
    torch.testing.assert_close(got, _masked_reference(G, ticket, x), rtol=1e-4, atol=1e-5)
    assert got.shape == x.shape
    # a forced sparse route on the upsampling layers is exact too
    compiled, report = sparselth.compile(G, ticket, example_inputs=x,
                                         routes={n: "csr" for n in transposed}, **FAST)
    assert all(report.routes[n] == "csr" for n in transposed)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _masked_reference(G, ticket, x),
                                   rtol=1e-4, atol=1e-5)
