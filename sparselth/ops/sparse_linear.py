"""Sparse linear layer: ``y = x @ W^T + b`` with ``W`` a CSR ``(out_features, in_features)``.

For inference (no gradient needed) at batch >= 2 the ``cpp`` backend runs a row-major kernel
(``csrc/cpu/sparse_linear_cpu.cpp``): blocks of 16-64 samples are transposed in cache, so no
global transpose of the input or the output is made. Otherwise it is computed as
``(W @ x^T)^T``: an SpMM whose dense operand is the input's transpose
``(in_features, batch)`` (the "F = batch" layout). On ``cpp`` with batch > 1 it runs the shifted
kernel with no shifts, which fuses the per-output-feature bias into the store and pads odd
batches to whole vectors; batch 1 (an SpMV) and the other backends use
:func:`sparselth.ops.spmm` plus the bias (measured faster at batch 1). The
result is returned as the transposed view of the ``(out_features, batch)`` product (no copy);
a following sparse layer then reads it without transposing again.

Gradients flow to ``x``, to the stored values ``W.val`` (a compiled ticket can be fine-tuned)
and to ``b``; the backward reuses the forward kernels on the cached transpose of ``W``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import check_csr
from .sparse_conv import ShiftedStructure, _has_cpp_kernel, shifted_spmm
from .spmm import spmm

Tensor = torch.Tensor
_LANES = 8   # the C++ kernel's narrowest vector tile (32 bytes of float32)
_ROW_MAJOR_MAX_IN = 2048


def _has_row_major_kernel() -> bool:
    return _backend._extension_loaded() and hasattr(torch.ops.sparselth, "sparse_linear_kernel")


def _use_row_major(batch: int, in_features: int, x: Tensor, val: Optional[Tensor]) -> bool:
    """The row-major kernel (no autograd) for inference at batch >= 2 with in_features <= 2048
    (its (in_features, 64) block of the input then stays in L2); measured on a 2-core AVX-512
    CPU it beats the SpMM-over-x^T route 1.2-2.2x there, and loses at in_features = 4096."""
    if batch < 2 or in_features > _ROW_MAJOR_MAX_IN or x.dtype not in (torch.float32,
                                                                      torch.float64):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or (val is not None and val.requires_grad)):
        return False
    return _has_row_major_kernel()


def sparse_linear(x: Tensor, weight: CSR, bias: Optional[Tensor] = None, *,
                  structure: Optional[ShiftedStructure] = None,
                  backend: str = "auto") -> Tensor:
    """``y = x @ W^T + b`` for a CSR weight ``W`` (``F.linear`` with a sparse weight).

    Args:
        x: ``(*, in_features)`` input (any number of leading dimensions, batch 1 included).
        weight: ``(out_features, in_features)`` :class:`~sparselth.CSR`; ``weight.val`` may
            require grad.
        bias: optional ``(out_features,)``.
        structure: the cached :class:`~sparselth.ops.sparse_conv.ShiftedStructure` of
            ``weight`` (``SparseLinear`` keeps one); built from ``weight.t()`` when omitted.
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``(*, out_features)``, a transposed view of a contiguous ``(out_features, batch)``
        tensor when ``x`` is 2-D with batch > 1.

    Example::

        >>> W = CSR.from_dense(linear.weight * mask)
        >>> y = sparse_linear(x, W, linear.bias)
    """
    op = "sparse_linear"
    check_csr(op, "weight", weight)
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
    out_f, in_f = weight.shape
    if x.dim() < 1 or x.shape[-1] != in_f:
        raise ValueError(f"{op}: input must have in_features = {in_f} as its last dimension, "
                         f"got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{op}: input must be floating point, got {x.dtype}")
    if x.device != weight.device:
        raise ValueError(f"{op}: input is on {x.device} but weight is on {weight.device}")
    if weight.val is not None and weight.val.dtype != x.dtype:
        raise TypeError(f"{op}: weight values have dtype {weight.val.dtype} but input has "
                        f"{x.dtype}; cast one of them")
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"{op}: bias must be a tensor or None, got {type(bias).__name__}")
        if bias.dim() != 1 or bias.numel() != out_f:
            raise ValueError(f"{op}: bias must have shape ({out_f},), got {tuple(bias.shape)}")
        if bias.dtype != x.dtype:
            raise TypeError(f"{op}: bias has dtype {bias.dtype}, expected {x.dtype}")
        if bias.device != x.device:
            raise ValueError(f"{op}: bias is on {bias.device}, expected {x.device}")
    lead = x.shape[:-1]
    xt = x.reshape(-1, in_f).t()                       # (in, B); contiguous if x is a .t() view
    name = _backend.resolve(backend, x.device, x.dtype, op)
    val = weight.val
    B = xt.shape[1]
    if name == "cpp" and _use_row_major(B, in_f, x, val):
        y = torch.ops.sparselth.sparse_linear_kernel(weight.rowptr, weight.col, val,
                                                     x.reshape(-1, in_f), bias, out_f)
        return y.reshape(*lead, out_f)
    if name == "cpp" and B > 1 and _has_cpp_kernel():
        if structure is None:
            structure = ShiftedStructure.from_csr(weight)
        Bp = B if B <= 1 or B % _LANES == 0 else B + _LANES - B % _LANES
        if Bp != B:     # whole 32-byte vectors per stored weight beat B gathered dot products
            src = xt.new_zeros(in_f, Bp)
            src[:, :B] = xt
        else:
            src = xt.contiguous()
        yt = shifted_spmm(structure, val, src.unsqueeze(0), Bp, bias, "cpp", Bp, max(B, 1))[0]
    else:
        yt = spmm(weight, xt, backend=name)            # (out, B)
        if bias is not None:
            yt = yt + bias.unsqueeze(1)
    return yt.t().reshape(*lead, out_f)
