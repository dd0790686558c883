"""NT-Xent, the contrastive loss of GraphCL, in the two forms users meet.

With ``n`` graphs, projected views ``z1``, ``z2`` ``(n, d)`` and ``s_ij = cos(z1_i, z2_j) / tau``:

* ``variant="reference"`` (both GraphCL TU codes, ``loss_cal`` / ``loss_cl``): view-1 anchors
  only, the other graphs' second views as negatives, the positive *not* in the denominator::

      l_i = -log( exp(s_ii) / sum_{j != i} exp(s_ij) ),   loss = mean_i l_i

* ``variant="symmetric"`` (the NT-Xent of the paper's text, as in SimCLR): all ``2n`` views are
  anchors; each anchor's denominator holds every other view (the positive and both views of the
  other graphs)::

      l(a, p) = -log( exp(cos(a, p)/tau) / sum_{v != a} exp(cos(a, v)/tau) ),
      loss = mean over the 2n anchors.

Computed with ``logsumexp`` on normalised rows (a zero row gets cosine 0, never NaN). The
reference codes use ``tau = 0.2`` (unsupervised TU) and ``0.5`` (semi-supervised TU).

Example::

    >>> loss = nt_xent(z1, z2, temperature=0.2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["nt_xent", "NTXentLoss"]

_VARIANTS = ("reference", "symmetric")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.2,
            variant: str = "reference") -> Tensor:
    """NT-Xent of the paired rows of ``z1`` and ``z2`` (``(n, d)``, ``n >= 2``); see the module
    docstring for both variants. Returns a 0-d tensor."""
    fn = "nt_xent"
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, Tensor) or z.dim() != 2 or not z.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating 2-D tensor (n, d)")
    if z1.shape != z2.shape:
        raise ValueError(f"{fn}: z1 and z2 must have the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"{fn}: needs at least 2 pairs (negatives), got n={z1.shape[0]}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
            not temperature > 0:
        raise ValueError(f"{fn}: temperature must be a positive number, got {temperature!r}")
    if variant not in _VARIANTS:
        raise ValueError(f"{fn}: variant must be one of {_VARIANTS}, got {variant!r}")
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    if variant == "reference":
        s = a @ b.t() / temperature                            # (n, n): s_ij
        pos = s.diagonal()
        neg = s.masked_fill(eye, float("-inf"))
        return (torch.logsumexp(neg, 1) - pos).mean()
    z = torch.cat([a, b])                                      # (2n, d)
    s = z @ z.t() / temperature
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=a.device), float("-inf"))
    idx = torch.arange(2 * n, device=a.device)
    pos = s[idx, (idx + n) % (2 * n)]
    return (torch.logsumexp(s, 1) - pos).mean()


class NTXentLoss(torch.nn.Module):
    """Module form of :func:`nt_xent` with a fixed temperature and variant."""

    def __init__(self, temperature: float = 0.2, variant: str = "reference"):
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"NTXentLoss: variant must be one of {_VARIANTS}, got {variant!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
                not temperature > 0:
            raise ValueError(f"NTXentLoss: temperature must be a positive number, got "
                             f"{temperature!r}")
        self.temperature, self.variant = float(temperature), variant

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature, self.variant)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, variant={self.variant!r}"
