"""Reproduce GraphCL's TU protocols (You et al., "Graph Contrastive Learning with
Augmentations", NeurIPS 2020, arXiv 2010.13902): ``--protocol unsupervised`` (reference
``unsupervised_TU``, below) and ``--protocol semisupervised`` (reference ``semisupervised_TU``:
ResGCN pre-training, then fine-tuning on 10 % or 1 % of the labels; see
:mod:`bench.graphcl_semi`, which this module dispatches to).

``python -m bench.graphcl --protocol unsupervised --dataset MUTAG --data DIR --seeds 0 1 2 3 4``
pre-trains :class:`sparselth.models.GraphCLGIN` (3 GIN layers, hidden 32, sum readout of every
layer) with NT-Xent (temperature 0.2, view-1 anchors as the reference codes it) on the original
graph and a ``random4`` view (the reference's ratios: :meth:`AugmentConfig.reference`), Adam lr
0.01, batch 128, 20 epochs, once per seed, through :class:`sparselth.train.GraphCLPretrain`
(resumable in ``--runs``, default ``runs/graphcl``). Epoch 0 (the untrained encoder), every
``--eval-every``-th epoch and the last are evaluated: an RBF ``SVC`` on the frozen embeddings,
C from {1e-3, ..., 1e3} by an inner 5-fold grid search, outer 10-fold stratified CV (seeded).

It writes ``graphcl-unsupervised-<dataset>.{json,md,png}`` (``bench/results/`` for the
published protocol, else ``bench/results/local/``, or ``--out``): per evaluated epoch the test
accuracy as mean ± std over seeds of the per-seed fold means, and separately the mean over
seeds of the std over folds; the headline is the **last epoch** (the reference reports a fixed
epoch, not the best one), beside the paper's number. A second number picks, per seed, the
epoch of highest inner-CV (validation) accuracy, which never looks at the test folds.

``--protocol node --dataset Cora`` runs node-level GraphCL on one Planetoid graph instead
(DGI-style objective, linear evaluation on the public split): see :mod:`bench.graphcl_node`.
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

from . import common, graphcl_node

# GraphCL, unsupervised TU (SVM accuracy %, mean ± std over 5 seeds; PAPERS.md §3.7)
PAPER = {"MUTAG": (86.80, 1.34), "PROTEINS": (74.39, 0.45), "NCI1": (77.87, 0.41),
         "DD": (78.62, 0.40)}

# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED: dict[str, str] = {
    "graphcl-unsupervised-MUTAG": "--protocol unsupervised --dataset MUTAG --seeds 0 1 2 3 4 "
                                  "--epochs 20 --eval-every 1 --threads 1",
    "graphcl-unsupervised-PROTEINS": "--protocol unsupervised --dataset PROTEINS --seeds 0 1 2 3 4 "
                                     "--epochs 20 --eval-every 10 --threads 1",
    "graphcl-unsupervised-NCI1": "--protocol unsupervised --dataset NCI1 --seeds 0 1 2 3 4 "
                                 "--epochs 20 --eval-every 10 --threads 1",
    "graphcl-unsupervised-DD": "--protocol unsupervised --dataset DD --seeds 0 1 2 3 4 "
                               "--epochs 20 --eval-every 10 --threads 1",
    "graphcl-node-Cora": "--protocol node --dataset Cora --threads 1",
    "graphcl-node-CiteSeer": "--protocol node --dataset CiteSeer --threads 1",
    "graphcl-semisupervised-PROTEINS": "--protocol semisupervised --dataset PROTEINS "
                                       "--label-rate 0.1 --seeds 0 1 2 --epochs 100 "
                                       "--model-epochs 20 100 --threads 1",
    "graphcl-semisupervised-PROTEINS-1pct": "--protocol semisupervised --dataset PROTEINS "
                                            "--label-rate 0.01 --seeds 0 1 2 --epochs 100 "
                                            "--model-epochs 20 100 --threads 1",
    "graphcl-semisupervised-NCI1": "--protocol semisupervised --dataset NCI1 --label-rate 0.1 "
                                   "--seeds 0 1 2 --epochs 20 --model-epochs 20 --threads 1",
    "graphcl-semisupervised-NCI1-1pct": "--protocol semisupervised --dataset NCI1 "
                                        "--label-rate 0.01 --seeds 0 1 2 --epochs 20 "
                                        "--model-epochs 20 --threads 1",
}

DIFFERENCES = [
    "The headline is a fixed epoch (the last); the reference logs epochs 10 and 20 and does not "
    "say which one its table reports.",
    "Outer 10-fold split seeded per seed (the reference's StratifiedKFold has no seed).",
    "Only the test accuracy of the outer CV is reported (the reference also logs a 'val' "
    "score refitted on a hold-out of the training fold).",
    "Subgraph augmentation: the reference's one-hop quirk is kept (AugmentConfig.reference("
    "'unsupervised_TU')); self loops are not appended at load time (the reference adds them "
    "for all nodes but the last).",
]


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("graphcl", "GraphCL pre-training and its unsupervised TU evaluation "
                          "(SVM on frozen embeddings), beside the paper's numbers.")
    p.add_argument("--protocol", choices=["unsupervised", "semisupervised", "node"],
                   default="unsupervised",
                   help="'semisupervised': ResGCN pre-training, then fine-tuning on a labelled "
                   "part of every training fold (bench.graphcl_semi); 'node': node-level "
                   "GraphCL on Cora/CiteSeer (bench.graphcl_node)")
    p.add_argument("--dataset", default="MUTAG", help="TU dataset name (MUTAG, PROTEINS, ...) "
                   "or, with --protocol node, Cora or CiteSeer")
    p.add_argument("--data", type=Path, default=common.default_data_dir(),
                   help="folder holding tu/<name>, gin/<name> or planetoid/")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default 0 1 2 3 4 (node: the dataset's reference seed)")
    p.add_argument("--epochs", type=int, default=None,
                   help="pre-training epochs (default: 20 unsupervised, 100 semisupervised)")
    p.add_argument("--eval-every", type=int, default=10,
                   help="evaluate every this many epochs (plus epoch 0 and the last)")
    p.add_argument("--aug", default=None,
                   help="augmentation of the second view, or a named pair 'a+b' (default: "
                   "random4 unsupervised; random2 on both views semisupervised; node: edge, "
                   "mask, node or subgraph, default per dataset)")
    p.add_argument("--aug-config", choices=["unsupervised_TU", "paper"], default="unsupervised_TU")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="pre-training Adam lr (default: 0.01 unsupervised, 0.001 semisupervised "
                   "and node)")
    p.add_argument("--temperature", type=float, default=None,
                   help="NT-Xent temperature (default: 0.2 unsupervised, 0.5 semisupervised)")
    p.add_argument("--loss", choices=["reference", "symmetric"], default="reference")
    p.add_argument("--folds", type=int, default=10)
    node = p.add_argument_group("node protocol")
    node.add_argument("--drop-percent", type=float, default=None,
                      help="augmentation ratio p (default per dataset)")
    node.add_argument("--patience", type=int, default=20,
                      help="early stopping on the training loss")
    node.add_argument("--max-epochs", type=int, default=10000, help="epoch cap")
    node.add_argument("--combine", choices=["logits", "losses"], default="logits")
    node.add_argument("--eval-runs", type=int, default=50,
                      help="logistic-regression runs of the linear evaluation")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    from . import graphcl_semi

    graphcl_semi.add_arguments(p)
    p.add_argument("--runs", type=Path, default=None,
                   help="run-folder root, a run resumes from here (default runs/graphcl, "
                   "runs/local/graphcl for a protocol that is not the published one)")
    common.add_output_args(p)
    return p


def resolved(args: argparse.Namespace, name: str) -> Any:
    """``args.<name>``, or the protocol's default where it was left out."""
    v = getattr(args, name)
    return _DEFAULTS[args.protocol][name] if v is None else v


_DEFAULTS = {"unsupervised": {"epochs": 20, "aug": "random4", "lr": 0.01, "temperature": 0.2,
                              "seeds": [0, 1, 2, 3, 4]},
             "semisupervised": {"epochs": 100, "aug": "random2", "lr": 0.001,
                                "temperature": 0.5, "seeds": [0, 1, 2, 3, 4]}}


def output_name(args: argparse.Namespace) -> str:
    """``graphcl-<protocol>-<dataset>`` (semisupervised: see :func:`graphcl_semi.output_name`)."""
    if args.protocol == "semisupervised":
        from . import graphcl_semi

        return graphcl_semi.output_name(args)
    return f"graphcl-{args.protocol}-{common.safe_name(args.dataset)}"  # also node


def configs(args: argparse.Namespace) -> list:
    """One :class:`GraphCLConfig` per seed."""
    from sparselth.train.graphcl import GraphCLConfig

    r = {k: resolved(args, k) for k in ("epochs", "lr", "temperature", "aug")}
    return [GraphCLConfig(dataset=args.dataset, seed=s, epochs=r["epochs"],
                          batch_size=args.batch_size, lr=r["lr"], temperature=r["temperature"],
                          loss=args.loss, aug=r["aug"], aug_config=args.aug_config,
                          eval_every=args.eval_every, folds=args.folds)
            for s in resolved(args, "seeds")]


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    if args.protocol == "semisupervised":
        from . import graphcl_semi

        return graphcl_semi.run_protocol(args)
    if args.protocol == "node":
        return graphcl_node.run_protocol(args)
    cfg = configs(args)[0].to_dict()
    cfg.pop("seed")
    return dict(cfg, protocol=args.protocol, seeds=list(resolved(args, "seeds")),
                threads=args.threads)


def summarise(per_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per evaluated epoch (common to every seed): mean and std over seeds of the fold-mean
    accuracy (%), the mean fold std (%), and each seed's numbers."""
    epochs = sorted(set.intersection(*[{r["epoch"] for r in recs if r["metrics"]}
                                       for recs in per_seed.values()]))
    out = []
    for e in epochs:
        rows = {s: next(r for r in recs if r["epoch"] == e) for s, recs in per_seed.items()}
        acc = np.array([100 * r["metrics"]["svm_acc"] for r in rows.values()])
        fold_std = np.array([100 * r["metrics"]["svm_acc_std"] for r in rows.values()])
        losses = [r["loss"] for r in rows.values() if r["loss"] is not None]
        val = [100 * r["metrics"]["svm_val_acc"] for r in rows.values()
               if "svm_val_acc" in r["metrics"]]
        out.append({"epoch": e, "acc_mean": float(acc.mean()), "acc_std_seeds": float(acc.std()),
                    "fold_std_mean": float(fold_std.mean()),
                    "val_mean": float(np.mean(val)) if len(val) == len(rows) else None,
                    "loss_mean": float(np.mean(losses)) if losses else None,
                    "per_seed": {str(s): {"acc": float(a), "fold_std": float(f)}
                                 for s, a, f in zip(rows, acc, fold_std)}})
    return out


def val_selected(per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Per seed the evaluated epoch of highest inner-CV (validation) accuracy (the earliest on
    ties) and its test accuracy; mean ± std over seeds (%). None for records without it."""
    picks = {}
    for s, recs in per_seed.items():
        ev = [r for r in recs if r["metrics"]]
        if not ev or any("svm_val_acc" not in r["metrics"] for r in ev):
            return None
        best = max(ev, key=lambda r: (r["metrics"]["svm_val_acc"], -r["epoch"]))
        picks[str(s)] = {"epoch": best["epoch"], "acc": 100 * best["metrics"]["svm_acc"],
                         "fold_std": 100 * best["metrics"]["svm_acc_std"]}
    acc = np.array([p["acc"] for p in picks.values()])
    return {"acc_mean": float(acc.mean()), "acc_std_seeds": float(acc.std()),
            "fold_std_mean": float(np.mean([p["fold_std"] for p in picks.values()])),
            "per_seed": picks}


def markdown(rep: dict[str, Any]) -> str:
    """The report: headline beside the paper, every evaluated epoch, protocol, machine."""
    head, paper = rep["headline"], rep.get("paper")
    cfg = rep["config"]
    lines = [f"# GraphCL, unsupervised TU protocol: {rep['dataset']}", "",
             f"Pre-training: GIN {cfg['layers']}x{cfg['hidden']}, aug {cfg['aug']} "
             f"({cfg['aug_config']}), NT-Xent τ {cfg['temperature']} ({cfg['loss']}), Adam lr "
             f"{cfg['lr']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs; seeds "
             f"{rep['seeds']}. Evaluation: RBF SVC, C by inner {cfg['inner_folds']}-fold grid "
             f"search, outer {cfg['folds']}-fold stratified CV.", "",
             f"**Headline (rule: {rep['headline_rule']})**: {head['acc_mean']:.2f} ± "
             f"{head['acc_std_seeds']:.2f} % (mean ± std over {len(rep['seeds'])} seeds; mean "
             f"std over folds {head['fold_std_mean']:.2f} %)."]
    if paper:
        lines.append(f"Paper: {paper[0]:.2f} ± {paper[1]:.2f} %; difference "
                     f"{head['acc_mean'] - paper[0]:+.2f} points.")
    vs = rep.get("val_selected")
    if vs:
        lines.append(f"Validation-selected epoch (per seed, the highest inner-CV accuracy; "
                     f"epochs {[p['epoch'] for p in vs['per_seed'].values()]}): "
                     f"{vs['acc_mean']:.2f} ± {vs['acc_std_seeds']:.2f} % (fold std "
                     f"{vs['fold_std_mean']:.2f} %). Not the headline: one epoch serves all "
                     "outer folds, and each fold's inner CV uses graphs that are test graphs "
                     "of other folds, so this choice has seen every label.")
    rows = [[e["epoch"], f"{e['acc_mean']:.2f} ± {e['acc_std_seeds']:.2f}",
             f"{e['fold_std_mean']:.2f}", e.get("val_mean"), e["loss_mean"],
             " ".join(f"{v['acc']:.1f}" for v in e["per_seed"].values())]
            for e in rep["epochs"]]
    lines += ["", "## Every evaluated epoch", "", markdown_table(
        ["epoch", "test acc % (mean ± std over seeds)", "fold std % (mean over seeds)",
         "inner-CV (val) acc %", "NT-Xent loss", "per seed test %"], rows), "",
        "Epoch 0 is the untrained (randomly initialised) encoder."]
    lines += ["", "## Differences from the reference code", "",
              *[f"- {d}" for d in DIFFERENCES]]
    notes = [f"Compute time {rep['compute_seconds']:.0f} s for all seeds (pre-training and "
             f"SVM evaluation of every epoch), torch threads "
             f"{rep['machine'].get('torch_threads')}, scikit-learn {rep['scikit_learn']}."]
    notes += rep.get("notes", [])
    lines += ["", *common.notes_section(notes), *common.machine_section(rep["machine"])]
    return "\n".join(lines).rstrip() + "\n"


def plot(rep: dict[str, Any]):
    """Test accuracy per evaluated epoch (error bars: std over seeds) with the paper's line,
    and the NT-Xent loss per epoch of every seed."""
    fig, axes = figure(2, width=11, height=4)
    ep = rep["epochs"]
    axes[0].errorbar([e["epoch"] for e in ep], [e["acc_mean"] for e in ep],
                     yerr=[e["acc_std_seeds"] for e in ep], fmt="o-", capsize=3,
                     label="sparselth (std over seeds)")
    if all(e.get("val_mean") is not None for e in ep):
        axes[0].plot([e["epoch"] for e in ep], [e["val_mean"] for e in ep], "s--", ms=3,
                     label="inner-CV (validation) accuracy")
    if rep.get("paper"):
        axes[0].axhline(rep["paper"][0], color="k", ls=":", label="paper")
    style_axes(axes[0], xlabel="epoch", ylabel="SVM test accuracy (%)",
               title=f"GraphCL unsupervised, {rep['dataset']}")
    for s, recs in rep["per_seed_records"].items():
        pts = [(r["epoch"], r["loss"]) for r in recs if r["loss"] is not None]
        if pts:
            axes[1].plot(*zip(*pts), lw=1, label=f"seed {s}")
    style_axes(axes[1], xlabel="epoch", ylabel="NT-Xent loss")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.protocol == "semisupervised":
        from . import graphcl_semi

        return graphcl_semi.main(argv)
    name = output_name(args)
    dest = common.result_path(name, args, PUBLISHED, parser=parser, protocol=run_protocol)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.protocol == "node":
        rep = graphcl_node.run(args, dest, "python -m bench.graphcl " + " ".join(
            common.portable_argv(argv if argv is not None else sys.argv[1:])))
        h = rep["headline"]
        print(f"{name}: {h['acc_mean']:.2f} ± {h['acc_std']:.2f} % (std over {h['std_over']})",
              file=sys.stderr)
        return rep
    from sparselth.data import load_tu
    from sparselth.train.graphcl import GraphCLPretrain

    cfgs = configs(args)  # validates the arguments before any work
    runs = args.runs or (common.RUNS_DIR / ("" if dest.published else "local") / "graphcl")
    machine = common.machine()
    clock = stopwatch()
    ds = load_tu(args.dataset, args.data)
    per_seed = {}
    for cfg in cfgs:
        per_seed[cfg.seed] = GraphCLPretrain(ds, cfg, root=runs / common.safe_name(args.dataset),
                                             progress=not args.no_progress).run()
    epochs = summarise(per_seed)
    rep: dict[str, Any] = {
        "suite": "graphcl", "protocol": args.protocol, "dataset": args.dataset,
        "command": "python -m bench.graphcl " + " ".join(
            common.portable_argv(argv if argv is not None else sys.argv[1:])),
        "config": {k: v for k, v in cfgs[0].to_dict().items() if k != "seed"},
        "seeds": [c.seed for c in cfgs], "data": {"graphs": len(ds), "features": ds.num_features,
                                            "classes": ds.num_classes, "layout": ds.layout},
        "headline_rule": f"the last epoch ({cfgs[0].epochs}), as the reference reports a fixed "
                         "epoch",
        "headline": epochs[-1], "epochs": epochs, "val_selected": val_selected(per_seed),
        "paper": PAPER.get(args.dataset.upper()),
        "per_seed_records": {str(s): recs for s, recs in per_seed.items()},
        "seconds": clock(), "machine": machine, "scikit_learn": _sklearn_version(),
        # the pre-training and evaluation time of every epoch, also when read back
        "compute_seconds": float(sum(r["seconds"] or 0.0 for recs in per_seed.values()
                                     for r in recs)),
    }
    rep["notes"] = common.finish_machine(machine)
    fig = None if args.no_plot else plot(rep)
    common.write_result(dest, rep, markdown(rep), fig)
    h = rep["headline"]
    print(f"{name}: {h['acc_mean']:.2f} ± {h['acc_std_seeds']:.2f} % (fold std "
          f"{h['fold_std_mean']:.2f} %)", file=sys.stderr)
    return rep


if __name__ == "__main__":
    main()
