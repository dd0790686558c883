"""Shifted-window sparse products: the kernel under the direct sparse convolution and, with no
shifts, the sparse linear layer.

A sparse weight's stored entries each name a row ``r`` (an output channel or feature), a source
block ``blk`` (an input channel times a stride phase, or an input feature) and a shift ``koff``
(a kernel tap) into that block::

    shifted_spmm:  out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q]
    shifted_sddmm: out[e]       = sum_{n, q} a[n, row(e), q] * src[n, blk[e], koff[e] + q]

The second is the gradient of the first with respect to ``val``; the gradient with respect to
``src`` is :func:`shifted_spmm` again on the transposed structure (entries grouped by source
block, shifts ``kmax - koff``). Both are custom ops (``sparselth::shifted_spmm``,
``sparselth::shifted_sddmm``) with autograd and fake implementations over the C++ kernels
(``csrc/cpu/shifted_cpu.cpp``) and a pure-PyTorch reference.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from ..sparse.csr import CSR
from ._common import register_kernel_fake, transpose_parts

Tensor = torch.Tensor

BACKENDS = ("reference", "cpp")


# =============================================================================== references
def _entry_rows(rowptr: Tensor, nnz: int) -> Tensor:
    counts = (rowptr[1:] - rowptr[:-1]).long()
    return torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device), counts,
                                   output_size=nnz)


def _window_chunks(blk: Tensor, koff: Optional[Tensor], src: Tensor,
                   q: int) -> Iterator[Tuple[slice, Tensor]]:
    """``(entries, windows)`` over the stored entries in chunks: ``windows[n, i, t]`` is
    ``src[n, blk[e], koff[e] + t]`` for the chunk's i-th entry ``e``, ``t < q`` (each chunk
    gathers ~4M elements)."""
    N, C, Ls = src.shape
    nnz = blk.numel()
    flat = src.reshape(N, C * Ls)
    step = max(1, (1 << 22) // max(1, N * q))
    taps = torch.arange(q, device=blk.device)
    for a in range(0, nnz, step):
        s = slice(a, min(nnz, a + step))
        base = blk[s].long() * Ls
        if koff is not None:
            base = base + koff[s].long()
        yield s, flat[:, base.unsqueeze(1) + taps]


def _narrow_wide(out: Tensor, wide: int, cols: int) -> Tensor:
    """``(N, R, q)`` on rows of ``wide`` -> ``(N, R, q // wide * cols)``, the first ``cols`` of
    each (contiguous, as the kernel's output is)."""
    if wide == cols:
        return out
    N, R, q = out.shape
    return out.view(N, R, q // wide, wide)[..., :cols].reshape(N, R, q // wide * cols).contiguous()


def _widen(grad: Tensor, wide: int, cols: int) -> Tensor:
    """The adjoint of :func:`_narrow_wide`: zeros in the dropped columns."""
    if wide == cols:
        return grad
    N, R, L = grad.shape
    return F.pad(grad.view(N, R, L // cols, cols), (0, wide - cols)).reshape(N, R, L // cols * wide)


def shifted_spmm_reference(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor],
                           val: Optional[Tensor], src: Tensor, bias: Optional[Tensor],
                           num_rows: int, q: int, wide: int = 0, cols: int = 0) -> Tensor:
    """Pure-PyTorch ``out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q]``
    (gather the windows, scale, index_add by row): the oracle of the C++ kernel. The ``q``
    positions form rows of ``wide``, of which the first ``cols`` are returned (default: all)."""
    N = src.shape[0]
    nnz = blk.numel()
    out = src.new_zeros(N, num_rows, q)
    if nnz and q and N:
        rows = _entry_rows(rowptr, nnz)
        for s, win in _window_chunks(blk, koff, src, q):
            if val is not None:
                win = win * val[s].view(1, -1, 1)
            out.index_add_(1, rows[s], win)
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return _narrow_wide(out, wide or max(q, 1), cols or wide or max(q, 1))


def shifted_sddmm_reference(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor], a: Tensor,
                            src: Tensor) -> Tensor:
    """Pure-PyTorch ``out[e] = sum_{n, q} a[n, row(e), q] * src[n, blk[e], koff[e] + q]``."""
    N, q = src.shape[0], a.shape[2]
    nnz = blk.numel()
    out = src.new_zeros(nnz)
    if nnz and q and N:
        rows = _entry_rows(rowptr, nnz)
        for s, win in _window_chunks(blk, koff, src, q):
            out[s] = (win * a[:, rows[s]]).sum((0, 2))
    return out


# =============================================================================== kernels
def _spmm_shape(src: Tensor, num_rows: int, q: int, wide: int, cols: int) -> Tensor:
    return src.new_empty((src.shape[0], num_rows, q // wide * cols))


@register_kernel_fake("shifted_spmm_kernel")
def _(rowptr, blk, koff, val, src, bias, num_rows, q, wide, cols):
    return _spmm_shape(src, num_rows, q, wide, cols)


@register_kernel_fake("shifted_sddmm_kernel")
def _(rowptr, blk, koff, a, src):
    return src.new_empty((blk.shape[0],))


def _shifted_spmm_cpp(rowptr, blk, koff, val, src, bias, num_rows, q, wide, cols):
    return torch.ops.sparselth.shifted_spmm_kernel(rowptr, blk, koff, val, src, bias, num_rows, q,
                                                   wide, cols)


def _shifted_sddmm_cpp(rowptr, blk, koff, a, src):
    return torch.ops.sparselth.shifted_sddmm_kernel(rowptr, blk, koff, a, src)


_SPMM_IMPLS = {"reference": shifted_spmm_reference, "cpp": _shifted_spmm_cpp}
_SDDMM_IMPLS = {"reference": shifted_sddmm_reference, "cpp": _shifted_sddmm_cpp}


# =============================================================================== custom ops
@torch.library.custom_op("sparselth::shifted_spmm", mutates_args=())
def _shifted_spmm_op(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor], val: Optional[Tensor],
                     src: Tensor, bias: Optional[Tensor], t_rowptr: Tensor, t_blk: Tensor,
                     t_perm: Tensor, t_iperm: Tensor, num_rows: int, q: int, wide: int,
                     cols: int, kmax: int, kmin: int, backend: str) -> Tensor:
    return _SPMM_IMPLS[backend](rowptr, blk, koff, val, src, bias, num_rows, q, wide, cols)


@_shifted_spmm_op.register_fake
def _(rowptr, blk, koff, val, src, bias, t_rowptr, t_blk, t_perm, t_iperm, num_rows, q, wide,
      cols, kmax, kmin, backend):
    return _spmm_shape(src, num_rows, q, wide, cols)


def _adjoint_src(grad: Tensor, rowptr, blk, koff, val, t_rowptr, t_blk, t_perm, t_iperm,
                 num_blocks: int, Ls: int, q: int, kmax: int, kmin: int, backend: str) -> Tensor:
    """``d src`` of ``shifted_spmm``: the same op on the transposed structure (entries grouped
    by source block, shift ``kmax - koff``) over ``grad`` padded by ``kmax`` in front."""
    padded = grad if (kmax == 0 and Ls == q) else F.pad(grad, (kmax, Ls - q))
    t_koff = None if koff is None else (kmax - koff[t_perm]).contiguous()
    t_val = None if val is None else val[t_perm].contiguous()
    return _shifted_spmm_op(t_rowptr, t_blk, t_koff, t_val, padded.contiguous(), None, rowptr,
                            blk, t_iperm, t_perm, num_blocks, Ls, max(Ls, 1), max(Ls, 1),
                            kmax - kmin, 0, backend)


def _shifted_spmm_setup(ctx, inputs, output):
    (rowptr, blk, koff, val, src, bias, t_rowptr, t_blk, t_perm, t_iperm, num_rows, q, wide,
     cols, kmax, kmin, backend) = inputs
    ctx.save_for_backward(rowptr, blk, koff, val, src, t_rowptr, t_blk, t_perm, t_iperm)
    ctx.meta = (num_rows, q, wide, cols, kmax, kmin, backend, bias is not None)


def _shifted_spmm_backward(ctx, grad):
    rowptr, blk, koff, val, src, t_rowptr, t_blk, t_perm, t_iperm = ctx.saved_tensors
    num_rows, q, wide, cols, kmax, kmin, backend, has_bias = ctx.meta
    needs = ctx.needs_input_grad
    grad = _widen(grad.contiguous(), wide, cols).contiguous()
    grad_val = grad_src = grad_bias = None
    if needs[3]:
        grad_val = _shifted_sddmm_op(rowptr, blk, koff, grad, src, t_rowptr, t_blk, t_perm,
                                     t_iperm, kmax, kmin, backend)
    if needs[4]:
        grad_src = _adjoint_src(grad, rowptr, blk, koff, val, t_rowptr, t_blk, t_perm, t_iperm,
                                src.shape[1], src.shape[2], q, kmax, kmin, backend)
    if has_bias and needs[5]:
        grad_bias = grad.sum((0, 2))
    return (None, None, None, grad_val, grad_src, grad_bias) + (None,) * 11


_shifted_spmm_op.register_autograd(_shifted_spmm_backward, setup_context=_shifted_spmm_setup)


@torch.library.custom_op("sparselth::shifted_sddmm", mutates_args=())
def _shifted_sddmm_op(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor], a: Tensor, src: Tensor,
                      t_rowptr: Tensor, t_blk: Tensor, t_perm: Tensor, t_iperm: Tensor,
                      kmax: int, kmin: int, backend: str) -> Tensor:
    return _SDDMM_IMPLS[backend](rowptr, blk, koff, a, src)


@_shifted_sddmm_op.register_fake
def _(rowptr, blk, koff, a, src, t_rowptr, t_blk, t_perm, t_iperm, kmax, kmin, backend):
    return src.new_empty((blk.shape[0],))


def _shifted_sddmm_setup(ctx, inputs, output):
    rowptr, blk, koff, a, src, t_rowptr, t_blk, t_perm, t_iperm, kmax, kmin, backend = inputs
    ctx.save_for_backward(rowptr, blk, koff, a, src, t_rowptr, t_blk, t_perm, t_iperm)
    ctx.meta = (kmax, kmin, backend)


def _shifted_sddmm_backward(ctx, grad):
    rowptr, blk, koff, a, src, t_rowptr, t_blk, t_perm, t_iperm = ctx.saved_tensors
    kmax, kmin, backend = ctx.meta
    grad = grad.contiguous()
    grad_a = grad_src = None
    q = a.shape[2]
    if ctx.needs_input_grad[3]:    # d a = shifted_spmm with the values set to grad
        grad_a = _shifted_spmm_op(rowptr, blk, koff, grad, src, None, t_rowptr, t_blk, t_perm,
                                  t_iperm, a.shape[1], q, max(q, 1), max(q, 1), kmax, kmin,
                                  backend)
    if ctx.needs_input_grad[4]:    # d src = the adjoint of that op applied to a
        grad_src = _adjoint_src(a, rowptr, blk, koff, grad, t_rowptr, t_blk, t_perm, t_iperm,
                                src.shape[1], src.shape[2], q, kmax, kmin, backend)
    return (None, None, None, grad_a, grad_src) + (None,) * 7


_shifted_sddmm_op.register_autograd(_shifted_sddmm_backward, setup_context=_shifted_sddmm_setup)


# =============================================================================== public
class ShiftedStructure:
    """A sparse weight's entries as (row, source block, shift), with the transposed structure
    the backward pass needs. ``koff`` is ``None`` when every shift is 0 (sparse linear)."""

    __slots__ = ("rowptr", "blk", "koff", "t_rowptr", "t_blk", "t_perm", "t_iperm",
                 "num_rows", "num_blocks", "kmax", "kmin")

    def __init__(self, rowptr, blk, koff, t_rowptr, t_blk, t_perm, t_iperm, num_rows,
                 num_blocks, kmax=0, kmin=0):
        self.rowptr, self.blk, self.koff = rowptr, blk, koff
        self.t_rowptr, self.t_blk, self.t_perm, self.t_iperm = t_rowptr, t_blk, t_perm, t_iperm
        self.num_rows, self.num_blocks, self.kmax, self.kmin = num_rows, num_blocks, kmax, kmin

    @classmethod
    def from_csr(cls, A: CSR) -> "ShiftedStructure":
        """Shift-free structure of a CSR (rows = A's rows, blocks = A's columns). Traced
        (``torch.compile``, ``torch.export``) the transpose is built with data-independent
        shapes (:func:`~sparselth.ops._common.transpose_parts`), not cached on ``A``."""
        if torch.compiler.is_compiling():
            t_rowptr, t_col, perm = transpose_parts(A.rowptr, A.col, A.shape[1])
            iperm = torch.empty_like(perm).scatter_(
                0, perm, torch.arange(perm.numel(), device=perm.device))
            return cls(A.rowptr, A.col, None, t_rowptr, t_col, perm, iperm, A.shape[0],
                       A.shape[1])
        At = A.t()
        return cls(A.rowptr, A.col, None, At.rowptr, At.col, A.csr_to_csc_perm(),
                   At.csr_to_csc_perm(), A.shape[0], A.shape[1])

    def with_shifts(self, koff: Optional[Tensor]) -> "ShiftedStructure":
        kmax = int(koff.max()) if koff is not None and koff.numel() else 0
        kmin = int(koff.min()) if koff is not None and koff.numel() else 0
        return ShiftedStructure(self.rowptr, self.blk, koff, self.t_rowptr, self.t_blk,
                                self.t_perm, self.t_iperm, self.num_rows, self.num_blocks, kmax,
                                kmin)

    def transposed(self, val: Optional[Tensor]) -> Tuple["ShiftedStructure", Optional[Tensor]]:
        """The structure of the adjoint (rows = source blocks, shifts ``kmax - koff``) and
        ``val`` in its entry order."""
        t_koff = None if self.koff is None else (self.kmax - self.koff[self.t_perm]).contiguous()
        t_val = None if val is None else val[self.t_perm]
        return ShiftedStructure(self.t_rowptr, self.t_blk, t_koff, self.rowptr, self.blk,
                                self.t_iperm, self.t_perm, self.num_blocks, self.num_rows,
                                self.kmax - self.kmin, 0), t_val


def shifted_spmm(S: ShiftedStructure, val: Optional[Tensor], src: Tensor, q: int,
                 bias: Optional[Tensor] = None, backend: str = "cpp", wide: int = 0,
                 cols: int = 0) -> Tensor:
    """``out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q]``,
    differentiable wrt ``val``, ``src`` and ``bias``. The ``q`` positions form rows of ``wide``
    of which the first ``cols`` are kept (default: all). ``backend`` is a concrete
    :data:`BACKENDS` name; inputs are trusted (callers validate)."""
    src = src.contiguous()
    wide = wide or max(q, 1)
    cols = cols or wide
    if not torch.compiler.is_compiling() and not (torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (val, src, bias))):
        return _SPMM_IMPLS[backend](S.rowptr, S.blk, S.koff, val, src, bias, S.num_rows, q,
                                    wide, cols)
    return _shifted_spmm_op(S.rowptr, S.blk, S.koff, val, src, bias, S.t_rowptr, S.t_blk,
                            S.t_perm, S.t_iperm, S.num_rows, q, wide, cols, S.kmax, S.kmin,
                            backend)


def shifted_spmm_t(S: ShiftedStructure, val: Optional[Tensor], grad: Tensor, Ls: int,
                   backend: str = "cpp") -> Tensor:
    """The adjoint of :func:`shifted_spmm` wrt ``src``: ``(N, num_rows, q)`` -> ``(N, num_blocks, Ls)``."""
    return _adjoint_src(grad.contiguous(), S.rowptr, S.blk, S.koff, val, S.t_rowptr, S.t_blk,
                        S.t_perm, S.t_iperm, S.num_blocks, Ls, grad.shape[2], S.kmax, S.kmin,
                        backend)
