"""Mini-batches of small graphs as one block-diagonal CSR (graph classification).

A :class:`GraphBatch` holds ``B`` graphs: node features ``x`` ``(N, F)`` stacked graph after
graph, ``ptr`` ``(B + 1,)`` int64 node offsets (graph ``g`` owns nodes ``ptr[g]:ptr[g+1]``),
one block-diagonal pattern ``adj`` ``(N, N)`` (rows are targets: ``adj[i, j]`` stored means
node ``i`` aggregates from ``j``) and optional graph labels ``y`` ``(B,)``. Because the blocks
are diagonal, graph ``g``'s entries are the contiguous range ``adj.rowptr[ptr[g]]:
adj.rowptr[ptr[g+1]]``; every operation here is vectorised over the whole batch (no loop per
graph): selecting graphs, keeping a subset of nodes or entries, adding entries.

Example::

    >>> g1 = Graph(torch.ones(2, 1), CSR.from_edge_index(torch.tensor([[0, 1], [1, 0]])))
    >>> b = GraphBatch.from_graphs([g1, g1])
    >>> b.num_graphs, b.num_nodes, b.adj.nnz, b.batch.tolist()
    (2, 4, 4, [0, 0, 1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from .csr import CSR, _legacy_kwargs

Tensor = torch.Tensor

__all__ = ["Graph", "GraphBatch", "segment_rank"]


@dataclass
class Graph:
    """One graph: features ``x`` ``(n, F)``, pattern ``adj`` ``(n, n)`` (rows = targets) and an
    optional label ``y`` (0-d int64 tensor or None)."""

    x: Tensor
    adj: CSR
    y: Optional[Tensor] = None

    def __post_init__(self):
        if not isinstance(self.x, Tensor) or self.x.dim() != 2:
            raise TypeError(f"Graph: x must be a 2-D tensor, got {_describe(self.x)}")
        if not isinstance(self.adj, CSR):
            raise TypeError(f"Graph: adj must be a sparselth.CSR, got {type(self.adj).__name__}")
        n = self.x.shape[0]
        if self.adj.shape != (n, n):
            raise ValueError(f"Graph: adj must have shape ({n}, {n}) for {n} nodes, "
                             f"got {self.adj.shape}")

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


def _describe(obj) -> str:
    if isinstance(obj, Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    return type(obj).__name__


def segment_rank(keys: Tensor, seg: Tensor) -> Tensor:
    """Rank (from 0) of every element among the elements of its segment, ascending by ``keys``
    (ties by position). ``seg`` is the (sorted or not) segment id of each element."""
    order = torch.sort(keys, stable=True).indices
    order = order[torch.sort(seg[order], stable=True).indices]
    sorted_seg = seg[order]
    n = keys.numel()
    start = torch.zeros(n, dtype=torch.long, device=keys.device)
    if n:
        first = torch.ones(n, dtype=torch.bool, device=keys.device)
        first[1:] = sorted_seg[1:] != sorted_seg[:-1]
        pos = torch.arange(n, device=keys.device)
        start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty(n, dtype=torch.long, device=keys.device)
    rank[order] = torch.arange(n, device=keys.device) - start
    return rank


class GraphBatch:
    """``B`` graphs as one block-diagonal CSR; see the module docstring.

    Args:
        x: ``(N, F)`` floating node features.
        adj: ``(N, N)`` block-diagonal :class:`CSR` (a pattern or with values).
        ptr: ``(B + 1,)`` int64 node offsets, ``ptr[0] == 0``, ``ptr[-1] == N``.
        y: optional ``(B,)`` graph labels.

    The arguments are checked (O(nnz): no entry may leave its graph's block), since the
    pooling and message-passing kernels index by ``ptr`` and ``adj`` without further checks.
    """

    __slots__ = ("x", "adj", "ptr", "y", "_batch")

    def __init__(self, x: Tensor, adj: CSR, ptr: Tensor, y: Optional[Tensor] = None, **legacy):
        if legacy:
            _legacy_kwargs("GraphBatch", legacy)
        self.x, self.adj, self.ptr, self.y = x, adj, ptr, y
        self._batch: Optional[Tensor] = None
        self._validate()

    @classmethod
    def _trusted(cls, x: Tensor, adj: CSR, ptr: Tensor, y: Optional[Tensor] = None
                 ) -> "GraphBatch":
        """A batch from parts known to be consistent (the library's own builders): no
        O(nnz) check."""
        out = cls.__new__(cls)
        out.x, out.adj, out.ptr, out.y = x, adj, ptr, y
        out._batch = None
        return out

    def _validate(self) -> None:
        x, adj, ptr, y = self.x, self.adj, self.ptr, self.y
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise TypeError(f"GraphBatch: x must be a 2-D tensor, got {_describe(x)}")
        if not isinstance(adj, CSR):
            raise TypeError(f"GraphBatch: adj must be a sparselth.CSR, got {type(adj).__name__}")
        if not isinstance(ptr, Tensor) or ptr.dim() != 1 or ptr.numel() < 1 or \
                ptr.dtype != torch.int64:
            raise TypeError(f"GraphBatch: ptr must be a 1-D int64 tensor with at least one entry, "
                            f"got {_describe(ptr)}")
        N = x.shape[0]
        if not (adj.device == ptr.device == x.device):
            raise ValueError(f"GraphBatch: x ({x.device}), adj ({adj.device}) and ptr "
                             f"({ptr.device}) must be on one device")
        if adj.shape != (N, N):
            raise ValueError(f"GraphBatch: adj must have shape ({N}, {N}), got {adj.shape}")
        if int(ptr[0]) != 0 or int(ptr[-1]) != N or bool((ptr[1:] < ptr[:-1]).any()):
            raise ValueError(f"GraphBatch: ptr must rise from 0 to N={N}, got "
                             f"{ptr.tolist()[:8]}...")
        if y is not None and (not isinstance(y, Tensor) or y.shape[:1] != (ptr.numel() - 1,)):
            raise ValueError(f"GraphBatch: y must have {ptr.numel() - 1} rows, got {_describe(y)}")
        if adj.nnz:
            b = self.batch
            if not bool((b[adj.row()] == b[adj.col.long()]).all()):
                raise ValueError("GraphBatch: adj has entries between different graphs "
                                 "(it must be block-diagonal along ptr)")

    # ------------------------------------------------------------------ basics
    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def counts(self) -> Tensor:
        """Nodes per graph, ``(B,)`` int64."""
        return self.ptr[1:] - self.ptr[:-1]

    @property
    def batch(self) -> Tensor:
        """Graph id of every node, ``(N,)`` int64 (PyG's ``batch`` vector). Cached."""
        if self._batch is None:
            self._batch = torch.repeat_interleave(
                torch.arange(self.num_graphs, device=self.device), self.counts,
                output_size=self.num_nodes)
        return self._batch

    @property
    def edge_ptr(self) -> Tensor:
        """``(B + 1,)`` int64 offsets of each graph's stored entries in CSR order."""
        return self.adj.rowptr.long()[self.ptr]

    def edge_batch(self) -> Tensor:
        """Graph id of every stored entry, ``(nnz,)`` int64."""
        return self.batch[self.adj.row()]

    def __repr__(self) -> str:
        return (f"GraphBatch(num_graphs={self.num_graphs}, num_nodes={self.num_nodes}, "
                f"nnz={self.adj.nnz}, features={self.num_features})")

    def to(self, device) -> "GraphBatch":
        y = None if self.y is None else self.y.to(device)
        return GraphBatch._trusted(self.x.to(device), self.adj.to(device), self.ptr.to(device), y)

    def with_x(self, x: Tensor) -> "GraphBatch":
        """The same graphs with new node features (same number of rows)."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] != self.num_nodes:
            raise ValueError(f"GraphBatch.with_x: x must have {self.num_nodes} rows, got "
                             f"{_describe(x)}")
        out = GraphBatch._trusted(x, self.adj, self.ptr, self.y)
        out._batch = self._batch
        return out

    # ------------------------------------------------------------------ building
    @classmethod
    def from_graphs(cls, graphs: Sequence[Graph]) -> "GraphBatch":
        """Collate graphs into one batch (labels stacked when every graph has one)."""
        graphs = list(graphs)
        if not graphs:
            raise ValueError("GraphBatch.from_graphs: graphs must not be empty")
        for i, g in enumerate(graphs):
            if not isinstance(g, Graph):
                raise TypeError(f"GraphBatch.from_graphs: graphs[{i}] must be a Graph, "
                                f"got {type(g).__name__}")
        F = graphs[0].x.shape[1]
        if any(g.x.shape[1] != F for g in graphs):
            raise ValueError("GraphBatch.from_graphs: graphs have different feature widths "
                             f"{sorted({g.x.shape[1] for g in graphs})}")
        counts = torch.tensor([g.num_nodes for g in graphs], dtype=torch.long)
        ptr = torch.zeros(len(graphs) + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=ptr[1:])
        nnz = torch.tensor([g.adj.nnz for g in graphs], dtype=torch.long)
        eptr = torch.zeros(len(graphs) + 1, dtype=torch.long)
        torch.cumsum(nnz, 0, out=eptr[1:])
        rowptr = torch.cat([torch.zeros(1, dtype=torch.long)] +
                           [g.adj.rowptr[1:].long() + eptr[i] for i, g in enumerate(graphs)])
        col = torch.cat([torch.zeros(0, dtype=torch.long)] +
                        [g.adj.col.long() + ptr[i] for i, g in enumerate(graphs)])
        vals = [g.adj.val for g in graphs]
        val = None if all(v is None for v in vals) else torch.cat(
            [g.adj.values(torch.get_default_dtype()) for g in graphs])
        N = int(ptr[-1])
        adj = _csr(rowptr, col, val, N)
        x = torch.cat([g.x for g in graphs])
        ys = [g.y for g in graphs]
        y = None if any(v is None for v in ys) else torch.stack([torch.as_tensor(v) for v in ys])
        return cls._trusted(x, adj, ptr, y)

    def graph(self, i: int) -> Graph:
        """Graph ``i`` on its own (local node ids)."""
        B = self.num_graphs
        if not isinstance(i, int) or not -B <= i < B:
            raise ValueError(f"GraphBatch.graph: i must be an int in [-{B}, {B}), got {i!r}")
        i %= B
        lo, hi = int(self.ptr[i]), int(self.ptr[i + 1])
        rp = self.adj.rowptr.long()[lo:hi + 1]
        e0, e1 = int(rp[0]), int(rp[-1])
        val = None if self.adj.val is None else self.adj.val[e0:e1]
        adj = _csr(rp - e0, self.adj.col.long()[e0:e1] - lo, val, hi - lo)
        y = None if self.y is None else self.y[i]
        return Graph(self.x[lo:hi], adj, y)

    def to_graphs(self) -> List[Graph]:
        return [self.graph(i) for i in range(self.num_graphs)]

    def select(self, index: Tensor) -> "GraphBatch":
        """The graphs ``index`` (a 1-D integer tensor, repeats allowed) as a new batch, by
        vectorised gathers of their node and entry ranges."""
        if not isinstance(index, Tensor) or index.dim() != 1 or index.dtype.is_floating_point \
                or index.dtype == torch.bool:
            raise TypeError(f"GraphBatch.select: index must be a 1-D integer tensor, got "
                            f"{_describe(index)}")
        index = index.long().to(self.device)
        B = self.num_graphs
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= B):
            raise ValueError(f"GraphBatch.select: index must lie in [0, {B}), got min "
                             f"{int(index.min())} max {int(index.max())}")
        counts = self.counts[index]
        ptr = torch.zeros(index.numel() + 1, dtype=torch.long, device=self.device)
        torch.cumsum(counts, 0, out=ptr[1:])
        nodes = _ranges(self.ptr[index], counts, int(ptr[-1]))
        eptr_old = self.edge_ptr
        ecounts = eptr_old[index + 1] - eptr_old[index]
        entries = _ranges(eptr_old[index], ecounts, int(ecounts.sum()))
        shift = (ptr[:-1] - self.ptr[index])           # new - old node offset per graph
        eg = torch.repeat_interleave(torch.arange(index.numel(), device=self.device), ecounts,
                                     output_size=entries.numel())
        col = self.adj.col.long()[entries] + shift[eg]
        deg = (self.adj.rowptr[1:] - self.adj.rowptr[:-1]).long()[nodes]
        rowptr = torch.zeros(nodes.numel() + 1, dtype=torch.long, device=self.device)
        torch.cumsum(deg, 0, out=rowptr[1:])
        val = None if self.adj.val is None else self.adj.val[entries]
        y = None if self.y is None else self.y[index]
        return GraphBatch._trusted(self.x[nodes], _csr(rowptr, col, val, nodes.numel()), ptr, y)

    # ------------------------------------------------------------------ editing
    def keep_nodes(self, keep: Tensor) -> "GraphBatch":
        """The induced subgraphs on the nodes where ``keep`` (``(N,)`` bool) is true; nodes
        are renumbered in order, graphs keep their places (a graph may become empty)."""
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or \
                keep.shape != (self.num_nodes,):
            raise TypeError(f"GraphBatch.keep_nodes: keep must be a bool tensor of shape "
                            f"({self.num_nodes},), got {_describe(keep)}")
        new_id = torch.cumsum(keep.long(), 0) - 1
        row, col = self.adj.row(), self.adj.col.long()
        ke = keep[row] & keep[col]
        counts = torch.zeros(self.num_graphs, dtype=torch.long, device=self.device)
        counts.index_add_(0, self.batch, keep.long())
        ptr = torch.zeros_like(self.ptr)
        torch.cumsum(counts, 0, out=ptr[1:])
        n = int(ptr[-1])
        deg = torch.zeros(self.num_nodes, dtype=torch.long, device=self.device)
        deg.index_add_(0, row, ke.long())
        rowptr = torch.zeros(n + 1, dtype=torch.long, device=self.device)
        torch.cumsum(deg[keep], 0, out=rowptr[1:])
        val = None if self.adj.val is None else self.adj.val[ke]
        adj = _csr(rowptr, new_id[col[ke]], val, n)
        return GraphBatch._trusted(self.x[keep], adj, ptr, self.y)

    def keep_entries(self, keep: Tensor) -> "GraphBatch":
        """The same nodes with only the stored entries where ``keep`` (``(nnz,)`` bool) holds."""
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or \
                keep.shape != (self.adj.nnz,):
            raise TypeError(f"GraphBatch.keep_entries: keep must be a bool tensor of shape "
                            f"({self.adj.nnz},), got {_describe(keep)}")
        deg = torch.zeros(self.num_nodes, dtype=torch.long, device=self.device)
        deg.index_add_(0, self.adj.row(), keep.long())
        rowptr = torch.zeros(self.num_nodes + 1, dtype=torch.long, device=self.device)
        torch.cumsum(deg, 0, out=rowptr[1:])
        val = None if self.adj.val is None else self.adj.val[keep]
        adj = _csr(rowptr, self.adj.col.long()[keep], val, self.num_nodes)
        out = GraphBatch._trusted(self.x, adj, self.ptr, self.y)
        out._batch = self._batch
        return out

    def add_entries(self, row: Tensor, col: Tensor) -> "GraphBatch":
        """The pattern with entries ``(row[k], col[k])`` added (global node ids inside one
        graph each); an entry already stored, or added twice, is stored once."""
        if self.adj.val is not None:
            raise ValueError("GraphBatch.add_entries: adj must be a pattern (val None)")
        if row.numel():
            b = self.batch
            if not bool((b[row] == b[col]).all()):
                raise ValueError("GraphBatch.add_entries: an added entry joins two graphs")
        r = torch.cat([self.adj.row(), row.long()])
        c = torch.cat([self.adj.col.long(), col.long()])
        A = CSR.from_coo(r, c, None, self.adj.shape)
        adj = A.with_values(None)  # duplicates stored once
        out = GraphBatch._trusted(self.x, adj, self.ptr, self.y)
        out._batch = self._batch
        return out


def _ranges(starts: Tensor, counts: Tensor, total: int) -> Tensor:
    """Concatenation of ``arange(starts[k], starts[k] + counts[k])`` over k, vectorised."""
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=starts.device)
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=starts.device), counts,
                                  output_size=total)
    offs = torch.zeros_like(counts)
    torch.cumsum(counts[:-1], 0, out=offs[1:])
    return starts[seg] + torch.arange(total, device=starts.device) - offs[seg]


def _csr(rowptr: Tensor, col: Tensor, val: Optional[Tensor], n: int) -> CSR:
    """A CSR with int32 indices where they fit (the library's convention)."""
    idx = torch.int32 if max(n, col.numel()) < 2**31 - 1 else torch.int64
    return CSR._trusted(rowptr.to(idx), col.to(idx), val, (n, n))
