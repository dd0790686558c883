"""What a (masked) model costs: MACs per layer, parameters, bytes.

MACs and parameters are measured with forward hooks on example inputs. Per call of a
layer, with ``nnz`` = kept weight entries (from masks; all entries if the weight has no
mask):

* ``Linear``: ``rows * nnz`` with ``rows = input.numel() / in_features``;
* ``Conv{1,2,3}d``: ``(output.numel() / out_channels) * nnz`` (every output position
  multiplies each kept weight once; multiplications with padding are counted, the usual
  convention);
* ``ConvTranspose{1,2,3}d``: ``(input.numel() / in_channels) * nnz`` (every input position
  scatters through each kept weight once);
* ``Embedding``/``EmbeddingBag``: 0 MACs (a gather); the number of looked-up rows is
  reported as ``lookups``.

``macs_dense`` is the same with ``nnz = weight.numel()``. Biases are parameters but not
counted as MACs. ``params`` counts the kept entries of masked parameters and all entries of
the others.

Masks are read from the model by the buffer convention: a buffer ``<attr>_mask`` shaped like
the parameter ``<attr>`` (installed by ``sparselth.prune.apply``, or the own mask of a
``sparselth.nn`` ``Masked*`` layer), or ``torch.nn.utils.prune``'s ``<attr>_orig`` parameter
with its ``<attr>_mask`` buffer. An explicit mapping ``name -> mask`` (a
``sparselth.prune.Masks`` is one) replaces them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.embedding import CompressedEmbedding

__all__ = ["count_macs", "count_params", "embedding_bytes", "state_bytes", "tensor_bytes"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_EMB = (nn.Embedding, nn.EmbeddingBag)
COUNTED_TYPES = (nn.Linear,) + _CONV + _CONVT + _EMB


# --------------------------------------------------------------------------- masks


def _parameters(model: nn.Module, shared_once: bool = True):
    """``(logical name, module, parameter)`` for every parameter (a tensor shared by several
    modules once unless ``shared_once=False``); ``torch.nn.utils.prune``'s ``<attr>_orig`` is
    named ``<attr>``."""
    seen = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr, p in module._parameters.items():
            if p is None or (shared_once and id(p) in seen):
                continue
            seen.add(id(p))
            yield prefix + attr.removesuffix("_orig"), module, p


def _installed_masks(model: nn.Module) -> dict[str, Tensor]:
    """The masks on ``model`` by the buffer convention (module docstring)."""
    out = {}
    for name, module, p in _parameters(model):
        buf = module._buffers.get(f"{name.rpartition('.')[2]}_mask")
        if isinstance(buf, Tensor) and buf.shape == p.shape:
            out[name] = buf
    return out


def _masks_for(model: nn.Module, masks: Mapping[str, Tensor] | None) -> Mapping[str, Tensor]:
    """``masks`` checked against ``model`` (names, shapes, 0/1 values), or the installed
    masks when None."""
    if masks is None:
        return _installed_masks(model)
    if not isinstance(masks, Mapping):
        raise TypeError(
            f"masks must be a Masks or a mapping name -> tensor, got {type(masks).__name__}"
        )
    shapes = {name: p.shape for name, _, p in _parameters(model, shared_once=False)}
    for name, m in masks.items():
        if not isinstance(m, Tensor):
            raise TypeError(f"masks[{name!r}]: expected a torch.Tensor, got {type(m).__name__}")
        if name not in shapes:
            raise ValueError(f"masks: no parameter named {name!r} in the model")
        if m.shape != shapes[name]:
            raise ValueError(f"masks[{name!r}]: shape {tuple(m.shape)} does not match the "
                             f"parameter's shape {tuple(shapes[name])}")
        if m.dtype != torch.bool and bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"masks[{name!r}]: values other than 0 and 1")
    return masks


def _kept_counter(masks: Mapping[str, Tensor]):
    def kept(name: str, p: Tensor) -> int:
        m = masks.get(name)
        return int(m.count_nonzero()) if m is not None else p.numel()

    return kept


# --------------------------------------------------------------------------- parameters


def count_params(model: nn.Module, masks: Mapping[str, Tensor] | None = None) -> dict[str, int]:
    """``{"params_dense", "params"}``: all parameter entries of ``model`` (shared tensors
    once) and the kept ones (masked parameters count their kept entries).

    Example::

        count_params(model)["params"] / count_params(model)["params_dense"]   # kept fraction
    """
    return _param_counts(model, _kept_counter(_masks_for(model, masks)))


def _param_counts(model: nn.Module, kept) -> dict[str, int]:
    dense = total = 0
    for name, _, p in _parameters(model):
        dense += p.numel()
        total += kept(name, p)
    return {"params_dense": dense, "params": total}


# --------------------------------------------------------------------------- MACs


def _call(model: nn.Module, example_inputs: Any):
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _weight(module: nn.Module) -> Tensor | None:
    w = module._parameters.get("weight")
    return module._parameters.get("weight_orig") if w is None else w


def _layer_records(model: nn.Module, kept) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Per counted layer: its record (parameters filled in, MACs zero) and its kept weights."""
    layers: dict[str, dict[str, Any]] = {}
    weight_nnz: dict[str, int] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, COUNTED_TYPES):
            continue
        prefix = f"{module_name}." if module_name else ""
        pd = pk = 0
        for attr, p in module._parameters.items():
            if p is not None:
                pd += p.numel()
                pk += kept(prefix + attr.removesuffix("_orig"), p)
        w = _weight(module)
        nnz = kept(prefix + "weight", w) if w is not None else 0
        weight_nnz[module_name] = nnz
        layers[module_name] = {
            "type": type(module).__name__,
            "calls": 0,
            "macs_dense": 0,
            "macs": 0,
            "lookups": 0,
            "params_dense": pd,
            "params": pk,
            "weight_sparsity": (1.0 - nnz / w.numel()) if w is not None and w.numel() else 0.0,
        }
    return layers, weight_nnz


def _mac_hook(rec: dict[str, Any], nnz: int):
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        rec["calls"] += 1
        w = _weight(module)
        numel = w.numel() if w is not None else 0
        x = inputs[0] if inputs else None
        if isinstance(module, nn.Linear):
            rows = x.numel() // module.in_features if module.in_features else 0
        elif isinstance(module, _CONV):
            rows = output.numel() // module.out_channels
        elif isinstance(module, _CONVT):
            rows = x.numel() // module.in_channels
        else:  # embeddings
            rec["lookups"] += int(x.numel()) if isinstance(x, Tensor) else 0
            rows = 0
        rec["macs_dense"] += rows * numel
        rec["macs"] += rows * nnz

    return hook


def count_macs(
    model: nn.Module,
    example_inputs: Any,
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Run ``model`` once on ``example_inputs`` (a tensor, a tuple of positional arguments
    or a dict of keyword arguments) and count MACs and parameters per layer.

    The forward runs under ``torch.no_grad()`` in eval mode (modes are restored after) and
    inside ``torch.random.fork_rng``, so it changes neither the model nor the global RNG.
    ``masks`` default: those installed on the model (module docstring).

    Returns::

        {"layers": {module_name: {"type", "calls", "macs_dense", "macs", "lookups",
                                  "params_dense", "params", "weight_sparsity"}},
         "total": {"macs_dense", "macs", "params_dense", "params"},
         "model_params_dense": int, "model_params": int}

    Example::

        info = count_macs(model, torch.randn(1, 3, 32, 32))
        info["total"]["macs"] / info["total"]["macs_dense"]
    """
    kept = _kept_counter(_masks_for(model, masks))
    layers, weight_nnz = _layer_records(model, kept)
    handles = []
    modes = {m: m.training for m in model.modules()}
    try:
        for module_name, module in model.named_modules():
            if module_name in layers and isinstance(module, COUNTED_TYPES):
                hook = _mac_hook(layers[module_name], weight_nnz[module_name])
                handles.append(module.register_forward_hook(hook))
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            _call(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t

    total = {
        k: sum(r[k] for r in layers.values())
        for k in ("macs_dense", "macs", "params_dense", "params")
    }
    params = _param_counts(model, kept)
    return {"layers": layers, "total": total, "model_params_dense": params["params_dense"],
            "model_params": params["params"]}


# --------------------------------------------------------------------------- bytes


def tensor_bytes(t: Tensor) -> int:
    """Bytes a tensor stores: ``numel * itemsize`` for a dense tensor, 0 for a torch sparse
    layout, the sum over the inner tensors of a tensor subclass (e.g. a 2:4 weight)."""
    if type(t) is Tensor or type(t) is nn.Parameter:
        return t.numel() * t.element_size() if t.layout == torch.strided else 0
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(t, a)) for a in names
                   if isinstance(getattr(t, a, None), Tensor))
    return t.numel() * t.element_size()


def state_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)
    return total


def embedding_bytes(weight: Tensor, mask: Tensor | None) -> dict[str, Any]:
    """Bytes of an embedding table dense (``numel * itemsize``) and stored by
    ``CompressedEmbedding.from_masked(weight, mask)`` (the smallest of its row-compact,
    per-row CSR and per-row bitmask formats, indices included)."""
    w = weight.detach()
    m = torch.ones_like(w, dtype=torch.bool) if mask is None else mask.detach().bool()
    comp = CompressedEmbedding.from_masked(w, m)
    return {"bytes_dense": w.numel() * w.element_size(), "bytes_stored": int(comp.stored_bytes),
            "bytes_format": comp.format, "bytes_method": "CompressedEmbedding.from_masked"}
