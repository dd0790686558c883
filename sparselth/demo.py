"""The first demo: pruning a graph's edges turns into measured SpMM time.

``python -m sparselth demo`` builds a synthetic power-law graph (default 200k nodes, average
degree 12, F = 64 features), prunes its edges at random in steps (keep 1, 0.8, 0.5, 0.3, 0.2,
0.1, 0.05 of them), and times ``A @ X`` with sparselth (the ``cpp`` backend when built, else
``reference``) against ``torch.sparse.mm`` on the same CSR matrix. It prints the table and saves
a PNG plot. Each result is checked against ``torch.sparse.mm`` before timing; timings are
interleaved (sparselth, torch, sparselth, ...) medians.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

DEFAULT_KEEPS = (1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05)
PLOT_NAME = "demo-spmm.png"


@dataclass
class DemoRow:
    keep: float
    nnz: int
    sparselth_ms: float
    torch_ms: float

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.sparselth_ms


def default_out_dir() -> Path:
    """``bench/results`` when run from the repository root, else the current folder."""
    cwd = Path.cwd()
    if (cwd / "bench").is_dir() and (cwd / "sparselth").is_dir():
        return cwd / "bench" / "results"
    return cwd


def _median_interleaved(fns: Dict[str, Callable[[], object]], reps: int) -> Dict[str, float]:
    """Warm-up calls (until a call is no slower than 1.25x the fastest so far, at most 5),
    then ``reps`` rounds A B A B ...; median seconds per call."""
    for fn in fns.values():
        seen: List[float] = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - t0)
            if seen[-1] > 1.0 or (len(seen) > 1 and seen[-1] <= 1.25 * min(seen[:-1])):
                break
    times: Dict[str, List[float]] = {k: [] for k in fns}
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    finally:
        if was:
            gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}


def run_demo(
    nodes: int = 200_000,
    avg_degree: float = 12.0,
    F: int = 64,
    keeps: Sequence[float] = DEFAULT_KEEPS,
    reps: int = 7,
    seed: int = 0,
    backend: Optional[str] = None,
    out: Optional[Path] = None,
    plot: bool = True,
    progress: bool = True,
    stream=None,
) -> dict:
    """Run the demo; returns ``{"backend", "rows": [DemoRow...], "plot": path or None, ...}``."""
    import sparselth
    from sparselth.data import power_law_graph, prune_edges_random

    if backend is None:
        backend = "cpp" if "cpp" in sparselth.backends() else "reference"
    stream = sys.stdout if stream is None else stream
    t0 = time.perf_counter()
    print(
        f"sparselth demo: power-law graph, {nodes:,} nodes, average degree {avg_degree:g}, F={F}; "
        f"sparselth backend {backend!r} vs torch.sparse.mm (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        file=stream,
    )
    ei = power_law_graph(nodes, avg_degree, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(nodes, F, generator=gen)
    full = sparselth.CSR.from_edge_index(ei, num_nodes=nodes)
    full = full.with_values(torch.rand(full.nnz, generator=gen) * 0.9 + 0.1)

    try:
        from tqdm import tqdm

        it = tqdm(
            list(keeps), desc="pruning steps", unit="step", disable=not progress, file=sys.stderr
        )
    except ImportError:
        it = list(keeps)
    rows: List[DemoRow] = []
    for i, keep in enumerate(it):
        A = full if keep >= 1.0 else prune_edges_random(full, keep, seed=seed + 1 + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "sparse CSR support is in beta"
            T = torch.sparse_csr_tensor(A.rowptr, A.col, A.val, A.shape)
            ref = torch.sparse.mm(T, X)
        got = sparselth.ops.spmm(A, X, backend=backend)
        err = (got - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
        if not err <= 1e-4:
            raise RuntimeError(
                f"demo: sparselth[{backend}] disagrees with torch.sparse.mm at keep={keep} "
                f"(max relative error {err:.2e})"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = _median_interleaved(
                {
                    "sparselth": lambda A=A: sparselth.ops.spmm(A, X, backend=backend),
                    "torch": lambda T=T: torch.sparse.mm(T, X),
                },
                reps,
            )
        rows.append(DemoRow(keep, A.nnz, t["sparselth"] * 1e3, t["torch"] * 1e3))
        del A, T, ref, got

    base = rows[0] if rows and rows[0].keep == 1.0 else None
    header = (
        f"{'edges kept':>10} {'nnz':>11} {'sparselth ms':>13} {'torch.sparse ms':>16} "
        f"{'speed-up':>9}"
        f" {'sparselth vs keep 1':>20}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.sparselth_ms / base.sparselth_ms:.2f}" if base else "-"
        lines.append(
            f"{r.keep:>10.0%} {r.nnz:>11,} {r.sparselth_ms:>13.2f} {r.torch_ms:>16.2f} "
            f"{r.speedup:>8.2f}x {ratio:>20}"
        )
    print("\n".join(lines), file=stream)

    path = None
    if plot and rows:
        out_dir = Path(out) if out is not None else default_out_dir()
        path = save_plot(rows, out_dir / PLOT_NAME, backend=backend, nodes=nodes, F=F)
        print(f"plot: {path}", file=stream)
    elapsed = time.perf_counter() - t0
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        load, cores = 0.0, 1
    if load > 0.5 * cores + 0.5:
        print(
            f"note: the machine was busy (load average {load:.1f} on {cores} cores); "
            "times are inflated, rerun on an idle machine for clean numbers",
            file=stream,
        )
    print(f"({elapsed:.1f} s; medians of {reps} interleaved runs after warm-up)", file=stream)
    return {
        "backend": backend,
        "rows": rows,
        "plot": path,
        "elapsed_s": elapsed,
        "nodes": nodes,
        "F": F,
    }


def save_plot(rows: Sequence[DemoRow], path: Path, *, backend: str, nodes: int, F: int) -> Path:
    """Time vs fraction of edges kept (log-log) with the proportional ideal; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    keeps = [r.keep for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(
        keeps, [r.torch_ms for r in rows], "s--", label="torch.sparse.mm (CSR)", color="tab:gray"
    )
    ax.plot(
        keeps,
        [r.sparselth_ms for r in rows],
        "o-",
        label=f"sparselth spmm [{backend}]",
        color="tab:blue",
        linewidth=2,
    )
    full = next((r for r in rows if r.keep == 1.0), None)
    if full is not None:
        ax.plot(
            keeps,
            [full.sparselth_ms * k for k in keeps],
            ":",
            color="tab:blue",
            alpha=0.6,
            label="ideal: time proportional to edges kept",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(keeps)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("fraction of edges kept (random pruning)")
    ax.set_ylabel("SpMM time, ms (median)")
    ax.set_title(f"A @ X, power-law graph {nodes:,} nodes, F={F}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def add_arguments(p) -> None:
    p.add_argument("--nodes", type=int, default=200_000, help="number of graph nodes")
    p.add_argument("--degree", type=float, default=12.0, help="average degree")
    p.add_argument("--F", type=int, default=64, help="feature width of X")
    p.add_argument(
        "--keep",
        type=float,
        nargs="+",
        default=list(DEFAULT_KEEPS),
        help="fractions of edges kept, one pruning step each",
    )
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per step (median)")
    p.add_argument("--seed", type=int, default=0, help="seed for graph, pruning and features")
    p.add_argument(
        "--backend",
        default=None,
        help="sparselth backend (default: cpp when built, else reference)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder for {PLOT_NAME} (default: bench/results from the repository root, else .)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def main(args) -> int:
    if args.nodes < 2:
        raise SystemExit(f"demo: --nodes must be >= 2, got {args.nodes}")
    if any(not 0 < k <= 1 for k in args.keep):
        raise SystemExit(f"demo: --keep values must be in (0, 1], got {args.keep}")
    keeps = sorted(set(args.keep), reverse=True)
    run_demo(
        nodes=args.nodes,
        avg_degree=min(args.degree, (args.nodes - 1) / 2),
        F=args.F,
        keeps=keeps,
        reps=max(1, args.reps),
        seed=args.seed,
        backend=args.backend,
        out=args.out,
        plot=not args.no_plot,
    )
    return 0


__all__ = ["run_demo", "save_plot", "DemoRow", "default_out_dir"]
