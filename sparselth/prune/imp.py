"""Iterative magnitude pruning (IMP) with rewinding, checkpointing and resume.

The loop (round 0 is the dense network; ``rounds`` = R pruning rounds, R + 1 trainings)::

    capture init state θ0 (and the RNG state); masks m0 = all ones
    for r in 0..R:
        model <- start state of round r (θ0, the late-rewind state θk, or, with
                 rewind="none", the trained weights of round r-1), masked by m_r
        train_fn(model, r); metrics = eval_fn(model)
        record round r (sparsity overall/per layer, metrics, MACs, wall time)
        save round r; if r < R: m_{r+1} = strategy(model, m_r, fraction_r, config)
        commit the round (progress.json), then go on

After round r the remaining fraction of the selected weights is exactly
``round(total * (1 - fraction) ** r) / total`` for ``"element"`` granularity (the driver
passes the strategy the fraction of the survivors that reaches this count).

Late rewinding (``rewind="late"``): during round 0 the training function calls
``imp.capture_rewind_point(model, step=it)`` (e.g. every iteration); the state at
``config.rewind_step`` (or at the first call when ``rewind_step`` is None) is kept and all
later rounds start from it. Alternatively pass ``rewind_state=`` (a state dict) to ``IMP``.
Only the model state is rewound: a training function that wants to resume its learning
rate schedule from step k can read ``imp.rewind_step``.

Run directory (``root/<config.run_name()>`` unless ``run_dir`` is given) — safetensors and
JSON only, every file written atomically, ``progress.json`` written last as the commit
point, with the sha256 of every tensor file it relies on::

    config.json                     the IMPConfig (and format version)
    init.safetensors                θ0 (model state without mask buffers)
    rewind.safetensors              θk for rewind="late"
    rng_start.safetensors           RNG state at the start (torch, numpy, python, CUDA)
    round_XXX/masks.safetensors     masks used in round XXX
    round_XXX/trained.safetensors   weights after training round XXX
    round_XXX/rng.safetensors       RNG state after round XXX (= at the start of the next)
    round_XXX/record.json           the round's record
    records.json                    all records so far
    progress.json                   next round to run, checksums, RNG (python/numpy) state

A restarted run with the same config and run directory skips finished rounds, restores
the masks, the start state and all RNG states, and produces bit-for-bit the same masks,
weights and metrics as an uninterrupted run, provided ``train_fn``/``eval_fn`` depend only
on the model, the round index and the global RNGs (build data loaders and optimizers inside
them, or seed them from ``round_idx``).

Strategies: ``strategy(model, masks, fraction, config) -> Masks`` prunes ``fraction`` of
the surviving entries of ``masks`` (the model carries the trained weights, with ``masks``
installed). Register new ones with ``@register_strategy("name")``; built-ins:
``"magnitude"`` and ``"random"`` (baseline; draws from torch's global RNG).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import random as _pyrandom
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import _io
from . import criteria
from .accounting import count_macs
from .masks import Masks, _resolve, apply, masks_of, reapply, state_without_masks

__all__ = [
    "IMP",
    "STRATEGIES",
    "IMPConfig",
    "get_strategy",
    "load_round",
    "register_strategy",
    "run_imp",
]

FORMAT_VERSION = 1


# --------------------------------------------------------------------------- config


def _help(text: str, default: Any) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples or None for config defaults")
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class IMPConfig:
    """Hyperparameters of an IMP run. Every field has a help string (``IMPConfig.help()``);
    the run folder is named by a hash of the non-default fields (``run_name()``)."""

    rounds: int = _help(
        "number of pruning rounds R; the run trains R + 1 times (round 0 is dense)", 10
    )
    fraction: float = _help(
        "fraction of the surviving weights pruned after each round; "
        "(1 - fraction)^r remains after round r",
        0.2,
    )
    strategy: str = _help(
        "pruning strategy from the registry: 'magnitude' or 'random' (baseline)", "magnitude"
    )
    scope: str = _help("'global' (one threshold over all selected weights) or 'layer'", "global")
    granularity: str = _help(
        "'element', 'row', 'channel' or 'block' (N:M has a fixed sparsity and cannot be iterated)",
        "element",
    )
    block: tuple[int, int] | None = _help("block shape (bh, bw) for granularity='block'", None)
    channel: str = _help("'out' or 'in': which channels granularity='channel' prunes", "out")
    include: tuple[str, ...] | None = _help(
        "parameters to prune: fnmatch patterns, 're:<regex>', 'type:<Module class>', '@first', "
        "'@last' (default: weights of Linear/Conv*/ConvTranspose*/Embedding)",
        None,
    )
    exclude: tuple[str, ...] | None = _help(
        "parameters not to prune (same syntax as include)", None
    )
    rewind: str = _help(
        "where survivors restart each round: 'init' (θ0), 'late' (state captured "
        "by capture_rewind_point at rewind_step, or rewind_state=) or 'none' "
        "(keep trained weights: fine-tuning baseline)",
        "init",
    )
    rewind_step: int | None = _help(
        "step (iteration or epoch, as train_fn counts) at which "
        "capture_rewind_point keeps the late-rewind state; None: "
        "the first call",
        None,
    )
    seed: int | None = _help(
        "seed for torch, numpy and python RNGs at the start of the run "
        "(None: leave them as they are)",
        0,
    )

    def __post_init__(self) -> None:
        for name in ("include", "exclude"):
            v = getattr(self, name)
            if v is not None:
                v = (v,) if isinstance(v, str) else tuple(v)
                if not all(isinstance(s, str) for s in v):
                    raise TypeError(
                        f"IMPConfig.{name} must be strings (use 'type:Linear' for types)"
                    )
                object.__setattr__(self, name, v)
        if self.block is not None:
            object.__setattr__(self, "block", tuple(int(b) for b in self.block))
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError(f"IMPConfig.rounds must be an int >= 0, got {self.rounds!r}")
        if not (isinstance(self.fraction, (int, float)) and 0.0 <= self.fraction < 1.0):
            raise ValueError(f"IMPConfig.fraction must be in [0, 1), got {self.fraction!r}")
        if self.rewind not in ("init", "late", "none"):
            raise ValueError(
                f"IMPConfig.rewind must be 'init', 'late' or 'none', got {self.rewind!r}"
            )
        if self.scope != "global" and self.scope not in criteria._LAYER_SCOPES:
            raise ValueError(f"IMPConfig.scope must be 'global' or 'layer', got {self.scope!r}")
        kind, _ = criteria.parse_granularity(self.granularity, self.block)
        if kind == "nm":
            raise ValueError(
                "IMPConfig.granularity: N:M fixes the sparsity at 1 - N/M and cannot be "
                "pruned iteratively; use magnitude(..., granularity='2:4') once"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IMPConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"IMPConfig: unknown fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def non_default(self) -> dict[str, Any]:
        """Fields whose value differs from the default (JSON form)."""
        default = IMPConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if default[k] != v}

    def run_name(self) -> str:
        """``"imp_" + sha256(canonical JSON of the non-default fields)[:12]``."""
        digest = hashlib.sha256(_io.canonical_json(self.non_default()).encode()).hexdigest()
        return f"imp_{digest[:12]}"

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default and help text."""
        lines = []
        for f in dataclasses.fields(cls):
            lines.append(f"{f.name} (default {f.default!r}): {f.metadata.get('help', '')}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- strategies

STRATEGIES: dict[str, Callable[..., Masks]] = {}


def register_strategy(name: str):
    """Decorator: register ``fn(model, masks, fraction, config) -> Masks`` under ``name``."""

    def deco(fn):
        STRATEGIES[name] = fn
        return fn

    return deco


def get_strategy(name: str) -> Callable[..., Masks]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown pruning strategy {name!r}; registered: {sorted(STRATEGIES)}"
        ) from None


def _criterion_kwargs(config: IMPConfig) -> dict[str, Any]:
    return {
        "scope": config.scope,
        "granularity": config.granularity,
        "include": config.include,
        "exclude": config.exclude,
        "block": config.block,
        "channel": config.channel,
    }


@register_strategy("magnitude")
def magnitude_strategy(model: nn.Module, masks: Masks, fraction: float, config: IMPConfig) -> Masks:
    """Prune ``fraction`` of the survivors with the smallest trained magnitudes."""
    return criteria.magnitude(model, masks=masks, fraction=fraction, **_criterion_kwargs(config))


@register_strategy("random")
def random_strategy(model: nn.Module, masks: Masks, fraction: float, config: IMPConfig) -> Masks:
    """Prune ``fraction`` of the survivors uniformly at random (torch global RNG)."""
    return criteria.random(
        model, masks=masks, fraction=fraction, seed=None, **_criterion_kwargs(config)
    )


# --------------------------------------------------------------------------- RNG state


def _rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    st = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(st[1], dtype=np.int64))
    meta: dict[str, Any] = {
        "numpy": {
            "kind": st[0],
            "pos": int(st[2]),
            "has_gauss": int(st[3]),
            "cached_gaussian": float(st[4]),
        },
    }
    pv, pstate, pgauss = _pyrandom.getstate()
    meta["python"] = {"version": pv, "state": list(pstate), "gauss_next": pgauss}
    ncuda = 0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
        ncuda = torch.cuda.device_count()
    meta["cuda_devices"] = ncuda
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    n = meta["numpy"]
    np.random.set_state(
        (
            n["kind"],
            tensors["numpy_keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = meta["python"]
    _pyrandom.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    ncuda = meta.get("cuda_devices", 0)
    if ncuda and torch.cuda.is_available() and torch.cuda.device_count() == ncuda:
        torch.cuda.set_rng_state_all([tensors[f"cuda_{i}"] for i in range(ncuda)])


# --------------------------------------------------------------------------- helpers


def _clone_state(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in sd.items()}


def _load_state(model: nn.Module, sd: Mapping[str, Tensor], what: str) -> None:
    own = state_without_masks(model)
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"{what}: {k!r} has shape {tuple(v.shape)}, the model has {tuple(own[k].shape)}"
            )
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v)


def _jsonable(x: Any, where: str) -> Any:
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise TypeError(
                f"{where}: tensors in metrics must be scalars, got shape {tuple(x.shape)}"
            )
        return x.item()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) and x.size == 1:
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v, where) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, where) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"{where}: {type(x).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------- driver


class IMP:
    """Iterative magnitude pruning driver (see the module docstring).

    Args:
        model: the network, at its initial weights θ0 (on a resume, θ0 is read from disk).
        train_fn: ``train_fn(model, round_idx) -> None`` trains the masked model in place
            (build the optimizer inside: masks are installed before it is called), or an
            object with ``.train(model, round_idx)`` and ``.evaluate(model)``.
        eval_fn: ``eval_fn(model) -> dict`` of metrics (JSON-serialisable numbers).
        config: ``IMPConfig`` (default: ``IMPConfig()``).
        run_dir: checkpoint folder; default ``Path(root) / config.run_name()``.
        strategy: optional callable ``(model, masks, fraction, config) -> Masks`` that
            overrides ``config.strategy``. It is not part of ``run_name()``: prefer
            ``register_strategy("name")`` + ``IMPConfig(strategy="name")``, or pass ``run_dir``.
        example_inputs: if given, MACs are counted every round (``count_macs``).
        rewind_state: a state dict to rewind to (requires ``config.rewind == "late"``).
        progress: show a tqdm progress bar over rounds.

    Example::

        def train(model, r):
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            for it in range(200):
                imp.capture_rewind_point(model, step=it)   # only acts for rewind="late"
                ...
        imp = IMP(model, train, evaluate, IMPConfig(rounds=5, fraction=0.2), root="runs")
        records = imp.run()
    """

    def __init__(
        self,
        model: nn.Module,
        train_fn: Any,
        eval_fn: Callable[[nn.Module], Mapping[str, Any]] | None = None,
        config: IMPConfig | None = None,
        *,
        run_dir: Any | None = None,
        root: Any = "runs",
        strategy: Callable[..., Masks] | None = None,
        example_inputs: Any = None,
        rewind_state: Mapping[str, Tensor] | None = None,
        progress: bool = True,
    ):
        self.model = model
        self.config = config if config is not None else IMPConfig()
        if not isinstance(self.config, IMPConfig):
            raise TypeError(f"config must be an IMPConfig, got {type(self.config).__name__}")
        if not inspect.isroutine(train_fn) and callable(getattr(train_fn, "train", None)):
            self._train = train_fn.train  # protocol object: .train(model, r), .evaluate(model)
            if eval_fn is None and callable(getattr(train_fn, "evaluate", None)):
                eval_fn = train_fn.evaluate
        elif callable(train_fn):
            self._train = train_fn
        else:
            raise TypeError("train_fn must be a callable or have a .train(model, round_idx) method")
        self._eval = eval_fn
        self.run_dir = Path(run_dir) if run_dir is not None else Path(root) / self.config.run_name()
        self._strategy_fn = strategy if strategy is not None else get_strategy(self.config.strategy)
        self._strategy_name = (
            self.config.strategy
            if strategy is None
            else getattr(strategy, "__qualname__", repr(strategy))
        )
        self.example_inputs = example_inputs
        if rewind_state is not None and self.config.rewind != "late":
            raise ValueError("rewind_state= needs IMPConfig(rewind='late')")
        self._rewind_state = _clone_state(rewind_state) if rewind_state is not None else None
        self._user_rewind = rewind_state is not None
        self.rewind_step: int | None = None
        self.progress = progress
        self.round: int | None = None
        self.records: list[dict[str, Any]] = []
        self.masks: Masks | None = None
        self._init_state: dict[str, Tensor] | None = None
        self._total = 0
        self._files: dict[str, str] = {}

    # -- late rewinding
    def progress_bar(self, iterable: Any = None, **kwargs: Any):
        """A nested tqdm bar for the training function's epochs/iterations (disabled when
        the IMP driver's ``progress`` is False). ``kwargs`` go to ``tqdm``."""
        from tqdm.auto import tqdm

        kwargs.setdefault("leave", False)
        kwargs.setdefault("position", 1)
        kwargs.setdefault("desc", f"round {self.round}")
        kwargs.setdefault("disable", not self.progress)
        return tqdm(iterable, **kwargs)

    def capture_rewind_point(self, model: nn.Module | None = None, step: int | None = None) -> bool:
        """Keep the current model state as the late-rewind point θk.

        Acts only in round 0 with ``config.rewind == "late"``, once, and (when
        ``config.rewind_step`` is set) only when ``step == config.rewind_step``; otherwise a
        no-op. Returns True when the state was captured. Safe to call every iteration.
        """
        if self.round != 0 or self.config.rewind != "late" or self._rewind_state is not None:
            return False
        if self.config.rewind_step is not None and step != self.config.rewind_step:
            return False
        self._rewind_state = _clone_state(
            state_without_masks(model if model is not None else self.model)
        )
        self.rewind_step = step
        return True

    # -- files
    def _path(self, rel: str) -> Path:
        return self.run_dir / rel

    def _save_tensors(self, rel: str, tensors: Mapping[str, Tensor]) -> None:
        sha, _ = _io.save_safetensors(self._path(rel), tensors)
        self._files[rel] = sha

    def _load_tensors(self, rel: str) -> dict[str, Tensor]:
        if rel not in self._files:
            raise ValueError(
                f"IMP resume: {rel!r} is not recorded in {self._path('progress.json')}"
            )
        return _io.load_safetensors(self._path(rel), sha256=self._files[rel])

    def _save_rng(self, rel: str) -> dict[str, Any]:
        tensors, meta = _rng_state()
        self._save_tensors(rel, tensors)
        return meta

    def _commit(self, next_round: int, rng_file: str, rng_meta: dict[str, Any]) -> None:
        _io.atomic_write_json(self._path("records.json"), self.records)
        _io.atomic_write_json(
            self._path("progress.json"),
            {
                "format_version": FORMAT_VERSION,
                "next_round": next_round,
                "rounds": self.config.rounds,
                "total": self._total,
                "rewind_step": self.rewind_step,
                "files": self._files,
                "rng_file": rng_file,
                "rng": rng_meta,
                "records": self.records,
            },
        )

    def _config_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "run_name": self.config.run_name(),
            "strategy": self._strategy_name,
        }

    # -- setup / resume
    def _start(self) -> int:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        prog_path = self._path("progress.json")
        if prog_path.exists():
            return self._resume(prog_path)
        _io.atomic_write_json(self._path("config.json"), self._config_json())
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            _pyrandom.seed(cfg.seed)
        self._init_state = _clone_state(state_without_masks(self.model))
        self._save_tensors("init.safetensors", self._init_state)
        if self._rewind_state is not None:
            if set(self._rewind_state) != set(self._init_state):
                raise ValueError(
                    "rewind_state= keys do not match the model's state_dict (without mask buffers)"
                )
            self._save_tensors("rewind.safetensors", self._rewind_state)
        masks = Masks.ones(self.model, include=cfg.include, exclude=cfg.exclude)
        if len(masks) == 0:
            raise ValueError("IMP: no parameters selected for pruning")
        existing = masks_of(self.model)
        for k in masks:
            if k in existing:
                masks[k] = masks[k] & existing[k].to(masks[k].device)
        self.masks = masks
        self._total = masks.numel()
        self._save_tensors("round_000/masks.safetensors", masks.state_dict())
        meta = self._save_rng("rng_start.safetensors")
        self._commit(0, "rng_start.safetensors", meta)
        return 0

    def _resume(self, prog_path: Path) -> int:
        try:
            prog = json.loads(prog_path.read_text())
            saved_cfg = json.loads(self._path("config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"IMP resume: cannot read {prog_path}: {e}") from e
        if prog.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"IMP resume: {prog_path} has format version {prog.get('format_version')}, "
                f"newer than this sparselth supports ({FORMAT_VERSION})"
            )
        if saved_cfg.get("config") != self.config.to_dict():
            raise ValueError(
                f"IMP resume: {self.run_dir} holds a run with a different config: "
                f"{saved_cfg.get('config')} != {self.config.to_dict()}"
            )
        self._files = dict(prog["files"])
        self._total = int(prog["total"])
        self.records = list(prog["records"])
        self.rewind_step = prog.get("rewind_step")
        nxt = int(prog["next_round"])
        self._init_state = self._load_tensors("init.safetensors")
        _load_state(self.model, self._init_state, "IMP resume: init.safetensors")
        if "rewind.safetensors" in self._files:
            self._rewind_state = self._load_tensors("rewind.safetensors")
        rel = f"round_{min(nxt, self.config.rounds):03d}/masks.safetensors"
        self.masks = Masks.from_state_dict(self._load_tensors(rel), model=self.model)
        _set_rng_state(self._load_tensors(prog["rng_file"]), prog["rng"])
        if nxt > self.config.rounds:  # finished: leave the model as after the last round
            last = self.config.rounds
            _load_state(
                self.model,
                self._load_tensors(f"round_{last:03d}/trained.safetensors"),
                "IMP resume",
            )
            apply(self.model, self.masks)
        return nxt

    def _start_state(self, r: int) -> Mapping[str, Tensor]:
        if r == 0 or self.config.rewind == "init":
            return self._init_state
        if self.config.rewind == "late":
            return self._rewind_state
        return self._load_tensors(f"round_{r - 1:03d}/trained.safetensors")

    # -- main loop
    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) all rounds; returns the list of per-round records.

        Each record: ``round``, ``sparsity`` (overall), ``remaining``, ``zeros``, ``total``,
        ``sparsity_per_layer``, ``metrics``, ``macs``/``macs_dense`` (None without
        ``example_inputs``), ``wall_time_s``. Afterwards the model holds the last round's
        trained weights with its masks installed.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        start = self._start()
        bar = tqdm(
            total=cfg.rounds + 1,
            initial=min(start, cfg.rounds + 1),
            desc="IMP rounds",
            unit="round",
            disable=not self.progress,
        )
        try:
            for r in range(start, cfg.rounds + 1):
                self._run_round(r)
                rec = self.records[-1]
                postfix = {"sparsity": f"{rec['sparsity']:.3f}"}
                for k, v in list(rec["metrics"].items())[:2]:
                    if isinstance(v, (int, float)):
                        postfix[k] = f"{v:.4g}"
                bar.set_postfix(postfix)
                bar.update(1)
        finally:
            bar.close()
            self.round = None
        return self.records

    def _run_round(self, r: int) -> None:
        cfg = self.config
        model = self.model
        t0 = time.perf_counter()
        _load_state(model, self._start_state(r), f"IMP round {r} start state")
        apply(model, self.masks)
        self.round = r
        self._train(model, r)
        self.round = None
        if r == 0 and cfg.rewind == "late" and self._rewind_state is None:
            raise RuntimeError(
                "IMPConfig(rewind='late') but train_fn never captured a rewind point in round 0: "
                "call imp.capture_rewind_point(model, step=...)"
                + (f" with step == {cfg.rewind_step}" if cfg.rewind_step is not None else "")
                + " or pass rewind_state="
            )
        self._check_masked_zero(r)
        metrics = _jsonable(dict(self._eval(model)) if self._eval is not None else {}, "eval_fn")
        macs = (
            count_macs(model, self.example_inputs, self.masks)
            if self.example_inputs is not None
            else None
        )
        sp = self.masks.sparsity()
        rec = {
            "round": r,
            "sparsity": sp["overall"],
            "remaining": 1.0 - sp["overall"],
            "zeros": sp["zeros"],
            "total": sp["total"],
            "sparsity_per_layer": sp["layers"],
            "metrics": metrics,
            "macs": macs["total"]["macs"] if macs else None,
            "macs_dense": macs["total"]["macs_dense"] if macs else None,
            "rewind": cfg.rewind,
            "rewind_step": self.rewind_step,
        }
        d = f"round_{r:03d}"
        if r == 0 and self._rewind_state is not None and "rewind.safetensors" not in self._files:
            self._save_tensors("rewind.safetensors", self._rewind_state)
        self._save_tensors(f"{d}/trained.safetensors", state_without_masks(model))
        if r < cfg.rounds:
            new = self._prune_next(r)
            self._save_tensors(f"round_{r + 1:03d}/masks.safetensors", new.state_dict())
        else:
            new = None
        rec["wall_time_s"] = time.perf_counter() - t0
        _io.atomic_write_json(self._path(f"{d}/record.json"), rec)
        self.records.append(rec)
        rng_file = f"{d}/rng.safetensors"
        meta = self._save_rng(rng_file)
        self._commit(r + 1, rng_file, meta)
        if new is not None:
            self.masks = new

    def _prune_next(self, r: int) -> Masks:
        cfg = self.config
        alive = self.masks.nnz()
        target = _round_half_up(self._total * (1.0 - cfg.fraction) ** (r + 1))
        frac = 0.0 if alive == 0 else min(1.0, max(0.0, 1.0 - target / alive))
        new = self._strategy_fn(self.model, self.masks, frac, cfg)
        if not isinstance(new, Mapping):
            raise TypeError(f"strategy returned {type(new).__name__}, expected Masks")
        new = (
            Masks.from_state_dict(new, model=self.model)
            if not isinstance(new, Masks)
            else new.bind(self.model)
        )
        for k, m in self.masks.items():
            if k not in new:
                raise ValueError(f"strategy dropped the mask of {k!r}")
            if bool((new[k].to(m.device) & ~m).any()):
                raise ValueError(f"strategy revived pruned entries of {k!r}")
        return new

    def _check_masked_zero(self, r: int) -> None:
        revived = []
        for name, mask in self.masks.items():
            _, _, p = _resolve(self.model, name)
            if bool((p.detach()[~mask.to(p.device)] != 0).any()):
                revived.append(name)
        if revived:
            warnings.warn(
                f"IMP round {r}: pruned weights became nonzero during train_fn in {revived[:3]}; "
                "they were zeroed again. Use sparselth.prune.hook_optimizer(optimizer, model) if "
                "the optimizer updates entries with zero gradient.",
                RuntimeWarning,
                stacklevel=3,
            )
            reapply(self.model)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def run_imp(
    model: nn.Module,
    train_fn: Any,
    eval_fn: Any = None,
    config: IMPConfig | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Functional form: ``IMP(model, train_fn, eval_fn, config, **kwargs).run()``."""
    return IMP(model, train_fn, eval_fn, config, **kwargs).run()


def open_finished_round(run_dir: Any, round_idx: int | None, kind: str, op: str):
    """Open a finished round of a pruning run directory (IMP, UGS: ``progress.json``,
    ``config.json``, checksummed safetensors). Returns ``(round, progress, config_json,
    load)`` where ``load(rel)`` reads a tensor file of the run with its checksum verified;
    ``round_idx`` default: the last finished round."""
    run_dir = Path(run_dir)
    try:
        prog = json.loads((run_dir / "progress.json").read_text())
        cfg_json = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{run_dir} is not {kind} run directory: {e}") from e
    done = int(prog["next_round"])
    if done == 0:
        raise ValueError(f"{op}: {run_dir} has no finished round yet")
    r = done - 1 if round_idx is None else int(round_idx)
    if not 0 <= r < done:
        raise ValueError(f"{op}: round {r} is not finished in {run_dir} "
                         f"(finished rounds: 0..{done - 1})")
    files = prog["files"]

    def load(rel: str) -> dict[str, Tensor]:
        return _io.load_safetensors(run_dir / rel, sha256=files[rel])

    return r, prog, cfg_json, load


def load_round(run_dir: Any, round_idx: int | None = None) -> dict[str, Any]:
    """Read a finished round of an IMP run directory (checksums verified).

    Returns ``{"round", "config" (IMPConfig), "record", "masks" (Masks), "trained_state",
    "init_state", "rewind_state" (or None)}``; ``round_idx`` default: the last finished
    round. ``rewind_state`` is the state the round started from (θ0 or θk).
    """
    r, prog, cfg_json, load = open_finished_round(run_dir, round_idx, "an IMP", "load_round")
    files = prog["files"]

    config = IMPConfig.from_dict(cfg_json["config"])
    rewind = load("rewind.safetensors") if "rewind.safetensors" in files else None
    return {
        "round": r,
        "config": config,
        "record": prog["records"][r],
        "masks": Masks.from_state_dict(load(f"round_{r:03d}/masks.safetensors")),
        "trained_state": load(f"round_{r:03d}/trained.safetensors"),
        "init_state": load("init.safetensors"),
        "rewind_state": rewind,
    }
