"""Is the timing protocol stable on a busy machine? The same ticket, timed twice in one run.

``python -m bench.timing_stability`` builds a graph lottery ticket (a two-layer GCN, hidden
512, on Cora when ``--data`` holds it, else on a synthetic contextual-SBM graph; graph and
weights pruned at random to ``--graph-sparsity`` / ``--weight-sparsity``), compiles it with
``sparselth.compile`` and then, with ``--load`` busy processes competing for the cores, times
the unpruned model against the compiled ticket ``--repeats`` times in one run, each time with
:func:`sparselth.utils.timing.measure` (interleaved, wall and CPU time per sample).

Reported per repeat and clock: both medians and the speed-up; over the repeats, the spread of
the speed-ups (max / min - 1) and of the unpruned model's own samples (max / min). The
headline clock with one thread is CPU time: a descheduled thread accumulates none, so its
ratios should hold under load where wall-time ratios drift. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, load_average, measure, pause

from . import common

PUBLISHED = {"timing-stability": "--threads 1 --load 2"}
CLOCKS = ("cpu", "wall")


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("timing_stability", "The same compiled ticket timed several times "
                          "in one run on a loaded machine: how far do the speed-ups move?")
    p.add_argument("--quick", action="store_true", help="small graph, short budgets (smoke)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with planetoid/ind.cora.* (default: SPARSELTH_DATA or the "
                   "datasets folder beside the checkout; synthetic graph when absent)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--load", type=int, default=2,
                   help="busy processes started for the measurement (each keeps a core busy)")
    p.add_argument("--repeats", type=int, default=2, help="measurements of the same pair")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds the busy processes run before the first measurement, so the "
                   "recorded 1-minute load average reflects them (default 40, quick 0)")
    p.add_argument("--graph-sparsity", type=float, default=0.64)
    p.add_argument("--weight-sparsity", type=float, default=0.988)
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per measurement (default 6, quick 0.3)")
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p, plot=False)
    return p


def output_name(args: argparse.Namespace) -> str:
    return "timing-stability" + ("-quick" if args.quick else "")


def run_protocol(args: argparse.Namespace) -> dict[str, Any]:
    return dict(quick=args.quick, threads=args.threads, load=args.load, repeats=args.repeats,
                graph_sparsity=args.graph_sparsity, weight_sparsity=args.weight_sparsity,
                budget_s=args.budget if args.budget is not None else (0.3 if args.quick else 6.0),
                settle_s=args.settle if args.settle is not None else (0.0 if args.quick else 40.0),
                seed=args.seed)


def _graph(args: argparse.Namespace):
    """(name, CSR adjacency, features, classes): Cora when found, else a synthetic graph."""
    from sparselth import CSR
    from sparselth.data import contextual_sbm, load_planetoid
    from sparselth.train import node_features

    root = args.data or common.default_data_dir()
    if not args.quick and (root / "planetoid" / "ind.cora.x").exists():
        data, name = load_planetoid("cora", root=root), "cora"
    else:
        n = 300 if args.quick else 3000
        data = contextual_sbm(num_nodes=n, num_features=100 if args.quick else 500,
                              num_classes=4, avg_degree=8.0, homophily=0.7, feature_snr=0.2,
                              seed=args.seed)
        name = f"csbm-{n}"
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    return name, A, node_features(data.x), data.num_classes, data.num_features


def _ticket(args: argparse.Namespace):
    import sparselth
    from sparselth.models import GCN

    name, A, x, classes, features = _graph(args)
    torch.manual_seed(args.seed)
    model = GCN(A, features, classes, hidden=64 if args.quick else 512).eval()
    masks = sparselth.prune.random(model, args.weight_sparsity, include=model.ugs_weight_names())
    g = torch.Generator().manual_seed(args.seed)
    masks["edge_mask"] = torch.rand(A.nnz, generator=g) >= args.graph_sparsity
    return name, model, sparselth.Ticket.from_model(model, masks), x


class _Busy:
    """``n`` processes that each spin on a core until the block ends."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import sparselth

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    torch.set_num_threads(args.threads)
    proto = run_protocol(args)
    dest = common.result_path(output_name(args), args,
                              PUBLISHED, parser=parser, protocol=run_protocol)
    info = common.machine()
    graph, model, ticket, x = _ticket(args)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,),
                                         budget_s=0.05 if args.quick else 0.5)
    rows = []
    with torch.no_grad(), _Busy(args.load):
        pause(proto["settle_s"])
        for r in range(args.repeats):
            m = measure({"unpruned": lambda: model(x), "ticket": lambda: compiled(x)},
                        budget_s=proto["budget_s"], min_reps=5, max_reps=400)
            rows.append({"repeat": r, "loadavg_before": m.loadavg_before,
                         "loadavg_after": m.loadavg_after,
                         **{f"{c}_{n}_ms": m.ms(n, c) for c in CLOCKS for n in ("unpruned",
                                                                                 "ticket")},
                         **{f"{c}_speedup": m.speedup("unpruned", "ticket", c) for c in CLOCKS},
                         "unpruned_wall_samples_ms": [1e3 * t for t in m["unpruned"].wall],
                         "unpruned_cpu_samples_ms": [1e3 * t for t in m["unpruned"].cpu],
                         "reps": m["unpruned"].reps})
    notes = common.finish_machine(info)
    spread = {}
    for c in CLOCKS:
        s = [row[f"{c}_speedup"] for row in rows]
        samples = [v for row in rows for v in row[f"unpruned_{c}_samples_ms"]]
        spread[c] = {"speedups": s, "speedup_spread": max(s) / min(s) - 1,
                     "unpruned_sample_min_ms": min(samples),
                     "unpruned_sample_max_ms": max(samples)}
    clock = headline_clock(args.threads)
    result = {"benchmark": "timing_stability", "graph": graph, "clock": clock,
              "threads": args.threads, "load_processes": args.load,
              "loadavg_during": load_average(), "promised_speedup":
              report.end_to_end.get("promised_speedup"), "routes": report.routes,
              "rows": rows, "spread": spread, "machine": info, "notes": notes}
    table = markdown_table(
        ["repeat", "load avg", "unpruned cpu ms", "ticket cpu ms", "speed-up (cpu)",
         "unpruned wall ms", "ticket wall ms", "speed-up (wall)"],
        [[row["repeat"], row["loadavg_after"], row["cpu_unpruned_ms"], row["cpu_ticket_ms"],
          row["cpu_speedup"], row["wall_unpruned_ms"], row["wall_ticket_ms"],
          row["wall_speedup"]] for row in rows])
    md = "\n".join([
        f"# Timing stability: the same ticket timed {args.repeats} times in one run",
        "", f"GCN (hidden {64 if args.quick else 512}) on {graph}, ticket with "
        f"{args.graph_sparsity:.1%} of edges and {args.weight_sparsity:.1%} of weights pruned; "
        f"{args.threads} thread(s), {args.load} busy processes beside the measurement.", "",
        table, "",
        f"- Headline clock: **{clock}** time. Spread of the speed-up over the repeats (max/min - "
        f"1): cpu {format_number(100 * spread['cpu']['speedup_spread'])} %, wall "
        f"{format_number(100 * spread['wall']['speedup_spread'])} %.",
        f"- The unpruned model's samples ranged {format_number(spread['wall']['unpruned_sample_min_ms'])}"
        f"-{format_number(spread['wall']['unpruned_sample_max_ms'])} ms wall, "
        f"{format_number(spread['cpu']['unpruned_sample_min_ms'])}-"
        f"{format_number(spread['cpu']['unpruned_sample_max_ms'])} ms CPU.",
        *[f"- {n}" for n in notes], "", *common.machine_section(info)])
    common.write_result(dest, result, md)
    print(md)
    return result


if __name__ == "__main__":
    main()
