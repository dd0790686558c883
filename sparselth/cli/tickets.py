"""``sparselth find`` (IMP on a small built-in model from a config file) and ``sparselth
compile`` (tickets onto sparse kernels, with the per-layer report).

Typical session::

    sparselth find imp.toml --out runs/mlp          # IMP -> runs/mlp/{imp,tickets,ticket}
    sparselth compile runs/mlp --all-rounds --out runs/mlp/compile.json
    sparselth plot runs/mlp runs/mlp/compile.json --out runs/mlp/plots

Config file of ``find`` (TOML or JSON; every section and key optional)::

    seed = 0
    [model]                  # name: mlp | convnet | conv_autoencoder; other keys: its options
    name = "mlp"
    hidden = [256, 256]
    [data]                   # name: synthetic | digits (digits: pip install 'sparselth[digits]')
    name = "synthetic"
    n_train = 2000
    n_test = 500
    image_size = 8
    num_classes = 10
    [train]                  # sparselth.train.SGDConfig: SGD on cross-entropy, per IMP round
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

``torchrun --nproc_per_node=N -m sparselth find imp.toml`` runs the same search on N
processes (DistributedDataParallel, each rank a shard of every mini-batch; see
:mod:`sparselth.utils.distributed`); rank 0 writes ``out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import distributed
from ..utils.records import format_number, format_si, write_json
from .common import add_command, fail, text_table

__all__ = ["DEFAULT_CONFIG", "REPORTS_FORMAT", "add_subcommands", "load_config",
           "run_compile", "run_find"]

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


def _parse_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    is_toml = path.suffix.lower() == ".toml"
    try:
        if is_toml:
            import tomllib

            user = tomllib.loads(text)
        else:
            user = json.loads(text)
    except ValueError as e:
        raise ValueError(f"config {str(path)!r} is not valid {'TOML' if is_toml else 'JSON'}: "
                         f"{e}") from e
    if not isinstance(user, dict):
        raise ValueError(  # noqa: TRY004 - a config error, like every other one here
            f"config {str(path)!r} must hold a table/object at the top")
    return user


def load_config(path: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON config, merge it over :data:`DEFAULT_CONFIG` and
    validate it; ``overrides`` maps ``"section.key"`` to a value. Raises ``ValueError``
    naming the file and key on unknown sections/keys or bad values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    for key, val in _parse_config_file(path).items():
        if key == "seed":
            cfg["seed"] = val
        elif key in _SECTIONS:
            if not isinstance(val, dict):
                raise ValueError(f"config {str(path)!r}: [{key}] must be a table")
            if key == "model" and val.get("name", cfg[key]["name"]) != cfg[key]["name"]:
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
    from ..data.images import IMAGE_DATASETS
    from ..models.small import MODELS
    from ..prune import IMPConfig
    from ..train.classification import SGDConfig

    if not isinstance(cfg["seed"], int):
        raise ValueError(  # noqa: TRY004 - a config error, like every other one here
            f"config {where!r}: seed must be an int, got {cfg['seed']!r}")
    if cfg["model"].get("name") not in MODELS:
        raise ValueError(f"config {where!r}: model.name must be one of {sorted(MODELS)}, got "
                         f"{cfg['model'].get('name')!r}")
    if cfg["model"]["name"] == "conv_autoencoder":
        raise ValueError(f"config {where!r}: find trains classifiers; conv_autoencoder is for "
                         "compile tests and benchmarks")
    for section in ("data", "train"):
        bad = set(cfg[section]) - set(DEFAULT_CONFIG[section])
        if bad:
            raise ValueError(f"config {where!r}: unknown [{section}] keys {sorted(bad)}; "
                             f"known: {sorted(DEFAULT_CONFIG[section])}")
    if cfg["data"]["name"] not in IMAGE_DATASETS:
        raise ValueError(f"config {where!r}: data.name must be one of {list(IMAGE_DATASETS)}")
    try:
        SGDConfig.from_dict(cfg["train"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"config {where!r}: train.{e}") from e
    try:
        imp = IMPConfig.from_dict({**cfg["imp"], "seed": cfg["seed"]})
    except (TypeError, ValueError) as e:
        raise ValueError(f"config {where!r}: [imp]: {e}") from e
    n_train = cfg["data"]["n_train"]
    if not isinstance(n_train, int) or isinstance(n_train, bool) or n_train < 1:
        raise ValueError(f"config {where!r}: data.n_train must be an int >= 1, got {n_train!r}")
    steps = SGDConfig.from_dict(cfg["train"]).total_steps(n_train)
    if imp.rewind == "late" and imp.rewind_step is not None and imp.rewind_step > steps:
        t = cfg["train"]
        raise ValueError(
            f"config {where!r}: imp.rewind_step = {imp.rewind_step} is beyond the {steps} "
            f"training steps of a round (data.n_train = {n_train}, train.batch_size = "
            f"{t['batch_size']}, train.epochs = {t['epochs']}, train.max_steps = "
            f"{t['max_steps']}); set imp.rewind_step to at most {steps} or train longer")
    if cfg["data"]["name"] == "digits":
        _require_digits(where)


def _require_digits(where: str) -> None:
    """The digits data ship with scikit-learn, an optional dependency: one clear error."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        raise ValueError(
            f"config {where!r}: data.name = 'digits' needs scikit-learn, which is not "
            "installed; install it with `pip install 'sparselth[digits]'` (or `pip install "
            "scikit-learn`), or use data.name = 'synthetic'") from None


# =========================================================================== find


def _data_and_model(cfg: Mapping[str, Any]):
    from ..data.images import make_image_dataset
    from ..models.small import build_model

    d = dict(cfg["data"])
    data = make_image_dataset(d.pop("name"), seed=cfg["seed"], **d)
    spec = dict(cfg["model"])
    name = spec.pop("name")
    model = build_model(name, in_channels=data["channels"], image_size=data["image_size"],
                        num_classes=data["num_classes"], **spec)
    meta = {"name": name, "kwargs": spec, "in_channels": data["channels"],
            "image_size": data["image_size"], "num_classes": data["num_classes"]}
    return data, model, meta


def run_find(config: Any, out: Any, *, progress: bool = True,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run IMP as the config says; write the run, one ticket per round and a summary.

    Layout of ``out``: ``config.json`` (the resolved config), ``imp/`` (the IMP run folder,
    resumable: rerunning continues where a crash stopped), ``tickets/round_XXX/`` (a ticket
    per round), ``ticket/`` (the last round's ticket), ``find.json`` (records + paths).
    Rerunning with more ``imp.rounds`` runs the extra rounds; any other change of the config
    is refused with a ``ValueError`` that names the fields (use another ``out``). A config
    error is raised before anything is written, and a failure before the run's first commit
    removes the folder this call created. Returns the summary dict. Under torchrun every
    rank runs the search and only rank 0 writes ``out`` (the other ranks return the summary
    without writing it).
    """
    cfg = config if isinstance(config, Mapping) else load_config(config, overrides)
    if isinstance(config, Mapping):
        _validate_config(dict(cfg), "<config>")
    out = Path(out)
    distributed.on_main(_check_resumable, out, cfg)   # rank 0 reads the folder
    created = not out.exists()
    try:
        return _find(cfg, out, progress)
    except BaseException:
        # a folder this call made holds nothing to resume until the first commit of the run
        if created and distributed.world()[2] and out.is_dir() and \
                not (out / "imp" / "progress.json").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


# the command-line flag of a config field, for messages
_FLAGS = {"imp.fraction": "--fraction", "imp.rewind": "--rewind",
          "train.max_steps": "--max-steps"}


def _check_resumable(out: Path, cfg: Mapping[str, Any]) -> None:
    """Refuse, saying what to do, to continue a run in ``out`` made with another config; only
    ``imp.rounds`` may differ (more rounds extend the run, fewer read its first rounds)."""
    saved_path = out / "config.json"
    if not (out / "imp" / "progress.json").exists() or not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{out} holds a run whose {saved_path.name} cannot be read ({e}); "
                         "use a new --out folder") from e
    new = json.loads(json.dumps(cfg))
    unset = object()
    diffs = []
    for section in ("seed", *_SECTIONS):
        a, b = saved.get(section, unset), new.get(section, unset)
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                diffs.append((section, a, b))
            continue
        for key in sorted(set(a) | set(b)):
            if (section, key) != ("imp", "rounds") and a.get(key, unset) != b.get(key, unset):
                diffs.append((f"{section}.{key}", a.get(key, unset), b.get(key, unset)))
    if not diffs:
        return

    def shown(v: Any) -> str:
        return "unset" if v is unset else json.dumps(v)

    fields = "; ".join(f"{name} = {shown(a)} there, {shown(b)} now" for name, a, b in diffs)
    fixes = []
    for name, a, _ in diffs:
        if a is unset:
            fixes.append(f"no {name}")
        elif name in _FLAGS:
            fixes.append(f"{_FLAGS[name]} {a}")
        else:
            fixes.append(f"{name} = {json.dumps(a)} in the config file")
    raise ValueError(
        f"the output folder {out} holds a run made with another config: {fields}. Only "
        f"imp.rounds may change (more rounds continue the run). To continue it, use the "
        f"config saved in {saved_path} ({', '.join(fixes)}); for the new settings, pass a "
        f"new --out folder.")


def _find(cfg: Mapping[str, Any], out: Path, progress: bool) -> dict[str, Any]:
    import torch

    from ..prune import IMP, IMPConfig
    from ..ticket import Ticket
    from ..train.classification import ClassificationTask, SGDConfig
    from ..utils.timing import stopwatch

    main = distributed.world()[2]
    torch.manual_seed(cfg["seed"])
    data, model, spec = _data_and_model(cfg)
    imp_cfg = IMPConfig.from_dict({**cfg["imp"], "seed": cfg["seed"]})
    task = ClassificationTask(data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                              SGDConfig.from_dict(cfg["train"]), seed=cfg["seed"])
    if main:
        out.mkdir(parents=True, exist_ok=True)
    example = data["x_test"][:task.config.batch_size]
    imp = task.bind(IMP(model, task, None, imp_cfg, run_dir=out / "imp",
                        example_inputs=example, progress=progress))
    if main:
        write_json(out / "config.json", cfg)
    elapsed = stopwatch()
    records = imp.run()
    meta = {"model": spec, "input_shape": list(data["x_test"].shape[1:]), "data": cfg["data"],
            "train": cfg["train"]}
    tickets = []
    for rec in records:
        r = rec["round"]
        p = out / "tickets" / f"round_{r:03d}"
        if main:
            Ticket.from_run(out / "imp", round=r, **meta).save(p)
        tickets.append(str(p))
    last = records[-1]["round"]  # the last round asked for (a run may hold more)
    if main:
        Ticket.from_run(out / "imp", round=last, **meta).save(out / "ticket")
    summary = {"config": cfg, "records": records, "tickets": tickets,
               "ticket": str(out / "ticket"), "imp_dir": str(out / "imp"),
               "wall_time_s": elapsed()}
    if main:
        write_json(out / "find.json", summary)
    return summary


def _find_table(records: Sequence[Mapping[str, Any]]) -> str:
    headers = ["round", "sparsity", "remaining", "accuracy", "loss", "MACs", "MACs dense",
               "time s"]
    rows = []
    for r in records:
        m = r.get("metrics", {})
        rows.append([str(r["round"]), f"{r['weight_sparsity']:.4f}",
                     f"{1 - r['weight_sparsity']:.4f}", format_number(m.get("accuracy")),
                     format_number(m.get("loss")), format_si(r.get("macs")),
                     format_si(r.get("macs_dense")), format_number(r.get("seconds"))])
    return text_table(headers, rows)


def _cmd_find(args: argparse.Namespace) -> int:
    flags = {"imp.rounds": args.rounds, "imp.fraction": args.fraction,
             "imp.rewind": args.rewind, "train.max_steps": args.max_steps}
    overrides = {k: v for k, v in flags.items() if v is not None}
    try:
        distributed.init_from_env()   # under torchrun: one rank per process
        cfg = load_config(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
        summary = run_find(cfg, out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as e:
        return fail("find", e) if distributed.world()[2] else 2   # rank 0 says why
    main = distributed.world()[2]
    distributed.shutdown()
    if not main:   # rank 0 prints
        return 0
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
    from ..models.small import build_model

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
    from tqdm.auto import tqdm

    from .. import _io
    from .. import compile as compile_ticket
    from ..ticket import Ticket

    results = []
    for path in tqdm(list(tickets), desc="tickets", unit="ticket",
                     disable=not progress or len(tickets) < 2):
        path = Path(path)
        ticket = Ticket.load(path)
        model, shape = _model_for_ticket(ticket, path)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, *shape, generator=g)
        compiled, report = compile_ticket(model, ticket, device=device, example_inputs=x,
                                          routes=routes, backend=backend, budget_s=budget_s,
                                          e2e_budget_s=e2e_budget_s, progress=progress)
        report.meta["ticket"] = str(path)
        results.append((path, report))
        if export is not None:
            meta = {"format": "sparselth.compiled_state", "ticket": str(path),
                    "routes": json.dumps(report.routes),
                    "impl": json.dumps({r.name: r.impl for r in report.layers})}
            _io.save_safetensors(export, dict(compiled.state_dict()), metadata=meta)
    return results


def _compile_summary(results) -> str:
    rows = []
    for p, r in results:
        e2e = r.end_to_end
        rows.append([str(p), f"{r.meta['ticket_sparsity']:.4f}"] + [
            format_number(e2e[k]) for k in ("dense_ms", "compiled_ms", "speedup",
                                            "promised_speedup", "realised_savings")])
    return text_table(["ticket", "sparsity", "dense ms", "compiled ms", "speed-up", "promised",
                       "realised"], rows)


def _cmd_compile(args: argparse.Namespace) -> int:
    try:
        paths = _resolve_tickets(args.tickets, args.all_rounds)
    except ValueError as e:
        return fail("compile", e)
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
        return fail("compile", e)
    for path, report in results:
        if not args.quiet:
            print(f"\n== {path}  (sparsity {report.meta['ticket_sparsity']:.4f})")
            print(report)
    if len(results) > 1:
        print("\n" + _compile_summary(results))
    out = Path(args.out)
    if len(results) == 1:
        results[0][1].save(out)
    else:
        write_json(out, {"format": REPORTS_FORMAT, "format_version": 1,
                         "reports": [r.to_dict() for _, r in results]})
    print(f"\nreport: {out}" + (f"\ncompiled state: {args.export}" if args.export else ""))
    return 0


# =========================================================================== argparse

FIND_DESCRIPTION = """\
Run iterative magnitude pruning on a small built-in model (MLP or conv net) and
data set (synthetic images, or scikit-learn's digits) as a TOML/JSON config
describes: train, prune --fraction of the surviving weights, rewind, repeat
for --rounds rounds. Writes OUT/imp (resumable run: rerun the same command after
a crash, or with a larger --rounds to add rounds), OUT/tickets/round_XXX (a
ticket per round), OUT/ticket (the last one), OUT/find.json, and prints
accuracy, sparsity and MACs per round.

Config sections (all optional; defaults in brackets):
  seed = 0
  [model] name = mlp | convnet [mlp]; mlp: hidden = [256, 256] or sizes;
          convnet: channels = [32, 64, 64], hidden = 256
  [data]  name = synthetic | digits [synthetic], n_train [2000], n_test [500],
          image_size [8], num_classes [10], channels [1], noise [0.6];
          digits needs scikit-learn: pip install 'sparselth[digits]'
  [train] epochs [3], max_steps [0 = no limit], batch_size [64], lr [0.05],
          momentum [0.9], weight_decay [0]
  [imp]   any sparselth.prune.IMPConfig field: rounds [5], fraction [0.5],
          rewind = init | late | none [late], rewind_step [20], scope,
          granularity, include, exclude, strategy
"""

COMPILE_DESCRIPTION = """\
Load a ticket (a folder with ticket.json, or a `sparselth find` output folder),
rebuild its model from the ticket's metadata, and run sparselth.compile: every
prunable layer gets the fastest exact route (dense, csr, channel, 2:4) timed on
this device with a random batch of --batch-size inputs. Prints the per-layer
table (shape, sparsity, MACs, bytes, latency per route, chosen route, speed-up)
and the end-to-end dense vs compiled latency and realised savings
(measured speed-up / MAC-promised speed-up), and writes the report as JSON.
With --all-rounds on a find folder, every round's ticket is compiled (input
for the latency-vs-sparsity plot). --export writes the compiled model's state
(CSR indices and values, channel indices, dense weights) as safetensors.
"""


def _add_find(subparsers: Any) -> None:
    p = add_command(subparsers, "find", _cmd_find, description=FIND_DESCRIPTION,
                    help="find lottery tickets: run IMP (train, prune, rewind) from a config file")
    p.add_argument("config", help="config file (.toml or .json)")
    p.add_argument("--out", help="output folder (default: runs/<config file name>)")
    p.add_argument("--rounds", type=int, help="override imp.rounds")
    p.add_argument("--fraction", type=float, help="override imp.fraction")
    p.add_argument("--rewind", choices=["init", "late", "none"], help="override imp.rewind")
    p.add_argument("--max-steps", type=int, help="override train.max_steps (steps per round)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_compile(subparsers: Any) -> None:
    p = add_command(subparsers, "compile", _cmd_compile, description=COMPILE_DESCRIPTION,
                    help="compile tickets onto sparse kernels and report per-layer savings")
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


def add_subcommands(subparsers: Any) -> None:
    """Add ``find`` and ``compile`` to ``subparsers`` (what ``add_subparsers()`` returns)."""
    _add_find(subparsers)
    _add_compile(subparsers)
