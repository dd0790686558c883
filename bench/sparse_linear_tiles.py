"""Sparse linear kernels per kept MAC against dense BLAS: layers and compiled MLPs.

Run from the repository root::

    python -m bench.sparse_linear_tiles                     # full run (~15 min, idle 2 cores)
    python -m bench.sparse_linear_tiles --quick             # smoke run
    python -m bench.sparse_linear_tiles --threads 1 --batches 1 64 --sparsities 0.9

Layers (float32, inference under ``torch.no_grad``): :class:`sparselth.nn.SparseLinear` (the
``cpp`` kernel: register tiles over column panels from batch 2 on, the streaming SpMV with
int16 columns at batch 1) against ``F.linear`` with the masked dense weight (MKL/oneDNN), per
(layer, sparsity, batch, threads). Rates: dense GMAC/s over all its MACs, sparse GMAC/s over the
kept MACs; *fraction* = sparse rate / dense rate (1.0: a kept MAC costs what a dense one does);
*speed-up* = t(dense) / t(sparse). At batch 1 also the bytes each must move (values, columns and
row pointers or the dense weight, plus x and out) and the achieved GB/s as a fraction of the
measured copy bandwidth (the roofline of a bandwidth-bound product).

MLPs 784-1024-1024-10 and 1024-2048-2048-10 pruned to 90 % by magnitude (per layer and global),
batch 64 and 256, compiled with ``sparselth.compile`` (which picks each layer's route by
measurement): speed-up over the masked dense model, the MAC promise and *realised* = speed-up /
promise.

Protocol (:mod:`sparselth.utils.timing`): results checked against a float64 oracle before
timing; warm-up; interleaved contenders; medians on the headline clock (CPU time with one
thread, wall time with two); each comparison ``--repeat`` times, the best session kept. Writes
``sparse-linear-tiles[-<tag>].{json,md}`` under ``bench/results/local/`` (no published
protocol), or in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, stopwatch

from . import common

LAYERS = ["1024x1024", "1024x2048", "784x1024"]      # in x out features
SPARSITIES = [0.5, 0.7, 0.9, 0.95]
BATCHES = [1, 16, 64, 256]
THREADS = [1, 2]
MLPS = ["784-1024-1024-10", "1024-2048-2048-10"]
MLP_BATCHES = [64, 256]
MLP_SCOPES = ["layer", "global"]
QUICK = dict(layers=["256x256"], sparsities=[0.9], batches=[1, 64], threads=[1],
             mlps=["64-128-128-10"], mlp_batches=[32], mlp_scopes=["layer"])
TARGETS_TEXT = [
    "batch 1, 1024x1024 at 90 %: >= 3x dense",
    "batch >= 16: faster than dense from 50 % sparsity",
    "MLPs at 90 %, batch 64 and 256: realised >= 0.6",
]

PUBLISHED: Dict[str, str] = {}     # nothing committed in bench/results/


def _time(fns: Dict[str, Callable], cfg: dict) -> Dict[str, Any]:
    """``cfg["repeat"]`` interleaved sessions; per contender every session's medians (wall and
    CPU ms) and the best session's median on the headline clock (``ms``)."""
    runs: Dict[str, Dict[str, List[float]]] = {k: {"ms": [], "cpu_ms": []} for k in fns}
    for _ in range(cfg["repeat"]):
        m = common.time_contenders(fns, cfg, clock=cfg["clock"])
        for k, t in m.timings.items():
            runs[k]["ms"].append(t.median * 1e3)
            runs[k]["cpu_ms"].append(t.cpu_median * 1e3)
    return dict(runs=runs, ms={k: min(v[common.ms_key(cfg["clock"])]) for k, v in runs.items()})


def bench_layer(shape: str, sparsity: float, batch: int, cfg: dict, seed: int,
                notes: List[str]) -> Optional[dict]:
    from sparselth.nn import SparseLinear

    in_f, out_f = (int(v) for v in shape.split("x"))
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f)
    mask = torch.rand(out_f, in_f, generator=torch.Generator().manual_seed(seed)) >= sparsity
    layer = SparseLinear.from_dense(lin, mask, backend="cpp").eval()
    W, b = (lin.weight * mask).detach(), lin.bias.detach()
    x = torch.randn(batch, in_f, generator=torch.Generator().manual_seed(seed + 1))
    fns = {"dense": lambda: F.linear(x, W, b), "sparselth": lambda: layer(x)}
    where = f"{shape} s={sparsity:g} B={batch}"
    with torch.no_grad():
        ref = torch.addmm(b.double(), x.double(), W.double().t())
        for name in list(fns):
            bad = common.wrong_result(name, fns[name](), ref)
            if bad:
                notes.append(f"{where}: {bad}")
                return None
        timed = _time(fns, cfg)
    nnz = layer.nnz
    ms = timed["ms"]
    dense_rate = common.gmacs(in_f * out_f * batch, ms["dense"] / 1e3)
    sparse_rate = common.gmacs(nnz * batch, ms["sparselth"] / 1e3)
    r = dict(layer=shape, sparsity=sparsity, batch=batch, threads=cfg["threads"], nnz=nnz,
             dense_ms=ms["dense"], sparse_ms=ms["sparselth"], dense_gmacs=dense_rate,
             sparse_gmacs=sparse_rate, fraction=sparse_rate / dense_rate,
             speedup=ms["dense"] / ms["sparselth"], promise=in_f * out_f / max(nnz, 1),
             runs=timed["runs"])
    if batch == 1:
        col_bytes = 2 if in_f <= 32767 else 4
        io = 4 * (in_f + 2 * out_f)                                   # x, bias, out
        r["sparse_bytes"] = nnz * (4 + col_bytes) + 4 * (out_f + 1) + io
        r["dense_bytes"] = 4 * in_f * out_f + io
        r["sparse_gbs"] = common.gbs(r["sparse_bytes"], ms["sparselth"] / 1e3)
        r["dense_gbs"] = common.gbs(r["dense_bytes"], ms["dense"] / 1e3)
        r["bytes_promise"] = r["dense_bytes"] / r["sparse_bytes"]
    return r


def bench_mlp(sizes: str, batch: int, scope: str, cfg: dict, seed: int) -> dict:
    import sparselth
    from sparselth.models import build_model

    dims = [int(v) for v in sizes.split("-")]
    torch.manual_seed(seed)
    model = build_model("mlp", sizes=dims)
    masks = sparselth.prune.magnitude(model, 0.9, scope=scope)
    ticket = sparselth.Ticket.from_model(model, masks)
    x = torch.randn(batch, dims[0], generator=torch.Generator().manual_seed(seed + 1))
    compiled, report = sparselth.compile(model, ticket, example_inputs=x,
                                         budget_s=cfg["compile_budget_s"], progress=False)
    dense = ticket.apply_to(copy.deepcopy(model))
    sparselth.prune.remove(dense)
    dense.eval()
    with torch.no_grad():
        timed = _time({"dense": lambda: dense(x), "compiled": lambda: compiled(x)}, cfg)
    ms = timed["ms"]
    promise = report.end_to_end["promised_speedup"]
    speedup = ms["dense"] / ms["compiled"]
    return dict(mlp=sizes, batch=batch, scope=scope, threads=cfg["threads"],
                dense_ms=ms["dense"], compiled_ms=ms["compiled"], speedup=speedup,
                promise=promise, realised=speedup / promise if promise else None,
                routes=report.routes, runs=timed["runs"],
                layers=[dict(name=r.name, sparsity=r.sparsity, route=r.route, speedup=r.speedup)
                        for r in report.layers])


def render_markdown(report: dict) -> str:
    bw = report["copy_bandwidth_gbs"]
    lines = ["# Sparse linear kernels per kept MAC against dense BLAS", "",
             f"Device: cpu ({report['machine'].get('cpu')}); float32; copy bandwidth "
             f"{format_number(bw)} GB/s; threads {report['protocol']['threads']}.", ""]
    for t in report["protocol"]["threads"]:
        rows = [[r["layer"], f"{100 * r['sparsity']:.0f}%", r["batch"], r["dense_ms"],
                 r["sparse_ms"], r["dense_gmacs"], r["sparse_gmacs"], r["fraction"],
                 r["speedup"], r["promise"],
                 (f"{format_number(r['sparse_gbs'])} ({format_number(r['sparse_gbs'] / bw)})"
                  if "sparse_gbs" in r else "")]
                for r in report["layers"] if r["threads"] == t]
        lines += [f"## Layers, {t} thread(s)", "", common.clock_sentence(headline_clock(t), t),
                  "", markdown_table(
                      ["layer (in x out)", "sparsity", "batch", "dense ms", "sparse ms",
                       "dense GMAC/s", "sparse GMAC/s (kept)", "fraction", "speed-up",
                       "MAC promise", "batch 1: GB/s (of copy bw)"], rows), ""]
        rows = [[m["mlp"], m["scope"], m["batch"], m["dense_ms"], m["compiled_ms"], m["speedup"],
                 m["promise"], m["realised"], ", ".join(f"{k}:{v}" for k, v in m["routes"].items())]
                for m in report["mlps"] if m["threads"] == t]
        if rows:
            lines += [f"## Compiled MLPs at 90 %, {t} thread(s)", "", markdown_table(
                ["MLP", "pruning", "batch", "dense ms", "compiled ms", "speed-up", "promise",
                 "realised", "routes"], rows), ""]
    lines += ["Targets: " + "; ".join(TARGETS_TEXT) + ".", ""]
    lines += common.machine_section(report["machine"]) + common.notes_section(report["notes"])
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("sparse_linear_tiles", __doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small subset with short budgets")
    p.add_argument("--tag", default="", help="suffix of the output names")
    p.add_argument("--layers", nargs="*", help=f"in x out features (default {LAYERS})")
    p.add_argument("--sparsities", type=float, nargs="*", help=f"default {SPARSITIES}")
    p.add_argument("--batches", type=int, nargs="*", help=f"default {BATCHES}")
    p.add_argument("--threads", type=int, nargs="*", help=f"torch threads (default {THREADS})")
    p.add_argument("--mlps", nargs="*", help=f"MLP sizes (default {MLPS}; none: skip)")
    p.add_argument("--mlp-batches", type=int, nargs="*", help=f"default {MLP_BATCHES}")
    p.add_argument("--mlp-scopes", nargs="*", choices=["layer", "global"],
                   help=f"magnitude pruning scopes (default {MLP_SCOPES})")
    p.add_argument("--repeat", type=int, default=2, help="independent timing sessions")
    p.add_argument("--compile-budget", type=float, default=0.3,
                   help="sparselth.compile's timing seconds per layer")
    common.add_timing_args(p, budget=(1.0, 0.1), max_reps=30)
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p, plot=False)
    return p


def _pick(args: argparse.Namespace, name: str, default: list) -> list:
    given = getattr(args, name)
    if given is not None:
        return list(given)
    return list(QUICK[name] if args.quick else default)


def output_name(args: argparse.Namespace) -> str:
    """``sparse-linear-tiles[-<tag>]`` (``-quick`` added with --quick)."""
    tag = (args.tag + ("-quick" if args.quick else "")).strip("-")
    return "sparse-linear-tiles" + (f"-{common.safe_name(tag)}" if tag else "")


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    return dict(
        common.timing_config(args, budget=(1.0, 0.1)), repeat=args.repeat,
        layers=_pick(args, "layers", LAYERS), sparsities=_pick(args, "sparsities", SPARSITIES),
        batches=_pick(args, "batches", BATCHES), threads=_pick(args, "threads", THREADS),
        mlps=_pick(args, "mlps", MLPS), mlp_batches=_pick(args, "mlp_batches", MLP_BATCHES),
        mlp_scopes=_pick(args, "mlp_scopes", MLP_SCOPES),
        compile_budget_s=args.compile_budget, seed=args.seed)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    import sparselth
    if "cpp" not in sparselth.backends():
        raise SystemExit("bench.sparse_linear_tiles: the C++ extension is not built")
    elapsed = stopwatch()
    proto = run_protocol(args)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    info = common.machine()
    notes: List[str] = []
    layers: List[dict] = []
    mlps: List[dict] = []
    jobs = [("layer", (t, s, sp, b)) for t in proto["threads"] for s in proto["layers"]
            for sp in proto["sparsities"] for b in proto["batches"]]
    jobs += [("mlp", (t, m, b, sc)) for t in proto["threads"] for m in proto["mlps"]
             for b in proto["mlp_batches"] for sc in proto["mlp_scopes"]]
    from tqdm.auto import tqdm

    threads_before = torch.get_num_threads()
    try:
        for i, (kind, job) in enumerate(tqdm(jobs, desc="sparse linear", unit="case",
                                             disable=args.no_progress)):
            torch.set_num_threads(job[0])
            cfg = dict(common.timing_config(args, budget=(1.0, 0.1)), repeat=args.repeat,
                       clock=headline_clock(job[0]), threads=job[0],
                       compile_budget_s=args.compile_budget)
            if kind == "layer":
                r = bench_layer(*job[1:], cfg, args.seed + i, notes)
                if r is not None:
                    layers.append(r)
            else:
                mlps.append(bench_mlp(*job[1:], cfg, args.seed + i))
    finally:
        torch.set_num_threads(threads_before)
    notes = common.finish_machine(info) + notes
    report = dict(suite="sparse_linear_tiles", format_version=1, machine=info,
                  copy_bandwidth_gbs=info["copy_bandwidth_gbs"], device="cpu",
                  dtype="float32", protocol=proto, notes=notes, targets_text=TARGETS_TEXT,
                  layers=layers, mlps=mlps, elapsed_s=elapsed())
    common.write_result(dest, report, render_markdown(report))
    print(f"bench.sparse_linear_tiles: done in {report['elapsed_s']:.0f} s", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
