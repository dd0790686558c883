"""``sparselth.compile``: run a lottery ticket on the fastest *exact* route per layer.

``compile(model, ticket, example_inputs=x)`` deep-copies ``model``, loads the ticket's
trained weights and masks, and for every prunable layer (``Linear``, ``Conv2d``,
``ConvTranspose2d``) times the candidate routes on the target device, each fed the input
that layer actually sees when ``example_inputs`` runs through the model:

========== ===================================================================== =========
route      what runs                                                             where
========== ===================================================================== =========
dense      the original layer with the mask folded into its weight (baseline)    always
csr        CSR weight on sparselth's kernels: ``sparselth.nn.SparseLinear``,     always
           ``SparseConv2d``/``SparseConvTranspose2d`` (direct kernel and im2col
           both timed); a private spmm-based fallback when those are missing
channel    a physically smaller dense layer over the live input/output           when whole
           channels (``ChannelPrunedLinear/Conv2d``); pruned outputs = bias      channels
                                                                                 are zero
block      ``BlockSparseLinear`` (4x4 and 16x1 blocks)                           Linear, at
                                                                                 most half
                                                                                 the blocks
2:4        ``SemiStructuredLinear`` (``torch.sparse`` semi-structured weight)    GPUs with
                                                                                 2:4 support
========== ===================================================================== =========

A route with several implementations (the conv kernels) gets the time of its fastest.
Each candidate is first checked against the dense layer's output on the captured input (a
candidate that is not exact within the dtype's tolerance is rejected and reported, never
used), then all are timed with the same protocol (warm-up, interleaved repetitions, median).
The fastest route wins; a sparse route must beat dense by ``min_gain`` (default 5%) or
dense stays: ties go to dense, so the report never shows a chosen route slower than dense.
Finally the compiled model's output is compared with the masked dense model's output on
``example_inputs``; a mismatch raises :class:`CompileError`.

All timings are inference timings (``torch.no_grad``, eval mode). The report (a
:class:`CompileReport`) prints as an aligned table, converts to JSON (``to_dict``,
``save``) and holds per layer: type, weight shape, sparsity, MACs dense/ticket, bytes
dense/stored, every candidate's latency, the chosen route and its speed-up; totals; the
end-to-end latency of the masked dense model vs the compiled one; the *realised savings*
(measured speed-up / the speed-up the MAC count promises); and memory (CUDA: peak
allocated bytes of one forward; CPU: the bytes of parameters and buffers, since the CPU
allocator keeps no resettable peak).

Example::

    ticket = sparselth.Ticket.load("runs/mlp/ticket")
    fast, report = sparselth.compile(model, ticket, example_inputs=torch.randn(64, 784))
    print(report)
    report.save("compile_report.json")
"""

from __future__ import annotations

import copy
import fnmatch
import gc
import inspect
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _io
from .ops import spmm
from .prune import count_macs, remove
from .sparse.csr import CSR
from .ticket import Ticket

__all__ = [
    "ROUTES",
    "CompileError",
    "CompileReport",
    "LayerReport",
    "compile",
]

ROUTES = ("dense", "csr", "channel", "block", "2:4")
REPORT_FORMAT = "sparselth.compile_report"
REPORT_VERSION = 1
_PRUNABLE = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


class CompileError(RuntimeError):
    """The compiled model's output differs from the masked dense model's output."""


# =========================================================================== fallback modules
# Deploy-time modules used when ``sparselth.nn.sparse`` is not importable (or has no
# equivalent). CSR indices are buffers; values and biases are parameters, so a compiled
# ticket can be fine-tuned. Everything is float32/float64, on any device spmm supports.


def _mask_csr(weight2d: Tensor, mask2d: Tensor) -> CSR:
    """CSR with the mask's pattern (mask order: row-major) and the weight's values."""
    row, col = mask2d.nonzero(as_tuple=True)
    val = weight2d.detach()[row, col].contiguous()
    rows, cols = mask2d.shape
    counts = torch.bincount(row, minlength=rows)
    rowptr = torch.zeros(rows + 1, dtype=torch.int64, device=weight2d.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    idx = torch.int32 if max(rows, cols, row.numel()) < 2**31 - 1 else torch.int64
    return CSR(rowptr.to(idx), col.to(idx), val, (rows, cols), validate=False)


class _CSRBase(nn.Module):
    def _set_csr(self, A: CSR, bias: Tensor | None) -> None:
        self.register_buffer("rowptr", A.rowptr)
        self.register_buffer("col", A.col)
        self.val = nn.Parameter(A.val.clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.csr_shape = tuple(A.shape)

    def _csr(self) -> CSR:
        A = self.__dict__.get("_A")
        if (A is None or A.rowptr is not self.rowptr or A.col is not self.col
                or A.val is not self.val):
            A = CSR(self.rowptr, self.col, self.val, self.csr_shape, validate=False)
            self.__dict__["_A"] = A  # not a submodule/buffer: rebuilt after .to() etc.
        return A


class _CSRLinear(_CSRBase):
    """``y = x W^T + b`` with ``W`` in CSR: ``spmm(W, x^T)^T``. The output is contiguous
    ``(rows, out)`` (the transpose back and the bias are one fused pass): dense layers that
    follow run several times slower on a transposed-view input than the copy costs."""

    def __init__(self, A: CSR, bias: Tensor | None, backend: str = "auto"):
        super().__init__()
        self._set_csr(A, bias)
        self.in_features, self.out_features = A.shape[1], A.shape[0]
        self.backend = backend

    @classmethod
    def from_dense(cls, module: nn.Linear, mask: Tensor, backend: str = "auto") -> _CSRLinear:
        return cls(_mask_csr(module.weight, mask), module.bias, backend)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.in_features).t()
        yt = spmm(self._csr(), xt, backend=self.backend).t()  # (rows, out) view
        if torch.is_grad_enabled() and (yt.requires_grad or (self.bias is not None
                                                             and self.bias.requires_grad)):
            y = (yt if self.bias is None else yt + self.bias).contiguous()
        else:
            y = torch.empty(yt.shape, dtype=yt.dtype, device=yt.device)
            if self.bias is None:
                y.copy_(yt)
            else:
                torch.add(yt, self.bias, out=y)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, nnz={self.col.numel()}"


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


class _CSRConv2d(_CSRBase):
    """``conv2d`` as ``W (Cout x Cin*kh*kw, CSR, block-diagonal over groups) @ im2col(x)``."""

    def __init__(self, A: CSR, bias: Tensor | None, out_channels: int, kernel_size, stride,
                 padding, dilation, backend: str = "auto"):
        super().__init__()
        self._set_csr(A, bias)
        self.out_channels = out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.backend = backend

    @classmethod
    def from_dense(cls, module: nn.Conv2d, mask: Tensor, backend: str = "auto") -> _CSRConv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError("csr route: only zero padding given as numbers is supported")
        w = module.weight
        cout, cin_g, kh, kw = w.shape
        g = module.groups
        cout_g, kk = cout // g, kh * kw
        m2 = mask.reshape(cout, cin_g * kk)
        w2 = w.detach().reshape(cout, cin_g * kk)
        A = _mask_csr(w2, m2)
        if g > 1:  # shift each group's columns to its block of im2col rows
            grp = torch.repeat_interleave(
                torch.arange(cout, device=w.device) // cout_g,
                (A.rowptr[1:] - A.rowptr[:-1]).long())
            col = (A.col.long() + grp * cin_g * kk).to(A.col.dtype)
            A = CSR(A.rowptr, col, A.val, (cout, cin_g * g * kk), validate=False)
        return cls(A, module.bias, cout, (kh, kw), module.stride, module.padding,
                   module.dilation, backend)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        ckk, L = cols.shape[1], cols.shape[2]
        X = cols.transpose(0, 1).reshape(ckk, n * L)
        y = spmm(self._csr(), X, backend=self.backend)  # (Cout, n*L)
        if self.bias is not None:
            y = y + self.bias.unsqueeze(1)
        # contiguous NCHW: the next layer (dense or not) must not pay for our layout
        return y.reshape(self.out_channels, n, ho, wo).transpose(0, 1).contiguous()


class _CSRConvTranspose2d(_CSRBase):
    """``conv_transpose2d`` as ``col2im(W^T (Cout*kh*kw x Cin, CSR) @ x)``."""

    def __init__(self, A: CSR, bias: Tensor | None, out_channels: int, kernel_size, stride,
                 padding, output_padding, dilation, backend: str = "auto"):
        super().__init__()
        self._set_csr(A, bias)
        self.out_channels = out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.output_padding = _pair(output_padding)
        self.backend = backend

    @classmethod
    def from_dense(cls, module: nn.ConvTranspose2d, mask: Tensor,
                   backend: str = "auto") -> _CSRConvTranspose2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError("csr route: only zero padding given as numbers is supported")
        op, st = _pair(module.output_padding), _pair(module.stride)
        if op[0] >= st[0] or op[1] >= st[1]:
            raise ValueError("csr route: output_padding >= stride is not supported")
        w = module.weight  # (Cin, Cout/g, kh, kw)
        cin, cout_g, kh, kw = w.shape
        g = module.groups
        cin_g, kk = cin // g, kh * kw
        cout = cout_g * g
        # M[(co, k), ci] = W[ci, co - group(ci) * cout_g, k], zero across groups.
        wt = w.detach().reshape(g, cin_g, cout_g * kk).transpose(1, 2)  # (g, cout_g*kk, cin_g)
        mt = mask.reshape(g, cin_g, cout_g * kk).transpose(1, 2)
        M = torch.zeros(cout * kk, cin, dtype=w.dtype, device=w.device)
        Mm = torch.zeros(cout * kk, cin, dtype=torch.bool, device=w.device)
        for gi in range(g):
            rs, cs = slice(gi * cout_g * kk, (gi + 1) * cout_g * kk), slice(gi * cin_g,
                                                                          (gi + 1) * cin_g)
            M[rs, cs] = wt[gi]
            Mm[rs, cs] = mt[gi]
        return cls(_mask_csr(M, Mm), module.bias, cout, (kh, kw), module.stride,
                   module.padding, op, module.dilation, backend)

    def forward(self, x: Tensor) -> Tensor:
        n, cin, h, w = x.shape
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        oph, opw = self.output_padding
        ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        X = x.transpose(0, 1).reshape(cin, n * h * w)
        cols = spmm(self._csr(), X, backend=self.backend)  # (Cout*kk, n*h*w)
        cols = cols.reshape(-1, n, h * w).transpose(0, 1)
        y = F.fold(cols, (ho, wo), self.kernel_size, self.dilation, self.padding, self.stride)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


class _ChannelPruned(nn.Module):
    """A smaller dense layer on the surviving channels; pruned outputs get only the bias.

    ``dim`` is the channel dimension of input and output (-1 for Linear, 1 for convs)."""

    def __init__(self, small: nn.Module, keep_in: Tensor, keep_out: Tensor, bias: Tensor | None,
                 in_channels: int, out_channels: int, dim: int):
        super().__init__()
        self.small = small
        self.register_buffer("keep_in", keep_in)
        self.register_buffer("keep_out", keep_out)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim

    @classmethod
    def from_dense(cls, module: nn.Module, mask: Tensor) -> _ChannelPruned:
        w = module.weight.detach()
        if not bool(mask.any()):  # all pruned: keep one zero channel so shapes still work
            mask = torch.zeros_like(mask)
            mask.view(-1)[0] = True
            w = torch.zeros_like(w)
        if isinstance(module, nn.ConvTranspose2d):
            if module.groups != 1:
                raise ValueError("channel route: groups > 1 is not supported")
            # weight (Cin, Cout, kh, kw)
            keep_in = mask.flatten(1).any(1).nonzero().flatten()
            keep_out = mask.transpose(0, 1).flatten(1).any(1).nonzero().flatten()
            small = nn.ConvTranspose2d(
                len(keep_in), len(keep_out), module.kernel_size, module.stride, module.padding,
                module.output_padding, 1, False, module.dilation).to(w.device, w.dtype)
            sw = (w * mask)[keep_in][:, keep_out]
            cin, cout, dim = w.shape[0], w.shape[1], 1
        else:
            if isinstance(module, nn.Conv2d) and (module.groups != 1
                                                  or module.padding_mode != "zeros"):
                raise ValueError("channel route: groups > 1 or non-zero padding unsupported")
            m2 = mask.flatten(2) if mask.dim() > 2 else mask.unsqueeze(-1)
            keep_out = m2.any(2).any(1).nonzero().flatten()
            keep_in = m2.any(2).any(0).nonzero().flatten()
            sw = (w * mask)[keep_out][:, keep_in]
            if isinstance(module, nn.Linear):
                small = nn.Linear(len(keep_in), len(keep_out), bias=False)
                dim = -1
            else:
                small = nn.Conv2d(len(keep_in), len(keep_out), module.kernel_size, module.stride,
                                  module.padding, module.dilation, 1, False)
                dim = 1
            small = small.to(w.device, w.dtype)
            cout, cin = w.shape[0], w.shape[1]
        with torch.no_grad():
            small.weight.copy_(sw)
        if len(keep_in) == cin and len(keep_out) == cout:
            raise ValueError("channel route: no whole channel is pruned")
        return cls(small, keep_in, keep_out, module.bias, cin, cout, dim)

    def forward(self, x: Tensor) -> Tensor:
        d = self.dim if self.dim >= 0 else x.dim() + self.dim
        if self.keep_in.numel() != self.in_channels:
            x = x.index_select(d, self.keep_in)
        y = self.small(x)
        if self.keep_out.numel() != self.out_channels:
            shape = list(y.shape)
            shape[d] = self.out_channels
            y = y.new_zeros(shape).index_copy_(d, self.keep_out, y)
        return y if self.bias is None else y + self._bias_view(y.dim(), d)

    def _bias_view(self, ndim: int, d: int) -> Tensor:
        shape = [1] * ndim
        shape[d] = self.out_channels
        return self.bias.view(shape)

    def extra_repr(self) -> str:
        return (f"in {self.keep_in.numel()}/{self.in_channels}, "
                f"out {self.keep_out.numel()}/{self.out_channels}")


class _SemiStructuredLinear(nn.Module):
    """``Linear`` with a 2:4 semi-structured weight (CUDA, ``torch.sparse``)."""

    def __init__(self, module: nn.Linear, mask: Tensor):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        w = (module.weight.detach() * mask).contiguous()
        self.weight = nn.Parameter(to_sparse_semi_structured(w), requires_grad=False)
        self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


def _is_24(mask: Tensor) -> bool:
    if mask.dim() != 2 or mask.shape[1] % 4:
        return False
    return bool((mask.reshape(mask.shape[0], -1, 4).sum(-1) <= 2).all())


def _supports_24(device: torch.device) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torch.sparse import to_sparse_semi_structured  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


# =========================================================================== route builders


def _nn_sparse():
    """``sparselth.nn.sparse`` when it is importable, else None."""
    try:
        from .nn import sparse as nn_sparse
    except ImportError:
        return None
    return nn_sparse


def _call_from_dense(cls: Any, module: nn.Module, mask: Tensor, backend: str,
                     **options: Any) -> nn.Module:
    fn = cls.from_dense
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in options.items() if k in params}
    if "backend" in params:
        kwargs["backend"] = backend
    elif backend != "auto":
        raise ValueError(f"{cls.__name__}.from_dense has no backend= option")
    return fn(module, mask, **kwargs)


def _from_dense_params(cls: Any) -> set[str]:
    try:
        return set(inspect.signature(cls.from_dense).parameters)
    except (TypeError, ValueError):
        return set()


# (name, build, fallback): a fallback implementation is tried only when no other
# implementation of the route is exact.
_Impl = tuple[str, Callable[[], nn.Module], bool]


def _channel_counts(module: nn.Module, mask: Tensor) -> tuple[bool, bool]:
    """(some input channel is all-pruned, some output channel is all-pruned)."""
    if isinstance(module, nn.ConvTranspose2d):
        zero_in = ~mask.flatten(1).any(1)
        zero_out = ~mask.transpose(0, 1).flatten(1).any(1)
    else:
        m2 = mask.flatten(2) if mask.dim() > 2 else mask.unsqueeze(-1)
        zero_out = ~m2.any(2).any(1)
        zero_in = ~m2.any(2).any(0)
    return bool(zero_in.any()), bool(zero_out.any())


def _block_density(mask: Tensor, block: tuple[int, int]) -> float:
    """Fraction of ``block`` tiles of a 2-D mask holding any kept entry."""
    bh, bw = block
    m = mask
    ph, pw = (-m.shape[0]) % bh, (-m.shape[1]) % bw
    if ph or pw:
        m = F.pad(m.float(), (0, pw, 0, ph)).bool()
    tiles = m.reshape(m.shape[0] // bh, bh, m.shape[1] // bw, bw).any(3).any(1)
    return float(tiles.float().mean()) if tiles.numel() else 0.0


def _route_impls(route: str, module: nn.Module, mask: Tensor, backend: str,
                 device: torch.device) -> list[_Impl]:
    """Implementations of ``route`` for ``module`` as ``(name, build, fallback)``; every exact
    non-fallback one is timed and the route takes the fastest. Raises ValueError when the
    route cannot apply to this layer at all."""
    nn_sparse = _nn_sparse()
    if route == "dense":
        return [(type(module).__name__, lambda: module, False)]
    if route == "csr":
        name = {nn.Linear: "SparseLinear", nn.Conv2d: "SparseConv2d",
                nn.ConvTranspose2d: "SparseConvTranspose2d"}[type(module)]
        fallback = {nn.Linear: _CSRLinear, nn.Conv2d: _CSRConv2d,
                    nn.ConvTranspose2d: _CSRConvTranspose2d}[type(module)]
        impls: list[_Impl] = []
        cls = getattr(nn_sparse, name, None) if nn_sparse is not None else None
        if cls is not None:
            if "route" in _from_dense_params(cls):  # convs: direct kernel and im2col
                for variant in ("direct", "im2col"):
                    impls.append((f"sparselth.nn.{name}(route={variant})",
                                  lambda v=variant: _call_from_dense(cls, module, mask, backend,
                                                                     route=v), False))
            else:
                impls.append((f"sparselth.nn.{name}",
                              lambda: _call_from_dense(cls, module, mask, backend), False))
        impls.append((f"sparselth.compile.{fallback.__name__}",
                      lambda: fallback.from_dense(module, mask, backend), cls is not None))
        return impls
    if route == "channel":
        zero_in, zero_out = _channel_counts(module, mask)
        if not (zero_in or zero_out):
            raise ValueError("no whole channel is pruned")
        name = {nn.Linear: "ChannelPrunedLinear", nn.Conv2d: "ChannelPrunedConv2d"}.get(
            type(module))
        cls = getattr(nn_sparse, name, None) if (nn_sparse is not None and name) else None
        impls = []
        if cls is not None:
            impls.append((f"sparselth.nn.{name}",
                          lambda: _call_from_dense(cls, module, mask, "auto"), False))
        impls.append(("sparselth.compile._ChannelPruned",
                      lambda: _ChannelPruned.from_dense(module, mask), cls is not None))
        return impls
    if route == "block":
        cls = getattr(nn_sparse, "BlockSparseLinear", None) if nn_sparse is not None else None
        if not isinstance(module, nn.Linear):
            raise ValueError("block-sparse applies to Linear layers only")
        if cls is None:
            raise ValueError("needs sparselth.nn.BlockSparseLinear")
        impls = []
        for block in ((4, 4), (16, 1)):
            dens = _block_density(mask, block)
            if dens <= 0.5:  # denser block patterns cannot beat dense or CSR
                impls.append((f"sparselth.nn.BlockSparseLinear(block={block[0]}x{block[1]})",
                              lambda b=block: _call_from_dense(cls, module, mask, "auto",
                                                               block=b), False))
        if not impls:
            raise ValueError("more than half of the 4x4 and 16x1 blocks hold a kept weight")
        return impls
    if route == "2:4":
        if not isinstance(module, nn.Linear):
            raise ValueError("2:4 applies to Linear layers only")
        if not _supports_24(device):
            raise ValueError("2:4 needs a CUDA GPU with compute capability >= 8.0")
        if not _is_24(mask):
            raise ValueError("the mask is not 2:4")
        cls = getattr(nn_sparse, "SemiStructuredLinear", None) if nn_sparse is not None else None
        impls = []
        if cls is not None:
            impls.append(("sparselth.nn.SemiStructuredLinear",
                          lambda: _call_from_dense(cls, module, mask, "auto"), False))
        impls.append(("sparselth.compile._SemiStructuredLinear",
                      lambda: _SemiStructuredLinear(module, mask), cls is not None))
        return impls
    raise ValueError(f"unknown route {route!r}")


# =========================================================================== timing


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _quantile(s: Sequence[float], p: float) -> float:
    return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]


def _time_interleaved(fns: Mapping[str, Callable[[], Any]], device: torch.device,
                      budget_s: float, warmup: int = 2, min_reps: int = 5,
                      max_reps: int = 200) -> dict[str, dict[str, float]]:
    """Median, quartiles and minimum (ms per call) of each callable.

    Protocol: warm-up calls until a call is no slower than 1.25x the fastest so far; then
    rounds ``A B C A B C ...`` so drifts (other processes, clocks) hit every contender alike.
    Each sample first makes one untimed call (its caches are warm again after the other
    contenders ran: a model serving requests runs back to back, not between other models),
    then times ``k`` calls back to back, ``k`` chosen so a sample lasts >= 1 ms. The garbage
    collector is paused (not run first: a full collection costs more than a small layer).
    """
    sync = _sync(device)
    est = {}
    for name, fn in fns.items():
        ts = []
        for _ in range(max(1, warmup) + 6):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
            if len(ts) > warmup and ts[-1] <= 1.25 * min(ts[:-1]):
                break
            if ts[-1] > 0.5:
                break
        est[name] = max(min(ts), 1e-7)
    number = {n: max(1, min(1000, math.ceil(1e-3 / t))) for n, t in est.items()}
    per_round = sum(est[n] * (number[n] + 1) for n in fns)
    reps = int(min(max_reps, max(min_reps, budget_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {n: [] for n in fns}
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            for name, fn in fns.items():
                k = number[name]
                fn()  # re-warm this contender's caches
                sync()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                sync()
                times[name].append((time.perf_counter() - t0) / k)
    finally:
        if was:
            gc.enable()
    out = {}
    for name, ts in times.items():
        s = sorted(ts)
        out[name] = {"ms": statistics.median(s) * 1e3, "q1_ms": _quantile(s, 0.25) * 1e3,
                     "q3_ms": _quantile(s, 0.75) * 1e3, "min_ms": s[0] * 1e3, "reps": len(s)}
    return out


# =========================================================================== report


def format_number(v: Any, digits: int = 3) -> str:
    """``v`` with about ``digits`` significant digits; ``-`` for None and non-finite."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v == 0:
            return "0"
        mag = math.floor(math.log10(abs(v)))
        return f"{v:.{max(0, digits - 1 - mag)}f}"
    return str(v)


def format_si(v: Any) -> str:
    """``v`` with a k/M/G suffix (MACs, bytes); ``-`` for None."""
    if v is None:
        return "-"
    v = float(v)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


@dataclass
class LayerReport:
    """One prunable layer of a compiled model (see :class:`CompileReport`)."""

    name: str
    type: str
    shape: list[int]
    sparsity: float
    macs_dense: int
    macs_ticket: int
    bytes_dense: int
    bytes_stored: int
    latency_ms: dict[str, float]
    route: str
    impl: str
    speedup: float | None
    promised_speedup: float | None
    latency_iqr_ms: dict[str, list[float]] = field(default_factory=dict)
    variants_ms: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    forced: bool = False
    note: str = ""


@dataclass
class CompileReport:
    """What ``compile`` did and what it measured. ``str(report)`` is an aligned table;
    ``to_dict()``/``from_dict()`` round-trip through JSON; ``save(path)`` writes it atomically.

    Attributes:
        layers: one :class:`LayerReport` per prunable layer, in module order.
        totals: sums over layers: ``macs_dense``, ``macs_ticket``, ``bytes_dense``,
            ``bytes_stored``, ``latency_dense_ms``, ``latency_compiled_ms`` (per-layer medians).
        end_to_end: ``dense_ms``, ``compiled_ms`` (medians, + quartiles), ``speedup``,
            ``promised_speedup`` (MACs dense / MACs ticket over the whole model),
            ``realised_savings`` (``speedup / promised_speedup``), ``max_rel_error``; and
            from the fastest samples ``dense_min_ms``, ``compiled_min_ms``,
            ``speedup_best``, ``realised_savings_best`` (less sensitive to a busy machine);
            ``layout``/``layout_ms``/``contiguous_outputs``: sparse layers may return a
            transposed view (free for a following sparse layer, slow for a dense one), so
            the variants "as returned", "contiguous before dense layers" and "all
            contiguous" are timed end to end and the fastest is kept (a forward hook makes
            the listed layers' outputs contiguous).
        memory: ``method`` and ``dense_bytes``/``compiled_bytes`` (CUDA: peak allocated bytes
            of one forward pass; CPU: parameter + buffer bytes, with a note saying so).
        meta: device, dtype, backend, threads, versions, input shapes, ticket sparsity.
    """

    layers: list[LayerReport]
    totals: dict[str, Any]
    end_to_end: dict[str, Any]
    memory: dict[str, Any]
    meta: dict[str, Any]

    def layer(self, name: str) -> LayerReport:
        for rec in self.layers:
            if rec.name == name:
                return rec
        raise KeyError(name)

    @property
    def routes(self) -> dict[str, str]:
        """``{layer name: chosen route}``."""
        return {rec.name: rec.route for rec in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return _finite({
            "format": REPORT_FORMAT,
            "format_version": REPORT_VERSION,
            "layers": [asdict(rec) for rec in self.layers],
            "totals": dict(self.totals),
            "end_to_end": dict(self.end_to_end),
            "memory": dict(self.memory),
            "meta": dict(self.meta),
        })

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompileReport:
        if d.get("format") != REPORT_FORMAT:
            raise ValueError(f"not a compile report: format is {d.get('format')!r}")
        if int(d.get("format_version", 0)) > REPORT_VERSION:
            raise ValueError(f"compile report format {d.get('format_version')} is newer than "
                             f"this sparselth reads ({REPORT_VERSION})")
        layers = [LayerReport(**rec) for rec in d["layers"]]
        return cls(layers, dict(d["totals"]), dict(d["end_to_end"]), dict(d["memory"]),
                   dict(d["meta"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, path: Any) -> Path:
        """Write the report as JSON to ``path`` atomically; returns the path."""
        path = Path(path)
        _io.atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: Any) -> CompileReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __str__(self) -> str:
        routes = [r for r in ROUTES if any(r in rec.latency_ms for rec in self.layers)]
        headers = (["layer", "type", "shape", "sparsity", "MACs dense", "MACs ticket",
                    "bytes dense", "bytes stored"] + [f"{r} ms" for r in routes]
                   + ["route", "speed-up", "promised"])
        rows = []
        for rec in self.layers:
            route = rec.route + ("*" if rec.forced else "")
            rows.append([rec.name, rec.type, "x".join(map(str, rec.shape)),
                         f"{rec.sparsity:.3f}", format_si(rec.macs_dense), format_si(rec.macs_ticket),
                         format_si(rec.bytes_dense), format_si(rec.bytes_stored)]
                        + [format_number(rec.latency_ms.get(r)) for r in routes]
                        + [route, format_number(rec.speedup), format_number(rec.promised_speedup)])
        t = self.totals
        rows.append(["total", "", "", f"{self.meta.get('ticket_sparsity', 0.0):.3f}",
                     format_si(t["macs_dense"]), format_si(t["macs_ticket"]), format_si(t["bytes_dense"]),
                     format_si(t["bytes_stored"])]
                    + [format_number(t["latency_dense_ms"]) if r == "dense" else "" for r in routes]
                    + [format_number(t["latency_compiled_ms"]) + " ms", format_number(t.get("speedup")),
                       format_number(t.get("promised_speedup"))])
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in
                  enumerate(headers)]
        left = {0, 1, len(headers) - 3}

        def line(cells):
            return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        out = [line(headers), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in rows[:-1]]
        out += ["  ".join("-" * w for w in widths), line(rows[-1])]
        e = self.end_to_end
        m = self.memory
        out.append("")
        out.append(
            f"end to end on {self.meta.get('device')} ({self.meta.get('dtype')}, "
            f"backend {self.meta.get('backend')}, {self.meta.get('threads')} threads): "
            f"dense {format_number(e.get('dense_ms'))} ms, compiled {format_number(e.get('compiled_ms'))} ms, "
            f"speed-up {format_number(e.get('speedup'))}x; MACs promise {format_number(e.get('promised_speedup'))}x; "
            f"realised savings {format_number(e.get('realised_savings'))}")
        out.append(f"memory ({m.get('method')}): dense {format_si(m.get('dense_bytes'))}B, compiled "
                   f"{format_si(m.get('compiled_bytes'))}B" + (f"  [{m['note']}]" if m.get("note")
                                                          else ""))
        out.append(f"verified: max relative error {format_number(e.get('max_rel_error'))} "
                   f"(tolerance {format_number(self.meta.get('tolerance'))})"
                   + ("; * = route forced by routes=" if any(r.forced for r in self.layers)
                      else ""))
        return "\n".join(out)

    __repr__ = __str__


def _finite(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


# =========================================================================== helpers


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _map_tensors(x: Any, fn: Callable[[Tensor], Any]) -> Any:
    if isinstance(x, (Tensor, CSR)):  # a CSR input: sparse node features of a graph model
        return fn(x)
    if isinstance(x, Mapping):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


def _tensors(x: Any) -> list[Tensor]:
    out: list[Tensor] = []
    _map_tensors(x, out.append)
    return out


def _rel_error(got: Any, ref: Any) -> float:
    """``max |got - ref| / max |ref|`` over all tensors (inf on a structure mismatch)."""
    g, r = _tensors(got), _tensors(ref)
    if len(g) != len(r):
        return math.inf
    err, scale = 0.0, 0.0
    for a, b in zip(g, r):
        if a.shape != b.shape:
            return math.inf
        if b.numel() == 0:
            continue
        a64, b64 = a.detach().double(), b.detach().double()
        d = (a64 - b64).abs().max().item()
        if math.isnan(d):
            return math.inf
        err = max(err, d)
        scale = max(scale, b64.abs().max().item())
    return err / max(scale, 1e-30) if err else 0.0


def _tensor_bytes(t: Tensor) -> int:
    if type(t) is Tensor or type(t) is nn.Parameter:
        return t.numel() * t.element_size() if t.layout == torch.strided else 0
    flatten = getattr(t, "__tensor_flatten__", None)  # tensor subclasses (2:4 weights)
    if flatten is not None:
        names, _ = flatten()
        return sum(_tensor_bytes(getattr(t, a)) for a in names
                   if isinstance(getattr(t, a, None), Tensor))
    return t.numel() * t.element_size()


def _state_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += _tensor_bytes(t)
    return total


def _contiguous_output(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: hand the next layer a contiguous tensor."""
    return output.contiguous() if isinstance(output, Tensor) else output


class _LayoutSwitch:
    """Forward hooks that make the outputs of the layers in ``active`` contiguous (used while
    timing layout variants; replaced by :func:`_contiguous_output` afterwards)."""

    def __init__(self) -> None:
        self.active: frozenset = frozenset()

    def hook(self, name: str) -> Callable[..., Any]:
        def fn(module: nn.Module, args: Any, output: Any) -> Any:
            return _contiguous_output(module, args, output) if name in self.active else output

        return fn


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _parse_routes(routes: Any) -> tuple[set[str], dict[str, str]]:
    """(allowed route names, {layer pattern: forced route})."""
    if routes is None:
        return set(ROUTES), {}
    if isinstance(routes, str):
        routes = [routes]
    if isinstance(routes, Mapping):
        forced = {}
        for k, v in routes.items():
            if not isinstance(k, str) or v not in ROUTES:
                raise ValueError(f"compile: routes maps layer names (or fnmatch patterns) to one "
                                 f"of {ROUTES}; got {k!r}: {v!r}")
            forced[k] = v
        return set(ROUTES), forced
    if isinstance(routes, Sequence):
        bad = [r for r in routes if r not in ROUTES]
        if bad:
            raise ValueError(f"compile: routes must be names from {ROUTES}, got {bad}")
        return set(routes) | {"dense"}, {}
    raise TypeError(f"compile: routes must be None, a list of route names or a mapping "
                    f"layer -> route, got {type(routes).__name__}")


def _forced_route(name: str, forced: Mapping[str, str]) -> str | None:
    if name in forced:
        return forced[name]
    for pat, r in forced.items():
        if fnmatch.fnmatchcase(name, pat):
            return r
    return None


def _check_inputs(example_inputs: Any) -> None:
    if example_inputs is None:
        raise ValueError(
            "compile: example_inputs is required: routes are timed and the result is verified "
            "on them (pass a tensor, a tuple of positional arguments or a dict of keyword "
            "arguments, e.g. example_inputs=torch.randn(64, 784))")
    if not isinstance(example_inputs, (Tensor, CSR, tuple, list, Mapping)):
        raise TypeError(f"compile: example_inputs must be a tensor, a tuple of positional "
                        f"arguments or a dict of keyword arguments, got "
                        f"{type(example_inputs).__name__}")
    if not _tensors(example_inputs):
        raise TypeError("compile: example_inputs holds no tensor (pass a tensor, a tuple of "
                        "positional arguments or a dict of keyword arguments)")


# =========================================================================== embeddings


def _compile_embeddings(dense_model: nn.Module, compiled: nn.Module,
                        masks: Mapping[str, Tensor], inputs: Any, backend: str,
                        device: torch.device, budget_s: float,
                        tol: float) -> list[LayerReport]:
    """Embedding tables with a mask (the ticket's, or a ``MaskedEmbedding``'s own
    ``weight_mask``) become :class:`~sparselth.nn.CompressedEmbedding` (``EmbeddingBag``:
    ``CompressedEmbeddingBag``) in ``compiled``, in the format with the fewest stored bytes.
    Chosen by bytes, not time (a table is mostly memory); kept dense when no format is smaller
    than the dense table. Each is verified first: the stored table equals ``W * M`` bit for
    bit, and on the ids ``inputs`` feed it the lookups equal the dense layer's (exactly for
    ``Embedding``; within ``tol`` for bags, whose sums may add in another order). Returns one
    report row per masked table: bytes dense vs stored, and lookup times of both."""
    from .nn.embedding import CompressedEmbedding, MaskedEmbedding

    tables = [(n, m) for n, m in dense_model.named_modules()
              if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    captured: dict[str, tuple] = {}

    def make_hook(name):
        def hook(mod, args, kwargs):
            captured.setdefault(name, (args, dict(kwargs)))
        return hook

    handles = [m.register_forward_pre_hook(make_hook(n), with_kwargs=True) for n, m in tables]
    try:
        with torch.no_grad():
            _call(dense_model, inputs)
    finally:
        for h in handles:
            h.remove()
    reports = []
    for name, mod in tables:
        mask = masks.get(f"{name}.weight")
        if mask is None and isinstance(mod, MaskedEmbedding):
            mask = mod.weight_mask
        if mask is None:
            continue
        w = mod.weight.detach()
        mask = mask.to(w.device).bool()
        dense_bytes = w.numel() * w.element_size()
        rec = LayerReport(
            name=name, type=type(mod).__name__, shape=list(w.shape),
            sparsity=1.0 - int(mask.count_nonzero()) / max(1, mask.numel()), macs_dense=0,
            macs_ticket=0, bytes_dense=dense_bytes, bytes_stored=dense_bytes, latency_ms={},
            route="dense", impl=type(mod).__name__, speedup=None, promised_speedup=None)
        reports.append(rec)
        try:
            comp = CompressedEmbedding.from_module(mod, mask, backend=backend).to(device).eval()
        except ValueError as e:
            rec.note = f"left dense: {e}"[:300]
            continue
        why = "" if torch.equal(comp.to_dense(), w * mask) else "stored table differs from W * M"
        args, kwargs = captured.get(name, (None, None))
        if not why and args is not None:
            with torch.no_grad():
                got, ref = comp(*args, **kwargs), mod(*args, **kwargs)
            exact = (torch.equal(got, ref) if isinstance(mod, nn.Embedding)
                     else _rel_error(got, ref) <= tol)
            why = "" if exact else "lookups differ from the dense layer's"
        if why:
            rec.rejected["compressed"] = why
            continue
        if args is not None:
            with torch.no_grad():
                t = _time_interleaved({"dense": lambda: mod(*args, **kwargs),
                                       "compressed": lambda: comp(*args, **kwargs)},
                                      device, budget_s)
            rec.latency_ms = {k: v["ms"] for k, v in t.items()}
            rec.latency_iqr_ms = {k: [v["q1_ms"], v["q3_ms"]] for k, v in t.items()}
        fmt = comp.format + (", int8" if comp.quantized else "")
        if comp.stored_bytes >= dense_bytes:
            rec.note = f"no compressed format is smaller than the dense table ({fmt}): left dense"
            continue
        _set_module(compiled, name, comp)
        rec.route, rec.impl = "compressed", f"sparselth.nn.{type(comp).__name__}({fmt})"
        rec.bytes_stored = comp.stored_bytes
        if rec.latency_ms:
            rec.speedup = rec.latency_ms["dense"] / max(rec.latency_ms["compressed"], 1e-12)
        rec.note = (f"format {fmt} chosen by bytes ({comp.stored_bytes} vs {dense_bytes} dense); "
                    "verified exact" + ("" if args is not None else "; not called by "
                                        "example_inputs, not timed"))
    return reports


# =========================================================================== compile


def compile(
    model: nn.Module,
    ticket: Ticket | str | Path,
    device: str | torch.device | None = None,
    example_inputs: Any = None,
    routes: Any = None,
    backend: str = "auto",
    *,
    budget_s: float = 0.3,
    e2e_budget_s: float = 1.0,
    min_gain: float = 0.05,
    tolerance: float | None = None,
    progress: bool = False,
) -> tuple[nn.Module, CompileReport]:
    """Compile ``ticket`` onto ``model``: every prunable layer runs its fastest exact route.

    Args:
        model: the network the ticket was found on (left unchanged; a deep copy is compiled).
            A graph model with ``compact_graph()`` (:mod:`sparselth.models.gnn`) is compacted
            after the ticket is applied, so its pruned edges are not stored; a
            :class:`~sparselth.CSR` of node features may stand for a tensor in
            ``example_inputs``.
        ticket: a :class:`~sparselth.Ticket` or the path of a saved ticket. Its trained state
            must fit ``model.state_dict()`` (without mask buffers).
        device: target device (default: where ``model``'s parameters are, else CPU). Routes
            are timed there.
        example_inputs: a tensor, a tuple of positional arguments or a dict of keyword
            arguments for ``model``; required. Layer inputs are captured from this forward
            pass, routes are timed on them, and the compiled output is verified on them.
        routes: ``None`` (all routes), a list of route names to consider (``"dense"`` is
            always one), or a mapping ``layer name or fnmatch pattern -> route`` that forces
            routes (still verified and timed; a forced route may be slower than dense).
            Route names: ``"dense"``, ``"csr"``, ``"channel"``, ``"block"``, ``"2:4"``.
        backend: sparselth kernel backend for the CSR route (``"auto"``, ``"cpp"``,
            ``"reference"``, ``"triton"``, ``"cuda"``).
        budget_s: timing budget per layer (seconds, all candidates together).
        e2e_budget_s: timing budget of the end-to-end comparison.
        min_gain: a sparse route must be at least this fraction faster than dense.
        tolerance: accepted ``max|out - ref| / max|ref|`` (default by dtype: 1e-4 for
            float32, 1e-9 for float64).
        progress: show a progress bar over the layers.

    Returns:
        ``(compiled_model, report)``: the compiled model in eval mode on ``device``, and a
        :class:`CompileReport`.

    Raises:
        TypeError / ValueError: bad arguments (the message names the argument), e.g. a
            ticket that does not fit the model or missing ``example_inputs``.
        CompileError: the compiled model's output differs from the masked dense model's.

    Example::

        compiled, report = sparselth.compile(model, ticket, example_inputs=torch.randn(64, 784))
        print(report)                        # per-layer table, totals, end to end
        report.end_to_end["realised_savings"]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(ticket, (str, Path)):
        ticket = Ticket.load(ticket)
    if not isinstance(ticket, Ticket):
        raise TypeError(f"compile: ticket must be a sparselth.Ticket or the path of a saved one, "
                        f"got {type(ticket).__name__}")
    _check_inputs(example_inputs)
    if not isinstance(backend, str) or backend not in ("auto", "reference", "cpp", "triton",
                                                       "cuda"):
        raise ValueError(f"compile: backend must be 'auto', 'reference', 'cpp', 'triton' or "
                         f"'cuda', got {backend!r}")
    allowed, forced = _parse_routes(routes)
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"compile: device {device!r} is not a torch device: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"compile: device {device} requested but CUDA is not available")

    # -- masked dense reference (the ticket on a copy of the model)
    masked = copy.deepcopy(model)
    try:
        ticket.apply_to(masked)
    except ValueError as e:
        raise ValueError(f"compile: ticket does not fit the model: {e}") from e
    masked = masked.to(device).eval()
    masks = {k: v.to(device) for k, v in ticket.masks.items()}
    inputs = _map_tensors(example_inputs, lambda t: t.to(device))
    dtype = next((p.dtype for p in masked.parameters()), torch.float32)
    tol = float(tolerance) if tolerance is not None else _TOL.get(dtype, 1e-4)

    # -- capture each prunable layer's input
    layer_names = [n for n, m in masked.named_modules() if type(m) in _PRUNABLE]
    captured: dict[str, tuple] = {}
    order: list[str] = []  # prunable layers in the order example_inputs first calls them

    def make_hook(name):
        def hook(mod, args, kwargs):
            if name not in captured:
                order.append(name)
                captured[name] = (tuple(a.detach() if isinstance(a, Tensor) else a
                                        for a in args), dict(kwargs))
        return hook

    handles = [masked.get_submodule(n).register_forward_pre_hook(make_hook(n), with_kwargs=True)
               for n in layer_names]
    try:
        with torch.no_grad():
            try:
                ref_out = _call(masked, inputs)
            except Exception as e:
                raise ValueError(f"compile: the model fails on example_inputs: "
                                 f"{type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    macs = count_macs(masked, inputs)

    # -- the baseline: masks folded in, plain modules
    dense_model = copy.deepcopy(masked)
    remove(dense_model)
    dense_model.eval()
    compiled = copy.deepcopy(dense_model)
    if callable(getattr(compiled, "compact_graph", None)):
        # graph models (sparselth.models.gnn): drop the pruned edges from the stored graph,
        # so they cost nothing; verified below like every route
        compiled.compact_graph()

    reports: list[LayerReport] = []
    noncontig: list[str] = []  # swapped layers whose output is a non-contiguous view
    from tqdm.auto import tqdm

    bar = tqdm(layer_names, desc="compile", unit="layer", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        dense_mod = dense_model.get_submodule(name)
        mask = masks.get(f"{name}.weight")
        if mask is None:
            mask = torch.ones_like(dense_mod.weight, dtype=torch.bool)
        w = dense_mod.weight
        sparsity = 1.0 - int(mask.count_nonzero()) / max(1, mask.numel())
        mrec = macs["layers"].get(name, {})
        md, mt = int(mrec.get("macs_dense", 0)), int(mrec.get("macs", 0))
        bytes_dense = _state_bytes(dense_mod)
        rec = LayerReport(
            name=name, type=type(dense_mod).__name__, shape=list(w.shape), sparsity=sparsity,
            macs_dense=md, macs_ticket=mt, bytes_dense=bytes_dense, bytes_stored=bytes_dense,
            latency_ms={}, route="dense", impl=type(dense_mod).__name__, speedup=1.0,
            promised_speedup=(md / mt) if mt else None)
        if name not in captured:
            rec.note = "not called by example_inputs: left dense, not timed"
            rec.speedup = None
            reports.append(rec)
            continue
        args, kwargs = captured[name]
        want = _forced_route(name, forced)
        rec.forced = want is not None
        with torch.no_grad():
            ref = dense_mod(*args, **kwargs)
            # candidates: "route|implementation" -> (route, module, implementation)
            cands: dict[str, tuple[str, nn.Module, str]] = {
                "dense": ("dense", dense_mod, rec.impl)}
            ok_routes = {"dense"}
            for route in ROUTES[1:]:
                if route not in allowed or (want is not None and route != want):
                    continue
                try:
                    impls = _route_impls(route, dense_mod, mask, backend, device)
                except ValueError as e:
                    if route not in ("2:4", "block") or rec.forced:
                        rec.rejected[route] = f"not applicable: {e}"[:300]
                    continue
                why = []
                for impl, build, is_fallback in impls:
                    if is_fallback and route in ok_routes:
                        continue
                    try:
                        mod = build().to(device).eval()
                        err = _rel_error(mod(*args, **kwargs), ref)
                    except Exception as e:  # noqa: BLE001 - a failing route is reported, not fatal
                        why.append(f"{impl}: {type(e).__name__}: {e}"[:300])
                        continue
                    if not err <= tol:
                        why.append(f"{impl}: not exact: max relative error {err:.3g} > "
                                   f"{tol:.3g}")
                        continue
                    cands[f"{route}|{impl}"] = (route, mod, impl)
                    ok_routes.add(route)
                if why:
                    rec.rejected[route] = "; ".join(why)
            if want is not None and want not in ok_routes:
                why = rec.rejected.get(want, "not allowed")
                if name in forced:  # forced by exact name: the caller must hear about it
                    raise ValueError(f"compile: routes forces {want!r} on layer {name!r}, but "
                                     f"it is not applicable: {why}")
                rec.note = f"forced route {want!r} not applicable ({why}): left dense"
                want, rec.forced = None, False
            timing = _time_interleaved(
                {k: (lambda m=m, a=args, kw=kwargs: m(*a, **kw))
                 for k, (_, m, _) in cands.items()},
                device, budget_s)
        # each route's time is its fastest implementation's
        chosen: dict[str, tuple[nn.Module, str]] = {}
        for key, (route, mod, impl) in cands.items():
            t = timing[key]
            if route not in rec.latency_ms or t["ms"] < rec.latency_ms[route]:
                rec.latency_ms[route] = t["ms"]
                rec.latency_iqr_ms[route] = [t["q1_ms"], t["q3_ms"]]
                chosen[route] = (mod, impl)
        if len(cands) > len(chosen):
            rec.variants_ms = {impl: timing[key]["ms"] for key, (_, _, impl) in cands.items()}
        t_dense = rec.latency_ms["dense"]
        if want is not None:
            best = want
        else:
            best = "dense"
            for r, t in rec.latency_ms.items():
                if r != "dense" and t < (1.0 - min_gain) * t_dense and t < rec.latency_ms[best]:
                    best = r
        rec.route = best
        mod, rec.impl = chosen[best]
        rec.speedup = t_dense / rec.latency_ms[best] if rec.latency_ms[best] > 0 else None
        if best != "dense":
            with torch.no_grad():
                out_t = mod(*args, **kwargs)
            if isinstance(out_t, Tensor) and not out_t.is_contiguous():
                noncontig.append(name)
            _set_module(compiled, name, mod)
            rec.bytes_stored = _state_bytes(mod)
        reports.append(rec)
    bar.close()
    reports += _compile_embeddings(dense_model, compiled, masks, inputs, backend, device,
                                   budget_s, tol)
    compiled.eval()

    # -- output layout: a sparse layer may return a transposed view, which the next sparse
    # layer reads for free but a dense layer reads slowly; time the variants end to end
    routes_by_name = {r.name: r for r in reports}
    variants: dict[str, frozenset] = {"as returned": frozenset()}
    if noncontig:
        def feeds_sparse_linear(n: str) -> bool:
            i = order.index(n) if n in order else -1
            nxt = routes_by_name.get(order[i + 1]) if 0 <= i < len(order) - 1 else None
            return nxt is not None and nxt.type == "Linear" and nxt.route == "csr"

        heur = frozenset(n for n in noncontig if not feeds_sparse_linear(n))
        for label, chosen_set in (("contiguous before dense layers", heur),
                                  ("all contiguous", frozenset(noncontig))):
            if chosen_set not in variants.values():
                variants[label] = chosen_set
    switch = _LayoutSwitch()
    handles = [compiled.get_submodule(n).register_forward_hook(switch.hook(n))
               for n in noncontig]

    def run_variant(label: str):
        switch.active = variants[label]
        return _call(compiled, inputs)

    # -- verify end to end (every layout variant)
    err = 0.0
    with torch.no_grad():
        for label in variants:
            err = max(err, _rel_error(run_variant(label), ref_out))
    if not err <= tol:
        for h in handles:
            h.remove()
        raise CompileError(
            f"compile: the compiled model's output differs from the masked dense model's: max "
            f"relative error {err:.3g} > tolerance {tol:.3g} (routes: "
            f"{ {r.name: r.route for r in reports} })")

    # -- end to end timing and memory
    fns = {"dense": lambda: _call(dense_model, inputs)}
    for label in variants:
        fns[label] = lambda lb=label: run_variant(lb)
    with torch.no_grad():
        e2e = _time_interleaved(fns, device, e2e_budget_s)
    for h in handles:
        h.remove()
    layout = min(variants, key=lambda lb: e2e[lb]["ms"])
    for n in sorted(variants[layout]):
        compiled.get_submodule(n).register_forward_hook(_contiguous_output)
    e2e["compiled"] = e2e[layout]
    d_ms, c_ms = e2e["dense"]["ms"], e2e["compiled"]["ms"]
    speedup = d_ms / c_ms if c_ms > 0 else None
    tm_dense, tm_ticket = macs["total"]["macs_dense"], macs["total"]["macs"]
    promised = tm_dense / tm_ticket if tm_ticket else None
    end_to_end = {
        "dense_ms": d_ms, "compiled_ms": c_ms,
        "dense_iqr_ms": [e2e["dense"]["q1_ms"], e2e["dense"]["q3_ms"]],
        "compiled_iqr_ms": [e2e["compiled"]["q1_ms"], e2e["compiled"]["q3_ms"]],
        "speedup": speedup, "promised_speedup": promised,
        "realised_savings": (speedup / promised) if (speedup and promised) else None,
        "max_rel_error": err,
        # fastest samples: what each model does when it has the cores to itself (on a busy
        # machine the medians also measure the neighbours)
        "dense_min_ms": e2e["dense"]["min_ms"], "compiled_min_ms": e2e["compiled"]["min_ms"],
        "reps": e2e["dense"]["reps"],
        "layout": layout,
        "layout_ms": {lb: e2e[lb]["ms"] for lb in variants},
        "contiguous_outputs": sorted(variants[layout]),
    }
    best = (e2e["dense"]["min_ms"] / e2e["compiled"]["min_ms"]
            if e2e["compiled"]["min_ms"] > 0 else None)
    end_to_end["speedup_best"] = best
    end_to_end["realised_savings_best"] = (best / promised) if (best and promised) else None
    memory = _memory(dense_model, compiled, inputs, device)
    lat_d = sum(r.latency_ms.get("dense", 0.0) for r in reports)
    lat_c = sum(r.latency_ms.get(r.route, 0.0) for r in reports)
    totals = {
        "macs_dense": sum(r.macs_dense for r in reports),
        "macs_ticket": sum(r.macs_ticket for r in reports),
        "bytes_dense": sum(r.bytes_dense for r in reports),
        "bytes_stored": sum(r.bytes_stored for r in reports),
        "latency_dense_ms": lat_d, "latency_compiled_ms": lat_c,
        "speedup": lat_d / lat_c if lat_c > 0 else None,
    }
    mt_sum = totals["macs_ticket"]
    totals["promised_speedup"] = totals["macs_dense"] / mt_sum if mt_sum else None
    from . import ops as _ops

    meta = {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else _cpu_name()),
        "dtype": str(dtype).replace("torch.", ""),
        "backend": backend,
        "backends_available": list(_ops.backends()),
        "threads": torch.get_num_threads(),
        "load_avg_1min": _load_avg(),
        "torch": torch.__version__,
        "sparselth": _version(),
        "input_shapes": [list(t.shape) for t in _tensors(inputs)],
        "ticket_sparsity": ticket.sparsity()["overall"],
        "ticket_metadata": {k: ticket.metadata.get(k) for k in ("round", "seed", "metrics")
                            if k in ticket.metadata},
        "tolerance": tol,
        "min_gain": min_gain,
        "nn_sparse": _nn_sparse() is not None,
        "timing": "inference (torch.no_grad), warm-up then interleaved repetitions, medians",
    }
    return compiled, CompileReport(reports, totals, end_to_end, memory, meta)


def _memory(dense: nn.Module, compiled: nn.Module, inputs: Any,
            device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        out = {"method": "torch.cuda.max_memory_allocated during one forward pass"}
        for key, m in (("dense_bytes", dense), ("compiled_bytes", compiled)):
            torch.cuda.synchronize(device)
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            with torch.no_grad():
                _call(m, inputs)
            torch.cuda.synchronize(device)
            out[key] = int(torch.cuda.max_memory_allocated(device))
        out["state_dense_bytes"] = _state_bytes(dense)
        out["state_compiled_bytes"] = _state_bytes(compiled)
        return out
    return {
        "method": "parameter + buffer bytes",
        "dense_bytes": _state_bytes(dense),
        "compiled_bytes": _state_bytes(compiled),
        "note": "CPU: the allocator keeps no resettable peak, so this is the model's stored "
                "state, not activations",
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _load_avg() -> float | None:
    """The 1-minute load average (timings on a busy machine are worth less), if known."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _version() -> str:
    import sys

    return str(getattr(sys.modules.get("sparselth"), "__version__", "0"))
