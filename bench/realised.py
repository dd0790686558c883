"""Realised savings of compiled tickets, end to end.

``python -m bench.realised`` prunes an MLP (784-1024-1024-10, batch 64 and 256) and a small
conv net (``SmallConvNet`` on 28x28 images, batch 64) to 50/80/90/95% sparsity (magnitude,
the same sparsity in every layer by default, so the MACs promise 1 / (1 - s)), compiles each
ticket with ``sparselth.compile`` and reports, per case:

- end-to-end latency of the masked dense model and of the compiled model (median of
  interleaved repetitions after warm-up, inference under ``torch.no_grad``);
- measured speed-up, the speed-up the MACs promise (MACs dense / MACs ticket), and the
  headline *realised savings* = measured / promised (1.0: every saved MAC saved time);
- the route chosen per layer and the per-layer speed-ups.

Outputs ``bench/results/realised-<tag>.{json,md,png}`` (atomic writes). Correctness is
checked before timing: ``compile`` verifies the compiled output against the masked dense
model and raises otherwise. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import common

TARGET = {"sparsity": 0.9, "realised_savings": 0.5}
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95)


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
    from sparselth.compile import compile as sl_compile
    from sparselth.models import build_model

    torch.manual_seed(seed)
    model = build_model(case["model"], **case["kwargs"])
    masks = sparselth.prune.magnitude(model, sparsity, scope=scope)
    ticket = sparselth.Ticket.from_model(model, masks)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case["batch"], *case["input"], generator=g)
    t0 = time.perf_counter()
    _, report = sl_compile(model, ticket, device=device, example_inputs=x, backend=backend,
                           budget_s=budget_s, e2e_budget_s=e2e_budget_s)
    e = report.end_to_end
    return {
        "case": case["name"],
        "model": case["model"],
        "batch": case["batch"],
        "sparsity": sparsity,
        "ticket_sparsity": report.meta["ticket_sparsity"],
        "dense_ms": e["dense_ms"],
        "compiled_ms": e["compiled_ms"],
        "dense_iqr_ms": e["dense_iqr_ms"],
        "compiled_iqr_ms": e["compiled_iqr_ms"],
        "speedup": e["speedup"],
        "promised_speedup": e["promised_speedup"],
        "realised_savings": e["realised_savings"],
        "dense_min_ms": e["dense_min_ms"],
        "compiled_min_ms": e["compiled_min_ms"],
        "speedup_best": e["speedup_best"],
        "realised_savings_best": e["realised_savings_best"],
        "reps": e["reps"],
        "max_rel_error": e["max_rel_error"],
        "routes": report.routes,
        "layers": [
            {"name": r.name, "type": r.type, "shape": r.shape, "sparsity": r.sparsity,
             "route": r.route, "impl": r.impl, "latency_ms": r.latency_ms,
             "speedup": r.speedup, "promised_speedup": r.promised_speedup}
            for r in report.layers
        ],
        "memory": report.memory,
        "load_avg_1min": report.meta.get("load_avg_1min"),
        "compile_s": time.perf_counter() - t0,
    }


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
    lines = [
        "# Realised savings of compiled tickets",
        "",
        ("Realised savings = measured end-to-end speed-up of the compiled ticket over the "
         "masked dense model / the speed-up its MACs promise. Target: >= "
         f"{t['realised_savings']} at {100 * t['sparsity']:.0f}% sparsity."),
        "",
        (f"Device: {report['device']}; torch threads: {report['threads']}; per-layer sparsity "
         f"scope: {report['scope']}; backend: {report['backend']}; 1-min load average at the "
         f"start: {report['load_avg_start']}."),
        "",
        common.markdown_table(
            ["case", "batch", "sparsity", "dense ms", "compiled ms", "speed-up", "promised",
             "realised", "realised (best)", "routes"], rows),
        "",
        ("Latencies are medians of interleaved samples; *realised (best)* uses the fastest "
         "sample of each model instead (what each does with the cores to itself; on a busy "
         "machine the median also measures the neighbours)."),
        "",
        "At the target sparsity: " + "; ".join(
            f"{r['case']} b{r['batch']}: {common.fmt_num(r['realised_savings'])} (best "
            f"{common.fmt_num(r['realised_savings_best'])}; "
            f"{'met' if (r['realised_savings'] or 0) >= t['realised_savings'] else 'not met'})"
            for r in met),
        "",
        "## Machine",
        "",
        common.machine_markdown(report["machine"]),
    ]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    keys = []
    for r in report["results"]:
        k = (r["case"], r["batch"])
        if k not in keys:
            keys.append(k)
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
    a1.axhline(report["target"]["realised_savings"], color="k", ls=":", lw=1,
               label="target")
    a1.axhline(1.0, color="grey", lw=0.8)
    a1.set_xlabel("sparsity (%)")
    a1.set_ylabel("realised savings (measured / promised)")
    a1.set_title("realised savings, end to end")
    a1.grid(True, alpha=0.3)
    a1.legend(fontsize=8)
    allp = [r["promised_speedup"] for r in report["results"] if r["promised_speedup"]] or [1]
    hi = max(allp) * 1.2
    a2.plot([1, hi], [1, hi], "k--", lw=1, label="realised = promised")
    a2.plot([1, hi], [0.5, hi / 2], "k:", lw=1, label="realised = promised / 2")
    a2.axhline(1.0, color="grey", lw=0.8)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("promised speed-up (MACs)")
    a2.set_ylabel("measured speed-up over masked dense")
    a2.set_title(f"{report['device']}, {report['threads']} thread(s)")
    a2.grid(True, alpha=0.3, which="both")
    a2.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.realised",
        description="Realised savings (measured speed-up / MAC-promised speed-up) of compiled "
        "tickets, end to end, for an MLP and a small conv net; JSON, Markdown and PNG under "
        "--out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
    p.add_argument("--out", type=Path, default=common.REPO_ROOT / "bench" / "results",
                   help="output folder")
    p.add_argument("--tag", default=None,
                   help="file name tag (default: host name, + '-t<threads>', + '-quick')")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.realised: --device cuda but torch sees no GPU")
    budget = args.budget if args.budget is not None else (0.02 if args.quick else 0.3)
    e2e = args.e2e_budget if args.e2e_budget is not None else (0.05 if args.quick else 2.0)
    tag = args.tag or (socket.gethostname() + (f"-t{args.threads}" if args.threads else "")
                       + ("-quick" if args.quick else ""))
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
    load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    from tqdm.auto import tqdm

    todo = [(c, s) for c in cases(args.quick) for s in args.sparsities]
    results = []
    t0 = time.perf_counter()
    for c, s in tqdm(todo, desc="realised", unit="case", disable=args.no_progress):
        results.append(run_case(c, s, scope=args.scope, device=device, budget_s=budget,
                                e2e_budget_s=e2e, backend=args.backend, seed=args.seed))
    notes = []
    if load_start is not None and load_start > (os.cpu_count() or 1):
        notes.append(f"the machine was busy (1-min load average {load_start} on "
                     f"{os.cpu_count()} logical cores): multi-threaded timings suffer most")
    try:
        import sparselth.nn.sparse  # noqa: F401

        notes.append("csr route: sparselth.nn.sparse modules where they apply")
    except ImportError:
        notes.append("csr route: sparselth.compile's fallback modules (sparselth.nn.sparse was "
                     "not importable): spmm on the weight, im2col/col2im for convolutions")
    report = {
        "benchmark": "realised",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "scope": args.scope,
        "backend": args.backend,
        "budget_s": budget,
        "e2e_budget_s": e2e,
        "target": TARGET,
        "load_avg_start": load_start,
        "machine": common.machine_info(),
        "results": results,
        "notes": notes,
        "wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out)
    common.write_json(out / f"realised-{tag}.json", report)
    md = markdown(report)
    common.write_markdown(out / f"realised-{tag}.md", md)
    if not args.no_plot:
        plot(report, out / f"realised-{tag}.png")
    print(md)
    print(f"\nwritten: {out / f'realised-{tag}'}.{{json,md{'' if args.no_plot else ',png'}}}",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
