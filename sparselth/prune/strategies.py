"""Pruning strategies: pure functions ``strategy(model, masks, fraction, config) -> Masks``
that prune ``fraction`` of the surviving entries of ``masks`` (the model carries the trained
weights with ``masks`` installed; ``config`` is the driver's config, e.g. an ``IMPConfig``
with ``scope``, ``granularity``, ``include``/``exclude``, ``block`` and ``channel``).

Every built-in is registered when ``sparselth.prune`` is imported:

* ``"magnitude"``: the survivors with the smallest trained magnitude;
* ``"random"``: survivors drawn at random (the baseline; torch's global RNG);
* ``"embedding_row_norm"``: whole rows of embedding tables by the L2 norm of ``W * M``,
  one global ranking over all tables (users and items together);
* ``"embedding_random_row"``: random surviving rows (the row baseline).

Add one with ``@register_strategy("name")`` and select it with ``IMPConfig(strategy="name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import criteria
from .masks import Masks

__all__ = ["STRATEGIES", "get_strategy", "register_strategy"]

STRATEGIES: dict[str, Callable[..., Masks]] = {}


def register_strategy(name: str):
    """Decorator: register ``fn(model, masks, fraction, config) -> Masks`` under ``name``."""

    def deco(fn):
        STRATEGIES[name] = fn
        return fn

    return deco


def get_strategy(name: str) -> Callable[..., Masks]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown pruning strategy {name!r}; registered: {sorted(STRATEGIES)}") from None


def _criterion_kwargs(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name)
            for name in ("scope", "granularity", "include", "exclude", "block", "channel")}


@register_strategy("magnitude")
def magnitude_strategy(model: nn.Module, masks: Masks, fraction: float, config: Any) -> Masks:
    """Prune ``fraction`` of the survivors with the smallest trained magnitudes."""
    return criteria.magnitude(model, masks=masks, fraction=fraction, **_criterion_kwargs(config))


@register_strategy("random")
def random_strategy(model: nn.Module, masks: Masks, fraction: float, config: Any) -> Masks:
    """Prune ``fraction`` of the survivors uniformly at random (torch global RNG)."""
    return criteria.random(model, masks=masks, fraction=fraction, seed=None,
                           **_criterion_kwargs(config))


@register_strategy("embedding_row_norm")
def row_norm_strategy(model: nn.Module, masks: Masks, fraction: float, config: Any) -> Masks:
    """Prune ``round(fraction * surviving rows)`` whole rows of every masked 2-D table with
    the smallest L2 norm of ``W * M``, one global ranking over all tables (users and items
    together)."""
    params = dict(model.named_parameters())
    scores, owners = [], []
    for name, m in masks.items():
        w = params[name].detach()
        mm = m.to(w.device)
        norm = (w * mm).norm(dim=1).to(torch.float64).cpu()
        norm[~mm.any(1).cpu()] = math.inf
        scores.append(norm)
        owners.append(name)
    allscores = torch.cat(scores)
    k = int(math.floor(fraction * int(torch.isfinite(allscores).sum()) + 0.5))
    out = masks.clone()
    if k == 0:
        return out
    drop = torch.argsort(allscores, stable=True)[:k]
    offset = 0
    for name, s in zip(owners, scores):
        rows = drop[(drop >= offset) & (drop < offset + s.numel())] - offset
        if rows.numel():
            out[name][rows.to(out[name].device)] = False
        offset += s.numel()
    return out


@register_strategy("embedding_random_row")
def random_row_strategy(model: nn.Module, masks: Masks, fraction: float, config: Any) -> Masks:
    """Random baseline for row granularity: prune random surviving rows (torch global RNG)."""
    return criteria.random(model, masks=masks, fraction=fraction, seed=None, granularity="row",
                           scope="global", include=config.include, exclude=config.exclude)
