"""Per-user random splits of user-item pairs and the names of the evaluation protocols.

``"reference"`` is each loader's own split (the LightGCN reference's LastFM files, an 80/20
per-user split of MovieLens-100K, ...). ``"standard"`` is the protocol other recommender
toolkits use, so that dense numbers can be compared with theirs: every interaction split at
random per user into 80 % train, 10 % validation and 10 % test (:func:`split_80_10_10`),
full ranking over all items, early stopping on validation Recall@20.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

Tensor = torch.Tensor

__all__ = ["PROTOCOLS", "check_protocol", "split_80_10_10"]

PROTOCOLS = ("reference", "standard")
STANDARD_FRACTIONS = (0.8, 0.1, 0.1)


def check_protocol(fn: str, protocol: object) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`, else a ValueError naming it."""
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise ValueError(f"{fn}: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def _rank_in_group(groups: Tensor, key: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort by ``(groups, key)`` ascending (stable): ``(order, rank, counts)`` with ``order``
    the permutation, ``rank`` the 0-based place of each sorted element within its group and
    ``counts`` the size of each group."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel()) - starts[groups[order]]
    return order, rank, counts


def _check_fractions(fn: str, fractions: object) -> tuple[float, float, float]:
    try:
        fr = tuple(float(f) for f in fractions)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: fractions must be 3 numbers, got {fractions!r}") from None
    if len(fr) != 3 or not all(math.isfinite(f) and 0.0 < f < 1.0 for f in fr):
        raise ValueError(f"{fn}: fractions must be 3 numbers in (0, 1), got {fractions!r}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"{fn}: fractions must sum to 1, got {fractions!r}")
    return fr  # type: ignore[return-value]


def split_80_10_10(
    pairs: Tensor,
    num_users: int,
    *,
    fractions: Sequence[float] = STANDARD_FRACTIONS,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Split ``pairs`` (integer ``(2, N)``, row 0 user ids in ``[0, num_users)``) per user at
    random into int64 ``(train, val, test)``, each keeping the relative order of ``pairs``.

    A user with ``n >= 3`` pairs gets ``round(f_test * n)`` test and ``round(f_val * n)``
    validation pairs, at least one of each and at least one left in train; a user with fewer
    than 3 pairs keeps them all in train (too few to hold any out). The draw uses
    ``generator`` or a ``torch.Generator`` seeded with ``seed``, so it is deterministic.
    """
    fn = "split_80_10_10"
    if not isinstance(pairs, Tensor):
        raise TypeError(f"{fn}: pairs must be a torch.Tensor, got {type(pairs).__name__}")
    if pairs.dim() != 2 or pairs.shape[0] != 2:
        raise ValueError(f"{fn}: pairs must have shape (2, N), got {tuple(pairs.shape)}")
    if pairs.dtype.is_floating_point or pairs.dtype in (torch.bool,) or pairs.dtype.is_complex:
        raise TypeError(f"{fn}: pairs must hold integer ids, got {pairs.dtype}")
    if not isinstance(num_users, int) or isinstance(num_users, bool) or num_users < 0:
        raise ValueError(f"{fn}: num_users must be an int >= 0, got {num_users!r}")
    _, f_val, f_test = _check_fractions(fn, fractions)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
    pairs = pairs.to(torch.int64)
    users = pairs[0]
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= num_users):
        raise ValueError(f"{fn}: pairs has user ids outside [0, {num_users})")
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    n = pairs.shape[1]
    key = torch.rand(n, generator=gen, dtype=torch.float64)
    idx, rank, counts = _rank_in_group(users, key, num_users)
    c = counts.to(torch.float64)
    n_test = torch.floor(c * f_test + 0.5).to(torch.int64).clamp(min=1)
    n_test = torch.minimum(n_test, counts - 2)
    n_val = torch.floor(c * f_val + 0.5).to(torch.int64).clamp(min=1)
    n_val = torch.minimum(n_val, counts - 1 - n_test)
    few = counts < 3
    n_test[few] = 0
    n_val[few] = 0
    part = torch.zeros(n, dtype=torch.int64)  # 0 train, 1 val, 2 test
    u = users[idx]
    part[idx] = torch.where(rank < n_test[u], 2, torch.where(rank < (n_test + n_val)[u], 1, 0))
    return pairs[:, part == 0], pairs[:, part == 1], pairs[:, part == 2]
