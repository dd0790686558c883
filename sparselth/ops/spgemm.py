"""``spgemm``: sparse times sparse into dense, ``out = A @ B`` with both operands CSR.

Row-wise Gustavson with a dense accumulator row: row ``i`` of ``out`` gathers, for every stored
``(i, j)`` of A, ``A[i, j]`` times the stored entries of B's row ``j``. The cost follows
``sum_i sum_{j in row i of A} nnz(B row j)``, not ``nnz(A) * k``: sparse features times a pruned
weight (``X @ W^T``), an adjacency times an element-pruned embedding table (``A @ E``).
Differentiable with respect to both value arrays (``A.val``, ``B.val``); registered as the custom
op ``sparselth::spgemm`` with a fake implementation, so it works under
``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..sparse.csr import CSR
from . import backend as _backend
from ._common import check_csr, eager_twin, register_kernel_fake, transpose_parts

Tensor = torch.Tensor
_HALF = (torch.float16, torch.bfloat16)
# Backward with respect to B's values: the sampled kernel on the transposes costs about this
# many dense-SpMM MACs per (A entry, B entry) pair it visits (measured on CPU: 4.3 ns a pair,
# 0.24 ns a dense MAC); below that the dense route (A^T @ grad, then a gather) is slower.
_SAMPLED_PAIR_COST = 18.0


def _pairs(a_rowptr: Tensor, a_col: Tensor, b_rowptr: Tensor):
    """``(e, f)`` int64 index pairs: every stored entry ``f`` of B's row ``a_col[e]`` for every
    stored entry ``e`` of A, and the row of A of each pair."""
    m = a_rowptr.numel() - 1
    dev = a_col.device
    a_counts = (a_rowptr[1:] - a_rowptr[:-1]).long()
    a_row = torch.repeat_interleave(torch.arange(m, device=dev), a_counts,
                                    output_size=a_col.numel())
    j = a_col.long()
    starts = b_rowptr.long()[j]
    lens = b_rowptr.long()[j + 1] - starts
    total = int(lens.sum()) if lens.numel() else 0
    e = torch.repeat_interleave(torch.arange(a_col.numel(), device=dev), lens, output_size=total)
    first = torch.cumsum(lens, 0) - lens
    f = starts[e] + torch.arange(total, device=dev) - first[e]
    return e, f, a_row[e]


def spgemm_reference(a_rowptr: Tensor, a_col: Tensor, a_val: Optional[Tensor], b_rowptr: Tensor,
                     b_col: Tensor, b_val: Optional[Tensor], num_cols: int,
                     dtype: torch.dtype) -> Tensor:
    """Pure-PyTorch SpGEMM (every (A entry, B entry) pair, then one index_add): the oracle."""
    acc = torch.float32 if dtype in _HALF else dtype
    m = a_rowptr.numel() - 1
    e, f, row = _pairs(a_rowptr, a_col, b_rowptr)
    prod = torch.ones(e.numel(), dtype=acc, device=a_col.device)
    if a_val is not None:
        prod = prod * a_val.to(acc)[e]
    if b_val is not None:
        prod = prod * b_val.to(acc)[f]
    out = torch.zeros(m * num_cols, dtype=acc, device=a_col.device)
    out.index_add_(0, row * num_cols + b_col.long()[f], prod)
    return out.view(m, num_cols).to(dtype)


def spgemm_sampled_reference(a_rowptr: Tensor, a_col: Tensor, b_rowptr: Tensor, b_col: Tensor,
                             b_val: Optional[Tensor], grad: Tensor) -> Tensor:
    """``out[e] = sum_{f in B row a_col[e]} b_val[f] * grad[row(e), b_col[f]]`` (the gradient
    of spgemm with respect to A's values), from torch ops: the oracle."""
    acc = torch.float32 if grad.dtype in _HALF else grad.dtype
    e, f, row = _pairs(a_rowptr, a_col, b_rowptr)
    prod = grad.to(acc)[row, b_col.long()[f]]
    if b_val is not None:
        prod = prod * b_val.to(acc)[f]
    out = torch.zeros(a_col.numel(), dtype=acc, device=grad.device).index_add_(0, e, prod)
    return out.to(grad.dtype)


@register_kernel_fake("spgemm_kernel")
def _(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype):
    return a_col.new_empty((a_rowptr.shape[0] - 1, num_cols), dtype=dtype)


@register_kernel_fake("spgemm_sampled_kernel")
def _(a_rowptr, a_col, b_rowptr, b_col, b_val, grad):
    return grad.new_empty((a_col.shape[0],))


def _native(name: str, device: torch.device) -> bool:
    return _backend.has_kernel(name, device, "cpp" if device.type == "cpu" else "cuda")


def _spgemm_native(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype):
    if not _native("spgemm", a_col.device):   # an extension built before this op existed
        return spgemm_reference(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype)
    if dtype in _HALF:   # the kernels accumulate in the output: widen, then round once
        a_val = None if a_val is None else a_val.float()
        b_val = None if b_val is None else b_val.float()
        return torch.ops.sparselth.spgemm_kernel(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val,
                                                 num_cols, torch.float32).to(dtype)
    return torch.ops.sparselth.spgemm_kernel(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val,
                                             num_cols, dtype)


def _sampled_native(a_rowptr, a_col, b_rowptr, b_col, b_val, grad):
    if not _native("spgemm_sampled", grad.device):
        return spgemm_sampled_reference(a_rowptr, a_col, b_rowptr, b_col, b_val, grad)
    if grad.dtype in _HALF:
        b_val = None if b_val is None else b_val.float()
        return torch.ops.sparselth.spgemm_sampled_kernel(a_rowptr, a_col, b_rowptr, b_col, b_val,
                                                         grad.float()).to(grad.dtype)
    return torch.ops.sparselth.spgemm_sampled_kernel(a_rowptr, a_col, b_rowptr, b_col, b_val,
                                                     grad)


def _spgemm_triton(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype):
    from ..kernels.spgemm import spgemm as triton_spgemm
    return triton_spgemm(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype)


def _sampled_triton(a_rowptr, a_col, b_rowptr, b_col, b_val, grad):
    from ..kernels.spgemm import sampled as triton_sampled
    return triton_sampled(a_rowptr, a_col, b_rowptr, b_col, b_val, grad)


_IMPLS = {"reference": spgemm_reference, "cpp": _spgemm_native, "cuda": _spgemm_native,
          "triton": _spgemm_triton}
_SAMPLED = {"reference": spgemm_sampled_reference, "cpp": _sampled_native,
            "cuda": _sampled_native, "triton": _sampled_triton}


@torch.library.custom_op("sparselth::spgemm_sampled", mutates_args=())
def _sampled_op(a_rowptr: Tensor, a_col: Tensor, b_rowptr: Tensor, b_col: Tensor,
                b_val: Optional[Tensor], grad: Tensor, backend: str) -> Tensor:
    return _SAMPLED[backend](a_rowptr, a_col, b_rowptr, b_col, b_val, grad)


@_sampled_op.register_fake
def _(a_rowptr, a_col, b_rowptr, b_col, b_val, grad, backend):
    return grad.new_empty((a_col.shape[0],))


def _sampled_call(a_rowptr, a_col, b_rowptr, b_col, b_val, grad, backend, eager):
    """The sampled product from inside a backward: the kernel itself when eager, the custom op
    (traceable) otherwise."""
    if eager:
        return _SAMPLED[backend](a_rowptr, a_col, b_rowptr, b_col, b_val, grad)
    return _sampled_op(a_rowptr, a_col, b_rowptr, b_col, b_val, grad, backend)


@torch.library.custom_op("sparselth::spgemm", mutates_args=())
def _spgemm_op(a_rowptr: Tensor, a_col: Tensor, a_val: Optional[Tensor], b_rowptr: Tensor,
               b_col: Tensor, b_val: Optional[Tensor], at_rowptr: Optional[Tensor],
               at_col: Optional[Tensor], at_perm: Optional[Tensor],
               bt_rowptr: Optional[Tensor], bt_col: Optional[Tensor],
               bt_perm: Optional[Tensor], num_cols: int, dtype: torch.dtype,
               backend: str) -> Tensor:
    return _IMPLS[backend](a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, num_cols, dtype)


@_spgemm_op.register_fake
def _(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, at_rowptr, at_col, at_perm, bt_rowptr,
      bt_col, bt_perm, num_cols, dtype, backend):
    return a_col.new_empty((a_rowptr.shape[0] - 1, num_cols), dtype=dtype)


def _spgemm_setup(ctx, inputs, output):
    (a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, at_rowptr, at_col, at_perm, bt_rowptr,
     bt_col, bt_perm, num_cols, dtype, backend) = inputs
    ctx.save_for_backward(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, at_rowptr, at_col,
                          at_perm, bt_rowptr, bt_col, bt_perm)
    ctx.num_cols, ctx.backend = num_cols, backend


def _grad_b_sampled(saved, grad, backend, eager):
    """``dB.val = (A^T grad)`` at B's pattern as the sampled product of the transposes:
    ``dB^T.val[(c, j)] = sum_{i in A^T row j} A^T[j, i] * grad^T[c, i]``; cost follows the
    (A entry, B entry) pairs, like the forward."""
    (a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, at_rowptr, at_col, at_perm, bt_rowptr,
     bt_col, bt_perm) = saved
    n = b_rowptr.numel() - 1
    if at_rowptr is None:
        at_rowptr, at_col, at_perm = transpose_parts(a_rowptr, a_col, n)
    if bt_rowptr is None:
        bt_rowptr, bt_col, bt_perm = transpose_parts(b_rowptr, b_col, grad.shape[1])
    at_val = None if a_val is None else a_val[at_perm].contiguous()
    vals_t = _sampled_call(bt_rowptr, bt_col, at_rowptr, at_col, at_val, grad.t().contiguous(),
                           backend, eager)
    return torch.empty_like(vals_t).index_put((bt_perm,), vals_t)


def _grad_b_dense(saved, grad, backend, eager):
    """``dB.val = (A^T grad)`` at B's pattern through the dense product ``A^T @ grad`` (the
    SpMM kernel), then a gather: cost ``nnz(A) * k``, vectorised."""
    from .spmm import _spmm_call
    (a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, at_rowptr, at_col, at_perm, *_) = saved
    n = b_rowptr.numel() - 1
    k = grad.shape[1]
    if at_rowptr is None:
        at_rowptr, at_col, at_perm = transpose_parts(a_rowptr, a_col, n)
    at_val = None if a_val is None else a_val[at_perm].contiguous()
    full = _spmm_call(at_rowptr, at_col, at_val, grad, n, backend, eager)
    b_row = torch.repeat_interleave(torch.arange(n, device=grad.device),
                                    (b_rowptr[1:] - b_rowptr[:-1]).long(),
                                    output_size=b_col.numel())
    return full.reshape(-1)[b_row * k + b_col.long()]


def _spgemm_backward(ctx, grad):
    saved = ctx.saved_tensors
    a_rowptr, a_col, a_val, b_rowptr, b_col, b_val = saved[:6]
    needs = ctx.needs_input_grad
    eager = getattr(ctx, "eager", False) and not torch.is_grad_enabled()
    grad = grad.contiguous()
    grad_a = grad_b = None
    if needs[2]:
        grad_a = _sampled_call(a_rowptr, a_col, b_rowptr, b_col, b_val, grad, ctx.backend, eager)
    if needs[5]:
        n = max(b_rowptr.shape[0] - 1, 1)
        pairs = a_col.shape[0] * b_col.shape[0] / n   # shapes only: static under compile
        dense_macs = a_col.shape[0] * grad.shape[1]
        route = _grad_b_sampled if _SAMPLED_PAIR_COST * pairs < dense_macs else _grad_b_dense
        grad_b = route(saved, grad, ctx.backend, eager)
    return (None, None, grad_a, None, None, grad_b) + (None,) * 9


# Eager calls that need a gradient go through this twin of the op (same backward).
_spgemm_eager = eager_twin(
    _spgemm_op, lambda *inputs: _IMPLS[inputs[-1]](*inputs[:6], inputs[12], inputs[13]),
    _spgemm_setup, _spgemm_backward)


def spgemm(A: CSR, B: CSR, *, backend: str = "auto") -> Tensor:
    """Sparse times sparse into dense: ``out = A @ B``.

    Args:
        A: ``(m, n)`` :class:`~sparselth.CSR`; a pattern (``A.val is None``) multiplies by ones.
        B: ``(n, k)`` :class:`~sparselth.CSR`, same device; both value arrays (when present)
            share a dtype and may require grad (e.g. B's values gathered from a pruned weight,
            ``W.t()[mask.t()]``, so that training reaches the kept weights).
        backend: ``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``.

    Returns:
        ``(m, k)`` dense tensor of the values' dtype (the default dtype for two patterns).
        Its cost follows ``sum over stored (i, j) of A of nnz(B row j)`` (plus writing the
        output), so it pays when B is sparse enough; see ``bench.lightgcn_propagation``.

    Example::

        >>> X = CSR.from_dense(features)                  # (N, F) bag of words
        >>> Wt = CSR.from_dense(weight.t() * mask.t())     # (F, H) pruned weight
        >>> H = spgemm(X, Wt)                              # == features @ (weight * mask).t()
    """
    op = "spgemm"
    check_csr(op, "A", A)
    check_csr(op, "B", B)
    m, n = A.shape
    if B.shape[0] != n:
        raise ValueError(f"{op}: B must have A.shape[1] = {n} rows, got B.shape = {B.shape}")
    if B.device != A.device:
        raise ValueError(f"{op}: B is on {B.device} but A is on {A.device}")
    if A.val is not None and B.val is not None and A.val.dtype != B.val.dtype:
        raise TypeError(f"{op}: A.val has dtype {A.val.dtype} but B.val has {B.val.dtype}; "
                        "cast one of them")
    dtype = (A.val.dtype if A.val is not None
             else B.val.dtype if B.val is not None else torch.get_default_dtype())
    if A.index_dtype != B.index_dtype:   # the kernels take one index dtype
        A, B = A.index_as(torch.int64), B.index_as(torch.int64)
    k = B.shape[1]
    name = _backend.resolve(backend, A.device, dtype, op)
    a_val, b_val = A.val, B.val
    needs_grad = torch.is_grad_enabled() and any(
        v is not None and v.requires_grad for v in (a_val, b_val))
    if not needs_grad and not torch.compiler.is_compiling():
        return _IMPLS[name](A.rowptr, A.col, a_val, B.rowptr, B.col, b_val, k, dtype)
    at = bt = (None, None, None)
    if b_val is not None and b_val.requires_grad:
        At, Bt = A.t(), B.t()
        at = (At.rowptr, At.col, A.csr_to_csc_perm())
        bt = (Bt.rowptr, Bt.col, B.csr_to_csc_perm())
    op_fn = _spgemm_op if torch.compiler.is_compiling() else _spgemm_eager
    return op_fn(A.rowptr, A.col, a_val, B.rowptr, B.col, b_val, *at, *bt, k, dtype, name)
