"""The GNNs of UGS (Chen et al., "A Unified Lottery Ticket Hypothesis for Graph Neural
Networks", ICML 2021, arXiv 2102.06790): :class:`GCN`, :class:`GIN`, :class:`GAT`, each
built for one fixed graph with a learnable mask on its edges, and
:class:`GINGraphClassifier`, whose fixed "graph" is a whole dataset of graphs (graph
classification; ``forward(x, index)`` takes the dataset's node features and the graphs of a
mini-batch).

Common contract (what UGS pruning relies on):

* the graph is stored as persistent buffers ``graph_rowptr``, ``graph_col`` (the CSR's index
  dtype) and ``graph_num_nodes`` (0-d int64); rows are targets, so ``adj[i, j]`` stored means
  node ``i`` aggregates from ``j``. :meth:`adjacency` returns it as a :class:`~sparselth.CSR`;
* ``edge_mask`` is an ``nn.Parameter`` ``[nnz]`` (ones; ``requires_grad=learn_edge_mask``),
  one value per stored entry in CSR order, passed to every convolution as ``edge_weight``. It
  is a parameter like any weight, so ``sparselth.prune.apply(model, {"edge_mask": m})``,
  ``Masks`` and ``Ticket`` handle a bool edge mask ``"edge_mask"`` like a weight mask;
* :meth:`ugs_weight_names` lists the weights UGS masks; ``forward(x)`` returns logits for
  dense or CSR ``x``;
* :meth:`compact_graph` drops the entries whose ``edge_mask`` is exactly 0 (new buffers and a
  new, smaller ``edge_mask``), leaving the output unchanged: pruned edges then cost nothing.
  Build optimizers after compacting (the parameter object changes);
* :meth:`macs` counts exact multiply-accumulates per layer on the current graph and weights.

Example::

    >>> A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    >>> model = GCN(A, data.num_features, data.num_classes)
    >>> logits = model(data.x)
    >>> model.macs(data.x)["total"]
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn._graph_plan import LiveChannels
from ..nn.graph import GATConv, GCNConv, GINConv
from ..nn.pool import global_pool
from ..nn.sparse import _tensor_version
from ..sparse.batch import GraphBatch
from ..sparse.csr import CSR, check_structure
from .graphcl import GINSumConv

__all__ = ["GCN", "GIN", "GAT", "GINGraphClassifier"]

_GRAPH_BUFFERS = ("graph_rowptr", "graph_col", "graph_deg", "edge_mask_mask")


def _as_pattern(op: str, adj: Any, num_nodes: Optional[int]) -> CSR:
    """A square pattern CSR (rows = targets) from a CSR or a PyG ``edge_index``."""
    if isinstance(adj, CSR):
        if adj.shape[0] != adj.shape[1]:
            raise ValueError(f"{op}: adj must be square (N, N), got {adj.shape}")
        if num_nodes is not None and num_nodes != adj.shape[0]:
            raise ValueError(f"{op}: num_nodes={num_nodes} disagrees with adj.shape={adj.shape}")
        return adj.with_values(None)
    if isinstance(adj, Tensor):
        if adj.dim() != 2 or adj.shape[0] != 2:
            raise ValueError(f"{op}: adj must be a CSR or an edge_index of shape (2, E), got "
                             f"a tensor of shape {tuple(adj.shape)}")
        A = CSR.from_edge_index(adj.flip(0), num_nodes)   # [source, target] -> rows = targets
        return A.with_values(None)
    raise TypeError(f"{op}: adj must be a sparselth.CSR or an edge_index tensor, got "
                    f"{type(adj).__name__}")


class _GraphModel(nn.Module):
    """Graph buffers, the edge mask, compaction and state loading shared by the UGS models."""

    def __init__(self, adj: Union[CSR, Tensor], learn_edge_mask: bool, num_nodes: Optional[int],
                 add_self_loops: bool = False):
        super().__init__()
        op = type(self).__name__
        A = _as_pattern(op, adj, num_nodes)
        if add_self_loops:
            A = A.add_self_loops()
            A = A.with_values(None)
        self.register_buffer("graph_rowptr", A.rowptr.clone())
        self.register_buffer("graph_col", A.col.clone())
        self.register_buffer("graph_num_nodes", torch.tensor(A.shape[0], dtype=torch.long))
        self.edge_mask = nn.Parameter(torch.ones(A.nnz, device=A.device),
                                      requires_grad=bool(learn_edge_mask))
        self._adj_cache: Optional[tuple] = None

    # ------------------------------------------------------------------ graph
    def adjacency(self) -> CSR:
        """The stored graph as a pattern CSR ``(N, N)``, rows = targets (cached, so its
        transpose is computed once)."""
        rp, col = self.graph_rowptr, self.graph_col
        if self._adj_cache is not None and self._adj_cache[0] is rp and self._adj_cache[1] is col:
            return self._adj_cache[2]
        if torch.compiler.is_compiling() or rp.is_meta:
            # traced (torch.export) or shape-only (meta): the size from a shape, no
            # data-dependent check, no cache
            n = rp.numel() - 1
            return CSR._trusted(rp, col, None, (n, n))
        n = int(self.graph_num_nodes)
        # checked: the buffers may come from a state dict
        check_structure(type(self).__name__, rp, col, None, (n, n),
                        ("graph_rowptr", "graph_col", ""))
        A = CSR._trusted(rp, col, None, (n, n))
        self._adj_cache = (rp, col, A)
        return A

    def ugs_weight_names(self) -> List[str]:
        """Names of the parameters UGS masks (UGS paper, Sec. 'what carries a mask')."""
        raise NotImplementedError

    def num_edges(self) -> int:
        """Stored entries whose ``edge_mask`` is non-zero (the edges that still cost)."""
        return int((self.edge_mask.detach() != 0).sum())

    def _check_compactable(self) -> None:
        pass

    @torch.no_grad()
    def compact_graph(self) -> "_GraphModel":
        """Drop, in place, the stored entries whose ``edge_mask`` is exactly 0: new
        ``graph_rowptr``/``graph_col`` buffers, a new smaller ``edge_mask`` parameter (same
        ``requires_grad``) and, if ``prune.apply`` installed one, a compacted
        ``edge_mask_mask``. The forward output is unchanged. Returns the model."""
        self._check_compactable()
        keep = self.edge_mask.detach() != 0
        if bool(keep.all()):
            return self
        A = self.adjacency()
        n = A.shape[0]
        counts = torch.bincount(A.row()[keep], minlength=n)
        rowptr = torch.zeros(n + 1, dtype=torch.long, device=A.device)
        torch.cumsum(counts, 0, out=rowptr[1:])
        self.graph_rowptr = rowptr.to(A.rowptr.dtype)
        self.graph_col = self.graph_col[keep].clone()
        old = self.edge_mask
        self.edge_mask = nn.Parameter(old.detach()[keep].clone(), requires_grad=old.requires_grad)
        mm = self._buffers.get("edge_mask_mask")
        if mm is not None and mm.shape == keep.shape:
            self._buffers["edge_mask_mask"] = mm[keep].clone()
        self._adj_cache = None
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A compacted graph has fewer stored entries: resize the graph tensors to fit.
        for name in _GRAPH_BUFFERS:
            src, own = state_dict.get(prefix + name), self._buffers.get(name)
            if isinstance(src, Tensor) and own is not None and (
                    src.shape != own.shape or (name in ("graph_rowptr", "graph_col")
                                               and src.dtype != own.dtype)):
                dtype = src.dtype if name in ("graph_rowptr", "graph_col") else own.dtype
                self._buffers[name] = torch.empty(src.shape, dtype=dtype, device=own.device)
        src = state_dict.get(prefix + "edge_mask")
        if isinstance(src, Tensor) and src.shape != self.edge_mask.shape:
            self.edge_mask = nn.Parameter(
                torch.empty(src.shape, dtype=self.edge_mask.dtype, device=self.edge_mask.device),
                requires_grad=self.edge_mask.requires_grad)
        self._adj_cache = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _finish_macs(self, layers: dict) -> dict:
        layers["total"] = sum(v["total"] for v in layers.values())
        return layers


class GCN(_GraphModel):
    """UGS's two-layer GCN: ``conv2(dropout(relu(conv1(x))))``, both :class:`GCNConv` without
    bias, self loops in the normaliser (never pruned), dropout 0.5 between the layers.

    At inference (eval mode, no autograd) each layer runs its cached plan
    (:mod:`sparselth.nn.graph`); when ``conv2.lin`` is a compiled sparse layer
    (``sparselth.compile``) and both layers transform first, conv2's transform runs inside
    conv1's aggregation (:attr:`fuse`, :func:`sparselth.ops.spmm_linear`) over only the hidden
    channels conv2's kept weights read (:attr:`skip_dead_channels`): the hidden
    ``(N, hidden)`` tensor is never stored. The output is the same.

    Args:
        adj: the graph, a square CSR (rows = targets) or a PyG ``edge_index`` ``[2, E]``
            (values are ignored: only the pattern is stored).
        in_dim, num_classes, hidden: layer sizes ``in_dim -> hidden -> num_classes``.
        dropout: dropout probability between the layers.
        learn_edge_mask: whether ``edge_mask`` requires grad (the UGS mask search).
        num_nodes: node count for an ``edge_index`` (default: its largest index + 1).
        degree: the degree normalisation of both layers (:class:`GCNConv`): ``"sender"``
            (default), the UGS reference's ``D^-1/2 A_m^T D^-1/2`` where a masked message
            counts in its sender's degree; ``"receiver"``, the usual GCN (a deviation from the
            reference once the pruned mask is asymmetric). Settable later on ``conv1.degree``
            and ``conv2.degree``.
    """

    def __init__(self, adj: Union[CSR, Tensor], in_dim: int, num_classes: int, hidden: int = 512,
                 dropout: float = 0.5, learn_edge_mask: bool = True,
                 num_nodes: Optional[int] = None, degree: str = "sender"):
        super().__init__(adj, learn_edge_mask, num_nodes)
        # the reference's D^-1/2 (A_m + I) D^-1/2: an unprunable loop at every node, no bias
        self.conv1 = GCNConv(in_dim, hidden, add_self_loops="all", bias=False, degree=degree)
        self.conv2 = GCNConv(hidden, num_classes, add_self_loops="all", bias=False, degree=degree)
        self.dropout = float(dropout)
        #: at inference, run conv2's transform inside conv1's aggregation when conv2.lin is a
        #: compiled sparse layer and both layers transform first: the hidden (N, hidden)
        #: tensor is then never stored (:func:`sparselth.ops.spmm_linear`)
        self.fuse = True
        self.fused_layers = ("conv1", "conv2")   # (producer, consumer) of the fused pair
        #: with :attr:`fuse`: conv1 computes only the hidden channels conv2's kept weights
        #: read (a channel whose column of conv2's weight is all pruned cannot reach the output)
        self.skip_dead_channels = True
        self._hidden_like: Optional[Tensor] = None
        self._live: Optional[LiveChannels] = None

    def forward(self, x: Union[Tensor, CSR]) -> Tensor:
        A, w = self.adjacency(), self.edge_mask
        if self.fuse and not self.training and not torch.is_grad_enabled() \
                and not torch.compiler.is_compiling() and not A.col.is_meta:
            out = self._fused(x, A, w)
            if out is not None:
                return out
        h = self.conv1(x, A, w, relu=True)   # inference: the ReLU runs in the SpMM's epilogue
        if self.training:
            h = F.dropout(h, self.dropout)
        return self.conv2(h, A, w)

    def _fused(self, x: Union[Tensor, CSR], A: CSR, w: Tensor) -> Optional[Tensor]:
        """``conv2(relu(conv1(x)))`` with conv2's transform fused into conv1's aggregation, or
        None where that does not apply (see :attr:`fuse`)."""
        c1, c2 = self.conv1, self.conv2
        p1 = c1._plan_for(x, A, w)
        if p1.order != "transform_first" or p1.spmm_linear is None:
            return None
        like = self._hidden_like   # stands for conv1's output: conv2's plan needs its shape
        if like is None or like.shape != (p1.n, c2.in_dim) or like.dtype != p1.dtype \
                or like.device != A.device:
            like = self._hidden_like = torch.empty((p1.n, c2.in_dim), dtype=p1.dtype,
                                                   device=A.device)
        p2 = c2._plan_for(like, A, w)
        if p2.order != "transform_first" or p2.lin_csr is None:
            return None
        if not self.skip_dead_channels:
            return p2.aggregate(p1.run_fused(c1, x, True, p2.lin_csr), False)
        live = self._live
        if live is None or live.p1 is not p1 or live.p2 is not p2:
            live = self._live = LiveChannels(c1, p1, p2)
        return p2.aggregate(live.run(c1, x), False)

    def live_channels(self) -> Optional[int]:
        """Hidden channels the fused inference path computes (conv2's kept weights read
        them), or None before an inference call built it or when it does not apply."""
        live = self._live
        if live is None or not self.skip_dead_channels:
            return None
        return live.hidden if live.live is None else int(live.live.numel())

    def ugs_weight_names(self) -> List[str]:
        return ["conv1.lin.weight", "conv2.lin.weight"]

    @torch.no_grad()
    def macs(self, x: Union[Tensor, CSR]) -> dict:
        """``{"conv1": {...}, "conv2": {...}, "total": int, "paper_formula": int}``: exact
        per-layer counts (see :meth:`GCNConv.macs`), and the formula that reproduces the UGS
        figure (UGS paper, Sec. 'how sparsity and MACs are computed'):
        ``N * (nnz(W1) + nnz(W2)) + 2 * kept_edges * hidden``."""
        A, w = self.adjacency(), self.edge_mask
        N = A.shape[0]
        out = self._finish_macs({"conv1": self.conv1.macs(x, A, w),
                                 "conv2": self.conv2.macs(N, A, w)})
        nnz_w = sum(int((p != 0).sum()) for p in (self.conv1._weight(), self.conv2._weight()))
        out["paper_formula"] = N * nnz_w + 2 * self.num_edges() * self.conv1.out_dim
        return out


class GIN(_GraphModel):
    """UGS's GIN: two :class:`GINConv` layers (mean aggregation over the original in-degree,
    learnable ``eps``), ReLU and dropout after *every* layer, output
    ``(pred(h1) + h2) / 2`` with ``pred`` an unmasked bias-free ``Linear(hidden, C)``.

    The original degrees live in the float buffer ``graph_deg`` (pruned edges stay in the
    mean's denominator, as in the reference, also after :meth:`compact_graph`).
    """

    def __init__(self, adj: Union[CSR, Tensor], in_dim: int, num_classes: int, hidden: int = 512,
                 dropout: float = 0.5, learn_edge_mask: bool = True, eps: float = 0.0,
                 train_eps: bool = True, num_nodes: Optional[int] = None):
        super().__init__(adj, learn_edge_mask, num_nodes)
        rp = self.graph_rowptr
        self.register_buffer("graph_deg", (rp[1:] - rp[:-1]).to(torch.get_default_dtype()))
        self.conv1 = GINConv(in_dim, hidden, eps=eps, train_eps=train_eps, bias=False)
        self.conv2 = GINConv(hidden, num_classes, eps=eps, train_eps=train_eps, bias=False)
        self.pred = nn.Linear(hidden, num_classes, bias=False)
        self.dropout = float(dropout)

    def forward(self, x: Union[Tensor, CSR]) -> Tensor:
        A, w, deg = self.adjacency(), self.edge_mask, self.graph_deg
        h1 = self.conv1(x, A, w, deg=deg, relu=True)
        if self.training:
            h1 = F.dropout(h1, self.dropout)
        h2 = self.conv2(h1, A, w, deg=deg, relu=True)
        if self.training:
            h2 = F.dropout(h2, self.dropout)
        return (self.pred(h1) + h2) / 2

    def ugs_weight_names(self) -> List[str]:
        return ["conv1.lin.weight", "conv2.lin.weight"]

    @torch.no_grad()
    def macs(self, x: Union[Tensor, CSR]) -> dict:
        """``{"conv1", "conv2", "pred": {...}, "total": int}`` (see :meth:`GINConv.macs`)."""
        A, w, deg = self.adjacency(), self.edge_mask, self.graph_deg
        N = A.shape[0]
        pred = N * int((self.pred.weight != 0).sum())
        return self._finish_macs({"conv1": self.conv1.macs(x, A, w, deg),
                                  "conv2": self.conv2.macs(N, A, w, deg),
                                  "pred": {"transform": pred, "total": pred}})


class GAT(_GraphModel):
    """UGS's GAT: ``conv2(dropout(elu(conv1(x))))`` with ``conv1`` = ``heads`` concatenated
    heads of width ``hidden`` (attention dropout ``dropout``) and ``conv2`` one head
    ``hidden*heads -> C`` (no attention dropout); no bias anywhere.

    ``add_self_loops=True`` adds the self loops to the stored pattern *before* masking, so
    they are prunable (UGS paper, Sec. 'what carries a mask'). Zero-mask edges are left out
    of the softmax unless ``zero_logit_quirk=True`` (the reference code's logit-0 behaviour,
    which :meth:`compact_graph` refuses because there pruned edges still change the output).
    """

    def __init__(self, adj: Union[CSR, Tensor], in_dim: int, num_classes: int, hidden: int = 512,
                 heads: int = 8, dropout: float = 0.6, add_self_loops: bool = True,
                 learn_edge_mask: bool = True, zero_logit_quirk: bool = False,
                 negative_slope: float = 0.2, num_nodes: Optional[int] = None):
        super().__init__(adj, learn_edge_mask, num_nodes, add_self_loops=add_self_loops)
        # the loops (if any) are stored in the pattern above, prunable: none added here
        self.conv1 = GATConv(in_dim, hidden, heads=heads, concat=True,
                             negative_slope=negative_slope, attn_dropout=dropout,
                             add_self_loops=False, bias=False,
                             zero_logit_quirk=zero_logit_quirk)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1, concat=True,
                             negative_slope=negative_slope, attn_dropout=0.0,
                             add_self_loops=False, bias=False,
                             zero_logit_quirk=zero_logit_quirk)
        self.dropout = float(dropout)
        self.zero_logit_quirk = bool(zero_logit_quirk)

    def forward(self, x: Union[Tensor, CSR]) -> Tensor:
        A, w = self.adjacency(), self.edge_mask
        h = F.elu(self.conv1(x, A, w))
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, A, w)

    def ugs_weight_names(self) -> List[str]:
        return [f"{c}.{p}" for c in ("conv1", "conv2")
                for p in ("lin.weight", "att_src", "att_dst")]

    def _check_compactable(self) -> None:
        if self.zero_logit_quirk:
            raise ValueError("GAT.compact_graph: with zero_logit_quirk=True pruned edges stay in "
                             "the softmax, so dropping them would change the output")

    @torch.no_grad()
    def macs(self, x: Union[Tensor, CSR]) -> dict:
        """``{"conv1", "conv2": {...}, "total": int}`` (see :meth:`GATConv.macs`)."""
        A, w = self.adjacency(), self.edge_mask
        return self._finish_macs({"conv1": self.conv1.macs(x, A, w),
                                  "conv2": self.conv2.macs(A.shape[0], A, w)})


class GINGraphClassifier(_GraphModel):
    """GIN graph classifier over a whole dataset of graphs, with one learnable mask value per
    stored edge of the dataset (UGS for graph classification).

    The "graph" of the contract is the dataset: its graphs as one block-diagonal pattern
    (``graph_rowptr``/``graph_col``, every graph's CSR entries concatenated in dataset order)
    plus ``graph_ptr`` ``(G + 1,)``, the node offsets of the graphs. ``edge_mask`` ``[nnz]``
    holds one value per stored entry; ``forward(x, index)`` builds the mini-batch of graphs
    ``index`` (:meth:`GraphBatch.select`) from the stored pattern with ``edge_mask`` as
    values, so each graph in the batch carries its own slice of the mask as edge weights.
    :meth:`compact_graph` removes the zero-mask entries from the stored dataset.

    Network: ``num_layers`` GIN layers ``h <- BN(ReLU(MLP((1 + eps) h + sum_j w_ij h_j)))``
    (sum aggregation weighted by the mask, ``eps`` fixed, ``MLP = Linear -> ReLU -> Linear``:
    :class:`~sparselth.models.graphcl.GINSumConv`), the sum readout of every layer
    concatenated, then the classifier ``Linear(hidden * num_layers, hidden) -> ReLU ->
    dropout -> Linear(hidden, C)`` (dropout also before it). UGS masks the Linear weights
    inside the GIN MLPs (:meth:`ugs_weight_names`); the classifier stays unmasked. With sum
    aggregation an entry of weight 0 and a removed entry give the same output.

    Args:
        data: the dataset (:class:`~sparselth.data.GraphDataset` or its
            :class:`~sparselth.sparse.GraphBatch`); only its pattern and offsets are stored.
        in_dim, num_classes: feature width and class count.
        hidden, num_layers, dropout: sizes and dropout probability.
        learn_edge_mask: whether ``edge_mask`` requires grad (the UGS mask search).
        eps: the fixed ``eps`` of every GIN layer.
    """

    def __init__(self, data: Any, in_dim: int, num_classes: int, hidden: int = 64,
                 num_layers: int = 3, dropout: float = 0.5, learn_edge_mask: bool = True,
                 eps: float = 0.0):
        op = type(self).__name__
        batch = getattr(data, "data", data)
        if not isinstance(batch, GraphBatch):
            raise TypeError(f"{op}: data must be a GraphDataset or GraphBatch, got "
                            f"{type(data).__name__}")
        for name, v in (("in_dim", in_dim), ("num_classes", num_classes), ("hidden", hidden),
                        ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{op}: {name} must be a positive int, got {v!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{op}: dropout must be in [0, 1), got {dropout!r}")
        super().__init__(batch.adj, learn_edge_mask, None)
        self.register_buffer("graph_ptr", batch.ptr.detach().clone().long())
        self.in_dim, self.num_classes = in_dim, num_classes
        self.convs = nn.ModuleList(GINSumConv(in_dim if i == 0 else hidden, hidden, eps)
                                   for i in range(num_layers))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.lin1 = nn.Linear(hidden * num_layers, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.dropout = float(dropout)

    @property
    def num_graphs(self) -> int:
        return self.graph_ptr.numel() - 1

    def batch(self, x: Tensor, index: Optional[Tensor] = None) -> GraphBatch:
        """The graphs ``index`` (default: all, in order) as a :class:`GraphBatch` whose
        ``adj`` values are their slices of ``edge_mask`` (differentiable); ``x`` holds the
        node features of the whole dataset ``(N, F)``."""
        N = int(self.graph_num_nodes)
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] != N:
            raise ValueError(f"{type(self).__name__}: x must be the dataset's node features "
                             f"({N}, F), got {tuple(x.shape) if isinstance(x, Tensor) else x!r}")
        A, ptr = self.adjacency(), self.graph_ptr
        key = (A, ptr, _tensor_version(ptr))
        seen = getattr(self, "_ptr_checked", None)
        if seen is None or seen[0] is not A or seen[1] is not ptr or seen[2] != key[2]:
            GraphBatch(x[:, :0], A, ptr)   # graph_ptr may come from a state dict: check it once
            self._ptr_checked = key
        b = GraphBatch._trusted(x, A.with_values(self.edge_mask.to(x.dtype)), ptr)
        return b if index is None else b.select(torch.as_tensor(index, device=x.device))

    def entries_of(self, index: Tensor) -> Tensor:
        """``(nnz,)`` bool: the stored entries (``edge_mask`` positions) of the graphs
        ``index``, the entries a mini-batch of those graphs uses."""
        rowptr = self.adjacency().rowptr.long()
        ptr = self.graph_ptr.long()
        index = torch.as_tensor(index, device=ptr.device).long()
        start, stop = rowptr[ptr[index]], rowptr[ptr[index + 1]]
        diff = torch.zeros(rowptr[-1] + 1, dtype=torch.long, device=ptr.device)
        diff.index_add_(0, start, torch.ones_like(start))
        diff.index_add_(0, stop, -torch.ones_like(stop))
        return diff.cumsum(0)[:-1] > 0

    def classify(self, batch: GraphBatch) -> Tensor:
        """Logits ``(B, C)`` of a batch; ``batch.adj``'s values (if any) weight the edges."""
        x = batch.x.to(self.lin1.weight.dtype)
        adj = batch.adj
        if torch.is_grad_enabled():
            adj.t()  # the backward's cached transpose, built here (eager, O(nnz))
        pooled: List[Tensor] = []
        for conv, bn in zip(self.convs, self.bns):
            x = bn(F.relu(conv(x, adj))) if x.shape[0] > 1 or not self.training else \
                F.relu(conv(x, adj))
            pooled.append(global_pool(x, batch.ptr, "sum"))
        h = F.dropout(torch.cat(pooled, 1), self.dropout, self.training)
        h = F.dropout(F.relu(self.lin1(h)), self.dropout, self.training)
        return self.lin2(h)

    def forward(self, x: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Logits ``(len(index), C)`` of the graphs ``index`` (default: every graph)."""
        return self.classify(self.batch(x, index))

    def ugs_weight_names(self) -> List[str]:
        return [f"convs.{i}.lin{j}.weight" for i in range(len(self.convs)) for j in (1, 2)]

    @torch.no_grad()
    def macs(self, x: Tensor, index: Optional[Tensor] = None) -> dict:
        """Exact multiply-accumulates of one pass over the graphs ``index`` (default: the
        whole dataset, one encoding epoch): per GIN layer ``transform`` (``n`` x the kept
        weights of both Linears), ``aggregate`` (kept edges x width, the first Linear
        applied first when it narrows), ``self`` (``(1 + eps) h``, ``n`` x width); ``pool``
        (``n`` x hidden per layer) and ``classifier`` (``B`` x its weights)."""
        b = self.batch(x, index)
        n, kept = b.num_nodes, int((b.adj.val != 0).sum())
        out: dict = {}
        for i, conv in enumerate(self.convs):
            w1, w2 = conv.lin1.weight, conv.lin2.weight
            width = conv.hidden if conv.hidden < conv.in_dim else conv.in_dim
            tr = n * (int((w1 != 0).sum()) + int((w2 != 0).sum()))
            out[f"conv{i + 1}"] = {"transform": tr, "aggregate": kept * width,
                                   "self": n * width, "total": tr + kept * width + n * width}
        pool = n * sum(c.hidden for c in self.convs)
        head = b.num_graphs * (self.lin1.weight.numel() + self.lin2.weight.numel())
        out["pool"] = {"total": pool}
        out["classifier"] = {"total": head}
        return self._finish_macs(out)
