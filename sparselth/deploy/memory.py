"""Memory of a model: the bytes it stores, and (CUDA) the peak of one forward pass."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["forward_memory", "state_bytes", "tensor_bytes"]


def tensor_bytes(t: Tensor) -> int:
    """Bytes a tensor stores (a tensor subclass such as a 2:4 weight: its inner tensors)."""
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
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)
    return total


def forward_memory(models: dict[str, nn.Module], run: Callable[[nn.Module], Any],
                   device: torch.device) -> dict[str, Any]:
    """``{"method", "<name>_bytes" per model, ...}``: on CUDA the peak allocated bytes while
    ``run(model)`` makes one forward pass (plus the stored state); on CPU the stored state, since
    the CPU allocator keeps no resettable peak."""
    if device.type != "cuda":
        out: dict[str, Any] = {"method": "parameter + buffer bytes"}
        out.update({f"{k}_bytes": state_bytes(m) for k, m in models.items()})
        out["note"] = ("CPU: the allocator keeps no resettable peak, so this is the model's "
                       "stored state, not activations")
        return out
    out = {"method": "torch.cuda.max_memory_allocated during one forward pass"}
    for key, m in models.items():
        torch.cuda.synchronize(device)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            run(m)
        torch.cuda.synchronize(device)
        out[f"{key}_bytes"] = int(torch.cuda.max_memory_allocated(device))
    out.update({f"state_{k}_bytes": state_bytes(m) for k, m in models.items()})
    return out
