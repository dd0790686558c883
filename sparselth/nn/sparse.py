"""Deploy-time sparse layers: a pruned layer stored in a sparse format and run on sparse kernels.

Every module is built from a dense layer and its mask with ``from_dense(module, mask=None)``
(``mask=None`` uses the module's ``weight_mask`` buffer when it has one, else the non-zeros of
its weight) and computes exactly what the masked dense layer computes:

* :class:`SparseLinear`, :class:`SparseConv2d`, :class:`SparseConvTranspose2d`: CSR weight
  (``rowptr``/``col`` buffers, stored values as the trainable parameter ``values``), run by
  :mod:`sparselth.ops.sparse_linear` / :mod:`sparselth.ops.sparse_conv`; gradients reach the
  input, the stored values and the bias, so a compiled ticket can be fine-tuned.
* :class:`ChannelPrunedLinear`, :class:`ChannelPrunedConv2d`, :class:`ChannelPrunedConvTranspose2d`:
  a physically smaller dense layer over the live input/output channels (dense kernels; best for
  channel-structured masks).
* :class:`BlockSparseLinear`: block-sparse (BSR-like) weight.
* :class:`SemiStructuredLinear`: 2:4 sparse tensor cores (NVIDIA GPUs, compute capability >= 8).

(The last three groups are defined in :mod:`sparselth.nn.structured` and offered here too.)
Index buffers (``rowptr``, ``col``, channel indices) are checked when a state dict is loaded,
before anything is copied (a ``ValueError`` names the entry), and a CSR layer checks its pattern
again whenever its buffers were replaced or changed in place, so no kernel reads an unchecked
structure.

``route``/``backend`` attributes pick the kernel (``"auto"`` by default); ``sparselth.compile``
builds its routes from these modules (:mod:`sparselth.deploy.routes`) and times them per layer.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import backend as _backend
from ..ops.shifted import ShiftedStructure
from ..ops.sparse_conv import ConvPlan, sparse_conv2d, sparse_conv_transpose2d, tiled_inference
from ..ops.sparse_linear import LinearPlan, linear_inference, sparse_linear
from ..sparse.csr import CSR, check_structure
from ..sparse.weights import csr_from_weight, csr_to_weight

Tensor = torch.Tensor
_KERNEL_DTYPES = (torch.float32, torch.float64)

__all__ = ["SparseLinear", "SparseConv2d", "SparseConvTranspose2d", "ChannelPrunedLinear",
           "ChannelPrunedConv2d", "ChannelPrunedConvTranspose2d", "BlockSparseLinear",
           "SemiStructuredLinear"]


def _module_mask(module: nn.Module, mask: Optional[Tensor]) -> Optional[Tensor]:
    if mask is None:
        mask = getattr(module, "weight_mask", None)
    return mask


def _check_module(op: str, module, kind) -> None:
    if not isinstance(module, kind):
        raise TypeError(f"{op}: module must be an nn.{kind.__name__}, got {type(module).__name__}")


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(t) for t in v)


def _tensor_version(t: Tensor) -> int:
    """``t``'s in-place modification counter (-1 for an inference tensor, which has none and
    is then compared by identity only): a cached, validated structure is rebuilt and checked
    again when its buffers change."""
    try:
        return t._version
    except RuntimeError:
        return -1


def _incoming(module: nn.Module, state_dict, prefix: str, name: str):
    """The tensor ``load_state_dict`` will put in ``name``: the state dict's, else the current."""
    t = state_dict.get(prefix + name)
    return t if isinstance(t, Tensor) else getattr(module, name)



class _CSRWeight(nn.Module):
    """Shared storage of the CSR modules: ``rowptr``/``col`` buffers, ``values`` parameter."""

    def _init_csr(self, weight: CSR, weight_shape: Sequence[int], bias: Optional[Tensor]) -> None:
        """Store ``weight`` (the CSR of the weight of ``weight_shape`` flattened to 2-D) and
        ``bias``, after checking that they fit."""
        name = type(self).__name__
        if not isinstance(weight, CSR):
            raise TypeError(f"{name}: weight must be a sparselth.CSR, got {type(weight).__name__}")
        flat = (int(weight_shape[0]), math.prod(int(s) for s in weight_shape[1:]))
        if tuple(weight.shape) != flat:
            raise ValueError(f"{name}: weight must have shape {flat}, got {tuple(weight.shape)}")
        self.register_buffer("rowptr", weight.rowptr.clone())
        self.register_buffer("col", weight.col.clone())
        self.values = nn.Parameter(weight.values().detach().clone())
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self._cache = None

    # cached pattern (validated once, transpose computed once) -----------------------------
    def _clear_cache(self) -> None:
        self._cache = None

    def _apply(self, fn, recurse=True):
        self._clear_cache()
        return super()._apply(fn, recurse)

    def _pattern(self) -> CSR:
        """The stored pattern, checked (O(nnz)) whenever ``rowptr``/``col`` were replaced or
        changed in place since the last check, so the kernels never see an unchecked one.
        Traced (``torch.compile``, ``torch.export``) it is neither checked (data-dependent)
        nor cached: the eager calls check it."""
        c, buffers = self._cache, self._buffers
        rowptr, col = buffers["rowptr"], buffers["col"]
        traced = torch.compiler.is_compiling()
        if traced or (c is None or c["rowptr"] is not rowptr or c["col"] is not col
                      or (c["version"][0] >= 0
                          and c["version"] != (rowptr._version, col._version))):
            if traced:
                A = CSR._trusted(rowptr, col, None, self._flat_shape())
            else:
                self._clear_cache()
                A = CSR(rowptr, col, None, self._flat_shape())
            if self.values.numel() != A.nnz:
                raise ValueError(f"{type(self).__name__}: values has {self.values.numel()} "
                                 f"entries but the structure stores {A.nnz}")
            if traced:   # torch.compile / torch.export: nothing cached, no data-dependent shapes
                return A
            A.t()
            c = self._cache = {"rowptr": rowptr, "col": col, "A": A,
                               "version": (_tensor_version(rowptr), _tensor_version(col))}
        return c["A"]

    def _flat_shape(self) -> Tuple[int, int]:
        return (self.weight_shape[0], math.prod(self.weight_shape[1:]))

    def weight_csr(self, with_transpose: bool = True) -> CSR:
        """The weight as a CSR whose values are the ``values`` parameter (grad flows); when
        training, with the cached transpose an ``spmm`` backward needs."""
        A = self._pattern()
        if with_transpose and torch.is_grad_enabled() and self.values.requires_grad:
            return A.with_values(self.values)          # carries the cached transpose
        return CSR._trusted(A.rowptr, A.col, self.values, A.shape)

    @property
    def nnz(self) -> int:
        return self.values.numel()

    @property
    def density(self) -> float:
        total = 1
        for s in self.weight_shape:
            total *= s
        return self.nnz / max(total, 1)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def dense_weight(self) -> Tensor:
        """The dense weight (zeros where pruned), in the original layer's shape."""
        A = self._pattern()
        return csr_to_weight(CSR._trusted(A.rowptr, A.col, self.values.detach(), A.shape),
                             self.weight_shape)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Check the incoming structure before anything is copied: a ValueError names the entry.
        op = f"{type(self).__name__}.load_state_dict"
        rowptr, col = (_incoming(self, state_dict, prefix, n) for n in ("rowptr", "col"))
        check_structure(op, rowptr, col, None, self._flat_shape(),
                        (f"{prefix}rowptr", f"{prefix}col", ""))
        values = _incoming(self, state_dict, prefix, "values")
        if isinstance(values, Tensor) and (values.dim() != 1 or values.numel() != col.numel()):
            raise ValueError(f"{op}: {prefix}values must have shape ({col.numel()},) (one per "
                             f"stored entry of {prefix}col), got {tuple(values.shape)}")
        # A ticket with another sparsity has other nnz: take the incoming sizes.
        for name in ("rowptr", "col"):
            t = state_dict.get(prefix + name)
            buf = getattr(self, name)
            if isinstance(t, Tensor) and (t.shape != buf.shape or t.dtype != buf.dtype):
                setattr(self, name, torch.empty(t.shape, dtype=t.dtype, device=buf.device))
        t = state_dict.get(prefix + "values")
        if isinstance(t, Tensor) and t.shape != self.values.shape:
            self.values = nn.Parameter(torch.empty(t.shape, dtype=self.values.dtype,
                                                   device=self.values.device),
                                       requires_grad=self.values.requires_grad)
        self._clear_cache()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)



def _linear_kernel_built() -> bool:
    """Whether the C++ sparse linear kernel is built (asked once)."""
    global _LINEAR_KERNEL
    if _LINEAR_KERNEL is None:
        _LINEAR_KERNEL = _backend.has_kernel("sparse_linear", "cpu", "cpp")
    return _LINEAR_KERNEL


_LINEAR_KERNEL: Optional[bool] = None


class SparseLinear(_CSRWeight):
    """``y = x @ W^T + b`` with a CSR weight (see :func:`sparselth.ops.sparse_linear.sparse_linear`).

    When no gradient is needed (``torch.no_grad``/``inference_mode``, or nothing requires grad)
    and the backend is ``cpp``, it runs the inference kernel with a cached
    :class:`~sparselth.ops.sparse_linear.LinearPlan` (int16 columns, the weight stacked by
    column panels: about one more copy of the columns and values); otherwise the autograd route.

    Args:
        in_features, out_features: as ``nn.Linear``.
        weight: ``(out_features, in_features)`` :class:`~sparselth.CSR`.
        bias: optional ``(out_features,)`` tensor (becomes a parameter).
        backend: kernel backend, ``"auto"`` by default.
        relu: apply ReLU to the output (``sparselth.compile`` sets it when a ``nn.ReLU``
            follows the layer in a ``nn.Sequential``: the inference kernel then applies it in
            its store instead of a separate pass over the output).

    Pruned weights are absent, not zero: output ``o`` sums only the products of its kept
    weights, ``y[..., o] = b[o] + sum over kept (o, i) of W[o, i] * x[..., i]``. For finite
    inputs this equals ``F.linear(x, W * mask, b)``; a NaN or inf in input feature ``i``
    reaches only the outputs that keep a weight on ``i`` (where the dense product, with
    ``0 * nan = nan``, would spread it to every output), and a feature whose weights are all
    pruned is never read.

    Example::

        >>> layer = SparseLinear.from_dense(nn.Linear(1024, 1024), mask)
        >>> y = layer(x)                      # == F.linear(x, W * mask, b) for finite x
    """

    def __init__(self, in_features: int, out_features: int, weight: CSR,
                 bias: Optional[Tensor] = None, *, backend: str = "auto", relu: bool = False):
        super().__init__()
        if not isinstance(relu, bool):
            raise TypeError(f"SparseLinear: relu must be a bool, got {type(relu).__name__}")
        self.in_features, self.out_features = in_features, out_features
        self._init_csr(weight, (out_features, in_features), bias)
        self.backend = backend
        self.relu = relu
        self._structure = None
        self._plan = None

    @classmethod
    def from_dense(cls, module: nn.Linear, mask: Optional[Tensor] = None, *,
                   backend: str = "auto", index_dtype: Optional[torch.dtype] = None
                   ) -> "SparseLinear":
        """From an ``nn.Linear`` and its mask (``None``: ``module.weight_mask`` or non-zeros)."""
        _check_module("SparseLinear.from_dense", module, nn.Linear)
        A = csr_from_weight(module.weight, _module_mask(module, mask), index_dtype=index_dtype)
        return cls(module.in_features, module.out_features, A, module.bias, backend=backend)

    def _clear_cache(self) -> None:
        super()._clear_cache()
        self._structure = None
        self._plan = None

    def _inference(self, x: Tensor) -> Optional[Tensor]:
        """The inference kernel with the cached :class:`LinearPlan` when no gradient is needed
        and the backend is ``cpp`` (a few microseconds of Python); None otherwise."""
        # parameters and buffers straight from their dicts: nn.Module.__getattr__ costs ~1 us each
        params, buffers = self._parameters, self._buffers
        v = params["values"]
        if (not isinstance(x, Tensor) or not x.is_cpu or x.dtype != v.dtype
                or x.dtype not in _KERNEL_DTYPES or x.dim() < 1
                or x.shape[-1] != self.in_features or not v.is_cpu
                or (torch.is_grad_enabled() and (v.requires_grad or x.requires_grad))
                or _backend.resolve(self.backend, x.device, x.dtype, "sparse_linear") != "cpp"
                or not _linear_kernel_built()):
            return None
        A = self._pattern()                  # checked again if rowptr/col changed
        plan = self._plan
        if plan is None or plan.rowptr is not A.rowptr or plan.col is not A.col:
            plan = self._plan = LinearPlan(A)
        return linear_inference(x, plan, v, params["bias"] if "bias" in params else self.bias,
                                self.relu)

    def forward(self, x: Tensor) -> Tensor:
        y = self._inference(x)
        if y is not None:
            return y
        A = self.weight_csr()
        if self._structure is None or self._structure.rowptr is not A.rowptr:
            self._structure = ShiftedStructure.from_csr(self._pattern())
        y = sparse_linear(x, A, self.bias, structure=self._structure, backend=self.backend)
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.nnz}, sparsity={self.sparsity:.3f}, bias={self.bias is not None}"
                + (", relu=True" if self.relu else ""))


def _conv_padding(padding, kernel_size, dilation, padding_mode):
    """``(conv padding, explicit pre-pad or None, pre-pad mode)`` reproducing ``nn.Conv2d``."""
    kh, kw = kernel_size
    dh, dw = dilation
    if isinstance(padding, str):
        if padding == "valid":
            p, pre = (0, 0), None
        elif padding == "same":
            tot = (dh * (kh - 1), dw * (kw - 1))
            left = (tot[0] // 2, tot[1] // 2)
            if tot[0] % 2 == 0 and tot[1] % 2 == 0:
                p, pre = left, None
            else:
                p, pre = (0, 0), (left[1], tot[1] - left[1], left[0], tot[0] - left[0])
        else:
            raise ValueError(f"SparseConv2d: padding must be an int, a pair, 'same' or 'valid', "
                             f"got {padding!r}")
    else:
        p, pre = _pair(padding), None
    if padding_mode != "zeros":
        if pre is None:
            pre = (p[1], p[1], p[0], p[0])
        p = (0, 0)
        return p, pre, padding_mode
    return p, pre, "constant"




class _CSRConv(_CSRWeight):
    """Shared by the CSR convolutions: channel checks, storage and the cached :class:`ConvPlan`.

    A convolution's weight is ``(Cout, Cin/g, kh, kw)``, a transposed convolution's
    ``(Cin, Cout/g, kh, kw)``; subclasses set ``stride``, ``dilation`` and ``_conv_pad`` before
    calling :meth:`_init_conv`."""

    _transposed = False

    def _init_conv(self, in_channels: int, out_channels: int, kernel_size, weight: CSR,
                   bias: Optional[Tensor], groups: int, route: str, backend: str) -> None:
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size)
        rows, grouped = ((in_channels, out_channels) if self._transposed
                         else (out_channels, in_channels))
        self._init_csr(weight, (rows, grouped // groups) + self.kernel_size, bias)
        self.route, self.backend = route, backend
        self._plan = None

    def _clear_cache(self) -> None:
        super()._clear_cache()
        self._plan = None

    def plan(self) -> ConvPlan:
        """The kernels' plan for the stored pattern (built once per pattern)."""
        A = self._pattern()
        if self._plan is None or self._plan.structure.rowptr is not A.rowptr:
            channels = self.out_channels if self._transposed else self.in_channels
            self._plan = ConvPlan(A, channels, self.kernel_size, self.stride, self._conv_pad,
                                  self.dilation, self.groups, type(self).__name__)
        return self._plan


class SparseConv2d(_CSRConv):
    """2-D convolution with a CSR weight: equals the masked ``nn.Conv2d`` (all of stride,
    padding incl. ``'same'`` and non-zero padding modes, dilation, groups, bias).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
        padding_mode: as ``nn.Conv2d``.
        weight: ``(out_channels, in_channels // groups * kh * kw)`` CSR of
            ``conv.weight.reshape(out_channels, -1)``.
        bias: optional ``(out_channels,)``.
        route: ``"auto"``, ``"direct"`` (no im2col) or ``"im2col"``; backend: ``"auto"`` etc.
            Without a gradient wanted (``torch.no_grad``, frozen values) the direct route on
            the ``cpp`` backend runs the register-tiled inference kernel
            (:mod:`sparselth.ops.sparse_conv_tiles`); training runs the shifted kernels.

    Example::

        >>> layer = SparseConv2d.from_dense(conv, mask)
        >>> y = layer(x)                    # == conv with weight * mask
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, weight: CSR,
                 bias: Optional[Tensor] = None, stride=1, padding: Union[int, Tuple[int, int], str] = 0,
                 dilation=1, groups: int = 1, padding_mode: str = "zeros", *,
                 route: str = "auto", backend: str = "auto"):
        super().__init__()
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"SparseConv2d: padding_mode must be zeros/reflect/replicate/circular, "
                             f"got {padding_mode!r}")
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding, self.padding_mode = padding, padding_mode
        self._conv_pad, self._pre_pad, self._pre_mode = _conv_padding(
            padding, _pair(kernel_size), self.dilation, padding_mode)
        self._init_conv(in_channels, out_channels, kernel_size, weight, bias, groups, route,
                        backend)

    @classmethod
    def from_dense(cls, module: nn.Conv2d, mask: Optional[Tensor] = None, *, route: str = "auto",
                   backend: str = "auto", index_dtype: Optional[torch.dtype] = None
                   ) -> "SparseConv2d":
        """From an ``nn.Conv2d`` and its mask (``None``: ``module.weight_mask`` or non-zeros)."""
        _check_module("SparseConv2d.from_dense", module, nn.Conv2d)
        A = csr_from_weight(module.weight, _module_mask(module, mask), index_dtype=index_dtype)
        return cls(module.in_channels, module.out_channels, module.kernel_size, A, module.bias,
                   module.stride, module.padding, module.dilation, module.groups,
                   module.padding_mode, route=route, backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        plan = self.plan()
        if self._pre_pad is not None:
            x = F.pad(x, self._pre_pad, mode=self._pre_mode)
        y = tiled_inference(x, plan, self.values, self.bias, self.route, self.backend)
        if y is not None:                             # inference: no per-call re-validation
            return y
        A = self.weight_csr(with_transpose=False)     # the plan holds the structures it needs
        return sparse_conv2d(x, A, self.bias, plan=plan, route=self.route, backend=self.backend)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s + f", nnz={self.nnz}, sparsity={self.sparsity:.3f}, bias={self.bias is not None}"


class SparseConvTranspose2d(_CSRConv):
    """Transposed 2-D convolution with a CSR weight (generators' upsampling): equals the
    masked ``nn.ConvTranspose2d``, computed as the adjoint of the sparse convolution.

    The arguments are those of ``nn.ConvTranspose2d`` plus ``weight``, the
    ``(in_channels, out_channels // groups * kh * kw)`` CSR of
    ``deconv.weight.reshape(in_channels, -1)``, an optional ``(out_channels,)`` ``bias``, and
    ``route``/``backend`` as in :class:`SparseConv2d`.
    """

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, weight: CSR,
                 bias: Optional[Tensor] = None, stride=1, padding=0, output_padding=0,
                 groups: int = 1, dilation=1, *, route: str = "auto", backend: str = "auto"):
        super().__init__()
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding, self.output_padding = _pair(padding), _pair(output_padding)
        self._conv_pad = self.padding
        self._init_conv(in_channels, out_channels, kernel_size, weight, bias, groups, route,
                        backend)

    @classmethod
    def from_dense(cls, module: nn.ConvTranspose2d, mask: Optional[Tensor] = None, *,
                   route: str = "auto", backend: str = "auto",
                   index_dtype: Optional[torch.dtype] = None) -> "SparseConvTranspose2d":
        """From an ``nn.ConvTranspose2d`` and its mask."""
        _check_module("SparseConvTranspose2d.from_dense", module, nn.ConvTranspose2d)
        if module.padding_mode != "zeros":
            raise ValueError("SparseConvTranspose2d.from_dense: only padding_mode='zeros' exists "
                             "for transposed convolutions")
        A = csr_from_weight(module.weight, _module_mask(module, mask), index_dtype=index_dtype)
        return cls(module.in_channels, module.out_channels, module.kernel_size, A, module.bias,
                   module.stride, module.padding, module.output_padding, module.groups,
                   module.dilation, route=route, backend=backend)

    def forward(self, x: Tensor, output_size: Optional[Sequence[int]] = None) -> Tensor:
        if output_size is None:
            y = tiled_inference(x, self.plan(), self.values, self.bias, self.route, self.backend,
                                transposed=True, output_padding=self.output_padding)
            if y is not None:                         # inference: no per-call re-validation
                return y
        A = self.weight_csr(with_transpose=False)
        return sparse_conv_transpose2d(x, A, self.bias, self.stride, self.padding,
                                       self.output_padding, self.groups, self.dilation,
                                       output_size=output_size, plan=self.plan(),
                                       route=self.route, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}"
                f", groups={self.groups}, dilation={self.dilation}, nnz={self.nnz}, "
                f"sparsity={self.sparsity:.3f}, bias={self.bias is not None}")


# The layers on dense kernels live in .structured; imported here so that this module still
# offers every deploy-time layer.
from .structured import (BlockSparseLinear, ChannelPrunedConv2d,  # noqa: E402
                         ChannelPrunedConvTranspose2d, ChannelPrunedLinear, SemiStructuredLinear)
