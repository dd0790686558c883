"""Sparse linear layer: ``y = x @ W^T + b`` with ``W`` a CSR ``(out_features, in_features)``.

Inference (no gradient needed) on the ``cpp`` backend runs ``sparselth::sparse_linear_kernel``
(``csrc/cpu/sparse_linear_cpu.cpp``) at every batch size. Batch 1 is a bandwidth problem: the
stored values and columns stream once, the input stays in cache. From batch 2 on, blocks of
16-64 samples are packed batch-contiguous and each loaded weight is reused across them in vector
registers, column panel by column panel so that the panel's slice of the packed input stays in
L1. A :class:`LinearPlan` (``SparseLinear`` keeps one) holds the layouts of the weight that make
this fast: its columns as int16 (a quarter fewer bytes at batch 1) and, per panel width, the
weight stacked by column panels with its values permuted, gathered again only when the values
change. Without a plan the kernel runs on the plain CSR (same result, no panels). The result is
a contiguous ``(batch, out_features)`` tensor.

Training (gradients needed) computes ``(W @ x^T)^T``: an SpMM whose dense operand is the input's
transpose ``(in_features, batch)`` (the "F = batch" layout). On ``cpp`` with batch > 1 it runs
the shifted kernel (:mod:`sparselth.ops.shifted`) with no shifts, which fuses the bias into the
store and pads odd batches to whole vectors; batch 1 and the other backends use
:func:`sparselth.ops.spmm` plus the bias. That result is the transposed view of the
``(out_features, batch)`` product (no copy). Gradients flow to ``x``, to the stored values
``W.val`` (a compiled ticket can be fine-tuned) and to ``b``; the backward reuses the forward
kernels on the cached transpose of ``W``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import check_csr, check_vector, check_weight_input, register_kernel_fake
from .shifted import ShiftedStructure, shifted_spmm
from .spmm import spmm

Tensor = torch.Tensor
_LANES = 8   # the shifted kernel's narrowest vector tile (32 bytes of float32)
_PANEL_BYTES = 32 * 1024   # a panel's slice of a packed block of the input: one L1 cache
_INT16_MAX = 32767
_PANEL_ENTRIES = 12   # fewest mean entries of a row per panel worth a panel's overhead


def sparse_linear_reference(rowptr: Tensor, col: Tensor, val: Optional[Tensor], x: Tensor,
                            bias: Optional[Tensor], out_features: int,
                            relu: bool = False) -> Tensor:
    """Pure-PyTorch ``sparse_linear_kernel`` (gather + index_add), the oracle of its tests:
    ``out[n, h] = bias[h] + sum_s sum_{e in row s * out_features + h} val[e] * x[n, col[e]]``
    for a CSR of ``S`` stacked panels (``rowptr``: ``S * out_features + 1`` entries), then
    ``torch.relu`` when ``relu``."""
    segments = rowptr.numel() - 1
    counts = (rowptr[1:] - rowptr[:-1]).long()
    seg = torch.repeat_interleave(torch.arange(segments, device=x.device), counts,
                                  output_size=col.numel())
    row = seg % out_features if out_features else seg
    msg = x.index_select(1, col.long())                       # (batch, nnz)
    if val is not None:
        msg = msg * val
    out = x.new_zeros(x.shape[0], out_features).index_add_(1, row, msg)
    out = out if bias is None else out + bias
    return torch.relu(out) if relu else out


@register_kernel_fake("sparse_linear_kernel")
def _(rowptr, col, val, x, bias, out_features, relu=False):
    return x.new_empty((x.shape[0], out_features))


def tile_lanes(batch: int, dtype: torch.dtype) -> int:
    """Samples per packed block of the kernel at ``batch`` (its rule ``plan_blocks``): 4 vectors
    of 64 bytes from 3 vectors of samples on, 2 from 1.5, else 1."""
    lanes = 64 // dtype.itemsize
    vectors = 4 if batch >= 3 * lanes else 2 if 2 * batch >= 3 * lanes else 1
    return vectors * lanes


def panel_width(batch: int, dtype: torch.dtype) -> int:
    """Columns per panel at ``batch``: a (width, block) slice of the packed input fills 32 KiB
    (float32: 128 columns from batch 48 on, 256 from 24, else 512). Measured on a 2-core AMD
    EPYC (Zen 4) at 70-90 % sparsity: 64-192 columns at 64 samples all within 5 % of the best,
    1.3-1.7x faster than no panels for 784-2048 wide layers."""
    return max(16, _PANEL_BYTES // (tile_lanes(batch, dtype) * dtype.itemsize))


class LinearPlan:
    """The layouts of one CSR weight pattern that the inference kernel reads, built once.

    Built on first use: :attr:`col16`, the columns as int16 when ``in_features <= 32767`` (else
    the CSR's own), for batch 1; per panel width, the weight stacked by column panels
    (``rowptr`` of ``S * out_features + 1`` entries, segment ``s * out_features + h`` = the
    entries of row ``h`` in columns ``[s * width, (s + 1) * width)``, int16 columns, the
    permutation from CSR order) and the values in that order, cached against the values tensor
    and its version counter. Memory: 2 bytes per stored weight for batch 1, 10 per panel width
    used (columns, values, permutation), beside the CSR's own.

    Example::

        >>> plan = LinearPlan(W)
        >>> with torch.no_grad():
        ...     y = sparse_linear(x, W, b, plan=plan)
    """

    def __init__(self, weight: CSR):
        check_csr("LinearPlan", "weight", weight)
        self.shape = tuple(weight.shape)
        self.rowptr, self.col = weight.rowptr, weight.col
        self._col16: Optional[Tensor] = None
        self._panels: Dict[int, Tuple[Tensor, Tensor, Tensor]] = {}
        self._values: Dict[int, tuple] = {}

    @property
    def col16(self) -> Tensor:
        """The columns as int16 when ``in_features <= 32767``, else the CSR's own."""
        if self._col16 is None:
            self._col16 = (self.col.to(torch.int16) if self.shape[1] <= _INT16_MAX
                           else self.col)
        return self._col16

    def matches(self, weight: CSR) -> bool:
        """Whether this plan was built for ``weight``'s pattern (the same index tensors)."""
        return weight.rowptr is self.rowptr and weight.col is self.col

    def _stacked(self, width: int) -> Tuple[Tensor, Tensor, Tensor]:
        hit = self._panels.get(width)
        if hit is None:
            out_f, in_f = self.shape
            panels = -(-in_f // width)
            counts = (self.rowptr[1:] - self.rowptr[:-1]).long()
            row = torch.repeat_interleave(torch.arange(out_f, device=self.col.device), counts,
                                          output_size=self.col.numel())
            key = torch.div(self.col.long(), width, rounding_mode="floor") * out_f + row
            perm = torch.sort(key, stable=True).indices
            rowptr = torch.zeros(panels * out_f + 1, dtype=torch.long, device=self.col.device)
            torch.cumsum(torch.bincount(key, minlength=panels * out_f), 0, out=rowptr[1:])
            col = self.col[perm]
            if in_f <= _INT16_MAX:
                col = col.to(torch.int16)
            hit = (rowptr.to(self.rowptr.dtype), col, perm.to(self.rowptr.dtype))
            self._panels[width] = hit
        return hit

    def _permuted(self, width: int, val: Tensor, perm: Tensor) -> Tensor:
        try:
            version = val._version
        except RuntimeError:      # an inference tensor has no version counter: no caching
            return val[perm]
        hit = self._values.get(width)
        if hit is not None and hit[0] is val and hit[1] == version:
            return hit[2]
        permuted = val.detach()[perm]
        self._values[width] = (val, version, permuted)
        return permuted

    def kernel_args(self, val: Optional[Tensor], batch: int,
                    dtype: torch.dtype) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(rowptr, col, val)`` for ``sparse_linear_kernel`` at ``batch``: the plain CSR with
        int16 columns at batch 1 or when one panel holds every column, else the panels."""
        if batch <= 1:
            return self.rowptr, self.col16, val
        out_f, in_f = self.shape
        width = panel_width(batch, dtype)
        # A row's entries in one panel should be ~_PANEL_ENTRIES or more: each (row, panel)
        # pair costs a reload and a store of the row's partial sums (in a 99.7 %-sparse layer
        # panels measured 1.5x slower than none; at 98 % 512-wide panels beat 128-wide 1.6x).
        per_row = self.col.numel() / max(out_f, 1)
        if per_row * width < _PANEL_ENTRIES * in_f:
            width = -(-int(_PANEL_ENTRIES * in_f / max(per_row, 1e-9)) // 16) * 16
        if width >= in_f or out_f == 0:
            return self.rowptr, self.col16, val
        rowptr, col, perm = self._stacked(width)
        return rowptr, col, None if val is None else self._permuted(width, val, perm)


def _use_kernel(x: Tensor, val: Optional[Tensor]) -> bool:
    """The inference kernel (no autograd) for float32/float64 on ``cpp``, at any batch and
    width: it beat the SpMM-over-x^T routes at every size measured."""
    if x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or (val is not None and val.requires_grad)):
        return False
    return _backend.has_kernel("sparse_linear", x.device, "cpp")


def linear_inference(x: Tensor, plan: LinearPlan, val: Optional[Tensor],
                     bias: Optional[Tensor] = None, relu: bool = False) -> Tensor:
    """The inference kernel on ``x (*, in_features)`` with the layouts of ``plan`` and the
    stored values ``val`` in CSR order (no autograd; the caller has checked the arguments);
    ``relu``: the ReLU that follows the layer applied in the kernel's store."""
    out_f, in_f = plan.shape
    flat = x.dim() == 2
    x2 = x if flat else x.reshape(math.prod(x.shape[:-1]), in_f)
    rowptr, col, v = plan.kernel_args(val, x2.shape[0], x.dtype)
    y = torch.ops.sparselth.sparse_linear_kernel.default(rowptr, col, v, x2, bias, out_f, relu)
    return y if flat else y.reshape(*x.shape[:-1], out_f)


def sparse_linear(x: Tensor, weight: CSR, bias: Optional[Tensor] = None, *,
                  structure: Optional[ShiftedStructure] = None,
                  plan: Optional[LinearPlan] = None, backend: str = "auto") -> Tensor:
    """``y = x @ W^T + b`` for a CSR weight ``W`` (``F.linear`` with a sparse weight).

    Args:
        x: ``(*, in_features)`` input (any number of leading dimensions, batch 1 included).
        weight: ``(out_features, in_features)`` :class:`~sparselth.CSR`; ``weight.val`` may
            require grad.
        bias: optional ``(out_features,)``.
        structure: the cached :class:`~sparselth.ops.shifted.ShiftedStructure` of
            ``weight`` (``SparseLinear`` keeps one) for the training route; built from
            ``weight.t()`` when omitted.
        plan: the cached :class:`LinearPlan` of ``weight`` for the inference kernel
            (``SparseLinear`` keeps one); without it the kernel runs on the plain CSR.
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``(*, out_features)``; when gradients are needed and ``x`` is 2-D with batch > 1, a
        transposed view of a contiguous ``(out_features, batch)`` tensor.

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
    name = _backend.resolve(backend, x.device, x.dtype, op)
    val = weight.val
    if name == "cpp" and _use_kernel(x, val):
        if plan is not None and plan.matches(weight):
            return linear_inference(x, plan, val, bias)
        y = torch.ops.sparselth.sparse_linear_kernel(
            weight.rowptr, weight.col, val, x.reshape(math.prod(lead), in_f), bias, out_f)
        return y.reshape(*lead, out_f)
    xt = x.reshape(-1, in_f).t()                       # (in, B); contiguous if x is a .t() view
    B = xt.shape[1]
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
