"""The shared test matrix: random CSR inputs with awkward shapes, dtypes, index dtypes,
backends, and per-dtype tolerances. Used by the test-suite and handy for users' own tests."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .ops.backend import backends
from .sparse.csr import CSR

DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)

# (rows, cols, F): empty matrix, one row, one column, F = 1, sizes off every block width.
ODD_SHAPES: Tuple[Tuple[int, int, int], ...] = (
    (0, 5, 3), (5, 0, 3), (1, 1, 1), (1, 17, 5), (17, 1, 9), (7, 13, 1), (33, 29, 17),
    (64, 64, 64), (50, 70, 33), (97, 31, 130), (3, 200, 257), (120, 90, 8),
)


def tolerances(dtype: torch.dtype) -> dict:
    """``atol``/``rtol`` for comparing a kernel against the reference in ``dtype``."""
    return {
        torch.float64: dict(atol=1e-10, rtol=1e-10),
        torch.float32: dict(atol=1e-4, rtol=1e-4),
        torch.float16: dict(atol=2e-2, rtol=2e-2),
        torch.bfloat16: dict(atol=1e-1, rtol=5e-2),
    }[dtype]


def random_csr(rows: int, cols: int, density: float = 0.1, *, dtype=torch.float32,
               index_dtype=torch.int64, values: bool = True, power_law: bool = False,
               empty_rows: float = 0.2, seed: int = 0, device="cpu") -> CSR:
    """A random duplicate-free CSR: ``empty_rows`` of the rows are left empty; with
    ``power_law`` the row lengths are heavy-tailed (a few long rows, many short)."""
    g = torch.Generator().manual_seed(seed)
    if rows == 0 or cols == 0:
        keep = torch.zeros(rows, cols, dtype=torch.bool)
    else:
        p = torch.full((rows, 1), density)
        if power_law:
            ranks = torch.randperm(rows, generator=g).double() + 1
            p = (density * rows ** 0.5 * ranks ** -0.5).clamp(max=1.0).float().unsqueeze(1)
        keep = torch.rand(rows, cols, generator=g) < p
        keep &= (torch.rand(rows, 1, generator=g) >= empty_rows)
    r, c = keep.nonzero(as_tuple=True)
    val = torch.randn(r.numel(), generator=g, dtype=torch.float64).to(dtype) if values else None
    A = CSR.from_coo(r, c, val, (rows, cols), index_dtype=index_dtype)
    return A.to(device)


def test_backends(device: str = "cpu", max_work: Optional[int] = None) -> List[str]:
    """Backends to test on ``device``; the Triton interpreter is listed only for small work."""
    out = []
    for b in backends():
        if b == "cpp" and device != "cpu":
            continue
        if b == "cuda" and device != "cuda":
            continue
        if b == "triton" and device == "cpu" and max_work is not None and max_work > 20_000:
            continue
        out.append(b)
    return out


test_backends.__test__ = False  # not a pytest test
