"""The building blocks of UGS (:mod:`sparselth.prune.ugs`): the soft-mask initialisation, the
L1 sign sub-gradient, the global pruning rule and its schedule, the model seen through trainable
masks, and loading a pre-trained first layer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["GRAPH_MASK", "PRETRAINED_KEYS", "SoftMaskedModel", "add_l1_subgradient",
           "load_pretrained_first_layer", "prune_smallest", "soft_mask_init", "ugs_schedule"]

GRAPH_MASK = "edge_mask"


def soft_mask_init(mask: Tensor, c: float) -> Tensor:
    """``mask · (1 + u)``, ``u ~ U(-c, c)`` from torch's global RNG (float; zeros stay 0)."""
    m = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
    u = (torch.rand(m.shape, dtype=m.dtype, device=m.device) * 2 - 1) * c
    return m * (1 + u)


def add_l1_subgradient(params: Sequence[Tensor], coefficient: float,
                       where: Tensor | None = None) -> None:
    """``p.grad += coefficient · sign(p)`` for each tensor (a missing grad counts as 0): the
    sub-gradient of ``coefficient · ‖p‖₁``, 0 at 0, so pruned (zero) entries get nothing.
    ``where`` (bool, the shape of every tensor) limits it to some entries: a mini-batch step
    penalises only the entries the batch used, so entries of graphs outside the batch are not
    shrunk by the penalty alone (under Adam that would move them by ~lr per step, whatever
    the coefficient, and rank them by when their graph was last seen)."""
    if coefficient == 0:
        return
    for p in params:
        g = torch.sign(p.detach()) * coefficient
        if where is not None:
            g = g * where.to(g.dtype)
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)


def prune_smallest(values: Sequence[Tensor], alive: Sequence[Tensor],
                   fraction: float) -> list[Tensor]:
    """The UGS pruning rule over several tensors with one global threshold.

    Among the ``n`` entries with ``alive`` True (over all tensors), remove the
    ``min(n, int(n · fraction) + 1)`` with the smallest ``|values|`` (ties: earlier tensor,
    then lower flat index first); nothing when ``fraction == 0``. Returns the new alive
    masks (bool, same shapes).
    """
    if len(values) != len(alive):
        raise ValueError("prune_smallest: values and alive must have the same length")
    flat_vals, flat_alive = [], []
    for v, a in zip(values, alive):
        if v.shape != a.shape:
            raise ValueError(
                f"prune_smallest: a value tensor of shape {tuple(v.shape)} has a mask of shape "
                f"{tuple(a.shape)}"
            )
        flat_vals.append(v.detach().reshape(-1).abs().double().cpu())
        flat_alive.append(a.reshape(-1).bool().cpu())
    vals, live = torch.cat(flat_vals), torch.cat(flat_alive)
    idx = live.nonzero(as_tuple=True)[0]
    n = idx.numel()
    k = 0 if fraction <= 0 or n == 0 else min(n, int(n * fraction) + 1)
    new = live.clone()
    if k:
        order = torch.argsort(vals[idx], stable=True)[:k]
        new[idx[order]] = False
    out, start = [], 0
    for a in alive:
        out.append(new[start:start + a.numel()].reshape(a.shape).to(a.device))
        start += a.numel()
    return out


def ugs_schedule(total: int, fraction: float, rounds: int) -> list[int]:
    """Surviving counts after rounds 0..R of :func:`prune_smallest`:
    ``n_{k+1} = n_k - min(n_k, int(n_k · fraction) + 1)``."""
    out = [int(total)]
    for _ in range(rounds):
        n = out[-1]
        k = 0 if fraction <= 0 or n == 0 else min(n, int(n * fraction) + 1)
        out.append(n - k)
    return out


class SoftMaskedModel(nn.Module):
    """``model`` seen through trainable masks: calling it runs ``model``'s forward with
    ``W ⊙ m ⊙ M`` for every masked weight ``W`` and ``edge_mask ⊙ M_g`` as edge mask
    (``m``: the trainable ``weight_masks``; ``M``: frozen 0/1 buffers), via
    :func:`torch.func.functional_call`. ``model.edge_mask`` itself is the trainable graph
    mask. Gradients reach ``W``, ``m`` and ``edge_mask``.
    """

    def __init__(self, model: nn.Module, fixed: Mapping[str, Tensor],
                 weight_names: Sequence[str], noise: float = 0.0):
        super().__init__()
        self.model = model
        self.weight_names = list(weight_names)
        self.weight_masks = nn.ParameterList()
        for i, name in enumerate(self.weight_names):
            w = model.get_parameter(name)
            f = fixed[name].to(device=w.device, dtype=w.dtype)
            self.register_buffer(f"fixed_{i}", f)
            self.weight_masks.append(nn.Parameter(soft_mask_init(f, noise)))
        em = model.get_parameter(GRAPH_MASK)
        self.register_buffer("graph_fixed", fixed[GRAPH_MASK].to(device=em.device, dtype=em.dtype))

    def effective_parameters(self) -> dict[str, Tensor]:
        out = {}
        for i, name in enumerate(self.weight_names):
            out[name] = self.model.get_parameter(name) * self.weight_masks[i] * getattr(
                self, f"fixed_{i}")
        out[GRAPH_MASK] = self.model.get_parameter(GRAPH_MASK) * self.graph_fixed
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.model, self.effective_parameters(), args, kwargs)


#: checkpoint keys read as the first-layer weight when the file's metadata names none: node-level
#: GraphCL's (:data:`sparselth.models.FIRST_LAYER_KEY`) and the reference's ``gcn.fc.weight``
PRETRAINED_KEYS = ("encoder.conv.lin.weight", "gcn.fc.weight")


def load_pretrained_first_layer(model: nn.Module, path: Any, weight_name: str) -> str:
    """Copy the first-layer weight of the checkpoint at ``path`` into ``model``'s parameter
    ``weight_name``; returns the checkpoint's sha256. The key is the metadata's
    ``first_layer_key`` when present, else the one of :data:`PRETRAINED_KEYS` in the file.
    ValueError when the file has no such tensor or its shape differs."""
    from safetensors import safe_open

    from .. import _io

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"UGS init: no checkpoint file at {str(path)!r}")
    sha = _io.sha256_file(path)
    tensors = _io.load_safetensors(path, sha256=sha)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    keys = [json.loads(meta["first_layer_key"])] if "first_layer_key" in meta else \
        [k for k in PRETRAINED_KEYS if k in tensors]
    if len(keys) != 1 or keys[0] not in tensors:
        raise ValueError(f"UGS init: {path} holds no first-layer weight (looked for "
                         f"{keys or list(PRETRAINED_KEYS)}; keys {sorted(tensors)[:8]})")
    w, p = tensors[keys[0]], model.get_parameter(weight_name)
    if tuple(w.shape) != tuple(p.shape):
        raise ValueError(f"UGS init: checkpoint weight {keys[0]!r} has shape {tuple(w.shape)} "
                         f"but the model's {weight_name!r} has shape {tuple(p.shape)} (same "
                         f"in_dim and hidden needed)")
    with torch.no_grad():
        p.copy_(w.to(dtype=p.dtype, device=p.device))
    return sha


# --------------------------------------------------------------------------- driver


