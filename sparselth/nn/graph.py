"""Graph convolutions on sparselth's kernels, with learnable per-edge weights (UGS edge masks).

:class:`GCNConv`, :class:`GINConv` and :class:`GATConv` follow PyG's convention: a message
``j -> i`` flows from source ``j`` to target ``i``, and the graph is given either as

* a PyG ``edge_index`` LongTensor ``[2, E]``: row 0 the sources ``j``, row 1 the targets
  ``i``, with ``N = x.size(0)``. It is sorted into a CSR over targets (by target, then
  source); ``edge_weight[e]`` belongs to column ``e`` of ``edge_index`` and is permuted into
  CSR order (differentiably). Duplicate columns are merged into one stored entry whose
  weight is the sum of theirs (the count of duplicates when ``edge_weight`` is None). The
  conversion is cached while the same ``edge_index`` tensor is passed unchanged; or
* ``adj_t``, the *transposed* adjacency: a :class:`~sparselth.CSR` of shape ``(N, N)`` whose
  rows are the *targets*: ``adj_t[i, j]`` stored means a message ``j -> i`` (PyG's
  ``adj_t``). ``edge_weight[e]`` belongs to the ``e``-th stored entry in CSR order
  (``adj_t.val``, if present, is multiplied in). :func:`adj_t_from_edge_index` builds it from
  an ``edge_index`` (``CSR.from_edge_index(edge_index)`` without the flip would be the
  adjacency itself, rows = sources: the messages would flow backwards).

``layer(x, edge_index, w)`` and ``layer(x, adj_t_from_edge_index(edge_index, N, w))`` give
the same output. The graph argument is ``adj_t`` by keyword; ``edge_index=`` (PyG's name)
and ``adj=`` (an earlier name) are accepted too.

Edge weights enter the aggregation as the values of the sparse matrix, so their gradient
comes from :func:`sparselth.ops.spmm`'s value gradient (an SDDMM) with no dense ``N x N``
anywhere. ``x`` may be dense ``(N, in_dim)`` or a CSR of sparse node features (then
``x W^T`` runs as ``spmm(x, W^T)``). Every layer keeps its weight in an ``nn.Linear`` named
``lin`` (no bias; the optional bias is a separate ``bias`` parameter), so weight names are
``<conv>.lin.weight``. ``macs(x, adj_t, edge_weight)`` counts the exact multiply-accumulates
of one call, treating zero weights and zero-weight edges as pruned. On meta tensors a layer
checks the shapes and returns an empty meta output (shape-only use).

Inference (eval mode, no gradient, not traced) runs a cached plan
(:mod:`sparselth.nn._graph_plan`): :class:`GCNConv` and :class:`GINConv` pick ``A(XW)`` or
``(AX)W`` by exact MACs (or as ``order`` says), run the aggregation, self term, degree scaling,
bias and ReLU (``relu=True``) as one SpMM, and multiply sparse features by a compiled sparse
weight as a sparse x sparse product. Training runs the differentiable path below unchanged.
Under ``torch.compile`` (``fullgraph=True``) and ``torch.export`` the differentiable path is
traced; there an ``edge_index`` is converted with data-independent shapes (duplicates stay
separate entries, the index range is not checked).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.edge_softmax import edge_softmax
from ..ops._common import row_index
from ..ops.spmm import spmm
from ..sparse.csr import CSR
from ._graph_base import (Adjacency, GraphConv, _inference, _same, _version,
                          adj_t_from_edge_index, graph_argument, is_meta, read_values,
                          tracing)

__all__ = ["GCNConv", "GINConv", "GATConv", "adj_t_from_edge_index"]

_INT32_MAX = 2**31 - 1


class GCNConv(GraphConv):
    """Kipf & Welling's graph convolution with learnable edge weights; PyG's signature.

    ``y = Â (x W^T) + b`` with ``Â = D^-1/2 (A_w + L) D^-1/2``: ``A_w`` the graph over targets
    with values ``edge_weight`` (1 if None), ``L`` the self loops, ``D`` the degrees of
    ``A_w + L``. Differentiable with respect to ``edge_weight``, also through the degrees.

    Args:
        in_dim, out_dim: feature widths (PyG's ``in_channels``, ``out_channels``).
        improved: self loops of weight 2 (``A + 2I``), as PyG documents it (PyG 2.8's
            ``edge_index`` path keeps weight 1 when no ``edge_weight`` is given).
        cached: keep the normalised graph of the first call and reuse it on every later call
            whatever graph is passed (PyG's ``cached``: transductive learning on one graph).
            The cached values are detached: edge weights get no gradient from later calls.
        add_self_loops: which self loops ``L`` holds:

            * ``True`` (as ``None`` with ``normalize=True``, the default): PyG's
              ``add_remaining_self_loops``: a node that has a stored self loop keeps it with
              its own weight (with no ``edge_weight`` and no ``adj_t`` values, the fill value);
              every other node gets a loop of weight 1 (2 when ``improved``);
            * ``"all"``: a loop of weight 1 (2 when ``improved``) at *every* node, added to any
              stored one, as Kipf & Welling's ``A + I`` and the UGS and DGI reference codes
              write it; these loops carry no edge weight, so pruning cannot remove them
              (:class:`sparselth.models.GCN` and the other models here use this);
            * ``False``: none.

            Self loops need ``normalize=True`` (as in PyG).
        normalize: the symmetric normalisation; ``False`` aggregates ``A_w`` as is.
        bias: a learnable bias ``(out_dim,)``, zero at start (PyG's default ``True``).
        degree: whose weights make up ``D`` (rows of ``A_w`` are targets, so ``w_ij`` is the
            message ``j -> i``):

            * ``"receiver"`` (default): ``D_i = L_i + sum_j w_ij``, the weights of the messages
              node ``i`` *receives* (the usual GCN, PyG's ``gcn_norm``);
            * ``"sender"``: ``D_j = L_j + sum_i w_ij``, the weights of the messages node ``j``
              *sends*. This is the UGS reference (``torch_normalize_adj``: ``D^-1/2 A_m^T
              D^-1/2`` with ``D`` the row sums of the masked ``A_m``, whose rows are senders),
              and the default of :class:`sparselth.models.GCN`.

            Both agree while ``A_w`` is symmetric (an unpruned graph); a pruned, asymmetric
            edge mask makes them differ. Zero-weight edges count in neither, so dropping them
            (``compact_graph``) leaves the output unchanged in both modes.

    The self term is applied as an elementwise ``x_i L_i / D_i`` term, not stored entries.
    The transform runs first when ``out_dim <= in_dim`` (or ``x`` is sparse), else the
    aggregation (fewer MACs either way). The normalised values are cached while ``adj_t`` and
    ``edge_weight`` are the same, unmodified tensors and need no gradient (the retraining
    phase of UGS).

    Example::

        >>> conv = GCNConv(16, 8)
        >>> y = conv(x, edge_index, edge_weight=mask)          # mask: (E,), requires_grad
        >>> y = conv(x, adj_t_from_edge_index(edge_index, x.size(0), mask))   # the same
    """

    degrees = ("receiver", "sender")
    self_loop_modes = (False, "remaining", "all")

    def __init__(self, in_dim: int, out_dim: int, improved: bool = False, cached: bool = False,
                 add_self_loops: Optional[Union[bool, str]] = None, normalize: bool = True,
                 bias: bool = True, degree: str = "receiver"):
        super().__init__(in_dim, out_dim, out_dim, bias)
        self.out_dim = out_dim
        self._norm_cache: Optional[tuple] = None
        self._loop_cache: Optional[tuple] = None
        self._cached_graph: Optional[tuple] = None
        self._degree, self._improved, self._normalize = "receiver", False, True
        self._loops: Union[bool, str] = False
        self.degree = degree
        self.improved = improved
        self.normalize = normalize
        self.add_self_loops = normalize if add_self_loops is None else add_self_loops
        self.cached = bool(cached)

    def _drop_caches(self) -> None:
        """A setting changed: the cached normalisation, plan and graph no longer hold."""
        self._norm_cache = self._plan = self._loop_cache = self._cached_graph = None

    @property
    def degree(self) -> str:
        """``"receiver"`` or ``"sender"``: whose edge weights make up the degree (see above)."""
        return self._degree

    @degree.setter
    def degree(self, value: str) -> None:
        if value not in self.degrees:
            raise ValueError(f"GCNConv: degree must be 'receiver' or 'sender', got {value!r}")
        if value != self._degree:
            self._drop_caches()
        self._degree = value

    @property
    def improved(self) -> bool:
        """Self loops of weight 2 instead of 1."""
        return self._improved

    @improved.setter
    def improved(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"GCNConv: improved must be a bool, got {value!r}")
        if value != self._improved:
            self._drop_caches()
        self._improved = value

    @property
    def normalize(self) -> bool:
        """Whether the layer normalises ``A_w + L`` symmetrically."""
        return self._normalize

    @normalize.setter
    def normalize(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"GCNConv: normalize must be a bool, got {value!r}")
        if not value and self._loops:
            raise ValueError("GCNConv: normalize=False needs add_self_loops=False (self loops "
                             "are added with the normalisation, as in PyG)")
        if value != self._normalize:
            self._drop_caches()
        self._normalize = value

    @property
    def add_self_loops(self) -> Union[bool, str]:
        """``"remaining"`` (what ``True`` sets: PyG's), ``"all"`` or ``False`` (see above)."""
        return self._loops

    @add_self_loops.setter
    def add_self_loops(self, value: Union[bool, str]) -> None:
        if value is True or (isinstance(value, str) and value == "remaining"):
            mode: Union[bool, str] = "remaining"
        elif value is False or (isinstance(value, str) and value == "all"):
            mode = value
        else:
            raise ValueError(f"GCNConv: add_self_loops must be True, False, 'remaining' or "
                             f"'all', got {value!r}")
        if mode and not self._normalize:
            raise ValueError("GCNConv: add_self_loops needs normalize=True (self loops are "
                             "added with the normalisation, as in PyG)")
        if mode != self._loops:
            self._drop_caches()
        self._loops = mode

    def _normalise(self, adj: Adjacency, edge_weight: Optional[Tensor], A: CSR,
                   w: Optional[Tensor], dtype: torch.dtype
                   ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """``(values per stored entry, self-term weight L_i / D_i per node)``; ``(w, None)``
        without normalisation, the self term ``None`` without self loops."""
        if not self._normalize:
            return w, None
        cacheable = not tracing() and not (
            torch.is_grad_enabled() and w is not None and w.requires_grad)
        key = (adj, _version(adj.val) if isinstance(adj, CSR) else adj._version, edge_weight,
               _version(edge_weight), dtype, A.device, self._degree, self._improved,
               self._loops)
        if cacheable and self._norm_cache is not None and _same(key, self._norm_cache[0]):
            return self._norm_cache[1]
        N = A.shape[0]
        row, col = row_index(A), A.col.long()
        fill = 2.0 if self._improved else 1.0
        wv = torch.ones(A.nnz, dtype=dtype, device=A.device) if w is None else w
        loops = None
        if self._loops == "all":
            loops = torch.full((N,), fill, dtype=dtype, device=A.device)
        elif self._loops == "remaining":
            is_loop = row == col
            weighted = edge_weight is not None or (isinstance(adj, CSR) and adj.val is not None)
            if not weighted:   # unweighted stored loops become loops of the fill value (PyG)
                wv = torch.where(is_loop, torch.full_like(wv, fill), wv)
            has_loop = torch.zeros(N, dtype=dtype, device=A.device).index_add(
                0, row, is_loop.to(dtype)) > 0
            loops = torch.where(has_loop, 0.0, fill).to(dtype)
        by = col if self._degree == "sender" else row
        deg = (torch.zeros(N, dtype=dtype, device=A.device) if loops is None
               else loops).index_add(0, by, wv)
        pos = deg > 0
        dis = torch.where(pos, torch.where(pos, deg, torch.ones_like(deg)).pow(-0.5),
                          torch.zeros_like(deg))
        vals = dis.index_select(0, row) * wv * dis.index_select(0, col)
        out = (vals, None if loops is None else dis * dis * loops)
        if cacheable:
            self._norm_cache = (key, out)
        return out

    def _normalised(self, adj: Adjacency, edge_weight: Optional[Tensor], N: int,
                    dtype: torch.dtype) -> Tuple[CSR, Optional[Tensor], Optional[Tensor]]:
        """``(pattern CSR over targets, values, self term)`` of this call, or with ``cached``
        of the first call."""
        if self.cached and self._cached_graph is not None:
            A, vals, self_w = self._cached_graph
            if A.shape[0] != N:
                raise ValueError(f"GCNConv: cached=True holds the graph of the first call "
                                 f"({A.shape[0]} nodes), got x with {N} rows")
            return A, vals, self_w
        A, w, _ = self._graph(adj, edge_weight, N, dtype)
        vals, self_w = self._normalise(adj, edge_weight, A, w, dtype)
        if self.cached and not tracing():
            self._cached_graph = (A, None if vals is None else vals.detach(),
                                  None if self_w is None else self_w.detach())
        return A, vals, self_w

    def forward(self, x: Union[Tensor, CSR], adj_t: Optional[Adjacency] = None,
                edge_weight: Optional[Tensor] = None, *, relu: bool = False,
                edge_index: Optional[Tensor] = None, adj: Optional[Adjacency] = None) -> Tensor:
        """``Â x W^T + b``, then ReLU when ``relu`` (fused into the aggregation's epilogue at
        inference). The graph: ``adj_t`` (a CSR, rows = targets) or an ``edge_index``."""
        adj_t = graph_argument("GCNConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        if is_meta(x, adj_t, edge_weight):
            return self._meta_output(x, adj_t, edge_weight, self.out_dim)
        if _inference(self):
            return self._infer(x, adj_t, edge_weight, None, relu)
        N = self._num_nodes(x)
        A, vals, self_w = self._normalised(adj_t, edge_weight, N, self._dtype())
        An = A if vals is None else A.with_values(vals)
        looped = None if self_w is None else self._with_loops(An, vals, self_w)

        def aggregate(h: Tensor) -> Tensor:
            if looped is not None:
                return spmm(looped, h)
            out = spmm(An, h)
            return out if self_w is None else out + self_w.unsqueeze(1) * h

        if isinstance(x, CSR) or self.out_dim <= self.in_dim:
            out = aggregate(self._transform(x))
        else:
            out = self.lin(aggregate(x))
        out = self._add_bias(out)
        return F.relu(out, inplace=not torch.is_grad_enabled()) if relu else out

    def _aggregation(self, adj, edge_weight, A, w, per_target, N, dtype, extra) -> CSR:
        A, vals, self_w = self._normalised(adj, edge_weight, N, dtype)
        if vals is None:
            vals = torch.ones(A.nnz, dtype=dtype, device=A.device)
        if self_w is None:
            return A.with_values(vals.detach())
        return self._looped(A, vals.detach(), self_w.detach())

    def _with_loops(self, An: CSR, vals: Tensor, self_w: Tensor) -> Optional[CSR]:
        """For inference (no gradient to the graph): ``Â`` with its diagonal stored, so one
        SpMM replaces SpMM + an elementwise self term (two fewer N x width temporaries, which
        on a 20k-node graph at width 512 cost more than the SpMM itself). Cached with the
        normalisation; ``None`` when a gradient must flow through the values."""
        if vals.requires_grad or self_w.requires_grad or tracing():
            return None
        cache = self._loop_cache
        if cache is not None and cache[0] is vals:
            return cache[1]
        looped = self._looped(An, vals, self_w)
        self._loop_cache = (vals, looped)
        return looped

    def _self_entries(self, A: CSR, N: int) -> Tensor:
        if not self._loops:
            return torch.zeros(N, dtype=torch.long, device=A.device)
        if self._loops == "all":
            return torch.ones(N, dtype=torch.long, device=A.device)
        row = row_index(A)
        has_loop = torch.zeros(N, dtype=torch.long, device=A.device).index_add(
            0, row, (row == A.col.long()).long()) > 0
        return (~has_loop).long()

    def macs(self, x: Any, adj_t: Optional[Adjacency] = None,
             edge_weight: Optional[Tensor] = None, *, order: str = "auto", dense: bool = False,
             edge_index: Optional[Tensor] = None, adj: Optional[Adjacency] = None) -> dict:
        """Exact MACs of one call in ``order`` (``"auto"``: the layer's ``order``, by default
        the one with fewer MACs, as inference runs it): ``transform`` (``N * nnz(W)``, or for
        sparse ``x`` per stored feature times the kept weights of its column), ``aggregate``
        (kept edges x width; for sparse ``x`` aggregated first, the stored features of each
        edge's source) and ``self`` (the added self loops x width). ``dense=True`` counts every
        weight and stored edge as kept (the unpruned layer on this graph)."""
        adj_t = graph_argument("GCNConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, _ = self._graph(adj_t, edge_weight, N, self._dtype())
        o, c, width = self._order_macs(x, A, w, N, dense, order)
        loops = self._self_entries(A, N)
        if isinstance(x, CSR) and o == "aggregate_first":
            self_macs = int((loops * (x.rowptr[1:] - x.rowptr[:-1]).long()).sum())
        else:
            self_macs = int(loops.sum()) * width
        out = {"transform": c["transform"], "aggregate": c["aggregate"] - self_macs,
               "self": self_macs}
        out["total"] = sum(out.values())
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_dim}, {self.out_dim}, improved={self.improved}, cached={self.cached}, "
                f"add_self_loops={self.add_self_loops!r}, normalize={self.normalize}, "
                f"bias={self.bias is not None}, degree={self.degree!r}")


class GINConv(GraphConv):
    """Graph isomorphism layer with mean aggregation and learnable edge weights (UGS's GIN).

    ``h_i = lin((1 + eps) x_i + (1 / deg_i) sum_j w_ij x_j) + b`` where ``deg_i`` counts the
    stored entries of row ``i`` of the *original* pattern: pruned (zero-weight) edges stay in
    the denominator, as in the reference (DGL's mean over all incoming messages). Pass
    ``deg`` (``(N,)``) to keep the original denominators on a compacted graph. For
    ``edge_index`` input ``deg_i`` counts the columns with target ``i`` (duplicates included).
    ``lin`` is linear, so the layer transforms first when ``out_dim < in_dim`` or ``x`` is
    sparse; the result is the same.

    Not PyG's ``GINConv(nn, eps=0., train_eps=False)``, which sums over the neighbours and
    applies any ``nn``: this layer is UGS's, a mean and one ``lin`` (``train_eps`` defaults to
    ``True`` as there). Without edge weights it equals PyG's
    ``GINConv(Linear(in_dim, out_dim, bias), eps, train_eps, aggr="mean")``. With duplicate
    edges an ``adj_t`` stores one entry per pair (its value the count) while ``deg`` of an
    ``edge_index`` counts every column: pass ``deg`` to get the ``edge_index`` result.

    Example::

        >>> conv = GINConv(16, 8)
        >>> y = conv(x, adj_t, edge_weight=mask, deg=original_degrees)
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 0.0, train_eps: bool = True,
                 bias: bool = False):
        super().__init__(in_dim, out_dim, out_dim, bias)
        self.out_dim = out_dim
        self.initial_eps = float(eps)
        if train_eps:
            self.eps = nn.Parameter(torch.tensor([float(eps)]))
        else:
            self.register_buffer("eps", torch.tensor([float(eps)]))

    def _row_scale(self, deg: Optional[Tensor], per_target: Tensor, N: int, dtype,
                   device) -> Tensor:
        if deg is None:
            deg = per_target
        else:
            if not isinstance(deg, Tensor):
                raise TypeError(f"GINConv: deg must be a tensor or None, got {type(deg).__name__}")
            if deg.shape != (N,):
                raise ValueError(f"GINConv: deg must have shape ({N},), got {tuple(deg.shape)}")
            if deg.device != device:
                raise ValueError(f"GINConv: deg is on {deg.device}, the graph on {device}")
        deg = deg.detach().to(dtype)
        pos = deg > 0
        safe = torch.where(pos, deg, torch.ones_like(deg))
        return torch.where(pos, 1.0 / safe, torch.zeros_like(deg))

    def forward(self, x: Union[Tensor, CSR], adj_t: Optional[Adjacency] = None,
                edge_weight: Optional[Tensor] = None, deg: Optional[Tensor] = None, *,
                relu: bool = False, edge_index: Optional[Tensor] = None,
                adj: Optional[Adjacency] = None) -> Tensor:
        """The layer, then ReLU when ``relu`` (fused into the aggregation at inference). The
        graph: ``adj_t`` (a CSR, rows = targets) or an ``edge_index``."""
        adj_t = graph_argument("GINConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        if is_meta(x, adj_t, edge_weight, deg):
            return self._meta_output(x, adj_t, edge_weight, self.out_dim)
        if _inference(self):
            return self._infer(x, adj_t, edge_weight, deg, relu)
        N = self._num_nodes(x)
        dtype = self._dtype()
        A, w, per_target = self._graph(adj_t, edge_weight, N, dtype)
        rs = self._row_scale(deg, per_target, N, dtype, A.device)
        Aw = A if w is None else A.with_values(w)
        one_eps = 1 + self.eps.to(dtype)
        if isinstance(x, CSR) or self.out_dim < self.in_dim:
            z = self._transform(x)
            out = one_eps * z + spmm(Aw, z, row_scale=rs)
        else:
            out = self.lin(one_eps * x + spmm(Aw, x, row_scale=rs))
        out = self._add_bias(out)
        return F.relu(out, inplace=not torch.is_grad_enabled()) if relu else out

    def _owned(self) -> Tuple[Optional[Tensor], ...]:
        return (self._parameters.get("bias"), self.eps)

    def _aggregation(self, adj, edge_weight, A, w, per_target, N, dtype, extra) -> CSR:
        """``diag(1/deg) A_w + (1 + eps) I``: the mean and the self term as one matrix."""
        rs = self._row_scale(extra, per_target, N, dtype, A.device)
        vals = rs.index_select(0, row_index(A))
        if w is not None:
            vals = vals * w.detach()
        diag = (1 + self.eps.detach().to(dtype)).expand(N)
        return self._looped(A, vals, diag)

    def macs(self, x: Any, adj_t: Optional[Adjacency] = None,
             edge_weight: Optional[Tensor] = None, deg: Optional[Tensor] = None, *,
             order: str = "auto", dense: bool = False, edge_index: Optional[Tensor] = None,
             adj: Optional[Adjacency] = None) -> dict:
        """Exact MACs of one call in ``order`` (as :meth:`GCNConv.macs`): ``transform``,
        ``aggregate`` (kept edges x width) and ``self`` (the ``(1 + eps) x`` and ``1/deg``
        terms, ``N`` x width each)."""
        adj_t = graph_argument("GINConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, _ = self._graph(adj_t, edge_weight, N, self._dtype())
        o, c, width = self._order_macs(x, A, w, N, dense, order)
        diag = x.nnz if isinstance(x, CSR) and o == "aggregate_first" else N * width
        out = {"transform": c["transform"], "aggregate": c["aggregate"] - diag,
               "self": diag + N * width}
        out["total"] = sum(out.values())
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_dim}, {self.out_dim}, train_eps={isinstance(self.eps, nn.Parameter)}, "
                f"bias={self.bias is not None}")


class GATConv(GraphConv):
    """Graph attention (Veličković et al.) on the sparse pattern, with learnable edge weights.

    Per head ``h``: ``z = x W_h^T``; ``e_ij = LeakyReLU(a_dst · z_i + a_src · z_j)`` from
    per-node scores gathered per edge (no dense ``N x N``); with ``edge_weight``,
    ``e_ij *= w_ij`` (UGS multiplies the logit by the mask). Entries with ``w_ij == 0`` are
    pruned: left out of the softmax, so they cost nothing (true sparse GAT). With
    ``zero_logit_quirk=True`` they keep logit 0 and stay in the softmax, as in the UGS
    reference code (one of its quirks). ``alpha = edge_softmax(e)`` per target, dropout on ``alpha``
    (training only), ``out_i = sum_j alpha_ij z_j`` by :func:`~sparselth.ops.spmm` with
    ``alpha`` as values; heads are concatenated (``concat=True``, ``(N, heads*out_dim)``)
    or averaged.

    PyG's signature and defaults: ``add_self_loops=True`` drops the stored self loops and
    attends over one loop per node (weight 1, so pruning cannot remove it; a stored loop's
    edge weight is unused); ``bias=True``. ``attn_dropout`` is PyG's ``dropout``.
    :class:`sparselth.models.GAT` stores its (prunable) loops in the graph and passes
    ``add_self_loops=False``.

    Parameters: ``lin.weight`` ``(heads*out_dim, in_dim)`` (head-major rows), ``att_src`` and
    ``att_dst`` ``(heads, out_dim)``, initialised like the reference's
    ``Linear(2*out_dim, 1)`` attention layer.

    Example::

        >>> conv = GATConv(16, 8, heads=4)
        >>> y = conv(x, edge_index, edge_weight=mask)            # (N, 32)
    """

    orders = ("transform_first",)

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, attn_dropout: float = 0.0,
                 add_self_loops: bool = True, bias: bool = True,
                 zero_logit_quirk: bool = False):
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
            raise ValueError(f"GATConv: heads must be a positive int, got {heads!r}")
        if not isinstance(out_dim, int) or isinstance(out_dim, bool) or out_dim < 1:
            raise ValueError(f"GATConv: out_dim must be a positive int, got {out_dim!r}")
        if not 0.0 <= attn_dropout < 1.0:
            raise ValueError(f"GATConv: attn_dropout must be in [0, 1), got {attn_dropout!r}")
        if not isinstance(add_self_loops, bool):
            raise TypeError(f"GATConv: add_self_loops must be a bool, got {add_self_loops!r}")
        super().__init__(in_dim, heads * out_dim, heads * out_dim if concat else out_dim, bias)
        self.out_dim, self.heads, self.concat = out_dim, heads, concat
        self.negative_slope, self.attn_dropout = float(negative_slope), float(attn_dropout)
        self.add_self_loops = add_self_loops
        self.zero_logit_quirk = bool(zero_logit_quirk)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        bound = 1.0 / math.sqrt(2 * out_dim)
        nn.init.uniform_(self.att_src, -bound, bound)
        nn.init.uniform_(self.att_dst, -bound, bound)
        self._loop_cache: Optional[tuple] = None

    def _with_self_loops(self, A: CSR, w: Optional[Tensor]
                         ) -> Tuple[CSR, Optional[Tensor], Tensor]:
        """``(A with a self loop appended to every row, its weights, structural keep)``: the
        stored self loops stay in the pattern, left out by ``keep``; the added loops weigh 1.
        Shapes follow ``A``'s, not its values (traceable); cached while ``A``'s structure
        tensors are the same."""
        N = A.shape[0]
        c = self._loop_cache
        if tracing() or c is None or c[0] is not A.rowptr or c[1] is not A.col:
            row, col = row_index(A), A.col.long()
            loop = torch.arange(N, device=A.device)
            r, cc = torch.cat([row, loop]), torch.cat([col, loop])
            perm = torch.sort(r * max(N, 1) + cc, stable=True).indices
            per_row = (A.rowptr[1:] - A.rowptr[:-1]).long() + 1
            rowptr = torch.cat([per_row.new_zeros(1), torch.cumsum(per_row, 0)])
            keep = torch.cat([row != col, torch.ones(N, dtype=torch.bool, device=A.device)])
            idx = torch.int32 if A.nnz + N <= _INT32_MAX else torch.int64
            A2 = CSR._trusted(rowptr.to(idx), cc.index_select(0, perm).to(idx), None, A.shape)
            c = (A.rowptr, A.col, A2, perm, keep.index_select(0, perm))
            if not tracing():
                self._loop_cache = c
        A2, perm, keep = c[2:]
        if w is None:
            return A2, None, keep
        return A2, torch.cat([w, w.new_ones(N)]).index_select(0, perm), keep

    def _attended(self, adj_t: Adjacency, edge_weight: Optional[Tensor], N: int,
                  dtype: torch.dtype) -> Tuple[CSR, Optional[Tensor], Optional[Tensor]]:
        """``(pattern, weight per entry or None, entries in the softmax or None = all)``."""
        if isinstance(adj_t, Tensor) and tracing():
            raise ValueError("GATConv: under torch.compile / torch.export pass adj_t (a CSR, e.g. "
                             "adj_t_from_edge_index(edge_index, N)) instead of an edge_index: "
                             "merging duplicate edges has data-dependent shapes")
        A, w, _ = self._graph(adj_t, edge_weight, N, dtype)
        keep = None
        if self.add_self_loops:
            A, w, keep = self._with_self_loops(A, w)
        if w is not None and not self.zero_logit_quirk:
            kept = w.detach() != 0
            keep = kept if keep is None else keep & kept
        return A, w, keep

    def forward(self, x: Union[Tensor, CSR], adj_t: Optional[Adjacency] = None,
                edge_weight: Optional[Tensor] = None, *, edge_index: Optional[Tensor] = None,
                adj: Optional[Adjacency] = None) -> Tensor:
        """The layer. The graph: ``adj_t`` (a CSR, rows = targets) or an ``edge_index``."""
        adj_t = graph_argument("GATConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        H, C = self.heads, self.out_dim
        if is_meta(x, adj_t, edge_weight):
            return self._meta_output(x, adj_t, edge_weight, H * C if self.concat else C)
        N = self._num_nodes(x)
        A, w, keep = self._attended(adj_t, edge_weight, N, self._dtype())
        z = self._transform(x).view(N, H, C)
        s_src = (z * self.att_src).sum(-1)                      # (N, H)
        s_dst = (z * self.att_dst).sum(-1)
        row, col = row_index(A), A.col.long()
        e = F.leaky_relu(s_dst.index_select(0, row) + s_src.index_select(0, col),
                         self.negative_slope)                   # (nnz, H)
        if w is not None:
            e = e * w.unsqueeze(1)
        alpha = edge_softmax(A, e, keep)
        if self.attn_dropout > 0:
            alpha = F.dropout(alpha, self.attn_dropout, self.training)
        outs = [spmm(A.with_values(alpha[:, h].contiguous()), z[:, h, :]) for h in range(H)]
        if self.concat:
            out = outs[0] if H == 1 else torch.cat(outs, dim=1)
        else:
            out = outs[0] if H == 1 else torch.stack(outs, 0).mean(0)
        return self._add_bias(out)

    def macs(self, x: Any, adj_t: Optional[Adjacency] = None,
             edge_weight: Optional[Tensor] = None, *, order: str = "auto", dense: bool = False,
             edge_index: Optional[Tensor] = None, adj: Optional[Adjacency] = None) -> dict:
        """Exact MACs of one call: ``transform``, ``attention`` (per-node scores
        ``N * (nnz(att_src) + nnz(att_dst))`` and one logit per kept edge and head),
        ``aggregate`` (kept edges x heads x out_dim). Attention needs ``x W^T``, so the layer
        always transforms first (``order`` is accepted for a common signature);
        ``dense=True`` counts every weight and stored edge as kept."""
        adj_t = graph_argument("GATConv", adj_t, edge_index=edge_index, adj=adj)
        adj_t, edge_weight = read_values(adj_t, edge_weight)
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, keep = self._attended(adj_t, None if dense else edge_weight, N, self._dtype())
        edges = A.nnz if keep is None else int(keep.sum())
        if dense:
            att = self.att_src.numel() + self.att_dst.numel()
        else:
            att = int((self.att_src.detach() != 0).sum() + (self.att_dst.detach() != 0).sum())
        out = {"transform": self._transform_macs(x, dense),
               "attention": N * att + edges * self.heads,
               "aggregate": edges * self.heads * self.out_dim}
        out["total"] = sum(out.values())
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_dim}, {self.out_dim}, heads={self.heads}, concat={self.concat}, "
                f"attn_dropout={self.attn_dropout}, add_self_loops={self.add_self_loops}, "
                f"bias={self.bias is not None}, zero_logit_quirk={self.zero_logit_quirk}")
