"""MAC and parameter counts of a (masked) model, measured with forward hooks on example
inputs.

Per call of a layer, with ``nnz`` = kept weight entries (from masks; all entries if the
weight has no mask):

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .masks import _as_masks, from_torch_prune, masks_of

__all__ = ["count_macs"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_EMB = (nn.Embedding, nn.EmbeddingBag)
COUNTED_TYPES = (nn.Linear,) + _CONV + _CONVT + _EMB


def _call(model: nn.Module, example_inputs: Any):
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def count_macs(
    model: nn.Module,
    example_inputs: Any,
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Run ``model`` once on ``example_inputs`` (a tensor, a tuple of positional arguments
    or a dict of keyword arguments) and count MACs and parameters per layer.

    The forward runs under ``torch.no_grad()`` in eval mode (modes are restored after) and
    inside ``torch.random.fork_rng``, so it changes neither the model nor the global RNG.
    ``masks`` default: those installed on the model by ``apply`` (or by
    ``torch.nn.utils.prune``).

    Returns::

        {"layers": {module_name: {"type", "calls", "macs_dense", "macs", "lookups",
                                  "params_dense", "params", "weight_sparsity"}},
         "total": {"macs_dense", "macs", "params_dense", "params"},
         "model_params_dense": int, "model_params": int}

    Example::

        info = count_macs(model, torch.randn(1, 3, 32, 32))
        info["total"]["macs"] / info["total"]["macs_dense"]
    """
    if masks is None:
        masks = masks_of(model)
        if len(masks) == 0:
            masks = from_torch_prune(model)
    else:
        masks = _as_masks(masks, model)

    def kept(name: str, p: Tensor) -> int:
        m = masks.get(name)
        return int(m.count_nonzero()) if m is not None else p.numel()

    # parameter counts per module (direct parameters only, torch-prune aware)
    layers: dict[str, dict[str, Any]] = {}
    weight_nnz: dict[str, int] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, COUNTED_TYPES):
            continue
        prefix = f"{module_name}." if module_name else ""
        pd = pk = 0
        for attr, p in module._parameters.items():
            if p is None:
                continue
            logical = attr.removesuffix("_orig")
            pd += p.numel()
            pk += kept(prefix + logical, p)
        w = module._parameters.get("weight")
        if w is None:
            w = module._parameters.get("weight_orig")
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

    def make_hook(module_name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            rec = layers[module_name]
            rec["calls"] += 1
            w = module._parameters.get("weight")
            if w is None:
                w = module._parameters.get("weight_orig")
            numel = w.numel() if w is not None else 0
            nnz = weight_nnz[module_name]
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

    handles = []
    modes = {m: m.training for m in model.modules()}
    try:
        for module_name, module in model.named_modules():
            if module_name in layers and isinstance(module, COUNTED_TYPES):
                handles.append(module.register_forward_hook(make_hook(module_name)))
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
    mpd = mpk = 0
    seen = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr, p in module._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            logical = attr.removesuffix("_orig")
            mpd += p.numel()
            mpk += kept(prefix + logical, p)
    return {"layers": layers, "total": total, "model_params_dense": mpd, "model_params": mpk}
