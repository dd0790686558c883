"""``spmm_linear``: an SpMM fused with the sparse linear map that follows it.

``out = act(A @ X + bias) @ W^T`` with ``A`` and ``W`` CSR and ``act`` ReLU or the identity:
a GNN layer's aggregation (with its bias and ReLU) followed by the next layer's pruned
transform. The C++ kernel keeps each row of ``act(A @ X + bias)`` in a per-thread buffer and
applies ``W`` to it at once, so the ``(m, F)`` intermediate, often the largest tensor of a
GNN's forward pass, is never written to memory nor read back.

Inference only in the kernel: when a gradient is needed (or under ``torch.compile``) the result
is computed by :func:`~sparselth.ops.spmm` and a second SpMM on the transpose (differentiable),
as on backends without the kernel (``reference``, ``triton``, ``cuda``).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import check_csr, check_dense, check_vector, register_kernel_fake
from .spmm import spmm, spmm_reference

Tensor = torch.Tensor


def spmm_linear_reference(rowptr: Tensor, col: Tensor, val: Optional[Tensor], x: Tensor,
                          bias: Optional[Tensor], relu: bool, w_rowptr: Tensor, w_col: Tensor,
                          w_val: Optional[Tensor], num_rows: int) -> Tensor:
    """Pure PyTorch: ``h = act(A @ x + bias)`` stored, then ``(W @ h^T)^T``."""
    h = spmm_reference(rowptr, col, val, x, None, None, bias, num_rows, relu)
    out_features = w_rowptr.numel() - 1
    return spmm_reference(w_rowptr, w_col, w_val, h.t().contiguous(), None, None, None,
                          out_features).t().contiguous()


@register_kernel_fake("spmm_linear_kernel")
def _(rowptr, col, val, x, bias, relu, w_rowptr, w_col, w_val, num_rows):
    return x.new_empty((num_rows, w_rowptr.shape[0] - 1))


def _spmm_linear_cpp(rowptr, col, val, x, bias, relu, w_rowptr, w_col, w_val, num_rows):
    return torch.ops.sparselth.spmm_linear_kernel(rowptr, col, val, x, bias, relu, w_rowptr,
                                                  w_col, w_val, num_rows)


_IMPLS = {"reference": spmm_linear_reference, "cpp": _spmm_linear_cpp}


def spmm_linear_impl(device: torch.device, dtype: torch.dtype, backend: str = "auto"):
    """The fused kernel for ``backend`` as a plain function with no checks and no autograd
    (``fn(rowptr, col, val, x, bias, relu, w_rowptr, w_col, w_val, num_rows)``), or None when
    the backend has none: for inference paths that validated their operands once."""
    name = _backend.resolve(backend, device, dtype, "spmm_linear")
    if name == "cpp" and not _backend.has_kernel("spmm_linear", device, "cpp"):
        return None
    return _IMPLS.get(name)


def spmm_linear(A: CSR, X: Tensor, W: CSR, *, bias: Optional[Tensor] = None,
                relu: bool = False, backend: str = "auto") -> Tensor:
    """``act(A @ X + bias) @ W^T`` without storing ``act(A @ X + bias)``.

    Args:
        A: ``(m, n)`` :class:`~sparselth.CSR` (a pattern multiplies by ones).
        X: ``(n, F)`` dense, the dtype of ``A.val`` and ``W.val``.
        W: ``(out_features, F)`` :class:`~sparselth.CSR`, the same index dtype as ``A``
            (e.g. a pruned weight of the next layer, ``SparseLinear.weight_csr()``).
        bias: optional ``(F,)`` added before the activation.
        relu: apply ReLU before ``W``.
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``; backends
            without the fused kernel compose two SpMMs.

    Returns:
        ``(m, out_features)`` tensor.

    Example::

        >>> z = spmm_linear(A_hat, X @ W1.t(), W2_csr, bias=b1, relu=True)  # relu(ÂXW1ᵀ+b1)W2ᵀ
    """
    op = "spmm_linear"
    check_csr(op, "A", A)
    check_csr(op, "W", W)
    check_dense(op, "X", X)
    m, n = A.shape
    if X.shape[0] != n:
        raise ValueError(f"{op}: X must have A.shape[1] = {n} rows, got {X.shape[0]}")
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"{op}: W must have X.shape[1] = {X.shape[1]} columns, got shape "
                         f"{W.shape}")
    for name, t in (("A", A), ("W", W)):
        if t.device != X.device:
            raise ValueError(f"{op}: {name} is on {t.device} but X is on {X.device}")
        if t.val is not None and t.val.dtype != X.dtype:
            raise TypeError(f"{op}: {name}.val has dtype {t.val.dtype} but X has {X.dtype}")
    if A.col.dtype != W.col.dtype:
        raise TypeError(f"{op}: A and W must share one index dtype, got {A.col.dtype} and "
                        f"{W.col.dtype} (CSR.index_as converts)")
    bias = check_vector(op, "bias", bias, X.shape[1], X)
    name = _backend.resolve(backend, X.device, X.dtype, op)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (A.val, X, W.val, bias))
    fn = None if needs_grad or torch.compiler.is_compiling() else spmm_linear_impl(
        X.device, X.dtype, name)
    if fn is not None:
        return fn(A.rowptr, A.col, A.val, X.contiguous(), None if bias is None else
                  bias.contiguous(), bool(relu), W.rowptr, W.col, W.val, m)
    h = spmm(A, X, bias=bias, relu=relu, backend=name)
    return spmm(W, h.t(), backend=name).t()
