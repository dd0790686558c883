"""Realised savings: does a ticket run as fast as its MACs promise? Every case, one run.

``python -m bench.realised --threads 1`` measures, in one run, every case of the ticket
table (``bench/realised_cases.py`` builds them):

- MLPs compiled with ``sparselth.compile``: 1024-2048-2048-10 at 90 % (global magnitude,
  batch 64) and 784-1024-1024-10 (batch 64 and 256) and the small conv net at each
  ``--sparsities`` (magnitude, ``--scope``), against the masked dense model;
- ``SparseLinear`` 1024x1024 at 90 %, batch 1, and at 50 %, batch 16 and 64, against
  ``F.linear``;
- a 3x3 ``SparseConv2d`` and a 3x3 stride-2 ``SparseConvTranspose2d``, 256 channels,
  8-32 px, batch 1 and 16, at 60 % and 90 %, against ``F.conv2d`` / ``F.conv_transpose2d``;
- GCN (hidden 512) tickets on Cora at 37 % / 86.6 % and 64 % / 98.8 % of edges / weights
  pruned, on PubMed at 59 % / 82 % (``--pubmed``; slow) and the ``sparselth demo`` ticket
  (contextual SBM, 3000 nodes, 500 features, 59 % / 87 %), compiled, against the unpruned
  model (random masks at those sparsities; UGS tickets with ``--ugs-runs``);
- LightGCN's propagation over an element-masked table (80 % and 95 % pruned) against the
  dense table, and a compressed embedding lookup (300k x 64, 90 %, 4096 ids) against
  ``F.embedding``;
- with ``--gan``, the SNGAN generator (CIFAR-10 size) at batch 1 and 16: unstructured
  tickets (70 %, 90 %) compiled, and channel tickets of the same MACs run as a smaller dense
  generator, against the dense generator (:mod:`bench.realised_gan`).

Per case: the promise by exact MACs and by minimum bytes (:mod:`bench.realised_cases`), the
measured speed-up (interleaved :func:`sparselth.utils.timing.measure`; the headline clock is
CPU time with one thread and wall time with more, both recorded), the realised savings =
measured / MAC promise (bytes where there are no MACs), and each side's fraction of its
roofline: ``max(bytes / time / copy bandwidth, MACs / time / dense-GEMM rate)``, with the
copy bandwidth and a dense ``torch.mm`` rate measured in the same run. The route each case
took and the ops its time went to (one profiled call) are recorded too.

Writes ``realised-<tag>.{json,md,png}`` in ``bench/results/`` for the published protocol
(``PUBLISHED``), else in ``bench/results/local/``, or in ``--out``. Correctness is checked
before timing; timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import socket
from pathlib import Path
from typing import Any

import torch

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import format_number, format_si, markdown_table
from sparselth.utils.timing import headline_clock, measure, stopwatch

from . import common
from .realised_cases import NOT_BUILT, Case, Settings, plan
from .realised_gan import plan_gan, summary as gan_summary

CLOCKS = ("cpu", "wall")
DEFAULT_SPARSITIES = (0.9,)
# the arguments of the results committed in bench/results/ (see bench.common.result_path).
# The two-thread result runs on the wall clock: make it on a quiet machine (no other jobs).
PUBLISHED = {
    "realised-cpu-t1": "--threads 1 --tag cpu-t1 --pubmed",
    "realised-cpu-t2": "--threads 2 --tag cpu-t2 --pubmed",
    "realised-gan-t1": "--threads 1 --tag gan-t1 --gan --only gan",
}
# committed results whose protocol this suite can no longer reproduce: kept for the record
RETIRED = {
    "realised-vm-t1": "made by the earlier version of this suite (arguments --threads 1 --tag "
                      "vm-t1), which swept the 784-1024-1024-10 MLP and the conv net over "
                      "50-95 % sparsity (per-layer magnitude) and nothing else",
}


# --------------------------------------------------------------------------- measuring


def gemm_rate(quick: bool, device: torch.device) -> dict[str, Any]:
    """The dense-GEMM rate of this machine and thread count: ``torch.mm`` of a
    ``(256, 1024) x (1024, 1024)`` float32 product (quick: 64 x 256 x 256), GMAC/s per clock."""
    m, k, n = (64, 256, 256) if quick else (256, 1024, 1024)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device)
    b = torch.randn(k, n, generator=g).to(device)
    out = torch.empty(m, n, device=device)
    meas = measure({"mm": lambda: torch.mm(a, b, out=out)}, budget_s=0.2 if quick else 1.0,
                   device=device)
    rates = {c: common.gmacs(m * k * n, meas.ms("mm", c) / 1e3) for c in CLOCKS}
    return {"shape": [m, k, n], "gmacs": rates[meas.clock], "gmacs_by_clock": rates,
            "clock": meas.clock}


def copy_rate(quick: bool, device: torch.device) -> dict[str, Any]:
    """The copy bandwidth on the clock the cases are timed on: ``dst.copy_(src)`` of a 256 MB
    float32 buffer (quick: 32 MB), bytes read + written per second. With one thread the CPU
    clock, like the cases, ignores time the thread spends descheduled on a busy machine,
    which the wall-clock probe of the machine facts does not."""
    n = int((32 if quick else 256) * 1e6 / 4)
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    meas = measure({"copy": lambda: dst.copy_(src)}, budget_s=0.2 if quick else 1.0,
                   min_reps=5, target_sample_s=0.0, device=device)
    rates = {c: common.gbs(2 * 4 * n, meas.ms("copy", c) / 1e3) for c in CLOCKS}
    return {"mb": n * 4 / 1e6, "gbs": rates[meas.clock], "gbs_by_clock": rates,
            "clock": meas.clock}


def top_ops(fn, k: int = 3) -> list[list[Any]]:
    """``[[op, share of self CPU time], ...]``: the ``k`` ops one call of ``fn`` spends the
    most time in (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [[e.key, round(e.self_cpu_time_total / total, 3)] for e in events[:k]]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def roofline(macs: int | None, nbytes: int, seconds: float, copy_gbs: float,
             gemm_gmacs: float) -> dict[str, Any]:
    """Achieved rates and fractions of the roofline: ``bandwidth`` = bytes / time / copy
    bandwidth, ``compute`` = MACs / time / dense-GEMM rate, ``fraction`` = the larger one
    (the bound that binds: the roofline time over the measured time)."""
    gbs = common.gbs(nbytes, seconds)
    gm = common.gmacs(macs, seconds) if macs else None
    bw = gbs / copy_gbs if copy_gbs else None
    comp = gm / gemm_gmacs if gm is not None and gemm_gmacs else None
    return {"gbs": gbs, "gmacs": gm, "bandwidth": bw, "compute": comp,
            "fraction": max(v for v in (bw, comp) if v is not None)}


def _check_target(target, speedup: float, realised: float | None) -> bool | None:
    if not target:
        return None
    values = {"speedup": speedup, "realised": realised}
    ok = True
    for metric, op, bound in target:
        v = values[metric]
        ok &= v is not None and (v >= bound if op == ">=" else v > bound)
    return ok


def target_text(target) -> str:
    return " and ".join(f"{m} {op} {b:g}" for m, op, b in target) if target else ""


def run_case(case: Case, *, budget_s: float, device: torch.device, copy_gbs: float,
             gemm: dict[str, Any]) -> dict[str, Any]:
    """Time one case (dense and its sparse routes interleaved) and make its result row."""
    fns = {"dense": case.dense, **case.sparse}
    with torch.no_grad():
        m = measure(fns, budget_s=budget_s, warmup=3, max_extra_warmup=20, max_reps=200,
                    device=device)
    best = min(case.sparse, key=lambda n: m.ms(n))
    speedup = m.speedup("dense", best)
    (md, ms_), (bd, bs) = case.macs, case.nbytes
    promise_macs = _ratio(md, ms_) if ms_ is not None else None
    promise_bytes = _ratio(bd, bs)
    basis = "macs" if promise_macs is not None else "bytes"
    promised = promise_macs if basis == "macs" else promise_bytes
    realised = _ratio(speedup, promised)
    timings = {n: t.summary() for n, t in m.timings.items()}
    roof = {side: roofline(macs, nb, m.ms(name) / 1e3, copy_gbs, gemm["gmacs"])
            for side, name, macs, nb in (("dense", "dense", md or None, bd),
                                         ("sparse", best, ms_, bs))}
    try:
        kernels = top_ops(case.sparse[best])
    except Exception as e:  # noqa: BLE001 - the profile is a hint, never a reason to fail
        kernels = [[f"profile failed: {type(e).__name__}", 0.0]]
    return {
        "case": case.name, "group": case.group, "status": "ok", "clock": m.clock,
        "threads": m.threads, "sparse_route": best, "route": case.route, "kernels": kernels,
        "dense": timings["dense"], "sparse": timings[best], "timings": timings,
        "dense_ms": m.ms("dense"), "sparse_ms": m.ms(best),
        "speedup": speedup, **{f"speedup_{c}": m.speedup("dense", best, c) for c in CLOCKS},
        "speedup_best": timings["dense"][_min_key(m.clock)] / timings[best][_min_key(m.clock)],
        "macs": {"dense": md, "sparse": ms_}, "bytes": {"dense": bd, "sparse": bs},
        "promise_macs": promise_macs, "promise_bytes": promise_bytes,
        "promise_basis": basis, "promised_speedup": promised,
        "realised_savings": realised, "realised_savings_bytes": _ratio(speedup, promise_bytes),
        "roofline": roof, "target": case.target, "target_text": target_text(case.target),
        "target_met": _check_target(case.target, speedup, realised),
        "info": case.info, "load_avg_1min": m.loadavg_after,
    }


def _min_key(clock: str) -> str:
    return "cpu_min_ms" if clock == "cpu" else "min_ms"


# --------------------------------------------------------------------------- report


def _x(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3g}x"


def _frac(r: dict[str, Any], side: str) -> str:
    f = r["roofline"][side]
    return "-" if f["fraction"] is None else (
        f"{format_number(f['fraction'])} ({'bw' if f['fraction'] == f['bandwidth'] else 'mac'})")


def _route_cell(r: dict[str, Any]) -> str:
    ops = "; ".join(f"{op} {100 * share:.0f}%" for op, share in r["kernels"][:2])
    fastest = f" ({r['sparse_route']})" if len(r["timings"]) > 2 else ""
    return f"{r['route']}{fastest} [{ops}]"


def markdown(report: dict[str, Any]) -> str:
    other = {"cpu": "wall", "wall": "cpu"}[report["clock"]]
    rows = []
    for i, r in enumerate(report["results"], 1):
        real = format_number(r["realised_savings"])
        if r["promise_basis"] == "bytes":
            real += " (bytes)"
        met = {None: "", True: "met", False: "**not met**"}[r["target_met"]]
        rows.append([i, r["case"], _x(r["promise_macs"]), _x(r["promise_bytes"]),
                     r["dense_ms"], r["sparse_ms"], _x(r["speedup"]),
                     _x(r[f"speedup_{other}"]), real, _frac(r, "dense"), _frac(r, "sparse"),
                     f"{r['target_text']} {met}".strip(), _route_cell(r)])
    g, mach = report["gemm"], report["machine"]
    met = [r for r in report["results"] if r["target_met"] is not None]
    lines = [
        f"# Realised savings of sparse tickets and kernels ({report['threads']} thread(s))", "",
        ("*Promise*: dense / sparse exact MACs, and dense / sparse minimum bytes (inputs read "
         "once, output written once; 4 B per float, indices at the width stored). *Measured*: "
         "median dense time / median sparse time, interleaved. *Realised* = measured / MAC "
         "promise (bytes promise for a gather). *Roofline*: each side's fraction of the bound "
         "that binds, max(bytes / time / copy bandwidth, MACs / time / dense-GEMM rate); "
         "`bw` or `mac` says which. For one layer, realised is also the sparse kernel's rate "
         "per kept MAC relative to dense's."), "",
        (f"CPU: {mach.get('cpu')}; copy bandwidth {format_number(report['copy']['gbs'])} GB/s "
         f"({report['clock']} clock; {mach.get('copy_bandwidth_gbs')} GB/s on the wall clock "
         f"of the machine facts); dense GEMM ({'x'.join(map(str, g['shape']))} `torch.mm`) "
         f"{format_number(g['gmacs'])} GMAC/s; torch threads {report['threads']}; device "
         f"{report['device']}. "
         + common.clock_sentence(report["clock"], report["threads"])
         + f" The *{other}* column is the other clock's speed-up."), "",
        markdown_table(["#", "case", "promise (MACs)", "promise (bytes)", "dense ms",
                        "sparse ms", "measured", other, "realised", "roofline dense",
                        "roofline sparse", "target", "route [top ops]"], rows), "",
        ("Roofline fractions above 1 mean the reference is not the ceiling for that kernel: "
         "oneDNN's dense convolution runs faster than the `torch.mm` reference, and a "
         "working set that stays in cache (a batch-1 layer called again and again) moves "
         "faster than the measured copy bandwidth, which is DRAM's. *top ops*: the share of "
         "self CPU time of one profiled call of the sparse side."), "",
        (f"Targets met: {sum(bool(r['target_met']) for r in met)} of {len(met)}. Run time "
         f"{format_number(report['wall_s'])} s."), "",
    ]
    if report["failed"]:
        lines += ["## Cases that did not run", "",
                  *[f"- {f['case']}: {f['error']}" for f in report["failed"]], ""]
    lines += gan_summary(report["results"])
    lines += stability(report)
    if report["not_built"]:
        lines += ["## Not yet measured", "", *[f"- {n}" for n in report["not_built"]], ""]
    lines += ["## Cases", "", *[f"- {i}. {_case_line(r)}" for i, r in
                                enumerate(report["results"], 1)], ""]
    lines += [*common.machine_section(mach), *common.notes_section(report.get("notes") or [])]
    return "\n".join(lines)


def earlier_run(path: Path | None) -> dict[str, Any] | None:
    """What ``--compare`` keeps of an earlier report: its file, run time and per case the
    speed-up and realised savings."""
    if path is None:
        return None
    rep = json.loads(Path(path).read_text())
    return {"file": str(path), "wall_s": rep.get("wall_s"),
            "results": {r["case"]: {k: r.get(k) for k in ("speedup", "realised_savings",
                                                          "dense_ms", "sparse_ms")}
                        for r in rep.get("results", [])}}


def stability(report: dict[str, Any]) -> list[str]:
    """Markdown: this run's speed-ups beside the earlier run's (``--compare``)."""
    earlier = report.get("earlier")
    if not earlier:
        return []
    rows = []
    for i, r in enumerate(report["results"], 1):
        e = earlier["results"].get(r["case"])
        if e is None or not e.get("speedup"):
            continue
        rows.append([i, r["case"], _x(e["speedup"]), _x(r["speedup"]),
                     format_number(e["realised_savings"]), format_number(r["realised_savings"]),
                     f"{100 * (r['speedup'] / e['speedup'] - 1):+.1f}%"])
    if not rows:
        return []
    return ["## Stability: the earlier run and this one", "",
            (f"The same cases, built and timed again in another process (earlier report: "
             f"`{Path(earlier['file']).name}`)."), "",
            markdown_table(["#", "case", "speed-up (earlier)", "speed-up (this run)",
                            "realised (earlier)", "realised (this run)", "change"], rows), ""]


def _case_line(r: dict[str, Any]) -> str:
    info = r["info"]
    keys = [k for k in ("ticket", "keep", "graph_sparsity", "weight_sparsity", "ticket_sparsity",
                        "features_as", "format", "table_sparsity", "index_bytes")
            if info.get(k) is not None]
    facts = ", ".join(f"{k} {format_number(info[k]) if isinstance(info[k], float) else info[k]}"
                      for k in keys)
    rates = "; ".join(
        f"{side} {_rates(r['roofline'][side])}" for side in ("dense", "sparse"))
    warn = "".join(f" Data: {w}" for w in info.get("load_warnings") or [])
    return (f"{r['case']}: MACs {format_si(r['macs']['dense'])} -> "
            f"{format_si(r['macs']['sparse']) if r['macs']['sparse'] is not None else '-'}, "
            f"bytes {format_si(r['bytes']['dense'])} -> {format_si(r['bytes']['sparse'])}; "
            f"{rates}" + (f"; {facts}" if facts else "") + warn)


def _rates(f: dict[str, Any]) -> str:
    out = f"{format_number(f['gbs'])} GB/s"
    if f["gmacs"] is not None:
        out = f"{format_number(f['gmacs'])} GMAC/s, " + out
    return out


def plot(report: dict[str, Any]):
    """Measured against promised speed-up per case (diagonals realised = 1 and 0.6), and
    realised savings per case; the figure."""
    res = report["results"]
    fig, (a1, a2) = figure(2, width=14, height=max(4.5, 0.28 * len(res) + 1.5))
    groups = list(dict.fromkeys(r["group"] for r in res))
    colors = {g: f"C{i}" for i, g in enumerate(groups)}
    for g in groups:
        sel = [(i, r) for i, r in enumerate(res, 1) if r["group"] == g]
        for basis, marker in (("macs", "o"), ("bytes", "s")):
            pts = [r for _, r in sel if r["promise_basis"] == basis]
            if pts:
                a1.scatter([r["promised_speedup"] for r in pts], [r["speedup"] for r in pts],
                           color=colors[g], marker=marker, zorder=3,
                           label=g + (" (bytes promise)" if basis == "bytes" else ""))
        for i, r in sel:
            a1.annotate(str(i), (r["promised_speedup"], r["speedup"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    vals = [v for r in res for v in (r["promised_speedup"], r["speedup"]) if v and v > 0]
    lo, hi = (min(vals + [1.0]) / 1.3, max(vals + [1.0]) * 1.3) if vals else (0.5, 2)
    a1.plot([lo, hi], [lo, hi], "k--", lw=1, label="realised = 1")
    a1.plot([lo, hi], [0.6 * lo, 0.6 * hi], "k:", lw=1, label="realised = 0.6")
    a1.axhline(1.0, color="grey", lw=0.8)
    a1.set_xscale("log")
    a1.set_yscale("log")
    style_axes(a1, xlabel="promised speed-up (exact MACs; bytes for a gather)",
               ylabel=f"measured speed-up ({report['clock']} time)",
               title=f"{report['machine'].get('cpu')}, {report['threads']} thread(s)")
    y = list(range(len(res)))
    a2.barh(y, [r["realised_savings"] or 0 for r in res],
            color=[colors[r["group"]] for r in res])
    a2.set_yticks(y)
    a2.set_yticklabels([f"{i}. {r['case']}" for i, r in enumerate(res, 1)], fontsize=7)
    a2.invert_yaxis()
    a2.axvline(0.6, color="k", ls=":", lw=1, label="0.6")
    a2.axvline(1.0, color="k", ls="--", lw=1, label="1")
    style_axes(a2, xlabel="realised savings (measured / promised)", title="realised savings")
    return fig


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("realised", "Realised savings (measured speed-up / promised "
                          "speed-up) of every ticket and sparse kernel case, with the promise "
                          "by MACs and bytes and each side's roofline fraction; JSON, "
                          "Markdown and PNG.")
    p.add_argument("--quick", action="store_true", help="tiny sizes, short budgets (smoke)")
    p.add_argument("--sparsities", nargs="+", type=float, default=list(DEFAULT_SPARSITIES),
                   help="sparsities of the 784-1024-1024-10 MLP and conv-net tickets")
    p.add_argument("--scope", choices=["layer", "global"], default="layer",
                   help="magnitude pruning scope of those tickets ('layer': every layer at "
                   "the sparsity); the 1024-2048-2048-10 MLP is always pruned globally")
    p.add_argument("--pubmed", action="store_true", help="also the PubMed GCN ticket (slow)")
    p.add_argument("--gan", action="store_true",
                   help="also the GAN generator cases (bench.realised_gan; select them alone "
                   "with --only gan)")
    p.add_argument("--compare", type=Path, default=None,
                   help="the JSON report of an earlier run of the same cases: its speed-ups "
                   "are shown beside this run's (stability)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only the cases whose group or name contains one of these words")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with planetoid/ (default: SPARSELTH_DATA or the datasets "
                   "folder beside the checkout)")
    p.add_argument("--ugs-runs", type=Path, default=None,
                   help="folder holding ugs-gcn-<dataset>/ run folders (bench.ugs): take the "
                   "Cora and PubMed tickets from their rounds instead of random masks")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default="auto", help="sparselth kernel backend")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default, all cores)")
    p.add_argument("--budget", type=float, default=None,
                   help="sparselth.compile's timing seconds per layer (default 0.3, quick 0.02)")
    p.add_argument("--e2e-budget", type=float, default=None,
                   help="timing seconds per contender and case (default 2, quick 0.05)")
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


def settings(args: argparse.Namespace) -> Settings:
    q = args.quick
    return Settings(
        quick=q, device=torch.device(args.device), backend=args.backend, scope=args.scope,
        budget_s=args.budget if args.budget is not None else (0.02 if q else 0.3),
        e2e_budget_s=args.e2e_budget if args.e2e_budget is not None else (0.05 if q else 2.0),
        seed=args.seed, data=args.data, ugs_runs=args.ugs_runs)


def selected(args: argparse.Namespace):
    """The cases of this run, in order."""
    cfg = settings(args)
    cases = plan(cfg, list(args.sparsities), args.pubmed)
    if args.gan:
        cases += plan_gan(cfg)
    if args.only:
        words = [w.lower() for w in args.only]
        cases = [c for c in cases if any(w in c.group.lower() or w in c.name.lower()
                                         for w in words)]
    return cases


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved, and the
    names of the cases they select."""
    s = settings(args)
    return dict(
        quick=args.quick, sparsities=list(args.sparsities), scope=args.scope,
        device=args.device, backend=args.backend, threads=args.threads, seed=args.seed,
        budget_s=s.budget_s, e2e_budget_s=s.e2e_budget_s,
        tickets="ugs" if args.ugs_runs else "random",
        cases=[c.name for c in selected(args)],
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.check_fractions(parser, "--sparsities", args.sparsities)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.realised: --device cuda but torch sees no GPU")
    cfg = settings(args)
    earlier = earlier_run(args.compare)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    elapsed = stopwatch()
    info = common.machine(copy_mb=32 if args.quick else None,
                          device=device if device.type == "cuda" else None)
    gemm = gemm_rate(args.quick, device)
    copy = copy_rate(args.quick, device)
    from tqdm.auto import tqdm

    results, failed = [], []
    bar = tqdm(selected(args), desc="realised", unit="case", disable=args.no_progress)
    for p in bar:
        bar.set_postfix_str(p.name)
        row_time = stopwatch()
        try:
            case = p.build(cfg)
            case.group = p.group
            built_s = row_time()
            row = run_case(case, budget_s=cfg.e2e_budget_s, device=device,
                           copy_gbs=copy["gbs"], gemm=gemm)
            row.update(build_s=built_s, row_s=row_time())
            results.append(row)
        except (RuntimeError, ValueError, TypeError, FileNotFoundError, NotImplementedError,
                torch.cuda.OutOfMemoryError) as e:
            failed.append({"case": p.name, "group": p.group,
                           "error": f"{type(e).__name__}: {e}"})
        case = None
        gc.collect()
    notes = common.finish_machine(info)
    report = {
        "benchmark": "realised", "device": str(device), "threads": torch.get_num_threads(),
        "clock": headline_clock(), "scope": args.scope, "backend": args.backend,
        "budget_s": cfg.budget_s, "e2e_budget_s": cfg.e2e_budget_s,
        "copy_bandwidth_gbs": info["copy_bandwidth_gbs"], "copy": copy, "gemm": gemm,
        "machine": info,
        "results": results, "failed": failed, "not_built": NOT_BUILT, "notes": notes,
        "earlier": earlier,
        "wall_s": elapsed(),
    }
    md = markdown(report)
    common.write_result(dest, report, md, None if args.no_plot or not results else plot(report))
    print(md)
    return report


if __name__ == "__main__":
    main()
