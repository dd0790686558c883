"""Embedding tables sharded by rows across the ranks of a ``torch.distributed`` process group.

A table of ``R`` rows too large for one machine is split into contiguous row ranges
(:func:`row_partition`): rank ``r`` stores rows ``[start_r, end_r)`` as an ordinary local table
(its *shard*: a :class:`~sparselth.nn.MaskedEmbedding` for training, a
:class:`~sparselth.nn.CompressedEmbedding` for deployment, or an ``nn.Embedding``).
``forward(ids)`` takes global ids on every rank and routes them:

1. each id goes to its owner (``owner = bisect(ends, id)``), in owner order;
2. the ranks swap their counts, then the ids (local to the owner), with one all-to-all each;
3. every rank looks its received ids up in its shard (the library's own kernels:
   :func:`~sparselth.ops.masked_embedding`, :func:`~sparselth.ops.embedding_lookup`);
4. the rows travel back with a third all-to-all and are put back in the ids' order.

The backward of step 4 is the reverse all-to-all: the gradient of each row goes back to the rank
that owns it, where the shard's own backward accumulates it (dense or sparse ``sparse_grad``,
masked entries exactly zero). Every rank therefore has to call ``forward`` the same number of
times, and to run the backward of every lookup it made (also with an empty batch: its output
``(0, d)`` still takes part), as with ``DistributedDataParallel``.

The shards are not replicas: keep them out of ``DistributedDataParallel``'s gradient
all-reduce (:func:`sharded_state_names` lists them for DDP's ignore list) and step them with
their own optimizer (e.g. ``torch.optim.SparseAdam`` with ``sparse_grad=True``).

With one rank (world size 1, or no process group initialised) nothing is exchanged and the
module is its shard: lookups and gradients equal the unsharded table's exactly.

Transport: :class:`AllToAll` over ``torch.distributed.all_to_all_single`` (gloo on the CPU,
NCCL on GPUs; gloo supports uneven splits and every float dtype). It is the only communication
a :class:`ShardedEmbedding` does; another transport (e.g. the all-to-all of TorchRec's sharded
collections, or one overlapping with compute) is any object with the same ``rank``,
``world_size``, ``group`` and ``__call__``, passed as ``exchange=``.

Example (every rank)::

    >>> dist.init_process_group("gloo")
    >>> emb = ShardedMaskedEmbedding(100_000_000, 64, sparse_grad=True)   # rows of this rank
    >>> rows = emb(batch_ids)                  # global ids -> (batch, 64), any rank's rows
    >>> rows.sum().backward()                  # gradients land in the owners' shards
    >>> masks = sparselth.prune.sharded_magnitude(emb, 0.9)   # one threshold over all shards
    >>> deploy = emb.to_compressed()           # compressed shards, same routing
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from .embedding import CompressedEmbedding, CompressedEmbeddingBag, MaskedEmbedding

Tensor = torch.Tensor

__all__ = ["row_partition", "row_owner", "AllToAll", "ShardedEmbedding",
           "ShardedMaskedEmbedding", "sharded_state_names"]


def _check_count(op: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value


def row_partition(num_rows: int, world_size: int) -> List[Tuple[int, int]]:
    """The contiguous row range ``(start, end)`` of each rank of a ``num_rows`` table.

    With ``q, r = divmod(num_rows, world_size)`` the first ``r`` ranks own ``q + 1`` rows and
    the others ``q``: sizes differ by at most one, and rank ``k`` starts at
    ``k * q + min(k, r)``. Ranks beyond ``num_rows`` own an empty range.

    Example::

        >>> row_partition(10, 4)
        [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    op = "row_partition"
    _check_count(op, "num_rows", num_rows, 0)
    _check_count(op, "world_size", world_size, 1)
    q, r = divmod(num_rows, world_size)
    starts = [k * q + min(k, r) for k in range(world_size + 1)]
    return [(starts[k], starts[k + 1]) for k in range(world_size)]


def row_owner(ids: Tensor, partition: Sequence[Tuple[int, int]]) -> Tensor:
    """The rank owning each id (int64, ``ids``' shape) under ``partition`` (from
    :func:`row_partition`); ids must lie in the table."""
    ends = torch.tensor([end for _, end in partition], dtype=torch.int64, device=ids.device)
    return torch.bucketize(ids.long(), ends, right=True)


def _rank_world(group) -> Tuple[int, int]:
    """(rank, world size) in ``group``; ``(0, 1)`` when no process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise ValueError("group: a process group was given but torch.distributed is not "
                             "initialised (call torch.distributed.init_process_group first)")
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


class _Exchange(torch.autograd.Function):
    """``all_to_all_single`` whose backward sends the gradients back the way they came."""

    @staticmethod
    def forward(ctx, x, send_splits, recv_splits, group):
        ctx.splits, ctx.group = (send_splits, recv_splits), group
        out = x.new_empty((sum(recv_splits),) + tuple(x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), list(recv_splits), list(send_splits),
                               group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        send_splits, recv_splits = ctx.splits
        return _Exchange.apply(grad, recv_splits, send_splits, ctx.group), None, None, None


class AllToAll:
    """The transport of a :class:`ShardedEmbedding`: ``torch.distributed.all_to_all_single``
    over ``group`` (None: the default group), differentiable.

    ``exchange(x, send_splits, recv_splits)`` sends ``x[first send_splits[0] rows]`` to rank 0,
    the next ``send_splits[1]`` rows to rank 1, ...; returns the ``sum(recv_splits)`` rows
    received, rank 0's first. Its backward is the same exchange in reverse.
    """

    def __init__(self, group=None):
        self.group = group
        self.rank, self.world_size = _rank_world(group)

    def __call__(self, x: Tensor, send_splits: Sequence[int],
                 recv_splits: Sequence[int]) -> Tensor:
        return _Exchange.apply(x, tuple(send_splits), tuple(recv_splits), self.group)

    def __repr__(self) -> str:
        return f"AllToAll(rank={self.rank}, world_size={self.world_size})"


def _check_exchange(op: str, exchange, group):
    """``exchange`` (default: :class:`AllToAll` over ``group``), checked."""
    if exchange is None:
        return AllToAll(group)
    if not callable(exchange) or not all(
            hasattr(exchange, a) for a in ("rank", "world_size", "group")):
        raise TypeError(f"{op}: exchange must be callable with rank, world_size and group "
                        f"attributes (like AllToAll), got {type(exchange).__name__}")
    if group is not None and exchange.group is not group:
        raise ValueError(f"{op}: group differs from exchange.group; pass one of them")
    return exchange


def _shard_rows(shard: nn.Module) -> Tuple[int, int]:
    """(rows, dim) of a shard module."""
    if isinstance(shard, CompressedEmbeddingBag) or not isinstance(
            shard, (nn.Embedding, CompressedEmbedding)):
        raise TypeError(f"ShardedEmbedding: shard must be an nn.Embedding, MaskedEmbedding or "
                        f"CompressedEmbedding, got {type(shard).__name__}")
    return shard.num_embeddings, shard.embedding_dim


class ShardedEmbedding(nn.Module):
    """A ``(num_embeddings, d)`` table whose rows are spread over the ranks of ``group``;
    ``forward(ids)`` looks up global ids (any shape, int32/int64) and returns
    ``ids.shape + (d,)`` rows, wherever they are stored (module docstring).

    Args:
        shard: this rank's rows ``rows = row_partition(num_embeddings, world_size)[rank]`` as an
            ``nn.Embedding``, :class:`~sparselth.nn.MaskedEmbedding` or
            :class:`~sparselth.nn.CompressedEmbedding` (row ``i`` of the shard is global row
            ``rows[0] + i``).
        num_embeddings: rows of the whole table.
        group: the ``torch.distributed`` process group (None: the default one, or world size 1
            when none is initialised).
        exchange: the transport (default :class:`AllToAll` over ``group``).

    An id outside ``[0, num_embeddings)`` on any rank raises ``ValueError`` on every rank
    (the check travels with the counts, so no rank is left waiting).
    """

    def __init__(self, shard: nn.Module, num_embeddings: int, *, group=None, exchange=None):
        super().__init__()
        op = type(self).__name__
        _check_count(op, "num_embeddings", num_embeddings, 0)
        local_rows, dim = _shard_rows(shard)
        exchange = _check_exchange(op, exchange, group)
        self.exchange = exchange
        self.rank, self.world_size = exchange.rank, exchange.world_size
        self.num_embeddings, self.embedding_dim = num_embeddings, dim
        self.partition = row_partition(num_embeddings, self.world_size)
        self.rows = self.partition[self.rank]
        if local_rows != self.rows[1] - self.rows[0]:
            raise ValueError(f"{op}: shard has {local_rows} rows but rank {self.rank} of "
                             f"{self.world_size} owns rows [{self.rows[0]}, {self.rows[1]}) of "
                             f"{num_embeddings} (row_partition)")
        self.shard = shard

    @property
    def group(self):
        return self.exchange.group

    # -- lookup
    def _check_ids(self, ids) -> Tensor:
        op = type(self).__name__
        if not isinstance(ids, Tensor):
            raise TypeError(f"{op}: ids must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{op}: ids must be int32 or int64, got {ids.dtype}")
        return ids.reshape(-1)

    def _out_of_range(self, flat: Tensor) -> Optional[str]:
        if flat.numel() == 0:
            return None
        lo, hi = (int(v) for v in torch.aminmax(flat))
        if lo < 0 or hi >= self.num_embeddings:
            return f"values in [{lo}, {hi}]"
        return None

    def forward(self, ids: Tensor) -> Tensor:
        flat = self._check_ids(ids)
        op = type(self).__name__
        bad = self._out_of_range(flat)
        if self.world_size == 1:
            if bad:
                raise ValueError(f"{op}: ids must be in [0, {self.num_embeddings}), got {bad}")
            return self.shard(ids)
        owner = row_owner(flat, self.partition)
        order = torch.argsort(owner, stable=True)
        W = self.world_size
        meta = torch.zeros(W, 2, dtype=torch.int64, device=flat.device)
        if bad is None:
            meta[:, 0] = torch.bincount(owner, minlength=W)
        meta[:, 1] = int(bad is not None)
        # counts and the out-of-range flag in one exchange: a bad batch stops every rank
        peer = self.exchange(meta, [1] * W, [1] * W)
        if bool(peer[:, 1].any()):
            where = [r for r in range(W) if int(peer[r, 1])]
            raise ValueError(f"{op}: ids must be in [0, {self.num_embeddings}), got "
                             + (bad if bad else f"ids out of range on rank(s) {where}"))
        send = meta[:, 0].tolist()
        recv = peer[:, 0].tolist()
        starts = torch.tensor([s for s, _ in self.partition], dtype=torch.int64,
                              device=flat.device)
        sorted_owner = owner.index_select(0, order)
        local = (flat.index_select(0, order) - starts.index_select(0, sorted_owner)).to(flat.dtype)
        wanted = self.exchange(local, send, recv)
        rows = self.shard(wanted)
        back = self.exchange(rows, recv, send)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return back.index_select(0, inverse).view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, rows=[{self.rows[0]}, "
                f"{self.rows[1]}), rank={self.rank}, world_size={self.world_size}")


class ShardedMaskedEmbedding(ShardedEmbedding):
    """A :class:`ShardedEmbedding` whose shard is a :class:`~sparselth.nn.MaskedEmbedding`
    (training: lookups of ``(W * M)[ids]``, pruned entries get zero gradient).

    Args:
        num_embeddings, embedding_dim: shape of the whole table.
        mask: this rank's ``(rows, embedding_dim)`` mask (bool or 0/1); None keeps all.
        sparse_grad, padding_idx, backend, device, dtype: as for ``MaskedEmbedding``
            (``padding_idx`` is a global row; only its owner stores it).
        group, exchange: as for :class:`ShardedEmbedding`.

    The shard is initialised like ``nn.Embedding`` (normal) from the rank's own RNG; with one
    rank the table equals ``MaskedEmbedding(num_embeddings, embedding_dim)`` drawn from the same
    RNG state. :meth:`from_dense` shards a given table instead. ``weight``, ``weight_mask``,
    ``set_mask``, ``apply_mask_`` are the shard's (this rank's rows); :meth:`table_sparsity`
    counts all ranks. Prune across all shards with :func:`sparselth.prune.sharded_magnitude`
    (``sparselth.prune.magnitude`` on a model holding it would see this rank's rows only).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, mask: Optional[Tensor] = None,
                 sparse_grad: bool = False, padding_idx: Optional[int] = None, *, group=None,
                 exchange=None, backend: str = "auto", device=None, dtype=None):
        op = type(self).__name__
        _check_count(op, "num_embeddings", num_embeddings, 0)
        _check_count(op, "embedding_dim", embedding_dim, 0)
        exchange = _check_exchange(op, exchange, group)
        rank, world = exchange.rank, exchange.world_size
        start, end = row_partition(num_embeddings, world)[rank]
        local_pad = None
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
                raise TypeError(f"{op}: padding_idx must be an int or None, got "
                                f"{type(padding_idx).__name__}")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"{op}: padding_idx must be in [-{num_embeddings}, "
                                 f"{num_embeddings}), got {padding_idx}")
            padding_idx %= num_embeddings
            if start <= padding_idx < end:
                local_pad = padding_idx - start
        shard = MaskedEmbedding(end - start, embedding_dim, mask, sparse_grad, local_pad,
                                backend=backend, device=device, dtype=dtype)
        super().__init__(shard, num_embeddings, group=group, exchange=exchange)
        self.padding_idx = padding_idx

    @classmethod
    def from_dense(cls, weight, mask: Optional[Tensor] = None,
                   sparse_grad: Optional[bool] = None, *, group=None, exchange=None,
                   **kwargs) -> "ShardedMaskedEmbedding":
        """This rank's rows of a whole table given on every rank: ``weight`` an ``(R, d)``
        tensor or an ``nn.Embedding`` / ``MaskedEmbedding`` (its ``weight_mask`` when ``mask``
        is None; its ``sparse`` and ``padding_idx`` by default), ``mask`` the whole table's
        mask. For tables that fit one machine (tests, re-sharding); ``kwargs`` go to the
        constructor."""
        op = f"{cls.__name__}.from_dense"
        if isinstance(weight, nn.Embedding):
            if mask is None:
                mask = getattr(weight, "weight_mask", None)
            if sparse_grad is None:
                sparse_grad = weight.sparse
            kwargs.setdefault("padding_idx", weight.padding_idx)
            weight = weight.weight
        if not isinstance(weight, Tensor):
            raise TypeError(f"{op}: weight must be a tensor or an nn.Embedding, got "
                            f"{type(weight).__name__}")
        if weight.dim() != 2:
            raise ValueError(f"{op}: weight must be 2-D (rows, dim), got shape "
                             f"{tuple(weight.shape)}")
        if mask is not None and (not isinstance(mask, Tensor) or mask.shape != weight.shape):
            raise ValueError(f"{op}: mask must be a tensor of weight's shape "
                             f"{tuple(weight.shape)}, got "
                             f"{getattr(mask, 'shape', type(mask).__name__)}")
        kwargs.setdefault("device", weight.device)
        kwargs.setdefault("dtype", weight.dtype)
        new = cls(weight.shape[0], weight.shape[1], sparse_grad=bool(sparse_grad), group=group,
                  exchange=exchange, **kwargs)
        start, end = new.rows
        with torch.no_grad():
            new.weight.copy_(weight.detach()[start:end])
        if mask is not None:
            new.set_mask(mask[start:end])
        return new

    # -- the shard's weight and mask (this rank's rows)
    @property
    def weight(self) -> nn.Parameter:
        return self.shard.weight

    @property
    def weight_mask(self) -> Tensor:
        return self.shard.weight_mask

    def set_mask(self, mask: Tensor) -> None:
        """Replace this rank's mask (``(rows, embedding_dim)``, bool or 0/1)."""
        self.shard.set_mask(mask)

    def apply_mask_(self) -> "ShardedMaskedEmbedding":
        """Zero this rank's pruned weights in place; returns ``self``."""
        self.shard.apply_mask_()
        return self

    @property
    def sparse_grad(self) -> bool:
        return self.shard.sparse_grad

    def table_sparsity(self) -> float:
        """Fraction of the whole table's entries pruned: a collective (an all-reduce over the
        group; ``shard.sparsity`` is this rank's rows only)."""
        m = self.weight_mask
        counts = torch.tensor([m.numel() - int(m.count_nonzero()), m.numel()],
                              dtype=torch.int64, device=m.device)
        if self.world_size > 1:
            dist.all_reduce(counts, group=self.group)
        return float(counts[0]) / max(int(counts[1]), 1)

    def to_compressed(self, format: str = "auto", quantize=None) -> ShardedEmbedding:
        """The deploy-time table: every shard a :class:`~sparselth.nn.CompressedEmbedding`
        (its format chosen per shard), the same routing and lookups."""
        shard = self.shard.to_compressed(format=format, quantize=quantize)
        return ShardedEmbedding(shard, self.num_embeddings, exchange=self.exchange)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sparse_grad={self.sparse_grad}"


def sharded_state_names(model: nn.Module) -> List[str]:
    """Names of the parameters and buffers of ``model`` that belong to a
    :class:`ShardedEmbedding` (rank-local rows, not replicas), as ``named_parameters`` /
    ``named_buffers`` spell them.

    Example::

        >>> DDP._set_params_and_buffers_to_ignore_for_model(model, sharded_state_names(model))
        >>> ddp = DDP(model)       # all-reduces the dense parameters only
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"sharded_state_names: model must be an nn.Module, got "
                        f"{type(model).__name__}")
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, ShardedEmbedding):
            dot = f"{prefix}." if prefix else ""
            names += [dot + n for n, _ in module.named_parameters()]
            names += [dot + n for n, _ in module.named_buffers()]
    return names
