"""Kernel-level contests against the vendor libraries on one device: SDDMM against
``torch.sparse.sampled_addmm`` (cuSPARSE on a GPU), embedding lookups from a pruned table
against ``F.embedding`` on the dense table, and a pruned 3x3 convolution against ``F.conv2d``
(cuDNN on a GPU). Every contender is checked against its dense computation before it is timed
(interleaved, :mod:`sparselth.utils.timing`, the device synchronised per sample).

``python -m bench.gpu_micro --device cuda`` is a step of ``bench.gpu_check``; on ``--device
cpu`` the same code runs (tests, and a CPU reading of the same table).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import measure

from . import common

PUBLISHED: dict[str, str] = {}


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("gpu_micro", "SDDMM, embedding lookups and a pruned convolution "
                          "against the vendor libraries on one device.")
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", type=float, default=1.0,
                   help="problem size factor (tests use a small one)")
    p.add_argument("--budget", type=float, default=0.5, help="seconds of timing per contender")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder")
    return p


def run_protocol(args: argparse.Namespace) -> dict[str, Any]:
    return {"device": args.device, "scale": args.scale, "budget": args.budget,
            "seed": args.seed}


def output_name(args: argparse.Namespace) -> str:
    return f"gpu-micro-{torch.device(args.device).type}"


def _check(name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
    if not torch.allclose(got.float(), ref.float(), atol=1e-3, rtol=1e-3):
        raise AssertionError(f"{name}: wrong result, max error "
                             f"{(got.float() - ref.float()).abs().max().item():.3g}")


def sddmm_case(dev: torch.device, scale: float, g: torch.Generator) -> tuple[str, dict]:
    from sparselth.ops import sddmm
    from sparselth.testing import random_csr
    n, f = max(64, int(20000 * scale)), 64
    A = random_csr(n, n, density=min(0.5, 16 / n), power_law=True, seed=1).to(dev)
    X, Y = (torch.randn(n, f, generator=g).to(dev) for _ in range(2))
    At = A.to_torch()
    ref = (X[A.row()] * Y[A.col.long()]).sum(-1)
    fns = {"sparselth": lambda: sddmm(A, X, Y),
           "torch.sparse.sampled_addmm": lambda: torch.sparse.sampled_addmm(At, X, Y.t(),
                                                                            beta=0.0)}
    _check("sddmm", fns["sparselth"](), ref)
    _check("sampled_addmm", fns["torch.sparse.sampled_addmm"]().values(), ref)
    return f"SDDMM n={n}, nnz={A.nnz}, F={f}", fns


def embedding_case(dev: torch.device, scale: float, g: torch.Generator) -> tuple[str, dict]:
    from sparselth.nn import CompressedEmbedding
    rows, dim, batch = max(1000, int(300_000 * scale)), 64, 4096
    W = torch.randn(rows, dim, generator=g)
    M = torch.rand(rows, dim, generator=g) < 0.1
    table = CompressedEmbedding.from_masked(W, M).to(dev)
    dense = (W * M).to(dev)
    ids = torch.randint(0, rows, (batch,), generator=g).to(dev)
    fns = {f"sparselth ({table.format})": lambda: table(ids),
           "F.embedding (dense)": lambda: F.embedding(ids, dense)}
    _check("embedding", next(iter(fns.values()))(), dense[ids])
    return f"embedding lookup {rows}x{dim} at 90 % sparsity, {batch} ids", fns


def conv_case(dev: torch.device, scale: float, g: torch.Generator) -> tuple[str, dict]:
    from sparselth.nn import SparseConv2d
    c, hw, n = 256, max(8, int(28 * scale ** 0.5)), 16
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    mask = torch.rand(conv.weight.shape, generator=g) < 0.1
    sparse = SparseConv2d.from_dense(conv, mask).to(dev).eval()
    dense = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    with torch.no_grad():
        dense.weight.copy_(conv.weight * mask)
    dense = dense.to(dev).eval()
    x = torch.randn(n, c, hw, hw, generator=g).to(dev)
    fns = {"sparselth SparseConv2d": lambda: sparse(x), "F.conv2d (dense)": lambda: dense(x)}
    with torch.no_grad():
        _check("conv", sparse(x), dense(x))
    return f"3x3 conv {c}->{c}, {n}x{hw}x{hw}, 90 % of weights pruned", fns


CASES: tuple[Callable, ...] = (sddmm_case, embedding_case, conv_case)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is usable here")
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    g = torch.Generator().manual_seed(args.seed)
    info = common.machine(device=dev if dev.type == "cuda" else None)
    rows = []
    with torch.no_grad():
        for case in CASES:
            title, fns = case(dev, args.scale, g)
            m = measure(fns, clock="wall", budget_s=args.budget, min_reps=3, max_reps=200,
                        device=dev)
            base = list(fns)[1]
            rows.append({"case": title, "ms": {k: m.ms(k) for k in fns},
                         "speedup_vs_vendor": m.speedup(base, list(fns)[0]), "vendor": base})
    rep = {"benchmark": "gpu_micro", "device": str(dev), "rows": rows, "machine": info}
    rep["notes"] = common.finish_machine(info)
    table = markdown_table(["case", "contender", "ms (wall median)", "vs vendor"],
                           [[r["case"], k, v, format_number(r["ms"][r["vendor"]] / v)]
                            for r in rows for k, v in r["ms"].items()])
    md = "\n".join([f"# Kernels against the vendor libraries on {dev.type}", "", table, "",
                    *[f"- {n}" for n in rep["notes"]], "", *common.machine_section(info)])
    common.write_result(dest, rep, md)
    print(md)
    return rep


if __name__ == "__main__":
    main()
