"""Pruned embedding tables: stored bytes per format, deploy-time lookups, masked training.

Run from the repository root::

    python -m bench.embedding               # 1M x 64 float32 table (about 10 min, ~3 GB RAM)
    python -m bench.embedding --quick       # 20k x 64 smoke run (< 1 min)
    python -m bench.embedding --rows 200000 --sparsity 0.9 --masks random

For a table ``W`` (rows x dim, float32) and masks at each element sparsity (``random``:
entries pruned independently; ``rows``: whole rows pruned, the kept rows dense):

1. **bytes**: stored bytes of every format (row-compact, per-row CSR, per-row bitmask; and
   int8-quantised, whose max error is reported) against the dense table and against the
   target ``1.15 x kept values x 4 B + rows x (ceil(dim / 8) + 4) B`` (values plus the bitmask
   format's per-row overhead), and the format ``choose_format`` picks;
2. **lookup**: a batch of ``--batch`` uniformly random ids (a new batch per call: the
   cache-unfriendly case of a served table) from
   every format on the ``cpp`` backend, against ``F.embedding`` on the dense masked table;
   every result is checked to equal ``F.embedding``'s before it is timed;
3. **training** (at ``--train-sparsity``): one step's lookup + backward with an upstream
   gradient, for ``sparselth.ops.masked_embedding`` (dense and sparse gradient), the unmasked
   ``F.embedding`` (dense and sparse gradient), and the naive ``F.embedding(ids, W * M)`` that
   multiplies the whole table every step; gradients are checked against the naive one first.

Timings follow :mod:`bench.common` (warm-up, interleaved repetitions, median + IQR, default
threads). Writes ``<out>/embedding-<tag>.json``, ``.md`` and ``.png`` (tag default ``cpu``,
``cpu-quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from . import common

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
MASK_KINDS = ("random", "rows")
FORMAT_NAMES = ("row_compact", "csr", "bitmask")


def make_mask(kind: str, rows: int, dim: int, sparsity: float,
              gen: torch.Generator) -> torch.Tensor:
    """``random``: each entry kept with probability 1 - sparsity; ``rows``: whole rows."""
    if kind == "random":
        return torch.rand(rows, dim, generator=gen) >= sparsity
    if kind == "rows":
        keep = torch.rand(rows, 1, generator=gen) >= sparsity
        return keep.expand(rows, dim).contiguous()
    raise ValueError(f"bench.embedding: unknown mask kind {kind!r}")


def target_bytes(nnz: int, rows: int, dim: int, value_bytes: int = 4) -> float:
    """The byte target: 1.15 x the kept values + the bitmask format's per-row overhead."""
    return 1.15 * nnz * value_bytes + rows * ((dim + 7) // 8 + 4)


def _time(fns: Dict[str, callable], cfg: dict) -> Dict[str, dict]:
    t = common.time_interleaved(fns, warmup=cfg["warmup"], budget_s=cfg["budget_s"],
                                min_reps=cfg["min_reps"], max_reps=cfg["max_reps"])
    out = {}
    for k, v in t.items():
        out[k] = v.summary()
        out[k]["min_ms"] = min(v.times) * 1e3 if v.times else math.nan
    return out


class Batches:
    """A cycle of pre-drawn id batches: each call of a timed function takes the next one, so
    the rows a lookup touches are not still in the cache from the previous call (a fixed batch
    would measure warm caches that a served table does not have)."""

    def __init__(self, rows: int, batch: int, count: int, gen: torch.Generator):
        self.all = [torch.randint(0, rows, (batch,), generator=gen) for _ in range(count)]
        self.i = 0

    def next(self) -> torch.Tensor:
        self.i = (self.i + 1) % len(self.all)
        return self.all[self.i]


def bench_case(W: torch.Tensor, M: torch.Tensor, kind: str, sparsity: float, batches: Batches,
               cfg: dict) -> dict:
    """Bytes of every format and lookup timings for one mask."""
    from sparselth.ops import embedding_lookup
    from sparselth.sparse.embedding_formats import choose_format, compress_embedding, predict_bytes

    rows, dim = W.shape
    nnz = int(M.sum())
    dense_masked = W * M
    dense_bytes = W.numel() * W.element_size()
    rec: dict = {"mask": kind, "sparsity": sparsity, "nnz": nnz,
                 "kept_rows": int(M.any(1).sum()), "dense_bytes": dense_bytes,
                 "target_bytes": target_bytes(nnz, rows, dim, W.element_size())}
    t0 = time.perf_counter()
    rec["choice"] = choose_format(W, M)
    rec["choose_s"] = time.perf_counter() - t0
    rec["predicted_bytes"] = predict_bytes(W, M)
    ids = batches.all[0]
    want = F.embedding(ids, dense_masked)
    fns = {"dense F.embedding": lambda: F.embedding(batches.next(), dense_masked)}
    fmt_bytes, build_s, errors = {}, {}, {}
    for name in FORMAT_NAMES:
        t0 = time.perf_counter()
        T = compress_embedding(W, M, name)
        build_s[name] = time.perf_counter() - t0
        fmt_bytes[name] = T.stored_bytes
        got = embedding_lookup(T, ids, backend=cfg["backend"])
        if not torch.equal(got, want):
            errors[name] = "lookup differs from F.embedding on the masked table"
            continue
        fns[f"{name}"] = (lambda T=T: embedding_lookup(T, batches.next(), backend=cfg["backend"]))
    # int8 variant of the chosen format
    q = compress_embedding(W, M, rec["choice"], quantize="int8")
    qerr = (q.to_dense() - dense_masked).abs().max().item()
    rec["int8"] = {"format": q.kind, "stored_bytes": q.stored_bytes, "max_abs_error": qerr,
                   "max_abs_value": dense_masked.abs().max().item(),
                   "bytes_ratio_vs_dense": dense_bytes / q.stored_bytes}
    if torch.equal(embedding_lookup(q, ids, backend=cfg["backend"]), q.to_dense()[ids]):
        fns["chosen int8"] = lambda: embedding_lookup(q, batches.next(), backend=cfg["backend"])
    else:
        errors["chosen int8"] = "lookup differs from the dequantised table"
    rec["stored_bytes"] = fmt_bytes
    rec["build_s"] = build_s
    rec["errors"] = errors
    best = fmt_bytes[rec["choice"]]
    rec["chosen_bytes"] = best
    rec["ratio_vs_dense"] = dense_bytes / best
    rec["meets_target"] = best <= rec["target_bytes"]
    rec["lookup"] = _time(fns, cfg)
    base = rec["lookup"]["dense F.embedding"]["ms"]
    for v in rec["lookup"].values():
        v["vs_dense"] = v["ms"] / base if base else None
    del q, fns
    return rec


def bench_training(W: torch.Tensor, M: torch.Tensor, batches: Batches, cfg: dict) -> dict:
    """One training step's lookup + backward per contender (gradients set to None each step)."""
    from sparselth.ops import masked_embedding

    ids = batches.all[0]
    g = torch.randn(ids.numel(), W.shape[1], generator=torch.Generator().manual_seed(7))
    w = W.clone().requires_grad_()
    Mf = M.to(W.dtype)

    def naive(ids=None):
        w.grad = None
        F.embedding(batches.next() if ids is None else ids, w * Mf).backward(g)
        return w.grad

    def f_embedding(sparse):
        def step(ids=None):
            w.grad = None
            F.embedding(batches.next() if ids is None else ids, w, sparse=sparse).backward(g)
            return w.grad
        return step

    def masked(sparse):
        def step(ids=None):
            w.grad = None
            masked_embedding(w, M, batches.next() if ids is None else ids, sparse_grad=sparse,
                             backend=cfg["backend"]).backward(g)
            return w.grad
        return step

    contenders = {
        "naive F.embedding(ids, W * M)": naive,
        "F.embedding (unmasked) dense grad": f_embedding(False),
        "F.embedding (unmasked) sparse grad": f_embedding(True),
        "masked_embedding dense grad": masked(False),
        "masked_embedding sparse grad": masked(True),
    }
    ref = naive(ids).clone()
    checks = {}
    for name in ("masked_embedding dense grad", "masked_embedding sparse grad"):
        gr = contenders[name](ids)
        gr = gr.to_dense() if gr.is_sparse else gr
        checks[name] = common.max_rel_error(gr, ref)
        if not checks[name] <= common.tolerance_for(W.dtype):
            raise RuntimeError(f"bench.embedding: {name} gradient is wrong ({checks[name]:.2e})")
    fwd_out = masked_embedding(W, M, ids, backend=cfg["backend"])
    if not torch.equal(fwd_out, F.embedding(ids, W * M)):
        raise RuntimeError("bench.embedding: masked_embedding forward differs from (W * M)[ids]")
    res = _time(contenders, cfg)
    base = res["F.embedding (unmasked) dense grad"]["ms"]
    naive_ms = res["naive F.embedding(ids, W * M)"]["ms"]
    for v in res.values():
        v["vs_unmasked_dense"] = v["ms"] / base
        v["speedup_vs_naive"] = naive_ms / v["ms"]
    w.grad = None
    return {"steps": res, "grad_max_rel_err": checks}


# --------------------------------------------------------------------------- reports


def render_markdown(report: dict) -> str:
    a = report["args"]
    lines = [
        f"# Pruned embedding tables: {report['tag']}",
        "",
        f"Table {a['rows']} x {a['dim']} float32 ({report['dense_bytes'] / 1e6:.1f} MB dense); "
        f"lookups of {a['batch']} uniformly random ids (a new batch per call, cycling through "
        f"{a['id_batches']}); backend `{a['backend']}`; "
        f"{report['threads']} torch threads.",
        "",
        "## Machine",
        common.machine_markdown(report["machine"]),
        f"- measured copy bandwidth: {report['copy_bandwidth_gbs']:.1f} GB/s (read + write)",
        "",
    ]
    if report.get("notes"):
        lines += ["## Notes", *[f"- {n}" for n in report["notes"]], ""]
    lines += [
        "## Stored bytes",
        "",
        "MB per format; **bold** = the format `choose_format` picks (fewest bytes). Target: "
        "1.15 x kept values x 4 B + rows x (ceil(dim/8) + 4) B. int8: the chosen format with "
        "row-wise int8 values (lossy; max |error| relative to max |value|).",
        "",
    ]
    rows = []
    for r in report["cases"]:
        cells = []
        for f in FORMAT_NAMES:
            s = f"{r['stored_bytes'][f] / 1e6:.2f}"
            cells.append(f"**{s}**" if f == r["choice"] else s)
        q = r["int8"]
        rows.append([r["mask"], f"{r['sparsity']:.0%}", r["nnz"], *cells,
                     f"{r['target_bytes'] / 1e6:.2f}", "yes" if r["meets_target"] else "NO",
                     f"{r['ratio_vs_dense']:.2f}x",
                     f"{q['stored_bytes'] / 1e6:.2f} ({q['bytes_ratio_vs_dense']:.1f}x, "
                     f"err {q['max_abs_error'] / max(q['max_abs_value'], 1e-30):.1e})"])
    lines += [common.markdown_table(
        ["mask", "sparsity", "kept values", *[f"{f} MB" for f in FORMAT_NAMES], "target MB",
         "meets", "dense / chosen", "int8 MB (vs dense, rel. err)"], rows), ""]
    lines += [
        "## Deploy lookup",
        "",
        f"Median ms per batch of {a['batch']} ids (in parentheses: median / dense F.embedding's "
        "median; then the fastest sample in ms). Every contender's rows equal F.embedding's on "
        "the masked dense table (int8: the dequantised table's) before timing.",
        "",
    ]
    names = list(report["cases"][0]["lookup"]) if report["cases"] else []
    rows = []
    for r in report["cases"]:
        row = [r["mask"], f"{r['sparsity']:.0%}"]
        for n in names:
            v = r["lookup"].get(n)
            row.append("-" if v is None else f"{common.fmt_num(v['ms'])} ({v['vs_dense']:.2f}); "
                       f"{common.fmt_num(v['min_ms'])}")
        rows.append(row)
    lines += [common.markdown_table(["mask", "sparsity", *names], rows), ""]
    tr = report.get("training")
    if tr:
        lines += [
            f"## Masked training step (lookup + backward, {a['train_mask']} mask at "
            f"{a['train_sparsity']:.0%})",
            "",
            "Median ms per step (gradient reset to None each step). The dense gradient is "
            f"a {report['dense_bytes'] / 1e6:.0f} MB tensor allocated and zeroed every step by "
            "every dense-gradient contender; sparse gradients are O(batch).",
            "",
            common.markdown_table(
                ["contender", "ms", "IQR ms", "min ms", "x unmasked F.embedding (dense grad)",
                 "speed-up vs naive W * M"],
                [[k, v["ms"], f"{v['q1_ms']:.3g}-{v['q3_ms']:.3g}", v["min_ms"],
                  v["vs_unmasked_dense"], v["speedup_vs_naive"]]
                 for k, v in tr["steps"].items()]),
            "",
        ]
    lines.append(f"Elapsed: {report['elapsed_s']:.0f} s.")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases = report["cases"]
    if not cases:
        return None
    panels = 3 if report.get("training") else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    colors = {"row_compact": "tab:blue", "csr": "tab:orange", "bitmask": "tab:green"}
    ax = axes[0]
    for kind, style in (("random", "-o"), ("rows", "--s")):
        sel = sorted((r for r in cases if r["mask"] == kind), key=lambda r: r["sparsity"])
        if not sel:
            continue
        xs = [r["sparsity"] for r in sel]
        for f in FORMAT_NAMES:
            ax.plot(xs, [r["stored_bytes"][f] / r["dense_bytes"] for r in sel], style,
                    color=colors[f], label=f"{f} ({kind})", markersize=4)
        ax.plot(xs, [r["target_bytes"] / r["dense_bytes"] for r in sel], ":", color="k",
                label="target" if kind == "random" else None)
    ax.set_yscale("log")
    ax.set_xlabel("element sparsity")
    ax.set_ylabel("stored bytes / dense bytes")
    ax.set_title("stored bytes", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    sel = sorted((r for r in cases if r["mask"] == "random"), key=lambda r: r["sparsity"]) or \
        sorted(cases, key=lambda r: r["sparsity"])
    xs = [r["sparsity"] for r in sel]
    line_color = dict(colors, **{"dense F.embedding": "k", "chosen int8": "tab:purple"})
    for n in sel[0]["lookup"]:
        style = "--" if n.startswith("dense") else ":^" if "int8" in n else "-o"
        ax.plot(xs, [r["lookup"][n]["ms"] for r in sel], style, label=n, markersize=4,
                color=line_color.get(n))
    ax.set_xlabel("element sparsity")
    ax.set_ylabel("ms per batch (median)")
    ax.set_title(f"lookup of {report['args']['batch']} ids ({sel[0]['mask']} masks)", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if panels == 3:
        ax = axes[2]
        steps = report["training"]["steps"]
        names = list(steps)
        ax.barh(range(len(names)), [steps[n]["ms"] for n in names],
                color=["tab:red" if n.startswith("naive") else "tab:gray" if
                       n.startswith("F.") else "tab:green" for n in names])
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("ms per step (median, log)")
        ax.set_title("training lookup + backward", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(f"{report['args']['rows']} x {report['args']['dim']} float32 table "
                 f"({report['machine'].get('cpu')}, {report['threads']} threads)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.embedding",
        description="Bytes, lookups and masked training of pruned embedding tables; writes "
        "JSON, Markdown and a PNG under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20000 rows, sparsities 0.5 0.9 0.98, short budgets")
    p.add_argument("--rows", type=int, default=None, help="table rows (default 1000000)")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension")
    p.add_argument("--sparsity", nargs="+", type=float, default=None,
                   help=f"element sparsities (default {' '.join(map(str, SPARSITIES))})")
    p.add_argument("--masks", nargs="+", choices=MASK_KINDS, default=list(MASK_KINDS))
    p.add_argument("--batch", type=int, default=4096, help="ids per lookup / training step")
    p.add_argument("--id-batches", type=int, default=64,
                   help="distinct random batches cycled through by the timed calls")
    p.add_argument("--train-sparsity", type=float, default=0.9)
    p.add_argument("--train-mask", choices=MASK_KINDS, default="random")
    p.add_argument("--no-training", action="store_true", help="skip the training timings")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's default, all cores)")
    p.add_argument("--backend", default="cpp", help="sparselth backend for the lookups")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per contender and case (default 1.0, quick 0.1)")
    p.add_argument("--min-reps", type=int, default=None, help="min samples (default 5, quick 3)")
    p.add_argument("--max-reps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copy-mb", type=float, default=None,
                   help="copy-bandwidth probe size in MB (default 256, quick 32)")
    p.add_argument("--out", type=Path, default=common.REPO_ROOT / "bench" / "results")
    p.add_argument("--tag", default=None, help="file tag (default cpu, cpu-quick with --quick)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the benchmark; returns the report (also written to ``<out>/embedding-<tag>.json``)."""
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    sparsities = args.sparsity or ([0.5, 0.9, 0.98] if args.quick else list(SPARSITIES))
    if any(not 0 <= s < 1 for s in sparsities):
        raise SystemExit(f"bench.embedding: --sparsity values must be in [0, 1), got {sparsities}")
    cfg = dict(warmup=1 if args.quick else 2,
               budget_s=args.budget if args.budget is not None else (0.1 if args.quick else 1.0),
               min_reps=args.min_reps if args.min_reps is not None else (3 if args.quick else 5),
               max_reps=args.max_reps, backend=args.backend)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.tag or ("cpu-quick" if args.quick else "cpu"))
    info = common.machine_info()
    copy_bw = common.copy_bandwidth_gbs(args.copy_mb or (32 if args.quick else 256))
    gen = torch.Generator().manual_seed(args.seed)
    W = torch.randn(rows, args.dim, generator=gen)
    batches = Batches(rows, args.batch, args.id_batches, gen)
    from tqdm.auto import tqdm

    jobs = [(k, s) for k in args.masks for s in sparsities]
    cases = []
    for kind, s in tqdm(jobs, desc="embedding", disable=args.no_progress, leave=False):
        M = make_mask(kind, rows, args.dim, s, gen)
        cases.append(bench_case(W, M, kind, s, batches, cfg))
        del M
        gc.collect()
    training = None
    if not args.no_training:
        M = make_mask(args.train_mask, rows, args.dim, args.train_sparsity, gen)
        training = bench_training(W, M, batches, cfg)
        del M
    info["loadavg_end"] = common.load_average()
    notes = [n for n in [common.busy_note(info)] if n]
    at90 = [c for c in cases if c["mask"] == "random" and math.isclose(c["sparsity"], 0.9)]
    if at90:
        notes.append(f"random 90% sparsity: {at90[0]['ratio_vs_dense']:.2f}x fewer bytes than "
                     f"dense ({at90[0]['choice']}); goal >= 6x "
                     f"({'met' if at90[0]['ratio_vs_dense'] >= 6 else 'NOT met'})")
    report = {
        "suite": "embedding", "tag": tag, "machine": info, "copy_bandwidth_gbs": copy_bw,
        "threads": torch.get_num_threads(),
        "args": {"rows": rows, "dim": args.dim, "batch": args.batch, "sparsities": sparsities,
                 "masks": args.masks, "train_sparsity": args.train_sparsity,
                 "train_mask": args.train_mask, "backend": args.backend, "seed": args.seed,
                 "id_batches": args.id_batches, "threads": args.threads,
                 "quick": args.quick},
        "protocol": cfg, "dense_bytes": W.numel() * W.element_size(),
        "cases": cases, "training": training, "notes": notes,
        "elapsed_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    common.write_json(args.out / f"embedding-{tag}.json", report)
    common.write_markdown(args.out / f"embedding-{tag}.md", render_markdown(report))
    if not args.no_plot:
        plot(report, args.out / f"embedding-{tag}.png")
    return report


if __name__ == "__main__":
    main()
