"""Shared by the ops: argument checks (cheap, O(1) per call; a CSR was validated once), the
eager twin of a custom op, and the fake (shape-only) implementations of the C++ kernels."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..sparse.csr import CSR
from . import backend as _backend

Tensor = torch.Tensor
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_csr(op: str, name: str, A) -> CSR:
    if not isinstance(A, CSR):
        raise TypeError(f"{op}: {name} must be a sparselth.CSR, got {type(A).__name__} "
                        "(build one with CSR.from_edge_index / from_torch / from_scipy)")
    A._recheck()
    return A


def check_dense(op: str, name: str, t, dim: int = 2) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(f"{op}: {name} must be {dim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be float16/bfloat16/float32/float64, got {t.dtype}")
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")
    return t


def check_like(op: str, name: str, t, device: torch.device, dtype: torch.dtype) -> None:
    if t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device}, expected {device}")
    if t.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}, expected {dtype}")


def check_vector(op: str, name: str, t, length: int, like: Tensor) -> Optional[Tensor]:
    """An optional per-row or per-feature operand (a bias, a row scale): None, or a dense
    ``(length,)`` tensor with ``like``'s dtype and device."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a tensor or None, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.dim() != 1 or t.numel() != length:
        raise ValueError(f"{op}: {name} must have shape ({length},), got {tuple(t.shape)}")
    check_like(op, name, t, like.device, like.dtype)
    return t


def check_mask(op: str, name: str, mask, shapes: Sequence[tuple], shape_text: str,
               dtypes: Sequence[torch.dtype], dtype_text: str, device: torch.device,
               ref: str) -> Optional[Tensor]:
    """An optional mask: None, or a tensor with one of ``shapes`` and ``dtypes`` on ``device``
    (the device of the argument named ``ref``). The texts complete "``name`` must have ..."
    and "``name`` must ..." in the errors."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{op}: {name} must be a tensor or None, got {type(mask).__name__}")
    if tuple(mask.shape) not in [tuple(s) for s in shapes]:
        raise ValueError(f"{op}: {name} must have {shape_text}, got {tuple(mask.shape)}")
    if mask.dtype not in dtypes:
        raise TypeError(f"{op}: {name} must {dtype_text}, got {mask.dtype}")
    if mask.device != device:
        raise ValueError(f"{op}: {name} is on {mask.device} but {ref} is on {device}")
    return mask


def check_weight_input(op: str, x, weight: CSR) -> Tensor:
    """The input of a layer with a CSR weight: a floating tensor on the weight's device whose
    dtype is the stored values' (shapes are the caller's to check)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{op}: input must be floating point, got {x.dtype}")
    if x.device != weight.device:
        raise ValueError(f"{op}: input is on {x.device} but weight is on {weight.device}")
    if weight.val is not None and weight.val.dtype != x.dtype:
        raise TypeError(f"{op}: weight values have dtype {weight.val.dtype} but input has "
                        f"{x.dtype}; cast one of them")
    return x


def transpose_parts(rowptr: torch.Tensor, col: torch.Tensor, num_cols: int):
    """``(t_rowptr, t_col, perm)`` of a CSR structure, from torch ops whose output shapes do
    not depend on the data (so ``torch.compile`` and ``torch.export`` trace it); used when no
    cached transpose was handed to a backward."""
    num_rows = rowptr.numel() - 1
    counts = rowptr[1:] - rowptr[:-1]
    row = torch.repeat_interleave(torch.arange(num_rows, device=col.device), counts.long(),
                                  output_size=col.numel())
    c = col.long()
    perm = torch.sort(c, stable=True).indices
    per_col = torch.zeros(num_cols, dtype=torch.long, device=col.device).index_add(
        0, c, torch.ones_like(c))
    t_rowptr = torch.cat([per_col.new_zeros(1), torch.cumsum(per_col, 0)])
    return t_rowptr.to(col.dtype), row[perm].to(col.dtype), perm


def row_index(A: CSR) -> Tensor:
    """``A.row()`` (the row of every stored entry), cached on ``A`` eagerly; while traced
    (``torch.compile``, ``torch.export``) computed without caching, so no traced tensor is
    left on a CSR that outlives the trace."""
    if torch.compiler.is_compiling() and getattr(A, "_row", None) is None:
        counts = (A.rowptr[1:] - A.rowptr[:-1]).long()
        return torch.repeat_interleave(torch.arange(A.shape[0], device=A.device), counts,
                                       output_size=A.nnz)
    return A.row()


def cached_transpose(A: CSR):
    """``(t_rowptr, t_col, perm)`` of ``A``'s transpose where the backward gets it from the
    caller: eagerly always (``A.t()``, computed once and cached on ``A``); while traced only
    when already cached (computing it there has data-dependent shapes; the backward then
    builds it with :func:`transpose_parts`), else ``(None, None, None)``."""
    if torch.compiler.is_compiling() and getattr(A, "_t", None) is None:
        return None, None, None
    At = A.t()
    return At.rowptr, At.col, A.csr_to_csc_perm()


def eager_twin(op, forward: Callable, setup_context: Callable, backward: Callable) -> Callable:
    """Registers ``backward`` as the autograd of the custom op ``op`` and returns the ``apply``
    of its eager twin: an ``autograd.Function`` with the same forward, context and backward
    and less per-call overhead (``torch.compile`` traces the custom op instead). The twin is
    written in the ``forward`` / ``setup_context`` style with a ``vmap`` rule (a loop over
    the batch), so ``torch.func`` transforms (``grad``, ``jacrev``, ``vmap``) run through it. It sets ``ctx.eager``, so a backward that
    records no graph may call the kernels directly."""
    op.register_autograd(backward, setup_context=setup_context)

    def twin_forward(*inputs):
        return forward(*inputs)

    def twin_setup_context(ctx, inputs, output):
        setup_context(ctx, inputs, output)
        ctx.eager = True

    def twin_vmap(info, in_dims, *inputs):
        """``torch.func.vmap`` (``jacrev``, ``vmap(grad)``): one call per batch entry; the
        kernels have no batched form."""
        outs = [twin.apply(*(a if d is None else a.select(d, b)
                             for a, d in zip(inputs, in_dims)))
                for b in range(info.batch_size)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])
        return torch.stack(outs), 0

    name = op._qualname.split("::")[-1]
    twin = type(f"_{name}_eager", (torch.autograd.Function,),
                {"forward": staticmethod(twin_forward),
                 "setup_context": staticmethod(twin_setup_context),
                 "backward": staticmethod(backward),
                 "vmap": staticmethod(twin_vmap),
                 "__doc__": f"Eager twin of the custom op {op._qualname}."})
    return twin.apply


def register_kernel_fake(name: str) -> Callable:
    """Decorator: the fake (shape-only) implementation of the C++ kernel op
    ``sparselth::<name>``, used by ``torch.compile`` and ``torch.library.opcheck``. Registered
    when the built extension defines the op."""
    def register(fn: Callable) -> Callable:
        if _backend._extension_loaded() and hasattr(torch.ops.sparselth, name):
            torch.library.register_fake(f"sparselth::{name}", fn)
        return fn
    return register
