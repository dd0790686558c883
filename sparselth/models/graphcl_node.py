"""The encoder of node-level GraphCL on Cora/CiteSeer (You et al. 2020,
``unsupervised_Cora_Citeseer``; DGI's encoder): one :class:`~sparselth.nn.GCNConv`
``x -> PReLU(D^-1/2 (A + I) D^-1/2 x W^T + b)`` of width 512, Xavier-uniform ``W``, zero
bias, PReLU with one slope (0.25 at start). :class:`GraphCLNode` adds the bilinear
discriminator of :mod:`sparselth.pretrain.dgi` and computes the objective from the original
graph, the shuffled-feature graph and two augmented views.

Its ``conv.lin.weight`` ``(hidden, in_dim)`` is what a pre-trained graph lottery ticket
loads into the first layer of :class:`~sparselth.models.GCN` (``conv1.lin.weight``, same
shape for hidden 512): :data:`FIRST_LAYER_KEY`.

Example::

    >>> model = GraphCLNode(data.num_features)
    >>> loss = model.loss(x, adj, x_shuffled, (x1, adj1), (x2, adj2))
    >>> h = model.embed(x, adj)                      # (N, 512), frozen
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor, nn

from ..nn.graph import GCNConv
from ..pretrain.dgi import COMBINES, BilinearDiscriminator, graphcl_node_loss
from ..sparse.csr import CSR

__all__ = ["GCNNodeEncoder", "GraphCLNode", "FIRST_LAYER_KEY"]

#: the key of the encoder's GCN weight in a :class:`GraphCLNode` state dict
FIRST_LAYER_KEY = "encoder.conv.lin.weight"

Features = Union[Tensor, CSR]


class GCNNodeEncoder(nn.Module):
    """One GCN layer (self loops, symmetric normalisation, bias) and PReLU: ``(N, hidden)``
    node embeddings of dense or CSR features ``x`` on the pattern ``adj`` (rows = targets)."""

    def __init__(self, in_dim: int, hidden: int = 512):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GCNNodeEncoder: {name} must be a positive int, got {v!r}")
        self.in_dim, self.hidden = in_dim, hidden
        self.conv = GCNConv(in_dim, hidden, add_self_loops="all", bias=True)   # DGI: A + I
        self.act = nn.PReLU()
        nn.init.xavier_uniform_(self.conv.lin.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Features, adj: CSR) -> Tensor:
        if not isinstance(adj, CSR):
            raise TypeError(f"GCNNodeEncoder: adj must be a sparselth.CSR, got "
                            f"{type(adj).__name__}")
        return self.act(self.conv(x, adj))


class GraphCLNode(nn.Module):
    """:class:`GCNNodeEncoder` plus a :class:`~sparselth.pretrain.BilinearDiscriminator`;
    :meth:`loss` is node-level GraphCL's objective, ``combine`` as in
    :func:`~sparselth.pretrain.graphcl_node_loss` (``"logits"``: the reference)."""

    def __init__(self, in_dim: int, hidden: int = 512, combine: str = "logits"):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"GraphCLNode: combine must be one of {COMBINES}, got {combine!r}")
        self.combine = combine
        self.encoder = GCNNodeEncoder(in_dim, hidden)
        self.disc = BilinearDiscriminator(hidden)

    def forward(self, x: Features, adj: CSR) -> Tensor:
        """Node embeddings ``(N, hidden)`` (with autograd)."""
        return self.encoder(x, adj)

    def loss(self, x: Features, adj: CSR, x_shuffled: Features, view1: Tuple[Features, CSR],
             view2: Tuple[Features, CSR]) -> Tensor:
        """The objective: ``view1``/``view2`` are ``(features, adj)`` of the augmented views;
        ``x_shuffled`` the row-shuffled features on the original ``adj`` (negatives)."""
        h = self.encoder(x, adj)
        h_neg = self.encoder(x_shuffled, adj)
        return graphcl_node_loss(self.disc, h, h_neg, self.encoder(*view1),
                                 self.encoder(*view2), self.combine)

    @torch.no_grad()
    def embed(self, x: Features, adj: CSR) -> Tensor:
        """Frozen node embeddings ``(N, hidden)`` (no autograd, mode unchanged)."""
        return self.encoder(x, adj).detach()
