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

Protocol (:mod:`bench.common`): every contender is checked against a float64 oracle before
timing; warm-up; interleaved repetitions; medians. Other processes share the machine, so each
comparison runs ``--repeat`` times (default 2) as independent interleaved sessions; the table
shows each contender's best (lowest) median over the sessions and the JSON keeps them all.
Speed-ups are ``t(dense) / t(contender)``; *realised* = speed-up / (1 / density), the fraction of
the MAC savings turned into time. Writes ``<out>/sparse-weights[-<tag>].json`` and ``.md``
(atomically).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def _check(name: str, out: torch.Tensor, ref: torch.Tensor) -> Optional[str]:
    err = common.max_rel_error(out, ref)
    if not err <= common.tolerance_for(torch.float32):
        return f"{name}: wrong result (max relative error {err:.2e}), not timed"
    return None


def _time(fns: Dict[str, Callable], cfg: dict, repeat: int) -> Dict[str, List[float]]:
    runs: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        t = common.time_interleaved(fns, warmup=cfg["warmup"], budget_s=cfg["budget_s"],
                                    min_reps=cfg["min_reps"], max_reps=cfg["max_reps"])
        for k, v in t.items():
            runs[k].append(v.median)
    return runs


def bench_linear(n: int, B: int, sparsity: float, cfg: dict, repeat: int, seed: int,
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
    with torch.no_grad():
        for name in list(fns):
            bad = _check(name, fns[name](), ref)
            if bad:
                notes.append(f"linear n={n} B={B} s={sparsity}: {bad}")
                del fns[name]
        runs = _time(fns, cfg, repeat)
    best = {k: min(v) for k, v in runs.items()}
    nnz = layer.nnz
    return dict(kind="linear", n=n, batch=B, sparsity=sparsity, nnz=nnz,
                density=nnz / (n * n), runs_ms={k: [t * 1e3 for t in v] for k, v in runs.items()},
                ms={k: t * 1e3 for k, t in best.items()},
                gmacs={k: common.gmacs((n * n if k == "dense" else nnz) * B, t) for k, t in best.items()})


def bench_conv(case, sparsity: float, cfg: dict, repeat: int, seed: int, max_im2col_mb: float,
               notes: List[str]) -> dict:
    from sparselth.nn import SparseConv2d

    name, cin, cout, k, hw, N = case
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)
    mask = _mask(conv.weight.shape, sparsity, seed)
    with torch.no_grad():
        conv.weight.mul_(mask)
    x = torch.randn(N, cin, hw, hw, generator=torch.Generator().manual_seed(seed + 1))
    W, b = conv.weight.detach(), conv.bias.detach()
    direct = SparseConv2d.from_dense(conv, mask, route="direct", backend="cpp").requires_grad_(False)
    im2col = SparseConv2d.from_dense(conv, mask, route="im2col", backend="cpp").requires_grad_(False)
    im2col_mb = N * cin * k * k * hw * hw * 4 / 1e6
    fns = {"dense": lambda: F.conv2d(x, W, b, 1, k // 2), "sparselth direct": lambda: direct(x)}
    if im2col_mb <= max_im2col_mb:
        fns["sparselth im2col"] = lambda: im2col(x)
    else:
        notes.append(f"conv {name}: im2col skipped (its buffer would take {im2col_mb:.0f} MB "
                     f"> --max-im2col-mb {max_im2col_mb:g})")
    with torch.no_grad():
        ref = F.conv2d(x.double(), W.double(), b.double(), 1, k // 2)
        for cname in list(fns):
            bad = _check(cname, fns[cname](), ref)
            if bad:
                notes.append(f"conv {name} s={sparsity}: {bad}")
                del fns[cname]
        del ref
        runs = _time(fns, cfg, repeat)
    best = {kk: min(v) for kk, v in runs.items()}
    nnz = direct.nnz
    out_px = N * hw * hw
    return dict(kind="conv", case=name, c_in=cin, c_out=cout, kernel=k, hw=hw, batch=N,
                sparsity=sparsity, nnz=nnz, density=nnz / W.numel(), im2col_mb=im2col_mb,
                runs_ms={kk: [t * 1e3 for t in v] for kk, v in runs.items()},
                ms={kk: t * 1e3 for kk, t in best.items()},
                gmacs={kk: common.gmacs((W.numel() if kk == "dense" else nnz) * out_px, t)
                       for kk, t in best.items()})


# --------------------------------------------------------------------------- targets
def _speedup(r: dict, name: str, base: str = "dense") -> Optional[float]:
    ms = r["ms"]
    if name not in ms or base not in ms:
        return None
    return ms[base] / ms[name]


def check_targets(results: List[dict]) -> List[dict]:
    rows = []
    lin = [r for r in results if r["kind"] == "linear"]
    conv = [r for r in results if r["kind"] == "conv"]

    def add(target, where, value, goal, ok):
        rows.append(dict(target=target, where=where, value=value, goal=goal,
                         passed=None if value is None else bool(ok)))

    for r in lin:
        where = f"n={r['n']} B={r['batch']} s={r['sparsity']:g}"
        sp = _speedup(r, "sparselth")
        if r["sparsity"] >= 0.6 - 1e-9:
            add("linear faster than dense from 60%", where, sp, "> 1", sp is not None and sp > 1)
        if abs(r["sparsity"] - 0.9) < 1e-9:
            add("linear >= 5x dense at 90%", where, sp, ">= 5", sp is not None and sp >= 5)
        if r["sparsity"] >= 0.8 - 1e-9:
            vt = _speedup(r, "sparselth", "torch csr")
            add("linear >= 1.5x torch CSR at >= 80%", where, vt, ">= 1.5", vt is not None and vt >= 1.5)
    for r in conv:
        where = f"{r['case']} s={r['sparsity']:g}"
        sp = _speedup(r, "sparselth direct")
        if r["sparsity"] >= 0.8 - 1e-9:
            add("conv faster than dense from 80%", where, sp, "> 1", sp is not None and sp > 1)
        if abs(r["sparsity"] - 0.95) < 1e-9:
            add("conv >= 2.5x dense at 95%", where, sp, ">= 2.5", sp is not None and sp >= 2.5)
    return rows


# --------------------------------------------------------------------------- report
def render_markdown(report: dict) -> str:
    res = report["results"]
    cfg = report["protocol"]
    lines = [
        f"# Sparse-weight benchmark{': ' + report['tag'] if report['tag'] else ''}",
        "",
        "Pruned layers, float32, forward (inference). Random unstructured masks.",
        "",
        "## Machine",
        common.machine_markdown(report["machine"]),
        f"- load average at start / end: {report['machine'].get('loadavg_start')} / "
        f"{report['machine'].get('loadavg_end')}",
        "",
        "## Protocol",
        f"Correctness against a float64 oracle first; {cfg['warmup']} warm-up call(s); "
        f"interleaved repetitions (budget {cfg['budget_s']} s, {cfg['min_reps']}-{cfg['max_reps']} "
        f"samples); each comparison repeated {cfg['repeat']} times as independent sessions, the "
        "table shows the best median per contender (the JSON has every session). Threads: "
        f"{report['machine'].get('torch_threads')}. Cells: ms (speed-up vs dense). Realised = "
        "speed-up x density (1 = all MAC savings turned into time).",
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
            cells = [r["n"], r["batch"], f"{r['sparsity']:.0%}"]
            for nme in names:
                if nme in r["ms"]:
                    sp = _speedup(r, nme)
                    cells.append(f"{common.fmt_num(r['ms'][nme])} ({sp:.2f}x)")
                else:
                    cells.append("-")
            vt = _speedup(r, "sparselth", "torch csr")
            sp = _speedup(r, "sparselth")
            cells += [None if vt is None else f"{vt:.2f}x",
                      None if sp is None else f"{sp * r['density']:.2f}",
                      common.fmt_num(r["gmacs"].get("sparselth"))]
            rows.append(cells)
        lines.append(common.markdown_table(
            ["n", "batch", "sparsity"] + [f"{n} ms" for n in names]
            + ["sparselth vs torch csr", "realised", "sparselth GMAC/s"], rows))
        lines.append("")
    conv = [r for r in res if r["kind"] == "conv"]
    if conv:
        names = ["dense", "sparselth direct", "sparselth im2col"]
        lines += ["## Conv2d (stride 1, 'same' padding)", ""]
        rows = []
        for r in conv:
            cells = [r["case"], f"{r['sparsity']:.0%}"]
            for nme in names:
                if nme in r["ms"]:
                    cells.append(f"{common.fmt_num(r['ms'][nme])} ({_speedup(r, nme):.2f}x)")
                else:
                    cells.append("-")
            sp = _speedup(r, "sparselth direct")
            cells += [None if sp is None else f"{sp * r['density']:.2f}",
                      common.fmt_num(r["gmacs"].get("sparselth direct")),
                      common.fmt_num(r["gmacs"].get("dense"))]
            rows.append(cells)
        lines.append(common.markdown_table(
            ["case", "sparsity"] + [f"{n} ms" for n in names]
            + ["realised", "direct GMAC/s", "dense GMAC/s"], rows))
        lines.append("")
    lines += ["## Targets (issue 4)", ""]
    tg = report["targets"]
    rows = [[t["target"], t["where"], None if t["value"] is None else f"{t['value']:.2f}x", t["goal"],
             {True: "yes", False: "**no**", None: "-"}[t["passed"]]] for t in tg]
    summary = {}
    for t in tg:
        s = summary.setdefault(t["target"], [0, 0])
        s[1] += 1
        s[0] += bool(t["passed"])
    lines += [f"- {k}: {v[0]}/{v[1]} met" for k, v in summary.items()]
    lines += ["", "<details><summary>every check</summary>", "",
              common.markdown_table(["target", "case", "value", "goal", "met"], rows), "",
              "</details>", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sparse_weights", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small subset with short budgets")
    p.add_argument("--out", default=str(common.REPO_ROOT / "bench" / "results"), help="output folder")
    p.add_argument("--tag", default="", help="suffix of the output names (sparse-weights-<tag>)")
    p.add_argument("--sizes", type=int, nargs="*", help=f"linear n (default {LINEAR_SIZES})")
    p.add_argument("--batches", type=int, nargs="*", help=f"linear batches (default {BATCHES})")
    p.add_argument("--sparsities", type=float, nargs="*",
                   help=f"sparsities (default linear {LINEAR_SPARSITIES}, conv {CONV_SPARSITIES})")
    p.add_argument("--conv-cases", nargs="*", help="conv case names (see CONV_CASES)")
    p.add_argument("--no-linear", action="store_true")
    p.add_argument("--no-conv", action="store_true")
    p.add_argument("--repeat", type=int, default=2, help="independent timing sessions per comparison")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--budget", type=float, default=None, help="seconds per contender and session")
    p.add_argument("--min-reps", type=int, default=None)
    p.add_argument("--max-reps", type=int, default=30)
    p.add_argument("--max-im2col-mb", type=float, default=700.0,
                   help="skip the im2col route above this buffer size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    import sparselth
    if "cpp" not in sparselth.backends():
        raise SystemExit("bench.sparse_weights: the C++ extension is not built "
                         "(pip install --no-build-isolation --no-deps -e .)")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sizes = args.sizes or ([1024] if args.quick else LINEAR_SIZES)
    batches = args.batches or ([1, 64] if args.quick else BATCHES)
    lin_sp = args.sparsities or ([0.5, 0.9] if args.quick else LINEAR_SPARSITIES)
    conv_sp = args.sparsities or ([0.9] if args.quick else CONV_SPARSITIES)
    names = args.conv_cases or (QUICK_CONV if args.quick else [c[0] for c in CONV_CASES])
    unknown = set(names) - {c[0] for c in CONV_CASES + SMOKE_CONV}
    if unknown:
        raise SystemExit(f"bench.sparse_weights: unknown conv cases {sorted(unknown)}")
    conv_cases = [c for c in CONV_CASES + SMOKE_CONV if c[0] in names]
    cfg = dict(warmup=1 if args.quick else 2,
               budget_s=args.budget if args.budget is not None else (0.2 if args.quick else 1.0),
               min_reps=args.min_reps if args.min_reps is not None else (3 if args.quick else 5),
               max_reps=args.max_reps, repeat=args.repeat)
    info = common.machine_info()
    info["loadavg_start"] = common.load_average()
    notes: List[str] = []
    jobs = []
    if not args.no_linear:
        jobs += [("linear", (n, B, s)) for n in sizes for B in batches for s in lin_sp]
    if not args.no_conv:
        jobs += [("conv", (c, s)) for c in conv_cases for s in conv_sp]
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=len(jobs), desc="sparse weights", unit="case",
               disable=args.no_progress or tqdm is None) if tqdm else None
    results = []
    for i, (kind, job) in enumerate(jobs):
        if kind == "linear":
            n, B, s = job
            if bar is not None:
                bar.set_postfix_str(f"linear n={n} B={B} s={s:g}")
            results.append(bench_linear(n, B, s, cfg, args.repeat, args.seed + i, notes))
        else:
            c, s = job
            if bar is not None:
                bar.set_postfix_str(f"conv {c[0]} s={s:g}")
            results.append(bench_conv(c, s, cfg, args.repeat, args.seed + i, args.max_im2col_mb,
                                      notes))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    info["loadavg_end"] = common.load_average()
    busy = common.busy_note(info)
    if busy:
        notes.insert(0, busy)
    tag = args.tag + ("-quick" if args.quick and "quick" not in args.tag else "")
    tag = tag.strip("-")
    report = dict(suite="sparse_weights", format_version=1, tag=tag, machine=info,
                  device="cpu", dtype="float32", protocol=cfg,
                  args={k: v for k, v in vars(args).items()}, notes=notes,
                  targets_text=TARGETS_TEXT, results=results,
                  elapsed_s=time.perf_counter() - t0)
    report["targets"] = check_targets(results)
    out = Path(args.out)
    stem = "sparse-weights" + (f"-{tag}" if tag else "")
    json_path = common.write_json(out / f"{stem}.json", report)
    md_path = common.write_markdown(out / f"{stem}.md", render_markdown(report))
    report["files"] = [str(json_path), str(md_path)]
    print(f"bench.sparse_weights: wrote {json_path} and {md_path} in {report['elapsed_s']:.0f} s",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
