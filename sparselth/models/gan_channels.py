"""Channel tickets of the SNGAN generator: the structured counterpart of an unstructured GAN
ticket, a physically smaller dense generator that runs on the dense kernels.

Inside each up-block of :class:`~sparselth.models.SNGANGenerator` the ``hidden`` channels
between ``c1`` and ``c2`` (``c1``'s outputs = ``b2``'s channels = ``c2``'s inputs) touch
nothing else, so removing some of them leaves every shape outside the block unchanged:

- :func:`hidden_channels`: the hidden channels each block keeps, ranked by ``|gamma|`` of
  ``b2`` (``score="bn"``) or the L1 norm of ``c1``'s output filters (``score="l1"``);
- :func:`channel_masks`: those channels as element masks of the full generator's ``c1`` and
  ``c2`` weights (a :class:`~sparselth.Ticket`'s masks: the masked original);
- :func:`channel_prune_generator`: the smaller dense generator (``hidden`` = the kept
  counts) with the kept slices of ``c1``, ``b2`` and ``c2``; it computes what the masked
  original computes, in train and eval mode (BatchNorm is per channel);
- :func:`keep_for_macs`: the keep fraction whose channel-pruned generator costs a given
  number of MACs per image (e.g. an unstructured ticket's), counted with
  :func:`sparselth.metrics.count_macs`.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor, nn

from ..metrics.cost import count_macs
from ..prune.channels import CHANNEL_SCORES, channel_scores, keep_channels, kept_count
from .gan import SNGANGenerator

__all__ = ["channel_masks", "channel_prune_generator", "hidden_channels", "keep_for_macs"]


def _check_generator(fn: str, G) -> SNGANGenerator:
    if not isinstance(G, SNGANGenerator):
        raise TypeError(f"{fn}: G must be an SNGANGenerator, got {type(G).__name__}")
    masked = [n for n, _ in G.named_buffers() if n.endswith("_mask")]
    if masked:
        raise ValueError(f"{fn}: G carries installed masks ({masked[0]}, ...); fold them in "
                         f"with sparselth.prune.remove(G) first")
    return G


def hidden_channels(G: SNGANGenerator, keep: float, score: str = "bn") -> List[Tensor]:
    """Per up-block, the sorted indices of the hidden channels kept: the
    ``kept_count(hidden, keep)`` best by ``score`` (``"bn"``: ``|b2.weight|``; ``"l1"``: L1
    norm of ``c1``'s output filters)."""
    _check_generator("hidden_channels", G)
    if score not in CHANNEL_SCORES:
        raise ValueError(f"hidden_channels: score must be one of {CHANNEL_SCORES}, got "
                         f"{score!r}")
    return [keep_channels(channel_scores(b.b2 if score == "bn" else b.c1, score), keep)
            for b in G.blocks]


def channel_masks(G: SNGANGenerator, kept: List[Tensor]) -> Dict[str, Tensor]:
    """Boolean masks of every block's ``c1.weight`` (kept output filters) and ``c2.weight``
    (kept input channels) for the hidden channels ``kept`` (:func:`hidden_channels`): the
    channel ticket as a ticket of ``G`` itself."""
    _check_generator("channel_masks", G)
    if not isinstance(kept, (list, tuple)) or len(kept) != len(G.blocks):
        raise ValueError(f"channel_masks: kept must hold one index tensor per up-block "
                         f"({len(G.blocks)}), got {type(kept).__name__}")
    masks = {}
    for i, (block, idx) in enumerate(zip(G.blocks, kept)):
        on = torch.zeros(block.c1.out_channels, dtype=torch.bool)
        on[idx.long()] = True
        w1, w2 = block.c1.weight, block.c2.weight
        masks[f"blocks.{i}.c1.weight"] = on.view(-1, 1, 1, 1).expand(w1.shape).to(w1.device)
        masks[f"blocks.{i}.c2.weight"] = on.view(1, -1, 1, 1).expand(w2.shape).to(w2.device)
    return {k: v.contiguous() for k, v in masks.items()}


def channel_prune_generator(G: SNGANGenerator, keep: float, score: str = "bn"
                            ) -> SNGANGenerator:
    """A new, smaller dense :class:`SNGANGenerator` keeping ``keep`` of the hidden channels of
    every up-block (:func:`hidden_channels`), with ``G``'s weights and BatchNorm statistics
    sliced to them. Its output equals that of ``G`` under :func:`channel_masks` (the removed
    channels zeroed), in the same train/eval mode, on ``G``'s device and dtype."""
    kept = hidden_channels(G, keep, score)
    small = SNGANGenerator(G.latent_dim, G.ch, G.bottom_width, G.image_size, G.channels,
                           hidden=[int(k.numel()) for k in kept])
    state = {k: v.clone() for k, v in G.state_dict().items()}
    for i, idx in enumerate(kept):
        p = f"blocks.{i}."
        rows = idx.to(state[p + "c1.weight"].device).long()
        for name in ("c1.weight", "c1.bias", "b2.weight", "b2.bias", "b2.running_mean",
                     "b2.running_var"):
            if p + name in state:
                state[p + name] = state[p + name].index_select(0, rows)
        state[p + "c2.weight"] = state[p + "c2.weight"].index_select(1, rows)
    param = next(G.parameters())
    small = small.to(device=param.device, dtype=param.dtype)
    small.load_state_dict(state)
    return small.train(G.training)


def _macs_at(G: SNGANGenerator, keep: float, z: Tensor) -> int:
    kept = [torch.arange(kept_count(b.c1.out_channels, keep)) for b in G.blocks]
    return int(count_macs(G, z, masks=channel_masks(G, kept))["total"]["macs"])


def keep_for_macs(G: SNGANGenerator, target_macs: int) -> float:
    """The keep fraction (``k / hidden`` of some block) whose channel-pruned generator
    (:func:`channel_prune_generator`) costs the MACs per image closest to ``target_macs``
    (e.g. ``count_macs(G, z, masks=ticket.masks)["total"]["macs"]`` of an unstructured ticket
    at batch 1); ties go to the larger fraction. MACs are counted with
    :func:`sparselth.metrics.count_macs` (the shortcut, first and last layers stay whole).

    Raises ``ValueError`` when ``target_macs`` is above the dense generator's MACs or below
    those of one hidden channel per block."""
    _check_generator("keep_for_macs", G)
    if isinstance(target_macs, bool) or not isinstance(target_macs, int) or target_macs <= 0:
        raise ValueError(f"keep_for_macs: target_macs must be a positive int, got "
                         f"{target_macs!r}")
    z = torch.zeros(1, G.latent_dim, device=next(G.parameters()).device)
    fractions = sorted({k / b.c1.out_channels for b in G.blocks
                        for k in range(1, b.c1.out_channels + 1)})
    lo_macs, hi_macs = _macs_at(G, fractions[0], z), _macs_at(G, 1.0, z)
    if not lo_macs <= target_macs <= hi_macs:
        raise ValueError(f"keep_for_macs: target_macs {target_macs} is outside what channel "
                         f"pruning reaches: [{lo_macs}, {hi_macs}] MACs per image")
    lo, hi = 0, len(fractions) - 1          # MACs grow with the fraction: bisect
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _macs_at(G, fractions[mid], z) <= target_macs:
            lo = mid
        else:
            hi = mid
    below, above = _macs_at(G, fractions[lo], z), _macs_at(G, fractions[hi], z)
    return fractions[hi] if above - target_macs <= target_macs - below else fractions[lo]
