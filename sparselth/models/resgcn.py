"""ResGCN, the backbone of GraphCL's semi-supervised TU protocol (You et al. 2020,
``semisupervised_TU/*/res_gcn.py``, taken from the GFN code of Chen et al. 2019), running on a
block-diagonal :class:`~sparselth.sparse.GraphBatch` with sparselth's :class:`GCNConv`.

Layout (``res_branch="BNConvReLU"``, no residual, ``--exp benchmark`` defaults)::

    x -> BN -> Linear(in, hidden) -> ReLU                 (the "feature GCN layer": gfn=True,
                                                            a per-node transform, no propagation)
      -> [BN -> GCNConv(hidden, hidden) -> ReLU] x num_conv_layers
      -> global sum pool
      -> [BN -> Linear(hidden, hidden) -> ReLU] x (num_fc_layers - 1)
      -> BN -> classifier Linear(hidden, classes) -> log_softmax        (forward)
                or projection head Linear -> ReLU -> Linear              (forward_cl)

``edge_norm``: the GCN normalisation ``D^-1/2 (A + I) D^-1/2`` with ``D`` the out-degree plus
one (the reference's ``gcn_conv.GCNConv.norm``: self loops removed then re-added with weight 1,
degrees summed over ``edge_index[0]``; :class:`GCNConv` with ``degree="sender"``); without it
the convolution sums its neighbours (no self term). Initialisation as the reference: GCN and
feature weights Glorot with zero bias, other Linears PyTorch's default, every BatchNorm weight 1
and bias 1e-4.

Example::

    >>> model = ResGCN(ds.num_features, ds.num_classes)
    >>> logp = model(batch)                  # (B, classes) log-probabilities
    >>> z = model.forward_cl(view)           # (B, hidden) projections for NT-Xent
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import as_graph_batch
from ..nn.graph import GCNConv
from ..nn.pool import global_pool
from ..ops.spmm import spmm
from ..sparse.batch import GraphBatch
from .graphcl import batch_norm_rows

__all__ = ["ResGCN"]


def _check_int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"ResGCN: {name} must be an int >= {minimum}, got {v!r}")
    return v


class ResGCN(nn.Module):
    """GFN/GraphCL ResGCN (see the module docstring). ``forward(batch)`` gives
    log-probabilities, :meth:`forward_cl` the projections, :meth:`embed` the graph vectors
    before the classifier / projection head."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128,
                 num_conv_layers: int = 3, num_fc_layers: int = 2, readout: str = "sum",
                 dropout: float = 0.0, edge_norm: bool = True):
        super().__init__()
        _check_int("in_dim", in_dim, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("hidden", hidden, 1)
        _check_int("num_conv_layers", num_conv_layers, 0)
        _check_int("num_fc_layers", num_fc_layers, 1)
        if readout not in ("sum", "mean"):
            raise ValueError(f"ResGCN: readout must be 'sum' or 'mean', got {readout!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
                not 0 <= dropout < 1:
            raise ValueError(f"ResGCN: dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(edge_norm, bool):
            raise TypeError(f"ResGCN: edge_norm must be a bool, got {edge_norm!r}")
        self.in_dim, self.num_classes, self.hidden = in_dim, num_classes, hidden
        self.readout, self.dropout, self.edge_norm = readout, float(dropout), edge_norm
        self.bn_feat = nn.BatchNorm1d(in_dim)
        self.conv_feat = nn.Linear(in_dim, hidden)
        self.bns_conv = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_conv_layers))
        self.convs = nn.ModuleList(GCNConv(hidden, hidden, add_self_loops="all", bias=True,
                                            degree="sender")
                                   for _ in range(num_conv_layers))
        self.bns_fc = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_fc_layers - 1))
        self.lins = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_fc_layers - 1))
        self.bn_hidden = nn.BatchNorm1d(hidden)
        self.lin_class = nn.Linear(hidden, num_classes)
        self.proj_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                       nn.Linear(hidden, hidden))
        nn.init.xavier_uniform_(self.conv_feat.weight)
        nn.init.zeros_(self.conv_feat.bias)
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.lin.weight)
            nn.init.zeros_(conv.bias)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 1e-4)

    # ------------------------------------------------------------------ pieces
    def _bn(self, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
        return batch_norm_rows(bn, x, self.training)

    def _conv(self, conv: GCNConv, x: Tensor, batch: GraphBatch) -> Tensor:
        if self.edge_norm:
            return conv(x, batch.adj)
        return spmm(batch.adj, conv.lin(x)) + conv.bias

    def _batch(self, batch: Any) -> GraphBatch:
        if not isinstance(batch, GraphBatch):
            if isinstance(batch, Tensor) or not (isinstance(batch, (list, tuple)) or
                                                 hasattr(batch, "edge_index")):
                raise TypeError(f"ResGCN: batch must be a GraphBatch, a list of graphs or a "
                                f"PyG Data/Batch, got {type(batch).__name__}")
            batch = as_graph_batch(batch)
        if batch.num_features != self.in_dim:
            raise ValueError(f"ResGCN: batch has {batch.num_features} features, the model "
                             f"expects {self.in_dim}")
        row, col = batch.adj.row(), batch.adj.col.long()
        loops = row == col
        if bool(loops.any()):  # the normalisation adds its own weight-1 self loop
            batch = batch.keep_entries(~loops)
        return batch

    def embed(self, batch: Any) -> Tensor:
        """``(B, hidden)`` graph vectors: the output of ``bn_hidden`` (before the classifier
        or the projection head). ``batch``: a :class:`GraphBatch`, a list of graphs or a PyG
        ``Data``/``Batch``."""
        batch = self._batch(batch)
        x = self._bn(self.bn_feat, batch.x.to(self.conv_feat.weight.dtype))
        x = F.relu(self.conv_feat(x))
        for bn, conv in zip(self.bns_conv, self.convs):
            x = F.relu(self._conv(conv, self._bn(bn, x), batch))
        x = global_pool(x, batch.ptr, self.readout)
        for bn, lin in zip(self.bns_fc, self.lins):
            x = F.relu(lin(self._bn(bn, x)))
        x = self._bn(self.bn_hidden, x)
        if self.dropout > 0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return x

    def forward(self, batch: Any) -> Tensor:
        """``(B, num_classes)`` log-probabilities (``log_softmax`` of the classifier)."""
        return F.log_softmax(self.lin_class(self.embed(batch)), dim=-1)

    def forward_cl(self, batch: Any) -> Tensor:
        """``(B, hidden)`` projections ``proj_head(embed(batch))``, the input of NT-Xent."""
        return self.proj_head(self.embed(batch))

    def encoder_state(self) -> dict:
        """The weights without the classifier (what pre-training learns)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()
                if not k.startswith("lin_class.")}
