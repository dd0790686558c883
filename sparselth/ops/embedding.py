"""Embedding ops on pruned tables: deploy-time lookups from compressed storage, the
training-time masked lookup, and pooled bags.

* :func:`embedding_lookup` ``(table, ids)``: rows of a compressed table (an
  :class:`~sparselth.sparse.embedding_formats.EmbeddingFormat`) or of a dense tensor; reads only
  what the ids' rows store.
* :func:`masked_embedding` ``(weight, mask, ids)``: ``(weight * mask)[ids]`` for training, without
  forming ``weight * mask`` (O(batch) work per step, never O(table)). Backward:
  ``d weight[ids[i]] += d out[i] * mask[ids[i]]``, as a dense gradient (index-add; allocating it
  is O(table), like ``nn.Embedding``'s dense gradient) or as a sparse COO gradient
  (``sparse_grad=True``: O(batch)). Repeated ids accumulate.
* :func:`embedding_bag`: sum or mean of the rows of each bag (empty bags give zeros), on every
  format and on a dense weight with an optional mask (differentiable like ``masked_embedding``).

Backends as for :func:`~sparselth.ops.spmm`: ``reference`` (pure PyTorch, the oracle), ``cpp``
(C++/OpenMP), ``triton``, ``cuda`` (float32/float64). The ops are registered as the custom ops
``sparselth::embedding_gather`` and ``sparselth::masked_embedding`` with fake implementations,
so they trace under ``torch.compile``; eager calls skip the op machinery.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..sparse.embedding_formats import (BitmaskEmbedding, CSREmbedding, EmbeddingFormat,
                                        RowCompactEmbedding, unpack_bits)
from . import backend as _backend
from ._common import check_mask, eager_twin, register_kernel_fake

Tensor = torch.Tensor

__all__ = ["embedding_lookup", "masked_embedding", "embedding_bag", "embedding_rows_reference",
           "embedding_csr_reference", "embedding_bitmask_reference",
           "embedding_backward_reference", "embedding_sparse_grad_reference"]

_MODES = {"sum": 0, "mean": 1}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_KINDS = ("rows", "csr", "bitmask")


# =========================================================================== references


def _out_dtype(values: Tensor, scale: Optional[Tensor]) -> torch.dtype:
    return scale.dtype if values.dtype == torch.int8 else values.dtype


def _pool(rows: Tensor, bag_ptr: Optional[Tensor], mode: int) -> Tensor:
    """Per-id rows -> per-bag sum / mean (index_add over the bag of each id)."""
    if bag_ptr is None:
        return rows
    B = bag_ptr.numel() - 1
    counts = (bag_ptr[1:] - bag_ptr[:-1]).long()
    bag_of = torch.repeat_interleave(torch.arange(B, device=rows.device), counts,
                                     output_size=rows.shape[0])
    out = torch.zeros(B, rows.shape[1], dtype=rows.dtype, device=rows.device)
    out.index_add_(0, bag_of, rows)
    if mode == 1:
        out = out / counts.clamp(min=1).to(rows.dtype).unsqueeze(1)
    return out


def embedding_rows_reference(table: Tensor, remap: Optional[Tensor], scale: Optional[Tensor],
                             mask: Optional[Tensor], ids: Tensor, bag_ptr: Optional[Tensor],
                             mode: int) -> Tensor:
    """Pure-PyTorch dense / row-compact gather: row ``id`` = ``table[remap[id]] * scale * mask``
    (``remap`` None: ``table[id]``; ``remap[id] == -1``: zeros), pooled over bags."""
    ids = ids.long()
    dtype = _out_dtype(table, scale)
    if table.shape[0] == 0:  # every row pruned (ids were range-checked against remap)
        return _pool(torch.zeros(ids.numel(), table.shape[1], dtype=dtype, device=table.device),
                     bag_ptr, mode)
    r = ids if remap is None else remap.index_select(0, ids).long()
    live = r >= 0
    rr = r.clamp(min=0)
    v = table.index_select(0, rr).to(dtype)
    if scale is not None:
        v = v * scale.index_select(0, rr).unsqueeze(1)
    if mask is not None:
        v = v * mask.index_select(0, rr)
    if remap is not None:
        v = torch.where(live.unsqueeze(1), v, torch.zeros((), dtype=v.dtype, device=v.device))
    return _pool(v, bag_ptr, mode)


def _row_entries(rowptr: Tensor, ids: Tensor):
    """(item, entry): for every stored entry of the rows ``ids``, which id it belongs to and its
    position in the format's arrays."""
    start = rowptr.index_select(0, ids).long()
    count = rowptr.index_select(0, ids + 1).long() - start
    n = ids.numel()
    total = int(count.sum()) if n else 0
    item = torch.repeat_interleave(torch.arange(n, device=ids.device), count, output_size=total)
    first = torch.cumsum(count, 0) - count
    entry = start.index_select(0, item) + (torch.arange(total, device=ids.device)
                                           - first.index_select(0, item))
    return item, entry


def embedding_csr_reference(rowptr: Tensor, col: Tensor, val: Tensor, scale: Optional[Tensor],
                            ids: Tensor, bag_ptr: Optional[Tensor], mode: int,
                            dim: int) -> Tensor:
    """Pure-PyTorch per-row CSR gather (decodes only the rows of ``ids``)."""
    ids = ids.long()
    item, entry = _row_entries(rowptr, ids)
    v = val.index_select(0, entry).to(_out_dtype(val, scale))
    if scale is not None:
        v = v * scale.index_select(0, ids.index_select(0, item))
    out = torch.zeros(ids.numel(), int(dim), dtype=v.dtype, device=val.device)
    out[item, col.index_select(0, entry).long()] = v
    return _pool(out, bag_ptr, mode)


def embedding_bitmask_reference(rowptr: Tensor, bits: Tensor, val: Tensor,
                                scale: Optional[Tensor], ids: Tensor,
                                bag_ptr: Optional[Tensor], mode: int, dim: int) -> Tensor:
    """Pure-PyTorch per-row bitmask gather (unpacks only the bits of the rows of ``ids``)."""
    ids = ids.long()
    dim = int(dim)
    keep = unpack_bits(bits.index_select(0, ids), dim)
    k = keep.long()
    pos = rowptr.index_select(0, ids).long().unsqueeze(1) + torch.cumsum(k, 1) - k
    dtype = _out_dtype(val, scale)
    out = torch.zeros(ids.numel(), dim, dtype=dtype, device=val.device)
    v = val[pos[keep]].to(dtype)
    if scale is not None:
        v = v * scale.index_select(0, ids).unsqueeze(1).expand(-1, dim)[keep]
    out[keep] = v
    return _pool(out, bag_ptr, mode)


def embedding_backward_reference(grad: Tensor, mask: Optional[Tensor], ids: Tensor,
                                 num_rows: int) -> Tensor:
    """Pure-PyTorch dense gradient: ``zeros(num_rows, d).index_add_(0, ids, grad * mask[ids])``."""
    ids = ids.long()
    g = grad if mask is None else grad * mask.index_select(0, ids)
    out = torch.zeros(int(num_rows), grad.shape[1], dtype=grad.dtype, device=grad.device)
    return out.index_add_(0, ids, g)


def embedding_sparse_grad_reference(grad: Tensor, mask: Tensor, ids: Tensor) -> Tensor:
    """Pure-PyTorch values of the sparse gradient: ``grad * mask[ids]``."""
    m = mask.index_select(0, ids.long())
    # a bool mask multiplies as uint8 (same bytes): several times faster than bool promotion
    return grad * (m.view(torch.uint8) if m.dtype == torch.bool else m)


# =========================================================================== backends


def _gather_shape(values: Tensor, scale: Optional[Tensor], ids: Tensor,
                  bag_ptr: Optional[Tensor], dim) -> Tensor:
    """The empty output of a gather: one row per id, or per bag."""
    num_out = ids.shape[0] if bag_ptr is None else bag_ptr.shape[0] - 1
    return values.new_empty((num_out, dim), dtype=_out_dtype(values, scale))


@register_kernel_fake("embedding_rows_kernel")
def _(table, remap, scale, mask, ids, bag_ptr, mode):
    return _gather_shape(table, scale, ids, bag_ptr, table.shape[1])


@register_kernel_fake("embedding_csr_kernel")
@register_kernel_fake("embedding_bitmask_kernel")
def _(rowptr, index, val, scale, ids, bag_ptr, mode, dim):
    return _gather_shape(val, scale, ids, bag_ptr, dim)


@register_kernel_fake("embedding_backward_kernel")
def _(grad, mask, ids, num_rows):
    return grad.new_empty((num_rows, grad.shape[1]))


@register_kernel_fake("embedding_sparse_grad_kernel")
def _(grad, mask, ids):
    return torch.empty_like(grad)


_KERNEL_OPS: dict = {}


def _kernel_op(name):
    op = _KERNEL_OPS.get(name)
    if op is None:
        _backend._extension_loaded()  # loads sparselth._C, which registers the kernels
        op = _KERNEL_OPS[name] = getattr(torch.ops.sparselth, name)
    return op


def _triton(name):
    def call(*args):
        from ..kernels import embedding as triton_embedding
        return getattr(triton_embedding, name)(*args)
    return call


def _cpp_table():
    return {"rows": lambda *a: _kernel_op("embedding_rows_kernel")(*a),
            "csr": lambda *a: _kernel_op("embedding_csr_kernel")(*a),
            "bitmask": lambda *a: _kernel_op("embedding_bitmask_kernel")(*a),
            "backward": lambda *a: _kernel_op("embedding_backward_kernel")(*a),
            "sparse_grad": lambda *a: _kernel_op("embedding_sparse_grad_kernel")(*a)}


_IMPLS = {
    "reference": {"rows": embedding_rows_reference, "csr": embedding_csr_reference,
                  "bitmask": embedding_bitmask_reference,
                  "backward": embedding_backward_reference,
                  "sparse_grad": embedding_sparse_grad_reference},
    "cpp": _cpp_table(),
    "cuda": _cpp_table(),
    "triton": dict({k: _triton(k) for k in ("rows", "csr", "bitmask", "backward")},
                   sparse_grad=embedding_sparse_grad_reference),
}


def _resolve(op: str, backend: str, device: torch.device, dtype: torch.dtype) -> str:
    name = _backend.resolve(backend, device, dtype, op)
    fallback_ok = backend == "auto"
    if name in ("cpp", "cuda") and not _backend.has_kernel("embedding_rows", device, name):
        if not fallback_ok:
            raise ValueError(f"{op}: backend {name!r} has no embedding kernels in the built "
                             "extension (rebuild sparselth)")
        name = "reference"
    if name == "cuda" and dtype not in (torch.float32, torch.float64):
        if not fallback_ok:
            raise TypeError(f"{op}: backend 'cuda' supports float32/float64, got {dtype}")
        name = "triton" if _backend.has_kernel("embedding_rows", device, "triton") else "reference"
    return name


# Dynamo calls it once at trace time and bakes the choice in (as for backend.resolve).
_resolve._dynamo_marked_constant = True


def _run_gather(name: str, kind: str, a: Tensor, b: Optional[Tensor], c: Optional[Tensor],
                scale: Optional[Tensor], mask: Optional[Tensor], ids: Tensor,
                bag_ptr: Optional[Tensor], mode: int, dim: int) -> Tensor:
    impl = _IMPLS[name]
    if kind == "rows":
        return impl["rows"](a, b, scale, mask, ids, bag_ptr, mode)
    return impl[kind](a, b, c, scale, ids, bag_ptr, mode, dim)


# =========================================================================== custom ops


@torch.library.custom_op("sparselth::embedding_gather", mutates_args=())
def _gather_op(kind: str, a: Tensor, b: Optional[Tensor], c: Optional[Tensor],
               scale: Optional[Tensor], ids: Tensor, bag_ptr: Optional[Tensor], mode: int,
               dim: int, backend: str) -> Tensor:
    return _run_gather(backend, kind, a, b, c, scale, None, ids, bag_ptr, mode, dim)


@_gather_op.register_fake
def _(kind, a, b, c, scale, ids, bag_ptr, mode, dim, backend):
    return _gather_shape(a if kind == "rows" else c, scale, ids, bag_ptr, dim)


@torch.library.custom_op("sparselth::masked_embedding", mutates_args=())
def _masked_op(weight: Tensor, mask: Optional[Tensor], ids: Tensor, bag_ptr: Optional[Tensor],
               mode: int, padding_idx: int, sparse_grad: bool, backend: str) -> Tensor:
    return _run_gather(backend, "rows", weight, None, None, None, mask, ids, bag_ptr, mode,
                       weight.shape[1])


@_masked_op.register_fake
def _(weight, mask, ids, bag_ptr, mode, padding_idx, sparse_grad, backend):
    return _gather_shape(weight, None, ids, bag_ptr, weight.shape[1])


@torch.library.custom_op("sparselth::embedding_dense_grad", mutates_args=())
def _dense_grad_op(grad: Tensor, mask: Optional[Tensor], ids: Tensor, num_rows: int,
                   backend: str) -> Tensor:
    return _IMPLS[backend]["backward"](grad, mask, ids, num_rows)


@_dense_grad_op.register_fake
def _(grad, mask, ids, num_rows, backend):
    return grad.new_empty((num_rows, grad.shape[1]))


def _per_id_grad(grad: Tensor, bag_ptr: Optional[Tensor], mode: int, n: int) -> Tensor:
    """The gradient of each looked-up row: its bag's gradient (divided by the bag size for
    mean)."""
    if bag_ptr is None:
        return grad
    counts = bag_ptr[1:] - bag_ptr[:-1]
    if mode == 1:
        grad = grad / counts.clamp(min=1).to(grad.dtype).unsqueeze(1)
    bag_of = torch.repeat_interleave(torch.arange(counts.numel(), device=grad.device), counts,
                                     output_size=n)
    return grad.index_select(0, bag_of)


def _sparse_grad(g: Tensor, mask: Optional[Tensor], ids: Tensor, num_rows: int, backend: str,
                 eager: bool) -> Tensor:
    """Uncoalesced COO gradient ``(num_rows, d)`` with one row ``g[i] * mask[ids[i]]`` per id
    (like ``nn.Embedding(sparse=True)``; repeated ids add up when coalesced)."""
    if mask is None:
        vals = g
    elif eager and backend in ("cpp", "cuda") and _backend.has_kernel(
            "embedding_sparse_grad", g.device, backend):
        vals = _IMPLS[backend]["sparse_grad"](g, mask, ids)
    else:
        vals = embedding_sparse_grad_reference(g, mask, ids)
    return torch.sparse_coo_tensor(ids.long().unsqueeze(0), vals, (num_rows, g.shape[1]),
                                   check_invariants=False)


def _masked_setup(ctx, inputs, output):
    weight, mask, ids, bag_ptr, mode, padding_idx, sparse_grad, backend = inputs
    ctx.save_for_backward(mask, ids, bag_ptr)
    ctx.num_rows, ctx.mode, ctx.padding_idx = weight.shape[0], mode, padding_idx
    ctx.sparse_grad, ctx.backend = sparse_grad, backend


def _masked_backward(ctx, grad):
    mask, ids, bag_ptr = ctx.saved_tensors
    grad_weight = None
    if ctx.needs_input_grad[0]:
        g = _per_id_grad(grad, bag_ptr, ctx.mode, ids.numel())
        if ctx.padding_idx >= 0:
            g = g.masked_fill((ids == ctx.padding_idx).unsqueeze(1), 0)
        g = g.contiguous()
        if ctx.sparse_grad:
            grad_weight = _sparse_grad(g, mask, ids, ctx.num_rows, ctx.backend,
                                       getattr(ctx, "eager", False))
        else:
            if getattr(ctx, "eager", False):
                grad_weight = _IMPLS[ctx.backend]["backward"](g, mask, ids, ctx.num_rows)
            else:  # traced (torch.compile): the kernel behind a custom op with a fake
                grad_weight = _dense_grad_op(g, mask, ids, ctx.num_rows, ctx.backend)
    return grad_weight, None, None, None, None, None, None, None


# Eager calls that need a gradient go through this twin of the op (same backward; also the
# path for sparse gradients).
_masked_eager = eager_twin(
    _masked_op, lambda weight, mask, ids, bag_ptr, mode, padding_idx, sparse_grad, backend:
    _run_gather(backend, "rows", weight, None, None, None, mask, ids, bag_ptr, mode,
                weight.shape[1]), _masked_setup, _masked_backward)


# =========================================================================== argument checks


def _check_ids(op: str, ids) -> Tensor:
    """``ids`` flattened (contiguous, int32/int64). The range is checked by :func:`_run_checked`."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{op}: ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: ids must be int32 or int64, got {ids.dtype}")
    flat = ids if ids.dim() == 1 else ids.reshape(-1)
    return flat if flat.is_contiguous() else flat.contiguous()


def _run_checked(op: str, name: str, flat: Tensor, num_rows: int, fn, *args):
    """``fn(*args)`` once every id is known to lie in ``[0, num_rows)``: the C++ kernels check
    that themselves while reading the ids (their error is re-raised under ``op``'s name); for
    the other backends one ``aminmax`` pass checks first. A traced call is not checked."""
    if name == "cpp":
        try:
            return fn(*args)
        except ValueError as e:
            msg = str(e)
            if "ids must be in" not in msg:
                raise
            raise ValueError(f"{op}: ids must be in{msg.split('ids must be in', 1)[1]}") from None
    if flat.numel() and not torch.compiler.is_compiling():
        lo, hi = torch.aminmax(flat)
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= num_rows:
            raise ValueError(f"{op}: ids must be in [0, {num_rows}), got values in "
                             f"[{lo}, {hi}]")
    return fn(*args)


def _check_weight(op: str, weight) -> Tensor:
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: weight must be a torch.Tensor or an EmbeddingFormat, got "
                        f"{type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    if weight.dtype not in _FLOATS:
        raise TypeError(f"{op}: weight must be float16/bfloat16/float32/float64, got "
                        f"{weight.dtype}")
    if weight.layout != torch.strided:
        raise TypeError(f"{op}: weight must be a dense (strided) tensor, got {weight.layout}")
    return weight


def _check_mask(op: str, mask, weight: Tensor) -> Optional[Tensor]:
    mask = check_mask(op, "mask", mask, [weight.shape], f"weight's shape {tuple(weight.shape)}",
                      (torch.bool, weight.dtype),
                      f"be bool or weight's dtype {weight.dtype} (a per-step conversion would "
                      "cost a pass over the table)", weight.device, "weight")
    return mask if mask is None or mask.is_contiguous() else mask.contiguous()


def _check_padding_idx(op: str, padding_idx, num_rows: int) -> int:
    if padding_idx is None:
        return -1
    p = int(padding_idx)
    if p < 0:
        p += num_rows
    if not 0 <= p < num_rows:
        raise ValueError(f"{op}: padding_idx must be in [-{num_rows}, {num_rows}), got "
                         f"{padding_idx}")
    return p


def _bag_pointers(op: str, ids, offsets, include_last_offset: bool) -> Tuple[Tensor, Tensor]:
    """(flat ids, bag_ptr (B + 1,) int64) from 2-D ids (fixed-size bags) or 1-D ids + offsets."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{op}: ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dim() == 2:
        if offsets is not None:
            raise ValueError(f"{op}: offsets must be None when ids is 2-D (one bag per row)")
        B, L = ids.shape
        flat = _check_ids(op, ids)
        return flat, torch.arange(B + 1, device=ids.device, dtype=torch.int64) * L
    if ids.dim() != 1:
        raise ValueError(f"{op}: ids must be 1-D (with offsets) or 2-D, got shape "
                         f"{tuple(ids.shape)}")
    if offsets is None:
        raise ValueError(f"{op}: offsets is required when ids is 1-D")
    if not isinstance(offsets, Tensor) or offsets.dim() != 1:
        raise ValueError(f"{op}: offsets must be a 1-D tensor, got "
                         f"{getattr(offsets, 'shape', type(offsets).__name__)}")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: offsets must be int32 or int64, got {offsets.dtype}")
    if offsets.device != ids.device:
        raise ValueError(f"{op}: offsets is on {offsets.device} but ids is on {ids.device}")
    flat = _check_ids(op, ids)
    n = flat.numel()
    offsets = offsets.long()
    if include_last_offset:
        bag_ptr = offsets.contiguous()
    else:
        bag_ptr = torch.cat([offsets, torch.full((1,), n, dtype=torch.int64,
                                                  device=offsets.device)])
    if not torch.compiler.is_compiling():
        bad = bag_ptr.numel() < 1 or int(bag_ptr[0]) != 0 or int(bag_ptr[-1]) != n or (
            bag_ptr.numel() > 1 and bool((bag_ptr[1:] < bag_ptr[:-1]).any()))
        if bad:
            raise ValueError(f"{op}: offsets must start at 0, never decrease and stay <= "
                             f"ids.numel() = {n}" + (" (with include_last_offset, end at it)"
                                                     if include_last_offset else ""))
    return flat, bag_ptr


def _format_parts(table: EmbeddingFormat):
    table._recheck()
    if isinstance(table, RowCompactEmbedding):
        return "rows", table.table, table.remap, None, table.scale
    if isinstance(table, CSREmbedding):
        return "csr", table.rowptr, table.col, table.values, table.scale
    if isinstance(table, BitmaskEmbedding):
        return "bitmask", table.rowptr, table.bits, table.values, table.scale
    raise TypeError(f"unknown embedding format {type(table).__name__}")


# =========================================================================== public ops


def _gather_format(op: str, table: EmbeddingFormat, flat: Tensor, bag_ptr: Optional[Tensor],
                   mode: int, backend: str) -> Tensor:
    if flat.device != table.device:
        raise ValueError(f"{op}: ids is on {flat.device} but the table is on {table.device}")
    kind, a, b, c, scale = _format_parts(table)
    name = _resolve(op, backend, table.device, table.dtype)
    d = table.embedding_dim
    if torch.compiler.is_compiling():
        return _gather_op(kind, a, b, c, scale, flat, bag_ptr, mode, d, name)
    return _run_checked(op, name, flat, table.num_embeddings, _run_gather, name, kind, a, b, c,
                        scale, None, flat, bag_ptr, mode, d)


def _masked_gather(op: str, weight: Tensor, mask: Optional[Tensor], flat: Tensor,
                   bag_ptr: Optional[Tensor], mode: int, sparse_grad: bool, padding_idx: int,
                   backend: str) -> Tensor:
    if flat.device != weight.device:
        raise ValueError(f"{op}: ids is on {flat.device} but weight is on {weight.device}")
    name = _resolve(op, backend, weight.device, weight.dtype)
    w = weight if weight.is_contiguous() else weight.contiguous()
    needs_grad = torch.is_grad_enabled() and weight.requires_grad
    args = (w, mask, flat, bag_ptr, mode, padding_idx, bool(sparse_grad), name)
    if torch.compiler.is_compiling():
        return _masked_op(*args)
    if not needs_grad:
        return _run_checked(op, name, flat, w.shape[0], _run_gather, name, "rows", w, None,
                            None, None, mask, flat, bag_ptr, mode, w.shape[1])
    return _run_checked(op, name, flat, w.shape[0], _masked_eager, *args)


def embedding_lookup(table, ids: Tensor, *, backend: str = "auto") -> Tensor:
    """Rows ``ids`` of ``table``: ``out[..., :] = table[ids[...], :]``.

    Args:
        table: an :class:`~sparselth.sparse.embedding_formats.EmbeddingFormat` (row-compact, CSR
            or bitmask; see :func:`~sparselth.sparse.compress_embedding`), or a dense ``(R, d)``
            tensor (differentiable when it requires grad).
        ids: int32/int64 tensor of any shape, values in ``[0, R)``.
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``ids.shape + (d,)`` tensor of the table's lookup dtype; equal to
        ``(weight * mask)[ids]`` for a table compressed from ``(weight, mask)``.

    Raises:
        ValueError: an id outside ``[0, R)`` (the message names ``ids``).

    Example::

        >>> fmt = sparselth.sparse.compress_embedding(weight, mask)
        >>> rows = embedding_lookup(fmt, torch.tensor([[3, 1], [0, 3]]))   # (2, 2, d)
    """
    op = "embedding_lookup"
    if isinstance(table, EmbeddingFormat):
        flat = _check_ids(op, ids)
        out = _gather_format(op, table, flat, None, 0, backend)
        return out.view(*ids.shape, table.embedding_dim)
    _check_weight(op, table)
    flat = _check_ids(op, ids)
    out = _masked_gather(op, table, None, flat, None, 0, False, -1, backend)
    return out.view(*ids.shape, table.shape[1])


def masked_embedding(weight: Tensor, mask: Optional[Tensor], ids: Tensor,
                     sparse_grad: bool = False, *, padding_idx: Optional[int] = None,
                     backend: str = "auto") -> Tensor:
    """Training-time lookup ``(weight * mask)[ids]`` that touches only the batch's rows.

    Args:
        weight: ``(R, d)`` float table (usually a parameter).
        mask: ``(R, d)`` bool or ``weight.dtype`` 0/1 mask, or None (plain lookup). Not
            differentiated (a mask is a buffer).
        ids: int32/int64 ids of any shape, in ``[0, R)``.
        sparse_grad: give ``weight`` a sparse COO gradient (O(batch), like
            ``nn.Embedding(sparse=True)``) instead of a dense one.
        padding_idx: rows equal to it receive no gradient (as in ``nn.Embedding``).
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``ids.shape + (d,)``. Gradient: ``d weight[r] = sum_{i: ids[i] = r} d out[i] * mask[r]``.

    Example::

        >>> out = masked_embedding(emb.weight, emb.weight_mask, batch_ids, sparse_grad=True)
    """
    op = "masked_embedding"
    _check_weight(op, weight)
    mask = _check_mask(op, mask, weight)
    flat = _check_ids(op, ids)
    pad = _check_padding_idx(op, padding_idx, weight.shape[0])
    out = _masked_gather(op, weight, mask, flat, None, 0, sparse_grad, pad, backend)
    return out.view(*ids.shape, weight.shape[1])


def embedding_bag(table_or_weight, ids: Tensor, offsets: Optional[Tensor] = None,
                  mode: str = "sum", mask: Optional[Tensor] = None, *,
                  include_last_offset: bool = False, sparse_grad: bool = False,
                  backend: str = "auto") -> Tensor:
    """Pooled lookup: ``out[b] = reduce(table[ids[k]] for k in bag b)``.

    Bags are given as in ``torch.nn.functional.embedding_bag``: 2-D ``ids`` ``(B, L)`` (one bag
    per row, ``offsets=None``), or 1-D ``ids`` with ``offsets`` ``(B,)`` bag starts
    (``include_last_offset=True``: ``(B + 1,)`` with the end appended).

    Args:
        table_or_weight: an ``EmbeddingFormat`` or a dense ``(R, d)`` weight (differentiable,
            with ``mask`` applied as in :func:`masked_embedding`).
        ids: int32/int64 ids in ``[0, R)``.
        offsets: int32/int64 bag starts (1-D ``ids`` only).
        mode: ``"sum"`` or ``"mean"``; an empty bag gives zeros in both.
        mask: ``(R, d)`` mask for a dense weight (None for a compressed table, which is masked
            already).
        sparse_grad: sparse COO gradient for a dense weight.
        backend: as for :func:`embedding_lookup`.

    Returns:
        ``(B, d)``.
    """
    op = "embedding_bag"
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be 'sum' or 'mean', got {mode!r}")
    mode_id = _MODES[mode]
    if isinstance(table_or_weight, EmbeddingFormat):
        if mask is not None:
            raise ValueError(f"{op}: mask applies to a dense weight; a compressed table stores "
                             "the masked rows already")
        table = table_or_weight
        flat, bag_ptr = _bag_pointers(op, ids, offsets, include_last_offset)
        return _gather_format(op, table, flat, bag_ptr, mode_id, backend)
    weight = _check_weight(op, table_or_weight)
    mask = _check_mask(op, mask, weight)
    flat, bag_ptr = _bag_pointers(op, ids, offsets, include_last_offset)
    return _masked_gather(op, weight, mask, flat, bag_ptr, mode_id, sparse_grad, -1, backend)
