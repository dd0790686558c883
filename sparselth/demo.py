"""The demos of the ``sparselth`` command.

``python -m sparselth demo`` (what ``make demo`` runs) finds a *graph lottery ticket* and runs
it on sparselth's kernels, end to end in about 1.5 minutes of CPU time on one thread:

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
   unpruned model, interleaved, medians; the last round's ticket is saved
   (``<out>/demo-glt-ticket/``), loaded back and compiled, and its per-layer report printed;
5. a table per round (sparsities, test accuracy, MACs, latency dense vs ticket), a JSON
   summary (``demo-glt.json``) and a PNG (``demo-glt.png``: accuracy vs sparsity, latency).

``python -m sparselth demo-spmm`` is the kernel-level demo: a synthetic power-law graph's
edges pruned at random in steps (keep 1, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05), ``A @ X`` timed
with sparselth (the ``cpp`` backend when built, else ``reference``) against
``torch.sparse.mm`` on the same CSR matrix, each result checked against ``torch.sparse.mm``
first; table and PNG (``demo-spmm.png``).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

GLT_PLOT_NAME = "demo-glt.png"
GLT_JSON_NAME = "demo-glt.json"
GLT_TICKET_NAME = "demo-glt-ticket"
PLANETOID = ("cora", "citeseer", "pubmed")
# the synthetic graph: features alone classify ~70 % of the nodes, the graph adds the rest
CSBM = dict(num_classes=4, avg_degree=8.0, homophily=0.7, feature_snr=0.2)


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


def _busy_note() -> Optional[str]:
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        return None
    if load > 0.5 * cores + 0.5:
        return (f"note: the machine was busy (load average {load:.1f} on {cores} cores); "
                "times are inflated, rerun on an idle machine for clean numbers")
    return None


# =========================================================================== graph lottery ticket


@dataclass
class GLTRow:
    """One UGS round of the demo: what the ticket keeps, how well it does, what it costs."""

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
    random_test_acc: Optional[float] = None
    routes: Optional[Dict[str, str]] = None

    @property
    def speedup(self) -> float:
        return self.latency_ms_dense / self.latency_ms_ticket


def load_demo_data(data_root: Optional[Path], dataset: str, nodes: int, features: int,
                   seed: int):
    """The demo's graph: a contextual SBM (``dataset="csbm"``) or a Planetoid dataset read
    from ``data_root`` (FileNotFoundError naming the path when it is missing)."""
    from .data import contextual_sbm, load_planetoid

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
            f"planetoid/ind.{dataset}.*, e.g. ../shared/datasets)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_planetoid(dataset, root=root)
    data.info["load_warnings"] = [str(w.message) for w in caught]
    return data


def _compile_and_time(template, ticket, dense, x, reps: int, budget_s: float,
                      timing_budget_s: float):
    """Compile ``ticket`` onto ``template`` and time it against ``dense`` (warm-up, then at
    least ``reps`` interleaved pairs, more while they fit in ``timing_budget_s``; medians, eval
    mode, no grad): ``(dense_ms, ticket_ms, pairs, report, note)``."""
    from .compile import CompileError
    from .compile import compile as sl_compile

    note = None
    try:
        compiled, report = sl_compile(template, ticket, example_inputs=(x,), budget_s=budget_s,
                                      e2e_budget_s=3 * budget_s)
    except CompileError as e:  # report it and keep the graph compaction with dense layers
        note = f"compile with all routes failed ({e}); dense layer routes used"
        compiled, report = sl_compile(template, ticket, example_inputs=(x,), routes=["dense"],
                                      budget_s=budget_s, e2e_budget_s=3 * budget_s)
    fns = {"dense": lambda: dense(x), "ticket": lambda: compiled(x)}
    per_call = 0.0
    with torch.no_grad():
        for fn in fns.values():  # the first calls of a fresh model run slow for a while
            t0, calls = time.perf_counter(), 0
            while calls < 3 or (time.perf_counter() - t0 < 0.25 and calls < 50):
                fn()
                calls += 1
            per_call += (time.perf_counter() - t0) / calls
        # fast models get more pairs: a busy machine's time slices are long next to them
        reps = int(min(200, max(reps, timing_budget_s / max(per_call, 1e-9))))
        t = _median_interleaved(fns, reps)
    return t["dense"] * 1e3, t["ticket"] * 1e3, reps, report, note


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_glt_table(rows: Sequence[GLTRow]) -> str:
    """The per-round table the demo prints."""
    from .compile import format_number, format_si

    with_random = any(r.random_test_acc is not None for r in rows)
    headers = ["round", "graph sp.", "weight sp.", "edges", "test acc"]
    if with_random:
        headers.append("random acc")
    headers += ["MACs", "MACs x", "dense ms", "ticket ms", "speed-up"]
    base_macs = rows[0].macs if rows else None
    table = []
    for r in rows:
        cells = [str(r.round), _pct(r.graph_sparsity), _pct(r.weight_sparsity),
                 f"{r.edges_kept:,}", _pct(r.test_acc)]
        if with_random:
            cells.append(_pct(r.random_test_acc))
        cells += [format_si(r.macs),
                  f"{base_macs / r.macs:.2f}" if base_macs and r.macs else "-",
                  format_number(r.latency_ms_dense), format_number(r.latency_ms_ticket),
                  f"{r.speedup:.2f}x"]
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in table]
    return "\n".join(lines)


def save_glt_plot(rows: Sequence[GLTRow], path: Path, *, title: str,
                  dense_acc: Optional[float] = None, threads: Optional[int] = None) -> Path:
    """Left: test accuracy vs weight sparsity (bottom axis) and graph sparsity (top axis),
    UGS and random pruning. Right: latency per round, unpruned model vs compiled ticket.
    Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    w = [100 * r.weight_sparsity for r in rows]
    ax.plot(w, [100 * r.test_acc for r in rows], "o-", lw=2, color="tab:blue",
            label="UGS ticket")
    if any(r.random_test_acc is not None for r in rows):
        pts = [(x, 100 * r.random_test_acc) for x, r in zip(w, rows)
               if r.random_test_acc is not None]
        ax.plot(*zip(*pts), "s--", color="tab:gray", label="random pruning")
    if dense_acc is not None:
        ax.axhline(100 * dense_acc, color="k", ls=":", lw=1, label="dense")
    ax.set_xlabel("weight sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    top.set_xticks(w)
    top.set_xticklabels([f"{100 * r.graph_sparsity:.0f}" for r in rows], fontsize=8)
    top.set_xlabel("graph sparsity (%)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")

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
                        for r in rows], fontsize=8)
    bx.set_xlabel("round (graph / weight sparsity)")
    bx.set_ylabel("forward latency, ms (median)")
    threads = torch.get_num_threads() if threads is None else threads
    bx.set_title(f"inference, {threads} thread(s)", fontsize=10)
    bx.set_ylim(0, 1.3 * max(max(r.latency_ms_dense, r.latency_ms_ticket) for r in rows))
    bx.grid(True, axis="y", alpha=0.3)
    bx.legend(fontsize=8, loc="upper center", ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_glt_demo(
    data_root: Optional[Path] = None,
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
    out: Optional[Path] = None,
    progress: bool = True,
    reps: int = 10,
    compile_budget_s: float = 0.1,
    timing_budget_s: float = 0.6,
    stream=None,
) -> Dict[str, Any]:
    """Find a graph lottery ticket with UGS, compile and time it (see the module docstring).

    Returns ``{"rows": [GLTRow...], "ticket": path, "plot": path, "json": path, "report":
    CompileReport of the last round, "schedule": {...}, "elapsed_s": float}``.
    Raises FileNotFoundError when a Planetoid dataset's folder or files are missing.
    """
    from tqdm.auto import tqdm

    from . import CSR, Ticket, _io
    from .models import GCN
    from .prune import UGS, UGSConfig, load_ugs_round
    from .prune.ugs import ugs_schedule
    from .train import NodeClassificationTask, node_features

    stream = sys.stdout if stream is None else stream
    t_start = time.perf_counter()
    data = load_demo_data(data_root, dataset, nodes, features, seed)
    x = node_features(data.x)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    n_feat, n_cls = data.num_features, data.num_classes

    def build():
        return GCN(A, n_feat, n_cls, hidden=hidden)

    weights_total = n_feat * hidden + hidden * n_cls
    sched_g = ugs_schedule(A.nnz, prune_graph, rounds)
    sched_w = ugs_schedule(weights_total, prune_weight, rounds)
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

    task = NodeClassificationTask(data, x)
    cfg = UGSConfig(rounds=rounds, prune_graph=prune_graph, prune_weight=prune_weight,
                    mask_epochs=epochs, fix_epochs=epochs, seed=seed)
    out_dir = Path(out) if out is not None else default_out_dir()
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
        rows: List[GLTRow] = []
        notes: List[str] = []
        pairs_used: List[int] = []
        report = None
        ticket_dir = out_dir / GLT_TICKET_NAME
        for r in tqdm(range(rounds + 1), desc="compile + time tickets", unit="ticket",
                      disable=not progress):
            parts = load_ugs_round(ugs.run_dir, r)
            parts["metadata"]["demo"] = {
                "dataset": dataset, "num_nodes": data.num_nodes, "num_features": n_feat,
                "num_classes": n_cls, "hidden": hidden, "model": "sparselth.models.GCN",
                "data_seed": seed if dataset == "csbm" else None,
                "csbm": dict(CSBM) if dataset == "csbm" else None,
            }
            ticket = Ticket(**parts)
            if r == rounds:  # the ticket a user keeps: saved, loaded back, compiled
                ticket.save(ticket_dir)
                ticket = Ticket.load(ticket_dir)
            d_ms, t_ms, pairs, rep, note = _compile_and_time(
                build(), ticket, dense, x, reps, compile_budget_s, timing_budget_s)
            pairs_used.append(pairs)
            if note:
                notes.append(f"round {r}: {note}")
            rec = records[r]
            rows.append(GLTRow(
                round=r, graph_sparsity=rec["graph_sparsity"],
                weight_sparsity=rec["weight_sparsity"], edges_kept=rec["graph_edges_kept"],
                weights_kept=rec["weights_kept"], test_acc=rec["test_acc"],
                val_acc=rec["val_acc"], macs=int(rec["macs_total"]),
                latency_ms_dense=d_ms, latency_ms_ticket=t_ms,
                random_test_acc=random_records[r]["test_acc"] if random_records else None,
                routes=rep.routes))
            report = rep

    print(f"\ncompiled ticket of round {rounds} (saved in {ticket_dir}, loaded back):",
          file=stream)
    print(report, file=stream)
    print("\nper round (sparsity = fraction removed; test accuracy at the best validation "
          "epoch; MACs of the compacted ticket; latency: unpruned model vs compiled ticket, "
          f"medians of {min(pairs_used)}-{max(pairs_used)} interleaved forward passes):",
          file=stream)
    print(format_glt_table(rows), file=stream)
    last, first = rows[-1], rows[0]
    summary = (f"round {last.round}: {100 * last.graph_sparsity:.1f} % of the edges and "
               f"{100 * last.weight_sparsity:.1f} % of the weights removed, test accuracy "
               f"{100 * last.test_acc:.1f} % (dense {100 * first.test_acc:.1f} %")
    if last.random_test_acc is not None:
        summary += f", random pruning {100 * last.random_test_acc:.1f} %"
    summary += (f"), {first.macs / last.macs:.2f}x fewer MACs, measured speed-up "
                f"{last.speedup:.2f}x over the unpruned model")
    print(summary, file=stream)
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
                              dense_acc=first.test_acc)
    elapsed = time.perf_counter() - t_start
    summary_json = {
        "demo": "graph lottery ticket",
        "dataset": dataset,
        "data": {"num_nodes": data.num_nodes, "num_features": n_feat, "num_classes": n_cls,
                 "stored_edges": A.nnz, "features_as": "CSR" if isinstance(x, CSR) else "dense",
                 "csbm": dict(CSBM) if dataset == "csbm" else None},
        "model": {"name": "GCN", "hidden": hidden, "weights": weights_total},
        "config": cfg.to_dict(),
        "schedule": {"edges_kept": sched_g, "weights_kept": sched_w},
        "rows": [asdict(r) | {"speedup": r.speedup} for r in rows],
        "random_records": [{k: rr[k] for k in ("round", "graph_sparsity", "weight_sparsity",
                                                 "test_acc")} for rr in random_records]
        if random_records else None,
        "compile_report": report.to_dict(),
        "ticket": str(ticket_dir),
        "notes": notes,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "elapsed_s": elapsed,
    }
    json_path = out_dir / GLT_JSON_NAME
    _io.atomic_write_json(json_path, _finite(summary_json))
    print(f"ticket: {ticket_dir}\nplot:   {plot_path}\njson:   {json_path}", file=stream)
    busy = _busy_note()
    if busy:
        print(busy, file=stream)
    print(f"({elapsed:.1f} s)", file=stream)
    return {"rows": rows, "ticket": ticket_dir, "plot": plot_path, "json": json_path,
            "report": report, "schedule": {"edges_kept": sched_g, "weights_kept": sched_w},
            "elapsed_s": elapsed}


def _finite(o: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v:g}")
    return v


def add_arguments(p) -> None:
    """Options of ``sparselth demo`` (the graph lottery ticket demo)."""
    p.add_argument("--data", type=Path, default=None,
                   help="folder holding planetoid/ind.<dataset>.* (e.g. ../shared/datasets); "
                        "without it the demo uses a synthetic contextual-SBM graph")
    p.add_argument("--dataset", choices=("csbm",) + PLANETOID, default=None,
                   help="csbm (synthetic) or a Planetoid dataset read from --data, else "
                        "from $SPARSELTH_DATA (default: cora with --data, else csbm)")
    p.add_argument("--rounds", type=_int_at_least(1), default=4,
                   help="UGS pruning rounds (default: %(default)s)")
    p.add_argument("--epochs", type=_int_at_least(1), default=100,
                   help="epochs of mask search and of retraining, per round "
                        "(default: %(default)s)")
    p.add_argument("--nodes", type=_int_at_least(40), default=3000,
                   help="nodes of the synthetic graph (default: %(default)s)")
    p.add_argument("--features", type=_int_at_least(1), default=500,
                   help="feature width of the synthetic graph (default: %(default)s)")
    p.add_argument("--hidden", type=_int_at_least(1), default=256,
                   help="GCN hidden width (default: %(default)s)")
    p.add_argument("--prune-graph", type=_fraction, default=0.2,
                   help="p_g: fraction of the surviving edges pruned per round "
                        "(default: %(default)s)")
    p.add_argument("--prune-weight", type=_fraction, default=0.4,
                   help="p_θ: fraction of the surviving weights pruned per round "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, θ0 and the masks (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the random-pruning baseline (saves about a third of the time)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {GLT_PLOT_NAME}, {GLT_JSON_NAME} and {GLT_TICKET_NAME}/ "
                        "(default: bench/results from the repository root, else .)")
    p.add_argument("--threads", type=_int_at_least(0), default=1,
                   help="torch threads (0: torch's default); one is fastest on a small, "
                        "shared CPU (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args) -> int:
    """``sparselth demo``: returns the exit code (2 with a message for a missing dataset)."""
    dataset = args.dataset or ("cora" if args.data is not None else "csbm")
    data_root = args.data
    if dataset == "csbm" and data_root is not None:
        print("sparselth demo: --data is read only for --dataset cora, citeseer or pubmed",
              file=sys.stderr)
        return 2
    if dataset != "csbm" and data_root is None:
        env = os.environ.get("SPARSELTH_DATA")
        if not env:
            print(f"sparselth demo: --dataset {dataset} needs --data FOLDER (holding "
                  f"planetoid/ind.{dataset}.*, e.g. ../shared/datasets) or SPARSELTH_DATA",
                  file=sys.stderr)
            return 2
        data_root = Path(env)
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        print(f"sparselth demo: data folder {str(data_root)!r} does not exist (expected a "
              f"folder holding planetoid/ind.{dataset}.*, e.g. ../shared/datasets)",
              file=sys.stderr)
        return 2
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
        print(f"sparselth demo: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads_before)
    return 0


# =========================================================================== SpMM demo


DEFAULT_KEEPS = (1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05)
SPMM_PLOT_NAME = "demo-spmm.png"


@dataclass
class SpmmRow:
    keep: float
    nnz: int
    sparselth_ms: float
    torch_ms: float

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.sparselth_ms


def run_spmm_demo(
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
    """Run the demo; returns ``{"backend", "rows": [SpmmRow...], "plot": path or None, ...}``."""
    import sparselth
    from sparselth.data import power_law_graph, prune_edges_random

    if backend is None:
        backend = "cpp" if "cpp" in sparselth.backends() else "reference"
    stream = sys.stdout if stream is None else stream
    t0 = time.perf_counter()
    print(
        f"sparselth demo-spmm: power-law graph, {nodes:,} nodes, average degree "
        f"{avg_degree:g}, F={F}; "
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
    rows: List[SpmmRow] = []
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
                f"demo-spmm: sparselth[{backend}] disagrees with torch.sparse.mm at keep={keep} "
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
        rows.append(SpmmRow(keep, A.nnz, t["sparselth"] * 1e3, t["torch"] * 1e3))
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
        path = save_spmm_plot(rows, out_dir / SPMM_PLOT_NAME, backend=backend, nodes=nodes, F=F)
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


def save_spmm_plot(rows: Sequence[SpmmRow], path: Path, *, backend: str, nodes: int,
                   F: int) -> Path:
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


def add_spmm_arguments(p) -> None:
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
        help=f"folder for {SPMM_PLOT_NAME} (default: bench/results from the repository root, "
        "else .)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def spmm_main(args) -> int:
    if args.nodes < 2:
        raise SystemExit(f"demo-spmm: --nodes must be >= 2, got {args.nodes}")
    if any(not 0 < k <= 1 for k in args.keep):
        raise SystemExit(f"demo-spmm: --keep values must be in (0, 1], got {args.keep}")
    keeps = sorted(set(args.keep), reverse=True)
    run_spmm_demo(
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


__all__ = [
    "GLTRow",
    "SpmmRow",
    "default_out_dir",
    "format_glt_table",
    "load_demo_data",
    "run_glt_demo",
    "run_spmm_demo",
    "save_glt_plot",
    "save_spmm_plot",
]
