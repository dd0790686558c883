"""Top-K ranking metrics for implicit-feedback recommenders, by full ranking.

For every user ``u`` with a non-empty ground truth ``T_u``, all items are scored
(``user_emb[u] . item_emb[i]``), the items in the exclusion sets (training items, and the
validation items when evaluating on test) are set to ``-inf``, and the top ``K`` are taken::

    Recall@K(u)    = |top_K(u) ∩ T_u| / |T_u|
    Precision@K(u) = |top_K(u) ∩ T_u| / K
    NDCG@K(u)      = sum_{r=1..K} 1[item_r ∈ T_u] / log2(r + 1)
                     / sum_{r=1..min(|T_u|, K)} 1 / log2(r + 1)

averaged over the users with non-empty ``T_u`` (LightGCN and LTH-MRS definitions). When
``K`` exceeds the number of candidate items, only the ranked candidates count (Precision
still divides by ``K``); excluded items never count as hits, even when they are also in
``T_u``. Users are processed in batches whose temporaries (scores, top-k, the index arrays
of their truth and excluded entries) fit a fixed byte budget, :data:`BATCH_BYTES` by default:
the peak memory is bounded by construction, whatever the machine's free memory, and no array
over all stored entries of ``truth`` or ``exclude`` is ever built.

Example::

    >>> m = ranking_metrics(user_emb, item_emb, data.test_csr,
    ...                     exclude=[data.train_csr, data.val_csr], ks=(10, 20))
    >>> m["recall@20"], m["ndcg@20"]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..sparse.csr import CSR

Tensor = torch.Tensor

__all__ = ["BATCH_BYTES", "metrics_from_hits", "ranking_metrics", "topk_hits",
           "user_batches"]


def _discounts(n: int, dtype: torch.dtype, device) -> Tensor:
    """``1 / log2(r + 1)`` for ranks ``r = 1..n``."""
    return 1.0 / torch.log2(torch.arange(2, n + 2, dtype=dtype, device=device))


def metrics_from_hits(
    hits: Tensor, num_truth: Tensor, ks: Sequence[int] = (10, 20)
) -> dict[str, Tensor]:
    """Per-user metrics from a ranked hit matrix.

    Args:
        hits: bool ``(B, L)``; ``hits[b, r]`` says whether the item at rank ``r + 1`` of user
            ``b`` is in its ground truth (``L`` = number of ranked items, may be < K).
        num_truth: ``(B,)`` sizes ``|T_u|`` (> 0).
        ks: cut-offs.

    Returns:
        ``{"recall@K", "precision@K", "ndcg@K"}`` -> float64 ``(B,)`` for each K.
    """
    fn = "metrics_from_hits"
    if hits.dim() != 2 or hits.dtype != torch.bool:
        raise ValueError(
            f"{fn}: hits must be a 2-D bool tensor, got {hits.dtype} {tuple(hits.shape)}"
        )
    if num_truth.shape != (hits.shape[0],):
        raise ValueError(
            f"{fn}: num_truth must have shape ({hits.shape[0]},), got {tuple(num_truth.shape)}"
        )
    out: dict[str, Tensor] = {}
    n_true = num_truth.to(torch.float64)
    length = hits.shape[1]
    disc = _discounts(max(max(ks), 1), torch.float64, hits.device)
    ideal = torch.cumsum(disc, 0)
    for k in ks:
        if k < 1:
            raise ValueError(f"{fn}: ks must be >= 1, got {k}")
        h = hits[:, : min(k, length)].to(torch.float64)
        n_hit = h.sum(1)
        out[f"recall@{k}"] = n_hit / n_true
        out[f"precision@{k}"] = n_hit / k
        dcg = (h * disc[: h.shape[1]]).sum(1)
        idcg = ideal[(num_truth.clamp(min=1, max=k) - 1).long()]
        out[f"ndcg@{k}"] = dcg / idcg
    return out


#: bytes of temporaries one batch of users may hold by default: its scores, its top-k and
#: the index arrays of its truth and excluded entries. The batch size follows from this fixed
#: budget (never from the free memory), so the peak does not depend on the machine's state.
BATCH_BYTES = 128 << 20
#: bytes per stored entry of a batch's rows while it is in use (int64 row, position, column
#: and flat index arrays; an upper bound of what :func:`_flat_entries` holds at once)
_ENTRY_BYTES = 48
#: bytes per ranked slot (top-k values and indices, query keys, search positions, hits)
_SLOT_BYTES = 48


def _flat_entries(A: CSR, users: Tensor, num_cols: int) -> Tensor:
    """``b * num_cols + col`` (int64, ascending) of every stored entry in rows ``users`` of
    ``A``, ``b`` being the row's position in ``users``. Only those rows are touched: the
    memory is proportional to their entries, not to the whole matrix."""
    rowptr = A.rowptr
    start = rowptr[users].to(torch.int64)
    deg = rowptr[users + 1].to(torch.int64) - start
    n = int(deg.sum())
    local = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), deg,
                                    output_size=n)
    if n == 0:
        return local
    shift = start - (torch.cumsum(deg, 0) - deg)  # position in A.col = entry index + shift
    pos = torch.arange(n, device=users.device)
    pos += shift[local]
    cols = A.col[pos].to(torch.int64)
    del pos
    return local.mul_(num_cols).add_(cols)


def topk_hits(
    scores: Tensor,
    users: Tensor,
    truth: CSR,
    exclude: Sequence[CSR] = (),
    k: int = 20,
) -> Tensor:
    """Bool ``(B, min(k, I))`` hit matrix for the score rows ``scores`` (``(B, I)``) of
    ``users``: excluded entries are set to ``-inf`` in place, the top ``k`` taken, and a
    rank is a hit when its item is in the user's ``truth`` row and was not excluded. Works
    on the rows ``users`` of ``truth`` and ``exclude`` only."""
    num_items = scores.shape[1]
    flat_scores = scores.view(-1) if scores.is_contiguous() else None
    for ex in exclude:
        flat = _flat_entries(ex, users, num_items)
        if flat_scores is not None:
            flat_scores.index_fill_(0, flat, -torch.inf)
        else:
            scores[flat // num_items, flat % num_items] = -torch.inf
        del flat
    kk = min(k, num_items)
    vals, idx = torch.topk(scores, kk, dim=1)
    keys = _flat_entries(truth, users, num_items)
    if keys.numel() == 0:
        return torch.zeros_like(idx, dtype=torch.bool)
    q = idx.add_(torch.arange(users.numel(), device=idx.device).unsqueeze(1) * num_items)
    pos = torch.searchsorted(keys, q.reshape(-1)).clamp_(max=keys.numel() - 1).view_as(q)
    return (keys[pos] == q) & (vals > -torch.inf)


def user_batches(cost: Tensor, budget: int, max_rows: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end)]`` cutting rows with byte costs ``cost`` (``(n,)`` int64) into runs in
    order whose cost sums stay within ``budget`` (a row costing more than the budget alone
    forms its own run), at most ``max_rows`` rows each."""
    n = int(cost.numel())
    if n == 0:
        return []
    cum = torch.cumsum(cost.to("cpu", torch.int64), 0)  # cut on the host, whatever the device
    out, start, base = [], 0, 0
    while start < n:
        end = int(torch.searchsorted(cum, torch.tensor(base + int(budget)), right=True))
        end = max(end, start + 1)
        if max_rows is not None:
            end = min(end, start + max(1, int(max_rows)))
        out.append((start, end))
        base, start = int(cum[end - 1]), end
    return out


def ranking_metrics(
    user_emb: Tensor,
    item_emb: Tensor,
    truth: CSR,
    exclude: CSR | Sequence[CSR | None] | None = None,
    ks: Sequence[int] = (10, 20),
    *,
    max_scores: int = 1 << 24,
    max_bytes: int | None = None,
    reduction: str = "mean",
) -> dict[str, float] | dict[str, Tensor]:
    """Recall@K, Precision@K and NDCG@K for every ``K`` in ``ks`` by full ranking.

    Args:
        user_emb: ``(U, d)`` final user embeddings; item_emb: ``(I, d)``. Score = dot product.
        truth: binary ``U x I`` :class:`~sparselth.CSR` ground truth (e.g. test pairs).
        exclude: CSR(s) ``U x I`` of items never ranked for that user (training items;
            validation items too when ``truth`` is the test split). ``None`` entries skipped.
        ks: cut-offs, all computed from one top-``max(ks)``.
        max_scores: at most this many scores per batch of users (``max_scores // I`` users).
        max_bytes: byte budget of one batch's temporaries (default :data:`BATCH_BYTES`): the
            scores, the top-k and the index arrays of the batch's truth and excluded entries.
            Users are batched so that the estimate stays within it; only a user whose own row
            costs more is ranked alone. Beyond the inputs, the memory held is this budget plus
            O(U) (the per-user degrees and results), whatever the number of stored entries.
        reduction: ``"mean"`` (floats averaged over users with non-empty truth, plus
            ``"users"``: their count) or ``"none"`` (float64 per-user tensors and ``"users"``:
            the ids of the evaluated users).
    """
    fn = "ranking_metrics"
    if not isinstance(truth, CSR):
        raise TypeError(f"{fn}: truth must be a CSR, got {type(truth).__name__}")
    if exclude is None:
        exclude = []
    elif isinstance(exclude, CSR):
        exclude = [exclude]
    exclude = [e for e in exclude if e is not None]
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"{fn}: user_emb and item_emb must be (U, d) and (I, d), got "
            f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
        )
    U, I = user_emb.shape[0], item_emb.shape[0]
    for name, A in [("truth", truth)] + [("exclude", e) for e in exclude]:
        if not isinstance(A, CSR):
            raise TypeError(f"{fn}: {name} must be a CSR, got {type(A).__name__}")
        if A.shape != (U, I):
            raise ValueError(f"{fn}: {name} has shape {A.shape}, expected ({U}, {I})")
    if reduction not in ("mean", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'none', got {reduction!r}")
    budget = BATCH_BYTES if max_bytes is None else max_bytes
    for name, v in (("max_scores", max_scores), ("max_bytes", budget)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"{fn}: ks must be positive ints, got {ks}")
    device = user_emb.device
    truth = truth.to(device)
    exclude = [e.to(device) for e in exclude]
    deg = (truth.rowptr[1:] - truth.rowptr[:-1]).to(torch.int64)
    users = torch.nonzero(deg > 0).flatten()
    names = [f"{m}@{k}" for k in ks for m in ("recall", "precision", "ndcg")]
    parts: dict[str, list[Tensor]] = {n: [] for n in names}
    # what one user adds to a batch: its scores and embedding row, its top-k slots and the
    # index arrays of its stored entries in truth and in the exclusions
    score_bytes = torch.promote_types(user_emb.dtype, item_emb.dtype).itemsize
    cost = torch.full_like(users, I * score_bytes + user_emb.shape[1] * score_bytes
                           + min(ks[-1], I) * _SLOT_BYTES)
    for A in [truth, *exclude]:
        cost += (A.rowptr[users + 1] - A.rowptr[users]).to(torch.int64) * _ENTRY_BYTES
    batches = user_batches(cost, budget, max(1, int(max_scores) // max(I, 1)))
    del cost
    with torch.no_grad():
        for s, e in batches:
            ub = users[s:e]
            if I == 0:
                hits = torch.zeros(ub.numel(), 0, dtype=torch.bool, device=device)
            else:
                scores = user_emb[ub] @ item_emb.T
                hits = topk_hits(scores, ub, truth, exclude, ks[-1])
                del scores
            per = metrics_from_hits(hits, deg[ub], ks)
            for n in names:
                parts[n].append(per[n])
    empty = torch.zeros(0, dtype=torch.float64)
    cat = {n: (torch.cat(v) if v else empty) for n, v in parts.items()}
    if reduction == "none":
        cat["users"] = users
        return cat
    n_users = int(users.numel())
    out: dict[str, float] = {
        n: (float(v.sum()) / n_users if n_users else 0.0) for n, v in cat.items()
    }
    out["users"] = n_users
    return out
