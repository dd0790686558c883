"""The node-classification graph type shared by the graph loaders and generators."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["GraphData", "index_masks"]


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


def index_masks(num_nodes: int, *parts) -> tuple[torch.Tensor, ...]:
    """One bool ``[num_nodes]`` mask per part, True at the part's nodes (a tensor of node ids,
    a bool mask or a slice): ``train_mask, val_mask, test_mask = index_masks(n, tr, va, te)``."""
    masks = []
    for part in parts:
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[part] = True
        masks.append(m)
    return tuple(masks)
