"""Link-prediction metrics: ROC-AUC and average precision of scores given to positive
(held-out) and negative (non-edge) node pairs.

Both take the two score vectors separately, compute in float64 and match scikit-learn's
``roc_auc_score`` and ``average_precision_score`` on the concatenated scores and labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["average_precision", "roc_auc"]


def _check_scores(fn: str, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    for name, t in (("pos", pos), ("neg", neg)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a tensor, got {type(t).__name__}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{fn}: {name} must be floating, got {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"{fn}: {name} is empty: need at least one positive and one negative")
    return pos.detach().reshape(-1).double(), neg.detach().reshape(-1).double()


def _tie_averaged_ranks(scores: Tensor) -> Tensor:
    """1-based ranks in ascending order, tied scores sharing their average rank."""
    order = torch.argsort(scores, stable=True)
    s = scores[order]
    _, counts = torch.unique_consecutive(s, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # last 1-based rank of each tie group
    avg = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = torch.repeat_interleave(avg, counts)
    return ranks


def roc_auc(pos: Tensor, neg: Tensor) -> float:
    """Area under the ROC curve of scores ``pos`` (positives) vs ``neg`` (negatives).

    Rank form (Mann-Whitney U): ``(sum of the positives' ranks - P (P + 1) / 2) / (P N)``
    with tied scores sharing their average rank, i.e. the probability that a random
    positive scores above a random negative, ties counting one half. Equals scikit-learn's
    ``roc_auc_score``. Computed in float64.

    Example::

        >>> roc_auc(torch.tensor([0.9, 0.4]), torch.tensor([0.4, 0.1]))   # (1 + 1 + 0.5 + 1) / 4
        0.875
    """
    pos, neg = _check_scores("roc_auc", pos, neg)
    ranks = _tie_averaged_ranks(torch.cat([pos, neg]))
    p, n = pos.numel(), neg.numel()
    u = ranks[:p].sum() - p * (p + 1) / 2
    return float(u / (p * n))


def average_precision(pos: Tensor, neg: Tensor) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in
    decreasing order (scikit-learn's ``average_precision_score``; tied scores form one
    threshold)."""
    pos, neg = _check_scores("average_precision", pos, neg)
    scores = torch.cat([pos, neg])
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    order = torch.argsort(scores, descending=True, stable=True)
    s, lab = scores[order], labels[order]
    _, counts = torch.unique_consecutive(s, return_counts=True)
    last = torch.cumsum(counts, 0) - 1  # index of the last item of each threshold group
    tp = torch.cumsum(lab, 0)[last]
    predicted = (last + 1).double()
    precision = tp / predicted
    recall = tp / pos.numel()
    prev = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - prev) * precision).sum())
