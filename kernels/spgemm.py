"""Triton sparse x sparse -> dense (row-wise Gustavson) and its sampled gradient.

``spgemm``: one program per row ``i`` of A walks the row's stored entries; for each ``(i, j)``
it adds ``A[i, j]`` times B's row ``j``, ``BLOCK_B`` stored entries at a time, into ``out[i]``
with atomic adds (a program owns its output row, but its lanes may meet one column in two
successive B rows; the atomics order them). ``sampled``: one program per row of A; for each
stored ``(i, j)`` it gathers ``grad[i]`` at B's row ``j`` columns and reduces.

On a GPU the launch is autotuned (key: the average B row length, rounded to a power of two).
Under ``TRITON_INTERPRET=1`` (CPU tensors) one small fixed block is used.
"""
import triton
import triton.language as tl

import torch

__all__ = ["spgemm", "sampled"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int32, torch.int64)
_INTERPRET_BLOCK_B = 16


@triton.jit
def _spgemm_kernel(
    a_rowptr_ptr, a_col_ptr, a_val_ptr, b_rowptr_ptr, b_col_ptr, b_val_ptr, out_ptr,
    num_cols,
    HAS_AVAL: tl.constexpr, HAS_BVAL: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(a_rowptr_ptr + row)
    end = tl.load(a_rowptr_ptr + row + 1)
    out_row = out_ptr + row.to(tl.int64) * num_cols
    offs = tl.arange(0, BLOCK_B)
    for e in range(start, end):
        j = tl.load(a_col_ptr + e).to(tl.int64)
        if HAS_AVAL:
            a = tl.load(a_val_ptr + e).to(ACC_DTYPE)
        else:
            a = tl.full((), 1.0, ACC_DTYPE)
        f0 = tl.load(b_rowptr_ptr + j)
        f1 = tl.load(b_rowptr_ptr + j + 1)
        for f in range(f0, f1, BLOCK_B):
            fo = f + offs
            ok = fo < f1
            c = tl.load(b_col_ptr + fo, mask=ok, other=0).to(tl.int64)
            if HAS_BVAL:
                v = tl.load(b_val_ptr + fo, mask=ok, other=0.0).to(ACC_DTYPE) * a
            else:
                v = tl.zeros((BLOCK_B,), dtype=ACC_DTYPE) + a
            tl.atomic_add(out_row + c, v, mask=ok, sem="relaxed")


@triton.jit
def _sampled_kernel(
    a_rowptr_ptr, a_col_ptr, b_rowptr_ptr, b_col_ptr, b_val_ptr, grad_ptr, out_ptr,
    stride_gm, stride_gk,
    HAS_BVAL: tl.constexpr, ACC_DTYPE: tl.constexpr, BLOCK_B: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(a_rowptr_ptr + row)
    end = tl.load(a_rowptr_ptr + row + 1)
    g_row = grad_ptr + row.to(tl.int64) * stride_gm
    offs = tl.arange(0, BLOCK_B)
    for e in range(start, end):
        j = tl.load(a_col_ptr + e).to(tl.int64)
        f0 = tl.load(b_rowptr_ptr + j)
        f1 = tl.load(b_rowptr_ptr + j + 1)
        acc = tl.zeros((BLOCK_B,), dtype=ACC_DTYPE)
        for f in range(f0, f1, BLOCK_B):
            fo = f + offs
            ok = fo < f1
            c = tl.load(b_col_ptr + fo, mask=ok, other=0).to(tl.int64)
            g = tl.load(g_row + c * stride_gk, mask=ok, other=0.0).to(ACC_DTYPE)
            if HAS_BVAL:
                g = g * tl.load(b_val_ptr + fo, mask=ok, other=0.0).to(ACC_DTYPE)
            acc += g
        tl.store(out_ptr + e, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty))


def _configs():
    return [triton.Config({"BLOCK_B": b}, num_warps=w)
            for b, w in [(32, 1), (64, 2), (128, 4), (256, 4), (512, 8)]]


_spgemm_kernel_tuned = triton.autotune(configs=_configs(), key=["num_cols"],
                                       reset_to_zero=["out_ptr"])(_spgemm_kernel)
_sampled_kernel_tuned = triton.autotune(configs=_configs(), key=["stride_gm"])(_sampled_kernel)
_INTERPRETED = not isinstance(_spgemm_kernel, triton.runtime.JITFunction)


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _check_pair(op, a_rowptr, a_col, b_rowptr, b_col, device):
    for name, t in (("a_rowptr", a_rowptr), ("a_col", a_col), ("b_rowptr", b_rowptr),
                    ("b_col", b_col)):
        if t.dim() != 1:
            raise ValueError(f"{op}: {name} must be 1-D, got shape {tuple(t.shape)}")
        if t.dtype not in _INDEX_DTYPES:
            raise TypeError(f"{op}: {name} must be int32 or int64, got {t.dtype}")
        if t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device}, expected {device}")
    if a_rowptr.numel() < 1 or b_rowptr.numel() < 1:
        raise ValueError(f"{op}: a_rowptr and b_rowptr need at least one entry")
    if device.type == "cpu" and not _INTERPRETED:
        raise RuntimeError(f"{op}: Triton needs GPU tensors, or TRITON_INTERPRET=1 set before "
                           "triton is imported to run CPU tensors in the interpreter")


def _check_values(op, name, val, col, dtype):
    if val is not None and (val.shape != col.shape or val.dtype != dtype):
        raise ValueError(f"{op}: {name} must be ({col.numel()},) {dtype}, got "
                         f"{tuple(val.shape)} {val.dtype}")


def spgemm(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype):
    """``out = A @ B`` for CSR ``A (m, n)`` and ``B (n, num_cols)``, dense ``(m, num_cols)``.

    Args:
        a_rowptr, a_col: A's structure, int32/int64; A's columns in ``[0, n)``.
        a_val: None (ones) or ``(nnz(A),)`` of ``dtype``.
        b_rowptr, b_col: B's structure; B's columns in ``[0, num_cols)``.
        b_val: None (ones) or ``(nnz(B),)`` of ``dtype``.
        num_cols: ``k``; dtype: the output dtype (float16/bfloat16/float32/float64).

    Returns:
        ``(m, num_cols)`` tensor; accumulated in float32 (float64 for float64).
    """
    op = "spgemm"
    device = a_col.device
    _check_pair(op, a_rowptr, a_col, b_rowptr, b_col, device)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be one of {_FLOAT_DTYPES}, got {dtype}")
    _check_values(op, "a_val", a_val, a_col, dtype)
    _check_values(op, "b_val", b_val, b_col, dtype)
    m = a_rowptr.numel() - 1
    acc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.zeros((m, num_cols), dtype=acc_dtype, device=device)
    if m == 0 or num_cols == 0 or a_col.numel() == 0 or b_col.numel() == 0:
        return out.to(dtype)
    args = (a_rowptr.contiguous(), a_col.contiguous(), a_val, b_rowptr.contiguous(),
            b_col.contiguous(), b_val, out, num_cols)
    flags = dict(HAS_AVAL=a_val is not None, HAS_BVAL=b_val is not None, ACC_DTYPE=_acc(dtype))
    if _INTERPRETED:
        _spgemm_kernel[(m,)](*args, **flags, BLOCK_B=_INTERPRET_BLOCK_B)
    else:
        with torch.cuda.device(device):
            _spgemm_kernel_tuned[(m,)](*args, **flags)
    return out.to(dtype)


def sampled(a_rowptr, a_col, b_rowptr, b_col, b_val, grad):
    """``out[e] = sum_{f in B row a_col[e]} b_val[f] * grad[row(e), b_col[f]]`` for every
    stored ``e`` of A (the gradient of :func:`spgemm` with respect to A's values).

    ``grad``: ``(m, k)``, any strides; returns ``(nnz(A),)`` of ``grad.dtype``.
    """
    op = "spgemm_sampled"
    device = grad.device
    _check_pair(op, a_rowptr, a_col, b_rowptr, b_col, device)
    if grad.dim() != 2 or grad.shape[0] != a_rowptr.numel() - 1:
        raise ValueError(f"{op}: grad must be ({a_rowptr.numel() - 1}, k), got "
                         f"{tuple(grad.shape)}")
    if grad.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: grad must be one of {_FLOAT_DTYPES}, got {grad.dtype}")
    _check_values(op, "b_val", b_val, b_col, grad.dtype)
    m = a_rowptr.numel() - 1
    out = torch.zeros((a_col.numel(),), dtype=grad.dtype, device=device)
    if m == 0 or a_col.numel() == 0 or b_col.numel() == 0:
        return out
    args = (a_rowptr.contiguous(), a_col.contiguous(), b_rowptr.contiguous(),
            b_col.contiguous(), b_val, grad, out, grad.stride(0), grad.stride(1))
    flags = dict(HAS_BVAL=b_val is not None, ACC_DTYPE=_acc(grad.dtype))
    if _INTERPRETED:
        _sampled_kernel[(m,)](*args, **flags, BLOCK_B=_INTERPRET_BLOCK_B)
    else:
        with torch.cuda.device(device):
            _sampled_kernel_tuned[(m,)](*args, **flags)
    return out
