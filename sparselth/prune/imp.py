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

IMP continues from the masks it is given: a model whose selected weights already carry
masks (``prune.apply``) starts with those survivors, and with ``start_from="current"`` (the
default) round r keeps exactly ``round(start * (1 - fraction) ** r)`` of them for
``"element"`` granularity, ``start`` = the survivors at round 0 (all selected weights for an
unmasked model): every round prunes ``fraction`` of the current survivors. With
``start_from="dense"`` the target is ``round(total * (1 - fraction) ** r)`` of *all* selected
weights, so rounds whose target the given masks already meet would prune nothing. The driver
passes the strategy the fraction of the survivors that reaches the target. A round with
``fraction > 0`` that prunes nothing raises ``ValueError`` (a target already met, a strategy
that removed nothing, or a model too small for the fraction to remove one entry).

Late rewinding (``rewind="late"``): during round 0 the training function calls
``imp.capture_rewind_point(model, step=it)`` (e.g. every iteration); the state at
``config.rewind_step`` (or at the first call when ``rewind_step`` is None) is kept and all
later rounds start from it. Alternatively pass ``rewind_state=`` (a state dict) to ``IMP``.
Only the model state is rewound: a training function that wants to resume its learning
rate schedule from step k can read ``imp.rewind_step``.

The run folder (``root/<config.run_name()>`` unless ``run_dir`` is given) is a
:class:`sparselth.prune.run.RunDir` (layout, record schema and resume rule there): kind
``"imp"``, ``init.safetensors`` (θ0), ``rewind.safetensors`` (θk), ``round_XXX/masks`` (the
masks of round XXX, written at the end of round XXX-1), ``trained``, ``rng``, ``record.json``.
A restarted run skips finished rounds, restores the masks, the start state and all RNG
states, and produces bit-for-bit the same masks, weights and metrics as an uninterrupted
run, provided ``train_fn``/``eval_fn`` depend only on the model, the round index and the
global RNGs (build data loaders and optimizers inside them, or seed them from
``round_idx``). A larger ``rounds`` extends a finished run.

Under ``torchrun`` (:mod:`sparselth.utils.distributed`; every rank runs the same driver
with the same seed): θ0 and the masks of every round are rank 0's, broadcast to the others
(each rank also runs the strategy, so the RNG streams stay in step); at the start of every
round each rank checks it holds the same masks, and after training the same weights
(``RuntimeError`` naming the ranks otherwise: a ``train_fn`` that does not synchronise its
steps, e.g. without DDP, is caught there); only rank 0 writes the run folder, shows progress
bars and runs ``measure``; a resume reads the folder on rank 0 and broadcasts it, with any
number of ranks. The training function splits the work (``ClassificationTask`` does).

Strategies (:mod:`sparselth.prune.strategies`): ``strategy(model, masks, fraction, config)
-> Masks`` prunes ``fraction`` of the surviving entries of ``masks``. Register new ones with
``@register_strategy("name")``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..metrics.cost import count_macs
from ..utils import distributed
from ..utils.timing import stopwatch
from . import criteria
from .masks import Masks, _resolve, apply, masks_of, reapply, state_without_masks
from .run import (Config, RunDir, clone_state, default_run_dir, help_field, jsonable, load_state,
                  loop_rounds, preserved_rng, read_round, seed_everything)
from .strategies import STRATEGIES, get_strategy, register_strategy

__all__ = [
    "IMP",
    "STRATEGIES",
    "IMPConfig",
    "get_strategy",
    "load_round",
    "register_strategy",
    "run_imp",
]


@dataclass(frozen=True)
class IMPConfig(Config):
    """Hyperparameters of an IMP run. Every field has a help string (``IMPConfig.help()``);
    the run folder is named by a hash of the non-default fields (``run_name()``)."""

    run_prefix = "imp"

    rounds: int = help_field(
        "number of pruning rounds R; the run trains R + 1 times (round 0 is dense)", 10)
    fraction: float = help_field(
        "fraction of the surviving weights pruned after each round; "
        "(1 - fraction)^r remains after round r", 0.2)
    strategy: str = help_field(
        "pruning strategy from the registry (sparselth.prune.strategies): 'magnitude', "
        "'random' (baseline), 'embedding_row_norm', ...", "magnitude")
    scope: str = help_field(
        "'global' (one threshold over all selected weights) or 'layer'", "global")
    granularity: str = help_field(
        "'element', 'row', 'channel' or 'block' (N:M has a fixed sparsity and cannot be "
        "iterated)", "element")
    block: tuple[int, int] | None = help_field("block shape (bh, bw) for granularity='block'",
                                               None)
    channel: str = help_field("'out' or 'in': which channels granularity='channel' prunes",
                              "out")
    include: tuple[str, ...] | None = help_field(
        "parameters to prune: fnmatch patterns, 're:<regex>', 'type:<Module class>', "
        "'@first', '@last' (default: weights of Linear/Conv*/ConvTranspose*/Embedding)", None)
    exclude: tuple[str, ...] | None = help_field(
        "parameters not to prune (same syntax as include)", None)
    rewind: str = help_field(
        "where survivors restart each round: 'init' (θ0), 'late' (state captured by "
        "capture_rewind_point at rewind_step, or rewind_state=) or 'none' (keep trained "
        "weights: fine-tuning baseline)", "init")
    rewind_step: int | None = help_field(
        "step (iteration or epoch, as train_fn counts) at which capture_rewind_point keeps "
        "the late-rewind state; None: the first call", None)
    seed: int | None = help_field(
        "seed for torch, numpy and python RNGs at the start of the run (None: leave them as "
        "they are)", 0)
    start_from: str = help_field(
        "what (1 - fraction)^r is measured from: 'current' (the survivors of the masks the "
        "model has at the start, so every round prunes fraction of the current survivors) or "
        "'dense' (all selected weights)", "current")

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
        if self.start_from not in ("current", "dense"):
            raise ValueError(
                f"IMPConfig.start_from must be 'current' or 'dense', got {self.start_from!r}")
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


class IMP:
    """Iterative magnitude pruning driver (see the module docstring).

    Args:
        model: the network, at its initial weights θ0 (on a resume, θ0 is read from disk).
        train_fn: ``train_fn(model, round_idx) -> None`` trains the masked model in place
            (build the optimizer inside: masks are installed before it is called), or an
            object with ``.train(model, round_idx)``, ``.evaluate(model)`` and optionally
            ``.measure(round_idx, model)``.
        eval_fn: ``eval_fn(model) -> dict`` of quality metrics (JSON-serialisable numbers).
        config: ``IMPConfig`` (default: ``IMPConfig()``).
        run_dir: checkpoint folder; default ``Path(root) / config.run_name()``.
        strategy: optional callable ``(model, masks, fraction, config) -> Masks`` that
            overrides ``config.strategy``. It is not part of ``run_name()``: prefer
            ``register_strategy("name")`` + ``IMPConfig(strategy="name")``, or pass ``run_dir``.
        example_inputs: if given, MACs are counted every round (``count_macs``).
        rewind_state: a state dict to rewind to (requires ``config.rewind == "late"``).
        measure: optional ``measure(round_idx, model) -> dict`` of costs (bytes, latencies)
            merged into each record beside the metrics; it runs with the RNG state kept.
        metric: the headline metric of the records (default: the first one eval_fn returns).
        kind: the run kind written to ``config.json`` (drivers built on IMP name theirs).
        settings: further settings that define the run (e.g. a driver's training
            hyperparameters): saved in ``config.json``, a resume with others is refused.
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
        measure: Callable[[int, nn.Module], Mapping[str, Any]] | None = None,
        metric: str | None = None,
        kind: str = "imp",
        settings: Mapping[str, Any] | None = None,
        progress: bool = True,
    ):
        self.model = model
        self.config = config if config is not None else IMPConfig()
        if not isinstance(self.config, IMPConfig):
            raise TypeError(f"config must be an IMPConfig, got {type(self.config).__name__}")
        if not inspect.isroutine(train_fn) and callable(getattr(train_fn, "train", None)):
            self._train = train_fn.train  # protocol object: .train, .evaluate, .measure
            if eval_fn is None and callable(getattr(train_fn, "evaluate", None)):
                eval_fn = train_fn.evaluate
            if measure is None and callable(getattr(train_fn, "measure", None)):
                measure = train_fn.measure
        elif callable(train_fn):
            self._train = train_fn
        else:
            raise TypeError("train_fn must be a callable or have a .train(model, round_idx) method")
        self._eval = eval_fn
        self._measure = measure
        self.metric = metric
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, self.config)
        self.folder = RunDir(self.run_dir, kind, "IMP")
        self._settings = settings
        self._strategy_fn = strategy if strategy is not None else get_strategy(self.config.strategy)
        self._strategy_name = (self.config.strategy if strategy is None
                               else getattr(strategy, "__qualname__", repr(strategy)))
        self.example_inputs = example_inputs
        if rewind_state is not None and self.config.rewind != "late":
            raise ValueError("rewind_state= needs IMPConfig(rewind='late')")
        self._rewind_state = clone_state(rewind_state) if rewind_state is not None else None
        self.rewind_step: int | None = None
        self.progress = progress
        self.round: int | None = None
        self.records: list[dict[str, Any]] = []
        self.masks: Masks | None = None
        self._init_state: dict[str, Tensor] | None = None
        self._total = 0
        self._start_nnz = 0   # survivors of the masks at round 0

    # -- late rewinding
    def progress_bar(self, iterable: Any = None, **kwargs: Any):
        """A nested tqdm bar for the training function's epochs/iterations (disabled when
        the IMP driver's ``progress`` is False). ``kwargs`` go to ``tqdm``."""
        from tqdm.auto import tqdm

        kwargs.setdefault("leave", False)
        kwargs.setdefault("position", 1)
        kwargs.setdefault("desc", f"round {self.round}")
        kwargs.setdefault("disable", not distributed.show_progress(self.progress))
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
        self._rewind_state = clone_state(
            state_without_masks(model if model is not None else self.model)
        )
        self.rewind_step = step
        return True

    # -- setup / resume
    def _commit(self, next_round: int, rng_file: str) -> None:
        self.folder.commit(next_round, self.records, rng_file, rounds=self.config.rounds,
                           total=self._total, start=self._start_nnz,
                           rewind_step=self.rewind_step)

    def _start(self) -> int:
        cfg = self.config
        prog = self.folder.resume(cfg, self._settings)
        if prog is not None:
            return self._resume(prog)
        self.folder.create(cfg, self._settings, strategy=self._strategy_name)
        seed_everything(cfg.seed)
        # rank 0's θ0 is the run's (one process: the model's own)
        self._init_state = distributed.broadcast_tensors(
            clone_state(state_without_masks(self.model)))
        load_state(self.model, self._init_state, "IMP: θ0")
        self.folder.save("init.safetensors", self._init_state)
        if self._rewind_state is not None:
            if set(self._rewind_state) != set(self._init_state):
                raise ValueError(
                    "rewind_state= keys do not match the model's state_dict (without mask buffers)"
                )
            self._rewind_state = distributed.broadcast_tensors(self._rewind_state)
            self.folder.save("rewind.safetensors", self._rewind_state)
        masks = Masks.ones(self.model, include=cfg.include, exclude=cfg.exclude)
        if len(masks) == 0:
            raise ValueError("IMP: no parameters selected for pruning")
        existing = masks_of(self.model)
        for k in masks:
            if k in existing:
                masks[k] = masks[k] & existing[k].to(masks[k].device)
        self.masks = self._shared(masks)
        self._total = self.masks.numel()
        self._start_nnz = self.masks.nnz()
        self.folder.save("round_000/masks.safetensors", self.masks.state_dict())
        self._commit(0, "rng_start.safetensors")
        return 0

    def _round_state(self, r: int, what: str) -> None:
        """The model <- round r's trained weights with round r's masks installed."""
        load_state(self.model, self.folder.load(f"round_{r:03d}/trained.safetensors"), what)
        apply(self.model, self.masks)

    def _resume(self, prog: Mapping[str, Any]) -> int:
        f, cfg = self.folder, self.config
        self._total = int(prog["total"])
        self.records = list(prog["records"])
        if "start" in prog:
            self._start_nnz = int(prog["start"])
        else:   # folders written before: the survivors of round 0's masks
            self._start_nnz = Masks.from_state_dict(f.load("round_000/masks.safetensors")).nnz()
        self.rewind_step = prog.get("rewind_step")
        nxt = int(prog["next_round"])
        self._init_state = f.load("init.safetensors")
        load_state(self.model, self._init_state, "IMP resume: init.safetensors")
        if f.has("rewind.safetensors"):
            self._rewind_state = f.load("rewind.safetensors")
        rel = f"round_{min(nxt, cfg.rounds):03d}/masks.safetensors"
        extend = not f.has(rel)  # a finished run extended: prune after its last round
        if extend:
            rel = f"round_{nxt - 1:03d}/masks.safetensors"
        self.masks = Masks.from_state_dict(f.load(rel), model=self.model)
        f.restore_rng(prog)
        if extend:
            self._round_state(nxt - 1, "IMP extend")
            self.masks = self._save_next_masks(nxt - 1)
        if nxt > cfg.rounds:  # finished: leave the model as after the last round
            self._round_state(cfg.rounds, "IMP resume")
        return nxt

    def _start_state(self, r: int) -> Mapping[str, Tensor]:
        if r == 0 or self.config.rewind == "init":
            return self._init_state
        if self.config.rewind == "late":
            return self._rewind_state
        return self.folder.load(f"round_{r - 1:03d}/trained.safetensors")

    # -- main loop
    def run(self) -> list[dict[str, Any]]:
        """Run, resume or extend rounds 0..R; returns the records of rounds 0..R.

        Each record: ``round``, ``sparsity`` (overall) = ``weight_sparsity``, ``remaining``,
        ``zeros``, ``total``, ``sparsity_per_layer``, ``metric`` (headline), ``metrics``,
        ``graph_sparsity`` (None), ``macs``/``macs_dense`` (None without
        ``example_inputs``), ``seconds`` = ``wall_time_s``, and what ``measure`` returned.
        Afterwards the model holds the last round's trained weights with its masks installed.
        """

        def postfix(rec: Mapping[str, Any]) -> dict[str, str]:
            out = {"sparsity": f"{rec['sparsity']:.3f}"}
            for k, v in list(rec["metrics"].items())[:2]:
                if isinstance(v, (int, float)):
                    out[k] = f"{v:.4g}"
            return out

        try:
            loop_rounds("IMP rounds", self._start(), self.config.rounds, self._run_round,
                        postfix, distributed.show_progress(self.progress))
        finally:
            self.round = None
        return self.records[: self.config.rounds + 1]

    def _headline(self, metrics: Mapping[str, Any]) -> str | None:
        if self.metric is not None:
            return self.metric
        return next((k for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)), None)

    def _run_round(self, r: int) -> dict[str, Any]:
        cfg = self.config
        model = self.model
        elapsed = stopwatch()
        load_state(model, self._start_state(r), f"IMP round {r} start state")
        distributed.check_same(self.masks, f"IMP round {r}: the masks")
        apply(model, self.masks)
        self.round = r
        self._train(model, r)
        self.round = None
        distributed.check_same(state_without_masks(model), f"IMP round {r}: the trained weights")
        if r == 0 and cfg.rewind == "late" and self._rewind_state is None:
            raise RuntimeError(
                "IMPConfig(rewind='late') but train_fn never captured a rewind point in round 0: "
                "call imp.capture_rewind_point(model, step=...)"
                + (f" with step == {cfg.rewind_step}" if cfg.rewind_step is not None else "")
                + " or pass rewind_state="
            )
        self._check_masked_zero(r)
        metrics = jsonable(dict(self._eval(model)) if self._eval is not None else {}, "eval_fn")
        macs = (count_macs(model, self.example_inputs, self.masks)
                if self.example_inputs is not None else None)
        sp = self.masks.sparsity()
        rec = {
            "round": r,
            "sparsity": sp["overall"],
            "weight_sparsity": sp["overall"],
            "graph_sparsity": None,
            "remaining": 1.0 - sp["overall"],
            "zeros": sp["zeros"],
            "total": sp["total"],
            "sparsity_per_layer": sp["layers"],
            "metric": self._headline(metrics),
            "metrics": metrics,
            "macs": macs["total"]["macs"] if macs else None,
            "macs_dense": macs["total"]["macs_dense"] if macs else None,
            "rewind": cfg.rewind,
            "rewind_step": self.rewind_step,
        }
        if self._measure is not None and distributed.world()[2]:
            with preserved_rng():
                rec.update(jsonable(dict(self._measure(r, model) or {}), "measure"))
        d = f"round_{r:03d}"
        if r == 0 and self._rewind_state is not None and not self.folder.has("rewind.safetensors"):
            self.folder.save("rewind.safetensors", self._rewind_state)
        self.folder.save(f"{d}/trained.safetensors", state_without_masks(model))
        new = self._save_next_masks(r) if r < cfg.rounds else None
        rec["wall_time_s"] = rec["seconds"] = elapsed()
        self.folder.write_json(f"{d}/record.json", rec)
        self.records.append(rec)
        self._commit(r + 1, f"{d}/rng.safetensors")
        if new is not None:
            self.masks = new
        return rec

    def _save_next_masks(self, r: int) -> Masks:
        """Prune after round r (the model holds its trained weights) and save the masks of
        round r + 1."""
        cfg = self.config
        alive = self.masks.nnz()
        base = self._total if cfg.start_from == "dense" else self._start_nnz
        target = _round_half_up(base * (1.0 - cfg.fraction) ** (r + 1))
        frac = 0.0 if alive == 0 else min(1.0, max(0.0, 1.0 - target / alive))
        new = self._strategy_fn(self.model, self.masks, frac, cfg)
        if not isinstance(new, Mapping):
            raise TypeError(f"strategy returned {type(new).__name__}, expected Masks")
        new = (Masks.from_state_dict(new, model=self.model) if not isinstance(new, Masks)
               else new.bind(self.model))
        new = self._shared(new)
        for k, m in self.masks.items():
            if k not in new:
                raise ValueError(f"strategy dropped the mask of {k!r}")
            if bool((new[k].to(m.device) & ~m).any()):
                raise ValueError(f"strategy revived pruned entries of {k!r}")
        if cfg.fraction > 0 and new.nnz() >= alive:
            if alive == 0:
                why = "every selected weight is already pruned"
            elif target >= alive:
                why = (f"the target of round {r + 1}, round({base} * (1 - {cfg.fraction})^"
                       f"{r + 1}) = {target} survivors, is already met by the {alive} "
                       "survivors" + (" (start_from='dense' measures it from all "
                                      f"{self._total} selected weights; start_from='current' "
                                      "continues from the masks given)"
                                      if cfg.start_from == "dense" else
                                      "; the model is too small for this fraction"))
            else:
                why = (f"strategy {self._strategy_name!r} was asked to prune {frac:.4g} of the "
                       f"{alive} survivors and removed none")
            raise ValueError(f"IMP: round {r + 1} would prune nothing: {why}")
        self.folder.save(f"round_{r + 1:03d}/masks.safetensors", new.state_dict())
        return new

    def _shared(self, masks: Masks) -> Masks:
        """Rank 0's masks on every rank (one process: ``masks``)."""
        if not distributed.is_distributed():
            return masks
        return Masks(distributed.broadcast_masks(masks), model=self.model)

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


def load_round(run_dir: Any, round_idx: int | None = None) -> dict[str, Any]:
    """Deprecated: use ``sparselth.ticket.load_round`` (a Ticket) or
    ``sparselth.prune.run.read_round`` (the raw parts).

    Returns ``{"round", "config" (IMPConfig), "record", "masks", "trained_state",
    "init_state", "rewind_state"}`` of a finished round of an IMP run directory."""
    warnings.warn("sparselth.prune.load_round is deprecated; use sparselth.ticket.load_round "
                  "or sparselth.prune.run.read_round", DeprecationWarning, stacklevel=2)
    rd = read_round(run_dir, round_idx)
    out = {k: rd[k] for k in ("round", "record", "masks", "trained_state", "init_state",
                              "rewind_state")}
    out["config"] = IMPConfig.from_dict(rd["config"])
    return out
