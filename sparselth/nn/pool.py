"""Graph-level readouts over a block-diagonal batch (:class:`~sparselth.sparse.GraphBatch`).

Sum and mean are one SpMM with the ``(B, N)`` pooling pattern ``P`` (row ``g`` holds graph
``g``'s nodes): ``sum = P @ x``, ``mean = diag(1 / n_g) P @ x``; max is a segment reduce
(``scatter_reduce`` amax). An empty graph pools to zeros for every reduction (never NaN or
-inf). All three run under ``torch.compile``.

Example::

    >>> h = global_pool(x, batch.ptr, "mean")     # (B, F)
"""

from __future__ import annotations

import torch

from ..ops.spmm import spmm
from ..sparse.csr import CSR

Tensor = torch.Tensor

__all__ = ["pooling_matrix", "global_pool", "global_add_pool", "global_mean_pool",
           "global_max_pool"]

_REDUCE = ("sum", "mean", "max")


def pooling_matrix(ptr: Tensor, num_nodes: int) -> CSR:
    """The ``(B, N)`` pattern with row ``g`` = columns ``ptr[g]:ptr[g+1]`` (int32 indices), with
    its transpose (one entry per row: the node's graph) filled in from the structure, so the
    backward never sorts and ``torch.compile`` sees no data-dependent sizes."""
    idx = torch.int32 if num_nodes < 2**31 - 1 else torch.int64
    B = ptr.numel() - 1
    col = torch.arange(num_nodes, device=ptr.device, dtype=idx)
    P = CSR._trusted(ptr.to(idx), col, None, (B, num_nodes))
    counts = (ptr[1:] - ptr[:-1]).long()
    graph_of = torch.repeat_interleave(torch.arange(B, device=ptr.device), counts,
                                       output_size=num_nodes)
    t_rowptr = torch.arange(num_nodes + 1, device=ptr.device, dtype=idx)
    Pt = CSR._trusted(t_rowptr, graph_of.to(idx), None, (num_nodes, B))
    ident = torch.arange(num_nodes, device=ptr.device)
    P._t, P._perm, Pt._t, Pt._perm = Pt, ident, P, ident
    return P


def _check(fn: str, x: Tensor, ptr: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise TypeError(f"{fn}: x must be a 2-D tensor (N, F), got "
                        f"{type(x).__name__ if not isinstance(x, Tensor) else tuple(x.shape)}")
    if not isinstance(ptr, Tensor) or ptr.dim() != 1 or ptr.numel() < 1 or \
            ptr.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{fn}: ptr must be a 1-D integer tensor of graph offsets (B + 1,)")
    if ptr.device != x.device:
        raise ValueError(f"{fn}: ptr is on {ptr.device}, x on {x.device}")


def global_pool(x: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    """``(B, F)`` readout of node features ``x`` ``(N, F)`` per graph, graph ``g`` owning rows
    ``ptr[g]:ptr[g+1]``; ``reduce`` is ``"sum"``, ``"mean"`` or ``"max"``."""
    fn = "global_pool"
    _check(fn, x, ptr)
    if reduce not in _REDUCE:
        raise ValueError(f"{fn}: reduce must be one of {_REDUCE}, got {reduce!r}")
    N, B = x.shape[0], ptr.numel() - 1
    if reduce == "max":
        counts = (ptr[1:] - ptr[:-1]).long()
        seg = torch.repeat_interleave(torch.arange(B, device=x.device), counts, output_size=N)
        out = x.new_zeros(B, x.shape[1])
        idx = seg.unsqueeze(1).expand(N, x.shape[1])
        return out.scatter_reduce(0, idx, x, reduce="amax", include_self=False)
    P = pooling_matrix(ptr, N)
    if reduce == "sum":
        return spmm(P, x)
    counts = (ptr[1:] - ptr[:-1]).to(x.dtype)
    scale = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    return spmm(P, x, row_scale=scale)


def global_add_pool(x: Tensor, ptr: Tensor) -> Tensor:
    """Sum of each graph's node rows (``P @ x``)."""
    return global_pool(x, ptr, "sum")


def global_mean_pool(x: Tensor, ptr: Tensor) -> Tensor:
    """Mean of each graph's node rows; zeros for an empty graph."""
    return global_pool(x, ptr, "mean")


def global_max_pool(x: Tensor, ptr: Tensor) -> Tensor:
    """Column-wise max of each graph's node rows; zeros for an empty graph."""
    return global_pool(x, ptr, "max")
