"""Sparse ops with autograd on every backend: ``spmm``, ``sddmm``; ``edge_softmax`` (graph
attention) from torch ops."""

from .backend import backends, is_available, use_backend
from .edge_softmax import edge_softmax, edge_softmax_reference
from .embedding import embedding_bag, embedding_lookup, masked_embedding
from .sddmm import sddmm, sddmm_reference
from .spgemm import spgemm, spgemm_reference
from .spmm import spmm, spmm_reference

__all__ = ["spmm", "sddmm", "spmm_reference", "sddmm_reference", "backends", "is_available",
           "use_backend", "edge_softmax", "edge_softmax_reference", "embedding_lookup",
           "masked_embedding", "embedding_bag", "spgemm", "spgemm_reference"]
