"""SpMM benchmark: sparselth backends against the peers and the memory-bandwidth floor.

Run from the repository root::

    python -m bench.spmm                 # full run (make bench): all graphs, F 16 64 128 256
    python -m bench.spmm --quick         # smoke run (make bench-quick), about 1 min
    python -m bench.spmm --graphs cora powerlaw-100k --F 64 --keep 1 0.2 --modes fwd

The full run takes about an hour on an idle 2-core machine, most of it on the 1M-node graph
(one call of the slowest peers there lasts seconds); several hours if the machine is busy.
Peak memory is ~16 GB (1M nodes, F = 256). Run it on an idle machine: a busy one inflates
multi-threaded contenders' times by scheduler waits, and the report says so.

In one run and one process it times ``out = A @ X`` (A: n x n CSR graph with float32 values,
X: n x F float32), forward (``fwd``) and forward + backward with respect to X and A's values
(``fwdbwd``), for:

- ``dense torch.mm`` (graphs with n <= ``--dense-max-n``, default 20k),
- ``torch.sparse.mm`` on CSR (int32 indices) and on COO; their autograd path materialises a
  dense n x n gradient for the values, so in ``fwdbwd`` they run only where dense does,
- ``torch.sparse csr+sampled_addmm``: the strongest torch-native forward+backward (cached
  transpose for dX, ``torch.sparse.sampled_addmm`` for dval), on every graph,
- ``scipy csr @ dense`` (forward only), ``gather+index_add_`` (autograd),
- ``torch_scatter.segment_csr`` and ``torch_sparse`` matmul when importable,
- every backend in ``sparselth.backends()`` that runs on the device (triton/cuda only on GPU).

Each result is checked against a float64 oracle before timing; timings follow
:mod:`sparselth.utils.timing` (warm-up, interleaved repetitions, wall and CPU time, median +
IQR; ratios on the headline clock: CPU time with one thread, wall time with more). Reported:
ms, speed-up vs the best peer (any non-sparselth contender), GMAC/s, minimum bytes, achieved
GB/s and its fraction of the measured copy bandwidth, and time(keep k) / time(keep 1).
Outputs ``spmm-<tag>.json``, ``.md`` and ``.png`` (tag: ``--tag``, default the host name,
with ``-quick`` appended for ``--quick``) in ``bench/results/`` for the published protocol
(``PUBLISHED``), else in ``bench/results/local/``, or in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from sparselth.utils.plot import figure
from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, stopwatch

from . import common

DEFAULT_GRAPHS = ["cora", "citeseer", "pubmed", "powerlaw-100k", "powerlaw-1m"]
QUICK_GRAPHS = ["cora", "pubmed", "powerlaw-100k"]
POWERLAW_PRESETS = {"powerlaw-100k": (100_000, 16.0), "powerlaw-1m": (1_000_000, 10.0)}
PLANETOID = ("cora", "citeseer", "pubmed")
MODES = ("fwd", "fwdbwd")
MODE_TITLE = {"fwd": "forward", "fwdbwd": "forward + backward (dX and dval)"}
# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {
    "spmm-cpu-2core-small": "--graphs cora citeseer pubmed powerlaw-100k --F 16 64 256 "
    "--budget 0.3 --tag cpu-2core-small",
}


# --------------------------------------------------------------------------- graphs


@dataclass
class BaseGraph:
    name: str
    edge_index: torch.Tensor  # int64 [2, E]
    num_nodes: int
    source: str


def load_graph(
    name: str, data_dir: Optional[Path], seed: int, notes: List[str]
) -> Optional[BaseGraph]:
    """A graph by name: ``cora|citeseer|pubmed`` (from ``data_dir``), ``powerlaw-100k``,
    ``powerlaw-1m`` or ``powerlaw:<nodes>:<avg_degree>``. None (with a note) if unavailable."""
    from sparselth.data import load_planetoid_graph, power_law_graph

    key = name.lower()
    if key in PLANETOID:
        try:
            g = load_planetoid_graph(key, data_dir)
        except FileNotFoundError as e:
            notes.append(f"{key}: skipped, dataset not found ({e})")
            return None
        return BaseGraph(key, g.edge_index, g.num_nodes, f"planetoid ({data_dir})")
    if key in POWERLAW_PRESETS:
        n, deg = POWERLAW_PRESETS[key]
    else:
        m = re.fullmatch(r"powerlaw:(\d+):(\d+(?:\.\d+)?)", key)
        if not m:
            raise ValueError(
                f"bench.spmm: unknown graph {name!r}; use one of {DEFAULT_GRAPHS} "
                "or powerlaw:<nodes>:<avg_degree>"
            )
        n, deg = int(m.group(1)), float(m.group(2))
    ei = power_law_graph(n, deg, seed=seed)
    return BaseGraph(
        key, ei, n, f"power_law_graph({n}, avg_degree={deg}, exponent=2.1, seed={seed})"
    )


# --------------------------------------------------------------------------- one case


@dataclass
class Case:
    """Everything the contenders of one (graph, keep, F) case share."""

    A: "object"  # sparselth.CSR with float32 values, int32 indices
    rowptr: torch.Tensor  # int64
    col: torch.Tensor  # int64
    row: torch.Tensor  # int64
    val: torch.Tensor  # float32 (nnz,)
    X: torch.Tensor
    dY: torch.Tensor
    m: int
    n: int
    F: int
    device: torch.device
    torch_csr: torch.Tensor
    torch_csr_t: torch.Tensor  # A^T as torch CSR (pattern; values gathered by t_perm)
    t_perm: torch.Tensor
    torch_pattern: torch.Tensor  # A's pattern with zero values (sampled_addmm input)
    torch_coo: torch.Tensor
    scipy: "object"


@dataclass
class Contender:
    name: str
    group: str  # "dense" | "peer" | "sparselth"
    fwd: Optional[Callable[[Case], Callable[[], torch.Tensor]]] = None
    fwdbwd: Optional[Callable[[Case], Callable[[], tuple]]] = None
    skip: Optional[Callable[[Case, str], Optional[str]]] = None  # reason to skip, or None

    @property
    def is_peer(self) -> bool:
        return self.group != "sparselth"


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _autograd_step(
    case: Case,
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    values: torch.Tensor,
    val_grad: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
):
    """fwd+bwd callable: ``forward(X_leaf, values_leaf).backward(dY)``; returns (dX, dval) where
    ``val_grad`` maps the values leaf's gradient to per-entry CSR order (identity by default)."""
    x, v = _leaf(case.X), _leaf(values)

    def step():
        x.grad = None
        v.grad = None
        forward(x, v).backward(case.dY)
        return x.grad, v.grad

    def checked():
        gx, gv = step()
        return gx, val_grad(gv)

    return step, checked


class _TorchSparseManual(torch.autograd.Function):
    """torch.sparse forward with a hand-written backward: dX = A^T @ dY on a transpose built
    once (values gathered by a cached permutation), dval = torch.sparse.sampled_addmm."""

    @staticmethod
    def forward(ctx, val, x, case):
        ctx.case = case
        ctx.save_for_backward(val, x)
        A = torch.sparse_csr_tensor(
            case.torch_csr.crow_indices(), case.torch_csr.col_indices(), val, (case.m, case.n)
        )
        return A @ x

    @staticmethod
    def backward(ctx, dy):
        val, x = ctx.saved_tensors
        case = ctx.case
        gval = gx = None
        if ctx.needs_input_grad[1]:
            t = case.torch_csr_t
            At = torch.sparse_csr_tensor(
                t.crow_indices(), t.col_indices(), val[case.t_perm], (case.n, case.m)
            )
            gx = At @ dy
        if ctx.needs_input_grad[0]:
            gval = torch.sparse.sampled_addmm(case.torch_pattern, dy, x.t(), beta=0.0).values()
        return gval, gx, None


def _gather_bytes(case: Case, mode: str) -> int:
    return case.A.nnz * case.F * case.X.element_size() * (3 if mode == "fwdbwd" else 1)


def make_contenders(
    device: torch.device, dense_max_n: int, max_temp_gb: float, notes: List[str]
) -> List[Contender]:
    import sparselth

    def too_big_dense(case, mode):
        if case.n > dense_max_n:
            return f"n={case.n} > --dense-max-n={dense_max_n}"
        return None

    def too_big_gather(case, mode):
        b = _gather_bytes(case, mode)
        if b > max_temp_gb * 1e9:
            return f"materialises nnz*F messages ({b / 1e9:.1f} GB > --max-temp-gb={max_temp_gb})"
        return None

    def sparse_autograd_skip(case, mode):
        if mode == "fwdbwd" and case.n > dense_max_n:
            return (
                "autograd wrt values builds a dense n x n gradient; "
                "see 'torch.sparse csr+sampled_addmm'"
            )
        return None

    out: List[Contender] = []

    # dense
    def dense_fwd(case):
        D = case.A.to_dense()
        return lambda: D @ case.X

    def dense_fwdbwd(case):
        D = case.A.to_dense()
        return _autograd_step(case, lambda x, d: d @ x, D, lambda g: g[case.row, case.col])

    out.append(Contender("dense torch.mm", "dense", dense_fwd, dense_fwdbwd, too_big_dense))

    # torch.sparse CSR / COO
    def csr_fwd(case):
        return lambda: torch.sparse.mm(case.torch_csr, case.X)

    def csr_fwdbwd(case):
        crow, colx = case.torch_csr.crow_indices(), case.torch_csr.col_indices()
        return _autograd_step(
            case,
            lambda x, v: torch.sparse.mm(
                torch.sparse_csr_tensor(crow, colx, v, (case.m, case.n)), x
            ),
            case.val,
        )

    out.append(Contender("torch.sparse.mm csr", "peer", csr_fwd, csr_fwdbwd, sparse_autograd_skip))

    def coo_fwd(case):
        return lambda: torch.sparse.mm(case.torch_coo, case.X)

    def coo_fwdbwd(case):
        idx = case.torch_coo.indices()
        return _autograd_step(
            case,
            lambda x, v: torch.sparse.mm(
                torch.sparse_coo_tensor(idx, v, (case.m, case.n), is_coalesced=True), x
            ),
            case.val,
        )

    out.append(Contender("torch.sparse.mm coo", "peer", coo_fwd, coo_fwdbwd, sparse_autograd_skip))

    def manual_fwdbwd(case):
        return _autograd_step(case, lambda x, v: _TorchSparseManual.apply(v, x, case), case.val)

    out.append(Contender("torch.sparse csr+sampled_addmm", "peer", None, manual_fwdbwd))

    # SciPy (CPU, forward only)
    if device.type == "cpu":

        def scipy_fwd(case):
            S, Xn = case.scipy, case.X.numpy()
            return lambda: torch.from_numpy(S @ Xn)

        out.append(Contender("scipy csr @ dense", "peer", scipy_fwd, None))

    # gather + index_add_
    def gather_forward(case, x, v):
        return torch.zeros(case.m, case.F, dtype=x.dtype, device=x.device).index_add_(
            0, case.row, x.index_select(0, case.col) * v.unsqueeze(1)
        )

    out.append(
        Contender(
            "gather+index_add_",
            "peer",
            lambda case: lambda: gather_forward(case, case.X, case.val),
            lambda case: _autograd_step(case, lambda x, v: gather_forward(case, x, v), case.val),
            too_big_gather,
        )
    )

    # optional peers
    try:
        from torch_scatter import segment_csr

        def seg_forward(case, x, v):
            return segment_csr(
                x.index_select(0, case.col) * v.unsqueeze(1), case.rowptr, reduce="sum"
            )

        out.append(
            Contender(
                "torch_scatter segment_csr",
                "peer",
                lambda case: lambda: seg_forward(case, case.X, case.val),
                lambda case: _autograd_step(case, lambda x, v: seg_forward(case, x, v), case.val),
                too_big_gather,
            )
        )
    except Exception:
        notes.append("torch_scatter not importable: 'torch_scatter segment_csr' skipped")
    try:
        from torch_sparse import SparseTensor
        from torch_sparse import matmul as ts_matmul

        def ts_forward(case, x, v):
            A = SparseTensor(
                rowptr=case.rowptr,
                col=case.col,
                value=v,
                sparse_sizes=(case.m, case.n),
                is_sorted=True,
                trust_data=True,
            )
            return ts_matmul(A, x, reduce="sum")

        out.append(
            Contender(
                "torch_sparse matmul",
                "peer",
                lambda case: lambda: ts_forward(case, case.X, case.val),
                lambda case: _autograd_step(case, lambda x, v: ts_forward(case, x, v), case.val),
            )
        )
    except Exception:
        notes.append("torch_sparse not importable: 'torch_sparse matmul' skipped")

    # sparselth backends
    runs_on = {"cpu": ("reference", "cpp"), "cuda": ("reference", "triton", "cuda")}[device.type]
    for b in sparselth.backends():
        if b not in runs_on:
            if not (b == "triton" and device.type == "cpu"):
                notes.append(f"sparselth[{b}] does not run on {device.type}: skipped")
            else:
                notes.append(
                    "sparselth[triton] skipped on CPU (interpreter only: too slow to time)"
                )
            continue

        def sl_fwd(case, b=b):
            return lambda: sparselth.ops.spmm(case.A, case.X, backend=b)

        def sl_fwdbwd(case, b=b):
            x, v = _leaf(case.X), _leaf(case.val)
            A = case.A.with_values(v)

            def step():
                x.grad = None
                v.grad = None
                sparselth.ops.spmm(A, x, backend=b).backward(case.dY)
                return x.grad, v.grad

            return step, step

        out.append(
            Contender(
                f"sparselth[{b}]",
                "sparselth",
                sl_fwd,
                sl_fwdbwd,
                too_big_gather if b == "reference" else None,
            )
        )
    return out


def build_matrix(ei: torch.Tensor, n: int, device: torch.device, seed: int) -> Case:
    """The F-independent part of a case: A (sparselth CSR, float32 values, cached transpose)
    and the same matrix in every peer's format. X and dY are filled in by :func:`with_features`."""
    import scipy.sparse as sp

    import sparselth

    gen = torch.Generator().manual_seed(seed)
    A = sparselth.CSR.from_edge_index(ei, num_nodes=n)
    A = A.with_values(torch.rand(A.nnz, generator=gen) * 0.9 + 0.1).to(device)
    At = A.t()  # cached transpose: built once, like any caller that reuses A
    val = A.val
    row = A.row()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta" etc.
        torch_csr = torch.sparse_csr_tensor(A.rowptr.int(), A.col.int(), val, (n, n))
        torch_csr_t = torch.sparse_csr_tensor(At.rowptr.int(), At.col.int(), At.val, (n, n))
        pattern = torch.sparse_csr_tensor(
            A.rowptr.int(), A.col.int(), torch.zeros_like(val), (n, n)
        )
        coo = torch.sparse_coo_tensor(
            torch.stack([row, A.col.long()]), val, (n, n), is_coalesced=True
        )
    S = None
    if device.type == "cpu":
        S = sp.csr_matrix((val.numpy(), A.col.numpy(), A.rowptr.numpy()), shape=(n, n))
    empty = torch.empty(0, device=device)
    return Case(A, A.rowptr.long(), A.col.long(), row, val, empty, empty, n, n, 0, device,
                torch_csr, torch_csr_t, A.csr_to_csc_perm(), pattern, coo, S)


def with_features(mat: Case, F: int, seed: int) -> Case:
    """``mat`` with random X (n x F) and upstream gradient dY (m x F)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(mat.n, F, generator=gen).to(mat.device)
    dY = torch.randn(mat.m, F, generator=gen).to(mat.device)
    return dataclasses.replace(mat, X=X, dY=dY, F=F)


def oracle(case: Case, mode: str):
    """Results computed in float64 (SciPy, in column blocks to bound memory) and stored as
    float32: fwd -> out; fwdbwd -> (dX, dval)."""
    import numpy as np
    import scipy.sparse as sp

    rp, c = case.rowptr.cpu().numpy(), case.col.cpu().numpy()
    S64 = sp.csr_matrix((case.val.cpu().double().numpy(), c, rp), shape=(case.m, case.n))
    X, dY = case.X.cpu().numpy(), case.dY.cpu().numpy()
    block = max(1, min(case.F, 32))

    def spmm64(S, Y):
        out = np.empty((S.shape[0], Y.shape[1]), dtype=np.float32)
        for s in range(0, Y.shape[1], block):
            out[:, s : s + block] = S @ Y[:, s : s + block].astype(np.float64)
        return torch.from_numpy(out)

    if mode == "fwd":
        return spmm64(S64, X)
    gx = spmm64(S64.T.tocsr(), dY)
    gval = torch.empty(case.A.nnz, dtype=torch.float32)
    chunk = max(1, int(2**24 // max(case.F, 1)))
    row, col = case.row.cpu(), case.col.cpu()
    x_cpu, dy_cpu = case.X.cpu(), case.dY.cpu()
    for s in range(0, case.A.nnz, chunk):
        e = min(case.A.nnz, s + chunk)
        a = dy_cpu.index_select(0, row[s:e]).double()
        b = x_cpu.index_select(0, col[s:e]).double()
        gval[s:e] = (a * b).sum(1).float()
    return gx, gval


# --------------------------------------------------------------------------- the run


def run_case(
    case: Case, mode: str, contenders: List[Contender], ref, cfg: dict, info: dict
) -> List[dict]:
    tol = common.tolerance_for(case.X.dtype)
    rows: List[dict] = []
    timed: Dict[str, Callable] = {}
    base = dict(info, mode=mode, F=case.F)
    for c in contenders:
        entry = dict(base, contender=c.name, group=c.group, status="ok", note="")
        factory = c.fwd if mode == "fwd" else c.fwdbwd
        reason = None
        if factory is None:
            reason = "no backward" if mode == "fwdbwd" else "backward only"
        elif c.skip is not None:
            reason = c.skip(case, mode)
        if reason:
            rows.append(dict(entry, status="skipped", note=reason))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made = factory(case)
                if mode == "fwd":
                    fn = made
                    err = common.max_rel_error(fn(), ref)
                else:
                    fn, checked = made
                    gx, gv = checked()
                    err = max(common.max_rel_error(gx, ref[0]), common.max_rel_error(gv, ref[1]))
        except Exception as e:  # a peer that cannot run this case is reported, not fatal
            rows.append(dict(entry, status="error", note=f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        entry["max_rel_err"] = err
        if not err <= tol:
            rows.append(
                dict(entry, status="wrong", note=f"max relative error {err:.2e} > {tol:.0e}")
            )
            print(
                f"\nWRONG RESULT: {c.name} on {info['graph']} keep={info['keep']} F={case.F} "
                f"{mode}: {err:.2e}",
                file=sys.stderr,
            )
            continue
        timed[c.name] = fn
        rows.append(entry)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timings = common.time_contenders(timed, cfg, clock=cfg["clock"], device=case.device)
    timed.clear()

    nnz, m, n, F = case.A.nnz, case.m, case.n, case.F
    vb = case.X.element_size()
    sizes = dict(index_bytes=4, value_bytes=vb, x_bytes=vb)
    min_bytes = common.spmm_min_bytes(m, n, nnz, F, out_bytes=vb, **sizes)
    if mode == "fwdbwd":
        min_bytes += common.spmm_backward_min_bytes(m, n, nnz, F, **sizes)
    macs = common.spmm_macs(nnz, F, backward=mode == "fwdbwd")
    key = common.ms_key(cfg["clock"])
    for r in rows:
        t = timings.timings.get(r["contender"])
        r["min_bytes"] = min_bytes
        r["macs"] = macs
        if t is None or not t.wall:
            continue
        r.update(t.summary())
        sec = r[key] / 1e3
        r["gmacs"] = common.gmacs(macs, sec)
        r["gbs"] = common.gbs(min_bytes, sec)
        r["frac_copy_bw"] = r["gbs"] / cfg["copy_bw_gbs"]
    timed_rows = [r for r in rows if r.get(key) is not None]
    peers = [r for r in timed_rows if r["group"] != "sparselth"]
    best = min(peers, key=lambda r: r[key]) if peers else None
    fastest = min(timed_rows, key=lambda r: r[key], default=None)
    for r in rows:
        r["best_peer"] = best["contender"] if best else None
        r["best_peer_ms"] = best[key] if best else None
        if best and r.get(key):
            r["speedup_vs_best_peer"] = best[key] / r[key]
        r["winner"] = fastest is not None and r is fastest
    return rows


TARGET_BACKEND = "sparselth[cpp]"


def check_targets(results: List[dict], key: str = "ms",
                  backend: str = TARGET_BACKEND) -> List[dict]:
    """The CPU targets evaluated on this run's rows for ``backend`` (one entry per case
    checked: ``target``, ``case``, ``value``, ``goal``, ``ok``), times read from ``key``
    (``"ms"`` wall, ``"cpu_ms"`` CPU). Benchmarks, not tests."""
    ok = {
        (r["graph"], r["keep"], r["F"], r["mode"], r["contender"]): r
        for r in results
        if r.get(key)
    }
    out: List[dict] = []

    def add(target, r, value, goal, passed):
        case = f"{r['graph']} keep={r['keep']:g} F={r['F']} {r['mode']}"
        out.append(dict(target=target, case=case, value=value, goal=goal, ok=bool(passed)))

    for (g, keep, F, mode, name), r in ok.items():
        if name != backend:
            continue
        sp = r.get("speedup_vs_best_peer")
        if mode == "fwd" and sp is not None:
            if g.startswith("powerlaw"):
                add("fwd >= 1.5x best peer (power-law)", r, sp, ">= 1.5", sp >= 1.5)
            elif g in PLANETOID:
                add("fwd no slower than best peer (small graphs)", r, sp, ">= 1.0", sp >= 1.0)
            if r["nnz"] >= 1_000_000:
                frac = r["frac_copy_bw"]
                add("fwd >= 35% of copy bandwidth (>= 1M edges)", r, frac, ">= 0.35", frac >= 0.35)
        if mode == "fwdbwd":
            fwd = ok.get((g, keep, F, "fwd", name))
            if fwd:
                ratio = r[key] / fwd[key]
                add("fwd+bwd <= 3x own fwd", r, ratio, "<= 3", ratio <= 3)
            for peer in ("torch.sparse.mm csr", "torch.sparse csr+sampled_addmm"):
                p = ok.get((g, keep, F, "fwdbwd", peer))
                if p:
                    s = p[key] / r[key]
                    add(f"fwd+bwd >= 3x faster than {peer}", r, s, ">= 3", s >= 3)
        kr = r.get("ratio_vs_keep1")
        if g == "powerlaw-1m" and mode == "fwd" and kr is not None and keep in (0.5, 0.2):
            add(
                "time(keep k)/time(keep 1) <= k + 0.15 (powerlaw-1m)",
                r,
                kr,
                f"<= {keep + 0.15:g}",
                kr <= keep + 0.15,
            )
    return out


def fill_keep_ratios(results: List[dict], key: str = "ms") -> None:
    """``ratio_vs_keep1 = t(keep k) / t(keep 1)`` for the same graph, F, mode and contender,
    times read from ``key``."""
    full = {
        (r["graph"], r["F"], r["mode"], r["contender"]): r[key]
        for r in results
        if r["keep"] == 1.0 and r.get(key)
    }
    for r in results:
        base = full.get((r["graph"], r["F"], r["mode"], r["contender"]))
        if base and r.get(key):
            r["ratio_vs_keep1"] = r[key] / base


# --------------------------------------------------------------------------- reports


def _contender_order(results: List[dict]) -> List[str]:
    seen: Dict[str, None] = {}
    for r in results:
        seen.setdefault(r["contender"], None)
    return list(seen)


def render_markdown(report: dict) -> str:
    results = report["results"]
    names = _contender_order(results)
    cfg = report["protocol"]
    key = common.ms_key(report["clock"])
    fmt = format_number
    lines = [
        f"# SpMM benchmark: {report['tag']}",
        "",
        "`out = A @ X`, A an n x n CSR graph with float32 values, X float32 n x F. "
        "`fwd`: forward; `fwdbwd`: forward + backward for dX and the values' gradient.",
        "",
        *common.machine_section(report["machine"]),
        f"Measured copy bandwidth: **{report['copy_bandwidth_gbs']:.1f} GB/s** (read + write).",
        "",
        "## Protocol",
        f"Correctness against a float64 oracle before timing (max relative error <= "
        f"{common.tolerance_for(torch.float32):.0e}); at least {cfg['warmup']} warm-up call(s); "
        f"interleaved repetitions (budget {cfg['budget_s']} s per contender and case, "
        f"{cfg['min_reps']}-{cfg['max_reps']} samples); median (IQR in the JSON); "
        f"{report['threads']} torch thread(s). "
        + common.clock_sentence(report["clock"], report["threads"])
        + " Cells: median ms, and in parentheses the speed-up over the best peer (any "
        "non-sparselth contender); **bold** = fastest. Minimum bytes: rowptr + col (int32) + "
        "val + X + out (+ the backward's reads and writes for fwdbwd). GB/s and % copy are the "
        "fastest sparselth backend's (above 100%: the working set fits in cache).",
        f"Elapsed: {report['elapsed_s']:.0f} s.",
        "",
        *common.notes_section(report["notes"]),
        "## Graphs",
        markdown_table(
            ["graph", "nodes", "edges", "source"],
            [[g["name"], g["num_nodes"], g["num_edges"], g["source"]] for g in report["graphs"]],
        ),
        "",
    ]
    for mode in MODES:
        mres = [r for r in results if r["mode"] == mode]
        if not mres:
            continue
        lines += [f"## {MODE_TITLE[mode]}", ""]
        cols = [nm for nm in names if any(r["contender"] == nm and r.get(key) for r in mres)]
        for g in report["graphs"]:
            gres = [r for r in mres if r["graph"] == g["name"]]
            if not gres:
                continue
            rows = []
            for keep in sorted({r["keep"] for r in gres}, reverse=True):
                for F in sorted({r["F"] for r in gres}):
                    cell = {r["contender"]: r for r in gres if r["keep"] == keep and r["F"] == F}
                    if cell:
                        rows.append(_case_row(keep, F, cell, cols, key))
            lines += [
                f"### {g['name']} ({g['num_nodes']} nodes, {g['num_edges']} edges)",
                "",
                markdown_table(
                    ["keep", "nnz", "F", *cols, "best peer", "GMAC/s", "GB/s", "% copy"], rows
                ),
                "",
            ]
    targets = report.get("targets") or []
    if targets:
        rows = []
        for name in dict.fromkeys(t["target"] for t in targets):
            sel = [t for t in targets if t["target"] == name]
            npass = sum(t["ok"] for t in sel)
            worst = min(
                sel, key=lambda t: t["value"] if t["goal"].startswith(">=") else -t["value"]
            )
            rows.append(
                [name, f"{npass}/{len(sel)}", f"{fmt(worst['value'])} ({worst['case']})",
                 worst["goal"]]
            )
        lines += [
            f"## Targets ({TARGET_BACKEND})",
            "",
            markdown_table(["target", "cases met", "worst case", "goal"], rows),
            "",
        ]
    ratios = [r for r in results if r.get("ratio_vs_keep1") is not None and r["keep"] != 1.0]
    if ratios:
        lines += [
            "## Sparsity becomes time: ms(keep k) / ms(keep 1)",
            "",
            "Ideal: k (time proportional to the edges kept); "
            "the target for sparselth is <= k + 0.15.",
            "",
        ]
        keeps = sorted({r["keep"] for r in ratios}, reverse=True)
        for mode in MODES:
            mr = [r for r in ratios if r["mode"] == mode]
            if not mr:
                continue
            rows = []
            for g in report["graphs"]:
                for F in sorted({r["F"] for r in mr if r["graph"] == g["name"]}):
                    for nm in names:
                        sel = {
                            r["keep"]: r["ratio_vs_keep1"]
                            for r in mr
                            if r["graph"] == g["name"] and r["F"] == F and r["contender"] == nm
                        }
                        if sel:
                            rows.append([g["name"], F, nm, *[sel.get(k) for k in keeps]])
            lines += [
                f"### {MODE_TITLE[mode]}",
                "",
                markdown_table(["graph", "F", "contender", *[f"k={k:g}" for k in keeps]], rows),
                "",
            ]
    return "\n".join(lines)


_STATUS_CELL = {"skipped": "-", "wrong": "WRONG", "error": "err"}


def _case_row(keep: float, F: int, cell: Dict[str, dict], cols: List[str], key: str) -> list:
    """One table row: keep, nnz, F, a cell per contender, then the best peer and the fastest
    sparselth backend's rates."""
    row: list = [keep, next(iter(cell.values()))["nnz"], F]
    for nm in cols:
        r = cell.get(nm)
        if r is None or not r.get(key):
            row.append(_STATUS_CELL.get(r["status"], "-") if r else "")
            continue
        s = format_number(r[key])
        if r.get("speedup_vs_best_peer") is not None:
            s += f" ({format_number(r['speedup_vs_best_peer'], 2)}x)"
        row.append(f"**{s}**" if r.get("winner") else s)
    sl = [r for r in cell.values() if r["group"] == "sparselth" and r.get(key)]
    best_sl = min(sl, key=lambda r: r[key]) if sl else None
    peer = next(iter(cell.values())).get("best_peer") or "-"
    if best_sl is None:
        return row + [peer, "-", "-", "-"]
    return row + [peer, format_number(best_sl["gmacs"]), format_number(best_sl["gbs"]),
                  f"{100 * best_sl['frac_copy_bw']:.0f}%"]


def plot(report: dict):
    """ms vs fraction of edges kept, one panel per graph (rows: modes), at one F; the figure
    (None when nothing was timed)."""
    key = common.ms_key(report["clock"])
    results = [r for r in report["results"] if r.get(key)]
    if not results:
        return None
    Fs = sorted({r["F"] for r in results})
    F = 64 if 64 in Fs else Fs[len(Fs) // 2]
    graphs = [g["name"] for g in report["graphs"] if any(r["graph"] == g["name"] for r in results)]
    modes = [m for m in MODES if any(r["mode"] == m for r in results)]
    import matplotlib
    import numpy as np

    fig, axes = figure(len(graphs), len(modes), width=4.2 * len(graphs),
                       height=3.6 * len(modes))
    axes = np.asarray(axes).reshape(len(modes), len(graphs))
    names = _contender_order(results)
    cmap = matplotlib.colormaps["tab10"]
    colors = {nm: cmap(i % 10) for i, nm in enumerate(names)}
    clock = "CPU" if report["clock"] == "cpu" else "wall"
    for i, mode in enumerate(modes):
        for j, g in enumerate(graphs):
            ax = axes[i][j]
            for nm in names:
                pts = sorted(
                    (r["keep"], r[key])
                    for r in results
                    if r["graph"] == g and r["mode"] == mode and r["F"] == F
                    and r["contender"] == nm
                )
                if pts:
                    ours = nm.startswith("sparselth")
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o" if ours else "--.",
                            color=colors[nm], label=nm, linewidth=2 if ours else 1)
            ax.set_yscale("log")
            common.log_ticks(ax, [r["keep"] for r in results if r["graph"] == g])
            ax.set_title(f"{g}, F={F}, {mode}")
            ax.set_xlabel("fraction of edges kept")
            ax.set_ylabel(f"ms (median, {clock})")
            ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.suptitle(f"SpMM time vs edges kept ({report['machine'].get('cpu')}, "
                 f"torch {report['machine'].get('torch')})")
    fig.tight_layout()
    # below the panels; save_png's tight bounding box takes it in
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)))
    return fig


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("spmm", "Time SpMM (A @ X on graphs) for every sparselth backend "
                          "against the peers; write JSON, Markdown and a PNG.")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 2 min): graphs cora pubmed powerlaw-100k, F 64, keep 1 0.2, "
        "short budgets, dense only for n <= 5000, gather-based peers only below 0.5 GB",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of datasets holding planetoid/ (default: $SPARSELTH_DATA, else the bench "
        "default, see bench.common.default_data_dir)",
    )
    p.add_argument(
        "--graphs",
        nargs="+",
        default=None,
        help=f"graphs (default {' '.join(DEFAULT_GRAPHS)}); also powerlaw:<nodes>:<avg_degree>",
    )
    p.add_argument(
        "--F", nargs="+", type=int, default=None, help="feature widths (default 16 64 128 256)"
    )
    p.add_argument(
        "--keep",
        nargs="+",
        type=float,
        default=None,
        help="fractions of edges kept by random pruning (default 1 0.5 0.2 0.05)",
    )
    p.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="fwd and/or fwdbwd"
    )
    p.add_argument(
        "--contenders",
        nargs="+",
        default=None,
        help="only contenders whose name contains one of these strings (e.g. cpp scipy)",
    )
    p.add_argument(
        "--tag",
        default=None,
        help="file name tag (default: host name; '-quick' added with --quick)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for graphs, pruning, values and features"
    )
    common.add_timing_args(p, budget=(2.0, 0.1))
    p.add_argument(
        "--max-call-s",
        type=float,
        default=20.0,
        help="a contender slower than this per call gets one sample",
    )
    p.add_argument(
        "--dense-max-n",
        type=int,
        default=None,
        help="largest n for dense torch.mm and torch.sparse autograd (default 20000, quick 5000)",
    )
    p.add_argument(
        "--max-temp-gb",
        type=float,
        default=None,
        help="skip gather-based contenders whose nnz*F message buffers exceed this many GB "
        "(default 4, quick 0.5)",
    )
    p.add_argument(
        "--copy-mb",
        type=float,
        default=None,
        help="size of the copy-bandwidth probe in MB (default 256, quick 128)",
    )
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``spmm-<tag>``: ``--tag``, default the host name (``-quick`` appended with --quick)."""
    return "spmm-" + common.safe_name(
        args.tag or socket.gethostname() + ("-quick" if args.quick else ""))


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    keeps = args.keep or ([1.0, 0.2] if args.quick else [1.0, 0.5, 0.2, 0.05])
    return dict(
        common.timing_config(args, budget=(2.0, 0.1)),
        graphs=args.graphs or (QUICK_GRAPHS if args.quick else DEFAULT_GRAPHS),
        F=args.F or ([64] if args.quick else [16, 64, 128, 256]),
        keep=sorted({float(k) for k in keeps}, reverse=True),
        modes=list(args.modes),
        contenders=args.contenders,
        device=args.device,
        seed=args.seed,
        max_call_s=args.max_call_s,
        dense_max_n=args.dense_max_n if args.dense_max_n is not None else (
            5000 if args.quick else 20000),
        max_temp_gb=args.max_temp_gb if args.max_temp_gb is not None else (
            0.5 if args.quick else 4.0),
    )


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the benchmark; returns the report dict (also written to ``spmm-<tag>.json``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    elapsed = stopwatch()
    proto = run_protocol(args)
    graphs, Fs, keeps = proto["graphs"], proto["F"], proto["keep"]
    if any(not 0 < k <= 1 for k in keeps):
        raise SystemExit(f"bench.spmm: --keep values must be in (0, 1], got {keeps}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.spmm: --device cuda but torch sees no GPU")
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    data_dir = args.data if args.data is not None else common.default_data_dir()
    cfg = {k: proto[k] for k in ("warmup", "budget_s", "min_reps", "max_reps", "max_call_s")}
    cfg["clock"] = headline_clock()
    dense_max_n, max_temp_gb = proto["dense_max_n"], proto["max_temp_gb"]
    notes: List[str] = []

    print("bench.spmm: measuring copy bandwidth ...", file=sys.stderr)
    info = common.machine(copy_mb=args.copy_mb or (128 if args.quick else 256), device=device)
    cfg["copy_bw_gbs"] = info["copy_bandwidth_gbs"]
    contenders = make_contenders(device, dense_max_n, max_temp_gb, notes)
    if args.contenders:
        contenders = [c for c in contenders if any(s in c.name for s in args.contenders)]

    base_graphs: List[BaseGraph] = []
    for name in graphs:
        g = load_graph(name, data_dir, args.seed, notes)
        if g is not None:
            base_graphs.append(g)

    from tqdm.auto import tqdm

    from sparselth.data import prune_edges_random

    total = len(base_graphs) * len(keeps) * len(Fs)
    bar = tqdm(total=total, desc="spmm cases", unit="case", disable=args.no_progress)
    results: List[dict] = []
    graph_meta = []
    for gi, g in enumerate(base_graphs):
        graph_meta.append(
            dict(
                name=g.name,
                num_nodes=g.num_nodes,
                num_edges=int(g.edge_index.size(1)),
                source=g.source,
            )
        )
        for ki, keep in enumerate(keeps):
            ei = (
                g.edge_index
                if keep == 1.0
                else prune_edges_random(g.edge_index, keep, seed=args.seed + 1 + ki)
            )
            mat = build_matrix(ei, g.num_nodes, device, seed=args.seed + 1000 * gi + 10 * ki)
            del ei
            for F in Fs:
                bar.set_postfix_str(f"{g.name} keep={keep:g} F={F}")
                case = with_features(mat, F, seed=args.seed + 1000 * gi + 10 * ki + F)
                case_info = dict(graph=g.name, keep=keep, num_nodes=g.num_nodes, nnz=case.A.nnz)
                for mode in args.modes:
                    ref = oracle(case, mode)
                    results += run_case(case, mode, contenders, ref, cfg, case_info)
                    del ref
                del case
                bar.update(1)
            del mat
    bar.close()
    key = common.ms_key(cfg["clock"])
    fill_keep_ratios(results, key)

    busy = common.finish_machine(info)
    for note in busy:
        print(f"bench.spmm: WARNING: {note}", file=sys.stderr)
    report = dict(
        suite="spmm",
        format_version=2,
        tag=dest.stem.removeprefix("spmm-"),
        machine=info,
        copy_bandwidth_gbs=cfg["copy_bw_gbs"],
        device=str(device),
        dtype="float32",
        threads=torch.get_num_threads(),
        clock=cfg["clock"],
        protocol={k: v for k, v in cfg.items() if k != "copy_bw_gbs"}
        | {"dense_max_n": dense_max_n, "max_temp_gb": max_temp_gb},
        args=dict(
            graphs=graphs,
            F=Fs,
            keep=keeps,
            modes=args.modes,
            quick=args.quick,
            seed=args.seed,
            data=str(data_dir),
        ),
        notes=busy + notes,
        graphs=graph_meta,
        results=results,
        elapsed_s=elapsed(),
    )
    report["targets"] = check_targets(results, key)
    common.write_result(dest, report, render_markdown(report),
                        None if args.no_plot else plot(report))
    print(f"bench.spmm: done in {report['elapsed_s']:.0f} s", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
