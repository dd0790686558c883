"""Sparse-weight benchmark: pruned linear and conv layers, dense vs torch.sparse vs sparselth.

Run from the repository root::

    python -m bench.sparse_weights              # full run (~15-30 min on an idle 2-core CPU)
    python -m bench.sparse_weights --quick      # smoke run, a minute or two
    python -m bench.sparse_weights --no-conv --sizes 1024 --batches 64 --sparsities 0.9

Linear (``y = x @ W^T``, W ``n x n`` float32 with a random mask at each sparsity, x ``B x n``):

- ``dense``: ``F.linear`` with the masked dense weight (MKL/oneDNN),
- ``torch csr``: ``torch.sparse.mm(W_csr, x^T)^T`` (torch's CSR weight path),
- ``sparselth``: :class:`sparselth.nn.SparseLinear` on the ``cpp`` backend,
- ``sparselth spmm``: ``sparselth.ops.spmm(W, x^T)^T`` (the generic SpMM, for reference).

Conv (3x3 with 256 channels as in SNGAN at 8x8, 16x16, 32x32 and 1x1 convs; batch 16 and 64):

- ``dense``: ``F.conv2d`` with the masked dense weight (oneDNN),
- ``sparselth direct``: :class:`sparselth.nn.SparseConv2d`, direct route (no im2col),
- ``sparselth im2col``: the same layer on the im2col route (skipped where its buffer exceeds
  ``--max-im2col-mb``).

Protocol (:mod:`sparselth.utils.timing`): every contender is checked against a float64 oracle
before timing; warm-up; interleaved repetitions; wall and CPU time; medians on the headline
clock (CPU time with one thread, wall time with more). Other processes share the machine, so
each comparison runs ``--repeat`` times (default 2) as independent interleaved sessions; the
table shows each contender's best (lowest) median over the sessions and the JSON keeps them
all. Speed-ups are ``t(dense) / t(contender)``; *realised* = speed-up / (1 / density), the
fraction of the MAC savings turned into time. Writes ``sparse-weights[-<tag>].json`` and
``.md`` in ``bench/results/`` for the published protocol (``PUBLISHED``), else in
``bench/results/local/``, or in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, stopwatch

from . import common

LINEAR_SIZES = [1024, 4096]
BATCHES = [1, 64, 256]
LINEAR_SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98]
CONV_SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.98]
# (name, C_in, C_out, kernel, H=W, batch)
CONV_CASES = [
    ("3x3 256ch 8x8 b16", 256, 256, 3, 8, 16),
    ("3x3 256ch 16x16 b16", 256, 256, 3, 16, 16),
    ("3x3 256ch 32x32 b16", 256, 256, 3, 32, 16),
    ("3x3 256ch 8x8 b64", 256, 256, 3, 8, 64),
    ("3x3 256ch 16x16 b64", 256, 256, 3, 16, 64),
    ("3x3 256ch 32x32 b64", 256, 256, 3, 32, 64),
    ("1x1 256ch 16x16 b64", 256, 256, 1, 16, 64),
    ("1x1 256ch 32x32 b16", 256, 256, 1, 32, 16),
]
QUICK_CONV = ["3x3 256ch 8x8 b16", "3x3 256ch 32x32 b16", "1x1 256ch 16x16 b64"]
SMOKE_CONV = [("3x3 8ch 6x6 b2", 8, 8, 3, 6, 2)]      # for tests: not in the default run

# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {
    "sparse-weights": "",
    "sparse-weights-1thread": "--threads 1 --tag 1thread",
}

TARGETS_TEXT = [
    "linear: faster than dense from 60% sparsity (batch 1, 64, 256; in/out 1024 and 4096)",
    "linear: >= 5x faster than dense at 90%",
    "linear: >= 1.5x faster than torch's CSR path at every sparsity >= 80%",
    "conv: faster than dense (oneDNN) from 80% sparsity",
    "conv: >= 2.5x faster than dense at 95%",
]


def _mask(shape, sparsity: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) >= sparsity


def _time(fns: Dict[str, Callable], cfg: dict, work: Dict[str, float]) -> dict:
    """``cfg["repeat"]`` interleaved sessions of ``fns``. Per contender: every session's median
    ms on both clocks (``runs_ms`` wall, ``runs_cpu_ms``), the best session's median on the
    headline clock (``ms``) and GMAC/s from it for ``work[name]`` multiply-adds."""
    runs = {k: {"ms": [], "cpu_ms": []} for k in fns}
    for _ in range(cfg["repeat"]):
        m = common.time_contenders(fns, cfg, clock=cfg["clock"])
        for k, t in m.timings.items():
            runs[k]["ms"].append(t.median * 1e3)
            runs[k]["cpu_ms"].append(t.cpu_median * 1e3)
    best = {k: min(v[common.ms_key(cfg["clock"])]) for k, v in runs.items()}
    return dict(runs_ms={k: v["ms"] for k, v in runs.items()},
                runs_cpu_ms={k: v["cpu_ms"] for k, v in runs.items()},
                ms=best, gmacs={k: common.gmacs(work[k], t / 1e3) for k, t in best.items()})


def _drop_wrong(fns: Dict[str, Callable], ref: torch.Tensor, where: str,
                notes: List[str]) -> None:
    """Remove (with a note) every contender whose result is not within tolerance of ``ref``."""
    for name in list(fns):
        bad = common.wrong_result(name, fns[name](), ref)
        if bad:
            notes.append(f"{where}: {bad}")
            del fns[name]


def bench_linear(n: int, B: int, sparsity: float, cfg: dict, seed: int,
                 notes: List[str]) -> dict:
    from sparselth.nn import SparseLinear
    from sparselth.ops import spmm

    lin = nn.Linear(n, n, bias=False)
    mask = _mask((n, n), sparsity, seed)
    with torch.no_grad():
        lin.weight.mul_(mask)
    W = lin.weight.detach().contiguous()
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(seed + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # torch's "sparse CSR support is in beta"
        W_csr = W.to_sparse_csr()
    layer = SparseLinear.from_dense(lin, mask, backend="cpp").requires_grad_(False)
    A = layer.weight_csr()
    ref = x.double() @ W.double().t()
    fns = {
        "dense": lambda: F.linear(x, W),
        "torch csr": lambda: torch.sparse.mm(W_csr, x.t()).t(),
        "sparselth": lambda: layer(x),
        "sparselth spmm": lambda: spmm(A, x.t().contiguous(), backend="cpp").t(),
    }
    nnz = layer.nnz
    with torch.no_grad():
        _drop_wrong(fns, ref, f"linear n={n} B={B} s={sparsity}", notes)
        timed = _time(fns, cfg, {k: (n * n if k == "dense" else nnz) * B for k in fns})
    return dict(kind="linear", n=n, batch=B, sparsity=sparsity, nnz=nnz,
                density=nnz / (n * n), **timed)


def bench_conv(case, sparsity: float, cfg: dict, seed: int, max_im2col_mb: float,
               notes: List[str]) -> dict:
    from sparselth.nn import SparseConv2d

    name, cin, cout, k, hw, N = case
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)
    mask = _mask(conv.weight.shape, sparsity, seed)
    with torch.no_grad():
        conv.weight.mul_(mask)
    x = torch.randn(N, cin, hw, hw, generator=torch.Generator().manual_seed(seed + 1))
    W, b = conv.weight.detach(), conv.bias.detach()
    direct, im2col = (SparseConv2d.from_dense(conv, mask, route=route, backend="cpp")
                      .requires_grad_(False) for route in ("direct", "im2col"))
    im2col_mb = N * cin * k * k * hw * hw * 4 / 1e6
    fns = {"dense": lambda: F.conv2d(x, W, b, 1, k // 2), "sparselth direct": lambda: direct(x)}
    if im2col_mb <= max_im2col_mb:
        fns["sparselth im2col"] = lambda: im2col(x)
    else:
        notes.append(f"conv {name}: im2col skipped (its buffer would take {im2col_mb:.0f} MB "
                     f"> --max-im2col-mb {max_im2col_mb:g})")
    nnz = direct.nnz
    out_px = N * hw * hw
    with torch.no_grad():
        ref = F.conv2d(x.double(), W.double(), b.double(), 1, k // 2)
        _drop_wrong(fns, ref, f"conv {name} s={sparsity}", notes)
        del ref
        timed = _time(fns, cfg, {kk: (W.numel() if kk == "dense" else nnz) * out_px
                                 for kk in fns})
    return dict(kind="conv", case=name, c_in=cin, c_out=cout, kernel=k, hw=hw, batch=N,
                sparsity=sparsity, nnz=nnz, density=nnz / W.numel(), im2col_mb=im2col_mb,
                **timed)


# --------------------------------------------------------------------------- targets
def _speedup(r: dict, name: str, base: str = "dense") -> Optional[float]:
    ms = r["ms"]
    if name not in ms or base not in ms:
        return None
    return ms[base] / ms[name]


def _at(level: float) -> Callable[[float], bool]:
    return lambda s: abs(s - level) < 1e-9


def _from(level: float) -> Callable[[float], bool]:
    return lambda s: s >= level - 1e-9


def _above(x: float) -> Callable[[float], bool]:
    return lambda v: v > x


def _least(x: float) -> Callable[[float], bool]:
    return lambda v: v >= x


# (kind, contender, baseline, target, applies at sparsity, goal, speed-up passes)
TARGET_RULES = [
    ("linear", "sparselth", "dense", "linear faster than dense from 60%", _from(0.6), "> 1",
     _above(1)),
    ("linear", "sparselth", "dense", "linear >= 5x dense at 90%", _at(0.9), ">= 5", _least(5)),
    ("linear", "sparselth", "torch csr", "linear >= 1.5x torch CSR at >= 80%", _from(0.8),
     ">= 1.5", _least(1.5)),
    ("conv", "sparselth direct", "dense", "conv faster than dense from 80%", _from(0.8), "> 1",
     _above(1)),
    ("conv", "sparselth direct", "dense", "conv >= 2.5x dense at 95%", _at(0.95), ">= 2.5",
     _least(2.5)),
]


def check_targets(results: List[dict]) -> List[dict]:
    """Every rule of :data:`TARGET_RULES` on every case it applies to (``passed`` None where
    a contender did not run)."""
    rows = []
    for r in results:
        where = (f"n={r['n']} B={r['batch']} s={r['sparsity']:g}" if r["kind"] == "linear"
                 else f"{r['case']} s={r['sparsity']:g}")
        for kind, name, base, target, applies, goal, passes in TARGET_RULES:
            if kind == r["kind"] and applies(r["sparsity"]):
                sp = _speedup(r, name, base)
                rows.append(dict(target=target, where=where, value=sp, goal=goal,
                                 passed=None if sp is None else passes(sp)))
    return rows


# --------------------------------------------------------------------------- report
def _cells(r: dict, names: List[str]) -> List[str]:
    """``ms (speed-up vs dense)`` per contender, ``-`` where it did not run."""
    return [f"{format_number(r['ms'][n])} ({_speedup(r, n):.2f}x)" if n in r["ms"] else "-"
            for n in names]


def render_markdown(report: dict) -> str:
    res = report["results"]
    cfg = report["protocol"]
    threads = report["machine"].get("torch_threads")
    lines = [
        f"# Sparse-weight benchmark{': ' + report['tag'] if report['tag'] else ''}",
        "",
        "Pruned layers, float32, forward (inference). Random unstructured masks.",
        "",
        *common.machine_section(report["machine"]),
        "## Protocol",
        f"Correctness against a float64 oracle first; {cfg['warmup']} warm-up call(s); "
        f"interleaved repetitions (budget {cfg['budget_s']} s, {cfg['min_reps']}-{cfg['max_reps']} "
        f"samples); each comparison repeated {cfg['repeat']} times as independent sessions, the "
        "table shows the best median per contender (the JSON has every session). Threads: "
        f"{threads}. " + common.clock_sentence(report["clock"], threads)
        + " Cells: ms (speed-up vs dense). Realised = speed-up x density (1 = all MAC savings "
        "turned into time).",
        f"Elapsed: {report['elapsed_s']:.0f} s.",
        "",
    ]
    for note in report["notes"]:
        lines.append(f"> {note}")
    if report["notes"]:
        lines.append("")
    lin = [r for r in res if r["kind"] == "linear"]
    if lin:
        names = ["dense", "torch csr", "sparselth", "sparselth spmm"]
        lines += ["## Linear `y = x @ W^T` (n x n)", ""]
        rows = []
        for r in lin:
            vt = _speedup(r, "sparselth", "torch csr")
            sp = _speedup(r, "sparselth")
            rows.append([r["n"], r["batch"], f"{r['sparsity']:.0%}", *_cells(r, names),
                         None if vt is None else f"{vt:.2f}x",
                         None if sp is None else f"{sp * r['density']:.2f}",
                         format_number(r["gmacs"].get("sparselth"))])
        lines.append(markdown_table(
            ["n", "batch", "sparsity"] + [f"{n} ms" for n in names]
            + ["sparselth vs torch csr", "realised", "sparselth GMAC/s"], rows))
        lines.append("")
    conv = [r for r in res if r["kind"] == "conv"]
    if conv:
        names = ["dense", "sparselth direct", "sparselth im2col"]
        lines += ["## Conv2d (stride 1, 'same' padding)", ""]
        rows = []
        for r in conv:
            sp = _speedup(r, "sparselth direct")
            rows.append([r["case"], f"{r['sparsity']:.0%}", *_cells(r, names),
                         None if sp is None else f"{sp * r['density']:.2f}",
                         format_number(r["gmacs"].get("sparselth direct")),
                         format_number(r["gmacs"].get("dense"))])
        lines.append(markdown_table(
            ["case", "sparsity"] + [f"{n} ms" for n in names]
            + ["realised", "direct GMAC/s", "dense GMAC/s"], rows))
        lines.append("")
    lines += ["## Targets", ""]
    tg = report["targets"]
    rows = [[t["target"], t["where"], None if t["value"] is None else f"{t['value']:.2f}x",
             t["goal"], {True: "yes", False: "**no**", None: "-"}[t["passed"]]] for t in tg]
    summary: Dict[str, List[int]] = {}
    for t in tg:
        s = summary.setdefault(t["target"], [0, 0])
        s[1] += 1
        s[0] += bool(t["passed"])
    lines += [f"- {k}: {v[0]}/{v[1]} met" for k, v in summary.items()]
    lines += ["", "<details><summary>every check</summary>", "",
              markdown_table(["target", "case", "value", "goal", "met"], rows), "",
              "</details>", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("sparse_weights", __doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small subset with short budgets")
    p.add_argument("--tag", default="", help="suffix of the output names (sparse-weights-<tag>)")
    p.add_argument("--sizes", type=int, nargs="*", help=f"linear n (default {LINEAR_SIZES})")
    p.add_argument("--batches", type=int, nargs="*", help=f"linear batches (default {BATCHES})")
    p.add_argument("--sparsities", type=float, nargs="*",
                   help=f"sparsities (default linear {LINEAR_SPARSITIES}, conv {CONV_SPARSITIES})")
    p.add_argument("--conv-cases", nargs="*", help="conv case names (see CONV_CASES)")
    p.add_argument("--no-linear", action="store_true")
    p.add_argument("--no-conv", action="store_true")
    p.add_argument("--repeat", type=int, default=2,
                   help="independent timing sessions per comparison")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    common.add_timing_args(p, budget=(1.0, 0.2), max_reps=30)
    p.add_argument("--max-im2col-mb", type=float, default=700.0,
                   help="skip the im2col route above this buffer size")
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p, plot=False)
    return p


def _tag(args: argparse.Namespace) -> str:
    return (args.tag + ("-quick" if args.quick and "quick" not in args.tag else "")).strip("-")


def output_name(args: argparse.Namespace) -> str:
    """``sparse-weights[-<tag>]`` (``-quick`` added with --quick)."""
    tag = _tag(args)
    return "sparse-weights" + (f"-{common.safe_name(tag)}" if tag else "")


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    return dict(
        common.timing_config(args, budget=(1.0, 0.2)),
        repeat=args.repeat,
        sizes=[] if args.no_linear else args.sizes or ([1024] if args.quick else LINEAR_SIZES),
        batches=[] if args.no_linear else args.batches or ([1, 64] if args.quick else BATCHES),
        linear_sparsities=[] if args.no_linear else (
            args.sparsities or ([0.5, 0.9] if args.quick else LINEAR_SPARSITIES)),
        conv_cases=[] if args.no_conv else (
            args.conv_cases or (QUICK_CONV if args.quick else [c[0] for c in CONV_CASES])),
        conv_sparsities=[] if args.no_conv else (
            args.sparsities or ([0.9] if args.quick else CONV_SPARSITIES)),
        threads=args.threads, max_im2col_mb=args.max_im2col_mb, seed=args.seed,
    )


def main(argv: Optional[List[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    import sparselth
    if "cpp" not in sparselth.backends():
        raise SystemExit("bench.sparse_weights: the C++ extension is not built "
                         "(pip install --no-build-isolation --no-deps -e .)")
    if args.threads:
        torch.set_num_threads(args.threads)
    elapsed = stopwatch()
    proto = run_protocol(args)
    unknown = set(proto["conv_cases"]) - {c[0] for c in CONV_CASES + SMOKE_CONV}
    if unknown:
        raise SystemExit(f"bench.sparse_weights: unknown conv cases {sorted(unknown)}")
    conv_cases = [c for c in CONV_CASES + SMOKE_CONV if c[0] in proto["conv_cases"]]
    cfg = common.timing_config(args, budget=(1.0, 0.2))
    cfg.update(repeat=args.repeat, clock=headline_clock())
    tag = _tag(args)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    info = common.machine()
    notes: List[str] = []
    jobs = [("linear", (n, B, s)) for n in proto["sizes"] for B in proto["batches"]
            for s in proto["linear_sparsities"]]
    jobs += [("conv", (c, s)) for c in conv_cases for s in proto["conv_sparsities"]]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="sparse weights", unit="case", disable=args.no_progress)
    results = []
    for i, (kind, job) in enumerate(jobs):
        if kind == "linear":
            n, B, s = job
            bar.set_postfix_str(f"linear n={n} B={B} s={s:g}")
            results.append(bench_linear(n, B, s, cfg, args.seed + i, notes))
        else:
            c, s = job
            bar.set_postfix_str(f"conv {c[0]} s={s:g}")
            results.append(bench_conv(c, s, cfg, args.seed + i, args.max_im2col_mb, notes))
        bar.update(1)
    bar.close()
    notes = common.finish_machine(info) + notes
    report = dict(suite="sparse_weights", format_version=2, tag=tag, machine=info,
                  copy_bandwidth_gbs=info["copy_bandwidth_gbs"], device="cpu", dtype="float32",
                  threads=torch.get_num_threads(), clock=cfg["clock"], protocol=cfg,
                  args={k: (str(v) if k == "out" and v is not None else v)
                        for k, v in vars(args).items()},
                  notes=notes, targets_text=TARGETS_TEXT, results=results,
                  elapsed_s=elapsed())
    report["targets"] = check_targets(results)
    common.write_result(dest, report, render_markdown(report))
    print(f"bench.sparse_weights: done in {report['elapsed_s']:.0f} s", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
