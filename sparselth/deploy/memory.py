"""Memory of a compiled model next to its dense baseline: the bytes each stores, and on CUDA
the peak of one forward pass."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..metrics.cost import state_bytes

__all__ = ["forward_memory"]


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
