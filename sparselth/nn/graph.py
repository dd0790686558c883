"""Graph convolutions on sparselth's kernels, with learnable per-edge weights (UGS edge masks).

:class:`GCNConv`, :class:`GINConv` and :class:`GATConv` aggregate over a graph given either as

* a :class:`~sparselth.CSR` ``adj`` of shape ``(N, N)`` whose rows are the *targets*:
  ``adj[i, j]`` stored means a message ``j -> i``; ``edge_weight[e]`` belongs to the ``e``-th
  stored entry in CSR order (``adj.val``, if present, is multiplied in); or
* a PyG-style ``edge_index`` LongTensor ``[2, E]`` (row 0 = source ``j``, row 1 = target
  ``i``), with ``N = x.size(0)``. It is sorted into a CSR over targets (by target, then
  source); ``edge_weight[e]`` belongs to column ``e`` of ``edge_index`` and is permuted into
  CSR order (differentiably). Duplicate columns are merged into one stored entry whose
  weight is the sum of theirs (the count of duplicates when ``edge_weight`` is None). The
  conversion is cached while the same ``edge_index`` tensor is passed unchanged.

Edge weights enter the aggregation as the values of the sparse matrix, so their gradient
comes from :func:`sparselth.ops.spmm`'s value gradient (an SDDMM) with no dense ``N x N``
anywhere. ``x`` may be dense ``(N, in_dim)`` or a CSR of sparse node features (then
``x W^T`` runs as ``spmm(x, W^T)``). Every layer keeps its weight in an ``nn.Linear`` named
``lin`` (no bias; the optional bias is a separate ``bias`` parameter), so weight names are
``<conv>.lin.weight``. ``macs(x, adj, edge_weight)`` counts the exact multiply-accumulates
of one call, treating zero weights and zero-weight edges as pruned.

Inference (eval mode, no gradient, not traced) runs a cached plan
(:mod:`sparselth.nn._graph_plan`): :class:`GCNConv` and :class:`GINConv` pick ``A(XW)`` or
``(AX)W`` by exact MACs (or as ``order`` says), run the aggregation, self term, degree scaling,
bias and ReLU (``relu=True``) as one SpMM, and multiply sparse features by a compiled sparse
weight as a sparse x sparse product. Training runs the differentiable path below unchanged.
"""

from __future__ import annotations

import itertools

import math
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.edge_softmax import edge_softmax
from ..ops.spmm import spmm
from ..sparse.csr import CSR
from ._graph_plan import Plan, TransposedWeight, kept_per_col, order_costs, resolve_order

__all__ = ["GCNConv", "GINConv", "GATConv"]

_INT32_MAX = 2**31 - 1
Adjacency = Union[CSR, Tensor]


def _same(key_a: tuple, key_b: Optional[tuple]) -> bool:
    """Cache keys: objects compare by identity, versions/dtypes by value."""
    if key_b is None or len(key_a) != len(key_b):
        return False
    for a, b in zip(key_a, key_b):
        if isinstance(a, (int, torch.dtype, torch.device, type(None))):
            if a != b:
                return False
        elif a is not b:
            return False
    return True


def _require_floating(layer: str, arg: str, t: Tensor) -> None:
    if not t.dtype.is_floating_point:
        raise TypeError(f"{layer}: {arg} must be floating, got {t.dtype}")


def _version(t: Optional[Tensor]) -> int:
    return -1 if t is None else t._version


def _no_autograd() -> bool:
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def _inference(module: nn.Module) -> bool:
    """Eval mode without autograd and not traced: the layer runs its cached plan."""
    return not module.training and _no_autograd()


class _GraphConv(nn.Module):
    """Shared plumbing: input checks, the ``edge_index`` -> CSR conversion, the transform."""

    #: the inference orders this layer can run (``sparselth.compile`` times each)
    orders: Tuple[str, ...] = ("transform_first", "aggregate_first")

    def __init__(self, in_dim: int, lin_out: int, bias_dim: int, bias: bool):
        super().__init__()
        name = type(self).__name__
        for arg, v in (("in_dim", in_dim), ("out_dim", lin_out)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        self.in_dim = in_dim
        self.lin = nn.Linear(in_dim, lin_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(bias_dim)) if bias else None
        self._ei_cache: Optional[tuple] = None
        #: inference order: "auto" (fewer MACs), "transform_first" A(XW), "aggregate_first" (AX)W
        self.order = "auto"
        self._plan: Optional[Plan] = None
        self._wt_cache: Optional[TransposedWeight] = None

    # ------------------------------------------------------------------ inputs
    def _num_nodes(self, x: Any) -> int:
        name = type(self).__name__
        if isinstance(x, CSR):
            if x.shape[1] != self.in_dim:
                raise ValueError(f"{name}: x must have in_dim = {self.in_dim} columns, got shape "
                                 f"{x.shape}")
            return x.shape[0]
        if isinstance(x, Tensor):
            if x.dim() != 2 or x.shape[1] != self.in_dim:
                raise ValueError(f"{name}: x must have shape (N, {self.in_dim}), got "
                                 f"{tuple(x.shape)}")
            _require_floating(name, "x", x)
            return x.shape[0]
        if isinstance(x, int) and not isinstance(x, bool) and x >= 0:
            return x
        raise TypeError(f"{name}: x must be a dense tensor or a sparselth.CSR, "
                        f"got {type(x).__name__}")

    def _from_edge_index(self, edge_index: Tensor, num_nodes: int):
        """``(pattern CSR over targets, inverse, perm or None, edges per target)``, cached."""
        key = (edge_index, edge_index._version, num_nodes, edge_index.device)
        if self._ei_cache is not None and _same(key, self._ei_cache[0]):
            return self._ei_cache[1]
        name = type(self).__name__
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"{name}: edge_index must have shape (2, E), "
                             f"got {tuple(edge_index.shape)}")
        if edge_index.dtype.is_floating_point or edge_index.dtype in (torch.bool, torch.complex64,
                                                                      torch.complex128):
            raise TypeError(f"{name}: edge_index must hold integer indices, got {edge_index.dtype}")
        src, tgt = edge_index[0].long(), edge_index[1].long()
        E = src.numel()
        if E:
            lo, hi = int(edge_index.min()), int(edge_index.max())
            if lo < 0 or hi >= num_nodes:
                raise ValueError(f"{name}: edge_index entries must lie in [0, {num_nodes}) "
                                 f"(num_nodes = x.size(0)), got min {lo} max {hi}")
        n = max(num_nodes, 1)
        uniq, inverse = torch.unique(tgt * n + src, sorted=True, return_inverse=True)
        rows = torch.div(uniq, n, rounding_mode="floor")
        cols = uniq - rows * n
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
        torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0, out=rowptr[1:])
        idx = torch.int32 if max(num_nodes, uniq.numel()) <= _INT32_MAX else torch.int64
        A = CSR(rowptr.to(idx), cols.to(idx), None, (num_nodes, num_nodes), validate=False)
        perm = None
        if uniq.numel() == E:   # no duplicates: CSR entry k is edge column perm[k]
            perm = torch.empty_like(inverse).scatter_(
                0, inverse, torch.arange(E, device=inverse.device))
        per_target = torch.bincount(tgt, minlength=num_nodes)
        out = (A, inverse, perm, per_target)
        if not torch.compiler.is_compiling():
            self._ei_cache = (key, out)
        return out

    def _graph(self, adj: Adjacency, edge_weight: Optional[Tensor], num_nodes: int,
               dtype: torch.dtype) -> Tuple[CSR, Optional[Tensor], Tensor]:
        """``(pattern CSR over targets, weight per stored entry or None, messages per target)``."""
        name = type(self).__name__
        if edge_weight is not None and not isinstance(edge_weight, Tensor):
            raise TypeError(f"{name}: edge_weight must be a tensor or None, got "
                            f"{type(edge_weight).__name__}")
        if edge_weight is not None:
            _require_floating(name, "edge_weight", edge_weight)
            if edge_weight.dim() != 1:
                raise ValueError(f"{name}: edge_weight must be 1-D, "
                                 f"got shape {tuple(edge_weight.shape)}")
        if isinstance(adj, CSR):
            if adj.shape != (num_nodes, num_nodes):
                raise ValueError(f"{name}: adj must have shape ({num_nodes}, {num_nodes}) "
                                 f"(N = x.size(0)), got {adj.shape}")
            if edge_weight is not None and edge_weight.numel() != adj.nnz:
                raise ValueError(f"{name}: edge_weight must have shape ({adj.nnz},) (one value per "
                                 f"stored entry of adj), got {tuple(edge_weight.shape)}")
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                adj.t()   # cache the transpose on the caller's object; value-swapped views share it
            A = adj if adj.val is None else adj.with_values(None)
            w = adj.val
            if edge_weight is not None:
                w = edge_weight if w is None else w * edge_weight
            per_target = (adj.rowptr[1:] - adj.rowptr[:-1]).long()
        elif isinstance(adj, Tensor):
            A, inverse, perm, per_target = self._from_edge_index(adj, num_nodes)
            E = adj.shape[1]
            if edge_weight is not None and edge_weight.numel() != E:
                raise ValueError(f"{name}: edge_weight must have shape ({E},) (one value per "
                                 f"edge_index column), got {tuple(edge_weight.shape)}")
            if edge_weight is None:
                w = None if perm is not None else torch.bincount(inverse, minlength=A.nnz).to(dtype)
            elif perm is not None:
                w = edge_weight.index_select(0, perm)
            else:
                w = edge_weight.new_zeros(A.nnz).index_add(0, inverse, edge_weight)
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                A.t()
        else:
            raise TypeError(f"{name}: adj must be a sparselth.CSR or an edge_index tensor [2, E], "
                            f"got {type(adj).__name__}")
        if w is not None:
            if w.device != A.device:
                raise ValueError(f"{name}: edge_weight is on {w.device} but the graph is on "
                                 f"{A.device}")
            w = w.to(dtype)
        return A, w, per_target

    def _dtype(self) -> torch.dtype:
        """The layer's floating dtype; ``lin`` may be a compiled sparse layer without ``weight``."""
        for t in itertools.chain(self.lin.parameters(), self.lin.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def _weight(self) -> Tensor:
        """``lin``'s dense ``(out, in)`` weight (pruned entries as zeros), also when ``lin`` was
        swapped for a compiled sparse layer."""
        dense_weight = getattr(self.lin, "dense_weight", None)
        if callable(dense_weight):   # a deploy-time layer (its own ``weight``, if any, is a block)
            return dense_weight()
        return self.lin.weight

    def _transform(self, x: Union[Tensor, CSR]) -> Tensor:
        """``x W^T``; sparse node features go through ``spmm(x, W^T)``, dense ones through
        ``lin`` (so a compiled ticket's sparse-weight route runs there). Without autograd the
        transposed weight is cached and a compiled sparse ``lin`` multiplies sparse features
        as a sparse x sparse product."""
        if isinstance(x, CSR) and _no_autograd():
            return self._transform_sparse_infer(x)
        W = self._weight()
        if isinstance(x, CSR):
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                x.t()
            if x.val is not None and x.val.dtype != W.dtype:
                x = x.with_values(x.val.to(W.dtype))
            return spmm(x, W.t())
        return self.lin(x)

    def _add_bias(self, out: Tensor) -> Tensor:
        return out if self.bias is None else out + self.bias

    # ------------------------------------------------------------------ inference
    def _transform_sparse_infer(self, x: CSR) -> Tensor:
        """``x W^T`` for CSR features without autograd, ``W^T`` cached while ``lin`` is
        unchanged."""
        c = self._wt_cache
        if c is None or not c.fresh(self.lin):
            c = self._wt_cache = TransposedWeight(self.lin, self._weight())
        return c.product(x)

    def _owned(self) -> Tuple[Optional[Tensor], ...]:
        """The layer's own tensors an inference plan reads (besides ``lin``'s)."""
        return (self._parameters.get("bias"),)

    def _plan_for(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor],
                  extra: Optional[Tensor] = None) -> Plan:
        """The cached inference plan for these inputs, rebuilt when any of them changed."""
        p = self._plan
        if p is None or not p.fresh(self, x, adj, edge_weight, extra):
            N = self._num_nodes(x)
            dtype = self._dtype()
            A, w, per_target = self._graph(adj, edge_weight, N, dtype)
            agg = self._aggregation(adj, edge_weight, A, w, per_target, N, dtype, extra)
            p = self._plan = Plan(self, x, adj, edge_weight, extra, agg, dtype)
        return p

    def _infer(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor],
               extra: Optional[Tensor], relu: bool) -> Tensor:
        """One inference call on the cached plan."""
        return self._plan_for(x, adj, edge_weight, extra).run(self, x, relu)

    def _aggregation(self, adj, edge_weight, A, w, per_target, N, dtype, extra) -> CSR:
        raise NotImplementedError

    @staticmethod
    def _looped(A: CSR, vals: Tensor, diag: Tensor) -> CSR:
        """``A`` with values ``vals`` plus ``diag`` on the diagonal (added to a stored one)."""
        N = A.shape[0]
        loop = torch.arange(N, device=A.device)
        return CSR.from_coo(torch.cat([A.row(), loop]), torch.cat([A.col.long(), loop]),
                            torch.cat([vals, diag]), A.shape, A.col.dtype)

    def _order_macs(self, x: Any, A: CSR, w: Optional[Tensor], N: int, dense: bool,
                    order: str) -> Tuple[str, dict, int]:
        """``(order, its MACs {"transform", "aggregate"}, width)`` with the self term as one
        stored diagonal entry per node; ``dense=True`` counts every weight and stored edge."""
        W = self._weight().detach()
        if dense:
            per_col = torch.full((self.in_dim,), W.shape[0], dtype=torch.long, device=W.device)
            kept = torch.ones(A.nnz, dtype=torch.bool, device=A.device)
        else:
            per_col = kept_per_col(W)
            kept = torch.ones(A.nnz, dtype=torch.bool, device=A.device) if w is None \
                else w.detach() != 0
        edges = int(kept.sum())
        agg_cols = None
        if isinstance(x, CSR):
            agg_cols = torch.bincount(A.col.long()[kept], minlength=N) + 1
        costs = order_costs(N, edges + N, agg_cols, self.in_dim, W.shape[0], x, per_col,
                            int(per_col.sum()))
        o = resolve_order(self.order if order == "auto" else order, costs)
        width = W.shape[0] if o == "transform_first" else self.in_dim
        return o, costs[o], width

    # ------------------------------------------------------------------ MACs
    def _transform_macs(self, x: Any, dense: bool = False) -> int:
        W = self._weight().detach()
        nz = torch.ones_like(W, dtype=torch.bool) if dense else W != 0
        if isinstance(x, CSR):
            col = x.col.long() if x.val is None else x.col.long()[x.val.detach() != 0]
            per_col = torch.bincount(col, minlength=self.in_dim)
            return int((per_col * nz.sum(0)).sum())
        return self._num_nodes(x) * int(nz.sum())

    @staticmethod
    def _kept_edges(A: CSR, w: Optional[Tensor]) -> int:
        return A.nnz if w is None else int((w.detach() != 0).sum())


class GCNConv(_GraphConv):
    """Kipf & Welling's graph convolution with learnable edge weights.

    ``y = Â (x W^T) + b`` with ``Â = D^-1/2 (A_w + I) D^-1/2``, ``A_w`` the graph's pattern with
    values ``edge_weight`` (1 if None). As in UGS the self loops are added after the edge
    weights, so they cannot be pruned; they are applied as an elementwise ``x_i / D_i`` term,
    not stored entries. Differentiable with respect to ``edge_weight``, also through the
    degrees. The transform runs first when ``out_dim <= in_dim`` (or ``x`` is sparse), else
    the aggregation (fewer MACs either way). The normalised values are cached while ``adj``
    and ``edge_weight`` are the same, unmodified tensors and need no gradient (the retraining
    phase of UGS).

    ``degree`` says whose weights make up ``D`` (rows of ``A_w`` are targets, so ``w_ij`` is
    the message ``j -> i``):

    * ``"receiver"`` (default): ``D_i = 1 + sum_j w_ij``, the weights of the messages node
      ``i`` *receives* (the usual GCN, PyG's ``gcn_norm``);
    * ``"sender"``: ``D_j = 1 + sum_i w_ij``, the weights of the messages node ``j`` *sends*.
      This is the UGS reference (``torch_normalize_adj``: ``D^-1/2 A_m^T D^-1/2`` with ``D``
      the row sums of the masked ``A_m``, whose rows are senders), and the default of
      :class:`sparselth.models.GCN`.

    Both agree while ``A_w`` is symmetric (an unpruned graph); a pruned, asymmetric edge mask
    makes them differ. Zero-weight edges count in neither, so dropping them
    (``compact_graph``) leaves the output unchanged in both modes.

    Example::

        >>> conv = GCNConv(16, 8, degree="sender")
        >>> y = conv(x, edge_index, edge_weight=mask)          # mask: (E,), requires_grad
    """

    degrees = ("receiver", "sender")

    def __init__(self, in_dim: int, out_dim: int, bias: bool = False, degree: str = "receiver"):
        super().__init__(in_dim, out_dim, out_dim, bias)
        self.out_dim = out_dim
        self._norm_cache: Optional[tuple] = None
        self._degree = "receiver"
        self.degree = degree

    @property
    def degree(self) -> str:
        """``"receiver"`` or ``"sender"``: whose edge weights make up the degree (see above)."""
        return self._degree

    @degree.setter
    def degree(self, value: str) -> None:
        if value not in self.degrees:
            raise ValueError(f"GCNConv: degree must be 'receiver' or 'sender', got {value!r}")
        if value != self._degree:   # the cached normalisation and plan no longer hold
            self._norm_cache = None
            self._plan = None
            self._loop_cache = None
        self._degree = value

    def _normalise(self, adj: Adjacency, edge_weight: Optional[Tensor], A: CSR,
                   w: Optional[Tensor], dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """``(normalised values per stored entry, 1/D per node)``."""
        cacheable = not torch.compiler.is_compiling() and not (
            torch.is_grad_enabled() and w is not None and w.requires_grad)
        key = (adj, _version(adj.val) if isinstance(adj, CSR) else adj._version, edge_weight,
               _version(edge_weight), dtype, A.device, self._degree)
        if cacheable and self._norm_cache is not None and _same(key, self._norm_cache[0]):
            return self._norm_cache[1]
        N = A.shape[0]
        row, col = A.row(), A.col.long()
        wv = torch.ones(A.nnz, dtype=dtype, device=A.device) if w is None else w
        by = col if self._degree == "sender" else row
        deg = torch.ones(N, dtype=dtype, device=A.device).index_add(0, by, wv)
        pos = deg > 0
        dis = torch.where(pos, torch.where(pos, deg, torch.ones_like(deg)).pow(-0.5),
                          torch.zeros_like(deg))
        vals = dis.index_select(0, row) * wv * dis.index_select(0, col)
        out = (vals, dis * dis)
        if cacheable:
            self._norm_cache = (key, out)
        return out

    def forward(self, x: Union[Tensor, CSR], adj: Adjacency,
                edge_weight: Optional[Tensor] = None, *, relu: bool = False) -> Tensor:
        """``Â x W^T + b``, then ReLU when ``relu`` (fused into the aggregation's epilogue at
        inference)."""
        if _inference(self):
            return self._infer(x, adj, edge_weight, None, relu)
        N = self._num_nodes(x)
        dtype = self._dtype()
        A, w, _ = self._graph(adj, edge_weight, N, dtype)
        vals, self_w = self._normalise(adj, edge_weight, A, w, dtype)
        An = A.with_values(vals)
        looped = self._with_loops(An, vals, self_w)
        if isinstance(x, CSR) or self.out_dim <= self.in_dim:
            h = self._transform(x)
            out = spmm(looped, h) if looped is not None else spmm(An, h) + self_w.unsqueeze(1) * h
        else:
            agg = spmm(looped, x) if looped is not None else spmm(An, x) + self_w.unsqueeze(1) * x
            out = self.lin(agg)
        out = self._add_bias(out)
        return F.relu(out, inplace=not torch.is_grad_enabled()) if relu else out

    def _aggregation(self, adj, edge_weight, A, w, per_target, N, dtype, extra) -> CSR:
        vals, self_w = self._normalise(adj, edge_weight, A, w, dtype)
        return self._looped(A, vals.detach(), self_w.detach())

    def _with_loops(self, An: CSR, vals: Tensor, self_w: Tensor) -> Optional[CSR]:
        """For inference (no gradient to the graph): ``Â`` with its diagonal stored, so one
        SpMM replaces SpMM + an elementwise self term (two fewer N x width temporaries, which
        on a 20k-node graph at width 512 cost more than the SpMM itself). Cached with the
        normalisation; ``None`` when a gradient must flow through the values."""
        if vals.requires_grad or self_w.requires_grad or torch.compiler.is_compiling():
            return None
        cache = getattr(self, "_loop_cache", None)
        if cache is not None and cache[0] is vals:
            return cache[1]
        N = An.shape[0]
        loop = torch.arange(N, device=An.device)
        looped = CSR.from_coo(torch.cat([An.row(), loop]), torch.cat([An.col.long(), loop]),
                              torch.cat([vals, self_w]), An.shape, An.col.dtype)
        self._loop_cache = (vals, looped)
        return looped

    def macs(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor] = None, *,
             order: str = "auto", dense: bool = False) -> dict:
        """Exact MACs of one call in ``order`` (``"auto"``: the layer's ``order``, by default
        the one with fewer MACs, as inference runs it): ``transform`` (``N * nnz(W)``, or for
        sparse ``x`` per stored feature times the kept weights of its column), ``aggregate``
        (kept edges x width; for sparse ``x`` aggregated first, the stored features of each
        edge's source) and ``self`` (the self term, ``N`` x width). ``dense=True`` counts
        every weight and stored edge as kept (the unpruned layer on this graph)."""
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, _ = self._graph(adj, edge_weight, N, self._dtype())
        o, c, width = self._order_macs(x, A, w, N, dense, order)
        self_macs = x.nnz if isinstance(x, CSR) and o == "aggregate_first" else N * width
        out = {"transform": c["transform"], "aggregate": c["aggregate"] - self_macs,
               "self": self_macs}
        out["total"] = sum(out.values())
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_dim}, {self.out_dim}, bias={self.bias is not None}, "
                f"degree={self.degree!r}")


class GINConv(_GraphConv):
    """Graph isomorphism layer with mean aggregation and learnable edge weights (UGS's GIN).

    ``h_i = lin((1 + eps) x_i + (1 / deg_i) sum_j w_ij x_j) + b`` where ``deg_i`` counts the
    stored entries of row ``i`` of the *original* pattern: pruned (zero-weight) edges stay in
    the denominator, as in the reference (DGL's mean over all incoming messages). Pass
    ``deg`` (``(N,)``) to keep the original denominators on a compacted graph. For
    ``edge_index`` input ``deg_i`` counts the columns with target ``i`` (duplicates included).
    ``lin`` is linear, so the layer transforms first when ``out_dim < in_dim`` or ``x`` is
    sparse; the result is the same.

    Example::

        >>> conv = GINConv(16, 8)
        >>> y = conv(x, adj, edge_weight=mask, deg=original_degrees)
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

    def forward(self, x: Union[Tensor, CSR], adj: Adjacency, edge_weight: Optional[Tensor] = None,
                deg: Optional[Tensor] = None, *, relu: bool = False) -> Tensor:
        """The layer, then ReLU when ``relu`` (fused into the aggregation at inference)."""
        if _inference(self):
            return self._infer(x, adj, edge_weight, deg, relu)
        N = self._num_nodes(x)
        dtype = self._dtype()
        A, w, per_target = self._graph(adj, edge_weight, N, dtype)
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
        vals = rs.index_select(0, A.row())
        if w is not None:
            vals = vals * w.detach()
        diag = (1 + self.eps.detach().to(dtype)).expand(N)
        return self._looped(A, vals, diag)

    def macs(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor] = None,
             deg: Optional[Tensor] = None, *, order: str = "auto", dense: bool = False) -> dict:
        """Exact MACs of one call in ``order`` (as :meth:`GCNConv.macs`): ``transform``,
        ``aggregate`` (kept edges x width) and ``self`` (the ``(1 + eps) x`` and ``1/deg``
        terms, ``N`` x width each)."""
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, _ = self._graph(adj, edge_weight, N, self._dtype())
        o, c, width = self._order_macs(x, A, w, N, dense, order)
        diag = x.nnz if isinstance(x, CSR) and o == "aggregate_first" else N * width
        out = {"transform": c["transform"], "aggregate": c["aggregate"] - diag,
               "self": diag + N * width}
        out["total"] = sum(out.values())
        return out

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}, train_eps={isinstance(self.eps, nn.Parameter)}"


class GATConv(_GraphConv):
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

    Parameters: ``lin.weight`` ``(heads*out_dim, in_dim)`` (head-major rows), ``att_src`` and
    ``att_dst`` ``(heads, out_dim)``, initialised like the reference's
    ``Linear(2*out_dim, 1)`` attention layer.

    Example::

        >>> conv = GATConv(16, 8, heads=4)
        >>> y = conv(x, adj, edge_weight=mask)                   # (N, 32)
    """

    orders = ("transform_first",)

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, attn_dropout: float = 0.0, bias: bool = False,
                 zero_logit_quirk: bool = False):
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
            raise ValueError(f"GATConv: heads must be a positive int, got {heads!r}")
        if not isinstance(out_dim, int) or isinstance(out_dim, bool) or out_dim < 1:
            raise ValueError(f"GATConv: out_dim must be a positive int, got {out_dim!r}")
        if not 0.0 <= attn_dropout < 1.0:
            raise ValueError(f"GATConv: attn_dropout must be in [0, 1), got {attn_dropout!r}")
        super().__init__(in_dim, heads * out_dim, heads * out_dim if concat else out_dim, bias)
        self.out_dim, self.heads, self.concat = out_dim, heads, concat
        self.negative_slope, self.attn_dropout = float(negative_slope), float(attn_dropout)
        self.zero_logit_quirk = bool(zero_logit_quirk)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        bound = 1.0 / math.sqrt(2 * out_dim)
        nn.init.uniform_(self.att_src, -bound, bound)
        nn.init.uniform_(self.att_dst, -bound, bound)

    def forward(self, x: Union[Tensor, CSR], adj: Adjacency,
                edge_weight: Optional[Tensor] = None) -> Tensor:
        N = self._num_nodes(x)
        dtype = self._dtype()
        A, w, _ = self._graph(adj, edge_weight, N, dtype)
        H, C = self.heads, self.out_dim
        z = self._transform(x).view(N, H, C)
        s_src = (z * self.att_src).sum(-1)                      # (N, H)
        s_dst = (z * self.att_dst).sum(-1)
        row, col = A.row(), A.col.long()
        e = F.leaky_relu(s_dst.index_select(0, row) + s_src.index_select(0, col),
                         self.negative_slope)                   # (nnz, H)
        keep = None
        if w is not None:
            e = e * w.unsqueeze(1)
            if not self.zero_logit_quirk:
                keep = w.detach() != 0
        alpha = edge_softmax(A, e, keep)
        if self.attn_dropout > 0:
            alpha = F.dropout(alpha, self.attn_dropout, self.training)
        outs = [spmm(A.with_values(alpha[:, h].contiguous()), z[:, h, :]) for h in range(H)]
        if self.concat:
            out = outs[0] if H == 1 else torch.cat(outs, dim=1)
        else:
            out = outs[0] if H == 1 else torch.stack(outs, 0).mean(0)
        return self._add_bias(out)

    def macs(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor] = None, *,
             order: str = "auto", dense: bool = False) -> dict:
        """Exact MACs of one call: ``transform``, ``attention`` (per-node scores
        ``N * (nnz(att_src) + nnz(att_dst))`` and one logit per kept edge and head),
        ``aggregate`` (kept edges x heads x out_dim). Attention needs ``x W^T``, so the layer
        always transforms first (``order`` is accepted for a common signature);
        ``dense=True`` counts every weight and stored edge as kept."""
        N = self._num_nodes(x)
        with torch.no_grad():
            A, w, _ = self._graph(adj, edge_weight, N, self._dtype())
        edges = A.nnz if self.zero_logit_quirk or dense else self._kept_edges(A, w)
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
                f"attn_dropout={self.attn_dropout}, zero_logit_quirk={self.zero_logit_quirk}")
