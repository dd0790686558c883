"""Reproduce UGS (graph lottery tickets: Chen et al., "A Unified Lottery Ticket Hypothesis
for Graph Neural Networks", ICML 2021, arXiv 2102.06790) and measure what the tickets save.

``python -m bench.ugs --model gcn --dataset cora --data datasets --rounds 20``
runs the paper's procedure with the paper's hyperparameters for that (model, dataset)
(reference code; flags override them) through :class:`sparselth.prune.UGS`, resumable in
``--runs`` (default ``runs/ugs``), and writes ``ugs-<model>-<dataset>[-link][-random].{json,md}``
plus a PNG, in ``bench/results/`` for the published protocol of the result (``PUBLISHED``),
else in ``bench/results/local/``, or in ``--out``:

- ``"dense"``: round 0, the unpruned model trained ``fix_epochs`` epochs;
- ``"rounds"``: per round the graph and weight sparsity (fractions removed), test/val metric
  at the best validation epoch, exact per-layer MACs of the compacted ticket and the
  paper's MAC formula (GCN), and latencies: ``latency_ms_dense`` = the unpruned model (full
  graph, dense weights), ``latency_ms_ticket`` = the ticket compiled with
  ``sparselth.compile`` (pruned edges dropped from the stored graph, each linear layer on
  its fastest exact route), timed interleaved (A B A B ...) with
  :mod:`sparselth.utils.timing`, medians of wall and CPU time, eval mode, no grad; the
  measured speed-up uses the headline clock (CPU time with one thread, wall with more);
- the Markdown table sets the numbers beside the paper's (UGS teaser figure, Cora/CiteSeer GCN);
- the PNG: accuracy vs graph sparsity and vs weight sparsity (dense line, UGS, and the
  random-pruning curve when ``...-random.json`` exists in the same folder with the same
  protocol), and promised (MAC ratio) vs measured speed-up per round.

``--seeds 0 1 2`` runs the whole procedure once per seed (θ0, mask-search noise, random masks;
the same seeds for UGS and random pruning, so the two are paired) and reports per round the
mean ± std of the test metric over the seeds (``test_<metric>_std``, ``per_seed``), in
``ugs-<model>-<dataset>[-link]-<n>seeds[-random]``; sparsities and MACs are the first seed's
(the schedule prunes the same counts for every seed), latencies too.
``--gcn-degree`` picks the GCN's degree normalisation (default ``sender``, the reference's:
see :class:`sparselth.nn.GCNConv`).

``--task graph`` (GIN on a TU dataset of graphs) hands over to :mod:`bench.ugs_graphs`.
``--baseline random`` runs the random-pruning baseline of the UGS paper, ``--task link`` the
link-prediction variant (GCN encoder [F, 512, 16], GAE-style loss instead of the paper's GIC:
see :mod:`sparselth.train.graph`). ``--dataset csbm`` uses a synthetic contextual SBM.
Node features are row-normalised (as the reference) and passed to the model as a CSR when
fewer than 10 % of their entries are non-zero.

``--init graphcl`` runs the pre-trained GLT (first GCN layer from a node-level GraphCL
checkpoint, ``ugs-gcn-<dataset>-graphcl``, beside the random-init run): see
:mod:`bench.ugs_pretrained`.

``torchrun --nproc_per_node=N -m bench.ugs ...`` runs the same search on N processes
(:mod:`sparselth.utils.distributed`): node classification splits the training nodes' loss
over the ranks and sums the gradients, rank 0 decides and broadcasts the masks, writes the run
folder and the result (never the published files: a run on several processes records
``world_size`` and goes to ``bench/results/local/``), and times the tickets; the link task
trains a replica on every rank. ``--task graph`` runs on one process only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sparselth.utils import distributed
from sparselth.utils.plot import figure, save_png, style_axes
from sparselth.utils.records import markdown_table, write_markdown
from sparselth.utils.timing import busy_note, stopwatch

from . import common, ugs_pretrained

# UGS hyperparameters (README commands of the reference code): lr, weight decay, s1, s2, seed
PAPER_HP: dict[tuple[str, str], dict[str, Any]] = {
    ("gcn", "cora"): dict(lr=0.008, weight_decay=8e-5, s1=1e-2, s2=1e-2, seed=2377),
    ("gcn", "citeseer"): dict(lr=0.01, weight_decay=5e-4, s1=1e-2, s2=1e-2, seed=4428),
    ("gcn", "pubmed"): dict(lr=0.01, weight_decay=5e-4, s1=1e-6, s2=1e-3, seed=3333),
    ("gin", "cora"): dict(lr=0.008, weight_decay=8e-5, s1=1e-3, s2=1e-3, seed=666),
    ("gin", "citeseer"): dict(lr=0.01, weight_decay=5e-4, s1=1e-5, s2=1e-5, seed=666),
    ("gin", "pubmed"): dict(lr=0.01, weight_decay=5e-4, s1=1e-5, s2=1e-5, seed=666),
    ("gat", "cora"): dict(lr=0.008, weight_decay=8e-5, s1=1e-3, s2=1e-3, seed=666),
    ("gat", "citeseer"): dict(lr=0.01, weight_decay=5e-4, s1=1e-7, s2=1e-3, seed=666),
    ("gat", "pubmed"): dict(lr=0.01, weight_decay=5e-4, s1=1e-2, s2=1e-2, seed=666),
}
# random pruning seeds of the reference (main_pruning_random.py; GIN/GAT: 666)
RANDOM_SEEDS = {"cora": 3846, "citeseer": 2839, "pubmed": 3333}
# UGS link prediction: Adam lr 1e-3, no weight decay, s1 = s2 = 1e-2, noise 1e-4
LINK_HP = dict(lr=0.001, weight_decay=0.0, s1=1e-2, s2=1e-2, mask_noise=1e-4, seed=1234)

# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {
    "ugs-gcn-cora": "--model gcn --dataset cora --rounds 20 --threads 1",
    "ugs-gcn-cora-random": "--model gcn --dataset cora --baseline random --rounds 20 --threads 1",
    "ugs-gcn-citeseer": "--model gcn --dataset citeseer --rounds 20 --threads 1",
    "ugs-gcn-citeseer-random":
        "--model gcn --dataset citeseer --baseline random --rounds 20 --threads 1",
    "ugs-gcn-pubmed": "--model gcn --dataset pubmed --rounds 4 --prune-graph 0.2 "
                      "--prune-weight 0.35 --epochs 100 --features dense --threads 1",
    "ugs-gin-cora": "--model gin --dataset cora --rounds 20 --threads 1",
    "ugs-gin-cora-random": "--model gin --dataset cora --baseline random --rounds 20 --threads 1",
    "ugs-gat-cora": "--model gat --dataset cora --rounds 3 --prune-graph 0.2 --prune-weight 0.4 "
                    "--epochs 50 --threads 1",
    "ugs-gcn-cora-link": "--model gcn --dataset cora --task link --rounds 5 --prune-graph 0.2 "
                         "--prune-weight 0.4 --epochs 100 --threads 1",
    "ugs-gcn-cora-3seeds": "--model gcn --dataset cora --rounds 20 --seeds 0 1 2 --threads 1 "
                           "--no-latency",
    "ugs-gcn-cora-3seeds-random": "--model gcn --dataset cora --baseline random --rounds 20 "
                                  "--seeds 0 1 2 --threads 1 --no-latency",
    "ugs-gcn-cora-graphcl": "--model gcn --dataset cora --init graphcl --rounds 20 --threads 1",
    "ugs-gcn-citeseer-graphcl": "--model gcn --dataset citeseer --init graphcl --rounds 20 "
                                "--threads 1",
}

# UGS paper, values read off its teaser figure: round -> (graph %, weight %,
# UGS accuracy %, random-pruning accuracy %, MACs in millions)
PAPER_POINTS = {
    "cora": {"dense_acc": 80.7, "dense_macs_m": 2007,
             "rounds": {4: (18.55, 59.04, 80.8, 78.9, 826), 9: (36.98, 86.58, 79.3, 76.3, 275)}},
    "citeseer": {"dense_acc": 70.9, "dense_macs_m": 6299,
                 "rounds": {8: (33.66, 83.22, 72.0, 68.4, 1062),
                            13: (48.67, 94.50, 71.1, 61.5, 351),
                            17: (58.19, 97.75, 70.3, 44.1, 146)}},
}

RECEIVER_DEVIATION = (
    "GCN normalisation (--gcn-degree receiver): every row uses its own (receiver) degree on "
    "both sides (D^-1/2 (A_w + I) D^-1/2 with the pruned, possibly asymmetric A_w); the "
    "reference aggregates along A^T with row (sender) degrees. Identical while the graph is "
    "unpruned.")
DEVIATIONS = [  # (model or None, dataset or None, text)
    (None, "citeseer",
     "Planetoid loader: CiteSeer's 124 raw self loops are dropped (the reference keeps them "
     "in the graph mask)."),
    ("gat", None,
     "GAT: pruned edges are removed from the attention softmax (a true sparse GAT); the "
     "reference multiplies the logit by the mask, so a pruned edge keeps logit 0."),
    ("gin", None,
     "GIN: mean aggregation keeps the original in-degree as denominator (pruned edges count "
     "as zero messages), as the reference."),
    (None, None,
     "Pruning rule: exactly int(n p) + 1 entries with the smallest |mask| are removed per "
     "round (the reference's threshold rule removes the same set when values are distinct)."),
]
LINK_DEVIATION = (
    "Link prediction: the encoder is trained with a GAE-style loss (inner-product decoder, "
    "BCE on training edges vs uniformly drawn pairs) instead of the reference's GIC "
    "objective; the split is seeded (the reference's is not). AUCs are not the paper's.")


def result_name(model: str, dataset: str, task: str, baseline: str, seeds: int = 1) -> str:
    """``ugs-<model>-<dataset>[-link][-<seeds>seeds][-random]``."""
    return ("ugs-" + f"{model}-{dataset}" + ("-link" if task == "link" else "")
            + (f"-{seeds}seeds" if seeds > 1 else "")
            + ("-random" if baseline == "random" else ""))


# --------------------------------------------------------------------------- data + models


def load_data(dataset: str, root: str | None, csbm_nodes: int):
    from sparselth.data import contextual_sbm, load_planetoid

    if dataset == "csbm":
        n = int(csbm_nodes)
        return contextual_sbm(n, num_classes=4, avg_degree=8, num_features=256,
                              homophily=0.8, feature_snr=1.0, seed=0,
                              num_val=min(500, n // 4), num_test=min(1000, n // 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_planetoid(dataset, root=root)
    data.info["load_warnings"] = [str(w.message) for w in caught]
    return data


def model_builder(name: str, adj, in_dim: int, num_classes: int, hidden: int, task: str,
                  gcn_degree: str = "sender"):
    from sparselth.models import GAT, GCN, GIN
    from sparselth.train import GCNLinkEncoder

    if task == "link":
        if name != "gcn":
            raise SystemExit("bench.ugs: --task link supports --model gcn only")
        return lambda: GCNLinkEncoder(adj, in_dim, out_dim=16, hidden=hidden,
                                      num_nodes=adj.shape[0], degree=gcn_degree)
    if name == "gcn":
        return lambda: GCN(adj, in_dim, num_classes, hidden=hidden, degree=gcn_degree)
    cls = {"gin": GIN, "gat": GAT}[name]
    return lambda: cls(adj, in_dim, num_classes, hidden=hidden)


# --------------------------------------------------------------------------- latency


class Latency:
    """``measure`` hook for :class:`sparselth.prune.UGS`: compiles each round's ticket and
    times it against the unpruned model, interleaved."""

    def __init__(self, build, inputs: tuple, budget_s: float, compile_budget_s: float,
                 enabled: bool = True):
        self.build, self.inputs = build, inputs
        self.budget_s, self.compile_budget_s = budget_s, compile_budget_s
        self.enabled = enabled
        self.dense = build().eval() if enabled else None  # full graph, dense weights
        self.template = build()

    def __call__(self, round_idx: int, model, parts: dict[str, Any]) -> dict[str, Any]:
        import sparselth

        out: dict[str, Any] = {}
        if not self.enabled:
            return out
        ticket = sparselth.Ticket(**parts)
        note = None
        try:
            compiled, report = sparselth.compile(
                self.template, ticket, example_inputs=self.inputs,
                budget_s=self.compile_budget_s, e2e_budget_s=2 * self.compile_budget_s)
        except Exception as e:  # noqa: BLE001 - report and fall back to dense layer routes
            note = (f"compile with all routes failed ({type(e).__name__}: {e}); "
                    "retried with dense layer routes (graph still compacted)")[:400]
            compiled, report = sparselth.compile(
                self.template, ticket, example_inputs=self.inputs, routes=["dense"],
                budget_s=self.compile_budget_s, e2e_budget_s=2 * self.compile_budget_s)
        inputs = self.inputs
        with torch.no_grad():
            m = common.time_contenders(
                {"dense": lambda: self.dense(*inputs), "ticket": lambda: compiled(*inputs)},
                {"budget_s": self.budget_s, "min_reps": 5, "max_reps": 40})
        d, tk = m["dense"].summary(), m["ticket"].summary()
        pre = "cpu_" if m.clock == "cpu" else ""
        out.update({
            "latency_clock": m.clock,
            "latency_ms_dense": d[f"{pre}ms"], "latency_ms_ticket": tk[f"{pre}ms"],
            "latency_iqr_ms_dense": [d[f"{pre}q1_ms"], d[f"{pre}q3_ms"]],
            "latency_iqr_ms_ticket": [tk[f"{pre}q1_ms"], tk[f"{pre}q3_ms"]],
            "latency_min_ms_dense": d[f"{pre}min_ms"],
            "latency_min_ms_ticket": tk[f"{pre}min_ms"],
            "latency_dense": d, "latency_ticket": tk,
            "measured_speedup": m.speedup("dense", "ticket"),
            "routes": report.routes,
            "compiled_edges": int(compiled.edge_mask.numel()),
            "compile_end_to_end": {k: report.end_to_end.get(k) for k in
                                   ("dense_ms", "compiled_ms", "speedup", "max_rel_error")},
            "load_avg_1min": m.loadavg_after,
        })
        if note:
            out["compile_note"] = note
        return out


# --------------------------------------------------------------------------- report


def _pct(v):
    return None if v is None else 100.0 * v


def _metric_cell(r: Mapping[str, Any] | None, metric: str, part: str = "test"):
    """The record's metric in %, as ``"mean ± std"`` when it is a mean over seeds."""
    if r is None:
        return None
    std = r.get(f"{part}_{metric}_std")
    if std is None:
        return _pct(r[f"{part}_{metric}"])
    return f"{100 * r[f'{part}_{metric}']:.1f} ± {100 * std:.1f}"


def markdown(rep: dict[str, Any], other: dict[str, Any] | None,
             notes: list[str] | None = None) -> str:
    """The report of ``rep``, with ``other`` (the UGS or random-pruning run of the same
    protocol) beside it; ``notes`` are added to its notes."""
    metric = rep["metric"]
    name = "accuracy" if metric == "acc" else "ROC-AUC"
    dense = rep["dense"]
    rows = []
    other_by_round = {r["round"]: r for r in (other or {}).get("rounds", [])}
    other_label = None
    if other:
        other_label = "random" if other["baseline"] == "random" else "UGS"
    for r in [dense] + rep["rounds"]:
        o = other_by_round.get(r["round"]) if r["round"] else None
        row = [r["round"], _pct(r["graph_sparsity"]), _pct(r["weight_sparsity"]),
               _metric_cell(r, metric), _metric_cell(r, metric, "val")]
        if other:
            row.append(_metric_cell(o, metric))
        row += [r["macs_total"] / 1e6 if r.get("macs_total") else None,
                r["macs_paper"] / 1e6 if r.get("macs_paper") else None,
                r.get("promised_speedup"), r.get("measured_speedup"),
                r.get("latency_ms_dense"), r.get("latency_ms_ticket"), r.get("seconds")]
        rows.append(row)
    seeds = rep.get("seeds")
    over = f" (mean ± std, {len(seeds)} seeds)" if seeds else ""
    headers = ["round", "graph sp. %", "weight sp. %", f"test {name} %{over}",
               f"val {name} %{over}"]
    if other:
        headers.append(f"{other_label} test %")
    headers += ["MACs (M, exact)", "MACs (M, paper formula)", "promised speed-up",
                "measured speed-up", "dense ms", "ticket ms", "round s"]
    title = (f"# UGS{' (random-pruning baseline)' if rep['baseline'] == 'random' else ''}: "
             f"{rep['model'].upper()} on {rep['dataset']}"
             f"{' (link prediction)' if rep['task'] == 'link' else ''}")
    cfg = rep["config"]
    lines = [
        title, "",
        (f"Config: rounds {cfg['rounds']}, p_g {cfg['prune_graph']}, p_θ {cfg['prune_weight']}, "
         f"s1 {cfg['s1']}, s2 {cfg['s2']}, lr {cfg['lr']}, weight decay {cfg['weight_decay']}, "
         f"mask epochs {cfg['mask_epochs']}, fix epochs {cfg['fix_epochs']}, noise "
         f"{cfg['mask_noise']}, seed {seeds if seeds else cfg['seed']} "
         f"({rep['hyperparameters']}); GCN degree normalisation "
         f"{cfg.get('gcn_degree', 'receiver')}. "
         f"Hidden {rep['hidden']}; features as {rep['data']['features_as']} (density "
         f"{100 * rep['data']['feature_density']:.2f} %)."),
        "",
        (f"Sparsities are fractions removed (paper definitions). Test {name} is at the best "
         "validation epoch of the fix-mask training. Exact MACs: per layer on the compacted "
         "ticket (sparse features counted per stored entry). Paper formula (GCN): "
         "(1 - s_θ) N (F H + H C) + (1 - s_g) 2 nnz(A) H (as the UGS paper computes MACs). "
         "Promised speed-up = "
         "exact dense MACs / exact ticket MACs; measured = latency of the unpruned model / "
         "latency of the compiled ticket (medians, interleaved, eval mode)."),
        "",
        markdown_table(headers, rows),
    ]
    paper = PAPER_POINTS.get(rep["dataset"]) if (rep["model"] == "gcn"
                                                  and rep["task"] == "node") else None
    if paper:
        by_round = {r["round"]: r for r in rep["rounds"]}
        ugs_rep = rep if rep["baseline"] == "ugs" else other
        rnd_rep = rep if rep["baseline"] == "random" else other
        ugs_by = {r["round"]: r for r in (ugs_rep or {}).get("rounds", [])}
        rnd_by = {r["round"]: r for r in (rnd_rep or {}).get("rounds", [])}
        prow = [["dense", "0 / 0", paper["dense_acc"], _metric_cell(dense, metric), None, None,
                 paper["dense_macs_m"],
                 dense["macs_paper"] / 1e6 if dense.get("macs_paper") else None]]
        for k, (g, w, acc, racc, mm) in paper["rounds"].items():
            u, rr = ugs_by.get(k), rnd_by.get(k)
            mine = u or by_round.get(k)
            prow.append([k, f"{g} / {w}", acc, _metric_cell(u, metric), racc,
                         _metric_cell(rr, metric), mm,
                         mine["macs_paper"] / 1e6 if mine and mine.get("macs_paper") else None])
        lines += [
            "", "## Beside the paper (UGS, read off its teaser figure, ±0.2 %)", "",
            markdown_table(
                ["round", "paper graph / weight sp. %", "paper UGS acc %", "ours UGS acc %",
                 "paper random acc %", "ours random acc %", "paper MACs (M)",
                 "ours MACs (M, paper formula)"], prow),
        ]
        if rep["dataset"] == "citeseer":
            lines += ["", "CiteSeer: the paper's MACs use N = 3,312 (before the 15 featureless "
                      "test slots are added); ours use N = 3,327, hence 6,327M dense instead of "
                      "6,299M."]
    per_round = [r["seconds"] for r in rep["rounds"] if r.get("seconds")]
    lines += ["", "## Notes", ""]
    if per_round:
        median = sorted(per_round)[len(per_round) // 2]
        lines.append(f"- Time per pruning round: median {median:.1f} s (mask search + "
                     "fix-mask training + MACs + compile + timing), dense "
                     f"round {dense.get('seconds', 0):.1f} s; torch threads "
                     f"{rep['machine'].get('torch_threads')}.")
    if rep["data"].get("missing_features"):
        lines.append(f"- {rep['data']['missing_features_note']}")
    if rep["data"].get("features_as") == "CSR" and any(r.get("latency_ms_ticket")
                                                       for r in rep["rounds"]):
        lines.append(
            "- Sparse features: the first layer computes X W^T as spmm(X, W^T) with W stored "
            "dense, so its weight sparsity (counted in the exact MACs) saves no time, and "
            "sparselth.compile can route only the layers whose Linear is called on a dense "
            "input; the measured speed-up comes from the compacted graph and the later layers.")
    for d in rep["deviations"]:
        lines.append(f"- {d}")
    compile_notes = {r["compile_note"] for r in rep["rounds"] if r.get("compile_note")}
    for n in sorted(compile_notes):
        lines.append(f"- {n}")
    clock = next((r["latency_clock"] for r in rep["rounds"] if r.get("latency_clock")), None)
    if clock:
        lines.append("- Latency: " + common.clock_sentence(
            clock, rep["machine"].get("torch_threads")))
    own = rep["notes"] if "notes" in rep else [busy_note(rep["machine"])]  # older files
    for n in [n for n in own if n] + (notes or []):
        lines.append(f"- {n}")
    lines += ["", *common.machine_section(rep["machine"]), common.protocol_line(
        rep, result_name(rep["model"], rep["dataset"], rep["task"], rep["baseline"],
                         len(rep.get("seeds") or [1]))
        + ("-graphcl" if rep["config"].get("init") else ""))]
    return "\n".join(lines).rstrip() + "\n"


def plot(reports: dict[str, dict[str, Any]]):
    """Accuracy vs graph and weight sparsity (``reports``: ``"ugs"`` and/or ``"random"``, of
    one protocol) and promised vs measured speed-up per round; the figure."""
    import matplotlib.ticker

    main = reports.get("ugs") or reports.get("random")
    metric = main["metric"]
    fig, axes = figure(3, width=16, height=4.2)
    styles = {"ugs": ("o-", "UGS"), "random": ("s--", "random pruning")}
    for key, rep in reports.items():
        style, label = styles[key]
        recs = rep["rounds"]
        acc = [100 * r[f"test_{metric}"] for r in recs]
        err = [100 * (r.get(f"test_{metric}_std") or 0.0) for r in recs]
        for ax, what in ((axes[0], "graph_sparsity"), (axes[1], "weight_sparsity")):
            ax.errorbar([100 * r[what] for r in recs], acc, yerr=err, fmt=style, label=label,
                        ms=4, capsize=2)
    dense = 100 * main["dense"][f"test_{metric}"]
    for ax, what in ((axes[0], "graph"), (axes[1], "weight")):
        ax.axhline(dense, color="k", ls=":", lw=1, label="dense")
        style_axes(ax, xlabel=f"{what} sparsity (%)",
                   ylabel=f"test {'accuracy' if metric == 'acc' else 'ROC-AUC'} (%)")
    axes[0].set_title(f"{main['model'].upper()} on {main['dataset']}"
                      f"{' (link)' if main['task'] == 'link' else ''}")
    ax = axes[2]
    recs = main["rounds"]
    rounds = [r["round"] for r in recs]
    ax.plot(rounds, [r.get("promised_speedup") for r in recs], "o-", ms=4,
            label="promised (exact MACs)")
    if any(r.get("promised_speedup_paper") for r in recs):
        ax.plot(rounds, [r.get("promised_speedup_paper") for r in recs], "^:", ms=4,
                label="promised (paper formula)")
    if any(r.get("measured_speedup") for r in recs):
        ax.plot(rounds, [r.get("measured_speedup") for r in recs], "s-", ms=4,
                label="measured (compiled ticket vs dense)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    clock = next((r["latency_clock"] for r in recs if r.get("latency_clock")), "wall")
    style_axes(ax, xlabel="round", ylabel="speed-up over the dense model",
               title=f"{main['baseline']}: promised vs measured "
               f"({main['machine'].get('torch_threads')} thread(s), {clock} time)")
    ax.grid(True, alpha=0.3, which="both")
    return fig


_RUN_LABEL = {"ugs": "the UGS run", "random": "the random-pruning run"}


def comparable(report: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree between a UGS run and its random baseline to share a table: everything
    but the baseline and the seed (each has the reference's own seed)."""
    cfg = {k: v for k, v in report["config"].items() if k not in ("baseline", "seed")}
    cfg.setdefault("gcn_degree", "receiver")   # results written before the option existed
    return {"model": report["model"], "dataset": report["dataset"], "task": report["task"],
            "hidden": report["hidden"], "features_as": report["data"].get("features_as"),
            "seeds": report.get("seeds"), **cfg}


def render(out: Path, model: str, dataset: str, task: str, plot_png: bool = True,
           seeds: int = 1) -> list[Path]:
    """Markdown for each existing JSON of (model, dataset, task, number of seeds) in ``out``
    (the other baseline beside it when made with the same protocol) and one PNG with both."""
    reps = {}
    for baseline in ("ugs", "random"):
        p = out / f"{result_name(model, dataset, task, baseline, seeds)}.json"
        if p.exists():
            reps[baseline] = json.loads(p.read_text())
    written = []
    for baseline, rep in reps.items():
        others = {_RUN_LABEL[b]: r for b, r in reps.items() if b != baseline}
        kept, notes = common.same_protocol(rep, others, comparable)
        other = next(iter(kept.values()), None)
        p = out / f"{result_name(model, dataset, task, baseline, seeds)}.md"
        written.append(write_markdown(p, markdown(rep, other, notes)))
    if plot_png and reps:
        main = "ugs" if "ugs" in reps else "random"
        kept, _ = common.same_protocol(reps[main], {b: r for b, r in reps.items() if b != main},
                                       comparable)
        fig = plot({main: reps[main], **kept})
        written.append(save_png(fig, out / f"{result_name(model, dataset, task, main, seeds)}.png"))
    return written


def seed_means(per_seed: list[list[dict[str, Any]]], metric: str) -> list[dict[str, Any]]:
    """One record per round: the first seed's record with ``test_<metric>`` and
    ``val_<metric>`` replaced by their means over the seeds, plus ``..._std`` (sample
    std, ``ddof=1``) and ``..._per_seed``. Only rounds every seed finished are kept."""
    n = min(len(recs) for recs in per_seed)
    out = []
    for k in range(n):
        r = dict(per_seed[0][k])
        for part in ("test", "val"):
            key = f"{part}_{metric}"
            vals = [recs[k][key] for recs in per_seed]
            mean = sum(vals) / len(vals)
            r[key] = mean
            ddof = 1 if len(vals) > 1 else 0
            r[f"{key}_std"] = (sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof)) ** 0.5
            r[f"{key}_per_seed"] = vals
        out.append(r)
    return out


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("ugs", "UGS graph lottery tickets with the paper's hyperparameters: "
                          "accuracy per round, MACs, and the measured latency of each "
                          "compiled ticket.")
    p.add_argument("--model", choices=["gcn", "gin", "gat"], default="gcn")
    p.add_argument("--dataset", choices=["cora", "citeseer", "pubmed", "csbm"], default="cora")
    p.add_argument("--data", type=Path, default=common.default_data_dir(),
                   help="folder holding planetoid/")
    p.add_argument("--task", choices=["node", "link"], default="node")
    p.add_argument("--baseline", choices=["ugs", "random"], default="ugs")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--epochs", type=int, default=None,
                   help="mask-search and fix-mask epochs (default 200 each)")
    p.add_argument("--mask-epochs", type=int, default=None)
    p.add_argument("--fix-epochs", type=int, default=None)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--prune-graph", type=float, default=0.05,
                   help="p_g: fraction of the surviving edges pruned per round (paper: 0.05)")
    p.add_argument("--prune-weight", type=float, default=0.2,
                   help="p_θ: fraction of the surviving weights pruned per round (paper: 0.2)")
    p.add_argument("--features", choices=["auto", "dense", "csr"], default="auto",
                   help="node features as a dense tensor or a CSR (auto: CSR when <= 10%% are "
                        "non-zero); dense matches the reference and the paper's MAC formula")
    p.add_argument("--seed", type=int, default=None, help="default: the paper's seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run once per seed (overrides --seed) and report mean ± std per round")
    p.add_argument("--gcn-degree", choices=["sender", "receiver"], default="sender",
                   help="GCN degree normalisation: sender (the reference's D^-1/2 A_m^T "
                   "D^-1/2) or receiver (the usual GCN); see sparselth.nn.GCNConv")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--s1", type=float, default=None)
    p.add_argument("--s2", type=float, default=None)
    ugs_pretrained.add_args(p)
    p.add_argument("--csbm-nodes", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--latency-budget", type=float, default=1.0,
                   help="seconds of interleaved timing per round")
    p.add_argument("--compile-budget", type=float, default=0.1,
                   help="sparselth.compile timing budget per layer (seconds)")
    p.add_argument("--no-latency", action="store_true", help="skip compile and timing")
    p.add_argument("--runs", type=Path, default=None,
                   help="checkpoint root, a run resumes from here (default runs/ugs, "
                   "runs/local/ugs for a protocol that is not the published one)")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite Markdown/PNG from the existing JSON files (in --out, "
                   "default bench/results/)")
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``ugs-<model>-<dataset>[-link][-<n>seeds][-random][-graphcl]``."""
    return result_name(args.model, args.dataset, args.task, args.baseline,
                       _num_seeds(args)) + ugs_pretrained.suffix(args)


def _num_seeds(args: argparse.Namespace) -> int:
    return len(args.seeds) if args.seeds else 1


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    cfg, _ = config_from_args(args)
    out = dict(cfg.to_dict(), model=args.model, dataset=args.dataset, hidden=args.hidden,
               features=args.features, threads=args.threads, latency=not args.no_latency)
    if args.seeds:
        out["seeds"] = list(args.seeds)
    if not args.no_latency:
        out.update(latency_budget=args.latency_budget, compile_budget=args.compile_budget)
    if args.dataset == "csbm":
        out["csbm_nodes"] = args.csbm_nodes
    return out


def config_from_args(args) -> tuple[Any, str]:
    from sparselth.prune import UGSConfig

    if args.task == "link":
        hp, source = dict(LINK_HP), "UGS reference code, link prediction"
    else:
        key = (args.model, "cora" if args.dataset == "csbm" else args.dataset)
        hp, source = dict(PAPER_HP[key]), f"UGS reference code, {key[0]} on {key[1]}"
        if args.dataset == "csbm":
            hp["seed"], source = 0, source + " (synthetic data, seed 0)"
        elif args.baseline == "random":
            hp["seed"] = RANDOM_SEEDS[args.dataset] if args.model == "gcn" else 666
            source += ", random-pruning seed"
    for flag, key in (("seed", "seed"), ("lr", "lr"), ("weight_decay", "weight_decay"),
                      ("s1", "s1"), ("s2", "s2")):
        v = getattr(args, flag)
        if v is not None:
            hp[key] = v
            source += f", {key} overridden"
    epochs = args.epochs if args.epochs is not None else 200
    if args.seeds:
        hp["seed"] = args.seeds[0]
        source += f", seeds {list(args.seeds)}"
    init = ugs_pretrained.init_path(args)
    if init:
        source += ", first layer pre-trained (node-level GraphCL)"
    cfg = UGSConfig(rounds=args.rounds, prune_graph=args.prune_graph, init=init,
                    prune_weight=args.prune_weight,
                    mask_epochs=args.mask_epochs or epochs, fix_epochs=args.fix_epochs or epochs,
                    baseline=args.baseline, task=args.task, gcn_degree=args.gcn_degree, **hp)
    return cfg, source


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    given = list(sys.argv[1:] if argv is None else argv)
    if "--task=graph" in given or any(a == "--task" and b == "graph"
                                      for a, b in zip(given, given[1:])):
        from . import ugs_graphs   # graph classification: its own suite, same procedure

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise SystemExit("bench.ugs: --task graph runs on one process; start it without "
                             "torchrun")
        return ugs_graphs.main(given)
    parser = build_parser()
    args = parser.parse_args(argv)
    name = output_name(args)
    distributed.init_from_env()   # under torchrun: one rank per process, else nothing
    rank, size, main = distributed.world()
    if args.report_only and not main:
        return None
    if args.report_only:
        for p in render(args.out or common.RESULTS_DIR, args.model, args.dataset, args.task,
                        not args.no_plot, _num_seeds(args)):
            print(f"written: {p}", file=sys.stderr)
        return None
    dest = common.result_path(name, args, PUBLISHED, parser=parser, protocol=run_protocol)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sparselth import CSR
    from sparselth.data import link_split
    from sparselth.prune import UGS
    from sparselth.train import LinkPredictionTask, NodeClassificationTask, node_features

    cfg, source = config_from_args(args)
    machine = common.machine() if main else {}
    data = load_data(args.dataset, args.data, args.csbm_nodes)
    # rank 0 pre-trains (it alone reads the checkpoint: UGS broadcasts θ0)
    pretraining = ugs_pretrained.ensure_checkpoint(args, data, cfg.init) if main else None
    distributed.barrier()
    x = node_features(data.x, max_density={"auto": 0.1, "dense": -1.0, "csr": 1.0}[args.features])
    density = float((data.x != 0).sum()) / data.x.numel()
    info = {"nodes": data.num_nodes, "features": data.num_features, "classes": data.num_classes,
            "edges": data.num_edges, "feature_density": density,
            "features_as": "CSR" if isinstance(x, CSR) else "dense",
            "missing_features": bool(data.missing_features)}
    if data.missing_features:
        zero_rows = int((data.x.abs().sum(1) == 0).sum())
        info["zero_feature_nodes"] = zero_rows
        info["missing_features_note"] = (
            f"{data.name}: ind.{data.name}.allx is not in the data folder, so {zero_rows} of "
            f"{data.num_nodes} nodes have all-zero features (GraphData.missing_features); "
            "accuracies are not comparable to the paper's.")
    if args.task == "link":
        split = link_split(data.edge_index, data.num_nodes, val=0.05, test=0.10, seed=cfg.seed)
        adj = CSR.from_edge_index(split.train_edge_index.flip(0), num_nodes=data.num_nodes)
        task = LinkPredictionTask(split, x)
        info["link_split"] = split.info
    else:
        adj = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
        task = NodeClassificationTask(data, x)
    build = model_builder(args.model, adj, data.num_features, data.num_classes, args.hidden,
                          args.task, args.gcn_degree)
    # build the timing models from their own seed so the UGS run's θ0 does not depend on it
    with torch.random.fork_rng():
        torch.manual_seed(0)
        measure = Latency(build, task.inputs(), args.latency_budget, args.compile_budget,
                          enabled=not args.no_latency)
    runs = args.runs or common.RUNS_DIR / ("" if dest.published else "local") / "ugs"
    elapsed = stopwatch()
    per_seed, run_dirs = [], []
    for seed in (args.seeds or [cfg.seed]):
        ugs = UGS(build, task, dataclasses.replace(cfg, seed=seed), root=runs / name,
                  measure=measure, progress=not args.no_progress)
        per_seed.append([dict(r) for r in ugs.run()])
        run_dirs.append(str(ugs.run_dir))
    if not main:   # rank 0 writes the result
        distributed.shutdown()
        return None
    records = seed_means(per_seed, cfg.metric) if args.seeds else per_seed[0]
    dense_macs, dense_paper = records[0].get("macs_total"), records[0].get("macs_paper")
    for r in records:
        r["promised_speedup"] = (dense_macs / r["macs_total"]
                                 if dense_macs and r.get("macs_total") else None)
        r["promised_speedup_paper"] = (dense_paper / r["macs_paper"]
                                       if dense_paper and r.get("macs_paper") else None)
    notes = common.finish_machine(machine)
    deviations = [text for m, d, text in DEVIATIONS
                  if m in (None, args.model) and d in (None, args.dataset)]
    if args.model == "gcn" and args.gcn_degree == "receiver":
        deviations.insert(0, RECEIVER_DEVIATION)
    if args.task == "link":
        deviations.append(LINK_DEVIATION)
    rep = {
        "benchmark": "ugs",
        "model": args.model,
        "dataset": args.dataset,
        "task": args.task,
        "baseline": args.baseline,
        "metric": cfg.metric,
        "hidden": args.hidden,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "hyperparameters": source,
        "data": info,
        "dense": records[0],
        "rounds": records[1:],
        "per_round_seconds": [r.get("seconds") for r in records[1:]],
        "deviations": deviations,
        "run_dir": run_dirs[0] if len(run_dirs) == 1 else run_dirs,
        "wall_s_this_invocation": elapsed(),
        "machine": machine,
        "notes": notes,
        "command": "python -m bench.ugs " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if size > 1:
        rep["world_size"] = size
        rep["command"] = (f"torchrun --nproc_per_node={size} -m bench.ugs "
                          + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.seeds:
        rep["seeds"] = list(args.seeds)
        rep["per_seed"] = [{"seed": s, "dense": recs[0], "rounds": recs[1:]}
                           for s, recs in zip(args.seeds, per_seed)]
    if cfg.init:
        ugs_pretrained.attach_comparison(dest.folder, rep, result_name(
            args.model, args.dataset, args.task, args.baseline, _num_seeds(args)), pretraining)
    common.write_result(dest, rep)  # the JSON; the Markdown and PNG also read the other run
    if cfg.init:
        written = ugs_pretrained.render(dest, rep, markdown(rep, None), not args.no_plot)
    else:
        written = render(dest.folder, args.model, args.dataset, args.task, not args.no_plot,
                         _num_seeds(args))
    print(dest.file(".md").read_text())
    for p in written:
        print(f"written: {p}", file=sys.stderr)
    distributed.shutdown()
    return rep


if __name__ == "__main__":
    main()
