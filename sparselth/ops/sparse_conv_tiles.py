"""The register-tiled direct sparse convolution (``sparselth::sparse_conv2d_kernel``): the
inference kernel of :func:`sparselth.ops.sparse_conv.sparse_conv2d` and of its transpose on CPU.

The kernel (``csrc/cpu/sparse_conv_tiles.h``) keeps a tile of output positions (``TH x TW`` of
``NI`` images, at most 8 vectors) in registers while the stored weights of one output channel
stream past, each weight reused across the tile; the tile's input window for a block of ``CB``
input channels is staged once per kernel column (aligned loads for every tap) in a scratch that
stays in L1 while every output channel visits it. Its entries are grouped by
(channel block, output channel) and name their input channel and tap by their offset in that
scratch; :class:`TiledConv` builds this layout once per weight structure and input size, and
:func:`sparse_conv2d_tiles_reference` is its pure-PyTorch oracle.

Inference only: gradients of a sparse convolution run on the shifted-window kernels
(:mod:`sparselth.ops.shifted`). Transposed convolutions run here too, split by output phase
(:func:`transposed_phases`): each phase of a stride-``s`` transposed convolution is a stride-1
convolution of the input with the phase's taps, flipped.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from . import backend as _backend
from ._common import register_kernel_fake
from .phase_interleave import phase_interleave

Tensor = torch.Tensor

VEC_BYTES = 64              # the tile heuristic's vector (AVX-512); narrower machines split it
MAX_VECS = 8                # accumulator vectors per tile
MAX_KW = 16                 # kernel columns the kernel stages
SCRATCH_BYTES = 40 * 1024   # channel blocks are sized to keep the staged window about in L1
ENTRIES_PER_VISIT = 40      # ... and long enough to pay for an output tile's load and store


def _r16(a: int) -> int:
    return (a + 15) // 16 * 16


def auto_tile(Ho: int, Wo: int, N: int, itemsize: int) -> Tuple[int, int, int]:
    """``(TH, TW, NI)``: ``MAX_VECS`` vectors of whole output rows (and whole images, several
    when they are small), or strips two vectors wide for outputs wider than that."""
    V = VEC_BYTES // itemsize
    P = MAX_VECS * V
    Ho, Wo, N = max(Ho, 1), max(Wo, 1), max(N, 1)
    if Wo <= P:
        TH = max(1, min(Ho, P // Wo))
        TH = -(-Ho // -(-Ho // TH))          # as many row tiles, evened out (14 rows: 7 + 7)
        NI = 1
        if TH == Ho:
            vi = -(-TH * Wo // V)
            while NI * 2 * vi <= MAX_VECS and NI * 2 <= N:
                NI *= 2
        return TH, Wo, NI
    return min(Ho, MAX_VECS // 2), 32, 1


def row_phases(KH: int, dy: int, sy: int) -> Tuple[List[int], List[int], int, int]:
    """Per tap row ky: its phase index and row shift (``ky * dy = shift * sy + phase``, phases
    numbered in order of first appearance), the number of phases and the largest shift."""
    rows: List[int] = []
    index, shift = [], []
    for ky in range(KH):
        o = ky * dy
        if o % sy not in rows:
            rows.append(o % sy)
        index.append(rows.index(o % sy))
        shift.append(o // sy)
    return index, shift, len(rows), max(shift)


def scratch_sizes(TH: int, TW: int, NI: int, reach: int) -> Tuple[int, int]:
    """``(IS, BS)``: scratch elements per (copy, image) and per copy."""
    IS = _r16(_r16(TH * TW) + reach * TW)
    return IS, NI * IS


# =============================================================================== reference
def sparse_conv2d_tiles_reference(x: Tensor, blkptr: Tensor, lo: Tensor, val: Tensor,
                                  bias: Optional[Tensor], out_channels: int, channel_block: int,
                                  kernel_size: Sequence[int], stride: Sequence[int],
                                  dilation: Sequence[int], padding: Sequence[int],
                                  output_size: Sequence[int], tile: Sequence[int]) -> Tensor:
    """Pure PyTorch: decode every entry's (input channel, tap) from its scratch offset, build
    the dense weight and run ``F.conv2d`` on the input padded (or cropped) to the geometry."""
    N, C, H, W = x.shape
    R, CB = out_channels, channel_block
    KH, KW = kernel_size
    (sy, sx), (dy, dx), (pt, pl), (Ho, Wo) = stride, dilation, padding, output_size
    TH, TW, NI = tile
    index, shift, PY, reach = row_phases(KH, dy, sy)
    IS, BS = scratch_sizes(TH, TW, NI, reach)
    nblk = max(1, -(-C // CB))
    lo = lo.long()
    counts = (blkptr[1:] - blkptr[:-1]).long()
    pair = torch.repeat_interleave(torch.arange(nblk * R, device=x.device), counts,
                                   output_size=lo.numel())
    blk, row = pair // R, pair % R
    copy, within = lo // BS, lo % BS
    c = blk * CB + copy // (KW * PY)
    kx = (copy // PY) % KW
    ky_of = {(p, s): ky for ky, (p, s) in enumerate(zip(index, shift))}
    key = (copy % PY) * (reach + 1) + within // TW
    table = torch.full((PY * (reach + 1),), -1, dtype=torch.long, device=x.device)
    for (p, s), ky in ky_of.items():
        table[p * (reach + 1) + s] = ky
    ky = table[key]
    weight = x.new_zeros(R, C, KH, KW)
    if lo.numel():
        weight.index_put_((row, c, ky, kx), val.to(x.dtype), accumulate=True)
    # pad so that output (Ho, Wo) reads rows y * sy + ky * dy - pt (zeros outside x)
    need_h = (Ho - 1) * sy + (KH - 1) * dy + 1 if Ho > 0 else 0
    need_w = (Wo - 1) * sx + (KW - 1) * dx + 1 if Wo > 0 else 0
    xp = F.pad(x, (pl, need_w - W - pl, pt, need_h - H - pt))
    out = F.conv2d(xp, weight, bias, (sy, sx), 0, (dy, dx)) if Ho and Wo and N else None
    if out is None:
        return x.new_zeros(N, R, Ho, Wo)
    return out[:, :, :Ho, :Wo].contiguous()


@register_kernel_fake("sparse_conv2d_kernel")
def _(x, blkptr, lo, val, bias, out_channels, channel_block, kernel_size, stride, dilation,
      padding, output_size, tile):
    return x.new_empty((x.shape[0], out_channels, output_size[0], output_size[1]))


def has_tiles_kernel(device: torch.device) -> bool:
    return _backend.has_kernel("sparse_conv2d", device, "cpp")


# =============================================================================== layouts
class TiledConv:
    """A sparse convolution's entries laid out for the tiled kernel, built once per weight
    structure; :meth:`__call__` runs it (layouts cached per input size).

    Args:
        row, chan, ky, kx: ``(nnz,)`` long tensors, each stored weight's output channel, input
            channel and tap; ``values[i]`` of a call belongs to entry ``i``.
        out_channels, in_channels, kernel_size, stride, dilation: the convolution's geometry
            (padding per call: it may depend on the output size, as for transposed phases).
        fan_in: input channels a row can read (``in_channels // groups``), for the density.
        index_dtype: dtype of the kernel's ``blkptr``.
    """

    def __init__(self, row: Tensor, chan: Tensor, ky: Tensor, kx: Tensor, out_channels: int,
                 in_channels: int, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                 dilation: Tuple[int, int], fan_in: int, index_dtype: torch.dtype):
        self.row, self.chan, self.ky, self.kx = row, chan, ky, kx
        self.R, self.C = out_channels, in_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.index_dtype = index_dtype
        KH, KW = kernel_size
        self.density = row.numel() / max(1, out_channels * fan_in * KH * KW)
        self._orders: Dict[int, Tuple[Tensor, Tensor]] = {}
        self._layouts: Dict[tuple, tuple] = {}
        self._by_call: Dict[tuple, tuple] = {}      # (Ho, Wo, N, itemsize) -> layout
        self._values: Dict[object, tuple] = {}

    @staticmethod
    def applies(kernel_size: Tuple[int, int]) -> bool:
        return kernel_size[1] <= MAX_KW

    def channel_block(self, tile: Tuple[int, int, int], itemsize: int) -> int:
        """Input channels per block: long visits (``ENTRIES_PER_VISIT`` entries of a row) unless
        the staged window would outgrow ``SCRATCH_BYTES``; never below 16 channels."""
        KH, KW = self.kernel_size
        _, _, PY, reach = row_phases(KH, self.dilation[0], self.stride[0])
        _, BS = scratch_sizes(*tile, reach)
        per_channel = KW * PY * BS * itemsize
        cap = max(4, SCRATCH_BYTES // per_channel)
        want = math.ceil(ENTRIES_PER_VISIT / max(KH * KW * self.density, 1e-9))
        return max(1, min(self.C, cap, max(16, want)))

    def _order(self, CB: int) -> Tuple[Tensor, Tensor]:
        """Entries sorted by (channel block, row, channel, tap) and the block pointer."""
        hit = self._orders.get(CB)
        if hit is None:
            KH, KW = self.kernel_size
            nblk = max(1, -(-self.C // CB))
            blk = self.chan // CB
            pair = blk * self.R + self.row
            key = (pair * self.C + self.chan) * (KH * KW) + self.ky * KW + self.kx
            perm = torch.argsort(key)
            blkptr = torch.zeros(nblk * self.R + 1, dtype=torch.long, device=self.row.device)
            torch.cumsum(torch.bincount(pair, minlength=nblk * self.R), 0, out=blkptr[1:])
            hit = self._orders[CB] = (perm, blkptr.to(self.index_dtype))
        return hit

    def layout(self, Ho: int, Wo: int, N: int, itemsize: int,
               tile: Optional[Tuple[int, int, int]] = None,
               channel_block: Optional[int] = None) -> tuple:
        """``(tile, CB, perm, blkptr, lo)`` for an ``Ho x Wo`` output of ``N`` images (tile
        and channel block chosen unless given)."""
        tile = tuple(tile) if tile is not None else auto_tile(Ho, Wo, N, itemsize)
        key = (Ho, Wo, tile, itemsize, channel_block)
        hit = self._layouts.get(key)
        if hit is None:
            CB = channel_block or self.channel_block(tile, itemsize)
            perm, blkptr = self._order(CB)
            KH, KW = self.kernel_size
            index, shift, PY, reach = row_phases(KH, self.dilation[0], self.stride[0])
            _, BS = scratch_sizes(*tile, reach)
            dev = self.row.device
            index_t = torch.tensor(index, device=dev)
            shift_t = torch.tensor(shift, device=dev)
            c, ky, kx = self.chan[perm], self.ky[perm], self.kx[perm]
            lo = (((c % CB) * KW + kx) * PY + index_t[ky]) * BS + shift_t[ky] * tile[1]
            if len(self._layouts) > 16:
                self._layouts.clear()
            hit = self._layouts[key] = (tile, CB, perm, blkptr, lo.to(torch.int32))
        return hit

    def _gathered(self, val: Tensor, perm: Tensor) -> Tensor:
        """``val[perm]``, cached while ``val`` is unchanged (its version counter) in eager mode."""
        if torch.compiler.is_compiling():
            return val[perm].contiguous()
        key = id(perm)
        hit = self._values.get(key)
        if (hit is not None and hit[0] is val and hit[1] == val._version
                and hit[2].dtype == val.dtype):
            return hit[2]
        out = val.detach()[perm].contiguous()
        self._values[key] = (val, val._version, out)
        return out

    def __call__(self, x: Tensor, val: Tensor, bias: Optional[Tensor],
                 padding: Tuple[int, int], output_size: Tuple[int, int]) -> Tensor:
        """``(N, R, Ho, Wo)``: reads ``x[n, c, y * sy + ky * dy - padding[0], ...]``."""
        N = x.shape[0]
        Ho, Wo = output_size
        key = (Ho, Wo, N, x.element_size())
        hit = self._by_call.get(key)
        if hit is None:
            if len(self._by_call) > 64:
                self._by_call.clear()
            hit = self._by_call[key] = self.layout(Ho, Wo, N, x.element_size())
        tile, CB, perm, blkptr, lo = hit
        return torch.ops.sparselth.sparse_conv2d_kernel(
            x.contiguous(), blkptr, lo, self._gathered(val, perm), bias, self.R, CB,
            list(self.kernel_size), list(self.stride), list(self.dilation), list(padding),
            [Ho, Wo], list(tile))


# =============================================================================== transposed
def _phase_taps(K: int, s: int, p: int, d: int, phi: int) -> Tuple[List[int], int, int]:
    """The taps of output phase ``phi`` of a transposed convolution along one dimension, as a
    stride-1 convolution: ``(taps, dilation, padding)`` where tap ``taps[j]`` of the original
    kernel becomes tap ``j`` (reads input ``y + j * dilation - padding`` for phase row ``y``)."""
    taps = [k for k in range(K) if (phi + p - k * d) % s == 0]
    if not taps:
        return [], 1, 0
    taps.sort(reverse=True)                          # increasing input offset
    a_min = (phi + p - taps[0] * d) // s
    step = d // math.gcd(s, d)
    return taps, step, -a_min


def transposed_phases(row: Tensor, chan: Tensor, ky: Tensor, kx: Tensor, out_channels: int,
                      in_channels: int, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                      padding: Tuple[int, int], dilation: Tuple[int, int], fan_in: int,
                      index_dtype: torch.dtype) -> List[tuple]:
    """A transposed convolution ``y[n, row, Y, X] += w * x[n, chan, (Y + p - ky * d) / s, ...]``
    as one stride-1 :class:`TiledConv` per output phase ``(phy, phx)``: a list of
    ``(phy, phx, conv or None, padding, entries)``, ``conv`` None for a phase without taps;
    ``entries`` index the values of the phase's entries."""
    (KH, KW), (sy, sx), (py, px), (dy, dx) = kernel_size, stride, padding, dilation
    out = []
    for phy in range(sy):
        ty, sdy, pty = _phase_taps(KH, sy, py, dy, phy)
        for phx in range(sx):
            tx, sdx, ptx = _phase_taps(KW, sx, px, dx, phx)
            if not ty or not tx:
                out.append((phy, phx, None, (0, 0), None))
                continue
            jy = torch.full((KH,), -1, dtype=torch.long, device=row.device)
            jx = torch.full((KW,), -1, dtype=torch.long, device=row.device)
            jy[ty] = torch.arange(len(ty), device=row.device)
            jx[tx] = torch.arange(len(tx), device=row.device)
            keep = ((jy[ky] >= 0) & (jx[kx] >= 0)).nonzero().flatten()
            conv = TiledConv(row[keep], chan[keep], jy[ky[keep]], jx[kx[keep]], out_channels,
                             in_channels, (len(ty), len(tx)), (1, 1), (sdy, sdx), fan_in,
                             index_dtype)
            out.append((phy, phx, conv, (pty, ptx), keep))
    return out


def _merged_taps(K: int, s: int, p: int, d: int) -> Optional[Tuple[List[int], List[int], int, int]]:
    """Every phase of one dimension in one window: per tap ``k``, its output phase and its
    row in a common stride-1 kernel (input offset ``a(k) = (phase + p - k * d) / s`` from the
    phase row), the window's dilation and padding; None when the phases' offsets do not lie on
    one grid (some dilations)."""
    step = d // math.gcd(s, d)
    phase = [(k * d - p) % s for k in range(K)]
    a = [(phase[k] + p - k * d) // s for k in range(K)]
    if len({v % step for v in a}) > 1:
        return None
    lo = min(a)
    return phase, [(v - lo) // step for v in a], step, -lo


def transposed_merged(row: Tensor, chan: Tensor, ky: Tensor, kx: Tensor, out_channels: int,
                      in_channels: int, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                      padding: Tuple[int, int], dilation: Tuple[int, int], fan_in: int,
                      index_dtype: torch.dtype) -> Optional[TiledConv]:
    """A stride-``s`` transposed convolution as ONE stride-1 :class:`TiledConv` whose output
    rows are (output phase, channel) pairs, ``row' = (phy * sx + phx) * out_channels + row``,
    over the union of the phases' windows: the input is staged once for all ``sy * sx``
    phases (per phase it would be staged ``sy * sx`` times). Its ``padding`` attribute is the
    window's. None where :func:`_merged_taps` finds no common grid."""
    (KH, KW), (sy, sx), (py, px), (dy, dx) = kernel_size, stride, padding, dilation
    my, mx = _merged_taps(KH, sy, py, dy), _merged_taps(KW, sx, px, dx)
    if my is None or mx is None:
        return None
    dev = row.device
    (phy, jy, sdy, pdy), (phx, jx, sdx, pdx) = my, mx
    t = lambda v: torch.tensor(v, dtype=torch.long, device=dev)  # noqa: E731
    phase = t(phy)[ky] * sx + t(phx)[kx]
    conv = TiledConv(phase * out_channels + row, chan, t(jy)[ky], t(jx)[kx],
                     sy * sx * out_channels, in_channels, (max(jy) + 1, max(jx) + 1), (1, 1),
                     (sdy, sdx), fan_in, index_dtype)
    conv.padding = (pdy, pdx)
    return conv


def conv_transpose_merged(conv: TiledConv, x: Tensor, val: Tensor, bias: Optional[Tensor],
                          out_channels: int, stride: Tuple[int, int],
                          output_size: Tuple[int, int]) -> Tensor:
    """Runs :func:`transposed_merged` and interleaves its phases into ``(N, R, Hy, Wy)``."""
    Hy, Wy = output_size
    sy, sx = stride
    Hm, Wm = -(-Hy // sy), -(-Wy // sx)
    b = None if bias is None else bias.repeat(sy * sx)
    z = conv(x, val, b, conv.padding, (Hm, Wm))
    return phase_interleave(z, (sy, sx), (Hy, Wy))


def conv_transpose_tiles(phases: List[tuple], x: Tensor, val: Tensor, bias: Optional[Tensor],
                         out_channels: int, stride: Tuple[int, int],
                         output_size: Tuple[int, int]) -> Tensor:
    """Runs the phases of :func:`transposed_phases` into the ``(N, R, Hy, Wy)`` output."""
    N = x.shape[0]
    Hy, Wy = output_size
    sy, sx = stride
    if sy == 1 and sx == 1:
        _, _, conv, pad, keep = phases[0]
        if conv is None:
            y = x.new_zeros(N, out_channels, Hy, Wy)
            return y if bias is None else y + bias.view(1, -1, 1, 1)
        return conv(x, _phase_values(conv, val, keep), bias, pad, (Hy, Wy))
    y = x.new_empty(N, out_channels, Hy, Wy)
    for phy, phx, conv, pad, keep in phases:
        Hp, Wp = -(-(Hy - phy) // sy), -(-(Wy - phx) // sx)
        if Hp <= 0 or Wp <= 0:
            continue
        view = y[:, :, phy::sy, phx::sx]
        if conv is None:
            view.copy_((bias if bias is not None else x.new_zeros(out_channels))
                       .view(1, -1, 1, 1).expand_as(view))
        else:
            view.copy_(conv(x, _phase_values(conv, val, keep), bias, pad, (Hp, Wp)))
    return y


def _phase_values(conv: TiledConv, val: Tensor, keep: Tensor) -> Tensor:
    """The phase's values in its entry order, ``val[keep]`` (cached with ``val``)."""
    if torch.compiler.is_compiling():
        return val[keep]
    hit = conv._values.get("phase")
    if hit is not None and hit[0] is val and hit[1] == val._version and hit[2].dtype == val.dtype:
        return hit[2]
    out = val.detach()[keep]
    conv._values["phase"] = (val, val._version, out)
    return out
