"""Node-feature transforms for graph classification: the degree features of the GFN code
(Chen et al. 2019, ``feature_expansion.FeatureExpander``), which GraphCL's semi-supervised TU
protocol uses as ``feat_str="deg+odeg100"``.

:func:`degree_features` appends to every node's features its degree (one raw column) and the
one-hot of ``min(degree, max_degree)`` (``max_degree + 1`` columns). The degree of a node is
the number of stored entries it *sends* (its out-degree: ``torch_geometric.utils.degree`` of
``edge_index[0]`` in the reference; with rows = targets here, the count of its column), which
equals the usual degree on the symmetric TU graphs.

Example::

    >>> ds = with_degree_features(load_tu("PROTEINS", "datasets", use_node_attr=True))
    >>> ds.num_features        # 1 attribute + 3 labels + 1 degree + 101 one-hot
    106
"""

from __future__ import annotations

from typing import Any

import torch

from ..sparse.batch import GraphBatch

__all__ = ["node_degrees", "degree_features", "with_degree_features", "parse_feat_str"]


def node_degrees(batch: GraphBatch) -> torch.Tensor:
    """``(N,)`` int64 out-degree of every node (stored entries per column of ``adj``)."""
    if not isinstance(batch, GraphBatch):
        raise TypeError(f"node_degrees: batch must be a GraphBatch, got {type(batch).__name__}")
    return torch.bincount(batch.adj.col.long(), minlength=batch.num_nodes)


def degree_features(batch: GraphBatch, max_degree: int = 100, raw: bool = True) -> GraphBatch:
    """``batch`` with ``[x, degree, one_hot(min(degree, max_degree))]`` as node features (the
    raw ``degree`` column only when ``raw``), the GFN code's ``deg+odeg<max_degree>``."""
    fn = "degree_features"
    if not isinstance(batch, GraphBatch):
        raise TypeError(f"{fn}: batch must be a GraphBatch, got {type(batch).__name__}")
    if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 1:
        raise ValueError(f"{fn}: max_degree must be a positive int, got {max_degree!r}")
    if not isinstance(raw, bool):
        raise TypeError(f"{fn}: raw must be a bool, got {raw!r}")
    deg = node_degrees(batch)
    x = batch.x
    onehot = torch.nn.functional.one_hot(deg.clamp_max(max_degree), max_degree + 1).to(x.dtype)
    parts = [x, deg.to(x.dtype).unsqueeze(1), onehot] if raw else [x, onehot]
    return batch.with_x(torch.cat(parts, 1))


def parse_feat_str(feat_str: str) -> dict:
    """``"deg+odeg100"`` -> ``{"raw": True, "max_degree": 100}``: the GFN feature strings this
    module implements (``deg``, ``odeg<k>`` and their sum)."""
    if not isinstance(feat_str, str) or not feat_str:
        raise ValueError(f"parse_feat_str: feat_str must be like 'deg+odeg100', got {feat_str!r}")
    raw, max_degree = False, None
    for part in feat_str.split("+"):
        if part == "deg":
            raw = True
        elif part.startswith("odeg") and part[4:].isdigit() and int(part[4:]) > 0:
            max_degree = int(part[4:])
        else:
            raise ValueError(f"parse_feat_str: unsupported part {part!r} in {feat_str!r} "
                             "(supported: 'deg', 'odeg<k>')")
    if max_degree is None:
        raise ValueError(f"parse_feat_str: feat_str needs an 'odeg<k>' part, got {feat_str!r}")
    return {"raw": raw, "max_degree": max_degree}


def with_degree_features(dataset: Any, feat_str: str = "deg+odeg100") -> Any:
    """A :class:`~sparselth.data.GraphDataset` (or :class:`GraphBatch`) with the degree
    features of ``feat_str`` appended (a new object; the input is unchanged)."""
    opts = parse_feat_str(feat_str)
    data = getattr(dataset, "data", dataset)
    if not isinstance(data, GraphBatch):
        raise TypeError(f"with_degree_features: dataset must be a GraphDataset or GraphBatch, "
                        f"got {type(dataset).__name__}")
    new = degree_features(data, **opts)
    if data is dataset:
        return new
    from .tu import GraphDataset

    return GraphDataset(dataset.name, new, dataset.classes, dataset.folds, dataset.layout,
                        dataset.path)
