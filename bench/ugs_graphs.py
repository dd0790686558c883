"""UGS on graph classification: graph lottery tickets over a whole TU dataset of graphs.

``python -m bench.ugs_graphs --dataset MUTAG --data datasets --rounds 15 --seeds 0 1 2``
(also ``python -m bench.ugs --task graph --model gin --dataset MUTAG ...``, which hands over
to this suite) runs :class:`sparselth.prune.UGS` with ``task="graph"`` on a
:class:`sparselth.models.GINGraphClassifier` (one learnable mask value per stored edge of the
dataset; 3 GIN layers of width 64 with sum aggregation and sum readout) trained by
:class:`sparselth.train.GraphClassificationTask` (mini-batch Adam; split: the GIN reference's
fold 0 with a stratified 10 % validation part where the dataset has folds, else a seeded
stratified 80/10/10 split), once per seed for UGS and for random pruning (the same seeds, so
the two are paired), resumable in ``--runs`` (default ``runs/ugs-graphs``). The published
PROTEINS result prunes faster per round (``--rounds 8 --prune-graph 0.1 --prune-weight 0.3
--epochs 50 --batch-size 128``) to stay within minutes per seed on one CPU thread.

It writes ``ugs-gin-graphs-<dataset>.{json,md,png}`` (``bench/results/`` for the published
protocol, else ``bench/results/local/``, or ``--out``): per round the edge and weight
sparsity, the test accuracy at the best validation epoch (mean ± std over seeds) of UGS and
of random pruning, and for the first seed's tickets what the pruned *dataset* saves:

- ``bytes_ratio``: stored bytes of the pruned dataset's index arrays (``rowptr`` + ``col``;
  a pruned dataset needs no edge values) over those of the dense dataset;
- ``encode_ratio``: time of one encoding epoch (every graph once, mini-batches of
  ``--encode-batch`` graphs gathered by :class:`sparselth.data.GraphLoader`, the ticket's
  GIN in eval mode, no grad) of the pruned dataset over the dense dataset carrying the mask as
  edge values (the same logits, checked before timing), timed interleaved (A B A B ...) with
  :mod:`sparselth.utils.timing`, medians of CPU time (one thread; wall time in the JSON).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import markdown_table
from sparselth.utils.timing import stopwatch

from . import common

# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED: dict[str, str] = {
    "ugs-gin-graphs-MUTAG": "--dataset MUTAG --rounds 15 --seeds 0 1 2 --threads 1",
    "ugs-gin-graphs-PROTEINS": "--dataset PROTEINS --rounds 8 --prune-graph 0.1 "
                               "--prune-weight 0.3 --epochs 50 --batch-size 128 --seeds 0 1 2 "
                               "--threads 1",
}

BASELINES = ("ugs", "random")
TIMING_BUDGET = (0.5, 0.05)   # seconds of timing per contender: full, quick

NOTES = [
    "No reference code or paper numbers exist for UGS on graph classification; this is the "
    "UGS procedure (trainable masks, L1 sign sub-gradients, global thresholds, rewinding to "
    "θ0) applied to a dataset of graphs.",
    "The graph mask has one value per stored CSR entry of the dataset (TU files store each "
    "undirected edge in both directions, so the two directions are pruned separately), as UGS "
    "does for node classification.",
    "The L1 sub-gradient of the graph mask is added after every mini-batch backward to the "
    "entries of the batch's graphs only (under Adam a penalty alone moves an entry by about the "
    "learning rate per step, whatever its coefficient, so penalising graphs outside the batch "
    "would rank their edges by when they were last seen); the weight masks' term acts on every "
    "step, as in the node-classification reference.",
    "Only the training graphs' edges are pruned (by UGS and by random pruning): validation and "
    "test graphs take no part in the loss, so their mask values cannot be learned, and they are "
    "kept whole. The edge sparsity in the tables is over the whole stored dataset.",
]


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("ugs_graphs", "UGS (graph and weight lottery tickets) on TU graph "
                          "classification, beside random pruning; what the pruned dataset "
                          "saves in bytes and encoding time.")
    p.add_argument("--task", choices=["graph"], default="graph")
    p.add_argument("--model", choices=["gin"], default="gin")
    p.add_argument("--dataset", default="MUTAG", help="TU dataset name (MUTAG, PROTEINS, ...)")
    p.add_argument("--data", type=Path, default=common.default_data_dir(),
                   help="folder holding tu/<name> or gin/<name>")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES))
    p.add_argument("--epochs", type=int, default=100,
                   help="epochs of the mask search and of fix-mask training per round")
    p.add_argument("--prune-graph", type=float, default=0.05)
    p.add_argument("--prune-weight", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--s1", type=float, default=1e-2)
    p.add_argument("--s2", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--encode-batch", type=int, default=128,
                   help="graphs per batch of the timed encoding epoch")
    p.add_argument("--no-timing", action="store_true", help="no encode-time measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--runs", type=Path, default=None,
                   help="run-folder root, a run resumes from here (default runs/ugs-graphs, "
                   "runs/local/ugs-graphs for a protocol that is not the published one)")
    common.add_timing_args(p, budget=TIMING_BUDGET)
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``ugs-gin-graphs-<dataset>``."""
    return f"ugs-{args.model}-graphs-{common.safe_name(args.dataset)}"


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_fractions(parser, "--prune-graph", [args.prune_graph])
    common.check_fractions(parser, "--prune-weight", [args.prune_weight])
    for flag, v, low in (("--rounds", args.rounds, 0), ("--epochs", args.epochs, 1),
                         ("--batch-size", args.batch_size, 1), ("--hidden", args.hidden, 1),
                         ("--layers", args.layers, 1), ("--encode-batch", args.encode_batch, 1)):
        if v < low:
            parser.error(f"{flag} must be >= {low}, got {v}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")


def config(args: argparse.Namespace, seed: int, baseline: str):
    from sparselth.prune import UGSConfig

    return UGSConfig(task="graph", rounds=args.rounds, prune_graph=args.prune_graph,
                     prune_weight=args.prune_weight, s1=args.s1, s2=args.s2, lr=args.lr,
                     weight_decay=args.weight_decay, mask_epochs=args.epochs,
                     fix_epochs=args.epochs, seed=seed, baseline=baseline)


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"hidden": args.hidden, "num_layers": args.layers, "dropout": args.dropout}


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    cfg = config(args, 0, "ugs").to_dict()
    for k in ("seed", "baseline"):
        cfg.pop(k)
    timing = None if args.no_timing else common.timing_config(args, budget=TIMING_BUDGET)
    return dict(cfg, dataset=args.dataset, model=args.model, seeds=list(args.seeds),
                baselines=list(args.baselines), batch_size=args.batch_size,
                split_seed=args.split_seed, threads=args.threads, encode_batch=args.encode_batch,
                timing=timing, **model_settings(args))


# --------------------------------------------------------------------------- dataset savings


def index_bytes(ds: Any) -> int:
    """Stored bytes of a dataset's edge index arrays (``rowptr`` + ``col``)."""
    adj = ds.data.adj
    return adj.rowptr.numel() * adj.rowptr.element_size() + adj.col.numel() * \
        adj.col.element_size()


def encode_epoch(model: torch.nn.Module, data: Any, batch_size: int) -> torch.Tensor:
    """Logits of every graph of ``data`` (a GraphBatch; its ``adj`` values, if any, weight
    the edges), in mini-batches gathered by :class:`GraphLoader`."""
    from sparselth.data import GraphLoader

    return torch.cat([model.classify(b) for b in GraphLoader(data, batch_size)])


def dataset_savings(ds: Any, model: torch.nn.Module, keep: torch.Tensor, args: argparse.Namespace,
                    timing: dict[str, Any] | None) -> dict[str, Any]:
    """Bytes and (unless ``timing`` is None) encode time of the dataset pruned to ``keep``
    against the dense dataset with ``keep`` as edge values, for ``model`` (a ticket)."""
    from sparselth.sparse import GraphBatch

    pruned = ds.keep_edges(keep)
    d = ds.data
    masked = GraphBatch(d.x, d.adj.with_values(keep.to(d.x.dtype)), d.ptr, d.y)
    out = {"edges_stored_dense": d.adj.nnz, "edges_stored_pruned": pruned.data.adj.nnz,
           "bytes_dense": index_bytes(ds), "bytes_pruned": index_bytes(pruned)}
    out["bytes_ratio"] = out["bytes_pruned"] / out["bytes_dense"]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            a = encode_epoch(model, masked, args.encode_batch)
            b = encode_epoch(model, pruned.data, args.encode_batch)
            out["encode_max_abs_diff"] = float((a - b).abs().max())
            if timing is not None:
                m = common.time_contenders(
                    {"dense": lambda: encode_epoch(model, masked, args.encode_batch),
                     "pruned": lambda: encode_epoch(model, pruned.data, args.encode_batch)},
                    timing)
                out["encode_ms_dense"] = m.ms("dense")
                out["encode_ms_pruned"] = m.ms("pruned")
                out["encode_ratio"] = m.ms("pruned") / m.ms("dense")
                out["encode_timing"] = m.to_dict()
    finally:
        model.train(was)
    return out


# --------------------------------------------------------------------------- runs and report


def run_all(args: argparse.Namespace, ds: Any, runs: Path, timing: dict[str, Any] | None
            ) -> tuple[dict[str, dict[int, list[dict[str, Any]]]], str, dict[str, int]]:
    """``({baseline: {seed: records}}, split description, split sizes)``; the first seed's
    rounds measure the dataset savings."""
    from sparselth.models import GINGraphClassifier
    from sparselth.prune import UGS
    from sparselth.train import GraphClassificationTask

    task = GraphClassificationTask(ds, batch_size=args.batch_size, split_seed=args.split_seed)
    out: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for baseline in args.baselines:
        out[baseline] = {}
        for i, seed in enumerate(args.seeds):
            def measure(r, model, parts, first=(i == 0)):
                if not first:
                    return {}
                keep = parts["masks"]["edge_mask"].bool().cpu()
                return {"dataset": dataset_savings(ds, model, keep, args, timing)}

            ugs = UGS(lambda: GINGraphClassifier(ds, ds.num_features, ds.num_classes,
                                                 **model_settings(args)),
                      task, config(args, seed, baseline),
                      root=runs / common.safe_name(args.dataset), measure=measure,
                      progress=not args.no_progress)
            out[baseline][seed] = ugs.run()
    sizes = {"train": task.train_index.numel(), "val": task.val_index.numel(),
             "test": task.test_index.numel()}
    return out, task.split, sizes


def summarise(per: dict[str, dict[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per round: sparsities, per baseline the test accuracy (%) mean ± std over seeds, and
    the first seed's dataset savings."""
    rounds = []
    any_b = next(iter(per.values()))
    n = min(len(recs) for runs in per.values() for recs in runs.values())
    for r in range(n):
        first = next(iter(any_b.values()))[r]
        row: dict[str, Any] = {"round": r, "graph_sparsity": first["graph_sparsity"],
                               "weight_sparsity": first["weight_sparsity"],
                               "edges_kept": first["graph_edges_kept"],
                               "macs": first.get("macs")}
        for b, runs in per.items():
            acc = np.array([100 * recs[r]["test_acc"] for recs in runs.values()])
            val = np.array([100 * recs[r]["val_acc"] for recs in runs.values()])
            rec0 = next(iter(runs.values()))[r]
            row[b] = {"acc_mean": float(acc.mean()), "acc_std": float(acc.std()),
                      "val_mean": float(val.mean()),
                      "per_seed": {str(s): 100 * recs[r]["test_acc"] for s, recs in runs.items()},
                      "graph_sparsity": rec0["graph_sparsity"],
                      "weight_sparsity": rec0["weight_sparsity"],
                      "dataset": rec0.get("dataset")}
        rounds.append(row)
    return rounds


def aggregation_share(rec: dict[str, Any]) -> float | None:
    """Fraction of a round's exact MACs spent aggregating over edges (all GIN layers)."""
    macs = rec.get("macs_detail") or {}
    agg = sum(v.get("aggregate", 0) for k, v in macs.items() if k.startswith("conv"))
    return agg / macs["total"] if macs.get("total") else None


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(rep: dict[str, Any]) -> str:
    cfg = rep["protocol"]
    lines = [f"# UGS on graph classification: GIN on {rep['dataset']}", "",
             f"GIN {cfg['num_layers']}x{cfg['hidden']} (sum aggregation weighted by the edge "
             f"mask, sum readout of every layer, MLP classifier unmasked), mini-batch Adam lr "
             f"{cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']}, "
             f"{cfg['mask_epochs']} epochs of mask search and of fix-mask training per round; "
             f"p_g {cfg['prune_graph']}, p_θ {cfg['prune_weight']}, s1 {cfg['s1']}, s2 "
             f"{cfg['s2']}; seeds {rep['seeds']}. Split: {rep['split']}. Dataset: "
             f"{rep['data']['graphs']} graphs, {rep['data']['edges']} stored edges.", "",
             "Test accuracy (%) at the best validation epoch of fix-mask training, mean ± std "
             "over seeds. Dataset savings of the first seed's tickets: bytes = stored index "
             "arrays of the pruned dataset / the dense one; encode = one encoding epoch of the "
             "pruned dataset / the dense dataset with the mask as edge values (median CPU "
             "time, interleaved).", ""]
    head = ["round", "edge sparsity %", "weight sparsity %"]
    for b in rep["baselines"]:
        head += [f"{b} acc %", f"{b} bytes", f"{b} encode"]
    rows = []
    for row in rep["rounds"]:
        cells = [row["round"], f"{100 * row['graph_sparsity']:.1f}",
                 f"{100 * row['weight_sparsity']:.1f}"]
        for b in rep["baselines"]:
            s = row[b]
            d = s.get("dataset") or {}
            cells += [f"{s['acc_mean']:.2f} ± {s['acc_std']:.2f}", _fmt(d.get("bytes_ratio")),
                      _fmt(d.get("encode_ratio"))]
        rows.append(cells)
    lines += [markdown_table(head, rows), ""]
    sz = rep["split_sizes"]
    extra = [f"Split sizes: {sz['train']} training, {sz['val']} validation, {sz['test']} test "
             f"graphs (one test graph is {100 / sz['test']:.1f} points). The best validation "
             f"epoch (the first one on ties) has median {rep['best_epoch_median']:g} over all "
             "fix-mask trainings; with few validation graphs it is often an early epoch."]
    share = rep.get("aggregation_share_dense")
    extra += [] if share is None else [
        f"Edge aggregation is {100 * share:.1f} % of the dense model's multiply-adds in one "
        "encoding epoch (the GIN MLPs and the classifier are the rest, and the timed tickets "
        "run their masked weights dense), so removing edges saves encode time mainly through "
        "the smaller gathers and sparse products, not through MACs."]
    lines += common.notes_section(NOTES + extra + [
        f"Compute time {rep['compute_seconds']:.0f} s over all runs and rounds (training, "
        f"mask search, dataset measurements; {rep['seconds']:.0f} s in the call that wrote "
        "this file, finished rounds being read back from the run folders), torch threads "
        f"{rep['machine'].get('torch_threads')}."] + rep.get("notes", []))
    lines += common.machine_section(rep["machine"])
    return "\n".join(lines).rstrip() + "\n"


def plot(rep: dict[str, Any]):
    fig, axes = figure(3, width=15, height=4)
    rounds = rep["rounds"]
    for b, mark in zip(rep["baselines"], ("o-", "s--")):
        acc = [r[b]["acc_mean"] for r in rounds]
        err = [r[b]["acc_std"] for r in rounds]
        for ax, key in ((axes[0], "graph_sparsity"), (axes[1], "weight_sparsity")):
            ax.errorbar([100 * r[b][key] for r in rounds], acc, yerr=err, fmt=mark, capsize=3,
                        label="UGS" if b == "ugs" else "random pruning")
        pts = [(100 * r[b]["graph_sparsity"], r[b]["dataset"]) for r in rounds
               if r[b].get("dataset")]
        if pts:
            axes[2].plot([p[0] for p in pts], [p[1]["bytes_ratio"] for p in pts], mark,
                         label=f"{b}: stored bytes")
            if all("encode_ratio" in p[1] for p in pts):
                axes[2].plot([p[0] for p in pts], [p[1]["encode_ratio"] for p in pts], mark,
                             alpha=0.6, label=f"{b}: encode time")
    style_axes(axes[0], xlabel="edge sparsity (%)", ylabel="test accuracy (%)",
               title=f"GIN on {rep['dataset']}")
    style_axes(axes[1], xlabel="weight sparsity (%)", ylabel="test accuracy (%)")
    style_axes(axes[2], xlabel="edge sparsity (%)", ylabel="pruned / dense dataset")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    name = output_name(args)
    dest = common.result_path(name, args, PUBLISHED, parser=parser, protocol=run_protocol)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sparselth.data import load_tu

    for b in args.baselines:
        config(args, args.seeds[0], b)  # validates the arguments before any work
    runs = args.runs or (common.RUNS_DIR / ("" if dest.published else "local") / "ugs-graphs")
    machine = common.machine()
    clock = stopwatch()
    ds = load_tu(args.dataset, args.data)
    timing = None if args.no_timing else common.timing_config(args, budget=TIMING_BUDGET)
    per, split, sizes = run_all(args, ds, runs, timing)
    rep: dict[str, Any] = {
        "suite": "ugs_graphs", "dataset": args.dataset, "model": args.model,
        "command": "python -m bench.ugs_graphs " + " ".join(
            common.portable_argv(argv if argv is not None else sys.argv[1:])),
        "protocol": run_protocol(args), "seeds": list(args.seeds),
        "baselines": list(args.baselines), "split": split, "split_sizes": sizes,
        "best_epoch_median": float(np.median([rec["best_epoch"] for runs_ in per.values()
                                              for recs in runs_.values() for rec in recs])),
        "data": {"graphs": len(ds), "features": ds.num_features, "classes": ds.num_classes,
                 "edges": ds.data.adj.nnz, "layout": ds.layout},
        "rounds": summarise(per), "timing": timing,
        "records": {b: {str(s): recs for s, recs in runs_.items()} for b, runs_ in per.items()},
        "seconds": clock(), "machine": machine,
        "aggregation_share_dense": aggregation_share(
            next(iter(next(iter(per.values())).values()))[0]),
        "compute_seconds": float(sum(rec.get("seconds") or 0.0 for runs_ in per.values()
                                     for recs in runs_.values() for rec in recs)),
    }
    rep["notes"] = common.finish_machine(machine)
    fig = None if args.no_plot else plot(rep)
    common.write_result(dest, rep, markdown(rep), fig)
    last = rep["rounds"][-1]
    print(f"{name}: round {last['round']} edges {100 * last['graph_sparsity']:.1f} % weights "
          f"{100 * last['weight_sparsity']:.1f} % pruned: " + ", ".join(
              f"{b} {last[b]['acc_mean']:.2f} %" for b in args.baselines), file=sys.stderr)
    return rep


if __name__ == "__main__":
    main()
