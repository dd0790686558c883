"""Classification metrics: accuracy of class scores against labels.

Example::

    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    0.5
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["accuracy"]


def accuracy(logits: Tensor, y: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of ``argmax(logits, dim=1)`` equal to ``y`` over the rows selected by ``mask``
    (a bool ``(N,)`` tensor; all rows if None); 0.0 when no row is selected.

    Args:
        logits: class scores ``(N, C)`` (logits or probabilities: only the argmax counts).
        y: labels ``(N,)``, int64 in ``[0, C)``.
        mask: optional row selection, e.g. a node split's ``val_mask``.
    """
    if logits.dim() != 2 or logits.size(0) != y.numel():
        raise ValueError(
            f"accuracy: logits must have shape (N, C) with N = {y.numel()}, got "
            f"{tuple(logits.shape)}"
        )
    pred = logits.argmax(dim=1)
    if mask is not None:
        pred, y = pred[mask], y[mask]
    if y.numel() == 0:
        return 0.0
    return int((pred == y).sum()) / y.numel()
