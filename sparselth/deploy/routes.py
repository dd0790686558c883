"""The exact routes a pruned layer can run on, as a registry.

A route turns a dense layer (its mask already folded into the weight) and the mask into a
module that computes exactly what the masked dense layer computes. ``sparselth.compile``
builds every route that applies to a layer, verifies it on the layer's real input, times it
and keeps the fastest. The built-in routes are the deploy-time modules of
:mod:`sparselth.nn.sparse`:

========== ===================================================================== ==========
route      what runs                                                             where
========== ===================================================================== ==========
dense      the original layer with the mask folded into its weight (baseline)    always
csr        CSR weight on sparselth's kernels: ``SparseLinear``, ``SparseConv2d``  always
           / ``SparseConvTranspose2d`` (convolutions: direct kernel and im2col
           both timed)
channel    a physically smaller dense layer over the live channels               whole
           (``ChannelPrunedLinear/Conv2d/ConvTranspose2d``)                      channels
                                                                                 pruned
block      ``BlockSparseLinear`` (4x4 and 16x1 blocks)                           Linear, at
                                                                                 most half
                                                                                 the blocks
2:4        ``SemiStructuredLinear`` (2:4 sparse tensor cores)                    GPUs with
                                                                                 2:4 support
========== ===================================================================== ==========

A new route is one class registered with :func:`register_route`::

    @sparselth.deploy.register_route
    class HalfPrecision(sparselth.deploy.Route):
        name = "fp16"
        layer_types = (nn.Linear,)

        def build(self, module, mask, backend="auto", **options):
            ...  # an nn.Module equal to the masked dense layer within the tolerance
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import sparse as nn_sparse
from ..sparse.weights import is_n_m, semi_structured_available

__all__ = ["ROUTES", "Route", "layer_types", "parse_routes", "forced_route", "register_route",
           "route_names", "unregister_route"]

#: The layer types every compile considers (registered routes may add more).
PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class Route:
    """One exact way to run a pruned layer. Subclasses set :attr:`name` (and usually
    :attr:`layer_types`) and implement :meth:`build`; :meth:`unfit` says when the route cannot
    apply, :meth:`variants` lists option sets that are all built and timed (the route's time
    is its fastest variant's)."""

    #: the route's name in ``routes=`` and in the report
    name: ClassVar[str] = ""
    #: layer types it can run (exact types, as ``type(module) in layer_types``)
    layer_types: ClassVar[tuple[type[nn.Module], ...]] = PRUNABLE
    #: when True, "not applicable" is reported only for a layer where the route was forced
    quiet: ClassVar[bool] = False

    def unfit(self, module: nn.Module, mask: Tensor, device: torch.device) -> str | None:
        """Why this route cannot run ``module`` with ``mask`` on ``device``; None when it can."""
        return None

    def applies(self, module: nn.Module, mask: Tensor, device: Any = "cpu") -> bool:
        return (type(module) in self.layer_types
                and self.unfit(module, mask, torch.device(device)) is None)

    def variants(self, module: nn.Module, mask: Tensor) -> Sequence[dict[str, Any]]:
        """Option sets for :meth:`build`; each is verified and timed."""
        return ({},)

    def build(self, module: nn.Module, mask: Tensor, backend: str = "auto",
              **options: Any) -> nn.Module:
        """A module computing ``module`` with ``mask`` applied (``module``'s weight already
        holds zeros where ``mask`` is False)."""
        raise NotImplementedError

    def describe(self, built: nn.Module | None, options: Mapping[str, Any]) -> str:
        """The implementation's name in the report, e.g. ``sparselth.nn.SparseConv2d(route=direct)``
        (``built=None``: the route's name with the options, for a build that failed)."""
        cls = type(built)
        if built is None:
            name = self.name
        elif cls.__module__.startswith("torch.nn"):
            name = cls.__name__
        elif cls.__module__.startswith("sparselth.nn"):
            name = f"sparselth.nn.{cls.__name__}"
        else:
            name = f"{cls.__module__}.{cls.__qualname__}"
        if not options:
            return name
        shown = ", ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
                          for k, v in options.items())
        return f"{name}({shown})"

    def __repr__(self) -> str:
        return f"<route {self.name!r}: {type(self).__name__}>"


ROUTES: dict[str, Route] = {}
"""The registered routes by name, in the order they are considered (``dense`` first)."""


def register_route(cls: type[Route], *, replace: bool = False) -> type[Route]:
    """Register a :class:`Route` subclass (usable as a class decorator); returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Route)):
        raise TypeError(f"register_route: expected a Route subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"register_route: {cls.__name__}.name must be a non-empty string")
    if cls.name in ROUTES and not replace:
        raise ValueError(f"register_route: a route named {cls.name!r} is already registered "
                         f"({type(ROUTES[cls.name]).__name__}); pass replace=True to swap it")
    if cls.name == "dense" and ROUTES:
        raise ValueError("register_route: the dense route is the baseline and cannot be replaced")
    ROUTES[cls.name] = cls()
    return cls


def unregister_route(name: str) -> None:
    """Remove a registered route (the dense baseline stays)."""
    if name == "dense":
        raise ValueError("unregister_route: the dense route is the baseline and cannot be removed")
    ROUTES.pop(name)


def route_names() -> tuple[str, ...]:
    return tuple(ROUTES)


def layer_types() -> tuple[type[nn.Module], ...]:
    """The layer types compile considers: the built-in prunable ones and every route's."""
    types = list(PRUNABLE)
    for route in ROUTES.values():
        types += [t for t in route.layer_types if t not in types]
    return tuple(types)


# --------------------------------------------------------------------------- built-in routes


@register_route
class DenseRoute(Route):
    """The baseline: the dense layer itself, with the mask folded into its weight."""

    name = "dense"

    def applies(self, module: nn.Module, mask: Tensor, device: Any = "cpu") -> bool:
        return True

    def build(self, module, mask, backend="auto", **options):
        return module


@register_route
class CSRRoute(Route):
    """CSR weight on sparselth's kernels; convolutions time the direct kernel and im2col."""

    name = "csr"
    _classes = {nn.Linear: nn_sparse.SparseLinear, nn.Conv2d: nn_sparse.SparseConv2d,
                nn.ConvTranspose2d: nn_sparse.SparseConvTranspose2d}

    def variants(self, module, mask):
        if isinstance(module, nn.Linear):
            return ({},)
        return ({"route": "direct"}, {"route": "im2col"})

    def build(self, module, mask, backend="auto", **options):
        return self._classes[type(module)].from_dense(module, mask, backend=backend, **options)


@register_route
class ChannelRoute(Route):
    """A physically smaller dense layer over the live input and output channels."""

    name = "channel"
    _classes = {nn.Linear: nn_sparse.ChannelPrunedLinear,
                nn.Conv2d: nn_sparse.ChannelPrunedConv2d,
                nn.ConvTranspose2d: nn_sparse.ChannelPrunedConvTranspose2d}

    def unfit(self, module, mask, device):
        if getattr(module, "groups", 1) != 1:
            return f"groups={module.groups} (the channel route needs groups == 1)"
        # the weight's dims 0 and 1 are (out, in), or (in, out) for a transposed convolution
        keep = mask.reshape(mask.shape[0], mask.shape[1], -1).any(2)
        if bool(keep.any(1).all()) and bool(keep.any(0).all()):
            return "no whole channel is pruned"
        return None

    def build(self, module, mask, backend="auto", **options):
        return self._classes[type(module)].from_dense(module, mask)


def _block_density(mask: Tensor, block: tuple[int, int]) -> float:
    """Fraction of the ``block`` tiles of a 2-D mask holding any kept entry."""
    bh, bw = block
    ph, pw = (-mask.shape[0]) % bh, (-mask.shape[1]) % bw
    m = F.pad(mask.float(), (0, pw, 0, ph)).bool() if ph or pw else mask
    tiles = m.reshape(m.shape[0] // bh, bh, m.shape[1] // bw, bw).any(3).any(1)
    return float(tiles.float().mean()) if tiles.numel() else 0.0


@register_route
class BlockRoute(Route):
    """Block-sparse weight; only block patterns with at most half the blocks kept are tried
    (denser ones cannot beat dense or CSR)."""

    name = "block"
    layer_types = (nn.Linear,)
    quiet = True
    blocks = ((4, 4), (16, 1))

    def _sparse_enough(self, mask: Tensor) -> list[tuple[int, int]]:
        return [b for b in self.blocks if _block_density(mask, b) <= 0.5]

    def unfit(self, module, mask, device):
        if not self._sparse_enough(mask):
            return "more than half of the 4x4 and 16x1 blocks hold a kept weight"
        return None

    def variants(self, module, mask):
        return [{"block": b} for b in self._sparse_enough(mask)]

    def build(self, module, mask, backend="auto", **options):
        return nn_sparse.BlockSparseLinear.from_dense(module, mask, **options)


@register_route
class SemiStructuredRoute(Route):
    """2:4 sparse tensor cores (NVIDIA GPUs of compute capability >= 8.0)."""

    name = "2:4"
    layer_types = (nn.Linear,)
    quiet = True

    def unfit(self, module, mask, device):
        if not semi_structured_available(device):
            return "2:4 needs a CUDA GPU with compute capability >= 8.0"
        if not is_n_m(mask, 2, 4):
            return "the mask is not 2:4"
        return None

    def build(self, module, mask, backend="auto", **options):
        return nn_sparse.SemiStructuredLinear.from_dense(module, mask)


# --------------------------------------------------------------------------- routes= argument


def parse_routes(routes: Any) -> tuple[set[str], dict[str, str]]:
    """``compile``'s ``routes=`` as (allowed route names, {layer name or pattern: forced route})."""
    names = route_names()
    if routes is None:
        return set(names), {}
    if isinstance(routes, str):
        routes = [routes]
    if isinstance(routes, Mapping):
        for k, v in routes.items():
            if not isinstance(k, str) or v not in names:
                raise ValueError(f"compile: routes maps layer names (or fnmatch patterns) to one "
                                 f"of {names}; got {k!r}: {v!r}")
        return set(names), dict(routes)
    if isinstance(routes, Sequence):
        bad = [r for r in routes if r not in names]
        if bad:
            raise ValueError(f"compile: routes must be names from {names}, got {bad}")
        return set(routes) | {"dense"}, {}
    raise TypeError(f"compile: routes must be None, a list of route names or a mapping "
                    f"layer -> route, got {type(routes).__name__}")


def forced_route(name: str, forced: Mapping[str, str]) -> str | None:
    """The route ``forced`` assigns to layer ``name`` (exact name first, then patterns)."""
    if name in forced:
        return forced[name]
    for pattern, route in forced.items():
        if fnmatch.fnmatchcase(name, pattern):
            return route
    return None
