"""``sparselth demo-spmm`` (what ``make demo-spmm`` runs), the kernel-level demo: a synthetic
power-law graph's edges pruned at random in steps (keep 1, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05),
``A @ X`` timed with sparselth (the ``cpp`` backend when built, else ``reference``) against
``torch.sparse.mm`` on the same CSR matrix, each result checked against ``torch.sparse.mm``
first; times from :func:`sparselth.utils.timing.measure` (interleaved, medians on the
headline clock); table and PNG (``demo-spmm.png``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..ops import backends, spmm
from ..sparse import CSR
from ..utils.plot import figure, save_png, style_axes
from ..utils.timing import busy_note, load_average, machine_info, measure, stopwatch
from .common import add_command, default_out_dir, text_table

__all__ = ["DEFAULT_KEEPS", "SpmmRow", "add_subcommand", "run_spmm_demo", "save_spmm_plot"]

DEFAULT_KEEPS = (1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05)
SPMM_PLOT_NAME = "demo-spmm.png"


@dataclass
class SpmmRow:
    """One pruning step: edges kept and the median ms per ``A @ X`` of both contenders."""

    keep: float
    nnz: int
    sparselth_ms: float
    torch_ms: float

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.sparselth_ms


def _torch_csr_checked(A, X, backend: str, keep: float):
    """``A`` as a torch sparse CSR tensor, after checking sparselth's ``A @ X`` against
    ``torch.sparse.mm``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse CSR support is in beta"
        T = torch.sparse_csr_tensor(A.rowptr, A.col, A.val, A.shape)
        ref = torch.sparse.mm(T, X)
    got = spmm(A, X, backend=backend)
    err = (got - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    if not err <= 1e-4:
        raise RuntimeError(f"demo-spmm: sparselth[{backend}] disagrees with torch.sparse.mm at "
                           f"keep={keep} (max relative error {err:.2e})")
    return T


def _table(rows: Sequence[SpmmRow]) -> str:
    base = rows[0] if rows and rows[0].keep == 1.0 else None
    cells = [[f"{r.keep:.0%}", f"{r.nnz:,}", f"{r.sparselth_ms:.2f}", f"{r.torch_ms:.2f}",
              f"{r.speedup:.2f}x", f"{r.sparselth_ms / base.sparselth_ms:.2f}" if base else "-"]
             for r in rows]
    return text_table(["edges kept", "nnz", "sparselth ms", "torch.sparse ms", "speed-up",
                       "sparselth vs keep 1"], cells)


def run_spmm_demo(
    nodes: int = 200_000,
    avg_degree: float = 12.0,
    F: int = 64,
    keeps: Sequence[float] = DEFAULT_KEEPS,
    reps: int = 7,
    seed: int = 0,
    backend: str | None = None,
    out: Path | None = None,
    plot: bool = True,
    progress: bool = True,
    stream=None,
) -> dict[str, Any]:
    """Run the demo; returns ``{"backend", "rows": [SpmmRow...], "plot": path or None,
    "clock", "elapsed_s", "nodes", "F"}``."""
    from tqdm.auto import tqdm

    from ..data import power_law_graph, prune_edges_random

    if backend is None:
        backend = "cpp" if "cpp" in backends() else "reference"
    stream = sys.stdout if stream is None else stream
    elapsed = stopwatch()
    machine = machine_info()
    print(f"sparselth demo-spmm: power-law graph, {nodes:,} nodes, average degree "
          f"{avg_degree:g}, F={F}; sparselth backend {backend!r} vs torch.sparse.mm (torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads)", file=stream)
    ei = power_law_graph(nodes, avg_degree, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(nodes, F, generator=gen)
    full = CSR.from_edge_index(ei, num_nodes=nodes)
    full = full.with_values(torch.rand(full.nnz, generator=gen) * 0.9 + 0.1)

    rows: list[SpmmRow] = []
    clock = None
    for i, keep in enumerate(tqdm(list(keeps), desc="pruning steps", unit="step",
                                  disable=not progress, file=sys.stderr)):
        A = full if keep >= 1.0 else prune_edges_random(full, keep, seed=seed + 1 + i)
        T = _torch_csr_checked(A, X, backend, keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = measure({"sparselth": lambda A=A: spmm(A, X, backend=backend),
                         "torch": lambda T=T: torch.sparse.mm(T, X)},
                        warmup=1, max_extra_warmup=4, budget_s=0.0, min_reps=reps,
                        max_reps=reps)
        clock = m.clock
        rows.append(SpmmRow(keep, A.nnz, m.ms("sparselth"), m.ms("torch")))
        del A, T

    print(_table(rows), file=stream)
    path = None
    if plot and rows:
        out_dir = Path(out) if out is not None else default_out_dir()
        path = save_spmm_plot(rows, out_dir / SPMM_PLOT_NAME, backend=backend, nodes=nodes, F=F,
                              clock=clock)
        print(f"plot: {path}", file=stream)
    machine["loadavg_end"] = load_average()
    busy = busy_note(machine)
    if busy:
        print(f"note: {busy}", file=stream)
    seconds = elapsed()
    print(f"({seconds:.1f} s; medians of {reps} interleaved samples after warm-up, {clock} "
          "time per call)", file=stream)
    return {"backend": backend, "rows": rows, "plot": path, "clock": clock,
            "elapsed_s": seconds, "nodes": nodes, "F": F}


def save_spmm_plot(rows: Sequence[SpmmRow], path: Path, *, backend: str, nodes: int,
                   F: int, clock: str | None = None) -> Path:
    """Time vs fraction of edges kept (log-log) with the proportional ideal."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    keeps = [r.keep for r in rows]
    fig, ax = figure(width=6.4, height=4.4)
    ax.plot(keeps, [r.torch_ms for r in rows], "s--", label="torch.sparse.mm (CSR)",
            color="tab:gray")
    ax.plot(keeps, [r.sparselth_ms for r in rows], "o-", label=f"sparselth spmm [{backend}]",
            color="tab:blue", linewidth=2)
    full = next((r for r in rows if r.keep == 1.0), None)
    if full is not None:
        ax.plot(keeps, [full.sparselth_ms * k for k in keeps], ":", color="tab:blue", alpha=0.6,
                label="ideal: time proportional to edges kept")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(keeps)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    style_axes(ax, xlabel="fraction of edges kept (random pruning)",
               ylabel=f"SpMM time, ms (median{f' {clock} time' if clock else ''})",
               title=f"A @ X, power-law graph {nodes:,} nodes, F={F}")
    ax.grid(True, which="both", alpha=0.3)
    return save_png(fig, path)


DESCRIPTION = """\
Build a synthetic power-law graph (default 200k nodes, average degree 12, F=64), prune its
edges at random in steps (keep 1, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05), time A @ X with sparselth
(cpp backend when built, else reference) and torch.sparse.mm, print the table and save
demo-spmm.png. About a minute on 2 cores.
"""
HELP = ("prune a synthetic graph's edges in steps and time SpMM: sparselth vs "
        "torch.sparse.mm")


def add_subcommand(subparsers: Any) -> None:
    """Add ``demo-spmm`` to ``subparsers``."""
    p = add_command(subparsers, "demo-spmm", main, help=HELP, description=DESCRIPTION,
                    formatter=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=200_000, help="number of graph nodes")
    p.add_argument("--degree", type=float, default=12.0, help="average degree")
    p.add_argument("--F", type=int, default=64, help="feature width of X")
    p.add_argument("--keep", type=float, nargs="+", default=list(DEFAULT_KEEPS),
                   help="fractions of edges kept, one pruning step each")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per step (median)")
    p.add_argument("--seed", type=int, default=0, help="seed for graph, pruning and features")
    p.add_argument("--backend", default=None,
                   help="sparselth backend (default: cpp when built, else reference)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {SPMM_PLOT_NAME} (default: bench/results from the "
                        "repository root, else .)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def main(args: argparse.Namespace) -> int:
    """``sparselth demo-spmm``: the exit code (argument errors exit with a message)."""
    if args.nodes < 2:
        raise SystemExit(f"demo-spmm: --nodes must be >= 2, got {args.nodes}")
    if any(not 0 < k <= 1 for k in args.keep):
        raise SystemExit(f"demo-spmm: --keep values must be in (0, 1], got {args.keep}")
    run_spmm_demo(nodes=args.nodes, avg_degree=min(args.degree, (args.nodes - 1) / 2),
                  F=args.F, keeps=sorted(set(args.keep), reverse=True), reps=max(1, args.reps),
                  seed=args.seed, backend=args.backend, out=args.out, plot=not args.no_plot)
    return 0
