"""``sparselth plot``: figures from run folders of every kind and from compile reports.

A run folder (IMP, UGS, recommender, and every later kind) holds ``config.json`` (with
``"kind"``) and ``records.json``: one record per round with ``round``, ``weight_sparsity``,
``graph_sparsity`` (or null), ``metric`` (the name of the headline quality metric),
``metrics`` (name -> value), ``macs`` and ``seconds``. The plot reads only those fields, so
a new run kind is plotted as soon as its driver writes them.

Figures (into ``--out``):

- ``<metric>_vs_sparsity.png`` per headline metric (e.g. ``accuracy_vs_sparsity.png``): the
  metric per round against weight sparsity, and against graph sparsity when a run prunes
  the graph; several runs with that metric (a run and its random baseline) overlaid;
- ``latency_vs_sparsity.png`` from compile reports: end-to-end dense and compiled latency
  against ticket sparsity (several reports), per-layer dense and chosen-route latency
  against layer sparsity;
- ``realised_vs_promised.png`` from compile reports: measured speed-up against the speed-up
  the MACs promise, per layer and end to end, with the lines y = x and y = x / 2.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..prune.run import read_records
from ..utils.plot import figure, save_png, style_axes
from .common import add_command, fail
from .tickets import REPORTS_FORMAT

__all__ = ["RunCurve", "add_subcommand", "read_run", "run_plot"]

# weights (or edges) kept, in %, at which the sparsity axis is labelled: wide and narrow ranges
_KEPT_TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
_KEPT_TICKS_FINE = (100, 90, 80, 70, 60, 50, 40, 30)
_MIN_KEPT = 1e-3


@dataclass
class RunCurve:
    """The headline metric of one run, per round."""

    label: str
    kind: str
    metric: str
    rounds: list[int]
    weight_sparsity: list[float]
    graph_sparsity: list[float | None]
    values: list[float | None]

    @property
    def prunes_graph(self) -> bool:
        return any(g is not None for g in self.graph_sparsity)


def _run_folder(path: Path) -> Path:
    """The run folder at ``path``: itself, or the ``imp/`` run of a ``sparselth find``
    output folder."""
    for d in (path, path / "imp"):
        if (d / "records.json").is_file():
            return d
    raise ValueError(f"{path}: no run records (records.json) here or in {path / 'imp'}")


def read_run(path: Any, label: str | None = None) -> RunCurve:
    """The headline-metric curve of the run folder at ``path`` (or in ``path/imp``)."""
    path = Path(path)
    kind, records = read_records(_run_folder(path))
    if not records:
        raise ValueError(f"{path}: the run has no finished round yet")
    metric = records[-1]["metric"]
    return RunCurve(
        label=label or str(path), kind=kind, metric=metric,
        rounds=[int(r["round"]) for r in records],
        weight_sparsity=[float(r["weight_sparsity"]) for r in records],
        graph_sparsity=[r.get("graph_sparsity") for r in records],
        values=[(r.get("metrics") or {}).get(metric) for r in records])


def _sparsity_axis(ax, sparsities: Sequence[float], what: str) -> None:
    """Log scale of the fraction kept (so 90 %, 99 %, 99.9 % sparsity are evenly spaced),
    labelled in sparsity, growing to the right."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    kept = [max(100 * (1 - s), _MIN_KEPT) for s in sparsities] or [100.0]
    lo, hi = min(kept), max(kept)
    grid = _KEPT_TICKS_FINE if lo >= 30 else _KEPT_TICKS
    ticks = [t for t in grid if lo / 1.5 <= t <= hi * 1.5] or [hi]
    ax.set_xscale("log")
    ax.set_xlim(hi * 1.2, lo / 1.2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 - v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"{what} sparsity (%)")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "metric"


def _plot_metric(curves: Sequence[RunCurve], path: Path) -> Path:
    metric = curves[0].metric
    graph = [c for c in curves if c.prunes_graph]
    fig, axes = figure(ncols=2 if graph else 1)
    axes = list(axes) if graph else [axes]
    panels = [("weight", curves, lambda c: c.weight_sparsity)]
    if graph:
        panels.append(("graph", graph, lambda c: c.graph_sparsity))
    for ax, (what, shown, xs_of) in zip(axes, panels):
        xs_all = []
        for c in shown:
            pts = [(100 * (1 - x) if 100 * (1 - x) > _MIN_KEPT else _MIN_KEPT, y)
                   for x, y in zip(xs_of(c), c.values) if x is not None and y is not None]
            xs_all += [x for x in xs_of(c) if x is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", label=c.label)
        _sparsity_axis(ax, xs_all, what)
        style_axes(ax, ylabel=metric, title=f"{metric} vs {what} sparsity")
    kinds = ", ".join(sorted({c.kind for c in curves}))
    fig.suptitle(f"{kinds} run{'s' if len(curves) > 1 else ''}: {metric} per round")
    return save_png(fig, path)


# --------------------------------------------------------------------------- compile reports


def _read_reports(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and doc.get("format") == REPORTS_FORMAT:
        return list(doc["reports"])
    if isinstance(doc, dict) and doc.get("format") == "sparselth.compile_report":
        return [doc]
    raise ValueError(f"{path}: not a compile report JSON")


def _plot_latency(reports: Sequence[dict[str, Any]], path: Path) -> Path:
    many = len(reports) > 1
    fig, axes = figure(ncols=2 if many else 1, width=11 if many else 6, height=4)
    axes = list(axes) if many else [axes]
    if many:
        ax = axes[0]
        rs = sorted(reports, key=lambda d: d["meta"]["ticket_sparsity"])
        sp = [100 * d["meta"]["ticket_sparsity"] for d in rs]
        ax.plot(sp, [d["end_to_end"]["dense_ms"] for d in rs], "o-", label="dense (masked)")
        ax.plot(sp, [d["end_to_end"]["compiled_ms"] for d in rs], "s-", label="compiled")
        style_axes(ax, xlabel="ticket sparsity (%)", ylabel="end-to-end latency (ms)",
                   title="model latency vs sparsity")
    ax = axes[-1]
    for d in reports:
        for layer in d["layers"]:
            lat = layer["latency_ms"]
            if "dense" in lat:
                x = 100 * layer["sparsity"]
                ax.scatter(x, lat["dense"], marker="o", s=14, color="tab:blue")
                ax.scatter(x, lat[layer["route"]], marker="s", s=14, color="tab:orange")
    ax.scatter([], [], marker="o", color="tab:blue", label="dense")
    ax.scatter([], [], marker="s", color="tab:orange", label="chosen route")
    ax.set_yscale("log")
    style_axes(ax, xlabel="layer sparsity (%)", ylabel="layer latency (ms)",
               title="per-layer latency vs sparsity")
    return save_png(fig, path)


def _plot_savings(reports: Sequence[dict[str, Any]], path: Path) -> Path:
    fig, ax = figure(width=6, height=5)
    pts = [(layer["promised_speedup"], layer["speedup"]) for d in reports
           for layer in d["layers"] if layer.get("promised_speedup") and layer.get("speedup")]
    if pts:
        ax.scatter(*zip(*pts), s=14, alpha=0.6, label="layers")
    e2e = [(e["promised_speedup"], e["speedup"]) for e in (d["end_to_end"] for d in reports)
           if e.get("promised_speedup") and e.get("speedup")]
    if e2e:
        ax.scatter(*zip(*e2e), s=60, marker="*", color="tab:red", label="models, end to end")
    allv = [v for p in pts + e2e for v in p] or [1.0]
    lo, hi = min(min(allv), 1.0) / 1.2, max(allv) * 1.2
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="realised = promised")
    ax.plot([lo, hi], [lo / 2, hi / 2], "k:", lw=1, label="realised = promised / 2")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    style_axes(ax, xlabel="promised speed-up (MACs dense / MACs ticket)",
               ylabel="measured speed-up over dense", title="realised vs promised savings")
    return save_png(fig, path)


# --------------------------------------------------------------------------- command


def run_plot(inputs: Sequence[Any], out: Any) -> list[Path]:
    """Write the PNGs that the inputs allow into folder ``out``; returns their paths.

    Inputs: run folders of any kind (or ``sparselth find`` output folders, whose
    ``compile.json`` is read too) and compile report JSONs. See the module docstring.
    """
    out = Path(out)
    curves: list[RunCurve] = []
    reports: list[dict[str, Any]] = []
    for p in map(Path, inputs):
        if p.is_file():
            reports.extend(_read_reports(p))
        elif p.is_dir():
            curves.append(read_run(p))
            for extra in ("compile.json", "compile_report.json"):
                if (p / extra).is_file():
                    reports.extend(_read_reports(p / extra))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    written: list[Path] = []
    by_metric: dict[str, list[RunCurve]] = {}
    for c in curves:
        by_metric.setdefault(c.metric, []).append(c)
    for metric, group in by_metric.items():
        written.append(_plot_metric(group, out / f"{_slug(metric)}_vs_sparsity.png"))
    if reports:
        written.append(_plot_latency(reports, out / "latency_vs_sparsity.png"))
        written.append(_plot_savings(reports, out / "realised_vs_promised.png"))
    if not written:
        raise ValueError("nothing to plot: give run folders and/or compile report JSONs")
    return written


def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        paths = run_plot(args.inputs, args.out)
    except (ValueError, FileNotFoundError, KeyError) as e:
        return fail("plot", e)
    for p in paths:
        print(p)
    return 0


PLOT_DESCRIPTION = """\
Inputs: run folders of any kind (IMP, UGS, recommender tickets, ...), `find` output
folders (their compile.json is read too) and compile report JSONs. Writes into --out:
  <metric>_vs_sparsity.png   the headline metric per round (accuracy_vs_sparsity.png,
                             ...) vs weight sparsity, and vs graph sparsity when the
                             graph is pruned; several runs given: overlaid
  latency_vs_sparsity.png    end-to-end and per-layer latency, dense vs compiled
  realised_vs_promised.png   measured speed-up vs the MACs' promise, per layer
                             and end to end, with y = x and y = x/2 lines
"""


def add_subcommand(subparsers: Any) -> None:
    """Add ``plot`` to ``subparsers``."""
    p = add_command(subparsers, "plot", _cmd_plot, description=PLOT_DESCRIPTION,
                    help="plot the metric, latency and realised vs promised speed-up against "
                         "sparsity (PNG)")
    p.add_argument("inputs", nargs="+", help="run folders, find folders, compile report JSONs")
    p.add_argument("--out", default="plots", help="folder for the PNGs [plots]")
