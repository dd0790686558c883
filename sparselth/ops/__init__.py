"""Sparse ops with autograd on every backend: ``spmm``, ``sddmm``, the embedding gathers, the
sparse linear and convolution layers (over the shifted-window kernel); ``edge_softmax`` (graph
attention) from torch ops; ``spmm_linear`` (an SpMM fused with the sparse linear map after it,
for inference). :func:`has_kernel` says whether a compiled kernel runs on a device."""

from .backend import backends, has_kernel, is_available, use_backend
from .edge_softmax import edge_softmax, edge_softmax_reference
from .embedding import embedding_bag, embedding_lookup, masked_embedding
from .sddmm import sddmm, sddmm_reference
from .spgemm import spgemm, spgemm_reference
from .spmm import spmm, spmm_reference
from .spmm_linear import spmm_linear

__all__ = ["spmm", "sddmm", "spmm_reference", "sddmm_reference", "backends", "is_available",
           "has_kernel", "use_backend", "edge_softmax", "edge_softmax_reference", "embedding_lookup",
           "masked_embedding", "embedding_bag", "spmm_linear", "spgemm", "spgemm_reference"]
