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



def _csr_matmul(A, other):
    """``A @ X``: :func:`spmm` for a dense 2-D ``X`` (a 1-D ``X`` as one column), :func:`spgemm`
    (dense result) for a CSR. Installed on :class:`~sparselth.CSR` here, since the sparse
    layer sits below the ops."""
    import torch

    from ..sparse.csr import CSR
    if isinstance(other, CSR):
        return spgemm(A, other)
    if isinstance(other, torch.Tensor) and other.dim() == 2:
        return spmm(A, other)
    if isinstance(other, torch.Tensor) and other.dim() == 1:
        return spmm(A, other.unsqueeze(1)).squeeze(1)
    return NotImplemented


def _install_matmul() -> None:
    from ..sparse.csr import CSR
    CSR.__matmul__ = _csr_matmul


_install_matmul()

__all__ = ["spmm", "sddmm", "spmm_reference", "sddmm_reference", "backends", "is_available",
           "has_kernel", "use_backend", "edge_softmax", "edge_softmax_reference", "embedding_lookup",
           "masked_embedding", "embedding_bag", "spmm_linear", "spgemm", "spgemm_reference"]
