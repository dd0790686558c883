"""Sparse ops with autograd on every backend: ``spmm``, ``sddmm``."""

from .backend import backends, is_available, use_backend
from .sddmm import sddmm, sddmm_reference
from .spmm import spmm, spmm_reference

__all__ = ["spmm", "sddmm", "spmm_reference", "sddmm_reference", "backends", "is_available",
           "use_backend"]
