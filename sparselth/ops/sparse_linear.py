"""Sparse linear layer: ``y = x @ W^T + b`` with ``W`` a CSR ``(out_features, in_features)``.

For inference (no gradient needed) at batch >= 2 the ``cpp`` backend runs a row-major kernel
(``sparselth::sparse_linear_kernel``, ``csrc/cpu/sparse_linear_cpu.cpp``): blocks of 16-64 samples are transposed in cache, so no
global transpose of the input or the output is made. Otherwise it is computed as
``(W @ x^T)^T``: an SpMM whose dense operand is the input's transpose
``(in_features, batch)`` (the "F = batch" layout). On ``cpp`` with batch > 1 it runs the shifted
kernel (:mod:`sparselth.ops.shifted`) with no shifts, which fuses the per-output-feature bias into the store and pads odd
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
from ._common import check_csr, check_vector, check_weight_input, register_kernel_fake
from .shifted import ShiftedStructure, shifted_spmm
from .spmm import spmm

Tensor = torch.Tensor
_LANES = 8   # the C++ kernel's narrowest vector tile (32 bytes of float32)
_ROW_MAJOR_MAX_IN = 2048


@register_kernel_fake("sparse_linear_kernel")
def _(rowptr, col, val, x, bias, out_features):
    return x.new_empty((x.shape[0], out_features))


def _use_row_major(batch: int, in_features: int, x: Tensor, val: Optional[Tensor]) -> bool:
    """The row-major kernel (no autograd) for inference at batch >= 2 with in_features <= 2048
    (its (in_features, 64) block of the input then stays in L2); measured on a 2-core AVX-512
    CPU it beats the SpMM-over-x^T route 1.2-2.2x there, and loses at in_features = 4096."""
    if batch < 2 or in_features > _ROW_MAJOR_MAX_IN or x.dtype not in (torch.float32,
                                                                      torch.float64):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or (val is not None and val.requires_grad)):
        return False
    return _backend.has_kernel("sparse_linear", x.device, "cpp")


def sparse_linear(x: Tensor, weight: CSR, bias: Optional[Tensor] = None, *,
                  structure: Optional[ShiftedStructure] = None,
                  backend: str = "auto") -> Tensor:
    """``y = x @ W^T + b`` for a CSR weight ``W`` (``F.linear`` with a sparse weight).

    Args:
        x: ``(*, in_features)`` input (any number of leading dimensions, batch 1 included).
        weight: ``(out_features, in_features)`` :class:`~sparselth.CSR`; ``weight.val`` may
            require grad.
        bias: optional ``(out_features,)``.
        structure: the cached :class:`~sparselth.ops.shifted.ShiftedStructure` of
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
    check_weight_input(op, x, weight)
    out_f, in_f = weight.shape
    if x.dim() < 1 or x.shape[-1] != in_f:
        raise ValueError(f"{op}: input must have in_features = {in_f} as its last dimension, "
                         f"got shape {tuple(x.shape)}")
    bias = check_vector(op, "bias", bias, out_f, x)
    lead = x.shape[:-1]
    xt = x.reshape(-1, in_f).t()                       # (in, B); contiguous if x is a .t() view
    name = _backend.resolve(backend, x.device, x.dtype, op)
    val = weight.val
    B = xt.shape[1]
    if name == "cpp" and _use_row_major(B, in_f, x, val):
        y = torch.ops.sparselth.sparse_linear_kernel(weight.rowptr, weight.col, val,
                                                     x.reshape(-1, in_f), bias, out_f)
        return y.reshape(*lead, out_f)
    if name == "cpp" and B > 1 and _backend.has_kernel("shifted_spmm", x.device, "cpp"):
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
