"""Sparse convolution: a CSR weight times the input, with no dense weight and (on the direct
route) no im2col copy.

Two routes compute the same thing:

* ``"direct"`` (backends ``cpp`` and ``reference``): the input is zero-padded and, for
  stride > 1, split into its stride phases, laid out on the output's *wide* grid (width
  ``Wout + reach``). Every stored weight ``(cout, cin, ky, kx)`` then reads one contiguous
  window of that buffer at a fixed shift, so the convolution is ::

      out[n, cout, q] = bias[cout] + sum_{e in row cout} val[e] * src[n, blk[e], koff[e] + q]

  (:func:`sparselth.ops.shifted.shifted_spmm`). The input gradient is the same kernel on the transposed structure
  (entries grouped by input block, negated shifts), the weight gradient a windowed dot product
  per stored weight (``shifted_sddmm``). A 3x3 conv with 256 channels on 32x32 images at
  batch 64 needs ~70 MB for the buffer where im2col needs 600 MB.
  For inference (no gradient wanted) on the ``cpp`` backend, the direct route runs the
  register-tiled kernel instead (:mod:`sparselth.ops.sparse_conv_tiles`): each stored weight
  reused across a register tile of output positions, the input window staged in L1 per block of
  input channels, transposed convolutions split by output phase; training keeps the shifted
  kernels and their gradients.
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
from ._common import check_csr, check_vector, check_weight_input
# The shifted kernel's names stay importable from here (sparse layers and older code use them).
from .shifted import BACKENDS as DIRECT_BACKENDS
from .shifted import (ShiftedStructure, shifted_sddmm_reference, shifted_spmm,  # noqa: F401
                      shifted_spmm_reference, shifted_spmm_t)
from .sparse_conv_tiles import (TiledConv, conv_transpose_merged, conv_transpose_tiles,
                                has_tiles_kernel, transposed_merged, transposed_phases)
from .spmm import spmm

Tensor = torch.Tensor
IntPair = Union[int, Sequence[int]]

ROUTES = ("auto", "direct", "im2col")


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
        self.im2col_pattern = CSR._trusted(weight.rowptr, (cin * kk + k).to(idx), None,
                                           (R, in_channels * kk))
        self._geometry: Dict[Tuple[int, int], dict] = {}
        # tiled (inference) kernel: every entry's output row, input channel and tap
        self._entries = (row, cin, k // kw, k % kw)
        self._index_dtype = idx
        self._tiled: Optional[TiledConv] = None
        self._tiled_t = None               # TiledConv (phases merged) or per-phase list

    def tiled(self) -> TiledConv:
        """The convolution's entries laid out for the tiled inference kernel (built once)."""
        if self._tiled is None:
            row, cin, ky, kx = self._entries
            self._tiled = TiledConv(row, cin, ky, kx, self.out_channels, self.in_channels,
                                    self.kernel_size, self.stride, self.dilation,
                                    self.in_channels // self.groups, self._index_dtype)
        return self._tiled

    def tiled_transposed(self) -> list:
        """The adjoint (transposed convolution) as one tiled stride-1 convolution per output
        phase (:func:`~sparselth.ops.sparse_conv_tiles.transposed_phases`; built once)."""
        if self._tiled_t is None:
            row, cin, ky, kx = self._entries
            args = (cin, row, ky, kx, self.in_channels, self.out_channels, self.kernel_size,
                    self.stride, self.padding, self.dilation, self.out_channels // self.groups,
                    self._index_dtype)
            merged = transposed_merged(*args) if self.stride != (1, 1) else None
            self._tiled_t = merged if merged is not None else transposed_phases(*args)
        return self._tiled_t

    def conv_transpose_tiled(self, x: Tensor, val: Tensor, bias: Optional[Tensor],
                             output_size: Tuple[int, int]) -> Tensor:
        """The adjoint on the tiled kernel: ``(N, out_channels, H, W)`` -> ``(N, in_channels,
        *output_size)`` (inference)."""
        t = self.tiled_transposed()
        if isinstance(t, TiledConv):
            return conv_transpose_merged(t, x, val, bias, self.in_channels, self.stride,
                                         output_size)
        return conv_transpose_tiles(t, x, val, bias, self.in_channels, self.stride, output_size)

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
def _check_call(op: str, x, weight: CSR, bias, plan: "ConvPlan",
                transposed: bool) -> Optional[Tensor]:
    """The input, weight and bias of a convolution (``transposed``: of its adjoint) with
    ``plan``; returns the bias."""
    cin, cout = plan.in_channels, plan.out_channels
    if transposed:
        cin, cout = cout, cin
    check_weight_input(op, x, weight)
    if x.dim() != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != cin:
        raise ValueError(f"{op}: input must have {cin} channels, got shape {tuple(x.shape)}")
    if weight.nnz != plan.nnz:
        raise ValueError(f"{op}: weight has {weight.nnz} stored entries but the plan {plan.nnz}")
    return check_vector(op, "bias", bias, cout, x)


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


def _has_direct_kernel(device: torch.device) -> bool:
    return _backend.has_kernel("shifted_spmm", device, "cpp")


def _use_tiles(backend: str, plan: "ConvPlan", x: Tensor, *operands) -> bool:
    """Whether the direct route runs the tiled inference kernel: the cpp backend, float32 or
    float64, a kernel at most 16 columns wide, and no gradient wanted."""
    if backend != "cpp" or x.dtype not in (torch.float32, torch.float64):
        return False
    if not (TiledConv.applies(plan.kernel_size) and has_tiles_kernel(x.device)):
        return False
    return not (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x,) + operands))


def tiled_inference(x, plan: "ConvPlan", val: Tensor, bias: Optional[Tensor], route: str,
                    backend: str, transposed: bool = False,
                    output_padding: Tuple[int, int] = (0, 0)) -> Optional[Tensor]:
    """The direct route's tiled inference for a module that keeps ``plan``, ``val`` and
    ``bias`` consistent (so only ``x`` is checked): the result, or None where the full
    :func:`sparse_conv2d` / :func:`sparse_conv_transpose2d` path must run (another route or
    backend, a gradient wanted, an input that needs its checks and errors)."""
    if (route == "im2col" or not isinstance(x, Tensor) or x.dim() != 4 or x.dtype != val.dtype
            or x.device != val.device or torch.compiler.is_compiling()):
        return None
    channels = plan.out_channels if transposed else plan.in_channels
    if x.shape[1] != channels or x.layout != torch.strided:
        return None
    if not _use_tiles(_backend.resolve(backend, x.device, x.dtype, "sparse_conv2d"), plan, x,
                      val, bias):
        return None
    H, W = x.shape[2], x.shape[3]
    if not transposed:
        Ho, Wo = plan.out_size(H, W)
        if Ho < 1 or Wo < 1:
            return None
        return plan.tiled()(x, val, bias, plan.padding, (Ho, Wo))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (plan.kernel_size, plan.stride, plan.padding,
                                              plan.dilation)
    if any(o >= s and o >= d for o, s, d in zip(output_padding, (sh, sw), (dh, dw))):
        return None
    Hy = conv_transpose_out_size(H, kh, sh, ph, dh, output_padding[0])
    Wy = conv_transpose_out_size(W, kw, sw, pw, dw, output_padding[1])
    if Hy < 1 or Wy < 1:
        return None
    return plan.conv_transpose_tiled(x, val, bias, (Hy, Wy))


def resolve_route(op: str, route: str, backend: str, device: torch.device,
                  dtype: torch.dtype) -> Tuple[str, str]:
    """``(route, backend)`` for a sparse conv: ``direct`` on ``cpp``/``reference``, ``im2col``
    on any spmm backend; ``auto`` picks ``direct`` where the C++ kernel runs, else ``im2col``."""
    if route not in ROUTES:
        raise ValueError(f"{op}: route must be one of {ROUTES}, got {route!r}")
    name = _backend.resolve(backend, device, dtype, op)
    if route == "auto":
        route = "direct" if name == "cpp" and _has_direct_kernel(device) else "im2col"
    if route == "direct":
        if name not in DIRECT_BACKENDS:
            raise ValueError(f"{op}: route 'direct' runs on backends {DIRECT_BACKENDS}, got "
                             f"{name!r} (use route='im2col')")
        if name == "cpp" and not _has_direct_kernel(device):
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
    bias = _check_call(op, x, weight, bias, plan, transposed=False)
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
    if _use_tiles(backend, plan, x, val, bias):
        return plan.tiled()(x, val, bias, plan.padding, plan.out_size(H, W))
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
    bias = _check_call(op, x, weight, bias, plan, transposed=True)
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
    if route == "direct" and _use_tiles(name, plan, x, val, bias):
        return plan.conv_transpose_tiled(x, val, bias, (Hy, Wy))
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
    T, t_val = S.transposed(val)
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
