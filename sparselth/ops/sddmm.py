"""``sddmm``: sampled dense-dense product on a CSR pattern, ``out[e] = dot(X[i], Y[j])`` for
every stored entry ``e = (i, j)``. It is the gradient of :func:`spmm` with respect to A's values
(edge masks, pruned weights that keep training). Registered as ``sparselth::sddmm`` with
autograd (both inputs) and a fake implementation.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import (cached_transpose, check_csr, check_dense, eager_twin, register_kernel_fake,
                      transpose_parts)

Tensor = torch.Tensor


def sddmm_reference(rowptr: Tensor, col: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Pure-PyTorch SDDMM (gather both rows, multiply, sum): the oracle."""
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    counts = (rowptr[1:] - rowptr[:-1]).long()
    row = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), counts,
                                  output_size=col.numel())
    out = (x.to(acc).index_select(0, row) * y.to(acc).index_select(0, col.long())).sum(1)
    return out.to(x.dtype)


@register_kernel_fake("sddmm_kernel")
def _(rowptr, col, x, y):
    return x.new_empty((col.shape[0],))


def _sddmm_cpp(rowptr, col, x, y):
    return torch.ops.sparselth.sddmm_kernel(rowptr, col, x, y)


def _sddmm_triton(rowptr, col, x, y):
    from ..kernels.sddmm import sddmm as triton_sddmm
    return triton_sddmm(rowptr, col, x, y)


_IMPLS = {"reference": sddmm_reference, "cpp": _sddmm_cpp, "cuda": _sddmm_cpp,
          "triton": _sddmm_triton}


@torch.library.custom_op("sparselth::sddmm", mutates_args=())
def _sddmm_op(rowptr: Tensor, col: Tensor, x: Tensor, y: Tensor, t_rowptr: Optional[Tensor],
              t_col: Optional[Tensor], t_perm: Optional[Tensor], backend: str) -> Tensor:
    return _IMPLS[backend](rowptr, col, x, y)


@_sddmm_op.register_fake
def _(rowptr, col, x, y, t_rowptr, t_col, t_perm, backend):
    return x.new_empty((col.shape[0],))


def _sddmm_call(rowptr, col, x, y, backend, eager):
    """SDDMM from inside a backward: the kernel itself in an eager backward that records no
    graph, the eager twin in one that does (``torch.func`` transforms run through it), the
    differentiable op when traced."""
    if not eager:
        return _sddmm_op(rowptr, col, x, y, None, None, None, backend)
    if torch.is_grad_enabled():
        return _sddmm_eager(rowptr, col, x, y, None, None, None, backend)
    return _IMPLS[backend](rowptr, col, x, y)


def _sddmm_setup(ctx, inputs, output):
    rowptr, col, x, y, t_rowptr, t_col, t_perm, backend = inputs
    ctx.save_for_backward(rowptr, col, x, y, t_rowptr, t_col, t_perm)
    ctx.backend = backend


def _sddmm_backward(ctx, grad):
    from .spmm import _spmm_call
    rowptr, col, x, y, t_rowptr, t_col, t_perm = ctx.saved_tensors
    grad = grad.contiguous()
    eager = getattr(ctx, "eager", False)
    grad_x = grad_y = None
    if ctx.needs_input_grad[2]:   # dX = A_g @ Y with the pattern's values set to grad
        grad_x = _spmm_call(rowptr, col, grad, y, x.shape[0], ctx.backend, eager)
    if ctx.needs_input_grad[3]:   # dY = A_g^T @ X
        if t_rowptr is None:
            t_rowptr, t_col, t_perm = transpose_parts(rowptr, col, y.shape[0])
        grad_y = _spmm_call(t_rowptr, t_col, grad[t_perm].contiguous(), x, y.shape[0],
                            ctx.backend, eager)
    return None, None, grad_x, grad_y, None, None, None, None


# Eager calls that need a gradient go through this twin of the op (same backward).
_sddmm_eager = eager_twin(_sddmm_op, lambda *inputs: _IMPLS[inputs[-1]](*inputs[:4]),
                          _sddmm_setup, _sddmm_backward)


def sddmm(A: CSR, X: Tensor, Y: Tensor, *, backend: str = "auto") -> Tensor:
    """``out[e] = dot(X[i], Y[j])`` for each stored entry ``e = (i, j)`` of ``A``, in CSR order.

    Only ``A``'s pattern is read (its values are ignored; multiply the result by ``A.val`` for
    the "sampled" product). ``X``: ``(m, F)``, ``Y``: ``(n, F)``, same device and dtype.
    Returns ``(A.nnz,)``.

    Example::

        >>> scores = sddmm(A, Q, K)          # attention logits on the graph's edges
    """
    op = "sddmm"
    check_csr(op, "A", A)
    check_dense(op, "X", X)
    check_dense(op, "Y", Y)
    m, n = A.shape
    if X.shape[0] != m:
        raise ValueError(f"{op}: X must have A.shape[0] = {m} rows, got {X.shape[0]}")
    if Y.shape[0] != n:
        raise ValueError(f"{op}: Y must have A.shape[1] = {n} rows, got {Y.shape[0]}")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{op}: X and Y must have the same number of columns, got "
                         f"{X.shape[1]} and {Y.shape[1]}")
    if X.dtype != Y.dtype:
        raise TypeError(f"{op}: X and Y dtypes differ: {X.dtype} vs {Y.dtype}")
    for name, t in (("X", X), ("Y", Y)):
        if t.device != A.device:
            raise ValueError(f"{op}: {name} is on {t.device} but A is on {A.device}")
    X, Y = X.contiguous(), Y.contiguous()
    name = _backend.resolve(backend, X.device, X.dtype, op)
    needs_grad = torch.is_grad_enabled() and (X.requires_grad or Y.requires_grad)
    if not needs_grad and not torch.compiler.is_compiling():
        return _IMPLS[name](A.rowptr, A.col, X, Y)
    t_rowptr = t_col = t_perm = None
    if Y.requires_grad:
        t_rowptr, t_col, t_perm = cached_transpose(A)
    op_fn = _sddmm_op if torch.compiler.is_compiling() else _sddmm_eager
    return op_fn(A.rowptr, A.col, X, Y, t_rowptr, t_col, t_perm, name)
