"""Triton embedding gathers: lookups and pooled bags over dense / row-compact, per-row CSR and
per-row bitmask tables, and the dense gradient of the masked gather.

The launchers take the same arguments as the C++ ops ``sparselth::embedding_*_kernel`` (see
``csrc/ops.cpp``): without ``bag_ptr`` output row ``o`` is the stored row ``ids[o]``; with
``bag_ptr`` ((B + 1,) int64) output row ``b`` pools the rows of ``ids[bag_ptr[b]:bag_ptr[b+1]]``
(``mode`` 0 sum, 1 mean; an empty bag gives zeros). Values are float, or int8 times a scale per
stored row.

Work split: a lookup program handles a block of ``BLOCK_N`` ids (and, for dense rows, one tile
of ``BLOCK_D`` features); a bag program handles one bag and walks its ids in blocks of
``BLOCK_N``. Bitmask rows are decoded with a prefix sum of the row's bits (``tl.cumsum``), which
gives each stored feature its position among the row's packed values. CSR rows are scattered
into a zeroed output (bags: atomic adds). Accumulation is float32 (float64 for float64).
Under ``TRITON_INTERPRET=1`` (CPU tensors) small fixed blocks are used.
"""
import triton
import triton.language as tl

import torch

from ._common import INDEX_DTYPES, INTERPRETED, acc_dtype, check_device, launch

__all__ = ["rows", "csr", "bitmask", "backward"]


@triton.jit
def _row_tile(table_ptr, remap_ptr, scale_ptr, mask_ptr, ids, n_ok, offs_d, d_ok, D,
              HAS_REMAP: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_MASK: tl.constexpr,
              ACC_DTYPE: tl.constexpr):
    """The (len(ids), BLOCK_D) tile of rows ``ids``: table[remap[id]] * scale * mask."""
    if HAS_REMAP:
        r = tl.load(remap_ptr + ids, mask=n_ok, other=-1).to(tl.int64)
    else:
        r = ids
    live = n_ok & (r >= 0)
    ok = live[:, None] & d_ok[None, :]
    offs = r[:, None] * D + offs_d[None, :]
    v = tl.load(table_ptr + offs, mask=ok, other=0).to(ACC_DTYPE)
    if HAS_SCALE:
        s = tl.load(scale_ptr + r, mask=live, other=0).to(ACC_DTYPE)
        v = v * s[:, None]
    if HAS_MASK:
        m = tl.load(mask_ptr + offs, mask=ok, other=0).to(ACC_DTYPE)
        v = v * m
    return v


@triton.jit
def _rows_kernel(table_ptr, remap_ptr, scale_ptr, mask_ptr, ids_ptr, out_ptr,
                 n, D,
                 HAS_REMAP: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_MASK: tl.constexpr,
                 ACC_DTYPE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n_ok = offs_n < n
    d_ok = offs_d < D
    ids = tl.load(ids_ptr + offs_n, mask=n_ok, other=0).to(tl.int64)
    v = _row_tile(table_ptr, remap_ptr, scale_ptr, mask_ptr, ids, n_ok, offs_d, d_ok, D,
                  HAS_REMAP, HAS_SCALE, HAS_MASK, ACC_DTYPE)
    out_offs = offs_n.to(tl.int64)[:, None] * D + offs_d[None, :]
    tl.store(out_ptr + out_offs, v.to(out_ptr.dtype.element_ty),
             mask=n_ok[:, None] & d_ok[None, :])


@triton.jit
def _rows_bag_kernel(table_ptr, remap_ptr, scale_ptr, mask_ptr, ids_ptr, bag_ptr, out_ptr, D,
                     HAS_REMAP: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_MASK: tl.constexpr,
                     MEAN: tl.constexpr, ACC_DTYPE: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    bag = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    start = tl.load(bag_ptr + bag)
    end = tl.load(bag_ptr + bag + 1)
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=ACC_DTYPE)
    for k0 in range(start, end, BLOCK_N):
        offs_k = k0 + tl.arange(0, BLOCK_N)
        k_ok = offs_k < end
        ids = tl.load(ids_ptr + offs_k, mask=k_ok, other=0).to(tl.int64)
        acc += _row_tile(table_ptr, remap_ptr, scale_ptr, mask_ptr, ids, k_ok, offs_d, d_ok, D,
                         HAS_REMAP, HAS_SCALE, HAS_MASK, ACC_DTYPE)
    out = tl.sum(acc, axis=0)
    if MEAN:
        out = out / tl.maximum(end - start, 1).to(ACC_DTYPE)
    tl.store(out_ptr + bag.to(tl.int64) * D + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_ok)


@triton.jit
def _program_ids(bag_ptr, n, HAS_BAGS: tl.constexpr, ACC_DTYPE: tl.constexpr,
                 BLOCK_N: tl.constexpr):
    """(bag, first id, end id, 1 / bag size) of a sparse-format program: one bag (HAS_BAGS), or
    one block of BLOCK_N ids of a lookup (bag and 1 / size unused there)."""
    if HAS_BAGS:
        bag = tl.program_id(0)
        k_start = tl.load(bag_ptr + bag)
        k_end = tl.load(bag_ptr + bag + 1)
        inv = 1.0 / tl.maximum(k_end - k_start, 1).to(ACC_DTYPE)
    else:
        bag = tl.program_id(0)
        k_start = bag * BLOCK_N
        k_end = tl.minimum(k_start + BLOCK_N, n)
        inv = 1.0
    return bag, k_start, k_end, inv


@triton.jit
def _id_block(ids_ptr, rowptr_ptr, scale_ptr, k0, k_end, HAS_SCALE: tl.constexpr,
              ACC_DTYPE: tl.constexpr, BLOCK_N: tl.constexpr):
    """(positions, in range, ids, first stored entry, scale) of ids k0 .. k0 + BLOCK_N of a
    per-row sparse table (scale 1 without one)."""
    offs_k = k0 + tl.arange(0, BLOCK_N)
    k_ok = offs_k < k_end
    ids = tl.load(ids_ptr + offs_k, mask=k_ok, other=0).to(tl.int64)
    start = tl.load(rowptr_ptr + ids, mask=k_ok, other=0).to(tl.int64)
    if HAS_SCALE:
        s = tl.load(scale_ptr + ids, mask=k_ok, other=0).to(ACC_DTYPE)
    else:
        s = tl.full((BLOCK_N,), 1, ACC_DTYPE)
    return offs_k, k_ok, ids, start, s


@triton.jit
def _csr_kernel(rowptr_ptr, col_ptr, val_ptr, scale_ptr, ids_ptr, bag_ptr, out_ptr, n, D,
                HAS_SCALE: tl.constexpr, HAS_BAGS: tl.constexpr, MEAN: tl.constexpr,
                ACC_DTYPE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr):
    """Lookups: a block of ids scattered into the zeroed output rows. Bags: one bag per
    program, its ids' entries atomically added into the bag's row."""
    bag, k_start, k_end, inv = _program_ids(bag_ptr, n, HAS_BAGS, ACC_DTYPE, BLOCK_N)
    for k0 in range(k_start, k_end, BLOCK_N):
        offs_k, k_ok, ids, start, s = _id_block(ids_ptr, rowptr_ptr, scale_ptr, k0, k_end,
                                                HAS_SCALE, ACC_DTYPE, BLOCK_N)
        length = tl.load(rowptr_ptr + ids + 1, mask=k_ok, other=0).to(tl.int64) - start
        if HAS_BAGS:
            dst = bag.to(tl.int64) * D + tl.zeros((BLOCK_N,), dtype=tl.int64)
        else:
            dst = offs_k.to(tl.int64) * D
        max_len = tl.max(length, axis=0)
        for e0 in range(0, max_len, BLOCK_E):
            e = e0 + tl.arange(0, BLOCK_E)
            ok = k_ok[:, None] & (e[None, :] < length[:, None])
            idx = start[:, None] + e[None, :]
            c = tl.load(col_ptr + idx, mask=ok, other=0).to(tl.int64)
            v = tl.load(val_ptr + idx, mask=ok, other=0).to(ACC_DTYPE)
            if HAS_SCALE:
                v = v * s[:, None]
            if HAS_BAGS:
                if MEAN:
                    v = v * inv
                tl.atomic_add(out_ptr + dst[:, None] + c, v.to(out_ptr.dtype.element_ty), mask=ok)
            else:
                tl.store(out_ptr + dst[:, None] + c, v.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _bitmask_kernel(rowptr_ptr, bits_ptr, val_ptr, scale_ptr, ids_ptr, bag_ptr, out_ptr, n, D,
                    NB, HAS_SCALE: tl.constexpr, HAS_BAGS: tl.constexpr, MEAN: tl.constexpr,
                    ACC_DTYPE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Feature tiles of BLOCK_D: bit f of a row says whether f is stored; its value sits at
    rowptr[row] + (set bits before f), a running count carried across the tiles."""
    bag, k_start, k_end, inv = _program_ids(bag_ptr, n, HAS_BAGS, ACC_DTYPE, BLOCK_N)
    for k0 in range(k_start, k_end, BLOCK_N):
        offs_k, k_ok, ids, base, s = _id_block(ids_ptr, rowptr_ptr, scale_ptr, k0, k_end,
                                               HAS_SCALE, ACC_DTYPE, BLOCK_N)
        for f0 in range(0, D, BLOCK_D):
            f = f0 + tl.arange(0, BLOCK_D)
            f_ok = f < D
            ok = k_ok[:, None] & f_ok[None, :]
            byte = tl.load(bits_ptr + ids[:, None] * NB + (f // 8)[None, :], mask=ok,
                           other=0).to(tl.int32)
            bit = (byte >> (f % 8)[None, :]) & 1
            pos = base[:, None] + (tl.cumsum(bit, axis=1) - bit).to(tl.int64)
            v = tl.load(val_ptr + pos, mask=ok & (bit != 0), other=0).to(ACC_DTYPE)
            if HAS_SCALE:
                v = v * s[:, None]
            base += tl.sum(bit, axis=1).to(tl.int64)
            if HAS_BAGS:
                pooled = tl.sum(v, axis=0)
                if MEAN:
                    pooled = pooled * inv
                tl.atomic_add(out_ptr + bag.to(tl.int64) * D + f,
                              pooled.to(out_ptr.dtype.element_ty), mask=f_ok)
            else:
                tl.store(out_ptr + offs_k.to(tl.int64)[:, None] * D + f[None, :],
                         v.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _backward_kernel(grad_ptr, mask_ptr, ids_ptr, out_ptr, n, D,
                     HAS_MASK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n_ok = offs_n < n
    d_ok = offs_d < D
    ok = n_ok[:, None] & d_ok[None, :]
    ids = tl.load(ids_ptr + offs_n, mask=n_ok, other=0).to(tl.int64)
    g = tl.load(grad_ptr + offs_n.to(tl.int64)[:, None] * D + offs_d[None, :], mask=ok, other=0)
    dst = ids[:, None] * D + offs_d[None, :]
    if HAS_MASK:
        m = tl.load(mask_ptr + dst, mask=ok, other=0)
        g = g * m.to(g.dtype)
    tl.atomic_add(out_ptr + dst, g, mask=ok)


def _blocks(D):
    """(BLOCK_N, BLOCK_D, num_warps) for feature dimension D."""
    if INTERPRETED:
        return 8, 16, 1
    block_d = min(128, triton.next_power_of_2(max(D, 1)))
    block_n = max(1, 2048 // block_d) if block_d >= 32 else 64
    return min(block_n, 64), block_d, 4


def _check_ids(op, device, ids, bag_ptr=None, mode=0, scale=None):
    """The number of output rows (ids, or bags) once ids, bags and mode are checked."""
    if ids.dim() != 1 or ids.dtype not in INDEX_DTYPES:
        raise ValueError(f"{op}: ids must be 1-D int32/int64, got {tuple(ids.shape)} {ids.dtype}")
    if bag_ptr is not None and (bag_ptr.dim() != 1 or bag_ptr.dtype != torch.int64
                                or bag_ptr.numel() < 1):
        raise ValueError(f"{op}: bag_ptr must be a 1-D int64 tensor of B + 1 entries")
    if mode not in (0, 1):
        raise ValueError(f"{op}: mode must be 0 (sum) or 1 (mean), got {mode}")
    check_device(op, device, ids=ids, bag_ptr=bag_ptr, scale=scale)
    return ids.numel() if bag_ptr is None else bag_ptr.numel() - 1


def _output(op, values, scale, ids, bag_ptr, mode, dim, zeroed):
    """Checks the ids and bags; the (num_out, dim) output of a gather from a table whose
    stored values are ``values`` (``zeroed`` for kernels that scatter or add into it)."""
    num_out = _check_ids(op, values.device, ids, bag_ptr, mode, scale)
    dtype = scale.dtype if values.dtype == torch.int8 else values.dtype
    return (torch.zeros if zeroed else torch.empty)((num_out, dim), dtype=dtype,
                                                   device=values.device)


def rows(table, remap, scale, mask, ids, bag_ptr, mode):
    """Dense / row-compact gather: row ``id`` = ``table[remap[id]] * scale * mask`` (remap
    None: ``table[id]``; ``remap[id] == -1``: zeros). ``table`` (K, d); ``mask`` (K, d)."""
    table = table.contiguous()
    D = table.shape[1]
    out = _output("embedding_rows", table, scale, ids, bag_ptr, mode, D, zeroed=False)
    num_out = out.shape[0]
    if num_out == 0 or D == 0:
        return out
    if bag_ptr is not None and ids.numel() == 0:
        return out.zero_()
    block_n, block_d, warps = _blocks(D)
    flags = dict(HAS_REMAP=remap is not None, HAS_SCALE=scale is not None,
                 HAS_MASK=mask is not None, ACC_DTYPE=acc_dtype(out.dtype),
                 BLOCK_N=block_n, BLOCK_D=block_d, num_warps=warps)
    mask = mask.contiguous() if mask is not None else None
    if bag_ptr is None:
        grid = (triton.cdiv(num_out, block_n), triton.cdiv(D, block_d))
        launch(_rows_kernel, grid, table.device, table, remap, scale, mask, ids.contiguous(),
               out, num_out, D, **flags)
    else:
        grid = (num_out, triton.cdiv(D, block_d))
        launch(_rows_bag_kernel, grid, table.device, table, remap, scale, mask,
               ids.contiguous(), bag_ptr.contiguous(), out, D, MEAN=mode == 1, **flags)
    return out


def _sparse_rows(kernel, op, rowptr, mid, val, scale, ids, bag_ptr, mode, dim, extra):
    out = _output(op, val, scale, ids, bag_ptr, mode, dim, zeroed=True)
    num_out = out.shape[0]
    if num_out == 0 or dim == 0 or ids.numel() == 0 or val.numel() == 0:
        return out
    block_n, block_d, warps = _blocks(dim)
    has_bags = bag_ptr is not None
    grid = (num_out,) if has_bags else (triton.cdiv(num_out, block_n),)
    launch(kernel, grid, val.device, rowptr.contiguous(), mid.contiguous(), val.contiguous(),
           scale, ids.contiguous(), bag_ptr, out, ids.numel(), dim, *extra,
           HAS_SCALE=scale is not None, HAS_BAGS=has_bags, MEAN=mode == 1,
           ACC_DTYPE=acc_dtype(out.dtype), BLOCK_N=block_n, num_warps=warps,
           **({"BLOCK_E": block_d} if kernel is _csr_kernel else {"BLOCK_D": block_d}))
    return out


def csr(rowptr, col, val, scale, ids, bag_ptr, mode, dim):
    """Per-row CSR gather: row ``id`` has ``val[e] * scale[id]`` at feature ``col[e]``."""
    return _sparse_rows(_csr_kernel, "embedding_csr", rowptr, col, val, scale, ids, bag_ptr,
                        mode, int(dim), ())


def bitmask(rowptr, bits, val, scale, ids, bag_ptr, mode, dim):
    """Per-row bitmask gather: ``bits`` (R, ceil(dim / 8)) uint8, values packed per row."""
    dim = int(dim)
    return _sparse_rows(_bitmask_kernel, "embedding_bitmask", rowptr, bits, val, scale, ids,
                        bag_ptr, mode, dim, ((dim + 7) // 8,))


def backward(grad, mask, ids, num_rows):
    """Dense gradient of the masked gather: ``zeros(num_rows, d)``, then
    ``out[ids[i]] += grad[i] * mask[ids[i]]`` (atomic adds)."""
    grad = grad.contiguous()
    D = grad.shape[1]
    _check_ids("embedding_backward", grad.device, ids)
    out = grad.new_zeros((int(num_rows), D))
    n = ids.numel()
    if n == 0 or D == 0:
        return out
    block_n, block_d, warps = _blocks(D)
    grid = (triton.cdiv(n, block_n), triton.cdiv(D, block_d))
    launch(_backward_kernel, grid, grad.device, grad,
           mask.contiguous() if mask is not None else None, ids.contiguous(), out, n, D,
           HAS_MASK=mask is not None, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=warps)
    return out
