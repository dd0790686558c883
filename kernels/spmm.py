"""Triton CSR SpMM: ``out = row_scale[:, None] * (A @ (x * x_mask)) + bias``.

One program computes one row of ``out`` for one tile of ``BLOCK_F`` features; it walks the
row's stored entries in chunks of ``BLOCK_E``, so rows of any length (power-law hubs) are
correct without a bound on the degree. Optional operands (``val``, ``x_mask``, ``row_scale``,
``bias``) are compile-time flags: a missing operand costs nothing in the inner loop.

On a GPU the launch is autotuned over tile shapes (key: ``F``, plus the tensor dtypes).
Under ``TRITON_INTERPRET=1`` (CPU tensors) one small fixed tile is used: autotuning in the
interpreter is very slow and pointless.
"""
import triton
import triton.language as tl

import torch

from ._common import FLOAT_DTYPES, INTERPRETED, acc_dtype, check_csr_index, check_device, launch

__all__ = ["spmm"]

# Interpreter tile: small enough that numpy per-program work stays cheap, large enough that
# typical test shapes need one feature tile and few nnz chunks.
_INTERPRET_BLOCK_E = 16
_INTERPRET_BLOCK_F = 32


@triton.jit
def _spmm_kernel(
    rowptr_ptr, col_ptr, val_ptr, x_ptr, mask_ptr, scale_ptr, bias_ptr, out_ptr,
    num_rows, F,
    stride_xm, stride_xf, stride_mm, stride_mf, stride_om,
    HAS_VAL: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr,
):
    row = tl.program_id(0)
    pid_f = tl.program_id(1)
    row_ok = row < num_rows
    offs_f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    f_ok = offs_f < F
    offs_e = tl.arange(0, BLOCK_E)

    start = tl.load(rowptr_ptr + row, mask=row_ok, other=0)
    end = tl.load(rowptr_ptr + row + 1, mask=row_ok, other=0)

    # 2-D partial sums, reduced once after the loop: no cross-lane reduction per chunk.
    acc = tl.zeros((BLOCK_E, BLOCK_F), dtype=ACC_DTYPE)
    for e0 in range(start, end, BLOCK_E):
        e = e0 + offs_e
        e_ok = e < end
        c = tl.load(col_ptr + e, mask=e_ok, other=0).to(tl.int64)
        ef_ok = e_ok[:, None] & f_ok[None, :]
        xv = tl.load(x_ptr + c[:, None] * stride_xm + offs_f[None, :] * stride_xf,
                     mask=ef_ok, other=0.0).to(ACC_DTYPE)
        if HAS_MASK:
            mv = tl.load(mask_ptr + c[:, None] * stride_mm + offs_f[None, :] * stride_mf,
                         mask=ef_ok, other=0)
            xv = xv * mv.to(ACC_DTYPE)
        if HAS_VAL:
            v = tl.load(val_ptr + e, mask=e_ok, other=0.0).to(ACC_DTYPE)
            xv = xv * v[:, None]
        acc += xv
    out = tl.sum(acc, axis=0)

    if HAS_SCALE:
        s = tl.load(scale_ptr + row, mask=row_ok, other=0.0).to(ACC_DTYPE)
        out = out * s
    if HAS_BIAS:
        b = tl.load(bias_ptr + offs_f, mask=f_ok, other=0.0).to(ACC_DTYPE)
        out = out + b
    out_ptrs = out_ptr + row.to(tl.int64) * stride_om + offs_f
    # Broadcast row before the compare: the interpreter turns scalar & block masks into ints.
    out_ok = f_ok & ((tl.zeros((BLOCK_F,), dtype=tl.int32) + row) < num_rows)
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=out_ok)


def _configs():
    cfgs = []
    for block_f, block_e, warps in [
        (32, 16, 2), (32, 32, 4), (64, 16, 4), (64, 32, 4),
        (128, 8, 4), (128, 16, 4), (128, 32, 8), (256, 8, 8),
    ]:
        cfgs.append(triton.Config({"BLOCK_E": block_e, "BLOCK_F": block_f}, num_warps=warps))
    return cfgs


# The output is fully overwritten by every run, so autotuning needs no restore of outputs.
_spmm_kernel_tuned = triton.autotune(configs=_configs(), key=["F"])(_spmm_kernel)


def _check(rowptr, col, val, x, x_mask, row_scale, bias, num_rows):
    if x.dim() != 2:
        raise ValueError(f"spmm: x must be 2-D (n, F), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"spmm: x.dtype must be one of {FLOAT_DTYPES}, got {x.dtype}")
    check_csr_index("spmm", rowptr, col, num_rows)
    check_device("spmm", x.device, rowptr=rowptr, col=col, val=val, x_mask=x_mask,
                 row_scale=row_scale, bias=bias)
    if val is not None and (val.shape != col.shape or val.dtype != x.dtype):
        raise ValueError(f"spmm: val must be ({col.numel()},) {x.dtype}, "
                         f"got {tuple(val.shape)} {val.dtype}")
    if x_mask is not None and (x_mask.shape != x.shape
                               or x_mask.dtype not in (torch.bool, x.dtype)):
        raise ValueError(f"spmm: x_mask must be {tuple(x.shape)} bool or {x.dtype}, "
                         f"got {tuple(x_mask.shape)} {x_mask.dtype}")
    if row_scale is not None and (row_scale.shape != (num_rows,) or row_scale.dtype != x.dtype):
        raise ValueError(f"spmm: row_scale must be ({num_rows},) {x.dtype}, "
                         f"got {tuple(row_scale.shape)} {row_scale.dtype}")
    if bias is not None and (bias.shape != (x.shape[1],) or bias.dtype != x.dtype):
        raise ValueError(f"spmm: bias must be ({x.shape[1]},) {x.dtype}, "
                         f"got {tuple(bias.shape)} {bias.dtype}")


def spmm(rowptr, col, val, x, x_mask, row_scale, bias, num_rows):
    """CSR times dense with an optional fused mask, row scale and bias.

    ``out[i] = row_scale[i] * sum_{e in row i} val[e] * (x * x_mask)[col[e]] + bias``.

    Args:
        rowptr: (num_rows + 1,) int32 or int64, same device as ``x``.
        col: (nnz,) same dtype as ``rowptr``; column indices in ``[0, n)``.
        val: None (all ones) or (nnz,) ``x.dtype``.
        x: (n, F) float16, bfloat16, float32 or float64; any strides.
        x_mask: None or (n, F), bool or ``x.dtype``; any strides.
        row_scale: None or (num_rows,) ``x.dtype``.
        bias: None or (F,) ``x.dtype``.
        num_rows: number of rows of the sparse matrix.

    Returns:
        (num_rows, F) tensor of ``x.dtype``; accumulated in float32 (float64 for float64).
    """
    num_rows = int(num_rows)
    _check(rowptr, col, val, x, x_mask, row_scale, bias, num_rows)
    F = x.shape[1]
    if num_rows == 0 or F == 0 or col.numel() == 0:
        out = x.new_zeros((num_rows, F))
        if row_scale is not None:
            out.mul_(row_scale[:, None])  # keeps 0 * inf = nan, like the dense formula
        if bias is not None:
            out.add_(bias)
        return out

    rowptr, col = rowptr.contiguous(), col.contiguous()
    val = val.contiguous() if val is not None else None
    row_scale = row_scale.contiguous() if row_scale is not None else None
    bias = bias.contiguous() if bias is not None else None
    out = torch.empty((num_rows, F), dtype=x.dtype, device=x.device)
    mask_strides = x_mask.stride() if x_mask is not None else (0, 0)
    args = (rowptr, col, val, x, x_mask, row_scale, bias, out,
            num_rows, F,
            x.stride(0), x.stride(1), mask_strides[0], mask_strides[1], out.stride(0))
    flags = dict(HAS_VAL=val is not None, HAS_MASK=x_mask is not None,
                 HAS_SCALE=row_scale is not None, HAS_BIAS=bias is not None,
                 ACC_DTYPE=acc_dtype(x.dtype))
    if INTERPRETED:
        launch(_spmm_kernel, (num_rows, triton.cdiv(F, _INTERPRET_BLOCK_F)), x.device, *args,
               **flags, BLOCK_E=_INTERPRET_BLOCK_E, BLOCK_F=_INTERPRET_BLOCK_F)
    else:
        grid = lambda meta: (num_rows, triton.cdiv(F, meta["BLOCK_F"]))  # noqa: E731
        launch(_spmm_kernel_tuned, grid, x.device, *args, **flags)
    return out
