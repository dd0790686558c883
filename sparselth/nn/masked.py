"""Training-time masked layers: a dense weight with a 0/1 mask buffer, for finding tickets.

The mask is non-destructive: the dense ``weight`` keeps every value (rewinding can restore
them), and the forward pass multiplies by ``weight_mask`` on the fly, so pruned weights neither
contribute nor receive gradient (``d weight = d (weight * mask) * mask``). The cost is one
elementwise product over the weight per step, small next to the layer's matmul.
``apply_mask_()`` bakes the zeros in; ``to_sparse()`` returns the deploy-time sparse layer.
The buffer is named ``weight_mask`` like ``torch.nn.utils.prune``'s and ``sparselth.prune``'s.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..sparse.weights import weight_mask

Tensor = torch.Tensor

__all__ = ["MaskedLinear", "MaskedConv2d", "MaskedConvTranspose2d"]


class _Masked:
    """Mask handling shared by the masked layers (mixed into the ``nn`` layer classes)."""

    # the dense layer a masked layer derives from, its constructor's arguments (read from a
    # dense instance) and its deploy-time sparse counterpart in sparselth.nn.sparse
    _dense_type: type = nn.Module
    _dense_args: tuple = ()
    _sparse_name: str = ""

    def _init_mask(self, mask: Optional[Tensor]) -> None:
        w = self.weight
        m = torch.ones_like(w, dtype=torch.bool) if mask is None else weight_mask(
            w, mask.to(w.device), type(self).__name__)
        self.register_buffer("weight_mask", m.to(w.dtype))

    def set_mask(self, mask: Tensor) -> None:
        """Replace the mask (bool or 0/1, the weight's shape)."""
        m = weight_mask(self.weight, mask.to(self.weight.device), f"{type(self).__name__}.set_mask")
        self.weight_mask.copy_(m.to(self.weight_mask.dtype))

    def masked_weight(self) -> Tensor:
        return self.weight * self.weight_mask

    @torch.no_grad()
    def apply_mask_(self):
        """Zero the pruned weights in place (keeps the mask); returns ``self``."""
        self.weight.mul_(self.weight_mask)
        return self

    @property
    def sparsity(self) -> float:
        return 1.0 - float(self.weight_mask.sum()) / max(self.weight_mask.numel(), 1)

    @classmethod
    def from_dense(cls, module: nn.Module, mask: Optional[Tensor] = None):
        """Copy of ``module`` with ``mask`` (``None``: its ``weight_mask``, else all ones)."""
        if not isinstance(module, cls._dense_type):
            raise TypeError(f"{cls.__name__}.from_dense: module must be an "
                            f"nn.{cls._dense_type.__name__}, got {type(module).__name__}")
        args = {a: getattr(module, a) for a in cls._dense_args}
        new = cls(**args, bias=module.bias is not None, device=module.weight.device,
                  dtype=module.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(module.weight)
            if module.bias is not None:
                new.bias.copy_(module.bias)
        new._init_mask(getattr(module, "weight_mask", None) if mask is None else mask)
        return new

    def to_sparse(self, **kwargs):
        """The deploy-time sparse layer of :mod:`sparselth.nn.sparse` with the same outputs
        (``kwargs`` go to its ``from_dense``)."""
        from . import sparse

        return getattr(sparse, self._sparse_name).from_dense(self, self.weight_mask, **kwargs)


class MaskedLinear(_Masked, nn.Linear):
    """``nn.Linear`` computing ``F.linear(x, weight * weight_mask, bias)``.

    Example::

        >>> layer = MaskedLinear.from_dense(nn.Linear(784, 300), mask)
        >>> deploy = layer.to_sparse()          # SparseLinear with the same outputs
    """

    _dense_type, _sparse_name = nn.Linear, "SparseLinear"
    _dense_args = ("in_features", "out_features")

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 mask: Optional[Tensor] = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_mask(mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedConv2d(_Masked, nn.Conv2d):
    """``nn.Conv2d`` convolving with ``weight * weight_mask`` (all ``nn.Conv2d`` options);
    ``to_sparse()`` gives a :class:`~sparselth.nn.SparseConv2d`."""

    _dense_type, _sparse_name = nn.Conv2d, "SparseConv2d"
    _dense_args = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                   "groups", "padding_mode")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 mask: Optional[Tensor] = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_mask(mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class MaskedConvTranspose2d(_Masked, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with ``weight * weight_mask`` (GAN generators); ``to_sparse()``
    gives a :class:`~sparselth.nn.SparseConvTranspose2d`."""

    _dense_type, _sparse_name = nn.ConvTranspose2d, "SparseConvTranspose2d"
    _dense_args = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                   "output_padding", "groups", "dilation")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 mask: Optional[Tensor] = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         groups, bias, dilation, device=device, dtype=dtype)
        self._init_mask(mask)

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        output_padding = self._output_padding(x, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(x, self.masked_weight(), self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)
