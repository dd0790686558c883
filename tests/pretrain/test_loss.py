"""NT-Xent against hand-computed small cases, and its guards."""

from __future__ import annotations

import math

import pytest
import torch

from sparselth.pretrain import NTXentLoss, nt_xent

# Two pairs in the plane. Cosines: cos(z1_0, z2_0) = 1, cos(z1_0, z2_1) = 1/sqrt2,
# cos(z1_1, z2_0) = 0, cos(z1_1, z2_1) = 1/sqrt2, cos(z1_0, z1_1) = 0, cos(z2_0, z2_1) = 1/sqrt2.
Z1 = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)     # norms do not matter
Z2 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
R2 = math.sqrt(2.0)


def test_reference_variant_by_hand():
    # tau = 0.5: s = cos / 0.5.  l_0 = -(2 - sqrt2) (positive 2, one negative sqrt2),
    # l_1 = -(sqrt2 - 0): the mean is exactly -1.
    l0 = -(2.0 - R2)
    l1 = -(R2 - 0.0)
    assert (l0 + l1) / 2 == pytest.approx(-1.0)
    got = nt_xent(Z1, Z2, temperature=0.5, variant="reference")
    assert float(got) == pytest.approx(-1.0, abs=1e-12)


def test_symmetric_variant_by_hand():
    # tau = 0.5; four anchors, each against the three other views.
    e = math.e
    a0 = math.log(1 + e**2 + e**R2) - 2          # anchor z1_0: positive z2_0 (2)
    a1 = math.log(2 + e**R2) - R2                # anchor z1_1: positive z2_1 (sqrt2)
    b0 = math.log(e**2 + 1 + e**R2) - 2          # anchor z2_0: positive z1_0 (2)
    b1 = math.log(3.0)                           # anchor z2_1: all three at sqrt2
    want = (a0 + a1 + b0 + b1) / 4
    assert want == pytest.approx(0.6366709064811061)
    got = nt_xent(Z1, Z2, temperature=0.5, variant="symmetric")
    assert float(got) == pytest.approx(want, abs=1e-12)


def test_three_pairs_reference_against_the_formula_and_temperature():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    # cos rows i (z1) vs columns j (z2), by hand:
    cos = [[1 / R2, 0.0, -1.0], [1 / R2, 1.0, 0.0], [1.0, 1 / R2, -1 / R2]]
    for tau in (0.2, 1.0):
        want = sum(-cos[i][i] / tau + math.log(sum(math.exp(cos[i][j] / tau)
                                                   for j in range(3) if j != i))
                   for i in range(3)) / 3
        assert float(nt_xent(z1, z2, tau)) == pytest.approx(want, abs=1e-12)
    assert float(NTXentLoss(0.2)(z1, z2)) == pytest.approx(float(nt_xent(z1, z2, 0.2)))


def test_no_nan_with_zero_rows_or_large_logits():
    z = torch.zeros(4, 8, requires_grad=True)
    for variant in ("reference", "symmetric"):
        loss = nt_xent(z, torch.randn(4, 8), temperature=0.01, variant=variant)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_bad_arguments():
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, temperature=0)
    with pytest.raises(ValueError, match="variant"):
        nt_xent(z, z, variant="simclr2")
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(z[:1], z[:1])
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z, z[:2])
    with pytest.raises(TypeError, match="z1"):
        nt_xent([[1.0]], z)
    with pytest.raises(ValueError, match="variant"):
        NTXentLoss(variant="x")
