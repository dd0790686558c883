"""Ticket commands of the ``sparselth`` CLI: ``find``, ``compile``, ``plot``.

``add_subcommands(subparsers)`` adds them to an ``argparse`` sub-parser set; each sets
``func`` (namespace -> exit code), the convention of :mod:`sparselth.cli`. Also runnable on
its own: ``python -m sparselth.cli_tickets <command> ...``.

Typical session::

    sparselth find imp.toml --out runs/mlp          # IMP -> runs/mlp/{imp,tickets,ticket}
    sparselth compile runs/mlp --all-rounds --out runs/mlp/compile.json
    sparselth plot runs/mlp runs/mlp/compile.json --out runs/mlp/plots

Config file of ``find`` (TOML or JSON; every section and key optional)::

    seed = 0
    [model]                  # name: mlp | convnet | conv_autoencoder; other keys: its options
    name = "mlp"
    hidden = [256, 256]
    [data]                   # name: synthetic | digits (digits needs scikit-learn)
    name = "synthetic"
    n_train = 2000
    n_test = 500
    image_size = 8
    num_classes = 10
    [train]                  # SGD on cross-entropy, per IMP round
    epochs = 3               # passes over the training set ...
    max_steps = 0            # ... or stop after this many steps (0: no limit)
    batch_size = 64
    lr = 0.05
    momentum = 0.9
    weight_decay = 0.0
    [imp]                    # any sparselth.prune.IMPConfig field
    rounds = 5
    fraction = 0.5
    rewind = "late"
    rewind_step = 20
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .compile import format_number, format_si as _si

__all__ = [
    "DEFAULT_CONFIG",
    "add_subcommands",
    "build_parser",
    "load_config",
    "main",
    "run_compile",
    "run_find",
    "run_plot",
]

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "mlp"},
    "data": {"name": "synthetic", "n_train": 2000, "n_test": 500, "image_size": 8,
             "num_classes": 10, "channels": 1, "noise": 0.6},
    "train": {"epochs": 3, "max_steps": 0, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
              "weight_decay": 0.0},
    "imp": {"rounds": 5, "fraction": 0.5, "rewind": "late", "rewind_step": 20},
}
_SECTIONS = ("model", "data", "train", "imp")
REPORTS_FORMAT = "sparselth.compile_reports"


# =========================================================================== config


def load_config(path: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON config, merge it over :data:`DEFAULT_CONFIG` and
    validate it; ``overrides`` maps ``"section.key"`` to a value. Raises ``ValueError``
    naming the file and key on unknown sections/keys or bad values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError as e:  # Python 3.10
                raise ValueError(f"{path}: TOML needs Python >= 3.11; use JSON") from e
            user = tomllib.loads(text)
        else:
            user = json.loads(text)
    except ValueError as e:
        raise ValueError(f"config {str(path)!r} is not valid "
                         f"{'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {e}") from e
    if not isinstance(user, dict):
        raise ValueError(  # noqa: TRY004 - a config error, like every other one here
            f"config {str(path)!r} must hold a table/object at the top")
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    for key, val in user.items():
        if key == "seed":
            cfg["seed"] = val
        elif key in _SECTIONS:
            if not isinstance(val, dict):
                raise ValueError(f"config {str(path)!r}: [{key}] must be a table")
            if key in ("model",) and val.get("name", cfg[key]["name"]) != cfg[key]["name"]:
                cfg[key] = {}
            cfg[key].update(val)
        else:
            raise ValueError(f"config {str(path)!r}: unknown section {key!r}; known: "
                             f"seed, {', '.join(_SECTIONS)}")
    for dotted, val in (overrides or {}).items():
        sec, _, key = dotted.partition(".")
        cfg[sec][key] = val
    _validate_config(cfg, str(path))
    return cfg


def _validate_config(cfg: dict[str, Any], where: str) -> None:
    from .models.small import DATASETS, MODELS
    from .prune import IMPConfig

    if not isinstance(cfg["seed"], int):
        raise ValueError(  # noqa: TRY004 - a config error, like every other one here
            f"config {where!r}: seed must be an int, got {cfg['seed']!r}")
    if cfg["model"].get("name") not in MODELS:
        raise ValueError(f"config {where!r}: model.name must be one of {sorted(MODELS)}, got "
                         f"{cfg['model'].get('name')!r}")
    if cfg["model"]["name"] == "conv_autoencoder":
        raise ValueError(f"config {where!r}: find trains classifiers; conv_autoencoder is for "
                         "compile tests and benchmarks")
    data_keys = set(DEFAULT_CONFIG["data"])
    bad = set(cfg["data"]) - data_keys
    if bad:
        raise ValueError(f"config {where!r}: unknown [data] keys {sorted(bad)}; known: "
                         f"{sorted(data_keys)}")
    if cfg["data"]["name"] not in DATASETS:
        raise ValueError(f"config {where!r}: data.name must be one of {list(DATASETS)}")
    bad = set(cfg["train"]) - set(DEFAULT_CONFIG["train"])
    if bad:
        raise ValueError(f"config {where!r}: unknown [train] keys {sorted(bad)}; known: "
                         f"{sorted(DEFAULT_CONFIG['train'])}")
    t = cfg["train"]
    for k in ("epochs", "max_steps", "batch_size"):
        if not isinstance(t[k], int) or t[k] < 0 or (k == "batch_size" and t[k] < 1):
            raise ValueError(f"config {where!r}: train.{k} must be a non-negative int, got "
                             f"{t[k]!r}")
    if t["epochs"] == 0 and t["max_steps"] == 0:
        raise ValueError(f"config {where!r}: train.epochs or train.max_steps must be > 0")
    try:
        IMPConfig.from_dict({**cfg["imp"], "seed": cfg["seed"]})
    except (TypeError, ValueError) as e:
        raise ValueError(f"config {where!r}: [imp]: {e}") from e


# =========================================================================== find


def _data_and_model(cfg: Mapping[str, Any]):
    from .models.small import build_model, make_dataset

    d = dict(cfg["data"])
    data = make_dataset(d.pop("name"), seed=cfg["seed"], **d)
    spec = dict(cfg["model"])
    name = spec.pop("name")
    model = build_model(name, in_channels=data["channels"], image_size=data["image_size"],
                        num_classes=data["num_classes"], **spec)
    return data, model


def _model_spec(cfg: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(cfg["model"])
    name = spec.pop("name")
    return {"name": name, "kwargs": spec, "in_channels": data["channels"],
            "image_size": data["image_size"], "num_classes": data["num_classes"]}


def run_find(config: Any, out: Any, *, progress: bool = True,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run IMP as the config says; write the run, one ticket per round and a summary.

    Layout of ``out``: ``config.json`` (the resolved config), ``imp/`` (the IMP run folder,
    resumable: rerunning continues where a crash stopped), ``tickets/round_XXX/`` (a ticket
    per round), ``ticket/`` (the last round's ticket), ``find.json`` (records + paths).
    Returns the summary dict.
    """
    import torch
    import torch.nn.functional as F

    from . import _io
    from .prune import IMP, IMPConfig
    from .ticket import Ticket

    cfg = config if isinstance(config, Mapping) else load_config(config, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg["seed"])
    data, model = _data_and_model(cfg)
    spec = _model_spec(cfg, data)
    imp_cfg = IMPConfig.from_dict({**cfg["imp"], "seed": cfg["seed"]})
    tr = cfg["train"]
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    bs = tr["batch_size"]
    steps_per_epoch = max(1, math.ceil(len(y_tr) / bs))
    total_steps = tr["max_steps"] or tr["epochs"] * steps_per_epoch
    if tr["epochs"] and tr["max_steps"]:
        total_steps = min(total_steps, tr["epochs"] * steps_per_epoch)
    if (imp_cfg.rewind == "late" and imp_cfg.rewind_step is not None
            and imp_cfg.rewind_step > total_steps):
        raise ValueError(f"imp.rewind_step = {imp_cfg.rewind_step} is beyond the "
                         f"{total_steps} training steps of a round (train.epochs / max_steps)")
    holder: dict[str, Any] = {}

    def train_fn(m, round_idx):
        imp = holder["imp"]
        opt = torch.optim.SGD(m.parameters(), lr=tr["lr"], momentum=tr["momentum"],
                              weight_decay=tr["weight_decay"])
        g = torch.Generator().manual_seed(cfg["seed"] * 1000 + round_idx)
        m.train()
        step = 0
        imp.capture_rewind_point(m, step=0)
        with imp.progress_bar(total=total_steps, unit="step") as bar:
            while step < total_steps:
                perm = torch.randperm(len(y_tr), generator=g)
                for i in range(0, len(y_tr), bs):
                    if step >= total_steps:
                        break
                    idx = perm[i:i + bs]
                    loss = F.cross_entropy(m(x_tr[idx]), y_tr[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    imp.capture_rewind_point(m, step=step)
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(loss=f"{loss.item():.3f}")
        m.eval()

    def eval_fn(m):
        m.eval()
        with torch.no_grad():
            logits = m(x_te)
        return {"accuracy": (logits.argmax(1) == y_te).float().mean().item(),
                "loss": F.cross_entropy(logits, y_te).item()}

    example = x_te[:bs]
    imp = IMP(model, train_fn, eval_fn, imp_cfg, run_dir=out / "imp", example_inputs=example,
              progress=progress)
    holder["imp"] = imp
    _io.atomic_write_json(out / "config.json", cfg)
    t0 = time.perf_counter()
    records = imp.run()
    meta = {"model": spec, "input_shape": list(x_te.shape[1:]), "data": cfg["data"],
            "train": cfg["train"]}
    tickets = []
    for rec in records:
        r = rec["round"]
        t = Ticket.from_imp(out / "imp", round=r, **meta)
        p = out / "tickets" / f"round_{r:03d}"
        t.save(p)
        tickets.append(str(p))
    Ticket.from_imp(out / "imp", **meta).save(out / "ticket")
    summary = {"config": cfg, "records": records, "tickets": tickets,
               "ticket": str(out / "ticket"), "imp_dir": str(out / "imp"),
               "wall_time_s": time.perf_counter() - t0}
    _io.atomic_write_json(out / "find.json", summary)
    return summary


def _find_table(records: Sequence[Mapping[str, Any]]) -> str:
    headers = ["round", "sparsity", "remaining", "accuracy", "loss", "MACs", "MACs dense",
               "time s"]
    rows = []
    for r in records:
        m = r.get("metrics", {})
        rows.append([str(r["round"]), f"{r['sparsity']:.4f}", f"{r['remaining']:.4f}",
                     _f(m.get("accuracy")), _f(m.get("loss")), _si(r.get("macs")),
                     _si(r.get("macs_dense")), _f(r.get("wall_time_s"))])
    return _table(headers, rows)


def _cmd_find(args: argparse.Namespace) -> int:
    overrides = {}
    if args.rounds is not None:
        overrides["imp.rounds"] = args.rounds
    if args.fraction is not None:
        overrides["imp.fraction"] = args.fraction
    if args.rewind is not None:
        overrides["imp.rewind"] = args.rewind
    if args.max_steps is not None:
        overrides["train.max_steps"] = args.max_steps
    try:
        cfg = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"sparselth find: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        summary = run_find(cfg, out, progress=not args.no_progress)
    except ValueError as e:
        print(f"sparselth find: {e}", file=sys.stderr)
        return 2
    print(_find_table(summary["records"]))
    print(f"\nIMP run: {summary['imp_dir']}\ntickets: {out / 'tickets'} "
          f"({len(summary['tickets'])} rounds); last round's ticket: {summary['ticket']}")
    print(f"next: sparselth compile {out} --all-rounds --out {out / 'compile.json'}")
    return 0


# =========================================================================== compile


def _resolve_tickets(paths: Sequence[str], all_rounds: bool) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "ticket.json").is_file() or (p.is_file() and p.name == "ticket.json"):
            out.append(p if p.is_dir() else p.parent)
        elif (p / "tickets").is_dir() and all_rounds:
            found = sorted(q for q in (p / "tickets").iterdir() if (q / "ticket.json").is_file())
            if not found:
                raise ValueError(f"{p}: no tickets under {p / 'tickets'}")
            out.extend(found)
        elif (p / "ticket" / "ticket.json").is_file():
            out.append(p / "ticket")
        else:
            raise ValueError(f"{p}: not a ticket folder (no ticket.json) nor a `sparselth find` "
                             "output folder")
    return out


def _model_for_ticket(ticket, where: Path):
    from .models.small import build_model

    spec = ticket.metadata.get("model")
    shape = ticket.metadata.get("input_shape")
    if not isinstance(spec, dict) or "name" not in spec or not isinstance(shape, list):
        raise ValueError(
            f"{where}: the ticket's metadata has no 'model'/'input_shape' (tickets from "
            "`sparselth find` have them); compile other tickets from Python with "
            "sparselth.compile(model, ticket, example_inputs=...)")
    model = build_model(spec["name"], in_channels=spec.get("in_channels"),
                        image_size=spec.get("image_size"), num_classes=spec.get("num_classes"),
                        **spec.get("kwargs", {}))
    return model, shape


def run_compile(tickets: Sequence[Any], *, batch_size: int = 64, device: str | None = None,
                backend: str = "auto", routes: Sequence[str] | None = None,
                budget_s: float = 0.3, e2e_budget_s: float = 1.0, export: Any = None,
                progress: bool = True, seed: int = 0):
    """Compile each ticket folder on its built-in model with random inputs of
    ``batch_size``; returns ``[(path, report)]``. ``export``: write the (last) compiled
    model's state as safetensors there."""
    import torch

    from . import _io
    from .compile import compile as sl_compile
    from .ticket import Ticket

    results = []
    from tqdm.auto import tqdm

    for path in tqdm(list(tickets), desc="tickets", unit="ticket",
                     disable=not progress or len(tickets) < 2):
        path = Path(path)
        ticket = Ticket.load(path)
        model, shape = _model_for_ticket(ticket, path)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, *shape, generator=g)
        compiled, report = sl_compile(model, ticket, device=device, example_inputs=x,
                                      routes=routes, backend=backend, budget_s=budget_s,
                                      e2e_budget_s=e2e_budget_s, progress=progress)
        report.meta["ticket"] = str(path)
        results.append((path, report))
        if export is not None:
            state = {k: v for k, v in compiled.state_dict().items()}
            meta = {"format": "sparselth.compiled_state", "ticket": str(path),
                    "routes": json.dumps(report.routes),
                    "impl": json.dumps({r.name: r.impl for r in report.layers})}
            _io.save_safetensors(export, state, metadata=meta)
    return results


def _cmd_compile(args: argparse.Namespace) -> int:
    from . import _io

    try:
        paths = _resolve_tickets(args.tickets, args.all_rounds)
    except ValueError as e:
        print(f"sparselth compile: {e}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    routes = [r.strip() for r in args.routes.split(",")] if args.routes else None
    try:
        results = run_compile(paths, batch_size=args.batch_size, device=args.device,
                              backend=args.backend, routes=routes, budget_s=args.budget,
                              e2e_budget_s=args.e2e_budget, export=args.export,
                              progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"sparselth compile: {e}", file=sys.stderr)
        return 2
    for path, report in results:
        if not args.quiet:
            print(f"\n== {path}  (sparsity {report.meta['ticket_sparsity']:.4f})")
            print(report)
    if len(results) > 1:
        print("\n" + _table(
            ["ticket", "sparsity", "dense ms", "compiled ms", "speed-up", "promised",
             "realised"],
            [[str(p), f"{r.meta['ticket_sparsity']:.4f}", _f(r.end_to_end["dense_ms"]),
              _f(r.end_to_end["compiled_ms"]), _f(r.end_to_end["speedup"]),
              _f(r.end_to_end["promised_speedup"]), _f(r.end_to_end["realised_savings"])]
             for p, r in results]))
    out = Path(args.out)
    if len(results) == 1:
        results[0][1].save(out)
    else:
        doc = {"format": REPORTS_FORMAT, "format_version": 1,
               "reports": [r.to_dict() for _, r in results]}
        _io.atomic_write_text(out, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"\nreport: {out}" + (f"\ncompiled state: {args.export}" if args.export else ""))
    return 0


# =========================================================================== plot


def _read_reports(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and doc.get("format") == REPORTS_FORMAT:
        return list(doc["reports"])
    if isinstance(doc, dict) and doc.get("format") == "sparselth.compile_report":
        return [doc]
    raise ValueError(f"{path}: not a compile report JSON")


def _read_imp(path: Path) -> tuple[str, list[dict[str, Any]]]:
    for d in (path, path / "imp"):
        for name in ("records.json",):
            f = d / name
            if f.is_file():
                return str(path), json.loads(f.read_text(encoding="utf-8"))
    raise ValueError(f"{path}: no IMP records (records.json) here or in {path / 'imp'}")


def run_plot(inputs: Sequence[Any], out: Any) -> list[Path]:
    """Write the PNGs that the inputs allow into folder ``out``; returns their paths.

    - ``accuracy_vs_sparsity.png`` from IMP run folders (or ``find`` folders): the first
      metric (accuracy) against the fraction of weights remaining, one line per run;
    - ``latency_vs_sparsity.png`` from compile reports: end-to-end dense and compiled
      latency against ticket sparsity (several reports), and per-layer dense and chosen
      route latency against layer sparsity;
    - ``realised_vs_promised.png`` from compile reports: measured speed-up against the
      speed-up the MACs promise, per layer and end to end, with the lines y = x (all the
      savings realised) and y = x / 2.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import _io

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    reports: list[dict[str, Any]] = []
    for p in map(Path, inputs):
        if p.is_file():
            reports.extend(_read_reports(p))
        elif p.is_dir():
            runs.append(_read_imp(p))
            for extra in ("compile.json", "compile_report.json"):
                if (p / extra).is_file():
                    reports.extend(_read_reports(p / extra))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    written: list[Path] = []

    def save(fig, name):
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        _io.atomic_write_bytes(out / name, buf.getvalue())
        written.append(out / name)

    if runs:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, recs in runs:
            xs = [100 * r["remaining"] for r in recs]
            key = next(iter(recs[0].get("metrics", {})), None) if recs else None
            ys = [r["metrics"].get(key) for r in recs]
            ax.plot(xs, ys, "o-", label=label)
            ax.set_ylabel(key or "metric")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_title("IMP: metric vs sparsity")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "accuracy_vs_sparsity.png")
    if reports:
        fig, axes = plt.subplots(1, 2 if len(reports) > 1 else 1,
                                 figsize=(11 if len(reports) > 1 else 6, 4), squeeze=False)
        axes = axes[0]
        if len(reports) > 1:
            ax = axes[0]
            rs = sorted(reports, key=lambda d: d["meta"]["ticket_sparsity"])
            sp = [100 * d["meta"]["ticket_sparsity"] for d in rs]
            ax.plot(sp, [d["end_to_end"]["dense_ms"] for d in rs], "o-", label="dense (masked)")
            ax.plot(sp, [d["end_to_end"]["compiled_ms"] for d in rs], "s-", label="compiled")
            ax.set_xlabel("ticket sparsity (%)")
            ax.set_ylabel("end-to-end latency (ms)")
            ax.set_title("model latency vs sparsity")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        ax = axes[-1]
        for d in reports:
            for L in d["layers"]:
                if "dense" not in L["latency_ms"]:
                    continue
                ax.scatter(100 * L["sparsity"], L["latency_ms"]["dense"], marker="o", s=14,
                           color="tab:blue")
                ax.scatter(100 * L["sparsity"], L["latency_ms"][L["route"]], marker="s", s=14,
                           color="tab:orange")
        ax.scatter([], [], marker="o", color="tab:blue", label="dense")
        ax.scatter([], [], marker="s", color="tab:orange", label="chosen route")
        ax.set_yscale("log")
        ax.set_xlabel("layer sparsity (%)")
        ax.set_ylabel("layer latency (ms)")
        ax.set_title("per-layer latency vs sparsity")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "latency_vs_sparsity.png")

        fig, ax = plt.subplots(figsize=(6, 5))
        pts = []
        for d in reports:
            for L in d["layers"]:
                if L.get("promised_speedup") and L.get("speedup"):
                    pts.append((L["promised_speedup"], L["speedup"]))
        if pts:
            ax.scatter(*zip(*pts), s=14, alpha=0.6, label="layers")
        e2e = [(d["end_to_end"]["promised_speedup"], d["end_to_end"]["speedup"])
               for d in reports
               if d["end_to_end"].get("promised_speedup") and d["end_to_end"].get("speedup")]
        if e2e:
            ax.scatter(*zip(*e2e), s=60, marker="*", color="tab:red", label="models, end to end")
        allv = [v for p in pts + e2e for v in p] or [1.0]
        lo, hi = min(min(allv), 1.0) / 1.2, max(allv) * 1.2
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="realised = promised")
        ax.plot([lo, hi], [lo / 2, hi / 2], "k:", lw=1, label="realised = promised / 2")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("promised speed-up (MACs dense / MACs ticket)")
        ax.set_ylabel("measured speed-up over dense")
        ax.set_title("realised vs promised savings")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        save(fig, "realised_vs_promised.png")
    if not written:
        raise ValueError("nothing to plot: give IMP run folders and/or compile report JSONs")
    return written


def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        paths = run_plot(args.inputs, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"sparselth plot: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


# =========================================================================== formatting


def _f(v: Any) -> str:
    return format_number(v, digits=3)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


# =========================================================================== argparse


def add_subcommands(subparsers: Any) -> None:
    """Add ``find``, ``compile`` and ``plot`` to ``subparsers`` (the object returned by
    ``parser.add_subparsers()``); each sets ``func`` (namespace -> exit code)."""
    fmt = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser(
        "find", formatter_class=fmt,
        help="find lottery tickets: run IMP (train, prune, rewind) from a config file",
        description=(
            "Run iterative magnitude pruning on a small built-in model (MLP or conv net) and\n"
            "data set (synthetic images, or scikit-learn's digits) as a TOML/JSON config\n"
            "describes: train, prune --fraction of the surviving weights, rewind, repeat\n"
            "for --rounds rounds. Writes OUT/imp (resumable run: rerun the same command after\n"
            "a crash), OUT/tickets/round_XXX (a ticket per round), OUT/ticket (the last one),\n"
            "OUT/find.json, and prints accuracy, sparsity and MACs per round.\n\n"
            "Config sections (all optional; defaults in brackets):\n"
            "  seed = 0\n"
            "  [model] name = mlp | convnet [mlp]; mlp: hidden = [256, 256] or sizes;\n"
            "          convnet: channels = [32, 64, 64], hidden = 256\n"
            "  [data]  name = synthetic | digits [synthetic], n_train [2000], n_test [500],\n"
            "          image_size [8], num_classes [10], channels [1], noise [0.6]\n"
            "  [train] epochs [3], max_steps [0 = no limit], batch_size [64], lr [0.05],\n"
            "          momentum [0.9], weight_decay [0]\n"
            "  [imp]   any sparselth.prune.IMPConfig field: rounds [5], fraction [0.5],\n"
            "          rewind = init | late | none [late], rewind_step [20], scope,\n"
            "          granularity, include, exclude, strategy\n"))
    p.add_argument("config", help="config file (.toml or .json)")
    p.add_argument("--out", help="output folder (default: runs/<config file name>)")
    p.add_argument("--rounds", type=int, help="override imp.rounds")
    p.add_argument("--fraction", type=float, help="override imp.fraction")
    p.add_argument("--rewind", choices=["init", "late", "none"], help="override imp.rewind")
    p.add_argument("--max-steps", type=int, help="override train.max_steps (steps per round)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_find)

    p = subparsers.add_parser(
        "compile", formatter_class=fmt,
        help="compile tickets onto sparse kernels and report per-layer savings",
        description=(
            "Load a ticket (a folder with ticket.json, or a `sparselth find` output folder),\n"
            "rebuild its model from the ticket's metadata, and run sparselth.compile: every\n"
            "prunable layer gets the fastest exact route (dense, csr, channel, 2:4) timed on\n"
            "this device with a random batch of --batch-size inputs. Prints the per-layer\n"
            "table (shape, sparsity, MACs, bytes, latency per route, chosen route, speed-up)\n"
            "and the end-to-end dense vs compiled latency and realised savings\n"
            "(measured speed-up / MAC-promised speed-up), and writes the report as JSON.\n"
            "With --all-rounds on a find folder, every round's ticket is compiled (input\n"
            "for the latency-vs-sparsity plot). --export writes the compiled model's state\n"
            "(CSR indices and values, channel indices, dense weights) as safetensors."))
    p.add_argument("tickets", nargs="+", help="ticket folder(s) or `find` output folder(s)")
    p.add_argument("--all-rounds", action="store_true",
                   help="compile every round's ticket of a find folder")
    p.add_argument("--batch-size", type=int, default=64, help="rows of the example batch [64]")
    p.add_argument("--device", default=None, help="target device, e.g. cpu or cuda [cpu]")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "reference", "cpp", "triton", "cuda"],
                   help="sparselth kernel backend for the csr route [auto]")
    p.add_argument("--routes", default=None,
                   help="comma-separated routes to consider, e.g. dense,csr [all]")
    p.add_argument("--budget", type=float, default=0.3,
                   help="timing budget per layer in seconds [0.3]")
    p.add_argument("--e2e-budget", type=float, default=1.0,
                   help="timing budget of the end-to-end comparison in seconds [1.0]")
    p.add_argument("--threads", type=int, default=0, help="torch threads [torch's default]")
    p.add_argument("--out", default="compile_report.json",
                   help="report JSON path [compile_report.json]")
    p.add_argument("--export", default=None,
                   help="write the compiled model's state to this .safetensors file")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compile)

    p = subparsers.add_parser(
        "plot", formatter_class=fmt,
        help="plot accuracy, latency and realised vs promised speed-up against sparsity (PNG)",
        description=(
            "Inputs: IMP run folders / `find` output folders (their compile.json is read too)\n"
            "and compile report JSONs. Writes into --out:\n"
            "  accuracy_vs_sparsity.png   metric per IMP round vs weights remaining\n"
            "  latency_vs_sparsity.png    end-to-end and per-layer latency, dense vs compiled\n"
            "  realised_vs_promised.png   measured speed-up vs the MACs' promise, per layer\n"
            "                             and end to end, with y = x and y = x/2 lines"))
    p.add_argument("inputs", nargs="+", help="IMP run / find folders and compile report JSONs")
    p.add_argument("--out", default="plots", help="folder for the PNGs [plots]")
    p.set_defaults(func=_cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sparselth.cli_tickets",
        description="sparselth ticket commands: find, compile, plot")
    add_subcommands(parser.add_subparsers(dest="command", metavar="<command>"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
