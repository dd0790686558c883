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

A call then costs a key comparison and two kernel calls.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..ops import backend as _backend
from ..ops.spmm import spmm_impl
from ..sparse.csr import CSR

__all__ = ["ORDERS", "Plan", "key_equal", "order_costs", "sparse_product", "lin_state"]

#: ``order`` values of a graph layer: by MACs, transform first ``A(XW)``, aggregate first ``(AX)W``
ORDERS = ("auto", "transform_first", "aggregate_first")
ORDER_NAMES = {"transform_first": "A(XW)", "aggregate_first": "(AX)W"}


def sparse_product(A: CSR, B: CSR) -> Tensor:
    """Dense ``A @ B`` of two CSR matrices as a row-wise (Gustavson) product: each stored
    ``A[i, k]`` scales row ``k`` of ``B`` into row ``i`` of the result, so the cost is
    ``sum over stored (i, k) of nnz(B[k, :])`` multiply-accumulates.

    Runs :func:`sparselth.ops.spgemm` when this build has it; otherwise a gather/scatter-add
    in torch with the same cost model."""
    from .. import ops
    spgemm = getattr(ops, "spgemm", None)
    if spgemm is not None:
        return spgemm(A, B)
    m, n = A.shape[0], B.shape[1]
    dtype = B.dtype if B.val is not None else (A.dtype or torch.get_default_dtype())
    out = torch.zeros(m * n, dtype=dtype, device=B.device)
    b_rowptr = B.rowptr.long()
    a_col = A.col.long()
    cnt = (b_rowptr[1:] - b_rowptr[:-1]).index_select(0, a_col)   # products per stored A entry
    total = int(cnt.sum())
    if total == 0:
        return out.view(m, n)
    first = torch.cumsum(cnt, 0) - cnt
    # entry e of B for every product: B.rowptr[k] + (product index - first product of its A entry)
    shift = b_rowptr.index_select(0, a_col) - first
    e = torch.arange(total, device=B.device) + torch.repeat_interleave(shift, cnt,
                                                                       output_size=total)
    target = torch.repeat_interleave(A.row() * n, cnt, output_size=total) + B.col.long()[e]
    prod = B.values(dtype)[e]
    if A.val is not None:
        prod *= torch.repeat_interleave(A.val.to(dtype), cnt, output_size=total)
    return out.index_add_(0, target, prod).view(m, n)


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


def lin_state(lin: nn.Module) -> tuple:
    """``lin``'s own tensors with their versions: changes when any is replaced or modified."""
    out: list = [lin]
    for t in lin._parameters.values():
        out += (t, -1 if t is None else t._version)
    for t in lin._buffers.values():
        out += (t, -1 if t is None else t._version)
    return tuple(out)


def key_equal(a: Optional[tuple], b: tuple) -> bool:
    """Plan keys: tensors and modules compare by identity, everything else by value."""
    if a is None or len(a) != len(b):
        return False
    for u, v in zip(a, b):
        if isinstance(u, (Tensor, nn.Module, CSR)):
            if u is not v:
                return False
        elif u != v:
            return False
    return True


def is_plain_linear(lin: nn.Module) -> bool:
    return type(lin) is nn.Linear


def kept_per_col(weight: Tensor) -> Tensor:
    """Kept (non-zero) weights per input column of an ``(out, in)`` weight."""
    return (weight.detach() != 0).sum(0)


class Plan:
    """One layer's inference plan (see the module docstring).

    Attributes:
        key: what it was built for (:func:`key_equal`).
        n: nodes.
        agg: the aggregation CSR with the self term stored (values = normalised weights).
        order: ``"transform_first"`` or ``"aggregate_first"``.
        costs: :func:`order_costs` of the built-in orders, as run (kept = stored).
        wt: for CSR features and transform first: ``W^T`` as a CSR (sparse ``lin``) or a dense
            contiguous tensor (plain ``nn.Linear``); else None.
        bias: the layer's bias (contiguous) or None.
        backend, spmm: the SpMM backend resolved when it was built (a ``use_backend`` block
            or ``SPARSELTH_BACKEND`` changing it rebuilds the plan) and its kernel
            (:func:`sparselth.ops.spmm.spmm_impl`).
    """

    __slots__ = ("key", "n", "agg", "order", "costs", "wt", "bias", "dtype", "backend", "spmm")

    def __init__(self, key: tuple, n: int, agg: CSR, order: str, costs: dict, wt: Any,
                 bias: Optional[Tensor], dtype: torch.dtype):
        self.key, self.n, self.agg, self.order, self.costs = key, n, agg, order, costs
        self.wt, self.bias, self.dtype = wt, bias, dtype
        self.backend = _backend.resolve("auto", agg.device, dtype, "spmm")
        self.spmm: Callable = spmm_impl(agg.device, dtype, self.backend)

    def aggregate(self, h: Tensor, bias: Optional[Tensor] = None, relu: bool = False) -> Tensor:
        """``act(agg @ h + bias)`` in one kernel (``h`` dense)."""
        a = self.agg
        if not h.is_contiguous():
            h = h.contiguous()
        return self.spmm(a.rowptr, a.col, a.val, h, None, None, bias, self.n, relu)

    def transform_sparse(self, x: CSR) -> Tensor:
        """``x W^T`` for CSR features."""
        wt = self.wt
        if x.val is not None and x.val.dtype != self.dtype:
            x = x.with_values(x.val.to(self.dtype))
        if isinstance(wt, CSR):
            return sparse_product(x, wt)
        return self.spmm(x.rowptr, x.col, x.val, wt, None, None, None, x.shape[0], False)


def transposed_weight(lin: nn.Module, weight: Tensor) -> Any:
    """``W^T`` for sparse features: a CSR of a compiled sparse layer's kept weights (so the
    product costs what the kept weights cost), the dense contiguous ``W^T`` of a plain
    ``nn.Linear``."""
    if is_plain_linear(lin):
        return weight.detach().t().contiguous()
    csr_fn = getattr(lin, "weight_csr", None)
    if callable(csr_fn):
        W = csr_fn(with_transpose=False)
        W = CSR(W.rowptr, W.col, W.val.detach(), W.shape, validate=False)
    else:
        W = CSR.from_dense(weight.detach())
    return W.t()


def resolve_order(order: str, costs: dict[str, dict[str, int]],
                  allowed: Sequence[str] = ("transform_first", "aggregate_first")) -> str:
    if order == "auto":
        return cheaper(costs)
    if order not in allowed:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order
