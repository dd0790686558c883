"""Realised savings of compiled tickets, end to end.

``python -m bench.realised`` prunes an MLP (784-1024-1024-10, batch 64 and 256) and a small
conv net (``SmallConvNet`` on 28x28 images, batch 64) to 50/80/90/95% sparsity (magnitude,
the same sparsity in every layer by default, so the MACs promise 1 / (1 - s)), compiles each
ticket with ``sparselth.compile`` and reports, per case:

- end-to-end latency of the masked dense model and of the compiled model, timed here
  interleaved with :func:`sparselth.utils.timing.measure` (inference under ``torch.no_grad``,
  wall and CPU time per sample);
- measured speed-up on the headline clock (CPU time with one thread, wall time with more),
  the speed-up the MACs promise (MACs dense / MACs ticket), and the headline *realised
  savings* = measured / promised (1.0: every saved MAC saved time);
- the route chosen per layer and the per-layer speed-ups (from the compile report).

Writes ``realised-<tag>.{json,md,png}`` in ``bench/results/`` for the published protocol
(``PUBLISHED``), else in ``bench/results/local/``, or in ``--out``. Correctness is checked
before timing: ``compile`` verifies the compiled output against the masked dense model and
raises otherwise. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import copy
import socket
from typing import Any

import torch

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, measure, stopwatch

from . import common

TARGET = {"sparsity": 0.9, "realised_savings": 0.5}
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95)
# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {"realised-vm-t1": "--threads 1 --tag vm-t1"}


def cases(quick: bool) -> list[dict[str, Any]]:
    """The (model, batch) cases: name, builder kwargs, input shape per sample."""
    if quick:
        return [
            {"name": "mlp-784-256-256-10", "model": "mlp", "kwargs": {"sizes": [784, 256, 256, 10]},
             "input": [784], "batch": 32},
            {"name": "convnet-16x16", "model": "convnet",
             "kwargs": {"in_channels": 1, "image_size": 16, "channels": [8, 16, 16],
                        "hidden": 32}, "input": [1, 16, 16], "batch": 8},
        ]
    mlp = {"model": "mlp", "kwargs": {"sizes": [784, 1024, 1024, 10]}, "input": [784]}
    conv = {"model": "convnet", "kwargs": {"in_channels": 1, "image_size": 28,
                                           "channels": [32, 64, 64], "hidden": 256},
            "input": [1, 28, 28]}
    return [
        {"name": "mlp-784-1024-1024-10", "batch": 64, **mlp},
        {"name": "mlp-784-1024-1024-10", "batch": 256, **mlp},
        {"name": "convnet-28x28", "batch": 64, **conv},
    ]


def run_case(case: dict[str, Any], sparsity: float, *, scope: str, device: torch.device,
             budget_s: float, e2e_budget_s: float, backend: str, seed: int) -> dict[str, Any]:
    import sparselth
    from sparselth.models import build_model

    torch.manual_seed(seed)
    model = build_model(case["model"], **case["kwargs"])
    masks = sparselth.prune.magnitude(model, sparsity, scope=scope)
    ticket = sparselth.Ticket.from_model(model, masks)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case["batch"], *case["input"], generator=g)
    elapsed = stopwatch()
    compiled, report = sparselth.compile(model, ticket, device=device, example_inputs=x,
                                         backend=backend, budget_s=budget_s,
                                         e2e_budget_s=e2e_budget_s)
    compile_s = elapsed()
    dense = ticket.apply_to(copy.deepcopy(model))  # the masked dense model, as compile's
    sparselth.prune.remove(dense)  # masks baked in: plain modules
    dense = dense.to(device).eval()
    x = x.to(device)
    with torch.no_grad():
        m = measure({"dense": lambda: dense(x), "compiled": lambda: compiled(x)},
                    budget_s=e2e_budget_s, device=device)
    d, c = m["dense"].summary(), m["compiled"].summary()
    e = report.end_to_end
    promised = e["promised_speedup"]
    speedup = m.speedup("dense", "compiled")
    best = d[f"{_prefix(m.clock)}min_ms"] / c[f"{_prefix(m.clock)}min_ms"]
    return {
        "case": case["name"],
        "model": case["model"],
        "batch": case["batch"],
        "sparsity": sparsity,
        "ticket_sparsity": report.meta["ticket_sparsity"],
        "clock": m.clock,
        "dense": d,
        "compiled": c,
        "dense_ms": m.ms("dense"),
        "compiled_ms": m.ms("compiled"),
        "speedup": speedup,
        "promised_speedup": promised,
        "realised_savings": speedup / promised if promised else None,
        "speedup_best": best,
        "realised_savings_best": best / promised if promised else None,
        "reps": d["reps"],
        "max_rel_error": e["max_rel_error"],
        "compile_end_to_end": {k: e.get(k) for k in ("dense_ms", "compiled_ms", "speedup",
                                                     "realised_savings", "layout")},
        "routes": report.routes,
        "layers": [
            {"name": r.name, "type": r.type, "shape": r.shape, "sparsity": r.sparsity,
             "route": r.route, "impl": r.impl, "latency_ms": r.latency_ms,
             "speedup": r.speedup, "promised_speedup": r.promised_speedup}
            for r in report.layers
        ],
        "memory": report.memory,
        "load_avg_1min": m.loadavg_after,
        "compile_s": compile_s,
    }


def _prefix(clock: str) -> str:
    return "cpu_" if clock == "cpu" else ""


def markdown(report: dict[str, Any]) -> str:
    rows = []
    for r in report["results"]:
        rows.append([
            r["case"], r["batch"], f"{100 * r['sparsity']:.0f}%", r["dense_ms"], r["compiled_ms"],
            r["speedup"], r["promised_speedup"], r["realised_savings"],
            r["realised_savings_best"],
            ", ".join(f"{k}:{v}" for k, v in r["routes"].items()),
        ])
    t = report["target"]
    met = [r for r in report["results"] if abs(r["sparsity"] - t["sparsity"]) < 1e-9]
    return "\n".join([
        "# Realised savings of compiled tickets",
        "",
        ("Realised savings = measured end-to-end speed-up of the compiled ticket over the "
         "masked dense model / the speed-up its MACs promise. Target: >= "
         f"{t['realised_savings']} at {100 * t['sparsity']:.0f}% sparsity."),
        "",
        (f"Device: {report['device']}; torch threads: {report['threads']}; per-layer sparsity "
         f"scope: {report['scope']}; backend: {report['backend']}; 1-min load average at the "
         f"start: {report['machine'].get('loadavg_start')}. "
         + common.clock_sentence(report["clock"], report["threads"])),
        "",
        markdown_table(
            ["case", "batch", "sparsity", "dense ms", "compiled ms", "speed-up", "promised",
             "realised", "realised (best)", "routes"], rows),
        "",
        ("Latencies are medians of interleaved samples; *realised (best)* uses the fastest "
         "sample of each model instead (what each does with the cores to itself; on a busy "
         "machine the median also measures the neighbours)."),
        "",
        "At the target sparsity: " + "; ".join(
            f"{r['case']} b{r['batch']}: {format_number(r['realised_savings'])} (best "
            f"{format_number(r['realised_savings_best'])}; "
            f"{'met' if (r['realised_savings'] or 0) >= t['realised_savings'] else 'not met'})"
            for r in met),
        "",
        *common.machine_section(report["machine"]),
        *common.notes_section(report.get("notes") or []),
    ])


def plot(report: dict[str, Any]):
    """Realised savings per sparsity and measured vs promised speed-up; the figure."""
    fig, (a1, a2) = figure(2, width=11, height=4)
    keys = list(dict.fromkeys((r["case"], r["batch"]) for r in report["results"]))
    for k in keys:
        rs = sorted((r for r in report["results"] if (r["case"], r["batch"]) == k),
                    key=lambda r: r["sparsity"])
        sp = [100 * r["sparsity"] for r in rs]
        label = f"{k[0]} b{k[1]}"
        line = a1.plot(sp, [r["realised_savings"] for r in rs], "o-", label=label)[0]
        a1.plot(sp, [r["realised_savings_best"] for r in rs], "x:", color=line.get_color(),
                label=f"{label} (best)")
        a2.plot([r["promised_speedup"] for r in rs], [r["speedup"] for r in rs], "o-",
                label=label)
    a1.axhline(report["target"]["realised_savings"], color="k", ls=":", lw=1, label="target")
    a1.axhline(1.0, color="grey", lw=0.8)
    style_axes(a1, xlabel="sparsity (%)", ylabel="realised savings (measured / promised)",
               title="realised savings, end to end")
    allp = [r["promised_speedup"] for r in report["results"] if r["promised_speedup"]] or [1]
    hi = max(allp) * 1.2
    a2.plot([1, hi], [1, hi], "k--", lw=1, label="realised = promised")
    a2.plot([1, hi], [0.5, hi / 2], "k:", lw=1, label="realised = promised / 2")
    a2.axhline(1.0, color="grey", lw=0.8)
    a2.set_xscale("log")
    a2.set_yscale("log")
    style_axes(a2, xlabel="promised speed-up (MACs)",
               ylabel="measured speed-up over masked dense",
               title=f"{report['device']}, {report['threads']} thread(s), {report['clock']} time")
    return fig


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("realised", "Realised savings (measured speed-up / MAC-promised "
                          "speed-up) of compiled tickets, end to end, for an MLP and a small "
                          "conv net; JSON, Markdown and PNG.")
    p.add_argument("--quick", action="store_true", help="small models, short budgets (smoke)")
    p.add_argument("--sparsities", nargs="+", type=float, default=list(DEFAULT_SPARSITIES),
                   help="ticket sparsities")
    p.add_argument("--scope", choices=["layer", "global"], default="layer",
                   help="magnitude pruning scope: 'layer' prunes every layer to the sparsity")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default="auto", help="sparselth backend for the csr route")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default, all cores)")
    p.add_argument("--budget", type=float, default=None,
                   help="timing seconds per layer (default 0.3, quick 0.02)")
    p.add_argument("--e2e-budget", type=float, default=None,
                   help="timing seconds end to end per case (default 2, quick 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default=None,
                   help="file name tag (default: host name, + '-t<threads>', + '-quick')")
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``realised-<tag>``: ``--tag``, default the host name + ``-t<threads>`` + ``-quick``."""
    return "realised-" + common.safe_name(
        args.tag or (socket.gethostname() + (f"-t{args.threads}" if args.threads else "")
                     + ("-quick" if args.quick else "")))


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    return dict(
        quick=args.quick, sparsities=list(args.sparsities), scope=args.scope,
        device=args.device, backend=args.backend, threads=args.threads, seed=args.seed,
        budget_s=args.budget if args.budget is not None else (0.02 if args.quick else 0.3),
        e2e_budget_s=args.e2e_budget if args.e2e_budget is not None else (
            0.05 if args.quick else 2.0),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.realised: --device cuda but torch sees no GPU")
    proto = run_protocol(args)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    info = common.machine()
    from tqdm.auto import tqdm

    todo = [(c, s) for c in cases(args.quick) for s in args.sparsities]
    results = []
    elapsed = stopwatch()
    for c, s in tqdm(todo, desc="realised", unit="case", disable=args.no_progress):
        results.append(run_case(c, s, scope=args.scope, device=device,
                                budget_s=proto["budget_s"], e2e_budget_s=proto["e2e_budget_s"],
                                backend=args.backend, seed=args.seed))
    notes = common.finish_machine(info)
    report = {
        "benchmark": "realised",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "clock": headline_clock(),
        "scope": args.scope,
        "backend": args.backend,
        "budget_s": proto["budget_s"],
        "e2e_budget_s": proto["e2e_budget_s"],
        "target": TARGET,
        "load_avg_start": info.get("loadavg_start"),
        "machine": info,
        "results": results,
        "notes": notes,
        "wall_s": elapsed(),
    }
    md = markdown(report)
    common.write_result(dest, report, md, None if args.no_plot else plot(report))
    print(md)
    return report


if __name__ == "__main__":
    main()
