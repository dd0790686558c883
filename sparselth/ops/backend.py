"""Which kernel backend runs an op: an argument, a context manager, ``SPARSELTH_BACKEND``, or auto.

Backends: ``reference`` (pure PyTorch, the oracle), ``cpp`` (C++/OpenMP, CPU), ``triton``
(NVIDIA GPUs; on CPU tensors only under ``TRITON_INTERPRET=1``), ``cuda`` (``.cu`` kernels).
Precedence: the op's ``backend=`` argument, then the innermost ``use_backend`` block, then the
environment variable, then ``auto`` (cuda > triton > reference on GPU; cpp > reference on CPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from typing import Iterator, List

import torch

BACKENDS = ("reference", "cpp", "triton", "cuda")
_state = threading.local()
_RESOLVED: dict = {}   # (requested name, device type, dtype) -> backend; errors are not cached


@functools.lru_cache(maxsize=None)
def _extension_loaded() -> bool:
    try:
        import sparselth._C  # noqa: F401  (registers the C++ ops)
    except ImportError:
        return False
    return hasattr(torch.ops.sparselth, "spmm_kernel")


def _has_kernel(key: str) -> bool:
    return _extension_loaded() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "sparselth::spmm_kernel", key)


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def is_available(name: str) -> bool:
    """Whether backend ``name`` can run here (on some device)."""
    if name == "reference":
        return True
    if name == "cpp":
        return _has_kernel("CPU")
    if name == "cuda":
        return torch.cuda.is_available() and _has_kernel("CUDA")
    if name == "triton":
        return _triton_importable() and (torch.cuda.is_available() or _triton_interpret())
    raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {name!r}")


def backends() -> List[str]:
    """The backends available on this machine, e.g. ``['reference', 'cpp']``."""
    return [b for b in BACKENDS if is_available(b)]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the sparselth ops inside the block on backend ``name`` (or ``"auto"``)."""
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"use_backend: name must be one of {BACKENDS} or 'auto', got {name!r}")
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def resolve(backend: str, device: torch.device, dtype: torch.dtype, op: str) -> str:
    """The concrete backend for an op on ``device``/``dtype``; a clear error if impossible.
    Under ``torch.compile`` the choice is made once, at trace time."""
    name = backend
    if name == "auto":
        stack = getattr(_state, "stack", None)
        name = stack[-1] if stack else (os.environ.get("SPARSELTH_BACKEND") or "auto")
    key = (name, device.type, dtype)
    hit = _RESOLVED.get(key)
    if hit is not None:
        return hit
    _RESOLVED[key] = choice = _choose(name, device, dtype, op)
    return choice


# What ``torch.compiler.assume_constant_result`` sets (without importing torch._dynamo, which
# would add seconds to ``import sparselth``): Dynamo calls ``resolve`` once and bakes the result in.
resolve._dynamo_marked_constant = True


def _choose(name: str, device: torch.device, dtype: torch.dtype, op: str) -> str:
    if name not in BACKENDS and name != "auto":
        raise ValueError(f"{op}: backend must be one of {BACKENDS} or 'auto', got {name!r}")
    half = dtype in (torch.float16, torch.bfloat16)
    if name == "auto":
        if device.type == "cuda":
            if is_available("cuda"):
                return "cuda"
            if is_available("triton"):
                return "triton"
            return "reference"
        if device.type == "cpu" and not half and is_available("cpp"):
            return "cpp"
        return "reference"
    if not is_available(name):
        raise ValueError(f"{op}: backend {name!r} is not available here "
                         f"(available: {backends()})")
    if name == "cpp" and device.type != "cpu":
        raise ValueError(f"{op}: backend 'cpp' runs on CPU tensors, got {device}")
    if name == "cpp" and half:
        raise TypeError(f"{op}: backend 'cpp' supports float32/float64, got {dtype}")
    if name == "cuda" and device.type != "cuda":
        raise ValueError(f"{op}: backend 'cuda' runs on CUDA tensors, got {device}")
    if name == "triton" and device.type != "cuda" and not _triton_interpret():
        raise ValueError(f"{op}: backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1)")
    return name
