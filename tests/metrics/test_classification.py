"""Accuracy: argmax against labels, row selection by a mask, empty selections, bad shapes."""

from __future__ import annotations

import pytest
import torch

from sparselth.metrics import accuracy


def test_accuracy_hand_computed():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    y = torch.tensor([0, 0, 0, 1])
    assert accuracy(logits, y) == 0.75
    assert accuracy(logits, y, torch.tensor([False, True, False, True])) == 0.5
    assert accuracy(logits, y, torch.zeros(4, dtype=torch.bool)) == 0.0


def test_accuracy_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"^accuracy: logits must have shape \(N, C\) with N = 3"):
        accuracy(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="^accuracy"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_old_import_path_warns_and_forwards():
    import sparselth.train

    with pytest.warns(DeprecationWarning, match="sparselth.metrics.accuracy"):
        old = sparselth.train.accuracy
    assert old is accuracy
