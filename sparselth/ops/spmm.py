"""``spmm``: sparse (CSR) times dense, with an optional mask on X and a fused epilogue.

``out = act(row_scale[:, None] * (A @ (X * x_mask)) + bias)`` with ``act`` ReLU or the
identity. Differentiable with respect to X,
A's values (through :func:`sddmm`), ``x_mask`` (float), ``row_scale`` and ``bias``. Registered
as the custom op ``sparselth::spmm`` with a fake implementation, so it works under
``torch.compile(fullgraph=True)``; calls that need no gradient skip the op machinery.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import (cached_transpose, check_csr, check_dense, check_mask, check_vector,
                      eager_twin, register_kernel_fake, transpose_parts)

Tensor = torch.Tensor


def spmm_reference(rowptr: Tensor, col: Tensor, val: Optional[Tensor], x: Tensor,
                   x_mask: Optional[Tensor], row_scale: Optional[Tensor], bias: Optional[Tensor],
                   num_rows: int, relu: bool = False) -> Tensor:
    """Pure-PyTorch SpMM (gather + index_add): the oracle every backend is tested against."""
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    counts = (rowptr[1:] - rowptr[:-1]).long()
    row = torch.repeat_interleave(torch.arange(num_rows, device=x.device), counts,
                                  output_size=col.numel())
    xm = x.to(acc) if x_mask is None else x.to(acc) * x_mask.to(acc)
    msg = xm.index_select(0, col.long())
    if val is not None:
        msg = msg * val.to(acc).unsqueeze(1)
    out = torch.zeros(num_rows, x.shape[1], dtype=acc, device=x.device).index_add_(0, row, msg)
    if row_scale is not None:
        out = out * row_scale.to(acc).unsqueeze(1)
    if bias is not None:
        out = out + bias.to(acc)
    if relu:
        out = torch.relu(out)
    return out.to(x.dtype)


@register_kernel_fake("spmm_kernel")
def _(rowptr, col, val, x, x_mask, row_scale, bias, num_rows, relu=False):
    return x.new_empty((num_rows, x.shape[1]))


def _spmm_cpp(rowptr, col, val, x, x_mask, row_scale, bias, num_rows, relu=False):
    if x_mask is not None and x_mask.dtype == torch.bool:
        # the kernel's bool-mask tiles measured ~50x slower than its x.dtype-mask tiles (lane
        # by lane widening); one vectorised conversion costs about one pass over the mask
        x_mask = x_mask.to(x.dtype)
    return torch.ops.sparselth.spmm_kernel(rowptr, col, val, x, x_mask, row_scale, bias, num_rows,
                                           relu)


def _spmm_triton(rowptr, col, val, x, x_mask, row_scale, bias, num_rows, relu=False):
    from ..kernels.spmm import spmm as triton_spmm
    return triton_spmm(rowptr, col, val, x, x_mask, row_scale, bias, num_rows, relu=relu)


_IMPLS = {"reference": spmm_reference, "cpp": _spmm_cpp, "cuda": _spmm_cpp,
          "triton": _spmm_triton}


def spmm_impl(device: torch.device, dtype: torch.dtype, backend: str = "auto"):
    """The SpMM kernel of ``backend`` for ``device``/``dtype`` as a plain function
    ``fn(rowptr, col, val, x, x_mask, row_scale, bias, num_rows, relu) -> Tensor``, with no
    checks and no autograd: for inference paths that validated their operands once (a CSR
    whose values have ``x``'s dtype, ``x`` contiguous, no gradient needed) and call it often,
    where :func:`spmm`'s checks would cost more than the product."""
    return _IMPLS[_backend.resolve(backend, device, dtype, "spmm")]


@torch.library.custom_op("sparselth::spmm", mutates_args=())
def _spmm_op(rowptr: Tensor, col: Tensor, val: Optional[Tensor], x: Tensor,
             x_mask: Optional[Tensor], row_scale: Optional[Tensor], bias: Optional[Tensor],
             t_rowptr: Optional[Tensor], t_col: Optional[Tensor], t_perm: Optional[Tensor],
             num_rows: int, backend: str) -> Tensor:
    return _IMPLS[backend](rowptr, col, val, x, x_mask, row_scale, bias, num_rows)


@_spmm_op.register_fake
def _(rowptr, col, val, x, x_mask, row_scale, bias, t_rowptr, t_col, t_perm, num_rows, backend):
    return x.new_empty((num_rows, x.shape[1]))


def _spmm_call(rowptr, col, val, x, num_rows, backend, eager):
    """Plain ``A @ x`` from inside a backward: the kernel itself in an eager backward that
    records no graph (saves the op machinery's overhead); one that records a graph (double
    backward, ``torch.func``) through the eager twin, whose autograd ``torch.func``
    transforms can run; the differentiable op when traced."""
    if not eager:
        return _spmm_op(rowptr, col, val, x, None, None, None, None, None, None, num_rows, backend)
    if torch.is_grad_enabled():
        return _spmm_eager(rowptr, col, val, x, None, None, None, None, None, None, num_rows,
                           backend)
    return _IMPLS[backend](rowptr, col, val, x, None, None, None, num_rows)


def _spmm_setup(ctx, inputs, output):
    (rowptr, col, val, x, x_mask, row_scale, bias, t_rowptr, t_col, t_perm, num_rows,
     backend) = inputs
    ctx.save_for_backward(rowptr, col, val, x, x_mask, row_scale, t_rowptr, t_col, t_perm)
    ctx.has_bias = bias is not None
    ctx.num_rows, ctx.backend = num_rows, backend


def _spmm_backward(ctx, grad):
    rowptr, col, val, x, x_mask, row_scale, t_rowptr, t_col, t_perm = ctx.saved_tensors
    needs = ctx.needs_input_grad
    eager = getattr(ctx, "eager", False)
    grad = grad.contiguous()
    g = grad if row_scale is None else (grad * row_scale.unsqueeze(1)).contiguous()
    xm = x if x_mask is None else (x * x_mask).contiguous()
    grad_val = grad_x = grad_mask = grad_scale = grad_bias = None
    if needs[3] or needs[4]:
        if t_rowptr is None:
            t_rowptr, t_col, t_perm = transpose_parts(rowptr, col, x.shape[0])
        t_val = None if val is None else val[t_perm].contiguous()
        dxm = _spmm_call(t_rowptr, t_col, t_val, g, x.shape[0], ctx.backend, eager)
        if needs[3]:
            grad_x = dxm if x_mask is None else dxm * x_mask
        if needs[4]:
            grad_mask = dxm * x
    if needs[2]:
        from .sddmm import _sddmm_call
        grad_val = _sddmm_call(rowptr, col, g, xm, ctx.backend, eager)
    if needs[5]:
        z = _spmm_call(rowptr, col, val, xm, ctx.num_rows, ctx.backend, eager)
        grad_scale = (z * grad).sum(1)
    if ctx.has_bias and needs[6]:
        grad_bias = grad.sum(0)
    return (None, None, grad_val, grad_x, grad_mask, grad_scale, grad_bias, None, None, None,
            None, None)


# Eager calls that need a gradient go through this twin of the op (same backward).
_spmm_eager = eager_twin(_spmm_op, lambda *inputs: _IMPLS[inputs[-1]](*inputs[:7], inputs[10]),
                         _spmm_setup, _spmm_backward)


def spmm(A: CSR, X: Tensor, *, x_mask: Optional[Tensor] = None,
         row_scale: Optional[Tensor] = None, bias: Optional[Tensor] = None, relu: bool = False,
         backend: str = "auto") -> Tensor:
    """Sparse times dense: ``row_scale[:, None] * (A @ (X * x_mask)) + bias``, then ReLU
    when ``relu``.

    Args:
        A: ``(m, n)`` :class:`~sparselth.CSR`; a pattern (``A.val is None``) multiplies by ones.
            ``A.val`` may require grad (learned edge masks, pruned weights that keep training).
        X: ``(n, F)`` dense, same device and dtype as ``A.val``.
        x_mask: optional ``(n, F)`` bool or float mask read on the fly (no ``X * mask`` copy).
        row_scale: optional ``(m,)`` per-row factor (e.g. a degree normalisation).
        bias: optional ``(F,)`` added to every row.
        relu: apply ``max(., 0)`` to the result, fused into the kernel's store when no
            gradient is needed (saves a pass over the ``(m, F)`` output); with autograd it is
            ``torch.relu`` on the op's result.
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``(m, F)`` tensor.

    Example::

        >>> A = CSR.from_edge_index(edge_index, num_nodes=n).gcn_norm()
        >>> H = spmm(A, X)
    """
    op = "spmm"
    check_csr(op, "A", A)
    check_dense(op, "X", X)
    m, n = A.shape
    if X.shape[0] != n:
        raise ValueError(f"{op}: X must have A.shape[1] = {n} rows, got {X.shape[0]}")
    if X.device != A.device:
        raise ValueError(f"{op}: X is on {X.device} but A is on {A.device}")
    val = A.val
    if val is not None and val.dtype != X.dtype:
        raise TypeError(f"{op}: A.val has dtype {val.dtype} but X has {X.dtype}; cast one of them")
    x_mask = check_mask(op, "x_mask", x_mask, [X.shape], f"X's shape {tuple(X.shape)}",
                        (torch.bool, X.dtype), f"be bool or X's dtype {X.dtype}", X.device, "X")
    row_scale = check_vector(op, "row_scale", row_scale, m, X)
    bias = check_vector(op, "bias", bias, X.shape[1], X)
    x_mask, row_scale, bias = (None if t is None else t.contiguous()
                               for t in (x_mask, row_scale, bias))
    X = X.contiguous()
    name = _backend.resolve(backend, X.device, X.dtype, op)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (val, X, x_mask, row_scale, bias))
    if not needs_grad and not torch.compiler.is_compiling():
        return _IMPLS[name](A.rowptr, A.col, val, X, x_mask, row_scale, bias, m, relu)
    t_rowptr = t_col = t_perm = None
    if X.requires_grad or (x_mask is not None and x_mask.requires_grad):
        t_rowptr, t_col, t_perm = cached_transpose(A)
    op_fn = _spmm_op if torch.compiler.is_compiling() else _spmm_eager
    out = op_fn(A.rowptr, A.col, val, X, x_mask, row_scale, bias, t_rowptr, t_col, t_perm, m, name)
    return torch.relu(out) if relu else out
