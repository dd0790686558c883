"""Pre-trained graph lottery tickets for ``python -m bench.ugs --init graphcl`` (the UGS
paper's "pre-trained GLT", reference ``main_pruning_imp_pretrain.py``): UGS on a GCN whose
first-layer weight starts from a node-level GraphCL checkpoint (:mod:`bench.graphcl_node`),
so every round rewinds to the pre-trained weight; everything else is the random-init UGS run
(same seed, so the second layer's θ0 and the mask noise are the same draws).

``--init-checkpoint PATH`` names the checkpoint; by default it is the one ``python -m
bench.graphcl --protocol node --dataset <dataset>`` writes under ``runs/graphcl-node/`` for the
dataset's reference settings. A checkpoint that does not exist yet is pre-trained here first
(the dataset's reference settings).

The result ``ugs-<model>-<dataset>-graphcl`` gets a Markdown table and a PNG that set the
pre-trained GLT beside the random-init GLT of the same protocol (``ugs-<model>-<dataset>``
in the same folder): test accuracy per round, against weight sparsity and against graph
sparsity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparselth.utils.plot import figure, save_png, style_axes
from sparselth.utils.records import markdown_table, write_markdown

from . import common, graphcl_node

INIT_CHOICES = ("random", "graphcl")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", choices=INIT_CHOICES, default="random",
                   help="θ0 of the first GCN layer: random, or graphcl (the pre-trained GLT: "
                   "the node-level GraphCL encoder's weight)")
    p.add_argument("--init-checkpoint", type=Path, default=None,
                   help="node-level GraphCL checkpoint for --init graphcl (default: the one "
                   "bench.graphcl --protocol node writes under runs/); made when missing")


def suffix(args: argparse.Namespace) -> str:
    return "-graphcl" if getattr(args, "init", "random") == "graphcl" else ""


def _reference_config(dataset: str):
    defaults = argparse.Namespace(dataset=dataset, seeds=None, aug=None, drop_percent=None,
                                  lr=None, patience=20, max_epochs=10000, combine="logits",
                                  eval_runs=50)
    return graphcl_node.configs(defaults)[0]


def _portable(path: Path) -> str:
    """``path`` relative to the current folder when inside it (the checkout root), so the
    run's config names the same file on every machine."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def init_path(args: argparse.Namespace) -> str:
    """``UGSConfig.init`` for the arguments: '' (random) or the checkpoint's path."""
    if args.init == "random":
        return ""
    if args.init_checkpoint is not None:
        return _portable(args.init_checkpoint)
    return _portable(graphcl_node.checkpoint_path(_reference_config(args.dataset),
                                                  common.RUNS_DIR))


def ensure_checkpoint(args: argparse.Namespace, data: Any, path: str) -> dict | None:
    """Pre-train the checkpoint (the dataset's reference settings) when ``path`` does not exist
    yet; the pre-training result, or None when the file was there."""
    if args.init != "graphcl":
        return None
    if args.model != "gcn" or args.task != "node":
        raise SystemExit("bench.ugs: --init graphcl supports --model gcn --task node only")
    if Path(path).is_file():
        return None
    from sparselth.train.graphcl_node import NodeGraphCLPretrain

    return NodeGraphCLPretrain(data, _reference_config(args.dataset), checkpoint=path,
                               progress=not args.no_progress).run()


def _comparable(rep: dict[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in rep["config"].items() if k not in ("init", "rounds")}
    cfg.setdefault("gcn_degree", "receiver")
    return {"model": rep["model"], "dataset": rep["dataset"], "task": rep["task"],
            "hidden": rep["hidden"], "features_as": rep["data"].get("features_as"), **cfg}


def random_init_report(folder: Path, name: str, rep: dict[str, Any]) -> tuple[dict | None, str]:
    """The random-init UGS result ``name`` in ``folder`` when it has the same protocol as
    ``rep`` but for ``init`` and ``rounds``; else None and why."""
    p = Path(folder) / f"{name}.json"
    if not p.exists():
        return None, f"{p.name} not found beside this result"
    other = json.loads(p.read_text())
    diffs = common.protocol_differences(_comparable(other), _comparable(rep), "this run")
    if diffs:
        return None, f"{p.name} has another protocol ({'; '.join(diffs)})"
    return other, ""


def _acc(r: dict[str, Any] | None):
    return None if r is None else 100.0 * r["test_acc"]


def comparison(rep: dict[str, Any], other: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per round: sparsities and both test accuracies (%), the difference."""
    by = {r["round"]: r for r in ([other["dense"]] + other["rounds"])} if other else {}
    out = []
    for r in [rep["dense"]] + rep["rounds"]:
        o = by.get(r["round"])
        a, b = _acc(r), _acc(o)
        out.append({"round": r["round"], "weight_sparsity": r["weight_sparsity"],
                    "graph_sparsity": r["graph_sparsity"], "pretrained_acc": a,
                    "random_acc": b, "difference": None if b is None else a - b})
    return out


def markdown(rep: dict[str, Any], rows: list[dict[str, Any]], why: str, body: str) -> str:
    high = [r for r in rows if r["weight_sparsity"] >= 0.5 and r["difference"] is not None]
    lines = [f"# Pre-trained graph lottery tickets (GraphCL init): {rep['model'].upper()} on "
             f"{rep['dataset']}", "",
             f"First-layer θ0 from the node-level GraphCL checkpoint `{rep['config']['init']}` "
             f"(sha256 {str(rep.get('init_sha256'))[:12]}…; {rep.get('pretraining', '')}); the "
             "rest as the random-init UGS run with the same seed.", ""]
    if high:
        at_or_above = sum(r["difference"] >= 0 for r in high)
        lines.append(f"At weight sparsity ≥ 50 %: pre-trained ≥ random init in {at_or_above} of "
                     f"{len(high)} rounds; mean difference "
                     f"{sum(r['difference'] for r in high) / len(high):+.2f} points.")
    if why:
        lines.append(f"Random-init GLT not shown: {why}.")
    table = [[r["round"], 100 * r["weight_sparsity"], 100 * r["graph_sparsity"],
              r["pretrained_acc"], r["random_acc"], r["difference"]] for r in rows]
    lines += ["", markdown_table(["round", "weight sp. %", "graph sp. %",
                                  "pre-trained GLT test acc %", "random-init GLT test acc %",
                                  "difference (points)"], table), "",
              "## The pre-trained run in full", ""]
    body = body.split("\n", 1)[1] if body.startswith("# ") else body
    return "\n".join(lines) + "\n" + body


def plot(rep: dict[str, Any], other: dict[str, Any] | None):
    fig, axes = figure(2, width=11, height=4)
    for ax, key, label in ((axes[0], "weight_sparsity", "weight sparsity (%)"),
                           (axes[1], "graph_sparsity", "graph sparsity (%)")):
        for r, lab, fmt in ((rep, "pre-trained (GraphCL) GLT", "o-"),
                            (other, "random-init GLT", "s--")):
            if r is None:
                continue
            recs = [r["dense"]] + r["rounds"]
            ax.plot([100 * x[key] for x in recs], [100 * x["test_acc"] for x in recs], fmt,
                    ms=4, label=lab)
        style_axes(ax, xlabel=label, ylabel="test accuracy (%)",
                   title=f"UGS {rep['model'].upper()} {rep['dataset']}: pre-trained vs random")
        ax.legend(fontsize=7)
    return fig


def attach_comparison(folder: Path, rep: dict[str, Any], random_name: str,
                      pretraining: dict | None = None) -> None:
    """Set ``rep["comparison"]`` (per round, :func:`comparison`) against the random-init
    result ``random_name`` of ``folder``, ``rep["random_init"]`` (its file or why none),
    ``rep["init_sha256"]`` and ``rep["pretraining"]`` (``pretraining``: the result of
    :func:`ensure_checkpoint`)."""
    rep["init_sha256"] = rep["dense"].get("init_sha256")
    rep["pretraining"] = "pre-trained in this invocation" if pretraining else \
        "checkpoint read from disk"
    other, why = random_init_report(folder, random_name, rep)
    rep["comparison"] = comparison(rep, other)
    rep["random_init"] = {"result": random_name if other else None, "not_shown": why or None}


def render(dest: Any, rep: dict[str, Any], body: str, plot_png: bool = True) -> list[Path]:
    """Markdown and PNG of the pre-trained result ``rep`` (after :func:`attach_comparison`)
    written to ``dest``; ``body`` is the usual UGS report of ``rep``."""
    name = rep["random_init"]["result"]
    other = json.loads((dest.folder / f"{name}.json").read_text()) if name else None
    text = markdown(rep, rep["comparison"], rep["random_init"]["not_shown"] or "", body)
    written = [write_markdown(dest.file(".md"), text)]
    if plot_png:
        written.append(save_png(plot(rep, other), dest.file(".png")))
    return written
