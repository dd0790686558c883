"""The shared test matrix: random CSR inputs with awkward shapes, dtypes, index dtypes, devices,
backends, per-dtype tolerances, and skip decorators that state their reason. Used by the
test-suite and handy for users' own tests.

The decorators are pytest marks (pytest is imported only when one is used)::

    from sparselth.testing import requires_cuda, requires_kernel, requires_triton

    @requires_kernel("spmm", "cuda")       # skips, saying why, where no CUDA SpMM kernel runs
    def test_my_cuda_path(): ...
"""

from __future__ import annotations

import itertools
from typing import List, Optional, Tuple

import torch

from .ops.backend import _NATIVE, _extension_loaded, backends, has_kernel
from .sparse.csr import CSR

DTYPES = (torch.float32, torch.float64)
HALF_DTYPES = (torch.float16, torch.bfloat16)
GPU_DTYPES = DTYPES + HALF_DTYPES   # what the CUDA and Triton SpMM / SDDMM kernels take
INDEX_DTYPES = (torch.int32, torch.int64)
# Work (e.g. nnz * F) above which the Triton interpreter is too slow for a unit test.
INTERPRETER_MAX_WORK = 20_000

# (rows, cols, F): empty matrix, one row, one column, F = 1, sizes off every block width.
ODD_SHAPES: Tuple[Tuple[int, int, int], ...] = (
    (0, 5, 3), (5, 0, 3), (1, 1, 1), (1, 17, 5), (17, 1, 9), (7, 13, 1), (33, 29, 17),
    (64, 64, 64), (50, 70, 33), (97, 31, 130), (3, 200, 257), (120, 90, 8),
)
# Every odd shape with every index dtype and dtype: (shape, index_dtype, dtype).
ODD_CASES = tuple(itertools.product(ODD_SHAPES, INDEX_DTYPES, DTYPES))


def tolerances(dtype: torch.dtype) -> dict:
    """``atol``/``rtol`` for comparing a kernel against the reference in ``dtype``."""
    return {
        torch.float64: dict(atol=1e-10, rtol=1e-10),
        torch.float32: dict(atol=1e-4, rtol=1e-4),
        torch.float16: dict(atol=2e-2, rtol=2e-2),
        torch.bfloat16: dict(atol=1e-1, rtol=5e-2),
    }[dtype]


def devices() -> List[str]:
    """The devices to test on: ``"cpu"``, and ``"cuda"`` where a GPU is usable."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


def triton_device() -> Optional[str]:
    """Where the Triton kernels run in this process: ``"cpu"`` in the interpreter
    (``TRITON_INTERPRET=1`` when Triton was first imported), ``"cuda"`` on a GPU, ``None``
    where they cannot run."""
    if not (has_kernel("spmm", "cpu", "triton") or has_kernel("spmm", "cuda", "triton")):
        return None
    try:
        from .kernels._common import INTERPRETED
    except Exception:  # a broken Triton install fails at import time
        return None
    if INTERPRETED:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else None


def test_backends(device: str = "cpu", max_work: Optional[int] = None) -> List[str]:
    """Backends to test on ``device``; the Triton interpreter is listed only for small work."""
    out = []
    for b in backends():
        if b == "cpp" and device != "cpu":
            continue
        if b == "cuda" and device != "cuda":
            continue
        if b == "triton" and device == "cpu" and max_work is not None and \
                max_work > INTERPRETER_MAX_WORK:
            continue
        out.append(b)
    return out


test_backends.__test__ = False  # not a pytest test


def skip_if_slow(backend: str, work: int, device: str = "cpu") -> None:
    """Skip the running test, saying why, when ``backend`` is the Triton interpreter and
    ``work`` exceeds what it runs in unit-test time (:data:`INTERPRETER_MAX_WORK`)."""
    if backend == "triton" and device == "cpu" and work > INTERPRETER_MAX_WORK:
        import pytest
        pytest.skip(f"the Triton interpreter runs small problems only (work above "
                    f"{INTERPRETER_MAX_WORK})")


def _why_no_kernel(op: str, device: str, backend: Optional[str]) -> Optional[str]:
    kind = backend or _NATIVE.get(torch.device(device).type, "compiled")
    if has_kernel(op, device, backend):
        return None
    if kind == "triton":
        return (f"no Triton kernel of {op} runs on {device} (Triton missing, no GPU, or "
                "TRITON_INTERPRET unset for CPU tensors)")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no GPU, or a CPU-only torch"
    if not _extension_loaded():
        return "the sparselth._C extension is not built"
    return f"this build of sparselth._C has no {kind} kernel of {op}"


def requires_kernel(op: str, device: str = "cpu", backend: Optional[str] = None):
    """A pytest mark that skips unless a compiled kernel of ``op`` runs on ``device``
    (see :func:`sparselth.ops.has_kernel`); its reason says what is missing."""
    import pytest
    why = _why_no_kernel(op, device, backend)
    return pytest.mark.skipif(why is not None, reason=why or "")


def _requires_cuda():
    import pytest
    return pytest.mark.skipif(not torch.cuda.is_available(),
                              reason="torch.cuda.is_available() is False: no GPU, or a CPU-only "
                                     "torch")


def _requires_triton():
    import pytest
    return pytest.mark.skipif(
        triton_device() is None,
        reason="Triton cannot run here: not installed, or compiled mode without a GPU (set "
               "TRITON_INTERPRET=1 before Triton is imported to run CPU tensors)")


_MARKS = {"requires_cuda": _requires_cuda, "requires_triton": _requires_triton}


def __getattr__(name: str):
    """``requires_cuda`` and ``requires_triton``: built on first use (they import pytest)."""
    if name in _MARKS:
        mark = globals()[name] = _MARKS[name]()
        return mark
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
