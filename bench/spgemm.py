"""Sparse features times a pruned weight: does ``spgemm`` turn the weight's sparsity into time?

``python -m bench.spgemm [--dataset cora] [--sparsity 0.866 0.988]`` times the first layer of a
GCN on bag-of-words features, ``X (N x F, CSR) @ W^T (F x H)`` with ``W`` pruned (random
element mask at each sparsity), interleaved:

- ``spmm``: ``spmm(X, W^T)`` with the dense ``W^T`` (today's route: its cost ignores the mask);
- ``spgemm``: ``spgemm(X, CSR(W^T))``, the weight's kept entries only (CSR built once);
- with ``--train``, both forward and backward with the gradient reaching ``W``
  (``spmm train``, ``spgemm train``; the spgemm CSR's values gathered from ``W`` each step).

X is the dataset's features (Cora: 2708 x 1433, 1.3 % dense) when the data folder has them,
else a random matrix of the same shape and density. Writes ``spgemm-<tag>.{json,md}`` in
``bench/results/local/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

import torch

from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock

from . import common

PUBLISHED: Dict[str, str] = {}
ROUTES = ("spmm", "spgemm")
TRAIN_ROUTES = ("spmm train", "spgemm train")


def _features(args: argparse.Namespace):
    """``(X as CSR, source)``: the dataset's features, or random ones of Cora's shape."""
    from sparselth import CSR

    try:
        from sparselth.data import load_planetoid
        data = load_planetoid(args.dataset, args.data)
        return CSR.from_dense(data.x), args.dataset
    except Exception as exc:  # no data folder here: a stand-in of the same shape and density
        print(f"bench.spgemm: {args.dataset} not loaded ({exc}); random features of Cora's "
              "shape", file=sys.stderr)
        from sparselth.testing import random_csr
        X = random_csr(2708, 1433, 0.0127, empty_rows=0.0, seed=args.seed)
        return X.with_values(X.val.abs()), "random 2708 x 1433, 1.27 % dense"


def run(args: argparse.Namespace, info: Dict[str, Any]) -> Dict[str, Any]:
    from sparselth import CSR
    from sparselth.ops import spgemm, spmm

    proto = run_protocol(args)
    torch.manual_seed(args.seed)
    X, source = _features(args)
    X.t()
    F, H = X.shape[1], proto["hidden"]
    g = torch.Generator().manual_seed(args.seed)
    clock = headline_clock()
    key = common.ms_key(clock)
    rows: List[Dict[str, Any]] = []
    for sp in proto["sparsity"]:
        W = torch.randn(H, F, generator=g) * (torch.rand(H, F, generator=g) >= sp)
        Wt = W.t().contiguous()
        B = CSR.from_dense(Wt).index_as(X.index_dtype)
        fns = {"spmm": lambda: spmm(X, Wt), "spgemm": lambda: spgemm(X, B)}
        bad = common.wrong_result("spgemm", spgemm(X, B), spmm(X, Wt))
        if proto["train"]:
            fns.update(_train_contenders(X, W, B))
        if bad:
            raise RuntimeError(f"bench.spgemm: {bad}")
        m = common.time_contenders(fns, {"budget_s": proto["budget_s"]}, clock=clock)
        rec = {"sparsity": sp, "nnz_x": X.nnz, "nnz_w": B.nnz,
               "macs_dense": X.nnz * H, "macs_sparse": _pair_macs(X, B),
               "timings": {k: t.summary() for k, t in m.timings.items()}}
        for k, t in rec["timings"].items():
            rec[f"{k}_ms"] = t[key]
        rows.append(rec)
        print({k: v for k, v in rec.items() if k != "timings"}, file=sys.stderr)
    return {"config": proto, "clock": clock, "threads": torch.get_num_threads(),
            "features": {"source": source, "shape": list(X.shape), "nnz": X.nnz},
            "machine": info, "rows": rows}


def _pair_macs(X, B) -> int:
    lens = (B.rowptr[1:] - B.rowptr[:-1]).long()
    return int(lens[X.col.long()].sum())


def _train_contenders(X, W, B) -> Dict[str, Any]:
    """Forward and backward with the gradient reaching ``W`` (masked): ``spmm(X, (W*M)^T)``
    against ``spgemm(X, CSR)`` with the CSR's values gathered from ``W``."""
    from sparselth.ops import spgemm, spmm

    H, F = W.shape
    mask = W != 0
    Wg = W.clone().requires_grad_(True)
    flat = B.col.long() * F + B.row()          # B = W^T: entry (f, h) is W[h, f]
    pattern = B.with_values(None)
    pattern.t()
    grad = torch.randn(X.shape[0], H)

    def dense():
        spmm(X, (Wg * mask).t()).backward(grad)
        Wg.grad = None

    def sparse():
        spgemm(X, pattern.with_values(Wg.reshape(-1)[flat])).backward(grad)
        Wg.grad = None

    spgemm(X, pattern.with_values(Wg.reshape(-1)[flat])).backward(grad)
    g_sparse, Wg.grad = Wg.grad, None
    spmm(X, (Wg * mask).t()).backward(grad)
    bad = common.wrong_result("spgemm train", g_sparse, Wg.grad)
    Wg.grad = None
    if bad:
        raise RuntimeError(f"bench.spgemm: {bad}")
    return {"spmm train": dense, "spgemm train": sparse}


def markdown(res: Dict[str, Any], tag: str) -> str:
    def ratio(r, base, route):
        b, t = r.get(f"{base}_ms"), r.get(f"{route}_ms")
        return format_number(b / t) if b and t else "-"

    table = []
    for r in res["rows"]:
        table.append([f"{100 * r['sparsity']:.1f}%", format_number(r["nnz_w"]),
                      format_number(r["macs_dense"] / max(r["macs_sparse"], 1))]
                     + [format_number(r.get(f"{k}_ms")) for k in ROUTES + TRAIN_ROUTES]
                     + [ratio(r, "spmm", "spgemm"), ratio(r, "spmm train", "spgemm train")])
    f = res["features"]
    return "\n".join([
        f"# Sparse features times a pruned weight ({tag})", "",
        f"`X @ W^T`: X = {f['source']} ({f['shape'][0]} x {f['shape'][1]}, {f['nnz']:,} stored), "
        f"H = {res['config']['hidden']}; median ms, interleaved; `spmm` multiplies by the dense "
        "`W^T`, `spgemm` by its kept entries. " + common.clock_sentence(res["clock"], res["threads"]),
        "", markdown_table(["weight sparsity", "kept entries", "MAC promise"]
                           + [f"{k} ms" for k in ROUTES + TRAIN_ROUTES]
                           + ["spgemm speed-up", "train speed-up"], table), "",
        *common.machine_section(res["machine"]),
    ])


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("spgemm", __doc__.splitlines()[0])
    p.add_argument("--dataset", default="cora", help="Planetoid features to use (default cora)")
    p.add_argument("--data", default=None, help="data folder (default $SPARSELTH_DATA)")
    p.add_argument("--hidden", type=int, default=512, help="H, the weight's rows (default 512)")
    p.add_argument("--sparsity", type=float, nargs="+", default=None,
                   help="weight sparsities (default 0.866 0.988)")
    p.add_argument("--budget", type=float, default=1.0, help="timing budget per case, seconds")
    p.add_argument("--train", action="store_true", help="also time forward + backward")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default=None, help="file tag (default cpu)")
    common.add_output_args(p, plot=False)
    return p


def output_name(args: argparse.Namespace) -> str:
    return "spgemm-" + common.safe_name(args.tag or "cpu")


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    return dict(dataset=args.dataset, hidden=args.hidden,
                sparsity=args.sparsity or [0.866, 0.988], budget_s=args.budget,
                threads=args.threads, seed=args.seed, train=args.train)


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.check_fractions(parser, "--sparsity", run_protocol(args)["sparsity"])
    torch.set_num_threads(args.threads)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    res = run(args, common.machine())
    res["notes"] = common.finish_machine(res["machine"])
    common.write_result(dest, res, markdown(res, dest.stem.removeprefix("spgemm-")), None)
    return res


if __name__ == "__main__":
    main()
