"""The GIN encoder and projection head of GraphCL's unsupervised TU protocol (You et al. 2020;
``unsupervised_TU/gin.py`` and ``gsimclr.py``), running on a block-diagonal
:class:`~sparselth.sparse.GraphBatch` with sparselth's SpMM.

Encoder: ``num_layers`` GIN layers ``h <- BN(ReLU(MLP((1 + eps) h + A h)))`` with sum aggregation,
``eps`` fixed at 0 and ``MLP = Linear(in, hidden) -> ReLU -> Linear(hidden, hidden)``; the graph
embedding concatenates the sum readout of every layer (``hidden * num_layers`` = 96 for the
defaults). Projection head ``Linear -> ReLU -> Linear`` at the embedding width. Every Linear is
Xavier-uniform with zero bias, as the reference's ``init_emb`` does over the whole model.

Example::

    >>> model = GraphCLGIN(ds.num_features)
    >>> z1, z2 = model(view1), model(view2)        # (B, 96) projections
    >>> h = model.embed(batch)                      # (B, 96) embeddings for the SVM
"""

from __future__ import annotations

from typing import Any, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import as_graph_batch
from ..nn.pool import global_pool
from ..ops.spmm import spmm
from ..sparse.batch import GraphBatch
from ..sparse.csr import CSR

__all__ = ["GINSumConv", "GraphCLGIN", "batch_norm_rows"]


def batch_norm_rows(bn: nn.BatchNorm1d, x: Tensor, training: bool) -> Tensor:
    """``bn(x)`` that also takes a single row: batch statistics need two rows, so in training a
    batch of one node uses (and does not update) the running statistics."""
    use_batch = training and x.shape[0] > 1
    if use_batch and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        use_batch, bn.momentum if use_batch else 0.0, bn.eps)


class GINSumConv(nn.Module):
    """``MLP((1 + eps) x + A x)`` with sum aggregation over the rows of ``adj`` (PyG's
    ``GINConv`` with ``eps`` fixed). The first Linear is applied before the aggregation when it
    narrows the features (same result: it is linear)."""

    def __init__(self, in_dim: int, hidden: int, eps: float = 0.0):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GINSumConv: {name} must be a positive int, got {v!r}")
        self.in_dim, self.hidden = in_dim, hidden
        self.register_buffer("eps", torch.tensor(float(eps)))
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, adj: CSR) -> Tensor:
        one_eps = 1 + self.eps.to(x.dtype)
        if self.hidden < self.in_dim:
            z = F.linear(x, self.lin1.weight)
            h = one_eps * z + spmm(adj, z) + self.lin1.bias
        else:
            h = self.lin1(one_eps * x + spmm(adj, x))
        return self.lin2(F.relu(h))


class GraphCLGIN(nn.Module):
    """GIN encoder (``num_layers`` x ``hidden``, readout of every layer concatenated) with
    GraphCL's projection head. ``forward(batch)`` returns projections, :meth:`embed` the graph
    embeddings; both take a :class:`GraphBatch` (block-diagonal pattern ``adj``, ``ptr``)."""

    def __init__(self, in_dim: int, hidden: int = 32, num_layers: int = 3,
                 readout: str = "sum"):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden", hidden), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GraphCLGIN: {name} must be a positive int, got {v!r}")
        if readout not in ("sum", "mean", "max"):
            raise ValueError(f"GraphCLGIN: readout must be 'sum', 'mean' or 'max', got {readout!r}")
        self.readout = readout
        self.convs = nn.ModuleList(
            GINSumConv(in_dim if i == 0 else hidden, hidden) for i in range(num_layers))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.embedding_dim = hidden * num_layers
        d = self.embedding_dim
        self.proj_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def encode(self, x: Tensor, adj: CSR, ptr: Tensor) -> Tensor:
        """``(B, hidden * num_layers)`` graph embeddings from features, pattern and offsets."""
        pooled: List[Tensor] = []
        for conv, bn in zip(self.convs, self.bns):
            x = batch_norm_rows(bn, F.relu(conv(x, adj)), self.training)
            pooled.append(global_pool(x, ptr, self.readout))
        return torch.cat(pooled, 1)

    def embed(self, batch: Any) -> Tensor:
        """Graph embeddings (the projection head is not applied). ``batch``: a
        :class:`GraphBatch`, a list of :class:`~sparselth.sparse.Graph`, or a PyG
        ``Data``/``Batch``."""
        if not isinstance(batch, GraphBatch):
            if isinstance(batch, Tensor) or not (isinstance(batch, (list, tuple)) or
                                                 hasattr(batch, "edge_index")):
                raise TypeError(f"GraphCLGIN: batch must be a GraphBatch, a list of graphs or a "
                                f"PyG Data/Batch, got {type(batch).__name__}")
            batch = as_graph_batch(batch)
        if batch.num_features != self.convs[0].in_dim:
            raise ValueError(f"GraphCLGIN: batch has {batch.num_features} features, the model "
                             f"expects {self.convs[0].in_dim}")
        w = self.convs[0].lin1.weight
        if torch.is_grad_enabled():
            batch.adj.t()  # the backward's cached transpose, built here (eager, O(nnz))
        return self.encode(batch.x.to(w.dtype), batch.adj, batch.ptr)

    def forward(self, batch: Any) -> Tensor:
        """Projections ``proj_head(embed(batch))``, the input of NT-Xent."""
        return self.proj_head(self.embed(batch))
