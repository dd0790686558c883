"""Channel ranking for structured (channel) pruning: which channels of a layer to keep.

A channel ticket removes whole channels, so the pruned network is a physically smaller
dense network that runs on the dense kernels. Two scores rank the channels:

* ``"bn"``: ``|gamma|`` of the BatchNorm that normalises the channel (Network Slimming, Liu
  et al. 2017: a small scale factor means a channel that contributes little);
* ``"l1"``: the L1 norm of the filter that produces the channel (Li et al. 2017, "Pruning
  Filters for Efficient ConvNets").

:func:`keep_channels` turns scores into the sorted indices of the channels kept; model code
(e.g. :func:`sparselth.models.channel_prune_generator`) slices its layers with them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CHANNEL_SCORES", "channel_scores", "keep_channels", "kept_count"]

CHANNEL_SCORES = ("bn", "l1")


def channel_scores(module: nn.Module, score: str) -> Tensor:
    """One float64 score per output channel of ``module``: ``|weight|`` of a BatchNorm
    (``score="bn"``) or the L1 norm of each output filter of a Conv2d / Linear
    (``score="l1"``)."""
    if score not in CHANNEL_SCORES:
        raise ValueError(f"channel_scores: score must be one of {CHANNEL_SCORES}, got {score!r}")
    if score == "bn":
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.weight is None:
            raise TypeError(f"channel_scores: score 'bn' needs an affine BatchNorm module, got "
                            f"{type(module).__name__}")
        return module.weight.detach().abs().to(torch.float64).cpu()
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"channel_scores: score 'l1' needs a Conv2d or Linear module, got "
                        f"{type(module).__name__}")
    w = module.weight.detach()
    return w.abs().reshape(w.shape[0], -1).sum(1).to(torch.float64).cpu()


def kept_count(channels: int, keep: float) -> int:
    """Channels kept of ``channels`` at keep fraction ``keep``: ``round(keep * channels)``
    (half up), at least 1."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
        raise ValueError(f"kept_count: keep must be a fraction in (0, 1], got {keep!r}")
    return max(1, min(channels, int(math.floor(keep * channels + 0.5))))


def keep_channels(scores: Tensor, keep: float) -> Tensor:
    """Sorted indices (int64) of the ``kept_count(len(scores), keep)`` channels with the
    largest scores; ties keep the lower index (deterministic)."""
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"keep_channels: scores must be a non-empty 1-D tensor, got "
                         f"{tuple(scores.shape) if isinstance(scores, Tensor) else scores!r}")
    n = kept_count(scores.numel(), keep)
    # stable sort of -score: equal scores stay in index order, so the lower index wins
    order = torch.sort(-scores.to(torch.float64), stable=True).indices[:n]
    return torch.sort(order).values
