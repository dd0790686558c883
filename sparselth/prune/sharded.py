"""Global magnitude pruning of row-sharded embedding tables (``ShardedMaskedEmbedding``).

:func:`sharded_magnitude` gives every rank the mask of its own rows such that, put together,
the masks equal ``sparselth.prune.magnitude(model, sparsity)`` (global scope, element
granularity) on a model holding the whole tables: the ``k`` smallest ``|w|`` among the
surviving entries of all tables are pruned, ties broken by table order, then row, then column.
No rank ever holds more than its own rows.

The threshold is found by a radix select over the bit patterns of ``|w|`` as float64 (for
non-negative floats the order of the patterns as integers is the order of the values, NaN
last as in ``torch.sort``): four rounds, each summing a 65536-bin histogram of the next 16 bits
of the entries still in the running over the group (``all_reduce``, 512 KiB). After them the
``k``-th smallest value ``t`` and the number ``less`` of entries below it are known; every
entry below ``t`` is pruned, and of the entries equal to ``t`` the first ``k - less`` in
(table, row, column) order, which one ``all_gather`` of the per-rank counts of ``t`` settles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from ..nn.sharded_embedding import ShardedMaskedEmbedding
from .criteria import _round

__all__ = ["sharded_magnitude"]

_DIGIT_BITS = 16
_NAN_KEY = 0x7FF8000000000000   # one pattern for every NaN: NaNs tie, as in torch.sort


def _tables(op: str, tables) -> tuple[list[ShardedMaskedEmbedding], bool]:
    single = isinstance(tables, ShardedMaskedEmbedding)
    items = [tables] if single else tables
    if not isinstance(items, Sequence) or not items or not all(
            isinstance(t, ShardedMaskedEmbedding) for t in items):
        raise TypeError(f"{op}: tables must be a ShardedMaskedEmbedding or a non-empty sequence "
                        f"of them, got {type(tables).__name__}")
    worlds = {(t.world_size, id(t.group)) for t in items}
    if len(worlds) != 1:
        raise ValueError(f"{op}: tables must all live on the same process group")
    return list(items), single


def _local_masks(op: str, items: list[ShardedMaskedEmbedding], masks) -> list[Tensor]:
    if masks is None:
        return [t.weight_mask.detach().to("cpu", torch.bool) for t in items]
    masks = [masks] if isinstance(masks, Tensor) else masks
    if not isinstance(masks, Sequence) or len(masks) != len(items):
        raise ValueError(f"{op}: masks must hold one mask per table ({len(items)}), got "
                         f"{type(masks).__name__}")
    out = []
    for i, (t, m) in enumerate(zip(items, masks)):
        if not isinstance(m, Tensor) or m.shape != t.weight.shape:
            raise ValueError(f"{op}: masks[{i}] must be a tensor of this rank's shard shape "
                             f"{tuple(t.weight.shape)}, got "
                             f"{getattr(m, 'shape', type(m).__name__)}")
        out.append(m.detach().to("cpu").bool())
    return out


def _keys(weight: Tensor) -> Tensor:
    """int64 keys ordered like ``|weight|`` as float64 (flat)."""
    a = weight.detach().to("cpu", torch.float64).abs().reshape(-1)
    k = a.view(torch.int64).clone()
    k[torch.isnan(a)] = _NAN_KEY
    return k


class _Group:
    """The few collectives pruning needs (nothing is exchanged with one rank)."""

    def __init__(self, table: ShardedMaskedEmbedding):
        self.group, self.rank, self.world_size = table.group, table.rank, table.world_size

    def sum(self, t: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(t, group=self.group)
        return t

    def gather(self, t: Tensor) -> Tensor:
        """``(world_size, *t.shape)``: every rank's ``t``."""
        if self.world_size == 1:
            return t.unsqueeze(0)
        out = t.new_empty((self.world_size * t.shape[0],) + tuple(t.shape[1:]))
        dist.all_gather_single(out, t.contiguous(), group=self.group)   # gloo: concatenated
        return out.view((self.world_size,) + tuple(t.shape))


def _select_key(group: _Group, keys: Tensor, k: int) -> tuple[int, int]:
    """The ``k``-th smallest key (1-based) over every rank's ``keys``, and how many keys are
    smaller than it."""
    prefix, less, cand = 0, 0, keys
    bins = 1 << _DIGIT_BITS
    for shift in range(64 - _DIGIT_BITS, -1, -_DIGIT_BITS):
        digit = (cand >> shift) & (bins - 1)
        hist = group.sum(torch.bincount(digit, minlength=bins))
        csum = torch.cumsum(hist, 0)
        d = int(torch.searchsorted(csum, torch.tensor([k], dtype=csum.dtype)).item())
        below = int(csum[d - 1]) if d > 0 else 0
        k -= below
        less += below
        prefix |= d << shift
        cand = cand[digit == d]
    return prefix, less


def sharded_magnitude(tables, sparsity: float | None = None, *, fraction: float | None = None,
                      masks=None):
    """Global magnitude pruning over all shards of one or several sharded tables; a collective
    (every rank of the tables' group calls it with the same arguments).

    Args:
        tables: a :class:`~sparselth.nn.ShardedMaskedEmbedding`, or a sequence of them on the
            same group (one threshold over all, in this order: as the parameters of a model).
        sparsity: fraction in [0, 1] of all entries that is zero afterwards, counting those
            pruned already (``round(sparsity * total)`` entries).
        fraction: instead of ``sparsity``, prune this fraction of the surviving entries (the
            IMP step).
        masks: the current masks of this rank's rows (one per table); default: the tables'
            ``weight_mask``. Pruned entries are never revived.

    Returns:
        this rank's new bool mask (a list, one per table, when ``tables`` is a sequence); the
        tables are not modified (install with ``table.set_mask(mask)``). Equal to the rows of
        ``sparselth.prune.magnitude(whole_model, sparsity, masks=whole_masks)``.

    Example::

        >>> emb.set_mask(sharded_magnitude(emb, fraction=0.2))   # one IMP round, every rank
    """
    op = "sharded_magnitude"
    items, single = _tables(op, tables)
    for label, v in (("sparsity", sparsity), ("fraction", fraction)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{op}: {label} must be a number in [0, 1], got {v!r}")
    if (sparsity is None) == (fraction is None):
        raise ValueError(f"{op}: pass exactly one of sparsity or fraction=")
    alive = [m.reshape(-1) for m in _local_masks(op, items, masks)]
    group = _Group(items[0])
    counts = group.sum(torch.tensor([sum(a.numel() for a in alive),
                                     sum(int(a.count_nonzero()) for a in alive)]))
    total, n_alive = int(counts[0]), int(counts[1])
    if sparsity is not None:
        need = _round(float(sparsity) * total) - (total - n_alive)
    else:
        need = n_alive - _round(n_alive * (1.0 - float(fraction)))
    out = [a.clone() for a in alive]
    if need > 0:
        keys = [_keys(t.weight) for t in items]
        live_keys = torch.cat([k[a] for k, a in zip(keys, alive)])
        threshold, less = _select_key(group, live_keys, need)
        ties = [(k == threshold) & a for k, a in zip(keys, alive)]
        # ties in (table, rank, row, column) order: the first need - less are pruned
        per_rank = group.gather(torch.tensor([int(t.count_nonzero()) for t in ties]))
        before = 0
        for i, (k, a, tie) in enumerate(zip(keys, alive, ties)):
            before_here = before + int(per_rank[:group.rank, i].sum())
            take = min(max(need - less - before_here, 0), int(per_rank[group.rank, i]))
            pruned = (k < threshold) & a
            pruned[tie.nonzero().reshape(-1)[:take]] = True
            out[i] = a & ~pruned
            before += int(per_rank[:, i].sum())
    shaped = [m.reshape(t.weight.shape).to(t.weight_mask.device) for m, t in zip(out, items)]
    return shaped[0] if single else shaped
