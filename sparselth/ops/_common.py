"""Argument checks shared by the public ops (cheap, O(1) per call; the CSR was validated once)."""

from __future__ import annotations

import torch

from ..sparse.csr import CSR

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_csr(op: str, name: str, A) -> CSR:
    if not isinstance(A, CSR):
        raise TypeError(f"{op}: {name} must be a sparselth.CSR, got {type(A).__name__} "
                        "(build one with CSR.from_edge_index / from_torch / from_scipy)")
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


def transpose_parts(rowptr: torch.Tensor, col: torch.Tensor, num_cols: int):
    """``(t_rowptr, t_col, perm)`` of a CSR structure, from torch ops (used when no cached
    transpose was handed to a backward)."""
    num_rows = rowptr.numel() - 1
    counts = rowptr[1:] - rowptr[:-1]
    row = torch.repeat_interleave(torch.arange(num_rows, device=col.device), counts.long(),
                                  output_size=col.numel())
    perm = torch.sort(col.long(), stable=True).indices
    t_rowptr = torch.zeros(num_cols + 1, dtype=torch.long, device=col.device)
    torch.cumsum(torch.bincount(col.long(), minlength=num_cols), 0, out=t_rowptr[1:])
    return t_rowptr.to(col.dtype), row[perm].to(col.dtype), perm
