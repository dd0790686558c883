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

Timings follow :mod:`sparselth.utils.timing` (warm-up, interleaved repetitions, wall and CPU
time, median + IQR; ratios on the headline clock: CPU time with one thread, wall time with
more). Writes ``embedding-<tag>.json``, ``.md`` and ``.png`` (tag default ``cpu``,
``cpu-quick`` with ``--quick``) in ``bench/results/`` for the published protocol
(``PUBLISHED``), else in ``bench/results/local/``, or in ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, stopwatch

from . import common

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
MASK_KINDS = ("random", "rows")
FORMAT_NAMES = ("row_compact", "csr", "bitmask")
# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {
    "embedding-cpu": "",
    "embedding-cpu-1thread": "--threads 1 --tag cpu-1thread",
}


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


def _time(fns: Dict[str, callable], cfg: dict, baseline: str, ratio: str) -> Dict[str, dict]:
    """Per contender: the summary of both clocks and, under ``ratio``, its median over the
    median of ``baseline`` on the headline clock."""
    m = common.time_contenders(fns, cfg, clock=cfg["clock"])
    return {k: dict(t.summary(), **{ratio: m.speedup(k, baseline)})
            for k, t in m.timings.items()}


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
    elapsed = stopwatch()
    rec["choice"] = choose_format(W, M)
    rec["choose_s"] = elapsed()
    rec["predicted_bytes"] = predict_bytes(W, M)
    ids = batches.all[0]
    want = F.embedding(ids, dense_masked)
    fns = {"dense F.embedding": lambda: F.embedding(batches.next(), dense_masked)}
    fmt_bytes, build_s, errors = {}, {}, {}
    for name in FORMAT_NAMES:
        elapsed = stopwatch()
        T = compress_embedding(W, M, name)
        build_s[name] = elapsed()
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
    rec["lookup"] = _time(fns, cfg, "dense F.embedding", "vs_dense")
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
    res = _time(contenders, cfg, "F.embedding (unmasked) dense grad", "vs_unmasked_dense")
    key = common.ms_key(cfg["clock"])
    naive_ms = res["naive F.embedding(ids, W * M)"][key]
    for v in res.values():
        v["speedup_vs_naive"] = naive_ms / v[key]
    w.grad = None
    return {"steps": res, "grad_max_rel_err": checks}


# --------------------------------------------------------------------------- reports


def render_markdown(report: dict) -> str:
    a = report["args"]
    key = common.ms_key(report["clock"])
    pre = "cpu_" if report["clock"] == "cpu" else ""
    lines = [
        f"# Pruned embedding tables: {report['tag']}",
        "",
        f"Table {a['rows']} x {a['dim']} float32 ({report['dense_bytes'] / 1e6:.1f} MB dense); "
        f"lookups of {a['batch']} uniformly random ids (a new batch per call, cycling through "
        f"{a['id_batches']}); backend `{a['backend']}`; "
        f"{report['threads']} torch threads. "
        + common.clock_sentence(report["clock"], report["threads"]),
        "",
        *common.machine_section(report["machine"]),
        f"Measured copy bandwidth: {report['copy_bandwidth_gbs']:.1f} GB/s (read + write).",
        "",
        *common.notes_section(report.get("notes") or []),
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
    lines += [markdown_table(
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
            row.append("-" if v is None else f"{format_number(v[key])} ({v['vs_dense']:.2f}); "
                       f"{format_number(v[pre + 'min_ms'])}")
        rows.append(row)
    lines += [markdown_table(["mask", "sparsity", *names], rows), ""]
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
            markdown_table(
                ["contender", "ms", "IQR ms", "min ms", "x unmasked F.embedding (dense grad)",
                 "speed-up vs naive W * M"],
                [[k, v[key], f"{v[pre + 'q1_ms']:.3g}-{v[pre + 'q3_ms']:.3g}",
                  v[pre + "min_ms"], v["vs_unmasked_dense"], v["speedup_vs_naive"]]
                 for k, v in tr["steps"].items()]),
            "",
        ]
    lines.append(f"Elapsed: {report['elapsed_s']:.0f} s.")
    return "\n".join(lines)


def plot(report: dict):
    """Stored bytes, lookup time and (with training) the training step; the figure, or None."""
    cases = report["cases"]
    if not cases:
        return None
    key = common.ms_key(report["clock"])
    panels = 3 if report.get("training") else 2
    fig, axes = figure(panels, width=5.2 * panels, height=4.2)
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
    style_axes(ax, xlabel="element sparsity", ylabel="stored bytes / dense bytes",
               title="stored bytes")
    ax = axes[1]
    sel = sorted((r for r in cases if r["mask"] == "random"), key=lambda r: r["sparsity"]) or \
        sorted(cases, key=lambda r: r["sparsity"])
    xs = [r["sparsity"] for r in sel]
    line_color = dict(colors, **{"dense F.embedding": "k", "chosen int8": "tab:purple"})
    for n in sel[0]["lookup"]:
        style = "--" if n.startswith("dense") else ":^" if "int8" in n else "-o"
        ax.plot(xs, [r["lookup"][n][key] for r in sel], style, label=n, markersize=4,
                color=line_color.get(n))
    ax.set_ylim(bottom=0)
    clock = "CPU" if report["clock"] == "cpu" else "wall"
    style_axes(ax, xlabel="element sparsity", ylabel=f"ms per batch (median, {clock})",
               title=f"lookup of {report['args']['batch']} ids ({sel[0]['mask']} masks)")
    if panels == 3:
        ax = axes[2]
        steps = report["training"]["steps"]
        names = list(steps)
        ax.barh(range(len(names)), [steps[n][key] for n in names],
                color=["tab:red" if n.startswith("naive") else "tab:gray" if
                       n.startswith("F.") else "tab:green" for n in names])
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xscale("log")
        style_axes(ax, xlabel=f"ms per step (median, {clock}, log)",
                   title="training lookup + backward", legend=False)
    fig.suptitle(f"{report['args']['rows']} x {report['args']['dim']} float32 table "
                 f"({report['machine'].get('cpu')}, {report['threads']} threads)")
    return fig


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("embedding", "Bytes, lookups and masked training of pruned "
                          "embedding tables; writes JSON, Markdown and a PNG.")
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
    common.add_timing_args(p, budget=(1.0, 0.1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copy-mb", type=float, default=None,
                   help="copy-bandwidth probe size in MB (default 256, quick 32)")
    p.add_argument("--tag", default=None, help="file tag (default cpu, cpu-quick with --quick)")
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``embedding-<tag>``: ``--tag``, default ``cpu`` (``cpu-quick`` with --quick)."""
    return "embedding-" + common.safe_name(args.tag or ("cpu-quick" if args.quick else "cpu"))


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    return dict(
        common.timing_config(args, budget=(1.0, 0.1)),
        rows=args.rows or (20_000 if args.quick else 1_000_000),
        dim=args.dim,
        sparsities=args.sparsity or ([0.5, 0.9, 0.98] if args.quick else list(SPARSITIES)),
        masks=list(args.masks), batch=args.batch, id_batches=args.id_batches,
        training=not args.no_training, train_sparsity=args.train_sparsity,
        train_mask=args.train_mask, threads=args.threads, backend=args.backend, seed=args.seed,
    )


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the benchmark; returns the report (also written to ``embedding-<tag>.json``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    elapsed = stopwatch()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    proto = run_protocol(args)
    rows, sparsities = proto["rows"], proto["sparsities"]
    if any(not 0 <= s < 1 for s in sparsities):
        raise SystemExit(f"bench.embedding: --sparsity values must be in [0, 1), got {sparsities}")
    cfg = common.timing_config(args, budget=(1.0, 0.1))
    cfg.update(backend=args.backend, clock=headline_clock())
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    tag = dest.stem.removeprefix("embedding-")
    info = common.machine(copy_mb=args.copy_mb or (32 if args.quick else None))
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
    notes = common.finish_machine(info)
    at90 = [c for c in cases if c["mask"] == "random" and math.isclose(c["sparsity"], 0.9)]
    if at90:
        notes.append(f"random 90% sparsity: {at90[0]['ratio_vs_dense']:.2f}x fewer bytes than "
                     f"dense ({at90[0]['choice']}); goal >= 6x "
                     f"({'met' if at90[0]['ratio_vs_dense'] >= 6 else 'NOT met'})")
    report = {
        "suite": "embedding", "tag": tag, "machine": info,
        "copy_bandwidth_gbs": info["copy_bandwidth_gbs"],
        "threads": torch.get_num_threads(), "clock": cfg["clock"],
        "args": {"rows": rows, "dim": args.dim, "batch": args.batch, "sparsities": sparsities,
                 "masks": args.masks, "train_sparsity": args.train_sparsity,
                 "train_mask": args.train_mask, "backend": args.backend, "seed": args.seed,
                 "id_batches": args.id_batches, "threads": args.threads,
                 "quick": args.quick},
        "protocol": cfg, "dense_bytes": W.numel() * W.element_size(),
        "cases": cases, "training": training, "notes": notes,
        "elapsed_s": elapsed(),
    }
    common.write_result(dest, report, render_markdown(report),
                        None if args.no_plot else plot(report))
    return report


if __name__ == "__main__":
    main()
