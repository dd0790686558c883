"""Which kernel backend runs an op: an argument, a context manager, ``SPARSELTH_BACKEND``, or auto.

Backends: ``reference`` (pure PyTorch, the oracle), ``cpp`` (C++/OpenMP, CPU), ``triton``
(NVIDIA GPUs; on CPU tensors only under ``TRITON_INTERPRET=1``), ``cuda`` (``.cu`` kernels).
Precedence: the op's ``backend=`` argument, then the innermost ``use_backend`` block, then the
environment variable, then ``auto`` (cuda > triton > reference on GPU; cpp > reference on CPU).
:func:`has_kernel` is the one way to ask whether a compiled kernel of an op runs on a device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from typing import Iterator, List, Optional, Union

import torch

BACKENDS = ("reference", "cpp", "triton", "cuda")
_state = threading.local()
_RESOLVED: dict = {}   # (requested name, device type, dtype) -> backend; errors are not cached
_KERNELS: dict = {}    # (op, device type, backend) -> whether the kernel runs there
_NATIVE = {"cpu": "cpp", "cuda": "cuda"}   # the compiled backend of each device type
# The ops with a Triton launcher: op -> (module of sparselth.kernels, launcher).
TRITON_KERNELS = {"spmm": ("spmm", "spmm"), "sddmm": ("sddmm", "sddmm"),
                  "embedding_rows": ("embedding", "rows"), "embedding_csr": ("embedding", "csr"),
                  "embedding_bitmask": ("embedding", "bitmask"),
                  "embedding_backward": ("embedding", "backward")}


@functools.lru_cache(maxsize=None)
def _extension_loaded() -> bool:
    try:
        import sparselth._C  # noqa: F401  (registers the C++ ops)
    except ImportError:
        return False
    return hasattr(torch.ops.sparselth, "spmm_kernel")


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def has_kernel(op: str, device: Union[str, torch.device],
               backend: Optional[str] = None) -> bool:
    """Whether a compiled kernel of ``op`` runs on ``device``.

    ``backend`` says which kind: ``"cpp"`` (the C++ kernel registered for CPU; the default for a
    CPU device), ``"cuda"`` (the CUDA kernel, on a usable GPU; the default for a CUDA device) or
    ``"triton"`` (the op has a Triton launcher, Triton imports, and the device is a GPU, or the
    CPU under ``TRITON_INTERPRET=1``). ``op`` is named as its kernel schema is, without the
    suffix (``"spmm"``, ``"shifted_spmm"``, ``"sparse_linear"``, ``"embedding_csr"``, ...);
    ``"spmm_kernel"`` and ``"sparselth::spmm_kernel"`` work too. An op the built extension does
    not define (built before the op existed) has no kernel. Cached; under ``torch.compile`` the
    answer is taken once, at trace time.

    Example::

        >>> has_kernel("spmm", "cpu")                      # the C++ SpMM is built
        True
        >>> has_kernel("embedding_csr", "cuda", "triton")  # False without a GPU
        False
    """
    name = op.split("::")[-1]
    if name.endswith("_kernel"):
        name = name[:-len("_kernel")]
    dev = torch.device(device).type
    kind = _NATIVE.get(dev) if backend is None else backend
    key = (name, dev, kind)
    hit = _KERNELS.get(key)
    if hit is None:
        hit = _KERNELS[key] = _find_kernel(name, dev, kind)
    return hit


# Marked for Dynamo as ``resolve`` is: called once at trace time, the answer baked in.
has_kernel._dynamo_marked_constant = True


def _find_kernel(op: str, device_type: str, backend: Optional[str]) -> bool:
    if backend is not None and backend not in ("cpp", "cuda", "triton"):
        raise ValueError(f"has_kernel: backend must be 'cpp', 'cuda', 'triton' or None, got "
                         f"{backend!r}")
    if backend == "triton":
        return op in TRITON_KERNELS and _triton_importable() and (
            (device_type == "cuda" and torch.cuda.is_available())
            or (device_type == "cpu" and _triton_interpret()))
    if backend is None or _NATIVE.get(device_type) != backend:
        return False
    if backend == "cuda" and not torch.cuda.is_available():
        return False
    if not _extension_loaded():
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(
            f"sparselth::{op}_kernel", "CPU" if backend == "cpp" else "CUDA")
    except RuntimeError:   # the op is not defined by this build
        return False


def is_available(name: str) -> bool:
    """Whether backend ``name`` can run here (on some device): ``reference`` always; a compiled
    backend when its SpMM kernel runs on some device (:func:`has_kernel`)."""
    if name == "reference":
        return True
    if name in ("cpp", "cuda"):
        return has_kernel("spmm", "cpu" if name == "cpp" else "cuda", name)
    if name == "triton":
        return has_kernel("spmm", "cuda", "triton") or has_kernel("spmm", "cpu", "triton")
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
