"""Binary masks on model parameters: the ``Masks`` type, applying/removing masks on a
model, sparsity accounting, and interchange with ``torch.nn.utils.prune``.

How a mask is applied (``apply``)
---------------------------------
For a parameter ``<module>.<attr>`` (usually ``fc.weight``):

* the mask is stored on the module as a bool buffer ``<attr>_mask`` (``fc.weight_mask``),
  persistent, so it travels with ``state_dict()`` and ``.to(device)``;
* the weight is zeroed **once, in place** where the mask is False (``masked_fill_``);
* a gradient hook on the parameter multiplies its gradient by the mask, so pruned entries
  get exactly zero gradient (also for sparse embedding gradients);
* a forward pre-hook on the module re-attaches that gradient hook if the parameter object
  was replaced (``copy.deepcopy``, ``load_state_dict(assign=True)``), which drops tensor
  hooks.

So the forward pass uses the plain ``weight`` — no ``weight_orig * mask`` product and no
per-step copy of the weight, unlike ``torch.nn.utils.prune``. The dense values of pruned
entries are therefore *not* kept in the model; rewinding restores them from a saved state
(the IMP driver and ``Ticket`` keep the states needed).

Optimizers: with a masked (zero) gradient, plain SGD, SGD with momentum and coupled weight
decay (``wd * w`` is 0 for a zero weight), Adam and AdamW all leave pruned weights at
exactly zero *provided their state for those entries is zero*, which holds when the masks
are applied before the optimizer is built. If the optimizer already carries momentum for
now-pruned entries, call ``reapply(model, optimizer)`` once (it zeroes the masked entries
of the weights and of every optimizer state tensor shaped like the weight), or install
``hook_optimizer(optimizer, model)`` to do so after every ``step()``.

Mask names are the parameter names of ``model.named_parameters()`` (``"0.weight"``,
``"encoder.layers.1.linear.weight"``). Parameters pruned by ``torch.nn.utils.prune`` are
named by their logical name (``"fc.weight"``, not ``"fc.weight_orig"``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Masks",
    "apply",
    "from_torch_prune",
    "hook_optimizer",
    "is_masked",
    "masks_of",
    "reapply",
    "remove",
    "sparsity",
    "state_without_masks",
    "to_torch_prune",
]

# Attribute stored in module.__dict__ listing the attrs whose masks this library owns.
_ATTRS_KEY = "_sparselth_mask_attrs"


# --------------------------------------------------------------------------- resolving names


def _split(name: str) -> tuple[str, str]:
    module_name, _, attr = name.rpartition(".")
    return module_name, attr


def _get_module(model: nn.Module, module_name: str) -> nn.Module:
    if not module_name:
        return model
    try:
        return model.get_submodule(module_name)
    except AttributeError as e:
        raise ValueError(f"no module named {module_name!r} in the model") from e


def _torch_pruned(module: nn.Module, attr: str) -> bool:
    return f"{attr}_orig" in module._parameters and f"{attr}_mask" in module._buffers


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str, Tensor]:
    """Module, attribute and parameter tensor for a parameter name (torch-prune aware)."""
    if not isinstance(name, str):
        raise TypeError(f"parameter names must be str, got {type(name).__name__}")
    module_name, attr = _split(name)
    module = _get_module(model, module_name)
    p = module._parameters.get(attr)
    if p is None and _torch_pruned(module, attr):
        p = module._parameters[f"{attr}_orig"]
    if p is None:
        raise ValueError(f"no parameter named {name!r} in the model")
    return module, attr, p


def _param_shapes(model: nn.Module) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr, p in module._parameters.items():
            if p is None:
                continue
            if attr.endswith("_orig") and _torch_pruned(module, attr[: -len("_orig")]):
                attr = attr[: -len("_orig")]
            shapes.setdefault(prefix + attr, p.shape)
    return shapes


# --------------------------------------------------------------------------- Masks


class Masks(MutableMapping):
    """Mapping ``parameter name -> bool tensor`` (True = keep, False = pruned).

    Every assignment is validated: the value must be a ``torch.bool`` tensor, and when the
    masks are bound to a model (``Masks(..., model=model)``) the name must be one of the
    model's parameters and the shape must equal that parameter's shape.

    Example::

        masks = Masks({"fc.weight": torch.ones(3, 4, dtype=torch.bool)}, model=model)
        masks["fc.weight"][0, 0] = False
        masks.sparsity()["overall"]     # 1/12
        sparselth.prune.apply(model, masks)
    """

    def __init__(
        self,
        masks: Mapping[str, Tensor] | None = None,
        *,
        model: nn.Module | None = None,
        shapes: Mapping[str, Any] | None = None,
    ):
        self._masks: dict[str, Tensor] = {}
        self._shapes: dict[str, torch.Size] | None = None
        if model is not None:
            self._shapes = _param_shapes(model)
        if shapes is not None:
            self._shapes = {k: torch.Size(v) for k, v in shapes.items()}
        if masks is not None:
            for k, v in masks.items():
                self[k] = v

    # -- mapping protocol
    def __getitem__(self, name: str) -> Tensor:
        return self._masks[name]

    def __setitem__(self, name: str, mask: Tensor) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Masks: names must be str, got {type(name).__name__}")
        if not isinstance(mask, Tensor):
            raise TypeError(f"Masks[{name!r}]: expected a torch.Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"Masks[{name!r}]: expected dtype torch.bool, got {mask.dtype} "
                "(use .bool(), or Masks.from_state_dict for 0/1 tensors)"
            )
        if mask.is_sparse or mask.layout != torch.strided:
            raise TypeError(f"Masks[{name!r}]: expected a dense (strided) tensor")
        if self._shapes is not None:
            if name not in self._shapes:
                raise ValueError(f"Masks: no parameter named {name!r} in the model")
            if mask.shape != self._shapes[name]:
                raise ValueError(
                    f"Masks[{name!r}]: shape {tuple(mask.shape)} does not match the "
                    f"parameter's shape {tuple(self._shapes[name])}"
                )
        self._masks[name] = mask.detach()

    def __delitem__(self, name: str) -> None:
        del self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        s = self.sparsity()
        return f"Masks({len(self)} tensors, {s['total']} entries, sparsity {s['overall']:.4f})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if set(self.keys()) != set(other.keys()):
            return False
        for k, v in self.items():
            o = other[k]
            if not isinstance(o, Tensor) or o.shape != v.shape or o.dtype != v.dtype:
                return False
            if not torch.equal(v.cpu(), o.cpu()):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # -- constructors
    @classmethod
    def ones(
        cls,
        model: nn.Module,
        include: Any = None,
        exclude: Any = None,
    ) -> Masks:
        """All-True masks for the parameters selected by ``include``/``exclude``
        (default: weights of Linear, Conv*, ConvTranspose*, Embedding, EmbeddingBag)."""
        from .criteria import select

        out = cls(model=model)
        for name in select(model, include=include, exclude=exclude):
            _, _, p = _resolve(model, name)
            out[name] = torch.ones(p.shape, dtype=torch.bool, device=p.device)
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], model: nn.Module | None = None) -> Masks:
        """Build from plain tensors: bool, or numeric tensors holding only 0 and 1."""
        out = cls(model=model)
        for name, t in state.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"Masks[{name!r}]: expected a torch.Tensor, got {type(t).__name__}")
            if t.dtype != torch.bool:
                if t.is_floating_point() or t.is_complex() or t.dtype in _INT_DTYPES:
                    bad = (t != 0) & (t != 1)
                    if bool(bad.any()):
                        raise ValueError(f"Masks[{name!r}]: values other than 0 and 1")
                    t = t != 0
                else:
                    raise TypeError(f"Masks[{name!r}]: cannot convert dtype {t.dtype} to a mask")
            out[name] = t
        return out

    # -- exports and helpers
    def state_dict(self) -> dict[str, Tensor]:
        """Plain ``{name: bool tensor}`` copies (contiguous, same device)."""
        return {k: v.clone().contiguous() for k, v in self._masks.items()}

    def clone(self) -> Masks:
        out = Masks(shapes=self._shapes) if self._shapes is not None else Masks()
        for k, v in self._masks.items():
            out[k] = v.clone()
        return out

    def to(self, device: str | torch.device) -> Masks:
        out = Masks(shapes=self._shapes) if self._shapes is not None else Masks()
        for k, v in self._masks.items():
            out[k] = v.to(device)
        return out

    def bind(self, model: nn.Module) -> Masks:
        """A copy validated against ``model``'s parameter names and shapes."""
        return Masks(self._masks, model=model)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{name: (zeros, total)}``."""
        out = {}
        for k, v in self._masks.items():
            total = v.numel()
            out[k] = (total - int(v.count_nonzero()), total)
        return out

    def numel(self) -> int:
        """Total number of masked entries (kept + pruned)."""
        return sum(v.numel() for v in self._masks.values())

    def nnz(self) -> int:
        """Number of kept (True) entries."""
        return sum(int(v.count_nonzero()) for v in self._masks.values())

    def sparsity(self) -> dict[str, Any]:
        """``{"overall": float, "layers": {name: float}, "zeros": int, "total": int}``."""
        return _sparsity_from_counts(self.counts())

    def apply(self, model: nn.Module) -> nn.Module:
        """Same as ``sparselth.prune.apply(model, self)``."""
        return apply(model, self)

    def reapply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero, in place, the entries of ``model``'s parameters that these masks prune, and
        the same entries of ``optimizer``'s state tensors shaped like those parameters
        (momentum, Adam moments), so that no later step can revive them."""
        with torch.no_grad():
            for name, mask in self._masks.items():
                _, _, p = _resolve(model, name)
                m = mask.to(p.device)
                p.masked_fill_(~m, 0)
                if optimizer is not None:
                    _zero_optimizer_state(optimizer, p, m)


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _sparsity_from_counts(counts: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    zeros = sum(z for z, _ in counts.values())
    total = sum(t for _, t in counts.values())
    return {
        "overall": zeros / total if total else 0.0,
        "layers": {k: (z / t if t else 0.0) for k, (z, t) in counts.items()},
        "zeros": zeros,
        "total": total,
    }


def _as_masks(masks: Mapping[str, Tensor], model: nn.Module) -> Masks:
    if isinstance(masks, Masks):
        return masks.bind(model)
    if not isinstance(masks, Mapping):
        raise TypeError(
            f"masks must be a Masks or a mapping name -> tensor, got {type(masks).__name__}"
        )
    return Masks.from_state_dict(masks, model=model)


# --------------------------------------------------------------------------- hooks


class _GradMask:
    """Gradient hook: multiplies the gradient of ``module.<attr>`` by ``module.<attr>_mask``.

    Holds the module weakly and reads the buffer at call time, so ``.to(device)`` and
    in-place mask updates are seen."""

    __slots__ = ("attr", "module_ref")

    def __init__(self, module: nn.Module, attr: str):
        self.module_ref = weakref.ref(module)
        self.attr = attr

    def __call__(self, grad: Tensor) -> Tensor:
        module = self.module_ref()
        if module is None:
            return grad
        mask = module._buffers.get(f"{self.attr}_mask")
        if mask is None or self.attr not in module.__dict__.get(_ATTRS_KEY, ()):
            return grad
        if grad.is_sparse:
            grad = grad.coalesce()
            idx = grad.indices()
            keep = mask[tuple(idx)]
            vals = grad.values() * keep.reshape(
                keep.shape + (1,) * (grad.values().dim() - keep.dim())
            )
            return torch.sparse_coo_tensor(
                idx, vals, grad.shape, is_coalesced=True, check_invariants=False
            )
        return grad * mask


def _find_grad_hooks(module: nn.Module, attr: str, p: Tensor):
    hooks = getattr(p, "_backward_hooks", None) or {}
    return [
        k
        for k, h in hooks.items()
        if isinstance(h, _GradMask) and h.attr == attr and h.module_ref() is module
    ]


def _attach_grad_hook(module: nn.Module, attr: str) -> None:
    p = module._parameters.get(attr)
    if p is None or not p.requires_grad:
        return
    if not _find_grad_hooks(module, attr, p):
        p.register_hook(_GradMask(module, attr))


def _detach_grad_hook(module: nn.Module, attr: str) -> None:
    p = module._parameters.get(attr)
    if p is None:
        return
    for k in _find_grad_hooks(module, attr, p):
        del p._backward_hooks[k]


def _ensure_grad_hooks(module: nn.Module, args: Any) -> None:
    """Forward pre-hook: (re)attach the gradient hooks of ``module``'s masked parameters."""
    for attr in module.__dict__.get(_ATTRS_KEY, ()):
        _attach_grad_hook(module, attr)


def _has_pre_hook(module: nn.Module) -> bool:
    return any(h is _ensure_grad_hooks for h in module._forward_pre_hooks.values())


def _zero_optimizer_state(optimizer: torch.optim.Optimizer, p: Tensor, mask: Tensor) -> None:
    state = optimizer.state.get(p)
    if not state:
        return
    for v in state.values():
        if isinstance(v, Tensor) and v.shape == p.shape and not v.is_sparse:
            v.masked_fill_(~mask.to(v.device), 0)


# --------------------------------------------------------------------------- public functions


def apply(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """Install ``masks`` on ``model`` (see the module docstring for how) and return ``model``.

    For each ``name -> mask``: registers/updates the bool buffer ``<attr>_mask`` on the
    owning module, zeroes the pruned weights once in place and makes their gradients zero.
    Parameters not named in ``masks`` are left as they are (masked or not). Calling
    ``apply`` again with new masks updates the buffers in place.

    Raises ``ValueError`` if a name is not a parameter of ``model``, a shape differs, or
    the parameter is currently pruned by ``torch.nn.utils.prune`` (convert with
    ``from_torch_prune(model, remove=True)`` first).

    Example::

        masks = sparselth.prune.magnitude(model, 0.8)
        sparselth.prune.apply(model, masks)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    """
    masks = _as_masks(masks, model)
    for name, mask in masks.items():
        module, attr, p = _resolve(model, name)
        if _torch_pruned(module, attr):
            raise ValueError(
                f"apply: {name!r} is pruned by torch.nn.utils.prune; use "
                "sparselth.prune.from_torch_prune(model, remove=True) first"
            )
        owned = module.__dict__.get(_ATTRS_KEY, ())
        buf_name = f"{attr}_mask"
        mask = mask.to(p.device)
        if attr in owned and buf_name in module._buffers:
            module._buffers[buf_name].copy_(mask)
        elif _own_mask_layer(module, buf_name, p):
            # a sparselth.nn Masked* layer: its own mask buffer becomes the installed mask
            module._buffers[buf_name] = mask.clone()
            module.__dict__[_ATTRS_KEY] = tuple(owned) + (attr,)
        else:
            if hasattr(module, buf_name):
                raise ValueError(
                    f"apply: module {_split(name)[0]!r} already has an attribute {buf_name!r}"
                )
            module.register_buffer(buf_name, mask.clone())
            module.__dict__[_ATTRS_KEY] = tuple(owned) + (attr,)
        with torch.no_grad():
            p.masked_fill_(~mask, 0)
        if not _has_pre_hook(module):
            module.register_forward_pre_hook(_ensure_grad_hooks)
        _attach_grad_hook(module, attr)
    return model


def _own_mask_layer(module: nn.Module, buf_name: str, p: Tensor) -> bool:
    """True for a layer that carries its own mask buffer (``sparselth.nn.MaskedLinear``,
    ``MaskedEmbedding``, ...: a ``set_mask`` method and a ``<attr>_mask`` buffer shaped like
    the parameter); ``apply`` then installs into that buffer instead of adding one."""
    buf = module._buffers.get(buf_name)
    return (callable(getattr(module, "set_mask", None)) and buf is not None
            and buf.shape == p.shape)


def _owned(model: nn.Module):
    for module_name, module in model.named_modules():
        for attr in module.__dict__.get(_ATTRS_KEY, ()):
            if f"{attr}_mask" in module._buffers and attr in module._parameters:
                yield (f"{module_name}.{attr}" if module_name else attr), module, attr


def is_masked(model: nn.Module) -> bool:
    """True if ``apply`` has installed at least one mask on ``model``."""
    return any(True for _ in _owned(model))


def masks_of(model: nn.Module) -> Masks:
    """Copies of the masks installed on ``model`` by ``apply`` (empty if none)."""
    out = Masks(model=model)
    for name, module, attr in _owned(model):
        out[name] = module._buffers[f"{attr}_mask"].clone()
    return out


def remove(model: nn.Module, names: Any | None = None) -> Masks:
    """Uninstall masks (all, or those in ``names``): drop the ``<attr>_mask`` buffers and
    gradient hooks. Pruned weights stay zero (the masks are baked in). Returns the removed
    masks."""
    removed = Masks()
    wanted = None if names is None else set(names)
    for name, module, attr in list(_owned(model)):
        if wanted is not None and name not in wanted:
            continue
        if _own_mask_layer(module, f"{attr}_mask", module._parameters[attr]):
            removed[name] = module._buffers[f"{attr}_mask"].clone()  # the layer keeps its mask
        else:
            removed[name] = module._buffers.pop(f"{attr}_mask")
        _detach_grad_hook(module, attr)
        left = tuple(a for a in module.__dict__.get(_ATTRS_KEY, ()) if a != attr)
        module.__dict__[_ATTRS_KEY] = left
        if not left:
            del module.__dict__[_ATTRS_KEY]
            for k in [k for k, h in module._forward_pre_hooks.items() if h is _ensure_grad_hooks]:
                del module._forward_pre_hooks[k]
    if wanted is not None and wanted - set(removed):
        raise ValueError(f"remove: not masked: {sorted(wanted - set(removed))}")
    return removed


def reapply(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Zero the masked entries of every masked weight (from the installed buffers) and, if
    ``optimizer`` is given, of its state tensors shaped like those weights. Cheap: one
    in-place ``masked_fill_`` per masked tensor."""
    with torch.no_grad():
        for _, module, attr in _owned(model):
            p = module._parameters[attr]
            m = module._buffers[f"{attr}_mask"]
            p.masked_fill_(~m, 0)
            if optimizer is not None:
                _zero_optimizer_state(optimizer, p, m)


def hook_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Call ``reapply(model, optimizer)`` after every ``optimizer.step()``.

    Needed only when the optimizer can move pruned weights despite zero gradients (state
    built before the masks, or custom update rules). Returns a handle with ``.remove()``.
    """

    def _post(opt, args, kwargs):
        reapply(model, opt)

    return optimizer.register_step_post_hook(_post)


def state_without_masks(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` without the ``<attr>_mask`` buffers installed by ``apply``
    (tensors are detached views of the model's storage; clone before mutating the model)."""
    sd = model.state_dict()
    for name, _, _ in _owned(model):
        sd.pop(f"{name}_mask", None)
    return sd


def sparsity(model_or_masks: nn.Module | Mapping[str, Tensor]) -> dict[str, Any]:
    """Sparsity overall and per layer.

    Returns ``{"overall": float, "layers": {name: float}, "zeros": int, "total": int}``,
    where sparsity = fraction of entries that are pruned (zero).

    * ``Masks`` / mapping of bool tensors: counted from the masks.
    * model: from the masks installed by ``apply``; else from ``torch.nn.utils.prune``
      masks; else the fraction of exactly-zero values in the default prunable weights
      (Linear, Conv*, ConvTranspose*, Embedding weights).
    """
    if isinstance(model_or_masks, nn.Module):
        model = model_or_masks
        masks = masks_of(model)
        if len(masks) == 0:
            masks = from_torch_prune(model)
        if len(masks) == 0:
            from .criteria import select

            counts = {}
            for name in select(model):
                _, _, p = _resolve(model, name)
                counts[name] = (p.numel() - int(torch.count_nonzero(p.detach())), p.numel())
            return _sparsity_from_counts(counts)
        return masks.sparsity()
    if isinstance(model_or_masks, Masks):
        return model_or_masks.sparsity()
    if isinstance(model_or_masks, Mapping):
        return Masks.from_state_dict(model_or_masks).sparsity()
    raise TypeError(f"sparsity: expected a model or masks, got {type(model_or_masks).__name__}")


def from_torch_prune(model: nn.Module, remove: bool = False) -> Masks:
    """Masks from ``torch.nn.utils.prune`` (modules with ``<attr>_orig`` + ``<attr>_mask``).

    Names are logical (``"fc.weight"``). With ``remove=True`` the torch reparametrisation
    is removed afterwards (``torch.nn.utils.prune.remove``: ``weight = weight_orig * mask``
    becomes a plain parameter), so the masks can then be installed with ``apply``.
    """
    found = []
    for module_name, module in model.named_modules():
        for key, buf in list(module._buffers.items()):
            if buf is None or not key.endswith("_mask"):
                continue
            attr = key[: -len("_mask")]
            if attr in module.__dict__.get(_ATTRS_KEY, ()) or not _torch_pruned(module, attr):
                continue
            name = f"{module_name}.{attr}" if module_name else attr
            found.append((name, module, attr, buf != 0))
    out = Masks(model=model)
    for name, _, _, m in found:
        out[name] = m
    if remove:
        from torch.nn.utils import prune as torch_prune

        for _, module, attr, _ in found:
            torch_prune.remove(module, attr)
    return out


def to_torch_prune(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """Install ``masks`` with ``torch.nn.utils.prune.custom_from_mask`` (for code that
    expects torch's ``weight_orig``/``weight_mask`` reparametrisation)."""
    from torch.nn.utils import prune as torch_prune

    masks = _as_masks(masks, model)
    for name, mask in masks.items():
        module, attr, p = _resolve(model, name)
        if attr in module.__dict__.get(_ATTRS_KEY, ()):
            raise ValueError(
                f"to_torch_prune: {name!r} is masked by sparselth; call remove() first"
            )
        torch_prune.custom_from_mask(module, attr, mask.to(p.device))
    return model
