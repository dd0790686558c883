"""Unified GNN Sparsification (UGS, Chen et al. 2021, "A Unified Lottery Ticket Hypothesis
for Graph Neural Networks"): prune a GNN's graph and weights together, round by round, with
trainable real-valued masks and an L1 penalty.

One run (round 0 trains the dense network; ``rounds`` = R pruning rounds)::

    seed; θ0 = the model's initial state; masks M_0 = all ones (graph and weights)
    round 0: fix-mask training with M_0 (the dense baseline)
    for k in 1..R:
        mask search: weights θ0, trainable masks m_g = M_g (1 + u), m_θ = M_θ (1 + u),
            u ~ U(-c, c) (zeros stay 0); for mask_epochs epochs of Adam(lr, wd) steps on
            weights and masks with loss + s1 ‖m_g‖₁ + s2 ‖m_θ‖₁ (the sign sub-gradients
            s1 sign(m_g), s2 sign(m_θ) are added to the mask gradients); the masks of the
            epoch with the best validation metric are kept
        prune: remove the int(n_g p_g) + 1 smallest |m_g| among the n_g surviving edges
            (one global threshold over the graph), and the int(n_θ p_θ) + 1 smallest |m_θ|
            over all masked weight matrices together (one global threshold) -> M_k
        fix-mask training: weights rewound to θ0, masks M_k frozen, Adam(lr, wd) for
            fix_epochs; the test metric at the best validation epoch is the round's result

The effective weights in the search are ``W ⊙ m_θ ⊙ M_θ`` and the effective edge weights
``m_g ⊙ M_g`` (``M`` frozen 0/1), installed with :func:`torch.func.functional_call`, so the
model's own parameters keep their names and no hook stays behind. Pruned entries stay
exactly 0: their mask value is 0, and gradient, sign term and weight decay of a 0 entry are
all 0. The pruning rule removes exactly ``int(n p) + 1`` entries (smallest magnitude first,
ties by position); the reference's threshold rule (keep ``|m| > sorted(|m|)[int(n p)]``)
removes the same entries when the mask values are distinct, which the noise ensures.

Random-pruning baseline (``baseline="random"``, the paper's random pruning): round k keeps the
survivors of round k-1 and removes more at random until ``round((1 - 0.95^k) n_g)`` edges
and, in *each* weight matrix separately, ``round((1 - 0.8^k) n_W)`` weights are pruned
(``p_g``/``p_θ`` from the config), then one fix-mask training.

GCN normalisation: the driver sets every :class:`~sparselth.nn.GCNConv` of the model to
``config.gcn_degree``, by default ``"sender"`` as the reference (``D^-1/2 A_m^T D^-1/2``: a
masked message counts in its sender's degree); ``"receiver"`` (the usual GCN) is the
documented deviation. Run folders written before the option existed were made with receiver
degrees and resume only with ``gcn_degree="receiver"``.

Pre-trained graph lottery tickets (the UGS paper's "pre-trained GLT"): ``config.init`` names a
safetensors checkpoint (node-level GraphCL, :mod:`sparselth.train.graphcl_node`) whose
first-layer weight is copied into the model's first masked weight after seeding and before θ0
is snapshotted (:func:`load_pretrained_first_layer`; shapes checked), so every round rewinds
to the pre-trained weight; the other weights keep the seeded random init. The run's name
includes the path, its folder the checkpoint's sha256 (a resume with a changed checkpoint is
refused), and every record ``init`` (``"pretrained"``/``"random"``) and ``init_sha256``.

The model must follow the contract of :mod:`sparselth.models.gnn`: an ``edge_mask``
parameter (one value per stored graph entry, the edge weight of every layer),
``ugs_weight_names()``, ``compact_graph()`` and ``macs(x)``. Training goes through a *task*
object (:mod:`sparselth.train.graph`: ``NodeClassificationTask``, ``LinkPredictionTask``)
with ``metric``, ``inputs()``, ``evaluate(model)`` and ``fit(model, epochs, lr,
weight_decay, params=, after_backward=, on_best=, keep_state=, state_fn=, progress=,
desc=)``. Node and link tasks take one full-batch step per epoch.

Graph classification (``task="graph"``): the model is a
:class:`~sparselth.models.GINGraphClassifier`, whose "graph" is a whole dataset of graphs
(one mask value per stored edge of the dataset, each mini-batch gathering its graphs'
slices), trained through :class:`sparselth.train.GraphClassificationTask`: one Adam step per
mini-batch, the L1 sub-gradients added after every backward; the global thresholds run over
all edges of the dataset and over all masked GIN weights.

The run folder (``root/<config.run_name()>`` unless ``run_dir`` is given) is a
:class:`sparselth.prune.run.RunDir` (layout, record schema and resume rule there) of kind
``"ugs"``: ``init.safetensors`` (θ0, edge_mask all ones), ``round_XXX/masks.safetensors``
(the binary masks of round XXX: ``"edge_mask"`` + weights), ``trained.safetensors`` (the
fix-mask weights at the best validation epoch), ``rng``, ``record.json``. A restarted run
with the same config and directory skips finished rounds and gives the same masks, weights
and metrics as an uninterrupted one (timings aside). ``rounds`` is not part of a run's name:
the same directory can be extended with a larger ``rounds``.

Under ``torchrun`` (:mod:`sparselth.utils.distributed`; every rank runs the same driver
with the same seed, so the RNG streams, dropout included, stay in step): θ0 and the masks
(graph and weights) of every round are rank 0's, broadcast to the others (each rank also
computes them, keeping the RNG in step), and every round checks that all ranks hold the same
masks and, after fix-mask training, the same weights (``RuntimeError`` naming the ranks
otherwise). The task splits the work: :class:`~sparselth.train.NodeClassificationTask`
gives each rank its share of the training nodes' loss and sums the gradients (the total is
the one-process loss); other tasks train the same replica on every rank. Only rank 0 writes
the run folder, shows progress bars and runs ``measure``; a resume reads the folder on rank
0 and broadcasts it, with any number of ranks.

A round becomes a ticket with ``sparselth.ticket.load_round(run_dir, k)`` (masks
``"edge_mask"`` + the weight names, trained state, θ0 as init state, metadata).

Example::

    from sparselth.models import GCN
    from sparselth.train import NodeClassificationTask, node_features
    task = NodeClassificationTask(data, node_features(data.x))
    ugs = UGS(lambda: GCN(A, data.num_features, data.num_classes), task,
              UGSConfig(rounds=20, seed=2377), root="runs")
    records = ugs.run()          # records[k]["test_acc"], ["graph_sparsity"], ...
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.graph import GCNConv
from ..utils import distributed
from ..utils.timing import stopwatch
from . import criteria
from .masks import Masks, apply, remove, state_without_masks
from .run import (Config, RunDir, clone_state, default_run_dir, help_field, jsonable, load_state,
                  loop_rounds, preserved_rng, seed_everything, ticket_metadata, ticket_parts)
from .ugs_masks import (GRAPH_MASK, PRETRAINED_KEYS, SoftMaskedModel, add_l1_subgradient,
                        load_pretrained_first_layer, prune_smallest, soft_mask_init,
                        ugs_schedule)

__all__ = [
    "GRAPH_MASK",
    "SoftMaskedModel",
    "UGS",
    "UGSConfig",
    "PRETRAINED_KEYS",
    "add_l1_subgradient",
    "load_pretrained_first_layer",
    "load_ugs_round",
    "prune_smallest",
    "soft_mask_init",
    "ugs_schedule",
]



@dataclass(frozen=True)
class UGSConfig(Config):
    """Hyperparameters of a UGS run (defaults: the paper's GCN on Cora, except ``seed``).
    ``UGSConfig.help()`` lists them; ``run_name()`` hashes the non-default ones but
    ``rounds``."""

    run_prefix = "ugs"
    name_ignores = ("rounds",)
    # run folders written before gcn_degree existed normalised GCNs by receiver degree
    legacy_values = {"gcn_degree": "receiver"}

    rounds: int = help_field("pruning rounds R (the run trains R + 1 times; round 0 is dense)", 20)
    prune_graph: float = help_field("p_g: fraction of the surviving edges pruned per round", 0.05)
    prune_weight: float = help_field(
        "p_θ: fraction of the surviving masked weights pruned per round (one global "
        "threshold)", 0.2)
    s1: float = help_field(
        "λ1: L1 coefficient of the graph mask (sign sub-gradient s1·sign(m_g))", 1e-2)
    s2: float = help_field(
        "λ2: L1 coefficient of the weight masks (sign sub-gradient s2·sign(m_θ))", 1e-2)
    lr: float = help_field("Adam learning rate (mask search and fix-mask training)", 0.008)
    weight_decay: float = help_field(
        "Adam weight decay (also on the masks, as in the reference)", 8e-5)
    mask_epochs: int = help_field("epochs of the mask search per round", 200)
    fix_epochs: int = help_field(
        "epochs of fix-mask training per round (and of the dense round 0)", 200)
    mask_noise: float = help_field("c: soft-mask init m·(1 + u), u ~ U(-c, c), breaks ties", 1e-5)
    seed: int | None = help_field(
        "seed of torch/numpy/python RNGs at the start (None: leave them)", 0)
    baseline: str = help_field(
        "'ugs' (mask search) or 'random' (random pruning, same schedule)", "ugs")
    task: str = help_field(
        "'node' (accuracy), 'link' (ROC-AUC) or 'graph' (graph classification, accuracy): "
        "names the metric in records", "node")
    gcn_degree: str = help_field(
        "degree normalisation set on every GCNConv of the model: 'sender' (the reference, "
        "D^-1/2 A_m^T D^-1/2: a masked message counts in its sender's degree) or 'receiver' "
        "(the usual GCN; a deviation once the mask is asymmetric); other layers ignore it",
        "sender")
    init: str = help_field(
        "θ0 of the first masked weight: '' (random, the model's own init) or the path of a "
        "safetensors checkpoint (node-level GraphCL) whose first-layer weight replaces it "
        "before θ0 is snapshotted, so every round rewinds to it (the pre-trained GLT)", "")

    def __post_init__(self) -> None:
        for name in ("rounds", "mask_epochs", "fix_epochs"):
            v = getattr(self, name)
            low = 0 if name == "rounds" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"UGSConfig.{name} must be an int >= {low}, got {v!r}")
        for name in ("prune_graph", "prune_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"UGSConfig.{name} must be in [0, 1), got {v!r}")
        for name in ("s1", "s2", "lr", "weight_decay", "mask_noise"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise ValueError(f"UGSConfig.{name} must be a finite number >= 0, got {v!r}")
        if self.mask_noise >= 1:
            raise ValueError(f"UGSConfig.mask_noise must be < 1, got {self.mask_noise!r}")
        if self.baseline not in ("ugs", "random"):
            raise ValueError(f"UGSConfig.baseline must be 'ugs' or 'random', got {self.baseline!r}")
        if self.task not in ("node", "link", "graph"):
            raise ValueError(f"UGSConfig.task must be 'node', 'link' or 'graph', got "
                             f"{self.task!r}")
        if self.gcn_degree not in GCNConv.degrees:
            raise ValueError(f"UGSConfig.gcn_degree must be 'sender' or 'receiver', got "
                             f"{self.gcn_degree!r}")
        if self.seed is not None and (not isinstance(self.seed, int)
                                      or isinstance(self.seed, bool)):
            raise ValueError(f"UGSConfig.seed must be an int or None, got {self.seed!r}")
        if not isinstance(self.init, str):
            raise ValueError(f"UGSConfig.init must be a str (a checkpoint path or ''), got "
                             f"{self.init!r}")

    @property
    def metric(self) -> str:
        return "auc" if self.task == "link" else "acc"


def _check_model(model: nn.Module) -> list[str]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"UGS: model must be a torch.nn.Module, got {type(model).__name__}")
    em = getattr(model, GRAPH_MASK, None)
    if not isinstance(em, nn.Parameter) or em.dim() != 1:
        raise TypeError(
            "UGS: the model needs an nn.Parameter 'edge_mask' of shape [nnz] (one value per "
            "stored graph entry), as sparselth.models.GCN/GIN/GAT have"
        )
    for meth in ("ugs_weight_names", "compact_graph", "macs"):
        if not callable(getattr(model, meth, None)):
            raise TypeError(f"UGS: the model needs a {meth}() method (see sparselth.models.gnn)")
    names = list(model.ugs_weight_names())
    if not names:
        raise ValueError("UGS: model.ugs_weight_names() is empty: nothing to prune")
    params = dict(model.named_parameters())
    for n in names:
        if n not in params:
            raise ValueError(f"UGS: ugs_weight_names() names {n!r}, which is not a parameter")
    return names


def _check_task(task: Any, metric: str) -> None:
    for meth in ("fit", "evaluate", "inputs"):
        if not callable(getattr(task, meth, None)):
            raise TypeError(
                f"UGS: task needs a {meth}() method (use sparselth.train.NodeClassificationTask, "
                "LinkPredictionTask or GraphClassificationTask)"
            )
    if getattr(task, "metric", metric) != metric:
        raise ValueError(
            f"UGS: the task's metric is {task.metric!r} but the config's task expects {metric!r}"
        )


class UGS:
    """The UGS driver (see the module docstring).

    Args:
        model: a GNN following the :mod:`sparselth.models.gnn` contract, at its initial
            weights, or a callable that builds one (called after seeding, so the seed fixes
            θ0; on a resume θ0 is read from disk).
        task: a :mod:`sparselth.train.graph` task (its ``metric`` must match
            ``config.task``).
        config: :class:`UGSConfig`.
        run_dir / root: checkpoint folder (default ``root / config.run_name()``).
        measure: optional ``measure(round_idx, model, parts) -> dict`` merged into each
            record (e.g. latencies of the compiled ticket); ``model`` holds the round's
            trained weights with its masks installed, ``parts`` the round's ticket parts
            (:func:`sparselth.prune.run.ticket_parts`); it runs with the RNG state kept.
        progress: tqdm bars over rounds and epochs.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        task: Any,
        config: UGSConfig | None = None,
        *,
        run_dir: Any | None = None,
        root: Any = "runs",
        measure: Callable[[int, nn.Module, dict[str, Any]], Mapping[str, Any]] | None = None,
        progress: bool = True,
    ):
        self.config = config if config is not None else UGSConfig()
        if not isinstance(self.config, UGSConfig):
            raise TypeError(f"UGS: config must be a UGSConfig, got {type(self.config).__name__}")
        _check_task(task, self.config.metric)
        if isinstance(model, nn.Module):
            self._model_fn = None
            self.model: nn.Module | None = model
            self.weight_names = _check_model(model)
        elif callable(model):
            self._model_fn = model
            self.model = None
            self.weight_names = []
        else:
            raise TypeError(
                f"UGS: model must be an nn.Module or a callable building one, got "
                f"{type(model).__name__}"
            )
        self.task = task
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, self.config)
        self.measure = measure
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.masks: Masks | None = None
        self.last_search: dict[str, Any] | None = None
        self._init_state: dict[str, Tensor] | None = None
        self.init_sha256: str | None = None   # of config.init's checkpoint
        self.folder = RunDir(self.run_dir, "ugs", "UGS")

    # -- setup / resume
    def _build_model(self) -> None:
        if self.model is None:
            self.model = self._model_fn()
            self.weight_names = _check_model(self.model)
        for m in self.model.modules():   # the config, not the model, decides (run identity)
            if isinstance(m, GCNConv):
                m.degree = self.config.gcn_degree

    def _commit(self, next_round: int, rng_file: str) -> None:
        self.folder.commit(next_round, self.records, rng_file, rounds=self.config.rounds,
                           weight_names=self.weight_names)

    def _start(self) -> int:
        f, init = self.folder, self.config.init
        settings = distributed.on_main(_init_settings, init)
        prog = f.resume(self.config, settings)
        if prog is None:
            seed_everything(self.config.seed)
        self._build_model()
        remove(self.model)
        self.init_sha256 = settings["init_sha256"] if settings else None
        if prog is not None:
            self.records = list(prog["records"])
            nxt = int(prog["next_round"])
            self._init_state = f.load("init.safetensors")
            load_state(self.model, self._init_state, "UGS resume: init.safetensors")
            if nxt > 0:
                self.masks = Masks.from_state_dict(
                    f.load(f"round_{nxt - 1:03d}/masks.safetensors"), model=self.model)
            f.restore_rng(prog)
            return nxt
        f.create(self.config, settings, model=type(self.model).__name__)
        with torch.no_grad():
            self.model.get_parameter(GRAPH_MASK).fill_(1.0)

        def theta0() -> dict[str, Tensor]:
            if init:
                load_pretrained_first_layer(self.model, init, self.weight_names[0])
            return clone_state(state_without_masks(self.model))

        # rank 0's θ0 (and checkpoint) is the run's (one process: the model's own)
        self._init_state = distributed.tensors_from_main(theta0)
        load_state(self.model, self._init_state, "UGS: θ0")
        f.save("init.safetensors", self._init_state)
        self._commit(0, "rng_start.safetensors")
        return 0

    # -- phases
    def _ones(self) -> Masks:
        m = Masks(model=self.model)
        for name in [GRAPH_MASK] + self.weight_names:
            p = self.model.get_parameter(name)
            m[name] = torch.ones(p.shape, dtype=torch.bool, device=p.device)
        return m

    def _rewind(self, graph: Callable[[Tensor], Tensor]) -> tuple[nn.Parameter, bool]:
        """The model at θ0, masks removed, with ``graph(edge_mask)`` as edge mask; returns
        the edge mask and whether it was trainable."""
        remove(self.model)
        load_state(self.model, self._init_state, "UGS: θ0")
        em = self.model.get_parameter(GRAPH_MASK)
        learn = em.requires_grad
        with torch.no_grad():
            em.copy_(graph(em))
        return em, learn

    def _mask_search(self, r: int, prev: Masks) -> tuple[Masks, dict[str, Any]]:
        cfg, model = self.config, self.model
        em, learn = self._rewind(
            lambda em: soft_mask_init(prev[GRAPH_MASK].to(device=em.device), cfg.mask_noise))
        em.requires_grad_(True)
        soft = SoftMaskedModel(model, prev, self.weight_names, cfg.mask_noise)
        weight_masks = list(soft.weight_masks)
        best: dict[str, Tensor] = {}

        def after_backward() -> None:
            batch = getattr(self.task, "last_batch", None)
            used = model.entries_of(batch) if batch is not None and \
                hasattr(model, "entries_of") else None
            add_l1_subgradient([em], cfg.s1, used)
            add_l1_subgradient(weight_masks, cfg.s2)

        def on_best(epoch: int, ev: Mapping[str, float]) -> None:
            best[GRAPH_MASK] = em.detach().clone()
            for name, m in zip(self.weight_names, weight_masks):
                best[name] = m.detach().clone()

        params = [p for p in model.parameters() if p.requires_grad] + weight_masks
        try:
            res = self.task.fit(soft, cfg.mask_epochs, cfg.lr, cfg.weight_decay, params=params,
                                after_backward=after_backward, on_best=on_best,
                                progress=self.progress, desc=f"round {r} mask search")
        finally:
            em.requires_grad_(learn)
        if not best:  # validation never above -inf (NaN metrics): use the last masks
            on_best(-1, {})
        new = Masks(model=model)
        scope = self._graph_scope(prev[GRAPH_MASK])
        (pruned,) = prune_smallest([best[GRAPH_MASK]], [prev[GRAPH_MASK] & scope],
                                   cfg.prune_graph)
        new[GRAPH_MASK] = pruned | (prev[GRAPH_MASK] & ~scope)
        kept = prune_smallest([best[n] for n in self.weight_names],
                              [prev[n] for n in self.weight_names], cfg.prune_weight)
        for name, m in zip(self.weight_names, kept):
            new[name] = m
        alive_g = prev[GRAPH_MASK]
        self.last_search = {"best_masks": best, "result": res}
        info = {
            "best_epoch": res.best_epoch,
            f"best_val_{cfg.metric}": res.best_val,
            f"test_{cfg.metric}_at_best": res.test,
            "seconds": res.seconds,
            "graph_mask_mean_abs": float(best[GRAPH_MASK][alive_g.to(em.device)].abs().mean())
            if bool(alive_g.any()) else 0.0,
        }
        return new, info

    def _shared(self, masks: Masks) -> Masks:
        """Rank 0's masks on every rank (one process: ``masks``)."""
        if not distributed.is_distributed():
            return masks
        return Masks(distributed.broadcast_masks(masks), model=self.model)

    def _graph_scope(self, like: Tensor) -> Tensor:
        """The graph-mask entries that can be pruned (bool, ``like``'s shape): all, or those
        the task trains on (:meth:`GraphClassificationTask.prunable_entries`: a test graph's
        edges get no gradient, so a learned mask cannot rank them)."""
        fn = getattr(self.task, "prunable_entries", None)
        scope = fn(self.model) if fn is not None else None
        if scope is None:
            return torch.ones_like(like, dtype=torch.bool)
        return scope.to(device=like.device, dtype=torch.bool)

    def _random_masks(self, r: int, prev: Masks) -> Masks:
        cfg, model = self.config, self.model
        scope = self._graph_scope(prev[GRAPH_MASK])
        if not bool(scope.all()):
            return self._random_masks_in_scope(r, prev, scope)
        remove(model)
        graph = criteria.random(
            model, sparsity=1.0 - (1.0 - cfg.prune_graph) ** r, scope="layer",
            include=[GRAPH_MASK], masks={GRAPH_MASK: prev[GRAPH_MASK]}, seed=None)
        weights = criteria.random(
            model, sparsity=1.0 - (1.0 - cfg.prune_weight) ** r, scope="layer",
            include=list(self.weight_names), masks={n: prev[n] for n in self.weight_names},
            seed=None)
        new = Masks(model=model)
        new[GRAPH_MASK] = graph[GRAPH_MASK]
        for n in self.weight_names:
            new[n] = weights[n]
        return new

    def _random_masks_in_scope(self, r: int, prev: Masks, scope: Tensor) -> Masks:
        """Random pruning of the in-scope graph entries to ``round((1 - (1 - p_g)^r) n)``
        pruned (out-of-scope entries kept), weights as :meth:`_random_masks`."""
        cfg, model = self.config, self.model
        g = prev[GRAPH_MASK]
        n = int(scope.sum())
        keep = n - round((1.0 - (1.0 - cfg.prune_graph) ** r) * n)
        alive = (g & scope).nonzero().squeeze(1)
        order = alive[torch.randperm(alive.numel(), device=alive.device)]
        graph = g & ~scope
        graph[order[:min(keep, alive.numel())]] = True
        remove(model)
        weights = criteria.random(
            model, sparsity=1.0 - (1.0 - cfg.prune_weight) ** r, scope="layer",
            include=list(self.weight_names), masks={n_: prev[n_] for n_ in self.weight_names},
            seed=None)
        new = Masks(model=model)
        new[GRAPH_MASK] = graph
        for name in self.weight_names:
            new[name] = weights[name]
        return new

    def _fix(self, r: int, masks: Masks):
        cfg, model = self.config, self.model
        em, learn = self._rewind(lambda em: masks[GRAPH_MASK].to(device=em.device, dtype=em.dtype))
        em.requires_grad_(False)
        apply(model, masks)
        try:
            res = self.task.fit(model, cfg.fix_epochs, cfg.lr, cfg.weight_decay, keep_state=True,
                                state_fn=lambda: state_without_masks(model),
                                progress=self.progress,
                                desc=f"round {r} {'dense' if r == 0 else 'fix mask'}")
        finally:
            em.requires_grad_(learn)
        if res.best_state is not None:
            load_state(model, res.best_state, "UGS: best fix-mask state")
        return res

    # -- accounting
    def _sparsity(self, masks: Masks) -> dict[str, Any]:
        g = masks[GRAPH_MASK]
        g_kept, g_total = int(g.count_nonzero()), g.numel()
        scope = self._graph_scope(g)
        w_kept = sum(int(masks[n].count_nonzero()) for n in self.weight_names)
        w_total = sum(masks[n].numel() for n in self.weight_names)
        return {
            "graph_sparsity": 1.0 - g_kept / g_total if g_total else 0.0,
            "weight_sparsity": 1.0 - w_kept / w_total if w_total else 0.0,
            "graph_edges_kept": g_kept,
            "graph_edges_total": g_total,
            # the entries pruning may remove (all, or the training graphs' for graph tasks)
            "prunable_edges_kept": int((g & scope).count_nonzero()),
            "prunable_edges_total": int(scope.sum()),
            "weights_kept": w_kept,
            "weights_total": w_total,
            "weight_sparsity_per_layer": {
                n: 1.0 - int(masks[n].count_nonzero()) / masks[n].numel() for n in self.weight_names
            },
        }

    def _macs(self) -> dict[str, Any]:
        m = copy.deepcopy(self.model)
        remove(m)
        m.compact_graph()
        with torch.no_grad():
            return jsonable(m.macs(*self.task.inputs()), "model.macs")

    def parts(self, r: int, masks: Masks,
              record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Ticket parts of round ``r`` from the current model state (as
        :func:`sparselth.prune.run.ticket_parts` reads them from the folder)."""
        meta = ticket_metadata("ugs", self.config.to_dict(), r, record or {"round": r},
                               model=type(self.model).__name__,
                               weight_names=self.weight_names)
        return {
            "masks": masks.clone(),
            "trained_state": clone_state(state_without_masks(self.model)),
            "init_state": self._init_state,
            "metadata": meta,
        }

    # -- main loop
    def run(self) -> list[dict[str, Any]]:
        """Run (or resume, or extend with a larger ``rounds``) rounds 0..R; returns the
        records of rounds 0..R. Afterwards the model holds the last round run in this call
        with its masks installed (θ0 when nothing was left to run)."""
        metric = self.config.metric
        loop_rounds("UGS rounds", self._start(), self.config.rounds, self._run_round,
                    lambda rec: {"graph": f"{rec['graph_sparsity']:.3f}",
                                 "weight": f"{rec['weight_sparsity']:.3f}",
                                 metric: f"{rec[f'test_{metric}']:.4f}"},
                    distributed.show_progress(self.progress))
        return self.records[: self.config.rounds + 1]

    def _run_round(self, r: int) -> dict[str, Any]:
        cfg = self.config
        elapsed = stopwatch()
        prev = self.masks if self.masks is not None else self._ones()
        search = None
        if r == 0:
            masks = self._ones()
        elif cfg.baseline == "ugs":
            masks, search = self._mask_search(r, prev)
        else:
            masks = self._random_masks(r, prev)
        masks = self._shared(masks)
        distributed.check_same(masks, f"UGS round {r}: the masks")
        res = self._fix(r, masks)
        distributed.check_same(state_without_masks(self.model),
                               f"UGS round {r}: the trained weights")
        metric = cfg.metric
        rec: dict[str, Any] = {"round": r, "baseline": cfg.baseline, "task": cfg.task,
                               "metric": f"test_{metric}",
                               "init": "pretrained" if cfg.init else "random",
                               "init_sha256": self.init_sha256}
        rec.update(self._sparsity(masks))
        rec[f"test_{metric}"] = res.test
        rec[f"val_{metric}"] = res.best_val
        for k, v in res.extra.items():
            rec[f"{k}_at_best"] = v
        rec["metrics"] = {k: v for k, v in rec.items() if k.startswith(("test_", "val_"))}
        rec["best_epoch"] = res.best_epoch
        rec["fix_seconds"] = res.seconds
        rec["mask_search"] = search
        macs = self._macs()
        rec["macs_detail"] = macs
        rec["macs"] = rec["macs_total"] = macs.get("total")
        rec["macs_paper"] = macs.get("paper_formula")
        rec["seconds_train"] = elapsed()
        if self.measure is not None and distributed.world()[2]:
            # the measurement must not shift the RNG streams (a resumed run skips it)
            with preserved_rng():
                extra = self.measure(r, self.model, self.parts(r, masks, rec))
            rec.update(jsonable(dict(extra or {}), "measure"))
        rec["seconds"] = elapsed()
        rec = jsonable(rec, "UGS record")
        d = f"round_{r:03d}"
        self.folder.save(f"{d}/masks.safetensors", masks.state_dict())
        self.folder.save(f"{d}/trained.safetensors", state_without_masks(self.model))
        self.folder.write_json(f"{d}/record.json", rec)
        self.records.append(rec)
        self._commit(r + 1, f"{d}/rng.safetensors")
        self.masks = masks
        return rec


def _init_settings(init: str) -> dict[str, str] | None:
    """The run settings of ``config.init``: the checkpoint's sha256 (its content, not only its
    path, is part of the run), or None without a checkpoint."""
    if not init:
        return None
    from .. import _io
    if not Path(init).is_file():
        raise ValueError(f"UGS init: no checkpoint file at {init!r}")
    return {"init_sha256": _io.sha256_file(init)}


def load_ugs_round(run_dir: Any, round_idx: int | None = None) -> dict[str, Any]:
    """Deprecated: ``sparselth.ticket.load_round(run_dir, k)`` gives the ticket itself.

    Ticket parts of a finished round of a UGS run directory (checksums verified; default:
    the last finished round): ``{"masks", "trained_state", "init_state", "metadata"}``."""
    warnings.warn("sparselth.prune.load_ugs_round is deprecated; use "
                  "sparselth.ticket.load_round(run_dir, round) (or Ticket.from_run)",
                  DeprecationWarning, stacklevel=2)
    return ticket_parts(run_dir, round_idx)
