"""The one run folder under every pruning driver (IMP, UGS, the recommender ticket search and
every later kind): hashed configs, checksummed tensor files, an atomic commit, one resume
rule, RNG state, and one record schema.

Layout (safetensors and JSON only, every file written atomically)::

    config.json                     {"kind", "format_version", "run_name", "config": {the
                                    config's fields}, "settings": {...} (optional), extras}
    init.safetensors                θ0, the state every round starts from
    rewind.safetensors              θk (IMP late rewinding)
    rng_start.safetensors           RNG state at the start (torch, numpy, python, CUDA)
    round_XXX/masks.safetensors     the masks of round XXX
    round_XXX/trained.safetensors   the weights after training round XXX
    round_XXX/rng.safetensors       RNG state after round XXX
    round_XXX/record.json           the round's record
    records.json                    one record per finished round
    progress.json                   the commit point, written last: next round, the sha256 of
                                    every tensor file it relies on, RNG state, the records

``kind`` is ``"imp"``, ``"ugs"``, ``"recsys"``, ``"graphcl"`` (one round per pre-training
epoch, no masks: :mod:`sparselth.train.graphcl`) (later ``"gan"``). Every record
holds at least ``round`` (int), ``weight_sparsity`` (fraction of the prunable weights
pruned), ``graph_sparsity`` (fraction of the edges pruned, None without a graph),
``metric`` (name of the headline quality metric), ``metrics`` (every quality metric),
``macs`` (int or None) and ``seconds`` (wall time of the round); kinds add their own keys.
:func:`read_records` returns records in this schema also for folders written before it.

Resume rule (every kind): a folder with a ``progress.json`` is resumed. ``rounds`` may
change (a larger value extends the run; a smaller one reads the first rounds); any other
difference of the config or settings is refused with a ``ValueError`` naming the fields.

A new run kind: a frozen dataclass deriving from :class:`Config` (fields made with
:func:`help_field`, a ``run_prefix``), its name in :data:`KINDS`, and a driver that calls
``RunDir.resume`` (or ``create`` for a new run), saves its tensors with ``RunDir.save`` and
ends every round with ``RunDir.commit``, writing records with the common keys. Its rounds
then read back with :func:`read_round` / :func:`ticket_parts` (``sparselth.ticket.load_round``
makes the ticket) and plot with ``sparselth plot``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random as _pyrandom
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .. import _io
from ..utils import distributed
from .masks import Masks, state_without_masks

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "Config",
    "RunDir",
    "default_run_dir",
    "help_field",
    "read_records",
    "read_round",
    "ticket_parts",
]

FORMAT_VERSION = 1
KINDS = ("imp", "ugs", "recsys", "graphcl", "gan")
GROWABLE = ("rounds",)


# --------------------------------------------------------------------------- configs


def help_field(text: str, default: Any) -> Any:
    """A config field with a help string (``Config.help()`` lists them). Defaults must be
    immutable: tuples or None instead of lists."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples or None for config defaults")
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Config:
    """Base of every run's hyperparameters: a frozen dataclass whose fields carry help
    strings (:func:`help_field`). A run folder is named by a hash of the non-default fields
    (``run_name()``); ``name_ignores`` lists fields left out of that hash."""

    run_prefix: ClassVar[str] = "run"
    name_ignores: ClassVar[tuple[str, ...]] = ()
    #: fields added after run folders were written, with the value those older runs used: a
    #: saved config without the field is read with this value (not the new default), so an
    #: old run is not resumed under a setting it was not made with
    legacy_values: ClassVar[Mapping[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def non_default(self) -> dict[str, Any]:
        """Fields whose value differs from the default (JSON form)."""
        default = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if default[k] != v}

    def identity(self) -> dict[str, Any]:
        """The fields that define a run's results: all but ``rounds`` (round k does not
        depend on how many rounds follow, so a run can be extended)."""
        return {k: v for k, v in self.to_dict().items() if k not in GROWABLE}

    def run_name(self) -> str:
        """``<run_prefix>_`` + sha256 of the canonical JSON of the non-default fields (less
        ``name_ignores``), first 12 hex digits."""
        nd = {k: v for k, v in self.non_default().items() if k not in self.name_ignores}
        digest = hashlib.sha256(_io.canonical_json(nd).encode()).hexdigest()
        return f"{self.run_prefix}_{digest[:12]}"

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default and help text."""
        return "\n".join(f"{f.name} (default {f.default!r}): {f.metadata.get('help', '')}"
                         for f in dataclasses.fields(cls))


def default_run_dir(root: Any, config: Config) -> Path:
    """``root / config.run_name()``, or the folder under ``root`` of the same run with fewer
    or more ``rounds`` when the name includes them (IMP names do, to keep their published
    hashes): so a run started with ``root=`` is extended, not restarted, by a larger
    ``rounds``."""
    root = Path(root)
    named = root / config.run_name()
    if named.exists() or not root.is_dir():
        return named
    want = config.identity()
    found = []
    for cfg_path in sorted(root.glob(f"{config.run_prefix}_*/config.json")):
        try:
            saved = json.loads(cfg_path.read_text()).get("config", {})
            other = type(config).from_dict(saved).identity()
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if other == want:
            found.append(cfg_path.parent)
    return found[0] if len(found) == 1 else named


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        if prefix == "" and k in GROWABLE:
            continue
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


# --------------------------------------------------------------------------- RNG, states


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The torch, numpy, python (and initialised CUDA) RNG states as tensors + JSON."""
    tensors = {"torch": torch.get_rng_state()}
    st = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(st[1], dtype=np.int64))
    pv, pstate, pgauss = _pyrandom.getstate()
    meta: dict[str, Any] = {
        "numpy": {"kind": st[0], "pos": int(st[2]), "has_gauss": int(st[3]),
                  "cached_gaussian": float(st[4])},
        "python": {"version": pv, "state": list(pstate), "gauss_next": pgauss},
        "cuda_devices": 0,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
        meta["cuda_devices"] = torch.cuda.device_count()
    return tensors, meta


def set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    n = meta["numpy"]
    np.random.set_state((n["kind"], tensors["numpy_keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = meta["python"]
    _pyrandom.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    ncuda = meta.get("cuda_devices", 0)
    if ncuda and torch.cuda.is_available() and torch.cuda.device_count() == ncuda:
        torch.cuda.set_rng_state_all([tensors[f"cuda_{i}"] for i in range(ncuda)])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing any RNG stream (a measurement a resumed run skips)."""
    tensors, meta = rng_state()
    try:
        yield
    finally:
        set_rng_state(tensors, meta)


def seed_everything(seed: int | None) -> None:
    """Seed torch, numpy and python; None leaves them as they are."""
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        _pyrandom.seed(seed)


def clone_state(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in sd.items()}


def load_state(model: nn.Module, sd: Mapping[str, Tensor], what: str) -> None:
    """Copy ``sd`` into the model's state (mask buffers aside); names and shapes must fit."""
    own = state_without_masks(model)
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"{what}: {k!r} has shape {tuple(v.shape)}, the model has {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v)


def jsonable(x: Any, where: str) -> Any:
    """``x`` with scalar tensors and numpy scalars turned into Python numbers."""
    if isinstance(x, (Tensor, np.ndarray, np.generic)):
        if int(np.prod(x.shape)) != 1:
            raise TypeError(f"{where}: tensors in metrics must be scalars, got shape "
                            f"{tuple(x.shape)}")
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, where) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, where) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"{where}: {type(x).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------- the folder


class RunDir:
    """One run folder (see the module docstring): ``save``/``load`` tensor files with their
    sha256 kept for the commit, ``resume``/``create`` a run, ``commit`` a round.

    ``label`` starts error messages (``"IMP"``, ``"UGS"``).

    Under ``torchrun`` (an initialised process group, :mod:`sparselth.utils.distributed`)
    every rank holds a ``RunDir`` of the same folder and calls its methods in the same
    order; only rank 0 touches the folder: it alone writes (``save``, ``write_json``,
    ``create``, ``commit``) and reads (``resume``, ``load``), and what it read reaches the
    other ranks by broadcast, errors included. So a run resumes with any number of ranks,
    and the ranks need no shared file system."""

    def __init__(self, path: Any, kind: str, label: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"run kind must be one of {KINDS}, got {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.label = label or kind.upper()
        self.files: dict[str, str] = {}

    def has(self, rel: str) -> bool:
        return rel in self.files

    def save(self, rel: str, tensors: Mapping[str, Tensor]) -> None:
        """Write a tensor file; its checksum goes into the next commit (rank 0 writes; the
        other ranks only note that the file exists)."""
        if not distributed.world()[2]:
            self.files[rel] = ""
            return
        sha, _ = _io.save_safetensors(self.path / rel, tensors)
        self.files[rel] = sha

    def load(self, rel: str) -> dict[str, Tensor]:
        """Read a committed tensor file, checksum verified (rank 0 reads, every rank gets
        the tensors)."""
        return distributed.tensors_from_main(self._load, rel)

    def _load(self, rel: str) -> dict[str, Tensor]:
        if rel not in self.files:
            raise ValueError(f"{self.label} resume: {rel!r} is not recorded in "
                             f"{self.path / 'progress.json'}")
        return _io.load_safetensors(self.path / rel, sha256=self.files[rel])

    def write_json(self, rel: str, obj: Any) -> None:
        if distributed.world()[2]:
            _io.atomic_write_json(self.path / rel, obj)

    def save_rng(self, rel: str) -> dict[str, Any]:
        tensors, meta = rng_state()
        self.save(rel, tensors)
        return meta

    def restore_rng(self, progress: Mapping[str, Any]) -> None:
        set_rng_state(self.load(progress["rng_file"]), progress["rng"])

    def create(self, config: Config, settings: Mapping[str, Any] | None = None,
               **extra: Any) -> None:
        """Start a new run: write ``config.json``."""
        doc = {"kind": self.kind, "format_version": FORMAT_VERSION, "config": config.to_dict(),
               "run_name": config.run_name(), **extra}
        if settings is not None:
            doc["settings"] = jsonable(dict(settings), "settings")
        self.write_json("config.json", doc)

    def resume(self, config: Config,
               settings: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The progress of the run in this folder (None when there is none yet), after the
        resume rule (module docstring) was checked; the tensor checksums are loaded."""
        prog = distributed.on_main(self._resume, config, settings)
        if prog is not None:
            self.files = dict(prog["files"])
        return prog

    def _resume(self, config: Config,
                settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "progress.json").exists():
            return None
        prog, saved = _read_json(self.path, self.label)
        kind = _kind_of(saved, prog.get("records", []))
        if kind != self.kind and not ("kind" not in saved and self.kind in ("imp", "recsys")
                                      and kind in ("imp", "recsys")):
            raise ValueError(f"{self.label} resume: {self.path} holds a run of kind {kind!r}, "
                             f"not {self.kind!r}; use a new run folder")
        new_settings = jsonable(dict(settings or {}), "settings")
        diffs = _differences(_normal_config(type(config), saved.get("config", {})),
                             config.to_dict())
        if "settings" in saved:
            diffs += _differences(saved["settings"], new_settings, "settings.")
        if diffs:
            raise ValueError(
                f"{self.label} resume: {self.path} holds a run with a different config: "
                + "; ".join(diffs) + ". Only 'rounds' may change (to extend the run). Use a "
                "new run folder (run_dir= or root=) for these settings, or resume with the "
                "config saved in config.json.")
        done, rounds = saved.get("config", {}).get("rounds"), getattr(config, "rounds", None)
        grown = rounds is not None and (done is None or rounds > done)
        if saved.get("kind") != self.kind or grown or (settings and "settings" not in saved):
            saved["kind"] = self.kind
            if grown:
                saved["config"] = {**saved.get("config", {}), "rounds": rounds}
            if settings is not None:
                saved["settings"] = new_settings
            self.write_json("config.json", saved)
        self.files = dict(prog["files"])
        return prog

    def commit(self, next_round: int, records: list[dict[str, Any]], rng_file: str,
               **extra: Any) -> None:
        """Save the RNG state to ``rng_file``, then write ``records.json`` and, last,
        ``progress.json`` (the commit point) with every tensor file's checksum."""
        meta = self.save_rng(rng_file)
        self.write_json("records.json", records)
        self.write_json("progress.json", {
            "format_version": FORMAT_VERSION, "next_round": next_round, "files": self.files,
            "rng_file": rng_file, "rng": meta, "records": records, **extra})


def loop_rounds(desc: str, start: int, rounds: int, run_round: Callable[[int], dict[str, Any]],
                postfix: Callable[[dict[str, Any]], dict[str, str]], progress: bool) -> None:
    """``run_round(r)`` for r in start..rounds under a tqdm bar showing ``postfix(record)``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=rounds + 1, initial=min(start, rounds + 1), desc=desc, unit="round",
               disable=not progress, position=0)
    try:
        for r in range(start, rounds + 1):
            bar.set_postfix(postfix(run_round(r)))
            bar.update(1)
    finally:
        bar.close()


# --------------------------------------------------------------------------- reading runs


def _read_json(run_dir: Path, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        prog = json.loads((run_dir / "progress.json").read_text())
        cfg = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{run_dir} is not a run directory: {e}") from e
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{label}: cannot read {run_dir}: {e}") from e
    if prog.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{label}: {run_dir} has format version {prog.get('format_version')}, "
                         f"newer than this sparselth supports ({FORMAT_VERSION})")
    return prog, cfg


def _normal_config(cls: type, saved: Mapping[str, Any]) -> dict[str, Any]:
    saved = {**getattr(cls, "legacy_values", {}), **saved}
    try:
        return cls.from_dict(saved).to_dict()
    except (TypeError, ValueError):
        return dict(saved)


def _kind_of(cfg_json: Mapping[str, Any], records: list[Mapping[str, Any]]) -> str:
    """The run kind: ``config.json``'s ``kind``, or for folders written before it existed,
    guessed from the run name, the config fields and the metrics."""
    if cfg_json.get("kind"):
        return str(cfg_json["kind"])
    if str(cfg_json.get("run_name", "")).startswith("ugs_") or \
            "prune_graph" in cfg_json.get("config", {}):
        return "ugs"
    if any("recall@20" in (r.get("metrics") or {}) for r in records):
        return "recsys"
    return "imp"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def normalise_record(kind: str, rec: Mapping[str, Any]) -> dict[str, Any]:
    """``rec`` with the common keys (module docstring) filled from the keys older folders
    wrote; idempotent."""
    out = dict(rec)
    if kind == "ugs":
        metric = rec.get("metric") or "acc"
        if f"test_{metric}" in rec:  # older records name the metric without the split
            metric = f"test_{metric}"
        metrics = rec.get("metrics") or {
            k: v for k, v in rec.items() if k.startswith(("test_", "val_")) and _number(v)}
        if isinstance(rec.get("macs"), Mapping):
            out["macs_detail"], out["macs"] = rec["macs"], rec.get("macs_total")
    else:
        metrics = {k: v for k, v in (rec.get("metrics") or {}).items() if _number(v)}
        if kind == "recsys":  # older records mixed costs into the metrics
            metrics = {k: v for k, v in metrics.items() if "@" in k}
        metric = rec.get("metric") or ("recall@20" if "recall@20" in metrics
                                       else next(iter(metrics), None))
        if "weight_sparsity" not in rec:
            out["weight_sparsity"] = rec.get("sparsity", 1.0 - rec.get("remaining", 1.0))
        out.setdefault("graph_sparsity", None)
    out["metric"] = metric
    out["metrics"] = {k: float(v) for k, v in metrics.items() if _number(v)}
    out["macs"] = int(out["macs"]) if _number(out.get("macs")) else None
    secs = rec.get("seconds", rec.get("wall_time_s"))
    out["seconds"] = float(secs) if _number(secs) else None
    return out


def read_records(run_dir: Any) -> tuple[str, list[dict[str, Any]]]:
    """``(kind, records)`` of a run folder, every record in the common schema (module
    docstring), also for folders written by older versions."""
    run_dir = Path(run_dir)
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        records = json.loads((run_dir / "records.json").read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{run_dir} is not a run directory: {e}") from e
    kind = _kind_of(cfg, records)
    return kind, [normalise_record(kind, r) for r in records]


def read_round(run_dir: Any, round_idx: int | None = None) -> dict[str, Any]:
    """A finished round of any run folder, checksums verified (default: the last one):
    ``{"kind", "round", "config" (dict), "config_json", "progress", "record" (as stored),
    "masks" (Masks), "trained_state", "init_state", "rewind_state" (or None),
    "start_state"}``; ``start_state`` is the state the round's survivors were rewound to
    (θk for late rewinding, else θ0)."""
    run_dir = Path(run_dir)
    prog, cfg_json = _read_json(run_dir, "read_round")
    done = int(prog["next_round"])
    if done == 0:
        raise ValueError(f"read_round: {run_dir} has no finished round yet")
    r = done - 1 if round_idx is None else int(round_idx)
    if not 0 <= r < done:
        raise ValueError(f"read_round: round {r} is not finished in {run_dir} "
                         f"(finished rounds: 0..{done - 1})")
    files = prog["files"]

    def load(rel: str) -> dict[str, Tensor]:
        return _io.load_safetensors(run_dir / rel, sha256=files[rel])

    config = cfg_json.get("config", {})
    init = load("init.safetensors")
    rewind = load("rewind.safetensors") if "rewind.safetensors" in files else None
    return {
        "kind": _kind_of(cfg_json, prog["records"]),
        "round": r,
        "config": config,
        "config_json": cfg_json,
        "progress": prog,
        "record": prog["records"][r],
        "masks": Masks.from_state_dict(load(f"round_{r:03d}/masks.safetensors")),
        "trained_state": load(f"round_{r:03d}/trained.safetensors"),
        "init_state": init,
        "rewind_state": rewind,
        "start_state": rewind if config.get("rewind") == "late" and rewind else init,
    }


def ticket_metadata(kind: str, config: Mapping[str, Any], r: int, record: Mapping[str, Any],
                    **extra: Any) -> dict[str, Any]:
    """The metadata of a round's ticket, the same for every kind: config, seed, round, the
    headline metric and all metrics, MACs and sparsities (+ ``extra``)."""
    rec = normalise_record(kind, record)
    meta = {"kind": kind, "config": dict(config), "seed": config.get("seed"), "round": r,
            "metric": rec["metric"], "metrics": rec["metrics"],
            "macs": {k: rec[k] for k in ("macs", "macs_dense", "macs_paper") if k in rec},
            "weight_sparsity": rec["weight_sparsity"], "graph_sparsity": rec["graph_sparsity"]}
    if kind == "ugs":
        meta["method"] = "ugs" if config.get("baseline", "ugs") == "ugs" else "random pruning"
    meta.update(extra)
    return meta


def ticket_parts(run_dir: Any, round_idx: int | None = None) -> dict[str, Any]:
    """``{"masks", "trained_state", "init_state", "metadata"}`` of a finished round of any
    run kind (default: the last one): the arguments of ``sparselth.Ticket``."""
    rd = read_round(run_dir, round_idx)
    cfg_json = rd["config_json"]
    extra = {k: v for k, v in (("model", cfg_json.get("model")),
                               ("settings", cfg_json.get("settings")),
                               ("weight_names", rd["progress"].get("weight_names")))
             if v is not None}
    return {
        "masks": rd["masks"],
        "trained_state": rd["trained_state"],
        "init_state": rd["start_state"],
        "metadata": ticket_metadata(rd["kind"], rd["config"], rd["round"], rd["record"],
                                    **extra),
    }
