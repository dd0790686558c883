"""``edge_softmax``: softmax over the stored entries of each CSR row (graph attention).

With rows as destination nodes, ``alpha[e] = exp(s[e]) / sum_{e' in row(e)} exp(s[e'])`` turns
per-edge attention logits into per-node attention weights (GAT). Entries with ``keep == False``
are left out of their row's softmax entirely (output exactly 0, no share of the denominator):
that is what makes a pruned edge cost nothing, unlike a logit of 0. Vectorised: a segment max
(``scatter_reduce`` amax on the row index) for stability, ``exp``, a segment sum
(``index_add``); the backward is the usual ``alpha * (g - sum_row(alpha * g))``.

Non-finite logits follow ``torch.softmax`` over each row's kept entries exactly: a row whose
kept logits hold a NaN or a ``+inf``, or are all ``-inf``, gives NaN on all its kept entries;
a ``-inf`` next to a finite logit gives 0. Excluded entries are 0 whatever their logit, and a
row with no kept entry gives nothing (no NaN: it has no softmax to take).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from ._common import check_csr, check_mask, row_index

Tensor = torch.Tensor

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(op: str, A, logits, keep) -> None:
    check_csr(op, "A", A)
    if not isinstance(logits, Tensor):
        raise TypeError(f"{op}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in _FLOATS:
        raise TypeError(f"{op}: logits must be floating, got {logits.dtype}")
    if logits.dim() not in (1, 2) or logits.shape[0] != A.nnz:
        raise ValueError(f"{op}: logits must have shape ({A.nnz},) or ({A.nnz}, H) "
                         f"(one row per stored entry of A), got {tuple(logits.shape)}")
    if logits.device != A.device:
        raise ValueError(f"{op}: logits is on {logits.device} but A is on {A.device}")
    check_mask(op, "keep", keep, [(A.nnz,), tuple(logits.shape)],
               f"shape ({A.nnz},) or logits' shape {tuple(logits.shape)}", (torch.bool,),
               "have dtype torch.bool", A.device, "A")


def _forward(row: Tensor, num_rows: int, logits: Tensor, keep: Optional[Tensor]) -> Tensor:
    """The softmax itself on ``(nnz, H)`` logits (no autograd needed)."""
    H = logits.shape[1]
    index = row.unsqueeze(1).expand(-1, H)
    if keep is not None:
        logits = logits.masked_fill(~keep, float("-inf"))
    row_max = torch.full((num_rows, H), float("-inf"), dtype=logits.dtype, device=logits.device)
    row_max = row_max.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
    # torch.softmax's arithmetic: a NaN or +inf max makes the row NaN (inf - inf), as does an
    # all -inf row (-inf - -inf); excluded entries are set to exactly 0 afterwards.
    # An excluded entry adds exp(-inf - max) = 0 to a row with a finite max; where the max is
    # not finite the row is NaN anyway, or keeps nothing (its excluded entries are zeroed).
    ex = torch.exp(logits - row_max.index_select(0, row))
    denom = torch.zeros((num_rows, H), dtype=logits.dtype, device=logits.device)
    denom.index_add_(0, row, ex)
    out = ex / denom.index_select(0, row)
    return out if keep is None else out.masked_fill(~keep, 0.0)


class _EdgeSoftmax(torch.autograd.Function):
    """Saves only the output; the backward is built from differentiable torch ops, so double
    backward works too (and ``torch.func`` transforms: forward / setup_context style, a vmap
    rule generated from the torch ops)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, row, num_rows, keep):
        return _forward(row, num_rows, logits, keep)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, row, num_rows, _ = inputs
        ctx.save_for_backward(output, row)
        ctx.num_rows = num_rows

    @staticmethod
    def backward(ctx, grad):
        out, row = ctx.saved_tensors
        prod = out * grad
        row_sum = torch.zeros((ctx.num_rows, out.shape[1]), dtype=out.dtype, device=out.device)
        row_sum = row_sum.index_add(0, row, prod)
        return prod - out * row_sum.index_select(0, row), None, None, None


def edge_softmax(A: CSR, logits: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """Softmax of ``logits`` over the stored entries of each row of ``A``.

    Args:
        A: ``(m, n)`` :class:`~sparselth.CSR`; only its pattern is read. Rows are the
            destination nodes of a graph whose stored entries are its edges.
        logits: ``(nnz,)`` or ``(nnz, H)`` (``H`` attention heads), in CSR order.
        keep: optional bool ``(nnz,)`` or ``logits.shape``; entries with ``False`` are excluded
            from their row's softmax and get exactly 0.

    Returns:
        A tensor shaped like ``logits``: for every row, its kept entries sum to 1 (per head);
        rows with no stored or no kept entry give nothing (all their entries are 0).
        Numerically stable (the row max is subtracted); differentiable with respect to
        ``logits``; float16/bfloat16 are computed in float32. Each row's kept entries are
        exactly ``torch.softmax`` of its kept logits, non-finite ones included: NaN on the
        whole row for a NaN, a ``+inf`` or all ``-inf`` logits (see the module docstring).

    Example::

        >>> A = CSR.from_edge_index(edge_index.flip(0), num_nodes=n)   # rows = targets
        >>> alpha = edge_softmax(A, scores)                             # (nnz, heads)
    """
    op = "edge_softmax"
    _check(op, A, logits, keep)
    squeeze = logits.dim() == 1
    x = logits.unsqueeze(1) if squeeze else logits
    if keep is not None:
        keep = keep.unsqueeze(1) if keep.dim() == 1 else keep
        keep = keep.expand_as(x)
    dtype = logits.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    row = row_index(A)
    if torch.is_grad_enabled() and x.requires_grad:
        out = _EdgeSoftmax.apply(x, row, A.shape[0], keep)
    else:
        out = _forward(row, A.shape[0], x, keep)
    out = out.to(dtype)
    return out.squeeze(1) if squeeze else out


def edge_softmax_reference(A: CSR, logits: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """Per-row Python loop over ``torch.softmax`` of the kept logits (in float64): slow,
    obviously correct; the oracle, non-finite logits included."""
    op = "edge_softmax_reference"
    _check(op, A, logits, keep)
    squeeze = logits.dim() == 1
    x = logits.unsqueeze(1) if squeeze else logits
    if keep is None:
        keep = torch.ones(x.shape, dtype=torch.bool, device=x.device)
    else:
        keep = (keep.unsqueeze(1) if keep.dim() == 1 else keep).expand_as(x)
    rowptr = A.rowptr.tolist()
    out = torch.zeros_like(x)
    for i in range(A.shape[0]):
        lo, hi = rowptr[i], rowptr[i + 1]
        for h in range(x.shape[1]):
            k = keep[lo:hi, h]
            if bool(k.any()):
                seg = torch.softmax(x[lo:hi, h][k].double(), dim=0).to(x.dtype)
                idx = torch.arange(lo, hi, device=x.device)[k]
                out = out.index_put((idx, torch.full_like(idx, h)), seg)
    return out.squeeze(1) if squeeze else out
