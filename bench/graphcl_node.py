"""GraphCL's node-level protocol on Cora/CiteSeer (You et al. 2020, reference
``unsupervised_Cora_Citeseer``), run as ``python -m bench.graphcl --protocol node``.

Pre-trains :class:`sparselth.models.GraphCLNode` (1-layer GCN, 512 hidden, PReLU; DGI-style
bilinear discriminator with a sigmoid mean summary; the two augmented views' logits added
before the BCE, as the reference) with Adam lr 0.001, early stopping with patience 20 on
the training loss, through :class:`sparselth.train.NodeGraphCLPretrain`; the best-loss
checkpoint goes to ``runs/graphcl-node/<dataset>/<run name>.safetensors`` (``--runs``), where
``python -m bench.ugs --init graphcl`` finds it. Evaluation: logistic regression on the frozen
embeddings of the public Planetoid split, 50 runs x 100 Adam steps (lr 0.01), test accuracy
mean ± std over the runs.

Per dataset the augmentation, ratio and seed default to the scripts the UGS authors used to
make their pre-trained checkpoints (``cora_double_dgi.pkl``: subgraph, 0.1, seed 39;
``cite_double_dgi.pkl``: node dropping, 0.1, seed 31).

Writes ``graphcl-node-<dataset>.{json,md,png}``: the linear-evaluation accuracy beside DGI's
published numbers (GraphCL's own Cora/CiteSeer numbers are not verified here) and the
pre-training loss curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import markdown_table

from . import common

#: DGI (Veličković et al. 2019), test accuracy % on the public split
DGI_PAPER = {"cora": 82.3, "citeseer": 71.8}
#: the UGS authors' GraphCL scripts (01_cora_double.sh, 02_citeseer_double.sh)
NODE_DEFAULTS = {"cora": dict(aug="subgraph", drop_percent=0.1, seed=39),
                 "citeseer": dict(aug="node", drop_percent=0.1, seed=31)}

DIFFERENCES = [
    "Features: row-normalised as the reference, passed to the GCN as a CSR (same numbers, "
    "sparse products); the adjacency is sparselth's GCNConv normalisation D^-1/2 (A + I) "
    "D^-1/2 (the reference's normalize_adj(A + I)).",
    "Edge perturbation draws distinct undirected pairs i != j; the reference samples the "
    "dropped edges from the first half of a list holding both directions of every edge.",
    "Augmentations, feature shuffles and the logistic-regression inits come from torch "
    "generators seeded per epoch / run: the draws differ from the reference's python/numpy "
    "random streams.",
]


def dataset_key(name: str) -> str:
    return name.lower()


def configs(args: argparse.Namespace) -> list:
    """One :class:`NodeGraphCLConfig` per seed (dataset defaults filled in)."""
    from sparselth.train.graphcl_node import NodeGraphCLConfig

    d = NODE_DEFAULTS.get(dataset_key(args.dataset), NODE_DEFAULTS["cora"])
    seeds = args.seeds if args.seeds is not None else [d["seed"]]
    return [NodeGraphCLConfig(
        dataset=dataset_key(args.dataset), seed=s, aug=args.aug or d["aug"],
        drop_percent=args.drop_percent if args.drop_percent is not None else d["drop_percent"],
        lr=args.lr if args.lr is not None else 0.001, patience=args.patience,
        max_epochs=args.max_epochs, combine=args.combine, eval_runs=args.eval_runs)
        for s in seeds]


def run_protocol(args: argparse.Namespace) -> dict:
    cfgs = configs(args)
    cfg = cfgs[0].to_dict()
    cfg.pop("seed")
    return dict(cfg, protocol="node", seeds=[c.seed for c in cfgs], threads=args.threads)


def checkpoint_path(config: Any, runs: Path) -> Path:
    """Where the encoder checkpoint of ``config`` lives under the run root ``runs``."""
    return Path(runs) / "graphcl-node" / config.dataset / f"{config.run_name()}.safetensors"


def markdown(rep: dict[str, Any]) -> str:
    cfg, head = rep["config"], rep["headline"]
    paper = rep.get("dgi_paper")
    lines = [f"# Node-level GraphCL: {rep['dataset']}", "",
             f"Pre-training: 1-layer GCN {cfg['hidden']} + PReLU, DGI-style bilinear "
             f"discriminator, views '{cfg['aug']}' (drop_percent {cfg['drop_percent']}), "
             f"combine '{cfg['combine']}', Adam lr {cfg['lr']}, early stop patience "
             f"{cfg['patience']} on the training loss (cap {cfg['max_epochs']} epochs); seeds "
             f"{rep['seeds']}. Evaluation: logistic regression on frozen embeddings, public "
             f"split, {cfg['eval_runs']} runs x {cfg['eval_steps']} Adam steps (lr "
             f"{cfg['eval_lr']}).", "",
             f"**Linear-evaluation test accuracy: {head['acc_mean']:.2f} ± "
             f"{head['acc_std']:.2f} %** (mean ± std over the {cfg['eval_runs']} runs"
             + (f", then mean over {len(rep['seeds'])} seeds" if len(rep["seeds"]) > 1 else "")
             + ")."]
    if paper is not None:
        lines.append(f"DGI (Veličković et al. 2019) reports {paper:.1f} %; difference "
                     f"{head['acc_mean'] - paper:+.2f} points. GraphCL's own node-level "
                     "Cora/CiteSeer numbers are not verified here (PAPERS.md §3.7).")
    rows = [[s, r["epochs"], r["best_epoch"], f"{r['best_loss']:.4f}", r["stopped"],
             f"{100 * r['linear_eval']['acc_mean']:.2f} ± {100 * r['linear_eval']['acc_std']:.2f}",
             f"{r['train_seconds']:.0f}", r["checkpoint"]] for s, r in rep["per_seed"].items()]
    lines += ["", "## Per seed", "", markdown_table(
        ["seed", "epochs run", "best epoch", "best loss", "stopped by", "test acc %",
         "train s", "checkpoint"], rows), ""]
    lines += ["## Differences from the reference code", "", *[f"- {d}" for d in DIFFERENCES],
              ""]
    lines += [*common.notes_section(rep.get("notes", [])), *common.machine_section(rep["machine"])]
    return "\n".join(lines).rstrip() + "\n"


def plot(rep: dict[str, Any]):
    """Pre-training loss per epoch (each seed) and the linear-evaluation accuracies."""
    fig, axes = figure(2, width=11, height=4)
    for s, r in rep["per_seed"].items():
        axes[0].plot(range(len(r["losses"])), r["losses"], lw=1, label=f"seed {s}")
        axes[0].axvline(r["best_epoch"], color="grey", ls=":", lw=0.8)
    style_axes(axes[0], xlabel="epoch", ylabel="training loss (BCE)",
               title=f"Node-level GraphCL pre-training, {rep['dataset']}")
    accs = [100 * a for r in rep["per_seed"].values() for a in r["linear_eval"]["accs"]]
    axes[1].hist(accs, bins=20, label="logistic-regression runs")
    if rep.get("dgi_paper") is not None:
        axes[1].axvline(rep["dgi_paper"], color="k", ls=":", label="DGI paper")
    axes[1].axvline(rep["headline"]["acc_mean"], color="C1", label="mean")
    style_axes(axes[1], xlabel="test accuracy (%)", ylabel="runs",
               title="linear evaluation")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def run(args: argparse.Namespace, dest: Any, command: str) -> dict[str, Any]:
    """Pre-train (or reuse the checkpoint) per seed, evaluate, write the result files."""
    from sparselth.data import load_planetoid
    from sparselth.train.graphcl_node import NodeGraphCLPretrain

    cfgs = configs(args)
    runs = args.runs or (common.RUNS_DIR / ("" if dest.published else "local"))
    machine = common.machine()
    data = load_planetoid(dataset_key(args.dataset), root=args.data)
    per_seed = {}
    for cfg in cfgs:
        ck = checkpoint_path(cfg, runs)
        res = NodeGraphCLPretrain(data, cfg, checkpoint=ck, progress=not args.no_progress).run()
        res["checkpoint"] = str(ck.relative_to(common.REPO_ROOT)) if common.REPO_ROOT and \
            ck.resolve().is_relative_to(common.REPO_ROOT) else str(ck)
        per_seed[str(cfg.seed)] = res
    accs = [100 * r["linear_eval"]["acc_mean"] for r in per_seed.values()]
    first = next(iter(per_seed.values()))
    head = {"acc_mean": float(np.mean(accs)),
            "acc_std": float(100 * first["linear_eval"]["acc_std"]) if len(accs) == 1
            else float(np.std(accs)),
            "std_over": "runs" if len(accs) == 1 else "seeds"}
    rep: dict[str, Any] = {
        "suite": "graphcl", "protocol": "node", "dataset": args.dataset, "command": command,
        "config": {k: v for k, v in cfgs[0].to_dict().items() if k != "seed"},
        "seeds": [c.seed for c in cfgs], "headline": head,
        "dgi_paper": DGI_PAPER.get(dataset_key(args.dataset)),
        "graphcl_paper": None, "per_seed": per_seed,
        "data": {"nodes": int(data.num_nodes), "features": int(data.x.shape[1]),
                 "classes": int(data.num_classes), "edges": int(data.edge_index.shape[1])},
        "machine": machine,
        "compute_seconds": float(sum(r["train_seconds"] for r in per_seed.values())),
    }
    rep["notes"] = common.finish_machine(machine) + [
        f"Pre-training time {rep['compute_seconds']:.0f} s for all seeds (a reused checkpoint "
        "keeps the time of the run that wrote it), torch threads "
        f"{machine.get('torch_threads')}."]
    fig = None if args.no_plot else plot(rep)
    common.write_result(dest, rep, markdown(rep), fig)
    return rep
