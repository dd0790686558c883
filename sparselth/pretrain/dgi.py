"""The DGI-style objective of node-level GraphCL (You et al. 2020,
``unsupervised_Cora_Citeseer``; Veličković et al., "Deep Graph Infomax", 2019).

With node embeddings ``h`` of the original graph (positives), ``h~`` of the same graph with
row-shuffled features (negatives) and a summary ``c = sigmoid(mean_i h_i)``, the bilinear
discriminator scores ``D(h_i, c) = h_i^T W c + b``; :func:`dgi_logits` returns
``[D(h_1, c) .. D(h_N, c), D(h~_1, c) .. D(h~_N, c)]`` and the target is ``N`` ones then ``N``
zeros (binary cross-entropy on logits, mean over the ``2N`` entries).

Node-level GraphCL (:func:`graphcl_node_loss`) takes the summaries ``c1``, ``c2`` of two
augmented views instead of the original graph's and contrasts each against the original
graph's positives and negatives; ``combine="logits"`` (the reference, ``ret = ret1 + ret2``
then one BCE) adds the two logit vectors before the BCE, ``combine="losses"`` adds the two
BCEs. Plain DGI (:func:`dgi_loss`) takes the summary of ``h`` itself.

Example::

    >>> disc = BilinearDiscriminator(512)
    >>> loss = graphcl_node_loss(disc, h, h_shuf, h_view1, h_view2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BilinearDiscriminator", "summary", "dgi_logits", "dgi_targets", "dgi_loss",
           "graphcl_node_loss", "COMBINES"]

#: how :func:`graphcl_node_loss` joins the two views
COMBINES = ("logits", "losses")


class BilinearDiscriminator(nn.Module):
    """``D(h, c) = h W c + b`` for every row of ``h`` (``(N, d)``) against one summary ``c``
    (``(d,)``); ``weight`` ``(1, d, d)`` and ``bias`` ``(1,)`` as ``nn.Bilinear(d, d, 1)``,
    Xavier-uniform weight and zero bias (the DGI code's init). ``W c`` is formed first, so a
    call costs ``d^2 + N d`` multiply-adds."""

    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"BilinearDiscriminator: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(1, dim, dim))
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"BilinearDiscriminator: h must have shape (N, {self.dim}), got "
                             f"{tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__}")
        if not isinstance(c, Tensor) or c.shape != (self.dim,):
            raise ValueError(f"BilinearDiscriminator: c must have shape ({self.dim},), got "
                             f"{tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__}")
        return h @ (self.weight[0] @ c) + self.bias

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def summary(h: Tensor) -> Tensor:
    """``sigmoid(mean over nodes of h)``: DGI's readout, ``(d,)`` from ``(N, d)``."""
    if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[0] == 0:
        raise ValueError("summary: h must be a 2-D tensor (N, d) with N >= 1")
    return torch.sigmoid(h.mean(0))


def dgi_logits(disc: BilinearDiscriminator, c: Tensor, h_pos: Tensor, h_neg: Tensor) -> Tensor:
    """``(N_pos + N_neg,)``: the discriminator's logits of the positives, then the negatives."""
    return torch.cat([disc(h_pos, c), disc(h_neg, c)])


def dgi_targets(n_pos: int, n_neg: int, like: Tensor) -> Tensor:
    """``n_pos`` ones then ``n_neg`` zeros, dtype and device of ``like``."""
    return torch.cat([torch.ones(n_pos, dtype=like.dtype, device=like.device),
                      torch.zeros(n_neg, dtype=like.dtype, device=like.device)])


def _bce(logits: Tensor, n_pos: int, n_neg: int) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, dgi_targets(n_pos, n_neg, logits))


def dgi_loss(disc: BilinearDiscriminator, h: Tensor, h_neg: Tensor) -> Tensor:
    """Deep Graph Infomax: BCE of ``dgi_logits(disc, summary(h), h, h_neg)``."""
    return _bce(dgi_logits(disc, summary(h), h, h_neg), h.shape[0], h_neg.shape[0])


def graphcl_node_loss(disc: BilinearDiscriminator, h: Tensor, h_neg: Tensor, h_view1: Tensor,
                      h_view2: Tensor, combine: str = "logits") -> Tensor:
    """Node-level GraphCL: the summaries of ``h_view1`` and ``h_view2`` (the two augmented
    views, any node counts) each scored against the original graph's ``h`` (positives) and
    ``h_neg`` (shuffled features, negatives); ``combine`` joins the two (module docstring).
    A 0-d tensor."""
    if combine not in COMBINES:
        raise ValueError(f"graphcl_node_loss: combine must be one of {COMBINES}, got "
                         f"{combine!r}")
    if h.shape != h_neg.shape:
        raise ValueError(f"graphcl_node_loss: h and h_neg must have the same shape, got "
                         f"{tuple(h.shape)} and {tuple(h_neg.shape)}")
    l1 = dgi_logits(disc, summary(h_view1), h, h_neg)
    l2 = dgi_logits(disc, summary(h_view2), h, h_neg)
    n = h.shape[0]
    if combine == "logits":
        return _bce(l1 + l2, n, n)
    return _bce(l1, n, n) + _bce(l2, n, n)
