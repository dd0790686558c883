"""Inference plans of the graph layers: what :class:`GCNConv` and :class:`GINConv` run when no
gradient is needed.

A plan is built once per (graph, edge weights, layer weights, structure of the features) and
reused while those are the same, unmodified tensors (compared by identity and version
counter). It holds

* the aggregation matrix with the layer's self term stored on its diagonal and the degree
  scaling folded into its values (GCN: ``D^-1/2 (A_w + I) D^-1/2``; GIN:
  ``diag(1/deg) A_w + (1 + eps) I``), so a layer is one SpMM whose epilogue adds the bias and
  applies the ReLU: no elementwise pass over an ``N x width`` tensor;
* the order, ``A(XW)`` (transform first) or ``(AX)W`` (aggregate first), whichever costs fewer
  multiply-accumulates, counted exactly from the kept weights, the stored edges and, for
  sparse features, the stored entries of each feature row (:func:`order_costs`);
* for sparse features the transposed weight: a CSR when the layer's ``lin`` is a compiled
  sparse layer (``X W^T`` is then a sparse x sparse product costing
  ``sum_k nnz(X[:, k]) * nnz(W[:, k])``, :func:`sparse_product`), else the dense ``W^T``
  made contiguous once, not per call.

A call then costs a freshness check (identities and version counters, a few microseconds)
and two kernel calls. :class:`LiveChannels` runs a fused pair of layers (the next layer's
transform in this layer's aggregation, :func:`sparselth.ops.spmm_linear`) over the hidden
channels the next layer's kept weights read.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..ops import backend as _backend
from ..ops.sparse_linear import LinearPlan, sparse_linear
from ..ops.spgemm import spgemm
from ..ops.spmm import spmm_impl
from ..ops.spmm_linear import spmm_linear_impl
from ..sparse.csr import CSR

__all__ = ["ORDERS", "ORDER_NAMES", "LiveChannels", "Plan", "TransposedWeight", "order_costs",
           "sparse_product"]

#: live channels of a fused pair: padded to a multiple of this many (whole vector tiles)
_PAD = 8
#: up to this many live channels sparse features meet a dense W^T (SpMM), above it a CSR one
#: (sparse x sparse); on Cora's features SpMM took 0.10 / 0.23 / 1.45 ms at 48 / 128 / 512
#: channels against 0.43 / 0.46 / 0.85 ms for the sparse x sparse product (1.2 % of weights kept)
DENSE_LIVE_WIDTH = 128

#: ``order`` values of a graph layer: by MACs, transform first ``A(XW)``, aggregate first ``(AX)W``
ORDERS = ("auto", "transform_first", "aggregate_first")
ORDER_NAMES = {"transform_first": "A(XW)", "aggregate_first": "(AX)W"}


def sparse_product(A: CSR, B: CSR) -> Tensor:
    """Dense ``A @ B`` of two CSR matrices by :func:`sparselth.ops.spgemm` (a row-wise
    Gustavson product: each stored ``A[i, k]`` scales row ``k`` of ``B`` into row ``i`` of
    the result, so the cost is ``sum over stored (i, k) of nnz(B[k, :])`` multiply-accumulates),
    the operands first brought to one index dtype (the wider) and one value dtype."""
    if A.col.dtype != B.col.dtype:
        if A.col.dtype == torch.int64:
            B = B.index_as(torch.int64)
        else:
            A = A.index_as(torch.int64)
    if A.val is not None and B.val is not None and A.val.dtype != B.val.dtype:
        A = A.with_values(A.val.to(B.val.dtype))
    return spgemm(A, B)


def _col_counts(x: CSR, n: int) -> Tensor:
    """Stored entries per column of ``x`` (int64, length ``n``)."""
    return torch.bincount(x.col.long(), minlength=n)


def order_costs(n_nodes: int, agg_nnz: int, agg_col_counts: Optional[Tensor], in_dim: int,
                out_dim: int, x: Any, weight_per_col: Optional[Tensor],
                weight_nnz: int) -> dict[str, dict[str, int]]:
    """Exact multiply-accumulates of both orders of one graph layer.

    Args:
        n_nodes: ``N``.
        agg_nnz: stored entries of the aggregation matrix (self terms included).
        agg_col_counts: ``(N,)`` stored entries per column of it (needed for sparse ``x``).
        in_dim, out_dim: the layer's widths.
        x: the features: dense ``(N, in_dim)`` or a CSR.
        weight_per_col: ``(in_dim,)`` kept weights per input column (sparse ``x`` only).
        weight_nnz: kept weights.

    Returns ``{"transform_first": {"transform", "aggregate"}, "aggregate_first": {...}}``:
    ``A(XW)`` transforms ``N`` rows (or, for CSR ``x``, multiplies every stored feature by the
    kept weights of its column) and aggregates at ``out_dim``; ``(AX)W`` aggregates at
    ``in_dim`` (for CSR ``x``: every stored entry ``(i, j)`` of the aggregation matrix costs
    ``nnz(x[j, :])``) and transforms ``N`` dense rows.
    """
    if isinstance(x, CSR):
        counts = _col_counts(x, in_dim)
        t_first = int((counts * weight_per_col).sum())
        row_nnz = (x.rowptr[1:] - x.rowptr[:-1]).long()
        a_first = int((agg_col_counts * row_nnz).sum())
    else:
        t_first = n_nodes * weight_nnz
        a_first = agg_nnz * in_dim
    return {"transform_first": {"transform": t_first, "aggregate": agg_nnz * out_dim},
            "aggregate_first": {"transform": n_nodes * weight_nnz, "aggregate": a_first}}


def cheaper(costs: dict[str, dict[str, int]]) -> str:
    """The order with fewer MACs (transform first on a tie)."""
    t, a = (sum(costs[o].values()) for o in ("transform_first", "aggregate_first"))
    return "aggregate_first" if a < t else "transform_first"


def is_plain_linear(lin: nn.Module) -> bool:
    return type(lin) is nn.Linear


def kept_per_col(weight: Tensor) -> Tensor:
    """Kept (non-zero) weights per input column of an ``(out, in)`` weight."""
    return (weight.detach() != 0).sum(0)


def resolve_order(order: str, costs: dict[str, dict[str, int]]) -> str:
    if order == "auto":
        return cheaper(costs)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order


def _module_tensors(module: nn.Module) -> tuple:
    return tuple(module._parameters.values()) + tuple(module._buffers.values())


def _same_tensors(held: tuple, module: nn.Module) -> bool:
    """Whether ``module`` still holds the tensors ``held`` (none replaced, added or removed)."""
    params, buffers = module._parameters, module._buffers
    if len(params) + len(buffers) != len(held):
        return False
    i = 0
    for t in params.values():
        if t is not held[i]:
            return False
        i += 1
    for t in buffers.values():
        if t is not held[i]:
            return False
        i += 1
    return True


def _requested_backend() -> Optional[str]:
    """The innermost ``use_backend`` block's backend (None outside one)."""
    stack = getattr(_backend._state, "stack", None)
    return stack[-1] if stack else None


class _Watch:
    """Tensors whose identity and contents a cached result depends on: fresh while none was
    replaced or modified in place (version counters)."""

    __slots__ = ("tensors", "versions")

    def __init__(self, tensors: Sequence[Optional[Tensor]]):
        self.tensors = tuple(t for t in tensors if t is not None)
        self.versions = tuple(t._version for t in self.tensors)

    def fresh(self) -> bool:
        return tuple(t._version for t in self.tensors) == self.versions


class TransposedWeight:
    """``W^T`` of a layer's ``lin`` for sparse features (:func:`transposed_weight`), cached
    while ``lin`` holds the same, unmodified tensors."""

    __slots__ = ("lin", "held", "watch", "wt", "dtype")

    def __init__(self, lin: nn.Module, weight: Tensor):
        self.lin, self.held = lin, _module_tensors(lin)
        self.watch = _Watch(self.held)
        self.wt, self.dtype = transposed_weight(lin, weight), weight.dtype

    def fresh(self, lin: nn.Module) -> bool:
        return lin is self.lin and _same_tensors(self.held, lin) and self.watch.fresh()

    def product(self, x: CSR) -> Tensor:
        """``x W^T`` (no autograd)."""
        if x.val is not None and x.val.dtype != self.dtype:
            x = x.with_values(x.val.to(self.dtype))
        wt = self.wt
        if isinstance(wt, CSR):
            if wt.col.dtype != x.col.dtype:   # converted once, kept for the next calls
                wt = self.wt = wt.index_as(x.col.dtype)
            return sparse_product(x, wt)
        return spmm_impl(wt.device, self.dtype)(x.rowptr, x.col, x.val, wt, None, None, None,
                                                x.shape[0], False)


def transposed_weight(lin: nn.Module, weight: Tensor) -> Any:
    """``W^T`` for sparse features: a CSR of a compiled sparse layer's kept weights (so the
    product costs what the kept weights cost), the dense contiguous ``W^T`` of a plain
    ``nn.Linear``."""
    if is_plain_linear(lin):
        return weight.detach().t().contiguous()
    csr_fn = getattr(lin, "weight_csr", None)
    if callable(csr_fn):
        W = csr_fn(with_transpose=False)
        W = CSR._trusted(W.rowptr, W.col, W.val.detach(), W.shape)
    else:
        W = CSR.from_dense(weight.detach())
    return W.t()


class Plan:
    """One graph layer's inference plan (see the module docstring), built by the layer from
    its inputs and reused while :meth:`fresh`.

    Attributes:
        n: nodes.
        agg: the aggregation CSR with the self term stored (values: normalised weights).
        order: ``"transform_first"`` or ``"aggregate_first"``.
        costs: :func:`order_costs` of both orders as run (a plain ``nn.Linear`` computes every
            weight; a compiled sparse ``lin`` its stored ones).
        wt: for CSR features, transform first: :class:`TransposedWeight`; else None.
        weight: for dense features and a plain ``nn.Linear``: its weight (``F.linear`` is
            called directly); else None (``lin`` is called).
        bias: the layer's bias in the plan's dtype, contiguous, or None.
        backend, spmm: the SpMM backend resolved when built and its kernel
            (:func:`sparselth.ops.spmm.spmm_impl`).
    """

    __slots__ = ("adj", "edge_weight", "extra", "lin", "order_req", "owned", "held", "watch",
                 "x_sparse", "x_rowptr", "x_col", "x_shape", "dtype", "requested", "n", "agg",
                 "order", "costs", "wt", "weight", "bias", "backend", "spmm", "lin_csr",
                 "spmm_linear")

    def __init__(self, conv: nn.Module, x: Any, adj: Any, edge_weight: Optional[Tensor],
                 extra: Optional[Tensor], agg: CSR, dtype: torch.dtype):
        lin = conv.lin
        # what it was built for
        self.adj, self.edge_weight, self.extra, self.lin = adj, edge_weight, extra, lin
        self.order_req, self.owned = conv.order, conv._owned()
        self.held = _module_tensors(lin)
        self.watch = _Watch((adj.val if isinstance(adj, CSR) else adj, edge_weight, extra,
                             *self.held, *self.owned))
        self.x_sparse = isinstance(x, CSR)
        self.x_rowptr, self.x_col = (x.rowptr, x.col) if self.x_sparse else (None, None)
        self.x_shape = None if self.x_sparse else x.shape
        self.dtype, self.requested = dtype, _requested_backend()
        self.n, self.agg = agg.shape[0], agg
        # what it runs
        W = conv._weight().detach()
        if is_plain_linear(lin):   # a dense layer computes every entry
            per_col = torch.full((conv.in_dim,), W.shape[0], dtype=torch.long, device=W.device)
        else:
            per_col = kept_per_col(W)
        agg_cols = torch.bincount(agg.col.long(), minlength=self.n) if self.x_sparse else None
        self.costs = order_costs(self.n, agg.nnz, agg_cols, conv.in_dim, W.shape[0], x,
                                 per_col, int(per_col.sum()))
        self.order = resolve_order(conv.order, self.costs)
        self.wt = (TransposedWeight(lin, W) if self.x_sparse and self.order == "transform_first"
                   else None)
        self.weight = lin.weight if is_plain_linear(lin) and lin.bias is None else None
        bias = conv.bias
        self.bias = None if bias is None else bias.detach().to(dtype).contiguous()
        self.backend = _backend.resolve("auto", agg.device, dtype, "spmm")
        self.spmm: Callable = spmm_impl(agg.device, dtype, self.backend)
        # a compiled sparse lin as a CSR for a previous layer's fused epilogue; that layer's
        # fused kernel (None where the backend has none)
        self.lin_csr = None
        if not is_plain_linear(lin) and self.order == "transform_first":
            csr_fn = getattr(lin, "weight_csr", None)
            Wc = csr_fn(with_transpose=False) if callable(csr_fn) else CSR.from_dense(W)
            self.lin_csr = CSR._trusted(Wc.rowptr.to(agg.col.dtype), Wc.col.to(agg.col.dtype),
                                        None if Wc.val is None else Wc.val.detach().to(dtype),
                                        Wc.shape)
        fused = spmm_linear_impl(agg.device, dtype) if self.backend == "cpp" else None
        self.spmm_linear: Optional[Callable] = fused

    def fresh(self, conv: nn.Module, x: Any, adj: Any, edge_weight: Optional[Tensor],
              extra: Optional[Tensor]) -> bool:
        """Whether this plan still fits: the same graph, edge weights, ``lin``, own tensors
        and order setting, none modified; features of the same structure; the same backend
        request."""
        lin = conv._modules["lin"]
        if (adj is not self.adj or edge_weight is not self.edge_weight
                or extra is not self.extra or lin is not self.lin
                or conv.order != self.order_req or _requested_backend() != self.requested):
            return False
        if self.x_sparse:
            if not isinstance(x, CSR) or x.rowptr is not self.x_rowptr or x.col is not self.x_col:
                return False
        elif not isinstance(x, Tensor) or x.shape != self.x_shape or x.dtype != self.dtype:
            return False
        for a, b in zip(conv._owned(), self.owned):
            if a is not b:
                return False
        return _same_tensors(self.held, lin) and self.watch.fresh()

    def transform(self, conv: nn.Module, x: Any) -> Tensor:
        """``x W^T``, contiguous (transform first)."""
        if self.x_sparse:
            h = self.wt.product(x)
        elif self.weight is not None:
            h = torch.nn.functional.linear(x, self.weight)
        else:
            h = conv.lin(x)
        return h if h.is_contiguous() else h.contiguous()

    def run_fused(self, conv: nn.Module, x: Any, relu: bool, next_lin: CSR) -> Tensor:
        """``act(agg @ (x W^T) + b) @ W_next^T`` in one pass over the aggregation (transform
        first, :attr:`spmm_linear` set): the layer's output is never stored."""
        a = self.agg
        return self.spmm_linear(a.rowptr, a.col, a.val, self.transform(conv, x), self.bias,
                                relu, next_lin.rowptr, next_lin.col, next_lin.val, self.n)

    def aggregate(self, h: Tensor, relu: bool) -> Tensor:
        """``act(agg @ h + b)`` for the transformed features ``h``."""
        a = self.agg
        if not h.is_contiguous():
            h = h.contiguous()
        return self.spmm(a.rowptr, a.col, a.val, h, None, None, self.bias, self.n, relu)

    def run(self, conv: nn.Module, x: Any, relu: bool) -> Tensor:
        """``act(agg @ (x W^T) + b)`` or ``act((agg @ x) W^T + b)``."""
        a = self.agg
        if self.order == "transform_first":
            return self.spmm(a.rowptr, a.col, a.val, self.transform(conv, x), None, None,
                             self.bias, self.n, relu)
        if self.x_sparse:
            h = sparse_product(a, x)
        else:
            h = self.spmm(a.rowptr, a.col, a.val, x.contiguous(), None, None, None, self.n,
                          False)
        out = conv.lin(h)
        if self.bias is not None:
            out = out.add_(self.bias)
        return out.relu_() if relu else out


class LiveChannels:
    """A fused pair of layers (:meth:`Plan.run_fused`) computing only the producer's output
    channels the consumer reads: a hidden channel whose column of the consumer's weight is
    all pruned never reaches the output (ReLU and dropout in eval act per channel), so the
    producer's transform, aggregation and epilogue skip it. Exact; built from the two layers'
    plans and valid while both are (the same plan objects).

    The live channels are padded with zero channels to a multiple of 8 (whole vector tiles
    for the kernels; the consumer reads no padding). Sparse features multiply a dense
    ``W^T`` of the live channels by SpMM up to :data:`DENSE_LIVE_WIDTH` channels (measured
    faster there than the sparse x sparse product, whose cost per stored feature dominates
    when a feature meets few kept weights), a CSR one by the sparse x sparse product above.

    Attributes:
        live: the channels read (sorted, int64); ``None`` when all are.
        width: the live channels padded.
        next_lin: the consumer's weight as a CSR over the padded live channels.
    """

    __slots__ = ("p1", "p2", "live", "width", "next_lin", "bias", "wt", "weight", "w_csr",
                 "w_plan", "out_dim", "hidden")

    def __init__(self, conv1: nn.Module, p1: "Plan", p2: "Plan"):
        self.p1, self.p2 = p1, p2
        W2 = p2.lin_csr
        self.out_dim, self.hidden = W2.shape
        live = torch.unique(W2.col.long())
        self.live = None if live.numel() == self.hidden else live
        self.wt = self.weight = self.w_csr = self.w_plan = None
        self.bias, self.next_lin, self.width = p1.bias, W2, self.hidden
        if self.live is None or live.numel() == 0:
            return
        n = live.numel()
        self.width = width = -(-n // _PAD) * _PAD
        remap = torch.full((self.hidden,), -1, dtype=torch.long, device=live.device)
        remap[live] = torch.arange(n, device=live.device)
        self.next_lin = CSR._trusted(W2.rowptr, remap[W2.col.long()].to(W2.col.dtype), W2.val,
                                     (self.out_dim, width))
        W = conv1._weight().detach().to(p1.dtype)
        W1 = W.new_zeros((width, W.shape[1]))
        W1[:n] = W[live]                                           # (width, in), zero padded
        if p1.bias is not None:
            self.bias = p1.bias.new_zeros(width)
            self.bias[:n] = p1.bias[live]
        plain = is_plain_linear(conv1.lin)
        if p1.x_sparse:
            dense_wt = plain or width <= DENSE_LIVE_WIDTH
            self.wt = W1.t().contiguous() if dense_wt else CSR.from_dense(W1).t()
        elif plain:
            self.weight = W1
        else:
            self.w_csr = CSR.from_dense(W1)
            self.w_plan = LinearPlan(self.w_csr)   # the layouts the inference kernel reads

    def run(self, conv1: nn.Module, x: Any) -> Tensor:
        """``relu(agg @ (x W1^T) + b1)[:, live] @ W2[:, live]^T``, ``(N, out)``."""
        p1 = self.p1
        if self.live is None:
            return p1.run_fused(conv1, x, True, self.next_lin)
        if self.live.numel() == 0:
            return torch.zeros((p1.n, self.out_dim), dtype=p1.dtype, device=p1.agg.device)
        if self.wt is not None:
            if x.val is not None and x.val.dtype != p1.dtype:
                x = x.with_values(x.val.to(p1.dtype))
            if isinstance(self.wt, CSR):
                h = sparse_product(x, self.wt)
            else:
                h = p1.spmm(x.rowptr, x.col, x.val, self.wt, None, None, None, x.shape[0], False)
        elif self.weight is not None:
            h = torch.nn.functional.linear(x, self.weight)
        else:
            h = sparse_linear(x, self.w_csr, plan=self.w_plan)
        if not h.is_contiguous():
            h = h.contiguous()
        a, w = p1.agg, self.next_lin
        return p1.spmm_linear(a.rowptr, a.col, a.val, h, self.bias, True, w.rowptr, w.col,
                              w.val, p1.n)
