"""ROC-AUC and average precision: hand-computed cases, ties, brute-force oracles, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth.metrics import average_precision, roc_auc


def test_roc_auc_hand_computed():
    # pairs (pos, neg): (.9,.4) 1, (.9,.1) 1, (.4,.4) tie 1/2, (.4,.1) 1, (.2,.4) 0, (.2,.1) 1
    pos, neg = torch.tensor([0.9, 0.4, 0.2]), torch.tensor([0.4, 0.1])
    assert roc_auc(pos, neg) == pytest.approx(4.5 / 6)
    assert roc_auc(torch.tensor([1.0]), torch.tensor([0.0])) == 1.0
    assert roc_auc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    assert roc_auc(torch.full((3,), 0.5), torch.full((4,), 0.5)) == 0.5
    # brute force over all pairs on random scores with ties
    g = torch.Generator().manual_seed(0)
    p = torch.randint(0, 5, (40,), generator=g).float()
    q = torch.randint(0, 5, (33,), generator=g).float()
    brute = ((p[:, None] > q[None]).double() + 0.5 * (p[:, None] == q[None]).double()).mean()
    assert roc_auc(p, q) == pytest.approx(float(brute))
    with pytest.raises(ValueError, match="^roc_auc: neg"):
        roc_auc(torch.ones(2), torch.ones(0))


def test_average_precision_hand_computed():
    # descending: .9 (+), .8 (-), .7 (+): AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision(torch.tensor([0.9, 0.7]), torch.tensor([0.8])) == pytest.approx(
        0.5 + 1 / 3)
    # a tie of one positive and one negative at the top: one threshold, precision 1/2
    assert average_precision(torch.tensor([0.5]), torch.tensor([0.5, 0.1])) == pytest.approx(0.5)


def test_bad_scores():
    with pytest.raises(TypeError, match="^roc_auc: pos must be floating"):
        roc_auc(torch.tensor([1, 0]), torch.tensor([0.5]))
    with pytest.raises(TypeError, match="^average_precision: neg must be a tensor"):
        average_precision(torch.tensor([0.5]), [0.1])
    with pytest.raises(ValueError, match="^average_precision: pos is empty"):
        average_precision(torch.ones(0), torch.ones(2))


def _ap_brute(pos: list[float], neg: list[float]) -> float:
    """Average precision by its definition: a step per distinct threshold, high to low."""
    scores = sorted(set(pos) | set(neg), reverse=True)
    ap, prev_recall = 0.0, 0.0
    for t in scores:
        tp = sum(p >= t for p in pos)
        fp = sum(q >= t for q in neg)
        recall = tp / len(pos)
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return ap


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12),
       st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_auc_ap_fuzz(pos, neg):
    p, q = torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32)
    brute = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert roc_auc(p, q) == pytest.approx(brute)
    assert average_precision(p, q) == pytest.approx(_ap_brute(pos, neg))
