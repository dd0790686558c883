"""``phase_interleave``: the output phases of a strided transposed convolution, merged.

A stride-``(sy, sx)`` transposed convolution runs as ONE stride-1 convolution whose output
rows are (phase, channel) pairs (:func:`sparselth.ops.sparse_conv_tiles.transposed_merged`);
this op places phase ``(py, px)`` of channel ``r`` at rows ``py::sy`` and columns ``px::sx``:
``out[n, r, i * sy + py, j * sx + px] = z[n, (py * sx + px) * R + r, i, j]``. On CPU the C++
kernel writes each output plane once, row by row (a strided ``copy_`` per phase, or one
permuted copy, runs at a fraction of the copy bandwidth); elsewhere, and where gradients are
recorded, the reference (one permuted copy) runs.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch

from . import backend as _backend
from ._common import register_kernel_fake

Tensor = torch.Tensor


def _check(z, stride: Sequence[int], output_size: Sequence[int]) -> Tuple[int, int, int, int]:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"phase_interleave: z must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 4:
        raise ValueError(f"phase_interleave: z must be 4-D (N, sy * sx * R, Hm, Wm), got shape "
                         f"{tuple(z.shape)}")
    if len(stride) != 2 or min(stride) < 1:
        raise ValueError(f"phase_interleave: stride must be two positive ints, got {stride}")
    if len(output_size) != 2 or min(output_size) < 0:
        raise ValueError(f"phase_interleave: output_size must be two non-negative ints, got "
                         f"{output_size}")
    (sy, sx), (Hy, Wy) = stride, output_size
    if z.shape[1] % (sy * sx):
        raise ValueError(f"phase_interleave: z's channels ({z.shape[1]}) must be a multiple of "
                         f"sy * sx = {sy * sx}")
    if z.shape[2] < -(-Hy // sy) or z.shape[3] < -(-Wy // sx):
        raise ValueError(f"phase_interleave: z's {z.shape[2]}x{z.shape[3]} planes are too small "
                         f"for a {Hy}x{Wy} output at stride {tuple(stride)}")
    return sy, sx, Hy, Wy


def phase_interleave_reference(z: Tensor, stride: Sequence[int],
                               output_size: Sequence[int]) -> Tensor:
    """Pure-PyTorch phase interleave (a permuted copy, then the crop): the oracle."""
    sy, sx, Hy, Wy = _check(z, stride, output_size)
    N, RP, _, _ = z.shape
    R = RP // (sy * sx)
    Hm, Wm = -(-Hy // sy), -(-Wy // sx)
    z = z[:, :, :Hm, :Wm].reshape(N, sy, sx, R, Hm, Wm)
    y = z.permute(0, 3, 4, 1, 5, 2).reshape(N, R, Hm * sy, Wm * sx)
    return y[:, :, :Hy, :Wy].contiguous()


@register_kernel_fake("phase_interleave_kernel")
def _(z, stride, output_size):
    return z.new_empty((z.shape[0], z.shape[1] // (stride[0] * stride[1]), output_size[0],
                        output_size[1]))


def phase_interleave(z: Tensor, stride: Sequence[int], output_size: Sequence[int]) -> Tensor:
    """``(N, R, Hy, Wy)`` from the ``(N, sy * sx * R, Hm, Wm)`` phases ``z`` (see the module)."""
    sy, sx, Hy, Wy = _check(z, stride, output_size)
    if (z.dtype in (torch.float32, torch.float64)
            and _backend.has_kernel("phase_interleave", z.device, "cpp")
            and not (z.requires_grad and torch.is_grad_enabled())):
        return torch.ops.sparselth.phase_interleave_kernel(z, [sy, sx], [Hy, Wy])
    return phase_interleave_reference(z, stride, output_size)
