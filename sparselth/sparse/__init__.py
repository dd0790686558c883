"""Sparse formats: the CSR type (and, later, compressed embedding and weight formats)."""

from .csr import CSR

__all__ = ["CSR"]
