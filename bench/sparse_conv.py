"""Sparse convolutions against dense oneDNN: the tiled inference kernel per kept MAC.

Run from the repository root::

    python -m bench.sparse_conv --threads 1 --tag t1     # the published 1-thread result
    python -m bench.sparse_conv --threads 2 --tag t2
    python -m bench.sparse_conv --quick                  # a minute

Cases (float32, random unstructured masks, ``torch.no_grad``): 3x3 convolutions with 256
channels at 8x8, 16x16 and 32x32, batch 1 and 16; 1x1 convolutions; 3x3 stride-1 and 4x4
stride-2 (a generator's upsampling) transposed convolutions. Contenders: ``dense``
(``F.conv2d`` / ``F.conv_transpose2d`` with the masked weight: oneDNN) and ``sparselth``
(:class:`sparselth.nn.SparseConv2d` / ``SparseConvTranspose2d`` in eval mode: the tiled kernel
of :mod:`sparselth.ops.sparse_conv_tiles`), both checked against a float64 oracle first.

Per case: the speed-up over dense, the dense rate (GMAC/s of all MACs), the sparse rate per
*kept* MAC and its fraction of the dense rate (``per-MAC``), realised = speed-up x density, and
two lower bounds on the sparse time: the kept MACs at the dense rate and the minimum bytes
(input, output, stored weights and 4-byte indices) at the machine's copy bandwidth. Protocol:
:mod:`sparselth.utils.timing` (warm-up, interleaved samples, medians on the headline clock), each
case timed ``--repeat`` times, the best session per contender kept.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock, stopwatch

from . import common

SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
# (name, kind, C_in, C_out, kernel, stride, padding, H=W, batch, sparsities or None: all)
CASES = [
    *[(f"3x3 256ch {h}x{h} b{b}", "conv", 256, 256, 3, 1, 1, h, b, None)
      for b in (1, 16) for h in (8, 16, 32)],
    *[(f"1x1 256ch {h}x{h} b{b}", "conv", 256, 256, 1, 1, 0, h, b, [0.6, 0.9])
      for b in (1, 16) for h in (16, 32)],
    *[(f"3x3 T 256ch {h}x{h} b{b}", "convT", 256, 256, 3, 1, 1, h, b, [0.6, 0.9])
      for b in (1, 16) for h in (8, 16, 32)],
    *[(f"4x4/2 T 256->128ch {h}x{h} b{b}", "convT", 256, 128, 4, 2, 1, h, b, [0.6, 0.9])
      for b in (1, 16) for h in (8, 16)],
]
QUICK = ["3x3 256ch 8x8 b1", "3x3 256ch 32x32 b16", "1x1 256ch 16x16 b1", "4x4/2 T 256->128ch 8x8 b16"]
SMOKE = [("3x3 8ch 6x6 b2", "conv", 8, 8, 3, 1, 1, 6, 2, [0.5]),
         ("4x4/2 T 8->4ch 5x5 b2", "convT", 8, 4, 4, 2, 1, 5, 2, [0.9])]
TARGETS_TEXT = ["faster than dense from 60% sparsity (3x3, 256 channels, 8-32 px, batch 1 and 16)",
                ">= 5x faster than dense at 90%",
                "per kept MAC >= 0.6 of dense oneDNN's rate"]

# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {"sparse-conv-t1": "--threads 1 --tag t1"}


def _layer(kind: str, cin: int, cout: int, k: int, s: int, p: int, sparsity: float, seed: int):
    import sparselth.nn as snn

    torch.manual_seed(seed)
    dense = (nn.Conv2d(cin, cout, k, s, p) if kind == "conv"
             else nn.ConvTranspose2d(cin, cout, k, s, p))
    mask = torch.rand(dense.weight.shape, generator=torch.Generator().manual_seed(seed)) >= sparsity
    with torch.no_grad():
        dense.weight.mul_(mask)
    cls = snn.SparseConv2d if kind == "conv" else snn.SparseConvTranspose2d
    return dense.eval(), cls.from_dense(dense, mask, backend="cpp").eval(), mask


def bench_case(case: tuple, sparsity: float, cfg: dict, bandwidth: float, seed: int,
               notes: List[str]) -> Optional[dict]:
    name, kind, cin, cout, k, s, p, h, b, _ = case
    dense, sparse, mask = _layer(kind, cin, cout, k, s, p, sparsity, seed)
    x = torch.randn(b, cin, h, h, generator=torch.Generator().manual_seed(seed + 1))
    fns = {"dense": lambda: dense(x), "sparselth": lambda: sparse(x)}
    with torch.no_grad():
        ref = dense.double()(x.double())
        dense.float()
        for n, f in fns.items():
            bad = common.wrong_result(n, f(), ref)
            if bad:
                notes.append(f"{name} s={sparsity}: {bad}")
                return None
        runs = [common.time_contenders(fns, cfg, clock=cfg["clock"]) for _ in range(cfg["repeat"])]
    key = common.ms_key(cfg["clock"])
    ms = {n: min(m[n].summary()[key] for m in runs) for n in fns}
    per_out = k * k * (cin if kind == "conv" else cout)      # MACs per output position
    out_pos = ref.numel() // ref.shape[1] if kind == "conv" else x.numel() // cin
    macs = (cout if kind == "conv" else cin) * per_out * out_pos
    kept = int(mask.sum()) * (ref.numel() // cout if kind == "conv" else x.numel() // cin)
    dense_rate = common.gmacs(macs, ms["dense"] / 1e3)
    sparse_rate = common.gmacs(kept, ms["sparselth"] / 1e3)
    nbytes = 4 * (x.numel() + ref.numel()) + 8 * int(mask.sum())
    return dict(case=name, kind=kind, size=h, batch=b, sparsity=sparsity, density=kept / macs,
                dense_ms=ms["dense"], sparse_ms=ms["sparselth"],
                speedup=ms["dense"] / ms["sparselth"], dense_gmacs=dense_rate,
                sparse_gmacs=sparse_rate, per_mac=sparse_rate / dense_rate,
                realised=ms["dense"] / ms["sparselth"] * kept / macs,
                flop_bound_ms=kept / (dense_rate * 1e9) * 1e3,
                byte_bound_ms=nbytes / (bandwidth * 1e9) * 1e3,
                runs={n: [m[n].summary() for m in runs] for n in fns})


def targets(results: List[dict]) -> List[List[Any]]:
    conv3 = [r for r in results if r["case"].startswith("3x3 256ch")]
    rows = []
    for r in conv3:
        if r["sparsity"] >= 0.6 - 1e-9:
            rows.append(["faster than dense from 60%", r["case"], r["sparsity"], r["speedup"],
                         "> 1", r["speedup"] > 1])
        if abs(r["sparsity"] - 0.9) < 1e-9:
            rows.append([">= 5x at 90%", r["case"], r["sparsity"], r["speedup"], ">= 5",
                         r["speedup"] >= 5])
            rows.append(["per kept MAC >= 0.6 of dense", r["case"], r["sparsity"], r["per_mac"],
                         ">= 0.6", r["per_mac"] >= 0.6])
    return rows


def markdown(report: dict) -> str:
    head = ["case", "sparsity", "dense ms", "sparse ms", "speed-up", "dense GMAC/s",
            "sparse GMAC/s (kept)", "per-MAC", "realised", "MAC bound ms", "byte bound ms"]
    rows = [[r["case"], f"{100 * r['sparsity']:.0f}%", r["dense_ms"], r["sparse_ms"], r["speedup"],
             r["dense_gmacs"], r["sparse_gmacs"], r["per_mac"], r["realised"], r["flop_bound_ms"],
             r["byte_bound_ms"]] for r in report["results"]]
    checks = targets(report["results"])
    met = {}
    for t, *_, ok in checks:
        met.setdefault(t, [0, 0])
        met[t][0] += bool(ok)
        met[t][1] += 1
    return "\n".join([
        f"# Sparse convolutions: {report['tag'] or 'run'}", "",
        "float32, inference (`torch.no_grad`), random unstructured masks; dense = `F.conv2d` / "
        "`F.conv_transpose2d` with the masked weight (oneDNN), sparse = "
        "`sparselth.nn.SparseConv2d` / `SparseConvTranspose2d` (the tiled kernel). "
        "*per-MAC* = sparse GMAC/s per kept MAC / dense GMAC/s; *realised* = speed-up x density; "
        "*MAC bound* = kept MACs at the dense rate, *byte bound* = input + output + weights at "
        f"the copy bandwidth ({format_number(report['machine'].get('copy_bandwidth_gbs'))} GB/s).",
        "", common.clock_sentence(report["clock"], report["threads"]), "",
        markdown_table(head, rows), "", "## Targets", "",
        *[f"- {t}: {a}/{n} met" for t, (a, n) in met.items()], "",
        markdown_table(["target", "case", "sparsity", "value", "goal", "met"],
                       [[t, c, s, v, g, "yes" if ok else "**no**"] for t, c, s, v, g, ok in checks]),
        "", *common.machine_section(report["machine"]), *common.notes_section(report["notes"]),
    ])


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("sparse_conv", "Sparse convolutions (tiled inference kernel) against "
                          "dense oneDNN per kept MAC; JSON and Markdown.")
    p.add_argument("--quick", action="store_true", help="four cases, short budgets")
    p.add_argument("--smoke", action="store_true", help="tiny cases (tests)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeat", type=int, default=2, help="interleaved sessions per case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copy-mb", type=float, default=256.0, help="copy-bandwidth probe size")
    p.add_argument("--tag", default="", help="file name tag: sparse-conv-<tag>")
    common.add_timing_args(p, budget=(0.4, 0.05))
    common.add_output_args(p, plot=False)
    return p


def output_name(args: argparse.Namespace) -> str:
    return "sparse-conv" + (f"-{common.safe_name(args.tag)}" if args.tag else "")


def run_protocol(args: argparse.Namespace) -> dict:
    cfg = common.timing_config(args, budget=(0.4, 0.05))
    return dict(quick=args.quick, smoke=args.smoke, threads=args.threads, repeat=args.repeat,
                seed=args.seed, **cfg)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    cfg = dict(common.timing_config(args, budget=(0.4, 0.05)), repeat=args.repeat,
               clock=headline_clock())
    info = common.machine(copy_mb=args.copy_mb)
    cases = SMOKE if args.smoke else [c for c in CASES if not args.quick or c[0] in QUICK]
    todo = [(c, s) for c in cases for s in (c[-1] or SPARSITIES)]
    from tqdm.auto import tqdm

    notes: List[str] = []
    results = []
    elapsed = stopwatch()
    for case, s in tqdm(todo, desc="sparse_conv", unit="case", disable=args.no_progress):
        r = bench_case(case, s, cfg, info["copy_bandwidth_gbs"], args.seed, notes)
        if r is not None:
            results.append(r)
    notes += common.finish_machine(info)
    report: Dict[str, Any] = dict(suite="sparse_conv", tag=args.tag, threads=torch.get_num_threads(),
                                  clock=cfg["clock"], targets=TARGETS_TEXT, machine=info,
                                  results=results, notes=notes, wall_s=elapsed())
    md = markdown(report)
    common.write_result(dest, report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
