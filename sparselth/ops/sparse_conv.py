"""Sparse convolution: a CSR weight times the input, with no dense weight and (on the direct
route) no im2col copy.

Two routes compute the same thing:

* ``"direct"`` (backends ``cpp`` and ``reference``): the input is zero-padded and, for
  stride > 1, split into its stride phases, laid out on the output's *wide* grid (width
  ``Wout + reach``). Every stored weight ``(cout, cin, ky, kx)`` then reads one contiguous
  window of that buffer at a fixed shift, so the convolution is ::

      out[n, cout, q] = bias[cout] + sum_{e in row cout} val[e] * src[n, blk[e], koff[e] + q]

  (``shifted_spmm``). The input gradient is the same kernel on the transposed structure
  (entries grouped by input block, negated shifts), the weight gradient a windowed dot product
  per stored weight (``shifted_sddmm``). A 3x3 conv with 256 channels on 32x32 images at
  batch 64 needs ~70 MB for the buffer where im2col needs 600 MB.
* ``"im2col"`` (any :func:`sparselth.ops.spmm` backend, GPUs included): ``F.unfold`` then
  ``spmm(W, cols)``; transposed convolution as ``F.fold(W^T @ x)``.

Weights are CSR matrices over the *flattened* PyTorch weight: a conv weight
``(Cout, Cin/groups, kh, kw)`` is the ``(Cout, Cin/groups*kh*kw)`` CSR of
``weight.reshape(Cout, -1)``; a transposed-conv weight ``(Cin, Cout/groups, kh, kw)`` the
``(Cin, Cout/groups*kh*kw)`` CSR of ``weight.reshape(Cin, -1)``. Groups are block-diagonal: the
columns of a row refer to its group's input channels.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import check_csr
from .spmm import spmm

Tensor = torch.Tensor
IntPair = Union[int, Sequence[int]]

DIRECT_BACKENDS = ("reference", "cpp")
ROUTES = ("auto", "direct", "im2col")


# =============================================================================== shifted ops
def _entry_rows(rowptr: Tensor, nnz: int) -> Tensor:
    counts = (rowptr[1:] - rowptr[:-1]).long()
    return torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device), counts,
                                   output_size=nnz)


def _windows(blk: Tensor, koff: Optional[Tensor], Ls: int, q: int) -> Tensor:
    base = blk.long() * Ls
    if koff is not None:
        base = base + koff.long()
    return base.unsqueeze(1) + torch.arange(q, device=blk.device)


def _chunk(nnz: int, N: int, q: int) -> int:
    return max(1, (1 << 22) // max(1, N * q))


def _narrow_wide(out: Tensor, wide: int, cols: int) -> Tensor:
    """``(N, R, q)`` on rows of ``wide`` -> ``(N, R, q // wide * cols)``, the first ``cols`` of each."""
    if wide == cols:
        return out
    N, R, q = out.shape
    return out.view(N, R, q // wide, wide)[..., :cols].reshape(N, R, q // wide * cols)


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
    N, C, Ls = src.shape
    nnz = blk.numel()
    out = src.new_zeros(N, num_rows, q)
    if nnz and q and N:
        rows = _entry_rows(rowptr, nnz)
        flat = src.reshape(N, C * Ls)
        step = _chunk(nnz, N, q)
        for a in range(0, nnz, step):
            b = min(nnz, a + step)
            idx = _windows(blk[a:b], None if koff is None else koff[a:b], Ls, q)
            win = flat[:, idx]                                    # (N, chunk, q)
            if val is not None:
                win = win * val[a:b].view(1, -1, 1)
            out.index_add_(1, rows[a:b], win)
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return _narrow_wide(out, wide or max(q, 1), cols or wide or max(q, 1))


def shifted_sddmm_reference(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor], a: Tensor,
                            src: Tensor) -> Tensor:
    """Pure-PyTorch ``out[e] = sum_{n, q} a[n, row(e), q] * src[n, blk[e], koff[e] + q]``."""
    N, C, Ls = src.shape
    q = a.shape[2]
    nnz = blk.numel()
    out = src.new_zeros(nnz)
    if nnz and q and N:
        rows = _entry_rows(rowptr, nnz)
        flat = src.reshape(N, C * Ls)
        step = _chunk(nnz, N, q)
        for s in range(0, nnz, step):
            e = min(nnz, s + step)
            idx = _windows(blk[s:e], None if koff is None else koff[s:e], Ls, q)
            out[s:e] = (flat[:, idx] * a[:, rows[s:e]]).sum((0, 2))
    return out


def _shifted_spmm_cpp(rowptr, blk, koff, val, src, bias, num_rows, q, wide, cols):
    return torch.ops.sparselth.shifted_spmm_kernel(rowptr, blk, koff, val, src, bias, num_rows, q,
                                                   wide, cols)


def _shifted_sddmm_cpp(rowptr, blk, koff, a, src):
    return torch.ops.sparselth.shifted_sddmm_kernel(rowptr, blk, koff, a, src)


_SPMM_IMPLS = {"reference": shifted_spmm_reference, "cpp": _shifted_spmm_cpp}
_SDDMM_IMPLS = {"reference": shifted_sddmm_reference, "cpp": _shifted_sddmm_cpp}


@torch.compiler.assume_constant_result
def _has_cpp_kernel() -> bool:
    return _backend._extension_loaded() and hasattr(torch.ops.sparselth, "shifted_spmm_kernel")


@torch.library.custom_op("sparselth::shifted_spmm", mutates_args=())
def _shifted_spmm_op(rowptr: Tensor, blk: Tensor, koff: Optional[Tensor], val: Optional[Tensor],
                     src: Tensor, bias: Optional[Tensor], t_rowptr: Tensor, t_blk: Tensor,
                     t_perm: Tensor, t_iperm: Tensor, num_rows: int, q: int, wide: int,
                     cols: int, kmax: int, kmin: int, backend: str) -> Tensor:
    return _SPMM_IMPLS[backend](rowptr, blk, koff, val, src, bias, num_rows, q, wide, cols)


@_shifted_spmm_op.register_fake
def _(rowptr, blk, koff, val, src, bias, t_rowptr, t_blk, t_perm, t_iperm, num_rows, q, wide,
      cols, kmax, kmin, backend):
    return src.new_empty((src.shape[0], num_rows, q // wide * cols))


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
        """Shift-free structure of a CSR (rows = A's rows, blocks = A's columns)."""
        At = A.t()
        return cls(A.rowptr, A.col, None, At.rowptr, At.col, A.csr_to_csc_perm(),
                   At.csr_to_csc_perm(), A.shape[0], A.shape[1])

    def with_shifts(self, koff: Optional[Tensor]) -> "ShiftedStructure":
        kmax = int(koff.max()) if koff is not None and koff.numel() else 0
        kmin = int(koff.min()) if koff is not None and koff.numel() else 0
        return ShiftedStructure(self.rowptr, self.blk, koff, self.t_rowptr, self.t_blk,
                                self.t_perm, self.t_iperm, self.num_rows, self.num_blocks, kmax,
                                kmin)


def shifted_spmm(S: ShiftedStructure, val: Optional[Tensor], src: Tensor, q: int,
                 bias: Optional[Tensor] = None, backend: str = "cpp", wide: int = 0,
                 cols: int = 0) -> Tensor:
    """``out[n, r, q] = bias[r] + sum_{e in row r} val[e] * src[n, blk[e], koff[e] + q]``,
    differentiable wrt ``val``, ``src`` and ``bias``. The ``q`` positions form rows of ``wide``
    of which the first ``cols`` are kept (default: all). ``backend`` is a concrete
    :data:`DIRECT_BACKENDS` name; inputs are trusted (callers validate)."""
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


# =============================================================================== conv plans
def _pair(name: str, v: IntPair, minimum: int, op: str) -> Tuple[int, int]:
    if isinstance(v, bool):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int):
        v = (v, v)
    try:
        a, b = (int(t) for t in v)
        if any(isinstance(t, bool) or int(t) != t for t in v):
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if a < minimum or b < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {(a, b)}")
    return a, b


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ConvPlan:
    """What a sparse conv weight's structure implies for both routes; built once per layer.

    Args:
        weight: ``(out_channels, in_channels // groups * kh * kw)`` CSR of the flattened conv
            weight (values are passed per call, so the plan survives fine-tuning).
        in_channels, kernel_size, stride, padding, dilation, groups: as ``nn.Conv2d``.

    Per input size, :meth:`geometry` adds the shifts of the direct route (cached).
    """

    def __init__(self, weight: CSR, in_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
                 op: str = "sparse_conv2d"):
        check_csr(op, "weight", weight)
        self.kernel_size = kh, kw = _pair("kernel_size", kernel_size, 1, op)
        self.stride = sh, sw = _pair("stride", stride, 1, op)
        self.padding = _pair("padding", padding, 0, op)
        self.dilation = dh, dw = _pair("dilation", dilation, 1, op)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        R = weight.shape[0]
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"{op}: in_channels must be a positive int, got {in_channels!r}")
        if in_channels % groups or R % groups:
            raise ValueError(f"{op}: groups={groups} must divide in_channels={in_channels} and "
                             f"the weight's rows={R}")
        kk = kh * kw
        cin_g = in_channels // groups
        if weight.shape[1] != cin_g * kk:
            raise ValueError(f"{op}: weight must have shape ({R}, in_channels // groups * kh * kw"
                             f" = {cin_g * kk}), got {weight.shape}")
        self.in_channels, self.groups, self.out_channels = in_channels, groups, R
        self.device = weight.device
        self.nnz = weight.nnz
        idx = weight.col.dtype
        row, col = weight.row(), weight.col.long()
        cin = (row // (R // groups)) * cin_g + col // kk
        k = col % kk
        ty, tx = (k // kw) * dh, (k % kw) * dw
        phases_y = sorted({(i * dh) % sh for i in range(kh)})
        phases_x = sorted({(j * dw) % sw for j in range(kw)})
        self.phases = (phases_y, phases_x)
        self.num_phases = P = len(phases_y) * len(phases_x)
        self.reach = ((kh - 1) * dh // sh, (kw - 1) * dw // sw)   # max shift in phase rows/cols
        lut_y = torch.zeros(sh, dtype=torch.long, device=self.device)
        lut_y[phases_y] = torch.arange(len(phases_y), device=self.device)
        lut_x = torch.zeros(sw, dtype=torch.long, device=self.device)
        lut_x[phases_x] = torch.arange(len(phases_x), device=self.device)
        blk = cin * P + lut_y[ty % sh] * len(phases_x) + lut_x[tx % sw]
        self.shift_y, self.shift_x = ty // sh, tx // sw
        num_blocks = in_channels * P
        # Transposed structure: entries grouped by source block (stable, so by row within).
        t_perm = torch.sort(blk, stable=True).indices
        t_rowptr = torch.zeros(num_blocks + 1, dtype=torch.long, device=self.device)
        torch.cumsum(torch.bincount(blk, minlength=num_blocks), 0, out=t_rowptr[1:])
        self.structure = ShiftedStructure(
            weight.rowptr, blk.to(idx), None, t_rowptr.to(idx), row[t_perm].to(idx), t_perm,
            torch.argsort(t_perm), R, num_blocks)
        # im2col route: the block-diagonal CSR over the unfolded input (Cin * kh * kw columns).
        self.im2col_pattern = CSR(weight.rowptr, (cin * kk + k).to(idx), None,
                                  (R, in_channels * kk), validate=False)
        self._geometry: Dict[Tuple[int, int], dict] = {}

    def out_size(self, H: int, W: int) -> Tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.stride, self.padding,
                                                  self.dilation)
        return _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)

    def geometry(self, H: int, W: int) -> dict:
        """The direct route's layout for an ``H x W`` input: output size, wide-grid width
        ``Wq``, phase-plane height ``Hph``, and the per-entry shifts (cached)."""
        key = (H, W)
        g = self._geometry.get(key)
        if g is None:
            Hout, Wout = self.out_size(H, W)
            Sy, Sx = self.reach
            Wq = Wout + Sx
            Hph = Hout + Sy + (1 if Sx > 0 else 0)
            koff = (self.shift_y * Wq + self.shift_x).to(self.structure.blk.dtype)
            g = dict(Hout=Hout, Wout=Wout, Wq=Wq, Hph=Hph, Q=Hout * Wq, Ls=Hph * Wq,
                     S=self.structure.with_shifts(koff))
            if len(self._geometry) > 16:
                self._geometry.clear()
            self._geometry[key] = g
        return g

    # ------------------------------------------------------------------ direct-route layout
    def _pads(self, H: int, W: int, g: dict) -> Tuple[int, int, int, int]:
        (sh, sw), (ph, pw) = self.stride, self.padding
        return (pw, g["Wq"] * sw - W - pw, ph, g["Hph"] * sh - H - ph)

    def build(self, x: Tensor, g: dict) -> Tensor:
        """``(N, C, H, W)`` -> the padded, phase-split source ``(N, C * P, Hph * Wq)``."""
        N, C, H, W = x.shape
        (sh, sw) = self.stride
        pads = self._pads(H, W, g)
        xp = F.pad(x, pads) if any(pads) else x
        Hph, Wq = g["Hph"], g["Wq"]
        if sh == 1 and sw == 1:
            return xp.reshape(N, C, Hph * Wq)
        py, px = self.phases
        v = xp.reshape(N, C, Hph, sh, Wq, sw)
        if len(py) < sh:
            v = v.index_select(3, torch.tensor(py, device=x.device))
        if len(px) < sw:
            v = v.index_select(5, torch.tensor(px, device=x.device))
        return v.permute(0, 1, 3, 5, 2, 4).reshape(N, C * self.num_phases, Hph * Wq)

    def unbuild(self, buf: Tensor, H: int, W: int, g: dict) -> Tensor:
        """The adjoint of :meth:`build`: ``(N, C * P, Hph * Wq)`` -> ``(N, C, H, W)``."""
        N = buf.shape[0]
        C = buf.shape[1] // self.num_phases
        (sh, sw) = self.stride
        Hph, Wq = g["Hph"], g["Wq"]
        if sh == 1 and sw == 1:
            img = buf.reshape(N, C, Hph, Wq)
        else:
            py, px = self.phases
            v = buf.reshape(N, C, len(py), len(px), Hph, Wq).permute(0, 1, 4, 2, 5, 3)
            if len(px) < sw:
                v = v.new_zeros(N, C, Hph, len(py), Wq, sw).index_copy(
                    5, torch.tensor(px, device=buf.device), v)
            if len(py) < sh:
                v = v.new_zeros(N, C, Hph, sh, Wq, sw).index_copy(
                    3, torch.tensor(py, device=buf.device), v)
            img = v.reshape(N, C, Hph * sh, Wq * sw)
        pads = self._pads(H, W, g)
        return F.pad(img, tuple(-p for p in pads)) if any(pads) else img


# =============================================================================== checks
def _check_input(op: str, x, channels: int, weight: CSR) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{op}: input must be floating point, got {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{op}: input must have {channels} channels, got shape {tuple(x.shape)}")
    if x.device != weight.device:
        raise ValueError(f"{op}: input is on {x.device} but weight is on {weight.device}")
    if weight.val is not None and weight.val.dtype != x.dtype:
        raise TypeError(f"{op}: weight values have dtype {weight.val.dtype} but input has "
                        f"{x.dtype}; cast one of them")
    return x


def _check_bias(op: str, bias, n: int, x: Tensor) -> Optional[Tensor]:
    if bias is None:
        return None
    if not isinstance(bias, Tensor):
        raise TypeError(f"{op}: bias must be a tensor or None, got {type(bias).__name__}")
    if bias.dim() != 1 or bias.numel() != n:
        raise ValueError(f"{op}: bias must have shape ({n},), got {tuple(bias.shape)}")
    if bias.dtype != x.dtype:
        raise TypeError(f"{op}: bias has dtype {bias.dtype}, expected {x.dtype}")
    if bias.device != x.device:
        raise ValueError(f"{op}: bias is on {bias.device}, expected {x.device}")
    return bias


def _check_plan_args(op: str, plan: "ConvPlan", kernel_size, stride, padding, dilation,
                     groups) -> None:
    """With a plan, the plan's geometry is used; arguments that are given (not the defaults)
    must agree with it."""
    given = (("kernel_size", kernel_size, None, plan.kernel_size), ("stride", stride, 1, plan.stride),
             ("padding", padding, 0, plan.padding), ("dilation", dilation, 1, plan.dilation))
    for name, v, default, planned in given:
        if v is not None and v != default and _pair(name, v, 0, op) != planned:
            raise ValueError(f"{op}: {name}={v!r} disagrees with the plan's {planned}")
    if groups != 1 and groups != plan.groups:
        raise ValueError(f"{op}: groups={groups} disagrees with the plan's {plan.groups}")


def _values(weight: CSR, x: Tensor) -> Tensor:
    return weight.val if weight.val is not None else weight.values(x.dtype)


def resolve_route(op: str, route: str, backend: str, device: torch.device,
                  dtype: torch.dtype) -> Tuple[str, str]:
    """``(route, backend)`` for a sparse conv: ``direct`` on ``cpp``/``reference``, ``im2col``
    on any spmm backend; ``auto`` picks ``direct`` where the C++ kernel runs, else ``im2col``."""
    if route not in ROUTES:
        raise ValueError(f"{op}: route must be one of {ROUTES}, got {route!r}")
    name = _backend.resolve(backend, device, dtype, op)
    if route == "auto":
        route = "direct" if name == "cpp" and _has_cpp_kernel() else "im2col"
    if route == "direct":
        if name not in DIRECT_BACKENDS:
            raise ValueError(f"{op}: route 'direct' runs on backends {DIRECT_BACKENDS}, got "
                             f"{name!r} (use route='im2col')")
        if name == "cpp" and not _has_cpp_kernel():
            raise ValueError(f"{op}: the C++ conv kernel is not built (reinstall sparselth)")
    return route, name


# =============================================================================== conv2d
def sparse_conv2d(x: Tensor, weight: CSR, bias: Optional[Tensor] = None, stride: IntPair = 1,
                  padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, *,
                  kernel_size: Optional[IntPair] = None, plan: Optional[ConvPlan] = None,
                  route: str = "auto", backend: str = "auto") -> Tensor:
    """2-D convolution with a CSR weight: equals ``F.conv2d(x, W, bias, stride, padding,
    dilation, groups)`` for the dense ``W`` that ``weight`` stores.

    Args:
        x: ``(N, Cin, H, W)`` input.
        weight: ``(Cout, Cin // groups * kh * kw)`` :class:`~sparselth.CSR` of
            ``W.reshape(Cout, -1)``; its values may require grad (fine-tuning a ticket).
        bias: optional ``(Cout,)``.
        stride, padding, dilation, groups: as :func:`torch.nn.functional.conv2d` (zero padding).
        kernel_size: ``(kh, kw)``; required unless ``plan`` is given.
        plan: a cached :class:`ConvPlan` for this weight's structure (modules keep one); its
            geometry is used, and stride/padding/dilation/groups given as well must agree.
        route: ``"auto"``, ``"direct"`` (no im2col; cpp/reference) or ``"im2col"`` (any backend).
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``(N, Cout, Hout, Wout)``; differentiable wrt ``x``, ``weight.val`` and ``bias``.

    Example::

        >>> W = conv.weight * mask
        >>> A = CSR.from_dense(W.reshape(W.shape[0], -1))
        >>> y = sparse_conv2d(x, A, conv.bias, padding=1, kernel_size=3)
    """
    op = "sparse_conv2d"
    check_csr(op, "weight", weight)
    if plan is None:
        if kernel_size is None:
            raise ValueError(f"{op}: kernel_size is required when no plan is given")
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
        plan = ConvPlan(weight, x.shape[1], kernel_size, stride, padding, dilation, groups, op)
    else:
        _check_plan_args(op, plan, kernel_size, stride, padding, dilation, groups)
    _check_input(op, x, plan.in_channels, weight)
    if weight.nnz != plan.nnz:
        raise ValueError(f"{op}: weight has {weight.nnz} stored entries but the plan {plan.nnz}")
    bias = _check_bias(op, bias, plan.out_channels, x)
    N, C, H, W = x.shape
    Hout, Wout = plan.out_size(H, W)
    if Hout < 1 or Wout < 1:
        raise ValueError(f"{op}: input {H}x{W} is too small for kernel {plan.kernel_size}, "
                         f"padding {plan.padding}, dilation {plan.dilation}")
    route, name = resolve_route(op, route, backend, x.device, x.dtype)
    val = _values(weight, x)
    if route == "direct":
        return _conv2d_direct(x, plan, val, bias, name)
    return _conv2d_im2col(x, plan, val, bias, name)


def _conv2d_direct(x, plan: ConvPlan, val, bias, backend):
    N, C, H, W = x.shape
    g = plan.geometry(H, W)
    src = plan.build(x, g)
    out = shifted_spmm(g["S"], val, src, g["Q"], bias, backend, g["Wq"], g["Wout"])
    return out.view(N, plan.out_channels, g["Hout"], g["Wout"])


def _conv2d_im2col(x, plan: ConvPlan, val, bias, backend):
    N = x.shape[0]
    Hout, Wout = plan.out_size(x.shape[2], x.shape[3])
    cols = F.unfold(x, plan.kernel_size, plan.dilation, plan.padding, plan.stride)
    K, L = cols.shape[1], cols.shape[2]
    X = cols.transpose(0, 1).reshape(K, N * L)
    plan.im2col_pattern.t()                            # cached once; with_values carries it
    A = plan.im2col_pattern.with_values(val)
    out = spmm(A, X, backend=backend).view(plan.out_channels, N, L).transpose(0, 1)
    out = out.reshape(N, plan.out_channels, Hout, Wout)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


# =============================================================================== transposed
def conv_transpose_out_size(size: int, k: int, s: int, p: int, d: int, op_: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def sparse_conv_transpose2d(x: Tensor, weight: CSR, bias: Optional[Tensor] = None,
                            stride: IntPair = 1, padding: IntPair = 0,
                            output_padding: IntPair = 0, groups: int = 1,
                            dilation: IntPair = 1, *, kernel_size: Optional[IntPair] = None,
                            output_size: Optional[Sequence[int]] = None,
                            plan: Optional[ConvPlan] = None, route: str = "auto",
                            backend: str = "auto") -> Tensor:
    """Transposed 2-D convolution with a CSR weight: equals ``F.conv_transpose2d(x, W, bias,
    stride, padding, output_padding, groups, dilation)`` for the dense ``W`` stored.

    Computed as the adjoint of the sparse convolution that ``W`` defines (the input gradient of
    :func:`sparse_conv2d`): no dense weight, no zero-upsampled input.

    Args:
        x: ``(N, Cin, Hx, Wx)``.
        weight: ``(Cin, Cout // groups * kh * kw)`` CSR of ``W.reshape(Cin, -1)`` where ``W``
            is the ``(Cin, Cout // groups, kh, kw)`` transposed-conv weight.
        bias: optional ``(Cout,)``.
        output_size: optional ``(H, W)`` (or longer, the last two are used) choosing the
            output padding as ``nn.ConvTranspose2d`` does.
        plan, route, backend: as :func:`sparse_conv2d`; the plan is the one of the forward
            conv, i.e. ``ConvPlan(weight, Cout, kernel_size, stride, padding, dilation, groups)``.

    Returns:
        ``(N, Cout, Hy, Wy)`` with ``Hy = (Hx - 1) * stride - 2 * padding + dilation * (kh - 1)
        + output_padding + 1``.
    """
    op = "sparse_conv_transpose2d"
    check_csr(op, "weight", weight)
    if plan is None:
        if kernel_size is None:
            raise ValueError(f"{op}: kernel_size is required when no plan is given")
        kh, kw = _pair("kernel_size", kernel_size, 1, op)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        if weight.shape[1] % (kh * kw):
            raise ValueError(f"{op}: weight must have shape (Cin, Cout // groups * kh * kw), "
                             f"got {weight.shape} for kernel {(kh, kw)}")
        cout = weight.shape[1] // (kh * kw) * groups
        plan = ConvPlan(weight, cout, (kh, kw), stride, padding, dilation, groups, op)
    else:
        _check_plan_args(op, plan, kernel_size, stride, padding, dilation, groups)
    _check_input(op, x, plan.out_channels, weight)
    if weight.nnz != plan.nnz:
        raise ValueError(f"{op}: weight has {weight.nnz} stored entries but the plan {plan.nnz}")
    cout = plan.in_channels
    bias = _check_bias(op, bias, cout, x)
    N, _, Hx, Wx = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (plan.kernel_size, plan.stride, plan.padding,
                                              plan.dilation)
    opad = _pair("output_padding", output_padding, 0, op)
    if output_size is not None:
        if not isinstance(output_size, (tuple, list, torch.Size)) or len(output_size) < 2:
            raise ValueError(f"{op}: output_size must be a sequence ending in (H, W), got {output_size!r}")
        opad = []
        for i, (size, k, s, p, d) in enumerate(((Hx, kh, sh, ph, dh), (Wx, kw, sw, pw, dw))):
            lo = conv_transpose_out_size(size, k, s, p, d, 0)
            want = int(output_size[-2 + i])
            if not lo <= want < lo + max(s, d):
                raise ValueError(f"{op}: output_size {tuple(output_size)} is not reachable: "
                                 f"size {i} must lie in [{lo}, {lo + max(s, d) - 1}]")
            opad.append(want - lo)
        opad = tuple(opad)
    for o, s, d, name in ((opad[0], sh, dh, "height"), (opad[1], sw, dw, "width")):
        if o >= s and o >= d:
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, got "
                             f"{opad} with stride {plan.stride} and dilation {plan.dilation}")
    Hy = conv_transpose_out_size(Hx, kh, sh, ph, dh, opad[0])
    Wy = conv_transpose_out_size(Wx, kw, sw, pw, dw, opad[1])
    if Hy < 1 or Wy < 1:
        raise ValueError(f"{op}: the output size {(Hy, Wy)} must be positive")
    route, name = resolve_route(op, route, backend, x.device, x.dtype)
    val = _values(weight, x)
    if route == "direct":
        y = _conv_t_direct(x, plan, val, Hy, Wy, name)
    else:
        y = _conv_t_im2col(x, plan, val, Hy, Wy, name)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def _conv_t_direct(x, plan: ConvPlan, val, Hy, Wy, backend):
    N, R, Hx, Wx = x.shape
    g = plan.geometry(Hy, Wy)
    S, Q, Ls, kmax = g["S"], g["Q"], g["Ls"], g["S"].kmax
    # x on the wide output grid of the conv from (Hy, Wy) (zeros in the extra columns/rows and
    # in the kmax-long lead), then the adjoint kernel straight into the source layout.
    buf = x.new_zeros(N, R, kmax + Ls)
    wide = buf[:, :, kmax:kmax + Q].view(N, R, g["Hout"], g["Wq"])
    wide[:, :, :Hx, :Wx] = x
    t_koff = None if S.koff is None else (kmax - S.koff[S.t_perm]).contiguous()
    t_val = val[S.t_perm]
    T = ShiftedStructure(S.t_rowptr, S.t_blk, t_koff, S.rowptr, S.blk, S.t_iperm, S.t_perm,
                         S.num_blocks, S.num_rows, kmax - S.kmin, 0)
    src = shifted_spmm(T, t_val, buf, Ls, None, backend)
    return plan.unbuild(src, Hy, Wy, g)


def _conv_t_im2col(x, plan: ConvPlan, val, Hy, Wy, backend):
    N, R, Hx, Wx = x.shape
    Hout, Wout = plan.out_size(Hy, Wy)
    if (Hout, Wout) != (Hx, Wx):
        x = F.pad(x, (0, Wout - Wx, 0, Hout - Hx))
    X = x.transpose(0, 1).reshape(R, N * Hout * Wout)
    plan.im2col_pattern.t()                            # cached once; with_values carries it
    A = plan.im2col_pattern.with_values(val)
    cols = spmm(A.t(), X, backend=backend)                    # (Cout * kh * kw, N * L)
    cols = cols.view(cols.shape[0], N, Hout * Wout).transpose(0, 1)
    return F.fold(cols, (Hy, Wy), plan.kernel_size, plan.dilation, plan.padding, plan.stride)
