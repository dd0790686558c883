"""A small image classifier whose penultimate layer serves as the feature network of a *proxy*
FID/IS when the standard Inception weights are not available (offline machines).

``ImageFeatureNet(channels, classes)``: two stages of ``conv3x3 -> BN -> ReLU`` x 2 and a 2x2
max-pool (``width``, ``2 width`` channels), global average pooling, ``Linear -> ReLU`` to
``feature_dim``; ``forward`` returns those features (the FID input), :meth:`class_probs` the
softmax of the classifier on top (the IS input). Inputs are images in [0, 1], like the
Inception network's. Its scores are comparable only with scores of the same weights (their
hash is recorded beside every score), never with published FIDs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ImageFeatureNet"]


class ImageFeatureNet(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10, width: int = 32,
                 feature_dim: int = 128):
        super().__init__()
        for name, v in (("channels", channels), ("classes", classes), ("width", width),
                        ("feature_dim", feature_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ImageFeatureNet: {name} must be a positive int, got {v!r}")
        self.config = {"channels": channels, "classes": classes, "width": width,
                       "feature_dim": feature_dim}

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU(True), nn.Conv2d(cout, cout, 3, padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU(True), nn.MaxPool2d(2))

        self.body = nn.Sequential(stage(channels, width), stage(width, 2 * width))
        self.fc = nn.Linear(2 * width, feature_dim)
        self.head = nn.Linear(feature_dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(n, feature_dim)`` features of images ``(n, channels, H, W)`` in [0, 1]."""
        c = self.config["channels"]
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != c or min(x.shape[2:]) < 4:
            raise ValueError(f"ImageFeatureNet: x must be (n, {c}, H >= 4, W >= 4), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        h = self.body(x.to(self.fc.weight.dtype)).mean(dim=(2, 3))
        return F.relu(self.fc(h))

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.forward(x))

    @torch.no_grad()
    def class_probs(self, x: Tensor) -> Tensor:
        """``(n, classes)`` class probabilities (the input of the Inception Score)."""
        return F.softmax(self.logits(x), dim=1)
