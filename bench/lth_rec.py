"""Lottery tickets in recommenders: IMP on the embedding table of MF / LightGCN.

``python -m bench.lth_rec --model lightgcn --dataset lastfm --data datasets``
runs :func:`sparselth.train.recsys.find_recsys_ticket` (round 0 dense, then ``--rounds``
rounds pruning ``--prune`` of the surviving table entries by one global threshold on
``|W * M|``, rewinding the survivors to θ0) and writes, in ``bench/results/`` for the
published protocol of the result (``PUBLISHED``), else in ``bench/results/local/``, or in
``--out``:

- ``lth-<model>-<dataset>[-row][-random].json``: a ``"dense"`` record (round
  0), the ``"rounds"`` list, the config, seed, protocol text and machine;
- the same name ``.md``: a table per round (kept %, Recall/NDCG@{10,20}, bytes stored,
  lookup and ranking latency, epochs, seconds) and the largest sparsity whose test
  Recall@20 is within 2% (relative) of dense;
- ``lth-<model>-<dataset>[-row].png``: Recall@20 and NDCG@20 against the fraction of the
  table kept (dense line; the random baseline when its JSON, made with the same protocol,
  is in the same folder) and stored bytes;
- the ticket of that sparsest within-2% round (or the last round) as a
  :class:`sparselth.Ticket` in ``<run-dir>/ticket``.

``--protocol standard`` runs the protocol other recommender toolkits use instead of the
reference splits: every interaction split 80/10/10 per user at random (train/validation/test),
d = 64, early stopping on validation Recall@20, full ranking; its results are named
``lth-<model>-<dataset>-standard...`` and never go to the published folder.

Protocol differences from LTH-MRS, stated in every result: model selection (early stopping)
uses a validation split carved from the training pairs (10% per user, seeded), not the test
split; the number of epochs per round is capped (``--epochs``, ``--patience``) so that a run
fits a small CPU budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sparselth.utils.plot import figure, save_png, style_axes
from sparselth.utils.records import markdown_table, write_json
from sparselth.utils.timing import stopwatch

from . import common

TOLERANCE = 0.02
# CPU-budget protocol (measured on a shared 2-core CPU, 1 thread): LightGCN at lr 5e-3 reaches
# the validation Recall@20 that lr 1e-3 reaches after ~550 epochs in ~120 epochs (LastFM
# 0.262 vs 0.259, ML-100K 0.324 vs 0.327); MF overfits at higher rates and keeps 1e-3.
DEFAULT_LR = {"lightgcn": 5e-3, "mf": 1e-3}
DEFAULT_EPOCHS = {"lightgcn": 150, "mf": 250}
DEFAULT_PATIENCE = {"lightgcn": 4, "mf": 6}
DEFAULT_DIM = {"reference": 32, "standard": 64}
# the arguments of the results committed in bench/results/ (see bench.common.result_path)
PUBLISHED = {
    "lth-lightgcn-lastfm": "--model lightgcn --dataset lastfm --rounds 12 --prune 0.2",
    "lth-lightgcn-lastfm-random":
        "--model lightgcn --dataset lastfm --baseline random --rounds 12 --prune 0.2",
    "lth-lightgcn-ml100k": "--model lightgcn --dataset ml100k --epochs 120 --rounds 12 --prune 0.2",
    "lth-mf-lastfm": "--model mf --dataset lastfm --rounds 12 --prune 0.2",
    "lth-mf-lastfm-random": "--model mf --dataset lastfm --baseline random --rounds 12 --prune 0.2",
    "lth-mf-ml100k": "--model mf --dataset ml100k --rounds 12 --prune 0.2",
}


def result_stem(model: str, dataset: str, granularity: str, strategy: str,
                protocol: str = "reference") -> str:
    stem = f"lth-{model}-{dataset}"
    if protocol != "reference":
        stem += f"-{protocol}"
    if granularity == "row":
        stem += "-row"
    if strategy == "random":
        stem += "-random"
    return stem


def load_data(args: argparse.Namespace):
    from sparselth.data import load_lastfm, load_movielens_100k, synthetic_interactions

    proto = getattr(args, "protocol", "reference")
    if args.dataset == "lastfm":
        data = load_lastfm(args.data, protocol=proto, seed=0)
    elif args.dataset == "ml100k":
        data = load_movielens_100k(args.data, split="random", test_fraction=0.2, seed=0,
                                   protocol=proto)
    else:
        data = synthetic_interactions(args.synthetic_users, args.synthetic_items, seed=0,
                                      protocol=proto)
    # the standard split has its validation part already
    return data if proto == "standard" else data.with_validation(args.val_fraction, seed=0)


def protocol_text(args: argparse.Namespace, data, cfg) -> str:
    s = data.summary()
    split = data.info.get("split", "")
    model = "LightGCN (3 layers, mean of layers 0..3)" if args.model == "lightgcn" else "MF"
    if args.model == "lightgcn" and args.layers != 3:
        model = f"LightGCN ({args.layers} layers, mean of layers 0..{args.layers})"
    if getattr(args, "protocol", "reference") == "standard":
        data_text = (f"Data (standard protocol): {s['name']} with {s['users']} users, "
                     f"{s['items']} items; split: {split}; ")
    else:
        data_text = (f"Data: {s['name']} with {s['users']} users, {s['items']} items; test "
                     f"split: {split}; validation: {args.val_fraction:g} of each user's "
                     "training pairs at random (seed 0); ")
    return (
        data_text + f"train/val/test pairs {s['train']}/{s['val']}/{s['test']}. "
        f"Model: {model}, d={args.dim}, one (U+I)xd table, Xavier-uniform init (seed {args.seed}). "
        f"Training: BPR (uniform user, positive, rejection-sampled negative; as many samples "
        f"per epoch as training pairs), Adam lr {cfg.lr:g}"
        + (" (the references use 1e-3; the larger rate converges in ~4x fewer epochs)"
           if cfg.lr != 1e-3 else "")
        + f", batch {cfg.batch_size}, "
        f"reg {cfg.reg:g} on ego embeddings, at most {cfg.epochs} epochs per round, evaluation "
        f"every {cfg.eval_every} epoch(s), early stopping on VALIDATION Recall@20 with "
        f"patience {cfg.patience} evaluations, best validation state kept (the LTH-MRS and "
        f"LightGCN references select on the test split). Test metrics: full ranking over all "
        f"items, training and validation items excluded, averaged over users with test items. "
        f"Pruning: {args.rounds} rounds of IMP, each pruning {args.prune:g} of the surviving "
        f"{'entries' if args.granularity == 'element' else 'rows (by L2 norm)'} of the table "
        f"with one global {'|W*M|' if args.granularity == 'element' else 'row-norm'} threshold "
        f"over users and items together"
        + (" (random baseline: random survivors instead)" if args.baseline == "random" else "")
        + f", survivors rewound to the initial weights θ0 (seed {args.seed}) every round."
    )


def markdown(report: dict[str, Any]) -> str:
    rows = []
    dense = report["dense"]
    for r in [dense] + report["rounds"]:
        rel = r["recall@20"] / dense["recall@20"] if dense["recall@20"] else None
        rows.append([
            r["round"],
            f"{100 * r['fraction_kept']:.2f}",
            r["recall@20"],
            r["ndcg@20"],
            r["recall@10"],
            r["ndcg@10"],
            None if rel is None else f"{100 * rel:.1f}",
            f"{r['bytes_stored'] / 1024:.1f}",
            r.get("bytes_format"),
            r.get("lookup_ms_dense"),
            r.get("lookup_ms_compressed"),
            r.get("rank_ms"),
            f"{r.get('best_epoch')}/{r.get('epochs_run')}",
            r.get("seconds"),
        ])
    head = [
        "round", "kept %", "Recall@20", "NDCG@20", "Recall@10", "NDCG@10", "R@20 vs dense %",
        "stored KiB", "format", "lookup dense ms", "lookup compressed ms", "ranking ms",
        "best/run epochs", "seconds",
    ]
    best = report.get("ticket_within_2pct")
    lines = [
        f"# LTH for recommenders: {report['model']} on {report['dataset']}"
        f" ({report['strategy']}, {report['granularity']})",
        "",
        report["protocol"],
        "",
        markdown_table(head, rows),
        "",
        f"Dense table: {dense['bytes_dense'] / 1024:.1f} KiB "
        f"({dense['params_total']} entries); stored: {dense['bytes_method']} (the smallest of "
        "its row-compact, per-row CSR and per-row bitmask formats, indices included). "
        f"Lookup: batch {dense.get('lookup_batch', '-')} random rows (median).",
        "",
    ]
    if best is not None:
        lines.append(
            f"Largest sparsity with test Recall@20 within {100 * TOLERANCE:g}% (relative) of "
            f"dense: {100 * best['sparsity']:.2f}% (round {best['round']}, "
            f"{100 * best['fraction_kept']:.2f}% of the table kept, Recall@20 "
            f"{best['recall@20']:.4f} vs dense {dense['recall@20']:.4f})."
        )
    else:
        lines.append(f"No pruned round is within {100 * TOLERANCE:g}% of dense Recall@20.")
    lines += ["", f"Total {report['wall_s']:.0f} s; machine: {report['machine'].get('cpu')}, "
              f"{report['machine'].get('torch_threads')} torch threads, load average "
              f"{report['machine'].get('loadavg_start')} at the start.", ""]
    lines += common.notes_section(report.get("notes") or [])
    return "\n".join(lines)


def comparable(report: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree between a run and its random baseline to share a figure: everything
    but the pruning strategy."""
    c = report["config"]
    return {"model": report["model"], "dataset": report["dataset"], "data": report["data"],
            "granularity": report["granularity"], "dim": c["dim"], "layers": c["layers"],
            "seed": c["seed"], "train": c["train"],
            "imp": {k: v for k, v in c["imp"].items() if k != "strategy"}}


def plot(folder: Path, stem: str, report: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Recall@20 / NDCG@20 / stored bytes vs fraction kept, for ``report`` (the result
    ``stem`` or ``stem-random``) and the other one when its JSON in ``folder`` has the same
    protocol; the figure and a note for a file left out."""
    imp = "IMP (row L2 norm)" if stem.endswith("-row") else "IMP (magnitude)"
    labels = {"magnitude": imp, "random": "random pruning"}
    mine = labels[report["strategy"]]
    other_name = stem if report["strategy"] == "random" else f"{stem}-random"
    path = folder / f"{other_name}.json"
    found = {}
    if path.is_file():
        found[labels["random" if report["strategy"] == "magnitude" else "magnitude"]] = \
            json.loads(path.read_text())
    others, notes = common.same_protocol(report, found, comparable)
    runs = dict(sorted({mine: report, **others}.items(), key=lambda kv: kv[0] != imp))
    first = report
    fig, axes = figure(3, width=15, height=4.2)
    dense_done = False
    for label, rep in runs.items():
        recs = [rep["dense"]] + rep["rounds"]
        kept = [100 * r["fraction_kept"] for r in recs]
        for ax, key in zip(axes[:2], ("recall@20", "ndcg@20")):
            ax.plot(kept, [r[key] for r in recs], "o-", ms=4, label=label)
            if not dense_done:
                ax.axhline(rep["dense"][key], color="k", ls="--", lw=1, label="dense")
                if key == "recall@20":
                    ax.axhline((1 - TOLERANCE) * rep["dense"][key], color="grey", ls=":",
                               lw=1, label="dense - 2%")
        axes[2].plot(kept, [r["bytes_stored"] / 1024 for r in recs], "o-", ms=4,
                     label=f"stored ({label})")
        if not dense_done:
            axes[2].axhline(rep["dense"]["bytes_dense"] / 1024, color="k", ls="--", lw=1,
                            label="dense table")
        dense_done = True
    ticks = [100 * r["fraction_kept"] for r in [first["dense"]] + first["rounds"]]
    for ax, title in zip(axes, ("test Recall@20", "test NDCG@20", "table bytes (KiB)")):
        common.log_ticks(ax, ticks, fmt="{:.3g}")
        ax.tick_params(axis="x", labelsize=7)
        ax.invert_xaxis()
        style_axes(ax, xlabel="% of the embedding table kept",
                   title=f"{first['model']} / {first['dataset']}: {title}")
    return fig, notes


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("lth_rec", "Lottery tickets for MF / LightGCN: IMP on the embedding "
                          "table; JSON, Markdown and PNG.")
    p.add_argument("--model", choices=["lightgcn", "mf"], default="lightgcn")
    p.add_argument("--dataset", choices=["lastfm", "ml100k", "synthetic"], default="lastfm")
    p.add_argument("--data", type=Path, default=common.default_data_dir(),
                   help="datasets folder (holds lastfm/, movielens-100k/)")
    p.add_argument("--rounds", type=int, default=12, help="pruning rounds after the dense one")
    p.add_argument("--prune", type=float, default=0.2,
                   help="fraction of the surviving entries pruned per round (paper: 0.1)")
    p.add_argument("--granularity", choices=["element", "row"], default="element")
    p.add_argument("--baseline", choices=["random"], default=None,
                   help="run the random-pruning baseline instead of magnitude IMP")
    p.add_argument("--epochs", type=int, default=None,
                   help="max epochs per round (default: lightgcn 150, mf 250; paper: 1000)")
    p.add_argument("--patience", type=int, default=None,
                   help="evaluations without a better validation Recall@20 before stopping "
                   "(default: lightgcn 4, mf 6; paper: 100 epochs)")
    p.add_argument("--eval-every", type=int, default=5, help="epochs between evaluations")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: lightgcn 5e-3, mf 1e-3; paper: 1e-3)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--protocol", choices=["reference", "standard"], default="reference",
                   help="reference: each dataset's reference split (the published results); "
                   "standard: every interaction split 80/10/10 per user at random, d 64 unless "
                   "--dim, early stopping on validation Recall@20 (as other toolkits)")
    p.add_argument("--dim", type=int, default=None,
                   help="embedding size (default: 32 reference, 64 standard protocol)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--val-fraction", type=float, default=None,
                   help="validation share of each user's training pairs (default 0.1; the "
                   "standard protocol has its own 10%% validation split)")
    p.add_argument("--synthetic-users", type=int, default=2000)
    p.add_argument("--synthetic-items", type=int, default=3000)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: torch's default). 1 by default: the tables are small "
                   "and a second thread only adds waiting on a shared 2-core machine")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="IMP checkpoint folder (resumable; default runs/<result name>, "
                   "runs/local/<result name> for a protocol that is not the published one)")
    p.add_argument("--no-latency", action="store_true", help="skip lookup latency timing")
    p.add_argument("--no-ticket", action="store_true", help="do not save the ticket")
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    """``lth-<model>-<dataset>[-row][-random]``."""
    return result_stem(args.model, args.dataset, args.granularity,
                       "random" if args.baseline == "random" else "magnitude",
                       getattr(args, "protocol", "reference"))


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the per-model and per-protocol defaults filled in."""
    proto = getattr(args, "protocol", "reference")
    if proto == "standard" and args.val_fraction is not None:
        raise SystemExit("bench.lth_rec: --val-fraction does not apply to --protocol standard "
                         "(its split has a 10% validation part)")
    return argparse.Namespace(**{
        **vars(args),
        "protocol": proto,
        "dim": DEFAULT_DIM[proto] if args.dim is None else args.dim,
        "val_fraction": (None if proto == "standard" else
                         0.1 if args.val_fraction is None else args.val_fraction),
        "lr": DEFAULT_LR[args.model] if args.lr is None else args.lr,
        "epochs": DEFAULT_EPOCHS[args.model] if args.epochs is None else args.epochs,
        "patience": DEFAULT_PATIENCE[args.model] if args.patience is None else args.patience,
    })


def run_protocol(args: argparse.Namespace) -> dict:
    """The argument values that change this suite's numbers, defaults resolved."""
    a = _resolve(args)
    out = {k: getattr(a, k) for k in (
        "model", "dataset", "rounds", "prune", "granularity", "baseline", "epochs", "patience",
        "eval_every", "lr", "batch_size", "reg", "dim", "seed", "val_fraction", "threads")}
    out["layers"] = a.layers if a.model == "lightgcn" else None
    out["latency"] = not a.no_latency
    if a.dataset == "synthetic":
        out.update(synthetic_users=a.synthetic_users, synthetic_items=a.synthetic_items)
    if a.protocol != "reference":  # only when not the default: committed results keep theirs
        out["protocol"] = a.protocol
    return out


# settings a resumed IMP run folder must share (rounds may grow: the run is extended)
_RUN_SETTINGS = ("model", "dataset", "prune", "granularity", "baseline", "epochs", "patience",
                 "eval_every", "lr", "batch_size", "reg", "dim", "layers", "seed",
                 "val_fraction", "synthetic_users", "synthetic_items", "protocol")


def _claim_run_dir(run_dir: Path, protocol: Mapping[str, Any]) -> None:
    """Refuse a run folder that holds a run with other settings; record ours in it."""
    settings = {k: protocol[k] for k in _RUN_SETTINGS if k in protocol}
    sfile = run_dir / "bench_settings.json"
    if sfile.is_file():
        old = json.loads(sfile.read_text())
        diffs = common.protocol_differences(settings, {k: old.get(k) for k in settings},
                                            label="in the folder")
        if diffs:
            raise SystemExit(f"bench.lth_rec: {run_dir} holds a run with other settings "
                             f"({'; '.join(diffs)}); pass another --run-dir or delete it")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(sfile, settings)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sparselth import Ticket
    from sparselth.train.recsys import BPRConfig, find_recsys_ticket, largest_sparsity_within

    strategy = "random" if args.baseline == "random" else "magnitude"
    stem = output_name(args)
    dest = common.result_path(stem, args, PUBLISHED, parser=parser, protocol=run_protocol)
    args = _resolve(args)
    run_dir = Path(args.run_dir or (common.RUNS_DIR / ("" if dest.published else "local") / stem))
    _claim_run_dir(run_dir, dest.protocol)
    info = common.machine()
    elapsed = stopwatch()
    data = load_data(args)
    cfg = BPRConfig(lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                    patience=args.patience, eval_every=args.eval_every, reg=args.reg,
                    seed=args.seed)
    out = find_recsys_ticket(
        args.model, data, rounds=args.rounds, fraction=args.prune,
        granularity=args.granularity, strategy=strategy, train=cfg, dim=args.dim,
        layers=args.layers, seed=args.seed, run_dir=run_dir,
        measure_latency=not args.no_latency, progress=not args.no_progress,
    )
    recs = out["records"]
    notes = common.finish_machine(info)
    best = largest_sparsity_within(recs[1:], recs[0], "recall@20", TOLERANCE)
    report: dict[str, Any] = {
        "benchmark": "lth_rec",
        "model": args.model,
        "dataset": args.dataset,
        "strategy": strategy,
        "granularity": args.granularity,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "protocol": protocol_text(args, data, cfg),
        "config": {**out["config"], "argv": sys.argv[1:] if argv is None else list(argv)},
        "data": out["data"],
        "dense": recs[0],
        "rounds": recs[1:],
        "ticket_within_2pct": best,
        "tolerance": TOLERANCE,
        "machine": info,
        "wall_s": elapsed(),
        "notes": notes,
    }
    if not args.no_ticket:
        r = best["round"] if best is not None else recs[-1]["round"]
        tpath = run_dir / "ticket"
        Ticket.from_run(run_dir, round=r, model=args.model, dataset=args.dataset,
                        protocol=report["protocol"]).save(tpath)
        report["ticket_path"] = str(tpath)
        report["ticket_round"] = r
    fig = None
    if not args.no_plot:
        fig, left_out = plot(dest.folder, stem.removesuffix("-random"), report)
        notes += left_out
    md = markdown(report)
    common.write_result(dest, report, md)
    if fig is not None:
        save_png(fig, dest.folder / f"{stem.removesuffix('-random')}.png")
    print(md)
    return report


if __name__ == "__main__":
    main()
