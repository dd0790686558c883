"""Deploy-time layers on dense kernels: a pruned layer made physically smaller.

* :class:`ChannelPrunedLinear`, :class:`ChannelPrunedConv2d`, :class:`ChannelPrunedConvTranspose2d`:
  a dense layer over the live input/output channels (best for channel-structured masks).
* :class:`BlockSparseLinear`: block-sparse (BSR-like) weight.
* :class:`SemiStructuredLinear`: 2:4 sparse tensor cores (NVIDIA GPUs, compute capability >= 8).

Like the CSR layers of :mod:`sparselth.nn.sparse`, each is built with ``from_dense(module,
mask=None)`` and computes what the masked dense layer computes; a loaded state dict's index
buffers are checked (``ValueError`` naming the entry) before anything is copied.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..sparse.weights import BlockSparse, ChannelPruned, check_channel_index, to_semi_structured
from .sparse import _check_module, _conv_padding, _incoming, _module_mask, _pair

Tensor = torch.Tensor

__all__ = ["ChannelPrunedLinear", "ChannelPrunedConv2d", "ChannelPrunedConvTranspose2d",
           "BlockSparseLinear", "SemiStructuredLinear"]


# ------------------------------------------------------------------------------- channel-pruned
class _ChannelPruned(nn.Module):
    """Shared by the channel-pruned layers: the kept weight block and where it belongs.

    ``out_index``/``in_index`` list the layer's kept output/input channels. The stored
    ``weight`` is the block of the dense weight at those channels (dims ``(out, in)``; for a
    transposed convolution ``(in, out)``, as in ``nn.ConvTranspose2d``)."""

    _transposed = False

    def _init_cp(self, cp: ChannelPruned, bias: Optional[Tensor], ndim: int) -> None:
        if len(cp.shape) != ndim:
            raise ValueError(f"{type(self).__name__}: the weight must be {ndim}-D, got {cp.shape}")
        rows, cols = cp.out_index, cp.in_index            # the weight's dims 0 and 1
        out_index, in_index = (cols, rows) if self._transposed else (rows, cols)
        self.register_buffer("out_index", out_index.clone())
        self.register_buffer("in_index", in_index.clone())
        self.register_buffer("block_mask", None if cp.block_mask is None
                             else cp.block_mask.to(cp.weight.dtype))
        self.weight = nn.Parameter(cp.weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.weight_shape = cp.shape
        num_out, num_in = (cp.shape[1], cp.shape[0]) if self._transposed else cp.shape[:2]
        self.num_out = num_out
        self.all_out = out_index.numel() == num_out
        self.all_in = in_index.numel() == num_in
        if ndim == 4:
            self.out_channels, self.in_channels = num_out, num_in
            self.kernel_size = tuple(cp.shape[2:])

    def _weight(self) -> Tensor:
        return self.weight if self.block_mask is None else self.weight * self.block_mask

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The channel indices select and scatter whole channels: check them before copying.
        op = f"{type(self).__name__}.load_state_dict"
        weight = _incoming(self, state_dict, prefix, "weight")
        out_len = in_len = None
        if isinstance(weight, Tensor) and weight.dim() >= 2:
            rows, cols = weight.shape[0], weight.shape[1]
            out_len, in_len = (cols, rows) if self._transposed else (rows, cols)
        num_in = self.weight_shape[0] if self._transposed else self.weight_shape[1]
        for name, length, bound in (("out_index", out_len, self.num_out),
                                    ("in_index", in_len, num_in)):
            check_channel_index(op, prefix + name, _incoming(self, state_dict, prefix, name), length,
                         bound)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self.all_out = self.out_index.numel() == self.num_out
        self.all_in = self.in_index.numel() == num_in

    def _on_kept(self, x: Tensor, dim: int, op) -> Tensor:
        """``op(x_kept, weight, bias)`` on the kept input channels of ``x`` (channels on
        ``dim``); kept outputs go back into the full output, pruned ones hold only their bias."""
        xs = x if self.all_in else x.index_select(dim, self.in_index)
        if self.all_out:
            return op(xs, self._weight(), self.bias)
        ys = op(xs, self._weight(), None)
        shape = list(ys.shape)
        shape[dim] = self.num_out
        y = ys.new_zeros(shape).index_copy(dim, self.out_index, ys)
        if self.bias is not None:
            view = [1] * len(shape)
            view[dim] = -1
            y = y + self.bias.view(view)
        return y

    def _check_input(self, x: Tensor) -> None:
        ok = x.dim() == 4 and x.shape[1] == self.in_channels
        if not ok:
            raise ValueError(f"{type(self).__name__}: input must be (N, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")

    @property
    def density(self) -> float:
        return self.weight.numel() / max(math.prod(self.weight_shape), 1)

    def dense_weight(self) -> Tensor:
        cp = ChannelPruned.__new__(ChannelPruned)
        cp.shape = self.weight_shape
        rows, cols = self.out_index, self.in_index
        cp.out_index, cp.in_index = (cols, rows) if self._transposed else (rows, cols)
        cp.weight = self._weight().detach()
        return cp.to_dense()

    def _channels_repr(self) -> str:
        return (f"{self.in_channels} (kept {self.in_index.numel()}), {self.out_channels} (kept "
                f"{self.out_index.numel()}), kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class ChannelPrunedLinear(_ChannelPruned):
    """A linear layer reduced to its live input features and output features (physically
    smaller dense weight); pruned outputs give their bias. Exact for any mask.

    Example::

        >>> layer = ChannelPrunedLinear.from_dense(linear, mask)   # mask zeroes whole rows/cols
    """

    def __init__(self, cp: ChannelPruned, bias: Optional[Tensor] = None):
        super().__init__()
        self._init_cp(cp, bias, 2)
        self.out_features, self.in_features = cp.shape

    @classmethod
    def from_dense(cls, module: nn.Linear, mask: Optional[Tensor] = None) -> "ChannelPrunedLinear":
        _check_module("ChannelPrunedLinear.from_dense", module, nn.Linear)
        return cls(ChannelPruned(module.weight, _module_mask(module, mask)), module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"ChannelPrunedLinear: input must have {self.in_features} features, "
                             f"got shape {tuple(x.shape)}")
        return self._on_kept(x, x.dim() - 1, F.linear)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features} (kept {self.in_index.numel()}), out_features="
                f"{self.out_features} (kept {self.out_index.numel()}), bias={self.bias is not None}")


class ChannelPrunedConv2d(_ChannelPruned):
    """A conv layer reduced to its live input and output channels (``groups == 1``); pruned
    output channels give their bias. Exact for any mask; padding modes as ``nn.Conv2d``."""

    def __init__(self, cp: ChannelPruned, bias: Optional[Tensor] = None, stride=1, padding=0,
                 dilation=1, padding_mode: str = "zeros"):
        super().__init__()
        self._init_cp(cp, bias, 4)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding, self.padding_mode = padding, padding_mode
        self._conv_pad, self._pre_pad, self._pre_mode = _conv_padding(
            padding, self.kernel_size, self.dilation, padding_mode)

    @classmethod
    def from_dense(cls, module: nn.Conv2d, mask: Optional[Tensor] = None) -> "ChannelPrunedConv2d":
        _check_module("ChannelPrunedConv2d.from_dense", module, nn.Conv2d)
        if module.groups != 1:
            raise ValueError(f"ChannelPrunedConv2d.from_dense: groups must be 1, got {module.groups}")
        return cls(ChannelPruned(module.weight, _module_mask(module, mask)), module.bias,
                   module.stride, module.padding, module.dilation, module.padding_mode)

    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self._conv_pad, self.dilation)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self._pre_pad is not None:
            x = F.pad(x, self._pre_pad, mode=self._pre_mode)
        return self._on_kept(x, 1, self._conv)

    def extra_repr(self) -> str:
        return self._channels_repr()


class ChannelPrunedConvTranspose2d(_ChannelPruned):
    """A transposed conv layer reduced to its live input and output channels (``groups == 1``);
    pruned output channels give their bias. Exact for any mask."""

    _transposed = True

    def __init__(self, cp: ChannelPruned, bias: Optional[Tensor] = None, stride=1, padding=0,
                 output_padding=0, dilation=1):
        super().__init__()
        self._init_cp(cp, bias, 4)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.output_padding, self.dilation = _pair(output_padding), _pair(dilation)

    @classmethod
    def from_dense(cls, module: nn.ConvTranspose2d,
                   mask: Optional[Tensor] = None) -> "ChannelPrunedConvTranspose2d":
        _check_module("ChannelPrunedConvTranspose2d.from_dense", module, nn.ConvTranspose2d)
        if module.groups != 1:
            raise ValueError(f"ChannelPrunedConvTranspose2d.from_dense: groups must be 1, got "
                             f"{module.groups}")
        return cls(ChannelPruned(module.weight, _module_mask(module, mask)), module.bias,
                   module.stride, module.padding, module.output_padding, module.dilation)

    def forward(self, x: Tensor, output_size: Optional[Sequence[int]] = None) -> Tensor:
        self._check_input(x)
        # nn.ConvTranspose2d's own rule for output_size (it reads only the attributes set above)
        output_padding = nn.ConvTranspose2d._output_padding(
            self, x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)

        def deconv(xs: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
            return F.conv_transpose2d(xs, weight, bias, self.stride, self.padding,
                                      output_padding, 1, self.dilation)

        return self._on_kept(x, 1, deconv)

    def extra_repr(self) -> str:
        return self._channels_repr() + f", output_padding={self.output_padding}"


# ------------------------------------------------------------------------------- block / 2:4
class BlockSparseLinear(nn.Module):
    """A linear layer whose weight is stored block-sparse (:class:`~sparselth.sparse.weights.BlockSparse`);
    the stored blocks are the trainable parameter ``blocks``."""

    def __init__(self, bsr: BlockSparse, bias: Optional[Tensor] = None):
        super().__init__()
        self.out_features, self.in_features = bsr.shape
        self.block = bsr.block
        self.register_buffer("rowptr", bsr.rowptr.clone())
        self.register_buffer("col", bsr.col.clone())
        self.blocks = nn.Parameter(bsr.blocks.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @classmethod
    def from_dense(cls, module: nn.Linear, mask: Optional[Tensor] = None,
                   block: Sequence[int] = (4, 4)) -> "BlockSparseLinear":
        _check_module("BlockSparseLinear.from_dense", module, nn.Linear)
        return cls(BlockSparse.from_dense(module.weight, _module_mask(module, mask), block),
                   module.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Check the incoming block structure before anything is copied.
        names = ("blocks", "rowptr", "col")
        BlockSparse.check_parts(f"{type(self).__name__}.load_state_dict",
                                *(_incoming(self, state_dict, prefix, k) for k in names),
                                (self.out_features, self.in_features), self.block,
                                tuple(prefix + k for k in names))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _bsr(self) -> BlockSparse:
        return BlockSparse._trusted(self.blocks, self.rowptr, self.col,
                                    (self.out_features, self.in_features), self.block)

    def forward(self, x: Tensor) -> Tensor:
        return self._bsr().linear(x, self.bias, self.blocks)

    def dense_weight(self) -> Tensor:
        return self._bsr().to_dense().detach()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"block={self.block}, blocks={self.blocks.shape[0]}")


class SemiStructuredLinear(nn.Module):
    """A linear layer on 2:4 sparse tensor cores (``torch.sparse.to_sparse_semi_structured``).
    Needs an NVIDIA GPU of compute capability >= 8.0 and a 2:4 mask (``RuntimeError`` /
    ``ValueError`` otherwise); inference only (the weight is not trainable)."""

    def __init__(self, weight: Tensor, mask: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(to_semi_structured(weight, mask), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=False)

    @classmethod
    def from_dense(cls, module: nn.Linear, mask: Optional[Tensor] = None) -> "SemiStructuredLinear":
        _check_module("SemiStructuredLinear.from_dense", module, nn.Linear)
        return cls(module.weight, _module_mask(module, mask), module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)
