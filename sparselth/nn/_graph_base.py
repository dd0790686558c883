"""What the graph layers share: the graph argument (``adj_t`` or ``edge_index``), its checks
and conversion to a CSR over targets, the transform ``x W^T`` and the inference plan plumbing.

The convention is PyG's: in an ``edge_index`` ``[2, E]`` row 0 is the source ``j`` and row 1
the target ``i`` of a message ``j -> i``; a sparse matrix is passed as ``adj_t``, the
*transposed* adjacency, whose rows are the targets (``adj_t[i, j]`` stored means ``j -> i``).
:func:`adj_t_from_edge_index` builds one from an ``edge_index``.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..ops._common import row_index
from ..ops.spmm import spmm
from ..sparse.csr import CSR
from ._graph_plan import Plan, TransposedWeight, kept_per_col, order_costs, resolve_order

__all__ = ["adj_t_from_edge_index"]

_INT32_MAX = 2**31 - 1
Adjacency = Union[CSR, Tensor]


def _check_edge_index(op: str, edge_index: Any) -> Tensor:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{op}: edge_index must be a tensor [2, E], got "
                        f"{type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{op}: edge_index must have shape (2, E), "
                         f"got {tuple(edge_index.shape)}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex \
            or edge_index.dtype == torch.bool:
        raise TypeError(f"{op}: edge_index must hold integer indices, got {edge_index.dtype}")
    return edge_index


def adj_t_from_edge_index(edge_index: Tensor, num_nodes: Optional[int] = None,
                          edge_weight: Optional[Tensor] = None) -> CSR:
    """The ``adj_t`` of a PyG ``edge_index``: an ``(N, N)`` CSR whose rows are the targets.

    ``edge_index[0]`` holds the sources, ``edge_index[1]`` the targets (PyG's convention), so
    the stored entry ``adj_t[i, j]`` is the message ``j -> i`` and ``spmm(adj_t, x)`` sums at
    each target what its sources send. A graph layer gives the same output for
    ``(x, edge_index, edge_weight)`` and ``(x, adj_t_from_edge_index(edge_index, N,
    edge_weight))``: duplicate edges are summed into one entry (a pattern without
    ``edge_weight`` stores their count). ``num_nodes`` defaults to the largest index + 1; pass
    ``x.size(0)`` when the last nodes may be isolated.

    Example::

        >>> adj_t = adj_t_from_edge_index(data.edge_index, data.num_nodes)
        >>> conv(data.x, adj_t)              # == conv(data.x, data.edge_index)
    """
    op = "adj_t_from_edge_index"
    _check_edge_index(op, edge_index)
    if num_nodes is not None and (isinstance(num_nodes, bool) or not isinstance(num_nodes, int)
                                  or num_nodes < 0):
        raise ValueError(f"{op}: num_nodes must be a non-negative int or None, got {num_nodes!r}")
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor):
            raise TypeError(f"{op}: edge_weight must be a tensor or None, got "
                            f"{type(edge_weight).__name__}")
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.shape[1]:
            raise ValueError(f"{op}: edge_weight must have shape ({edge_index.shape[1]},) (one "
                             f"value per edge_index column), got {tuple(edge_weight.shape)}")
    return CSR.from_edge_index(edge_index.flip(0), num_nodes, values=edge_weight)


def graph_argument(layer: str, adj_t: Optional[Adjacency], **aliases: Any) -> Adjacency:
    """The graph passed as ``adj_t`` or under one of its other names (``edge_index``, PyG's
    keyword; ``adj``, the earlier one)."""
    given = {k: v for k, v in aliases.items() if v is not None}
    if adj_t is not None:
        given = {"adj_t": adj_t, **given}
    if len(given) > 1:
        raise TypeError(f"{layer}: pass the graph once, got {' and '.join(given)}")
    if not given:
        raise TypeError(f"{layer}: missing the graph: pass adj_t (a sparselth.CSR whose rows are "
                        f"the targets) or an edge_index [2, E]")
    return next(iter(given.values()))


def read_values(adj: Adjacency, edge_weight: Optional[Tensor]
                ) -> Tuple[Adjacency, Optional[Tensor]]:
    """``(adj, edge_weight)`` for one call. A CSR whose values are re-read at every use
    (values given with ``requires_grad``, e.g. ``adj_t_from_edge_index(ei, N, w)``) has them
    read once here and passed as edge weights of its pattern, so the layer's caches (keyed by
    tensor identity and version) see the tensor read now, never an earlier read's."""
    if isinstance(adj, CSR) and getattr(adj, "_val_fn", None) is not None:
        if torch.is_grad_enabled() and not tracing():
            adj.t()   # cached on the caller's CSR: every call's pattern view shares it
        v = adj.val
        return adj.with_values(None), v if edge_weight is None else v * edge_weight
    return adj, edge_weight


def is_meta(*items: Any) -> bool:
    """Whether any tensor (or CSR) among ``items`` is on the meta device."""
    for t in items:
        if isinstance(t, CSR):
            t = t.col
        if isinstance(t, Tensor) and t.is_meta:
            return True
    return False


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


def tracing() -> bool:
    """Inside ``torch.compile`` or ``torch.export`` (no caches read or written there)."""
    return torch.compiler.is_compiling()


def _no_autograd() -> bool:
    return not torch.is_grad_enabled() and not tracing()


def _inference(module: nn.Module) -> bool:
    """Eval mode without autograd and not traced: the layer runs its cached plan."""
    return not module.training and _no_autograd()


class GraphConv(nn.Module):
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
        """``(pattern CSR over targets, inverse, perm or None, edges per target)``, cached.
        Traced (``torch.compile``, ``torch.export``), :meth:`_from_edge_index_traced`."""
        name = type(self).__name__
        _check_edge_index(name, edge_index)
        if tracing():
            return self._from_edge_index_traced(edge_index, num_nodes)
        key = (edge_index, edge_index._version, num_nodes, edge_index.device)
        if self._ei_cache is not None and _same(key, self._ei_cache[0]):
            return self._ei_cache[1]
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
        A = CSR._trusted(rowptr.to(idx), cols.to(idx), None, (num_nodes, num_nodes))
        perm = None
        if uniq.numel() == E:   # no duplicates: CSR entry k is edge column perm[k]
            perm = torch.empty_like(inverse).scatter_(
                0, inverse, torch.arange(E, device=inverse.device))
        per_target = torch.bincount(tgt, minlength=num_nodes)
        out = (A, inverse, perm, per_target)
        self._ei_cache = (key, out)
        return out

    def _from_edge_index_traced(self, edge_index: Tensor, num_nodes: int):
        """The conversion with shapes that do not depend on the data, so ``torch.compile``
        (``fullgraph=True``) and ``torch.export`` trace it: the columns sorted by target and
        source, duplicates kept as separate stored entries (an aggregation that is linear in
        the weights sums them as a merged entry would). The index range is not checked."""
        src, tgt = edge_index[0].long(), edge_index[1].long()
        n = max(num_nodes, 1)
        perm = torch.sort(tgt * n + src, stable=True).indices
        per_target = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
        per_target = per_target.index_add(0, tgt, torch.ones_like(tgt))
        rowptr = torch.cat([per_target.new_zeros(1), torch.cumsum(per_target, 0)])
        E = src.numel()
        idx = torch.int32 if max(num_nodes, E) <= _INT32_MAX else torch.int64
        A = CSR._trusted(rowptr.to(idx), src.index_select(0, perm).to(idx), None,
                         (num_nodes, num_nodes))
        return A, None, perm, per_target

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
                raise ValueError(f"{name}: adj_t must have shape ({num_nodes}, {num_nodes}) "
                                 f"(N = x.size(0)), got {adj.shape}")
            if edge_weight is not None and edge_weight.numel() != adj.nnz:
                raise ValueError(f"{name}: edge_weight must have shape ({adj.nnz},) (one value per "
                                 f"stored entry of adj_t), got {tuple(edge_weight.shape)}")
            if torch.is_grad_enabled() and not tracing():
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
            if torch.is_grad_enabled() and not tracing():
                A.t()
        else:
            raise TypeError(f"{name}: adj_t must be a sparselth.CSR or an edge_index tensor "
                            f"[2, E], got {type(adj).__name__}")
        if w is not None:
            if w.device != A.device:
                raise ValueError(f"{name}: edge_weight is on {w.device} but the graph is on "
                                 f"{A.device}")
            w = w.to(dtype)
        return A, w, per_target

    def _meta_output(self, x: Any, adj: Adjacency, edge_weight: Optional[Tensor],
                     width: int) -> Tensor:
        """Shape-only use (meta tensors): the arguments checked as far as shapes allow, an
        empty ``(N, width)`` meta tensor back (no values exist to aggregate)."""
        N = self._num_nodes(x)
        name = type(self).__name__
        if isinstance(adj, Tensor):
            _check_edge_index(name, adj)
            E = adj.shape[1]
        elif isinstance(adj, CSR):
            if adj.shape != (N, N):
                raise ValueError(f"{name}: adj_t must have shape ({N}, {N}) (N = x.size(0)), "
                                 f"got {adj.shape}")
            E = adj.nnz
        else:
            raise TypeError(f"{name}: adj_t must be a sparselth.CSR or an edge_index tensor "
                            f"[2, E], got {type(adj).__name__}")
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor):
                raise TypeError(f"{name}: edge_weight must be a tensor or None, got "
                                f"{type(edge_weight).__name__}")
            _require_floating(name, "edge_weight", edge_weight)
            if edge_weight.shape != (E,):
                raise ValueError(f"{name}: edge_weight must have shape ({E},), got "
                                 f"{tuple(edge_weight.shape)}")
        return torch.empty((N, width), dtype=self._dtype(), device="meta")

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
            if torch.is_grad_enabled() and not tracing():
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
        return CSR.from_coo(torch.cat([row_index(A), loop]), torch.cat([A.col.long(), loop]),
                            torch.cat([vals, diag]), A.shape, A.col.dtype)

    def _self_entries(self, A: CSR, N: int) -> Tensor:
        """``(N,)`` 0/1: the nodes whose self term adds a diagonal entry to the aggregation
        matrix (every node, by default)."""
        return torch.ones(N, dtype=torch.long, device=A.device)

    def _order_macs(self, x: Any, A: CSR, w: Optional[Tensor], N: int, dense: bool,
                    order: str) -> Tuple[str, dict, int]:
        """``(order, its MACs {"transform", "aggregate"}, width)`` with the self term as the
        stored diagonal entries :meth:`_self_entries` adds; ``dense=True`` counts every
        weight and stored edge."""
        W = self._weight().detach()
        if dense:
            per_col = torch.full((self.in_dim,), W.shape[0], dtype=torch.long, device=W.device)
            kept = torch.ones(A.nnz, dtype=torch.bool, device=A.device)
        else:
            per_col = kept_per_col(W)
            kept = torch.ones(A.nnz, dtype=torch.bool, device=A.device) if w is None \
                else w.detach() != 0
        edges = int(kept.sum())
        loops = self._self_entries(A, N)
        agg_cols = None
        if isinstance(x, CSR):
            agg_cols = torch.bincount(A.col.long()[kept], minlength=N) + loops
        costs = order_costs(N, edges + int(loops.sum()), agg_cols, self.in_dim, W.shape[0], x,
                            per_col, int(per_col.sum()))
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
