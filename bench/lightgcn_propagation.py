"""LightGCN propagation on a pruned embedding table: does its time follow the kept entries?

``python -m bench.lightgcn_propagation [--users 200000 --items 100000 --dim 64]`` times the first
propagation layer ``E_1 = A_norm @ (W * M)`` of a LightGCN on a synthetic user-item graph,
interleaved, for each table sparsity:

- ``dense``: ``spmm(A, W)`` on the unpruned table (the baseline);
- ``materialised``: ``spmm(A, W * M)``, the product formed first (what the reference does);
- ``x_mask``: ``spmm(A, W, x_mask=M)``, the mask read on the fly (no product materialised);
- ``rows dropped``: for row-granularity masks, ``A`` restricted to the columns of kept rows
  (``spmm(A[:, kept], W)``), so pruned rows are never read: this is the route whose time
  follows the kept entries.

Element-granularity masks leave every row partly alive, so no route can skip rows: their
time stays that of the dense table (the mask only saves bytes, see ``bench.embedding``).
Layers 2..K propagate dense activations and cost the same at any table sparsity.
Writes ``bench/results/lightgcn-propagation-<tag>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

from bench import common


def _drop_columns(A, keep_rows: torch.Tensor):
    """``A`` without the stored entries whose column is a pruned table row."""
    from sparselth import CSR

    keep = keep_rows[A.col.long()]
    rows = A.row()[keep]
    vals = A.val[keep]
    return CSR.from_coo(rows, A.col[keep].long(), vals, A.shape)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from sparselth.data import synthetic_interactions
    from sparselth.ops import spmm

    torch.manual_seed(args.seed)
    data = synthetic_interactions(args.users, args.items, avg_interactions=args.avg,
                                  seed=args.seed)
    A = data.adjacency()
    n = A.shape[0]
    W = torch.randn(n, args.dim)
    g = torch.Generator().manual_seed(args.seed)
    rows: List[Dict[str, Any]] = []
    for granularity in ("element", "row"):
        for sp in args.sparsity:
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
            if keep_rows is not None:
                Ak = _drop_columns(A, keep_rows)
                fns["rows dropped"] = lambda: spmm(Ak, W)
                ref = spmm(A, W * M)
                err = common.max_rel_error(spmm(Ak, W), ref)
                if err > 1e-4:
                    raise RuntimeError(f"rows-dropped route differs from the masked table: {err}")
            t = common.time_interleaved(fns, budget_s=args.budget)
            rec = {"granularity": granularity, "sparsity": sp, "nnz": A.nnz,
                   "nnz_rows_dropped": None if keep_rows is None else int(Ak.nnz)}
            for k, v in t.items():
                rec[f"{k}_ms"] = v.median * 1e3
            rows.append(rec)
            print(rec, file=sys.stderr)
    return {"config": vars(args) | {"out": str(args.out)}, "graph": {"nodes": n, "nnz": A.nnz},
            "machine": common.machine_info(), "rows": rows}


def render(res: Dict[str, Any], out: Path, tag: str, plot: bool) -> None:
    routes = ["dense", "materialised", "x_mask", "rows dropped"]
    table = []
    for r in res["rows"]:
        table.append([r["granularity"], f"{100 * r['sparsity']:.0f}%"]
                     + [common.fmt_num(r.get(f"{k}_ms")) if r.get(f"{k}_ms") is not None else "-"
                        for k in routes]
                     + [common.fmt_num(r["dense_ms"] / r["rows dropped_ms"])
                        if r.get("rows dropped_ms") else "-",
                        common.fmt_num(1 / (1 - r["sparsity"]))
                        if r["granularity"] == "row" else "-"])
    g = res["graph"]
    text = (f"# LightGCN propagation on a pruned table ({tag})\n\n"
            f"First layer `A_norm @ (W * M)`: synthetic user-item graph, {g['nodes']:,} nodes, "
            f"{g['nnz']:,} stored entries, d = {res['config']['dim']}; median ms, interleaved. "
            "Element masks keep every row partly alive, so only row masks can skip work.\n\n"
            + common.markdown_table(["mask", "sparsity"] + [f"{k} ms" for k in routes]
                                    + ["rows dropped speed-up", "kept-rows promise"], table)
            + "\n\n## Machine\n\n" + common.machine_markdown(res["machine"]) + "\n")
    common.write_json(out / f"lightgcn-propagation-{tag}.json", res)
    common.write_markdown(out / f"lightgcn-propagation-{tag}.md", text)
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for gran, style in (("element", "--"), ("row", "-")):
            rs = [r for r in res["rows"] if r["granularity"] == gran]
            for k in routes:
                ys = [r.get(f"{k}_ms") for r in rs]
                if all(y is not None for y in ys):
                    ax.plot([100 * r["sparsity"] for r in rs], ys, style, marker="o",
                            label=f"{k} ({gran})")
        ax.set_xlabel("table sparsity (%)")
        ax.set_ylabel("ms per propagation layer")
        ax.set_title("LightGCN layer 1 on a pruned table")
        ax.legend(fontsize=7)
        fig.tight_layout()
        tmp = out / f".lightgcn-propagation-{tag}.png.tmp"
        fig.savefig(tmp, format="png", dpi=120)
        tmp.replace(out / f"lightgcn-propagation-{tag}.png")
        plt.close(fig)


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--avg", type=float, default=20.0, help="interactions per user")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9, 0.95])
    p.add_argument("--budget", type=float, default=1.0, help="timing budget per case (s)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="cpu")
    p.add_argument("--out", type=Path, default=common.REPO_ROOT / "bench" / "results")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    for s in args.sparsity:
        if not 0.0 <= s < 1.0:
            p.error(f"--sparsity values must lie in [0, 1), got {s}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args)
    render(res, args.out, args.tag, not args.no_plot)
    return res


if __name__ == "__main__":
    main()
