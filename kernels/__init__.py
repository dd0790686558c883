"""Triton kernels of sparselth, installed as ``sparselth.kernels``.

This package imports nothing heavy: ``import sparselth.kernels`` works without Triton. The
kernels live in submodules that import Triton when first touched::

    from sparselth import kernels
    if kernels.available():
        out = kernels.spmm.spmm(rowptr, col, val, x, x_mask, row_scale, bias, num_rows)
        out = kernels.sddmm.sddmm(rowptr, col, x, y)

``kernels.spmm`` and ``kernels.sddmm`` are the submodules (loaded lazily on attribute access);
the launchers are the functions of the same name inside them. CPU tensors run only in the
Triton interpreter, which needs ``TRITON_INTERPRET=1`` set before Triton is first imported.
"""
import importlib

__all__ = ["available", "spmm", "sddmm", "embedding"]

_SUBMODULES = ("spmm", "sddmm", "embedding")
_available = None


def available() -> bool:
    """True when Triton can be imported (cached after the first call)."""
    global _available
    if _available is None:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401
        except Exception:  # ImportError, or a broken install failing at import time
            _available = False
        else:
            _available = True
    return _available


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
