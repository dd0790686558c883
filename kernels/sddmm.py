"""Triton CSR SDDMM: ``out[e] = dot(x[row(e)], y[col[e]])`` for every stored entry ``e``.

One program handles ``BLOCK_E`` consecutive stored entries (equal work per program whatever
the row lengths) and loops over the features in tiles of ``BLOCK_F``. The row of each entry
is expanded from ``rowptr`` on the host; consecutive entries mostly share a row, so the
``x`` rows they gather hit in cache.

On a GPU the launch is autotuned (key: ``F``, plus the tensor dtypes). Under
``TRITON_INTERPRET=1`` (CPU tensors) one small fixed tile is used.
"""
import triton
import triton.language as tl

import torch

from ._common import FLOAT_DTYPES, INTERPRETED, acc_dtype, check_csr_index, check_device, launch

__all__ = ["sddmm"]

_INTERPRET_BLOCK_E = 32
_INTERPRET_BLOCK_F = 32


@triton.jit
def _sddmm_kernel(
    row_ptr, col_ptr, x_ptr, y_ptr, out_ptr,
    nnz, F,
    stride_xm, stride_xf, stride_ym, stride_yf,
    ACC_DTYPE: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr,
):
    pid = tl.program_id(0)
    e = pid.to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = e < nnz
    r = tl.load(row_ptr + e, mask=e_ok, other=0).to(tl.int64)
    c = tl.load(col_ptr + e, mask=e_ok, other=0).to(tl.int64)
    x_rows = x_ptr + r[:, None] * stride_xm
    y_rows = y_ptr + c[:, None] * stride_ym

    acc = tl.zeros((BLOCK_E, BLOCK_F), dtype=ACC_DTYPE)
    for f0 in range(0, F, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        ef_ok = e_ok[:, None] & (f < F)[None, :]
        xv = tl.load(x_rows + f[None, :] * stride_xf, mask=ef_ok, other=0.0).to(ACC_DTYPE)
        yv = tl.load(y_rows + f[None, :] * stride_yf, mask=ef_ok, other=0.0).to(ACC_DTYPE)
        acc += xv * yv
    out = tl.sum(acc, axis=1)
    tl.store(out_ptr + e, out.to(out_ptr.dtype.element_ty), mask=e_ok)


def _configs():
    return [
        triton.Config({"BLOCK_E": block_e, "BLOCK_F": block_f}, num_warps=warps)
        for block_e, block_f, warps in [
            (16, 32, 2), (32, 32, 4), (64, 32, 4), (32, 64, 4),
            (64, 64, 8), (16, 128, 4), (32, 128, 8), (128, 16, 4),
        ]
    ]


# The output is fully overwritten by every run, so autotuning needs no restore of outputs.
_sddmm_kernel_tuned = triton.autotune(configs=_configs(), key=["F"])(_sddmm_kernel)


def _check(rowptr, col, x, y):
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"sddmm: x and y must be 2-D with the same number of columns, "
                         f"got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype not in FLOAT_DTYPES or y.dtype != x.dtype:
        raise TypeError(f"sddmm: x and y must share a dtype in {FLOAT_DTYPES}, "
                        f"got {x.dtype} and {y.dtype}")
    check_csr_index("sddmm", rowptr, col, x.shape[0])
    check_device("sddmm", x.device, rowptr=rowptr, col=col, y=y)


def sddmm(rowptr, col, x, y):
    """Sampled dense-dense product on a CSR pattern.

    ``out[e] = sum_f x[row(e), f] * y[col[e], f]`` for each stored entry ``e`` in CSR order.

    Args:
        rowptr: (m + 1,) int32 or int64, same device as ``x``.
        col: (nnz,) same dtype as ``rowptr``; column indices in ``[0, n)``.
        x: (m, F) float16, bfloat16, float32 or float64; any strides.
        y: (n, F) same dtype as ``x``; any strides.

    Returns:
        (nnz,) tensor of ``x.dtype``; accumulated in float32 (float64 for float64).
    """
    _check(rowptr, col, x, y)
    nnz, F = col.numel(), x.shape[1]
    if nnz == 0 or F == 0:
        return x.new_zeros((nnz,))

    rowptr, col = rowptr.contiguous(), col.contiguous()
    m = rowptr.numel() - 1
    # output_size avoids a device sync to learn the length.
    row = torch.repeat_interleave(torch.arange(m, dtype=rowptr.dtype, device=rowptr.device),
                                  rowptr.diff(), output_size=nnz)
    out = torch.empty((nnz,), dtype=x.dtype, device=x.device)
    args = (row, col, x, y, out, nnz, F,
            x.stride(0), x.stride(1), y.stride(0), y.stride(1))
    if INTERPRETED:
        launch(_sddmm_kernel, (triton.cdiv(nnz, _INTERPRET_BLOCK_E),), x.device, *args,
               ACC_DTYPE=acc_dtype(x.dtype), BLOCK_E=_INTERPRET_BLOCK_E,
               BLOCK_F=_INTERPRET_BLOCK_F)
    else:
        grid = lambda meta: (triton.cdiv(nnz, meta["BLOCK_E"]),)  # noqa: E731
        launch(_sddmm_kernel_tuned, grid, x.device, *args, ACC_DTYPE=acc_dtype(x.dtype))
    return out
