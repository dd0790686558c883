"""``sparselth demo`` (what ``make demo`` runs): find a *graph lottery ticket* and run it on
sparselth's kernels, end to end in about 1.5 minutes of CPU time on one thread.

1. data: a synthetic contextual-SBM graph (default 3,000 nodes, 500 dense features, 4
   classes), or Cora / CiteSeer / PubMed with ``--data FOLDER``;
2. UGS (:class:`sparselth.prune.UGS`): round 0 trains the dense two-layer GCN, then each
   round searches trainable masks on every edge and every weight, removes ``p_g`` of the
   surviving edges and ``p_θ`` of the surviving weights (default 0.2 and 0.4, larger than the
   paper's 0.05 / 0.2 so that four rounds reach 59 % / 87 %), rewinds the weights and
   retrains with the masks fixed;
3. the same schedule with random pruning (the baseline the paper compares with;
   ``--no-baseline`` skips it);
4. every round's ticket is compiled with :func:`sparselth.compile` (pruned edges dropped from
   the stored graph, each linear layer on its fastest exact route) and timed against the
   unpruned model with :func:`sparselth.utils.timing.measure` (interleaved, medians on the
   headline clock: CPU time with one thread, else wall time); the last round's ticket is
   saved (``<out>/demo-glt-ticket/``), loaded back and compiled, and its report printed;
5. a table per round (sparsities, test accuracy, MACs, latency dense vs ticket), a line that
   says plainly at which rounds UGS is at or above random pruning and at which it is below
   (one seed; whatever the outcome on the chosen graph), a JSON summary (``demo-glt.json``)
   and a PNG (``demo-glt.png``: accuracy vs sparsity, latency).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..utils.plot import figure, save_png
from ..utils.records import format_number, format_si, write_json
from ..utils.timing import busy_note, load_average, machine_info, measure, stopwatch
from .common import (add_command, default_out_dir, fail, fraction_arg, int_at_least,
                     text_table)

__all__ = ["CSBM", "GLTRow", "add_subcommand", "format_glt_table", "load_demo_data",
           "run_glt_demo", "save_glt_plot", "ugs_vs_random"]

GLT_PLOT_NAME = "demo-glt.png"
GLT_JSON_NAME = "demo-glt.json"
GLT_TICKET_NAME = "demo-glt-ticket"
PLANETOID = ("cora", "citeseer", "pubmed")
# the synthetic graph: features alone classify ~70 % of the nodes, the graph adds the rest
CSBM = dict(num_classes=4, avg_degree=8.0, homophily=0.7, feature_snr=0.2)


@dataclass
class GLTRow:
    """One UGS round of the demo: what the ticket keeps, how well it does, what it costs.
    Latencies are medians on the measurement's headline clock (``timing["clock"]``)."""

    round: int
    graph_sparsity: float
    weight_sparsity: float
    edges_kept: int
    weights_kept: int
    test_acc: float
    val_acc: float
    macs: int
    latency_ms_dense: float
    latency_ms_ticket: float
    random_test_acc: float | None = None
    routes: dict[str, str] | None = None
    timing: dict[str, Any] | None = None

    @property
    def speedup(self) -> float:
        return self.latency_ms_dense / self.latency_ms_ticket


def load_demo_data(data_root: Path | None, dataset: str, nodes: int, features: int,
                   seed: int):
    """The demo's graph: a contextual SBM (``dataset="csbm"``) or a Planetoid dataset read
    from ``data_root`` (FileNotFoundError naming the path when it is missing)."""
    from ..data import contextual_sbm, load_planetoid

    if dataset == "csbm":
        c = CSBM["num_classes"]
        return contextual_sbm(nodes, num_features=features, seed=seed,
                              train_per_class=min(20, max(1, nodes // (10 * c))),
                              num_val=min(500, nodes // 4), num_test=min(1000, nodes // 2),
                              **CSBM)
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {str(root)!r} does not exist (expected a folder holding "
            f"planetoid/ind.{dataset}.*; set SPARSELTH_DATA or pass --data)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_planetoid(dataset, root=root)
    data.info["load_warnings"] = [str(w.message) for w in caught]
    return data


def _compile_and_time(template, ticket, dense, x, reps: int, budget_s: float,
                      timing_budget_s: float):
    """Compile ``ticket`` onto ``template`` and time it against ``dense`` (eval mode, no
    grad; at least ``reps`` interleaved samples each, more while they fit in
    ``timing_budget_s``): ``(measurement, report, note)``."""
    from .. import compile as compile_ticket
    from ..deploy import CompileError

    note = None
    try:
        compiled, report = compile_ticket(template, ticket, example_inputs=(x,),
                                          budget_s=budget_s, e2e_budget_s=3 * budget_s)
    except CompileError as e:  # report it and keep the graph compaction with dense layers
        note = f"compile with all routes failed ({e}); dense layer routes used"
        compiled, report = compile_ticket(template, ticket, example_inputs=(x,),
                                          routes=["dense"], budget_s=budget_s,
                                          e2e_budget_s=3 * budget_s)
    with torch.no_grad():  # the first calls of a fresh model run slow for a while
        m = measure({"dense": lambda: dense(x), "ticket": lambda: compiled(x)},
                    warmup=3, max_extra_warmup=47, budget_s=timing_budget_s,
                    min_reps=reps, max_reps=max(reps, 200))
    return m, report, note


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_glt_table(rows: list[GLTRow]) -> str:
    """The per-round table the demo prints."""
    with_random = any(r.random_test_acc is not None for r in rows)
    headers = ["round", "graph sp.", "weight sp.", "edges", "test acc"]
    headers += ["random acc"] if with_random else []
    headers += ["MACs", "MACs x", "dense ms", "ticket ms", "speed-up"]
    base_macs = rows[0].macs if rows else None
    table = []
    for r in rows:
        cells = [str(r.round), _pct(r.graph_sparsity), _pct(r.weight_sparsity),
                 f"{r.edges_kept:,}", _pct(r.test_acc)]
        cells += [_pct(r.random_test_acc)] if with_random else []
        cells += [format_si(r.macs), f"{base_macs / r.macs:.2f}" if base_macs and r.macs else "-",
                  format_number(r.latency_ms_dense), format_number(r.latency_ms_ticket),
                  f"{r.speedup:.2f}x"]
        table.append(cells)
    return text_table(headers, table)


def save_glt_plot(rows: list[GLTRow], path: Path, *, title: str,
                  dense_acc: float | None = None, threads: int | None = None,
                  clock: str = "wall") -> Path:
    """Left: test accuracy vs weight sparsity (bottom axis) and graph sparsity (top axis),
    UGS and random pruning. Right: latency per round, unpruned model vs compiled ticket."""
    fig, (ax, bx) = figure(ncols=2, width=11.5, height=4.4)
    w = [100 * r.weight_sparsity for r in rows]
    ax.plot(w, [100 * r.test_acc for r in rows], "o-", lw=2, color="tab:blue",
            label="UGS ticket")
    pts = [(x, 100 * r.random_test_acc) for x, r in zip(w, rows) if r.random_test_acc is not None]
    if pts:
        ax.plot(*zip(*pts), "s--", color="tab:gray", label="random pruning")
    if dense_acc is not None:
        ax.axhline(100 * dense_acc, color="k", ls=":", lw=1, label="dense")
    ax.set_xlabel("weight sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    top.set_xticks(w)
    top.set_xticklabels([f"{100 * r.graph_sparsity:.0f}" for r in rows])
    top.set_xlabel("graph sparsity (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")

    idx = list(range(len(rows)))
    width = 0.38
    bx.bar([i - width / 2 for i in idx], [r.latency_ms_dense for r in rows], width,
           color="tab:gray", label="unpruned model")
    bx.bar([i + width / 2 for i in idx], [r.latency_ms_ticket for r in rows], width,
           color="tab:blue", label="compiled ticket")
    for i, r in zip(idx, rows):
        bx.annotate(f"{r.speedup:.2f}x", (i + width / 2, r.latency_ms_ticket),
                    ha="center", va="bottom", fontsize=8)
    bx.set_xticks(idx)
    bx.set_xticklabels([f"{r.round}\n{100 * r.graph_sparsity:.0f}/{100 * r.weight_sparsity:.0f}%"
                        for r in rows])
    bx.set_xlabel("round (graph / weight sparsity)")
    bx.set_ylabel(f"forward latency, ms (median {clock} time)")
    threads = torch.get_num_threads() if threads is None else threads
    bx.set_title(f"inference, {threads} thread(s)")
    bx.set_ylim(0, 1.3 * max(max(r.latency_ms_dense, r.latency_ms_ticket) for r in rows))
    bx.grid(True, axis="y", alpha=0.3)
    bx.legend(loc="upper center", ncol=2)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


def _print_header(stream, *, data, dataset, data_root, A, x, hidden, epochs, rounds,
                  prune_graph, prune_weight, sched_g, sched_w, seed) -> None:
    from ..sparse import CSR

    n_feat, n_cls, weights_total = data.num_features, data.num_classes, sched_w[0]
    what = (f"contextual SBM (seed {seed}), {data.num_nodes:,} nodes, {A.nnz:,} stored edges, "
            f"{n_feat} dense features, {n_cls} classes" if dataset == "csbm" else
            f"{dataset} from {data_root}, {data.num_nodes:,} nodes, {A.nnz:,} stored edges, "
            f"{n_feat} features ({'CSR' if isinstance(x, CSR) else 'dense'}), {n_cls} classes")
    print(f"sparselth demo: a graph lottery ticket (UGS, Chen et al. 2021) for a GCN, found, "
          f"saved, compiled and timed\n  data:  {what}", file=stream)
    print(f"  model: GCN {n_feat} -> {hidden} -> {n_cls} ({weights_total:,} weights); "
          f"{epochs} epochs of mask search + {epochs} of retraining per round; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s)", file=stream)
    print(f"  schedule: {rounds} rounds, each prunes p_g = {prune_graph:g} of the surviving "
          f"edges and p_θ = {prune_weight:g} of the surviving weights -> round {rounds}: "
          f"graph {100 * (1 - sched_g[-1] / max(1, A.nnz)):.1f} %, weights "
          f"{100 * (1 - sched_w[-1] / weights_total):.1f} % pruned", file=stream)
    for msg in data.info.get("load_warnings", []):
        print(f"  note: {msg}", file=stream)
    stream.flush()


def _summary_line(rows: list[GLTRow]) -> str:
    last, first = rows[-1], rows[0]
    text = (f"round {last.round}: {100 * last.graph_sparsity:.1f} % of the edges and "
            f"{100 * last.weight_sparsity:.1f} % of the weights removed, test accuracy "
            f"{100 * last.test_acc:.1f} % (dense {100 * first.test_acc:.1f} %")
    if last.random_test_acc is not None:
        text += f", random pruning {100 * last.random_test_acc:.1f} %"
    return text + (f"), {first.macs / last.macs:.2f}x fewer MACs, measured speed-up "
                   f"{last.speedup:.2f}x over the unpruned model")


def ugs_vs_random(rows: list[GLTRow]) -> tuple[str, dict[str, list[int]]] | None:
    """The verdict the demo prints: at which pruning rounds UGS's test accuracy is at or above
    random pruning's and at which it is below (``{"at_or_above": [...], "below": [...]}``),
    or None without the baseline."""
    pairs = [r for r in rows[1:] if r.random_test_acc is not None]
    if not pairs:
        return None
    above = [r.round for r in pairs if r.test_acc >= r.random_test_acc]
    below = [r for r in pairs if r.test_acc < r.random_test_acc]
    if not below:
        text = (f"UGS vs random pruning (one seed): UGS is at or above random pruning at every "
                f"round ({', '.join(map(str, above))}).")
    else:
        worse = ", ".join(f"{r.round} ({100 * r.test_acc:.1f} % vs {100 * r.random_test_acc:.1f} %)"
                          for r in below)
        text = (f"UGS vs random pruning (one seed): UGS is BELOW random pruning at round"
                f"{'s' if len(below) > 1 else ''} {worse}"
                + (f"; at or above at {', '.join(map(str, above))}" if above else "")
                + ". On this graph and schedule this ticket does not beat random pruning at "
                "every round.")
    return text, {"at_or_above": above, "below": [r.round for r in below]}


def run_glt_demo(
    data_root: Path | None = None,
    dataset: str = "csbm",
    rounds: int = 4,
    epochs: int = 100,
    nodes: int = 3000,
    features: int = 500,
    hidden: int = 256,
    prune_graph: float = 0.2,
    prune_weight: float = 0.4,
    seed: int = 0,
    baseline: bool = True,
    out: Path | None = None,
    progress: bool = True,
    reps: int = 10,
    compile_budget_s: float = 0.1,
    timing_budget_s: float = 0.6,
    stream=None,
) -> dict[str, Any]:
    """Find a graph lottery ticket with UGS, compile and time it (see the module docstring).

    Returns ``{"rows": [GLTRow...], "ticket": path, "plot": path, "json": path, "report":
    CompileReport of the last round, "schedule": {...}, "clock": str, "elapsed_s": float}``.
    Raises FileNotFoundError when a Planetoid dataset's folder or files are missing.
    """
    from tqdm.auto import tqdm

    from ..sparse import CSR
    from ..ticket import Ticket
    from ..models import GCN
    from ..prune import UGS, UGSConfig
    from ..prune.ugs import ugs_schedule
    from ..train import NodeClassificationTask, node_features

    stream = sys.stdout if stream is None else stream
    elapsed = stopwatch()
    machine = machine_info()
    data = load_demo_data(data_root, dataset, nodes, features, seed)
    x = node_features(data.x)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    n_feat, n_cls = data.num_features, data.num_classes

    def build():
        return GCN(A, n_feat, n_cls, hidden=hidden)

    weights_total = n_feat * hidden + hidden * n_cls
    sched_g = ugs_schedule(A.nnz, prune_graph, rounds)
    sched_w = ugs_schedule(weights_total, prune_weight, rounds)
    _print_header(stream, data=data, dataset=dataset, data_root=data_root, A=A, x=x,
                  hidden=hidden, epochs=epochs, rounds=rounds, prune_graph=prune_graph,
                  prune_weight=prune_weight, sched_g=sched_g, sched_w=sched_w, seed=seed)

    task = NodeClassificationTask(data, x)
    cfg = UGSConfig(rounds=rounds, prune_graph=prune_graph, prune_weight=prune_weight,
                    mask_epochs=epochs, fix_epochs=epochs, seed=seed)
    out_dir = Path(out) if out is not None else default_out_dir()
    demo_meta = {"dataset": dataset, "num_nodes": data.num_nodes, "num_features": n_feat,
                 "num_classes": n_cls, "hidden": hidden, "model": "sparselth.models.GCN",
                 "data_seed": seed if dataset == "csbm" else None,
                 "csbm": dict(CSBM) if dataset == "csbm" else None}
    with tempfile.TemporaryDirectory(prefix="sparselth-demo-") as tmp:
        ugs = UGS(build, task, cfg, run_dir=Path(tmp) / "ugs", progress=progress)
        records = ugs.run()
        random_records = None
        if baseline:
            print("random-pruning baseline: the same schedule, masks drawn at random, "
                  "one retraining per round", file=stream)
            stream.flush()
            rnd = UGS(build, task, UGSConfig(**{**cfg.to_dict(), "baseline": "random"}),
                      run_dir=Path(tmp) / "random", progress=progress)
            random_records = rnd.run()

        # every round's ticket: compiled and timed against the unpruned model
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            dense = build().eval()
        rows: list[GLTRow] = []
        notes: list[str] = []
        report = None
        ticket_dir = out_dir / GLT_TICKET_NAME
        for r in tqdm(range(rounds + 1), desc="compile + time tickets", unit="ticket",
                      disable=not progress):
            ticket = Ticket.from_run(ugs.run_dir, r, demo=demo_meta)
            if r == rounds:  # the ticket a user keeps: saved, loaded back, compiled
                ticket.save(ticket_dir)
                ticket = Ticket.load(ticket_dir)
            m, report, note = _compile_and_time(build(), ticket, dense, x, reps,
                                                compile_budget_s, timing_budget_s)
            if note:
                notes.append(f"round {r}: {note}")
            rec = records[r]
            rows.append(GLTRow(
                round=r, graph_sparsity=rec["graph_sparsity"],
                weight_sparsity=rec["weight_sparsity"], edges_kept=rec["graph_edges_kept"],
                weights_kept=rec["weights_kept"], test_acc=rec["test_acc"],
                val_acc=rec["val_acc"], macs=int(rec["macs"]),
                latency_ms_dense=m.ms("dense"), latency_ms_ticket=m.ms("ticket"),
                random_test_acc=random_records[r]["test_acc"] if random_records else None,
                routes=report.routes, timing=m.to_dict()))

    clock = rows[0].timing["clock"]
    reps_seen = sorted({t["reps"] for row in rows for t in row.timing["timings"].values()})
    samples = "-".join(str(n) for n in dict.fromkeys((reps_seen[0], reps_seen[-1])))
    print(f"\ncompiled ticket of round {rounds} (saved in {ticket_dir}, loaded back):",
          file=stream)
    print(report, file=stream)
    print("\nper round (sparsity = fraction removed; test accuracy at the best validation "
          "epoch; MACs of the compacted ticket; latency: unpruned model vs compiled ticket, "
          f"medians of {samples} interleaved samples, {clock} time per "
          "forward pass):", file=stream)
    print(format_glt_table(rows), file=stream)
    print(_summary_line(rows), file=stream)
    verdict = ugs_vs_random(rows)
    if verdict is not None:
        print(verdict[0], file=stream)
    if isinstance(x, CSR):
        notes.append("the features are stored as a CSR, so the first layer computes "
                     "spmm(X, W^T) with W dense: its weight sparsity (counted in the MACs) "
                     "saves no time; the ticket's time savings come from the compacted graph "
                     "and the second layer")
    for n in notes:
        print(f"note: {n}", file=stream)

    title = (f"graph lottery ticket (UGS, p_g {prune_graph:g}, p_θ {prune_weight:g}/round): "
             f"GCN on {dataset}, {data.num_nodes:,} nodes")
    plot_path = save_glt_plot(rows, out_dir / GLT_PLOT_NAME, title=title,
                              dense_acc=rows[0].test_acc, clock=clock)
    machine["loadavg_end"] = load_average()
    seconds = elapsed()
    json_path = write_json(out_dir / GLT_JSON_NAME, {
        "demo": "graph lottery ticket",
        "dataset": dataset,
        "data": {"num_nodes": data.num_nodes, "num_features": n_feat, "num_classes": n_cls,
                 "stored_edges": A.nnz, "features_as": "CSR" if isinstance(x, CSR) else "dense",
                 "csbm": dict(CSBM) if dataset == "csbm" else None},
        "model": {"name": "GCN", "hidden": hidden, "weights": weights_total},
        "config": cfg.to_dict(),
        "schedule": {"edges_kept": sched_g, "weights_kept": sched_w},
        "clock": clock,
        "rows": [asdict(r) | {"speedup": r.speedup} for r in rows],
        "random_records": [{k: rr[k] for k in ("round", "graph_sparsity", "weight_sparsity",
                                                 "test_acc")} for rr in random_records]
        if random_records else None,
        "ugs_vs_random": None if verdict is None else {"text": verdict[0], **verdict[1]},
        "compile_report": report.to_dict(),
        "ticket": str(ticket_dir),
        "notes": notes,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine,
        "elapsed_s": seconds,
    })
    print(f"ticket: {ticket_dir}\nplot:   {plot_path}\njson:   {json_path}", file=stream)
    busy = busy_note(machine)
    if busy:
        print(f"note: {busy}", file=stream)
    print(f"({seconds:.1f} s)", file=stream)
    return {"rows": rows, "ticket": ticket_dir, "plot": plot_path, "json": json_path,
            "report": report, "schedule": {"edges_kept": sched_g, "weights_kept": sched_w},
            "clock": clock, "elapsed_s": seconds}


DESCRIPTION = """\
Train a GCN on a synthetic contextual-SBM graph (default 3,000 nodes, 500 features; or
Cora/CiteSeer/PubMed with --data), find a graph lottery ticket with UGS (p_g 0.2 of the
edges and p_θ 0.4 of the weights pruned per round), run the random-pruning baseline, save
the last round's ticket, compile every round's ticket with sparselth.compile and time it
against the unpruned model; print the compile report and a table per round, save
demo-glt.png and demo-glt.json. About two minutes on one thread.
"""
HELP = "find a graph lottery ticket (UGS) for a GCN, compile it and time it vs dense"


def add_subcommand(subparsers: Any) -> None:
    """Add ``demo`` (the graph lottery ticket demo) to ``subparsers``."""
    p = add_command(subparsers, "demo", main, help=HELP, description=DESCRIPTION,
                    formatter=argparse.HelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="folder of datasets holding planetoid/ind.<dataset>.*; "
                        "without it the demo uses a synthetic contextual-SBM graph")
    p.add_argument("--dataset", choices=("csbm",) + PLANETOID, default=None,
                   help="csbm (synthetic) or a Planetoid dataset read from --data, else "
                        "from $SPARSELTH_DATA (default: cora with --data, else csbm)")
    p.add_argument("--rounds", type=int_at_least(1), default=4,
                   help="UGS pruning rounds (default: %(default)s)")
    p.add_argument("--epochs", type=int_at_least(1), default=100,
                   help="epochs of mask search and of retraining, per round "
                        "(default: %(default)s)")
    p.add_argument("--nodes", type=int_at_least(40), default=3000,
                   help="nodes of the synthetic graph (default: %(default)s)")
    p.add_argument("--features", type=int_at_least(1), default=500,
                   help="feature width of the synthetic graph (default: %(default)s)")
    p.add_argument("--hidden", type=int_at_least(1), default=256,
                   help="GCN hidden width (default: %(default)s)")
    p.add_argument("--prune-graph", type=fraction_arg, default=0.2,
                   help="p_g: fraction of the surviving edges pruned per round "
                        "(default: %(default)s)")
    p.add_argument("--prune-weight", type=fraction_arg, default=0.4,
                   help="p_θ: fraction of the surviving weights pruned per round "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, θ0 and the masks (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the random-pruning baseline (saves about a third of the time)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {GLT_PLOT_NAME}, {GLT_JSON_NAME} and {GLT_TICKET_NAME}/ "
                        "(default: bench/results from the repository root, else .)")
    p.add_argument("--threads", type=int_at_least(0), default=1,
                   help="torch threads (0: torch's default); one is fastest on a small, "
                        "shared CPU (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _data_root(data: Path | None, dataset: str) -> Path | None:
    """The folder to read ``dataset`` from (``--data``, else ``$SPARSELTH_DATA``); raises
    ValueError naming what is missing."""
    if dataset == "csbm":
        if data is not None:
            raise ValueError("--data is read only for --dataset cora, citeseer or pubmed")
        return None
    if data is None and not os.environ.get("SPARSELTH_DATA"):
        raise ValueError(f"--dataset {dataset} needs --data FOLDER (holding planetoid/ind."
                         f"{dataset}.*) or SPARSELTH_DATA")
    root = Path(data if data is not None else os.environ["SPARSELTH_DATA"])
    if not root.expanduser().is_dir():
        raise ValueError(f"data folder {str(root)!r} does not exist (expected a folder "
                         f"holding planetoid/ind.{dataset}.*; set SPARSELTH_DATA or pass --data)")
    return root


def main(args: argparse.Namespace) -> int:
    """``sparselth demo``: returns the exit code (2 with a message for a missing dataset)."""
    dataset = args.dataset or ("cora" if args.data is not None else "csbm")
    try:
        data_root = _data_root(args.data, dataset)
    except ValueError as e:
        return fail("demo", e)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run_glt_demo(data_root=data_root, dataset=dataset, rounds=args.rounds,
                     epochs=args.epochs, nodes=args.nodes, features=args.features,
                     hidden=args.hidden, prune_graph=args.prune_graph,
                     prune_weight=args.prune_weight, seed=args.seed,
                     baseline=not args.no_baseline, out=args.out,
                     progress=not args.no_progress)
    except FileNotFoundError as e:
        return fail("demo", e)
    finally:
        torch.set_num_threads(threads_before)
    return 0
