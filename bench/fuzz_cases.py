"""The cases of ``python -m bench.fuzz``: one generator per op family, each drawing a random
input from its own seeded generator, running the op on one backend and checking it.

A case returns ``"ok"`` (the result equals a dense PyTorch computation of the same thing) or
``"rejected"`` (the input was invalid on purpose and the library raised ``ValueError`` or
``TypeError``; a state dict refused by ``load_state_dict`` may raise ``RuntimeError``). Any
other outcome raises :class:`Mismatch` (a wrong answer, an invalid input accepted, or an
unexpected exception type), or kills the process (a crash the parent records). Inputs are
small on purpose: odd shapes, empty rows, one column, power-law rows, int32/int64 indices,
float32/float64; the Triton interpreter runs the smallest.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

import sparselth
from sparselth import CSR
from sparselth.ops import (edge_softmax, embedding_bag, embedding_lookup, masked_embedding,
                           sddmm, spgemm, spmm, spmm_linear)
from sparselth.ops.sparse_conv import sparse_conv2d, sparse_conv_transpose2d
from sparselth.ops.sparse_linear import sparse_linear
from sparselth.sparse.embedding_formats import compress_embedding


class Mismatch(AssertionError):
    """A case whose result differs from its dense computation, or whose bad input was taken."""


REFUSALS = (ValueError, TypeError)
TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.float64: dict(atol=1e-9, rtol=1e-9)}


def _close(name: str, got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    if got.shape != ref.shape:
        raise Mismatch(f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}")
    if not torch.allclose(got.double(), ref.double(), equal_nan=True, **TOL[dtype]):
        err = (got.double() - ref.double()).abs().nan_to_num(nan=float("inf")).max().item()
        raise Mismatch(f"{name}: max abs error {err:.3g}")


class Draw:
    """Random choices of one case, from a NumPy generator seeded by (seed, family, index)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.torch = torch.Generator().manual_seed(int(rng.integers(2**62)))

    def size(self, hi: int, zero: float = 0.08) -> int:
        """0 now and then, 1 often, else uniform in [1, hi]."""
        u = self.rng.random()
        if u < zero:
            return 0
        if u < zero + 0.12:
            return 1
        return int(self.rng.integers(1, hi + 1))

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def dtype(self) -> torch.dtype:
        return self.pick((torch.float32, torch.float64))

    def index_dtype(self) -> torch.dtype:
        return self.pick((torch.int32, torch.int64))

    def randn(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=self.torch, dtype=torch.float64).to(dtype)

    def mask(self, *shape: int, keep: Optional[float] = None) -> torch.Tensor:
        keep = self.rng.uniform(0.0, 1.0) if keep is None else keep
        return torch.rand(*shape, generator=self.torch) < keep

    def csr(self, rows: int, cols: int, dtype=torch.float32, index_dtype=torch.int64,
            values: bool = True) -> CSR:
        """A duplicate-free random pattern: uniform or power-law rows, some rows empty."""
        if rows and cols:
            density = self.rng.uniform(0.0, 0.6)
            if self.coin(0.3):   # power-law row lengths
                ranks = torch.randperm(rows, generator=self.torch).double() + 1
                p = (density * rows ** 0.5 * ranks ** -0.5).clamp(max=1.0).unsqueeze(1)
            else:
                p = torch.full((rows, 1), density, dtype=torch.float64)
            keep = torch.rand(rows, cols, generator=self.torch, dtype=torch.float64) < p
            keep &= torch.rand(rows, 1, generator=self.torch) >= self.rng.uniform(0, 0.4)
        else:
            keep = torch.zeros(rows, cols, dtype=torch.bool)
        r, c = keep.nonzero(as_tuple=True)
        val = self.randn(r.numel(), dtype=dtype) if values else None
        return CSR.from_coo(r, c, val, (rows, cols), index_dtype=index_dtype)


def _dense(A: CSR, dtype: torch.dtype) -> torch.Tensor:
    """``A`` as a dense matrix; a pattern (no values) as ones."""
    return A.to_dense(dtype)


# ----------------------------------------------------------------------------------- kernels
def case_spmm(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    m, n, f = d.size(40), d.size(40), d.size(24) or 1
    A = d.csr(m, n, dt, it, values=d.coin(0.85))
    X = d.randn(n, f, dtype=dt)
    x_mask = d.mask(n, f) if d.coin(0.3) else None
    row_scale = d.randn(m, dtype=dt) if d.coin(0.3) else None
    bias = d.randn(f, dtype=dt) if d.coin(0.3) else None
    relu = d.coin(0.3)
    grad = d.coin(0.3) and backend != "triton"
    Xg = X.clone().requires_grad_(grad)
    got = spmm(A, Xg, x_mask=x_mask, row_scale=row_scale, bias=bias, relu=relu, backend=backend)
    Xr = X.clone().requires_grad_(grad)
    ref = _dense(A, dt) @ (Xr if x_mask is None else Xr * x_mask.to(dt))
    if row_scale is not None:
        ref = row_scale[:, None] * ref
    if bias is not None:
        ref = ref + bias
    if relu:
        ref = torch.relu(ref)
    _close("spmm", got, ref, dt)
    if grad:
        w = d.randn(m, f, dtype=dt)
        (got * w).sum().backward()
        (ref * w).sum().backward()
        _close("spmm grad X", Xg.grad, Xr.grad, dt)
    return "ok"


def case_sddmm(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    m, n, f = d.size(40), d.size(40), d.size(24) or 1
    A = d.csr(m, n, dt, it, values=False)
    X, Y = d.randn(m, f, dtype=dt), d.randn(n, f, dtype=dt)
    got = sddmm(A, X, Y, backend=backend)
    row = torch.repeat_interleave(torch.arange(m), A.rowptr.long().diff())
    ref = (X[row] * Y[A.col.long()]).sum(-1)
    _close("sddmm", got, ref, dt)
    return "ok"


def case_spgemm(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    m, k, n = d.size(30), d.size(30), d.size(30)
    A, B = d.csr(m, k, dt, it, values=d.coin(0.8)), d.csr(k, n, dt, it)
    got = spgemm(A, B, backend=backend)
    _close("spgemm", got, _dense(A, dt) @ _dense(B, dt), dt)
    return "ok"


def case_edge_softmax(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    m, n = d.size(30), d.size(30)
    A = d.csr(m, n, dt, it, values=False)
    heads = d.pick((None, 1, 3))
    shape = (A.nnz,) if heads is None else (A.nnz, heads)
    logits = 4 * d.randn(*shape, dtype=dt)
    keep = d.mask(*shape, keep=0.7) if d.coin(0.3) else None
    got = edge_softmax(A, logits, keep)
    ref = torch.zeros_like(logits)
    ptr = A.rowptr.long().tolist()
    for i in range(m):
        s, e = ptr[i], ptr[i + 1]
        if s == e:
            continue
        z = logits[s:e]
        if keep is not None:
            z = z.masked_fill(~keep[s:e], float("-inf"))
        p = torch.softmax(z, dim=0)
        ref[s:e] = torch.nan_to_num(p, nan=0.0)   # a row with nothing kept gives zeros
    _close("edge_softmax", got, ref, dt)
    return "ok"


def case_embedding(d: Draw, backend: str) -> str:
    dt = d.dtype()
    rows, dim = d.size(50) or 1, d.size(20) or 1
    W = d.randn(rows, dim, dtype=dt)
    M = d.mask(rows, dim) & (d.mask(rows, 1, keep=0.7) if d.coin(0.5) else True)
    fmt = compress_embedding(W, M, format=d.pick(("auto", "row_compact", "csr", "bitmask")),
                             quantize="int8" if d.coin(0.2) else None)
    ids = torch.randint(0, rows, (d.size(12), d.size(4) or 1), generator=d.torch,
                        dtype=d.index_dtype())
    table = fmt.to_dense()
    kind = d.pick(("lookup", "bag_sum", "bag_mean"))
    if kind == "lookup":
        _close("embedding_lookup", embedding_lookup(fmt, ids, backend=backend),
               table[ids.long()], dt)
    else:
        mode = kind[4:]
        got = embedding_bag(fmt, ids, mode=mode, backend=backend)
        _close(f"embedding_bag {mode}", got,
               F.embedding_bag(ids.long(), table.double(), mode=mode).to(table.dtype), dt)
    return "ok"


def case_masked_embedding(d: Draw, backend: str) -> str:
    dt = d.dtype()
    rows, dim = d.size(50) or 1, d.size(20) or 1
    W = d.randn(rows, dim, dtype=dt)
    M = d.mask(rows, dim) if d.coin(0.8) else None
    ids = torch.randint(0, rows, (d.size(30),), generator=d.torch, dtype=d.index_dtype())
    Wm = W if M is None else W * M
    grad = d.coin(0.4) and backend != "triton"
    Wg = W.clone().requires_grad_(grad)
    got = masked_embedding(Wg, M, ids, backend=backend)
    _close("masked_embedding", got, Wm[ids.long()], dt)
    if grad and ids.numel():
        got.sum().backward()
        ref = torch.zeros_like(W).index_add_(0, ids.long(), torch.ones(ids.numel(), dim,
                                                                       dtype=dt))
        _close("masked_embedding grad", Wg.grad, ref if M is None else ref * M, dt)
    return "ok"


def case_sparse_linear(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    out_f, in_f = d.size(40) or 1, d.size(40) or 1
    W = d.csr(out_f, in_f, dt, it)
    lead = d.pick(((), (1,), (d.size(9),), (2, 3)))
    x = d.randn(*lead, in_f, dtype=dt)
    b = d.randn(out_f, dtype=dt) if d.coin(0.5) else None
    got = sparse_linear(x, W, b, backend=backend)
    _close("sparse_linear", got, F.linear(x, _dense(W, dt), b), dt)
    return "ok"


def _conv_geometry(d: Draw) -> dict:
    return dict(kernel_size=(d.pick((1, 2, 3)), d.pick((1, 3))),
                stride=(d.pick((1, 2)), d.pick((1, 2))), padding=(d.pick((0, 1)), d.pick((0, 1))),
                dilation=(d.pick((1, 2)), 1), groups=d.pick((1, 1, 2)))


def case_sparse_conv(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    g = _conv_geometry(d)
    kh, kw = g["kernel_size"]
    cin, cout = g["groups"] * (d.size(4) or 1), g["groups"] * (d.size(4) or 1)
    n = d.pick((1, 2))
    transposed = d.coin(0.4)
    W = d.randn(*((cin, cout // g["groups"]) if transposed else (cout, cin // g["groups"])),
                kh, kw, dtype=dt) * d.mask(1, 1, kh, kw, keep=0.8) * d.mask(
        cin if transposed else cout, 1, 1, 1, keep=0.8)
    W2 = W.reshape(W.shape[0], -1)
    r, c = W2.nonzero(as_tuple=True)
    A = CSR.from_coo(r, c, W2[r, c], tuple(W2.shape), index_dtype=it)
    b = d.randn(cout, dtype=dt) if d.coin(0.5) else None
    hmin = (kh - 1) * g["dilation"][0] + 1
    H, Wd = hmin + d.size(6, zero=0), kw * 2 + d.size(6, zero=0)
    if transposed:
        x = d.randn(n, cin, d.size(5, zero=0), d.size(5, zero=0), dtype=dt)
        op = max(0, min(g["stride"][0], g["dilation"][0]) - 1), 0
        for a, k in ((0, kh), (1, kw)):   # keep the output non-empty: Hy >= 1
            if (x.shape[2 + a] - 1) * g["stride"][a] + g["dilation"][a] * (k - 1) + 1 \
                    + op[a] <= 2 * g["padding"][a]:
                g["padding"] = (0, g["padding"][1]) if a == 0 else (g["padding"][0], 0)
        got = sparse_conv_transpose2d(x, A, b, g["stride"], g["padding"], op, g["groups"],
                                      g["dilation"], kernel_size=(kh, kw), backend=backend)
        ref = F.conv_transpose2d(x, W, b, g["stride"], g["padding"], op, g["groups"],
                                 g["dilation"])
    else:
        x = d.randn(n, cin, H, Wd, dtype=dt)
        got = sparse_conv2d(x, A, b, g["stride"], g["padding"], g["dilation"], g["groups"],
                            kernel_size=(kh, kw), route=d.pick(("auto", "direct", "im2col"))
                            if backend != "triton" else "im2col", backend=backend)
        ref = F.conv2d(x, W, b, g["stride"], g["padding"], g["dilation"], g["groups"])
    _close("sparse_conv_transpose2d" if transposed else "sparse_conv2d", got, ref, dt)
    return "ok"


def case_spmm_linear(d: Draw, backend: str) -> str:
    dt, it = d.dtype(), d.index_dtype()
    m, n, f, o = d.size(30), d.size(30), d.size(16) or 1, d.size(16) or 1
    A, W = d.csr(m, n, dt, it, values=d.coin(0.8)), d.csr(o, f, dt, it)
    X = d.randn(n, f, dtype=dt)
    b = d.randn(f, dtype=dt) if d.coin(0.5) else None
    relu = d.coin(0.5)
    got = spmm_linear(A, X, W, bias=b, relu=relu, backend=backend)
    h = _dense(A, dt) @ X + (0 if b is None else b)
    _close("spmm_linear", got, (torch.relu(h) if relu else h) @ _dense(W, dt).t(), dt)
    return "ok"


# ------------------------------------------------------------------------------- bad inputs
def _expect_refusal(name: str, fn: Callable[[], object]) -> str:
    try:
        fn()
    except REFUSALS:
        return "rejected"
    except Exception as e:   # noqa: BLE001 - any other type is a finding
        raise Mismatch(f"{name}: {type(e).__name__} instead of ValueError/TypeError: {e}")
    raise Mismatch(f"{name}: invalid input accepted")


def _corrupt_index(d: Draw, t: torch.Tensor, bound: int) -> torch.Tensor:
    """A copy of index tensor ``t`` with one entry out of ``[0, bound)`` and below -1 or at
    least ``bound`` (-1 is a valid "absent" marker in some formats), within ``t``'s dtype."""
    top = torch.iinfo(t.dtype).max
    t = t.clone()
    bad = d.pick((min(bound, top), min(bound + 7, top), -2, max(-(2**30), -top), top))
    if t.numel() == 0:
        return torch.tensor([bad], dtype=t.dtype)
    t.view(-1)[int(d.rng.integers(t.numel()))] = bad
    return t


def case_bad_csr(d: Draw, backend: str) -> str:
    """A structure with one index out of range (or rowptr non-monotone) must be refused by
    the public constructor, or, if the defect sits in a later op argument, by the op."""
    it = d.index_dtype()
    m, n = d.size(20) or 1, d.size(20) or 1
    A = d.csr(m, n, torch.float32, it)
    kind = d.pick(("col", "rowptr_end", "rowptr_order", "shape", "x_rows", "val_len"))
    if kind == "col" and A.nnz:
        return _expect_refusal("CSR col", lambda: spmm(
            CSR(A.rowptr, _corrupt_index(d, A.col, n), A.val, A.shape), d.randn(n, 3),
            backend=backend))
    if kind == "rowptr_end" or (kind == "col" and not A.nnz):
        rp = A.rowptr.clone()
        rp[-1] = rp[-1] + d.pick((1, 5, 1000))
        return _expect_refusal("CSR rowptr", lambda: spmm(CSR(rp, A.col, A.val, A.shape),
                                                           d.randn(n, 3), backend=backend))
    if kind == "rowptr_order":
        rp = A.rowptr.clone()
        rp[int(d.rng.integers(1, m + 1)) - 1] = A.nnz + 3
        return _expect_refusal("CSR rowptr order", lambda: CSR(rp, A.col, A.val, A.shape))
    if kind == "shape":
        return _expect_refusal("CSR shape", lambda: CSR.from_coo(
            torch.tensor([0]), torch.tensor([0]), None, d.pick(((-1, 3), (3, -2), (2**62, 1),
                                                                (1, 2.5)))))
    if kind == "x_rows":
        return _expect_refusal("spmm X", lambda: spmm(A, d.randn(n + 1, 2), backend=backend))
    return _expect_refusal("CSR val", lambda: CSR(A.rowptr, A.col, d.randn(A.nnz + 1),
                                                  A.shape))


def _embedding_module(d: Draw) -> torch.nn.Module:
    rows, dim = d.size(30) or 2, d.size(12) or 2
    W, M = d.randn(rows, dim), d.mask(rows, dim, keep=0.5)
    fmt = d.pick(("row_compact", "csr", "bitmask"))
    if d.coin(0.3):
        return sparselth.nn.CompressedEmbeddingBag.from_masked(W, M, format=fmt)
    return sparselth.nn.CompressedEmbedding.from_masked(W, M, format=fmt)


def _linear_module(d: Draw) -> torch.nn.Module:
    lin = torch.nn.Linear(d.size(20) or 2, d.size(20) or 2)
    return sparselth.nn.SparseLinear.from_dense(lin, d.mask(*lin.weight.shape, keep=0.5))


def _conv_module(d: Draw) -> torch.nn.Module:
    conv = torch.nn.Conv2d(d.size(4) or 1, d.size(4) or 1, 3, padding=1)
    return sparselth.nn.SparseConv2d.from_dense(conv, d.mask(*conv.weight.shape, keep=0.5))


def case_bad_state_dict(d: Draw, backend: str) -> str:
    """A module's state dict with one index buffer corrupted must be refused on load."""
    module = d.pick((_embedding_module, _linear_module, _conv_module))(d)
    state = module.state_dict()
    index = {k: v for k, v in state.items() if not v.dtype.is_floating_point and v.numel()
             and v.dtype != torch.bool and v.dtype != torch.uint8}
    if not index:
        return "ok"
    key = d.pick(sorted(index))
    bad = dict(state)
    top = torch.iinfo(index[key].dtype).max
    if d.coin(0.2):   # one entry too many, of a value no structure allows
        bad[key] = torch.cat([index[key], torch.tensor([top], dtype=index[key].dtype)])
    else:
        bad[key] = _corrupt_index(d, index[key], top)
    try:
        module.load_state_dict(bad)
    except (ValueError, TypeError, RuntimeError):
        return "rejected"
    raise Mismatch(f"{type(module).__name__}.load_state_dict: corrupted {key!r} accepted")


def case_bad_ticket(d: Draw, backend: str) -> str:
    """A ticket file with bytes flipped or cut must be refused on load, never half-read."""
    from sparselth.ticket import Ticket
    n = d.size(12) or 1
    w = d.randn(n, n)
    ticket = Ticket({"w": d.mask(n, n)}, {"w": w}, {"w": w.clone()}, {"seed": 0})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "t"
        ticket.save(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        target = d.pick(files)
        data = bytearray(target.read_bytes())
        if d.coin(0.3):
            data = data[:int(d.rng.integers(len(data)))]
        else:
            for _ in range(int(d.rng.integers(1, 4))):
                i = int(d.rng.integers(len(data)))
                data[i] ^= 1 << int(d.rng.integers(8))
        target.write_bytes(bytes(data))
        try:
            loaded = Ticket.load(folder)
        except REFUSALS:
            return "rejected"
        except Exception as e:  # noqa: BLE001
            raise Mismatch(f"Ticket.load: {type(e).__name__} instead of ValueError: {e}")
        same = all(torch.equal(loaded.masks[k], ticket.masks[k]) for k in ticket.masks) and \
            all(torch.equal(loaded.trained_state[k], ticket.trained_state[k])
                for k in ticket.trained_state)
        if not same:
            raise Mismatch("Ticket.load: a corrupted file loaded with different tensors")
        return "ok"   # the flip hit bytes that do not matter (e.g. JSON whitespace)


# ------------------------------------------------------------------------------- registry
# family -> (case, backends it runs on, relative weight of the case budget)
FAMILIES: Dict[str, tuple] = {
    "spmm": (case_spmm, ("reference", "cpp", "triton"), 3),
    "sddmm": (case_sddmm, ("reference", "cpp", "triton"), 2),
    "spgemm": (case_spgemm, ("reference", "cpp"), 2),
    "edge_softmax": (case_edge_softmax, ("auto",), 1),
    "embedding": (case_embedding, ("reference", "cpp", "triton"), 2),
    "masked_embedding": (case_masked_embedding, ("reference", "cpp", "triton"), 2),
    "sparse_linear": (case_sparse_linear, ("reference", "cpp"), 2),
    "sparse_conv": (case_sparse_conv, ("reference", "cpp"), 2),
    "spmm_linear": (case_spmm_linear, ("reference", "cpp"), 1),
    "bad_csr": (case_bad_csr, ("reference", "cpp"), 2),
    "bad_state_dict": (case_bad_state_dict, ("auto",), 2),
    "bad_ticket": (case_bad_ticket, ("auto",), 1),
}


def run_case(family: str, backend: str, seed: int, index: int) -> str:
    """Run case ``index`` of ``family`` on ``backend``; deterministic in its arguments."""
    fn = FAMILIES[family][0]
    rng = np.random.default_rng([seed, sorted(FAMILIES).index(family),
                                 ("reference", "cpp", "triton", "auto").index(backend), index])
    with torch.no_grad() if family.startswith("bad_") else contextlib.nullcontext():
        return fn(Draw(rng), backend)

