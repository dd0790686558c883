"""Graph data: real datasets read from a local folder and synthetic generators.

Real datasets live in a local directory given as an argument or through the environment
variable ``SPARSELTH_DATA`` (in this repository: ``../shared/datasets``). Synthetic generators
are deterministic by seed and cover sizes the real data does not.

- :func:`load_planetoid` / :func:`load_planetoid_graph`: Cora, CiteSeer, PubMed (public split).
- :func:`power_law_graph`: heavy-tailed directed graphs up to millions of nodes, vectorised.
- :func:`prune_edges_random`: keep a random fraction of the edges (of an ``edge_index`` or a CSR).
- :func:`contextual_sbm`: contextual stochastic block model (features + labels + graph).
- :func:`link_split`: link-prediction split (held-out edges that keep components, negatives).
- :mod:`sparselth.data.recsys`: user-item interactions (:class:`Interactions`): LastFM,
  MovieLens-100K, LightGCN's text format, a latent-factor generator, a BPR sampler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GraphData:
    """A node-classification graph.

    Attributes:
        name: dataset name, e.g. ``"cora"``.
        x: node features, float32 ``[N, F]``.
        y: node labels, int64 ``[N]``.
        edge_index: int64 ``[2, E]``; row 0 = source, row 1 = target.
        train_mask, val_mask, test_mask: bool ``[N]``.
        num_classes: number of label classes.
        missing_features: True when some nodes' features are unknown and were filled with
            zeros (PubMed without ``ind.pubmed.allx``); results on such data must say so.
        info: free-form notes (source folder, generator parameters, ...).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    edge_index: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    missing_features: bool = False
    info: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.y.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.size(1))

    @property
    def num_features(self) -> int:
        return int(self.x.size(1))

    def __repr__(self) -> str:
        flag = ", missing_features=True" if self.missing_features else ""
        return (
            f"GraphData(name={self.name!r}, num_nodes={self.num_nodes}, "
            f"num_edges={self.num_edges}, "
            f"num_features={self.num_features}, num_classes={self.num_classes}, "
            f"train/val/test={int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
            f"{int(self.test_mask.sum())}{flag})"
        )


from .planetoid import PlanetoidGraph, load_planetoid, load_planetoid_graph  # noqa: E402
from .synthetic import contextual_sbm, power_law_graph, prune_edges_random  # noqa: E402
from .linkpred import LinkSplit, link_split  # noqa: E402
from .recsys import (  # noqa: E402
    BPRSampler,
    Interactions,
    load_lastfm,
    load_lightgcn_text,
    load_movielens_100k,
    load_recsys,
    split_per_user,
    synthetic_interactions,
)

__all__ = [
    "GraphData",
    "PlanetoidGraph",
    "load_planetoid",
    "load_planetoid_graph",
    "power_law_graph",
    "prune_edges_random",
    "contextual_sbm",
    "LinkSplit",
    "link_split",
    "BPRSampler",
    "Interactions",
    "load_lastfm",
    "load_lightgcn_text",
    "load_movielens_100k",
    "load_recsys",
    "split_per_user",
    "synthetic_interactions",
]
