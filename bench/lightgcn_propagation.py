"""LightGCN propagation on a pruned embedding table: does its time follow the kept entries?

``python -m bench.lightgcn_propagation [--users 200000 --items 100000 --dim 64]`` times the first
propagation layer ``E_1 = A_norm @ (W * M)`` of a LightGCN on a synthetic user-item graph,
interleaved, for each table sparsity:

- ``dense``: ``spmm(A, W)`` on the unpruned table (the baseline);
- ``materialised``: ``spmm(A, W * M)``, the product formed first (what the reference does);
- ``x_mask``: ``spmm(A, W, x_mask=M)``, the mask read on the fly (no product materialised);
- ``rows dropped``: for row-granularity masks, ``A`` restricted to the columns of kept rows
  (``spmm(A[:, kept], W)``), so pruned rows are never read;
- ``spgemm``: ``spgemm(A, CSR(W * M))``, the table's kept entries only, the CSR built once
  (what an evaluated or deployed ``LightGCN`` caches while its weights and mask are
  unchanged); its time follows the kept entries at any granularity.

With ``--train`` the same routes are also timed forward and backward (the gradient reaching
``W``), as a trained LightGCN runs them: ``dense train``, ``x_mask train`` and ``spgemm train``
(the CSR's values gathered from ``W`` each step, the pattern cached).
Layers 2..K propagate dense activations and cost the same at any table sparsity.
Timings: :mod:`sparselth.utils.timing`, ratios on the headline clock (CPU time with one thread,
the default, wall time with more). Writes ``lightgcn-propagation-<tag>.{json,md,png}`` in
``bench/results/`` for the published protocol (``PUBLISHED``), else in
``bench/results/local/``, or in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

import torch

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import format_number, markdown_table
from sparselth.utils.timing import headline_clock

from . import common

ROUTES = ("dense", "materialised", "x_mask", "rows dropped", "spgemm")
TRAIN_ROUTES = ("dense train", "x_mask train", "spgemm train")
# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {"lightgcn-propagation-cpu": "--users 100000 --items 50000"}


def _drop_columns(A, keep_rows: torch.Tensor):
    """``A`` without the stored entries whose column is a pruned table row."""
    from sparselth import CSR

    keep = keep_rows[A.col.long()]
    rows = A.row()[keep]
    vals = A.val[keep]
    return CSR.from_coo(rows, A.col[keep].long(), vals, A.shape)


def _train_contenders(A, W, M, E) -> Dict[str, Any]:
    """Forward and backward of layer 1 with the gradient reaching ``W``, per route; the
    spgemm route gathers the CSR's values from ``W`` each step (pattern and index cached)."""
    from sparselth.ops import spgemm, spmm

    Wg = W.clone().requires_grad_(True)
    n, d = W.shape
    flat = (E.row() * d + E.col.long())
    pattern = E.with_values(None)
    pattern.t()
    A.t()
    grad = torch.randn(n, d)

    def dense():
        spmm(A, Wg).backward(grad)
        Wg.grad = None

    def x_mask():
        spmm(A, Wg, x_mask=M).backward(grad)
        Wg.grad = None

    def sparse():
        spgemm(A, pattern.with_values(Wg.reshape(-1)[flat])).backward(grad)
        Wg.grad = None

    # the spgemm route's gradient equals the masked dense route's
    spgemm(A, pattern.with_values(Wg.reshape(-1)[flat])).backward(grad)
    g_sparse, Wg.grad = Wg.grad, None
    spmm(A, Wg, x_mask=M).backward(grad)
    bad = common.wrong_result("spgemm train", g_sparse, Wg.grad)
    Wg.grad = None
    if bad:
        raise RuntimeError(f"bench.lightgcn_propagation: {bad}")
    return {"dense train": dense, "x_mask train": x_mask, "spgemm train": sparse}


def run(args: argparse.Namespace, info: Dict[str, Any]) -> Dict[str, Any]:
    from sparselth import CSR
    from sparselth.data import synthetic_interactions
    from sparselth.ops import spgemm, spmm

    proto = run_protocol(args)
    torch.manual_seed(args.seed)
    data = synthetic_interactions(proto["users"], proto["items"], avg_interactions=args.avg,
                                  seed=args.seed)
    A = data.adjacency()
    n = A.shape[0]
    W = torch.randn(n, args.dim)
    g = torch.Generator().manual_seed(args.seed)
    clock = headline_clock()
    key = common.ms_key(clock)
    rows: List[Dict[str, Any]] = []
    for granularity in ("element", "row"):
        for sp in proto["sparsity"]:
            if granularity == "element":
                M = torch.rand(n, args.dim, generator=g) >= sp
                keep_rows = None
            else:
                keep_rows = torch.rand(n, generator=g) >= sp
                M = keep_rows.unsqueeze(1).expand(n, args.dim).contiguous()
            fns = {
                "dense": lambda: spmm(A, W),
                "materialised": lambda: spmm(A, W * M),
                "x_mask": lambda: spmm(A, W, x_mask=M),
            }
            E = CSR.from_dense(W * M).index_as(A.index_dtype)
            fns["spgemm"] = lambda: spgemm(A, E)
            expected = spmm(A, W * M)
            checks = {"spgemm": spgemm(A, E)}
            if keep_rows is not None:
                Ak = _drop_columns(A, keep_rows)
                fns["rows dropped"] = lambda: spmm(Ak, W)
                checks["rows dropped"] = spmm(Ak, W)
            if proto["train"]:
                fns.update(_train_contenders(A, W, M, E))
            for name, got in checks.items():
                bad = common.wrong_result(name, got, expected)
                if bad:
                    raise RuntimeError(f"bench.lightgcn_propagation: {bad}")
            m = common.time_contenders(fns, {"budget_s": proto["budget_s"]}, clock=clock)
            rec = {"granularity": granularity, "sparsity": sp, "nnz": A.nnz,
                   "nnz_rows_dropped": None if keep_rows is None else int(Ak.nnz),
                   "nnz_table": E.nnz,
                   "timings": {k: t.summary() for k, t in m.timings.items()}}
            for k, t in rec["timings"].items():
                rec[f"{k}_ms"] = t[key]
            rows.append(rec)
            print({k: v for k, v in rec.items() if k != "timings"}, file=sys.stderr)
    return {"config": proto, "clock": clock, "threads": torch.get_num_threads(),
            "graph": {"nodes": n, "nnz": A.nnz}, "machine": info, "rows": rows}


def _ratio(r: Dict[str, Any], base: str, route: str) -> str:
    b, t = r.get(f"{base}_ms"), r.get(f"{route}_ms")
    return format_number(b / t) if b and t else "-"


def markdown(res: Dict[str, Any], tag: str) -> str:
    table, train = [], []
    for r in res["rows"]:
        table.append([r["granularity"], f"{100 * r['sparsity']:.0f}%"]
                     + [format_number(r.get(f"{k}_ms")) for k in ROUTES]
                     + [_ratio(r, "dense", "rows dropped"), _ratio(r, "dense", "spgemm"),
                        format_number(1 / (1 - r["sparsity"]))])
        if r.get("spgemm train_ms"):
            train.append([r["granularity"], f"{100 * r['sparsity']:.0f}%"]
                         + [format_number(r.get(f"{k}_ms")) for k in TRAIN_ROUTES]
                         + [_ratio(r, "dense train", "spgemm train"),
                            _ratio(r, "x_mask train", "spgemm train")])
    g = res["graph"]
    lines = [
        f"# LightGCN propagation on a pruned table ({tag})", "",
        f"First layer `A_norm @ (W * M)`: synthetic user-item graph, {g['nodes']:,} nodes, "
        f"{g['nnz']:,} stored entries, d = {res['config']['dim']}; median ms, interleaved. "
        "`spgemm` reads only the table's kept entries (CSR built once, as an evaluated model "
        "caches it); speed-ups are against the dense table. "
        + common.clock_sentence(res["clock"], res["threads"]), "",
        markdown_table(["mask", "sparsity"] + [f"{k} ms" for k in ROUTES]
                       + ["rows dropped speed-up", "spgemm speed-up", "kept promise"], table), "",
    ]
    if train:
        lines += ["Forward and backward (gradient reaching `W`), median ms:", "",
                  markdown_table(["mask", "sparsity"] + [f"{k} ms" for k in TRAIN_ROUTES]
                                 + ["spgemm vs dense", "spgemm vs x_mask"], train), ""]
    return "\n".join(lines + common.machine_section(res["machine"]))


def plot(res: Dict[str, Any]):
    """ms per route against the table sparsity, element and row masks; the figure."""
    fig, ax = figure(width=6, height=4)
    for gran, style in (("element", "--"), ("row", "-")):
        rs = [r for r in res["rows"] if r["granularity"] == gran]
        for k in ROUTES:
            ys = [r.get(f"{k}_ms") for r in rs]
            if all(y is not None for y in ys):
                ax.plot([100 * r["sparsity"] for r in rs], ys, style, marker="o",
                        label=f"{k} ({gran})")
    style_axes(ax, xlabel="table sparsity (%)",
               ylabel=f"ms per propagation layer ({res['clock']} time)",
               title="LightGCN layer 1 on a pruned table")
    return fig


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("lightgcn_propagation", __doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2000 users, 1000 items, sparsities 0 and 0.9, budget 0.05")
    p.add_argument("--users", type=int, default=None, help="users (default 200000)")
    p.add_argument("--items", type=int, default=None, help="items (default 100000)")
    p.add_argument("--avg", type=float, default=20.0, help="interactions per user")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--sparsity", type=float, nargs="+", default=None,
                   help="table sparsities (default 0 0.5 0.8 0.9 0.95)")
    p.add_argument("--budget", type=float, default=None,
                   help="timing budget per case in seconds (default 1, quick 0.05)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", action="store_true",
                   help="also time forward + backward of each route (gradient reaching W)")
    p.add_argument("--tag", default=None, help="file tag (default cpu, cpu-quick with --quick)")
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``lightgcn-propagation-<tag>``: default ``cpu`` (``cpu-quick`` with --quick)."""
    return "lightgcn-propagation-" + common.safe_name(
        args.tag or ("cpu-quick" if args.quick else "cpu"))


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    q = args.quick
    return dict(
        users=args.users or (2000 if q else 200_000), items=args.items or (1000 if q else 100_000),
        avg=args.avg, dim=args.dim,
        sparsity=args.sparsity or ([0.0, 0.9] if q else [0.0, 0.5, 0.8, 0.9, 0.95]),
        budget_s=args.budget if args.budget is not None else (0.05 if q else 1.0),
        threads=args.threads, seed=args.seed, train=args.train,
    )


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.check_fractions(parser, "--sparsity", run_protocol(args)["sparsity"])
    torch.set_num_threads(args.threads)
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    tag = dest.stem.removeprefix("lightgcn-propagation-")
    res = run(args, common.machine())
    res["notes"] = common.finish_machine(res["machine"])
    common.write_result(dest, res, markdown(res, tag), None if args.no_plot else plot(res))
    return res


if __name__ == "__main__":
    main()
