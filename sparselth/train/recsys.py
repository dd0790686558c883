"""Training and lottery-ticket search for embedding recommenders (MF, LightGCN).

Training (:func:`train_bpr`, LTH-MRS/LightGCN protocol): BPR triples from
:class:`~sparselth.data.BPRSampler` (as many per epoch as training pairs), Adam (lr 1e-3,
no weight decay), batch 2048, BPR loss with ``reg`` 1e-4 on the ego embeddings. After every
``eval_every`` epochs the model is ranked on the **validation** split (training items
excluded) and the state with the best validation Recall@20 is kept; training stops after
``patience`` evaluations without a new best. The references select on the *test* split
instead; ``select_on="test"`` reproduces that, and every record says which was used.

Ticket search (:func:`find_recsys_ticket`): :class:`sparselth.prune.IMP` on the table
``embedding.weight`` with the paper's schedule: round 0 trains the dense model; after each
round ``fraction`` of the surviving entries are pruned by one global threshold on
``|W * M|`` (users and items together: LTH-MRS ``--part join``), the survivors are rewound
to θ0 and trained again. ``granularity="row"`` prunes whole user/item rows by their L2 norm;
``strategy="random"`` is the random-pruning baseline (same schedule, random survivors).
Each round records Recall/NDCG/Precision@{10,20} on test at the selected epoch, the
sparsity, the bytes of the table dense and stored as a
:class:`sparselth.nn.CompressedEmbedding`, lookup latency (batch 4096, dense vs compressed,
timed interleaved with :func:`sparselth.utils.timing.measure`) and full-ranking latency
(test evaluation: propagation, scores, top-K). The run folder is a
:class:`sparselth.prune.run.RunDir` of kind ``"recsys"`` (headline metric ``recall@20``);
its rounds become tickets with ``sparselth.ticket.load_round(run_dir, r)``.

Example::

    >>> data = load_lastfm("datasets").with_validation(0.1, seed=0)
    >>> out = find_recsys_ticket("lightgcn", data, rounds=12, fraction=0.2,
    ...                          train=BPRConfig(epochs=200, patience=10),
    ...                          run_dir="runs/lth-lightgcn-lastfm")
    >>> out["records"][-1]["recall@20"], out["records"][-1]["fraction_kept"]
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.recsys import BPRSampler, Interactions
from ..metrics.cost import embedding_bytes
from ..metrics.ranking import ranking_metrics
from ..models.recsys import MF, build_recsys_model
from ..nn import CompressedEmbedding
from ..prune import IMP, IMPConfig
from ..prune.run import Config, help_field
from ..prune.strategies import row_norm_strategy
from ..utils.timing import measure, stopwatch

__all__ = [
    "BPRConfig",
    "BPRResult",
    "embedding_bytes",
    "evaluate_ranking",
    "find_recsys_ticket",
    "largest_sparsity_within",
    "lookup_latency",
    "row_norm_strategy",
    "train_bpr",
]


@dataclass(frozen=True)
class BPRConfig(Config):
    """BPR training hyperparameters (defaults: LTH-MRS / LightGCN)."""

    run_prefix = "bpr"

    lr: float = help_field("Adam learning rate", 1e-3)
    batch_size: int = help_field("BPR triples per step", 2048)
    epochs: int = help_field("maximum number of epochs", 1000)
    patience: int = help_field(
        "stop after this many evaluations without a better selection metric", 100)
    eval_every: int = help_field("evaluate every this many epochs", 1)
    reg: float = help_field("L2 weight on the ego embeddings of a batch (BPR regulariser)", 1e-4)
    select_on: str = help_field(
        "'val' (validation split; default), 'test' (the references' choice) or 'last'", "val"
    )
    metric: str = help_field("selection metric", "recall@20")
    ks: tuple[int, ...] = help_field("cut-offs reported", (10, 20))
    seed: int = help_field(
        "seed of the BPR sampler (the same samples every round, as in LTH-MRS)", 2020)
    max_scores: int = help_field(
        "scores held at once during full ranking (user batching)", 1 << 24)

    def __post_init__(self) -> None:
        if self.select_on not in ("val", "test", "last"):
            raise ValueError(
                f"BPRConfig: select_on must be 'val', 'test' or 'last', got {self.select_on!r}"
            )
        for name in ("batch_size", "epochs", "eval_every", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"BPRConfig: {name} must be a positive int, got {v!r}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))


@dataclass
class BPRResult:
    """What :func:`train_bpr` did: per-evaluation history, the selected epoch and timing."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: float
    epochs_run: int
    seconds: float
    stopped_early: bool
    select_on: str


# --------------------------------------------------------------------------- evaluation


def evaluate_ranking(
    model: MF,
    data: Interactions,
    split: str = "test",
    ks: Sequence[int] = (10, 20),
    max_scores: int = 1 << 24,
) -> dict[str, float]:
    """Recall/Precision/NDCG@K by full ranking on ``split`` (``"test"`` or ``"val"``).
    Excluded from the ranking: training items, plus validation items for ``"test"``."""
    if split == "test":
        truth, exclude = data.test_csr, [data.train_csr, data.val_csr]
    elif split == "val":
        if data.val is None:
            raise ValueError("evaluate_ranking: split='val' but the data has no validation split "
                             "(use Interactions.with_validation)")
        truth, exclude = data.val_csr, [data.train_csr]
    else:
        raise ValueError(f"evaluate_ranking: split must be 'test' or 'val', got {split!r}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            users, items = model.all_embeddings()
            return ranking_metrics(users, items, truth, exclude, ks, max_scores=max_scores)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- training


def train_bpr(
    model: MF,
    data: Interactions,
    config: BPRConfig | None = None,
    *,
    progress: bool = True,
    desc: str = "epochs",
) -> BPRResult:
    """Train ``model`` with BPR on ``data.train`` and leave it at the selected state.

    Build no optimizer beforehand: Adam is created here, after any masks were installed, so
    pruned entries (zero gradient, zero Adam state) stay exactly zero.
    """
    from tqdm.auto import tqdm

    cfg = config or BPRConfig()
    if cfg.select_on == "val" and data.val is None:
        raise ValueError(
            "train_bpr: select_on='val' needs a validation split "
            "(data.with_validation(0.1)); or pass BPRConfig(select_on='test'|'last')"
        )
    sampler = BPRSampler(data.train_csr, seed=cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict[str, Any]] = []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_metric, best_epoch, bad = -math.inf, 0, 0
    stopped = False
    elapsed = stopwatch()
    model.train()
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, leave=False, disable=not progress)
    epoch = 0
    for epoch in bar:
        epoch_time = stopwatch()
        total, n = 0.0, 0
        for users, pos, neg in sampler.epoch(cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            loss = model.bpr_loss(users, pos, neg, reg=cfg.reg)
            loss.backward()
            opt.step()
            total += loss.detach().item() * users.numel()
            n += users.numel()
        rec: dict[str, Any] = {"epoch": epoch, "loss": total / max(n, 1),
                               "train_s": epoch_time()}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            if cfg.select_on == "last":
                value = float(epoch)
            else:
                eval_time = stopwatch()
                m = evaluate_ranking(model, data, cfg.select_on, cfg.ks, cfg.max_scores)
                rec["eval_s"] = eval_time()
                rec.update({f"{cfg.select_on}_{k}": v for k, v in m.items() if k != "users"})
                value = m[cfg.metric]
            if value > best_metric:
                best_metric, best_epoch, bad = value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            bar.set_postfix(loss=f"{rec['loss']:.4f}", best=f"{best_metric:.4f}@{best_epoch}")
        history.append(rec)
        if bad >= cfg.patience:
            stopped = True
            break
    bar.close()
    model.load_state_dict(best_state)
    return BPRResult(
        history=history,
        best_epoch=best_epoch,
        best_metric=best_metric if cfg.select_on != "last" else math.nan,
        epochs_run=epoch,
        seconds=elapsed(),
        stopped_early=stopped,
        select_on=cfg.select_on,
    )


# --------------------------------------------------------------------------- bytes and latency


def lookup_latency(
    weight: Tensor, mask: Tensor | None, batch: int = 4096, reps: int = 15, seed: int = 0
) -> dict[str, Any]:
    """Milliseconds to gather ``batch`` random rows: dense (``F.embedding`` on ``W * M``)
    and compressed (``CompressedEmbedding`` forward, checked equal first), timed
    interleaved (:func:`sparselth.utils.timing.measure`, ``reps`` samples each); the median
    on the headline clock (``lookup_clock``: CPU time with one thread, else wall time)."""
    w = weight.detach()
    m = None if mask is None else mask.detach()
    table = w if m is None else w * m.to(w.dtype)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(w.shape[0], (batch,), generator=g).to(w.device)
    with torch.no_grad():
        full = torch.ones_like(w, dtype=torch.bool) if m is None else m.bool()
        comp = CompressedEmbedding.from_masked(w, full)
        if not torch.equal(comp(ids), F.embedding(ids, table)):
            raise RuntimeError("lookup_latency: compressed lookup differs from the dense one")
        timed = measure({"dense": lambda: F.embedding(ids, table), "compressed": lambda: comp(ids)},
                        warmup=3, min_reps=reps, max_reps=reps, device=w.device)
    return {"lookup_batch": batch, "lookup_ms_dense": timed.ms("dense"),
            "lookup_ms_compressed": timed.ms("compressed"), "lookup_clock": timed.clock}


# --------------------------------------------------------------------------- ticket search


class _RoundRunner:
    """``IMP`` training protocol: ``train`` = :func:`train_bpr`, ``evaluate`` = ranking
    metrics (test at the selected epoch, and validation), ``measure`` = bytes, latencies
    and training facts."""

    def __init__(self, data: Interactions, cfg: BPRConfig, progress: bool,
                 measure_latency: bool):
        self.data, self.cfg, self.progress, self.measure_latency = (
            data, cfg, progress, measure_latency)
        self.last: BPRResult | None = None
        self.facts: dict[str, Any] = {}

    def train(self, model: MF, round_idx: int) -> None:
        self.last = train_bpr(model, self.data, self.cfg, progress=self.progress,
                              desc=f"round {round_idx}")

    def evaluate(self, model: MF) -> dict[str, Any]:
        rank_time = stopwatch()
        test = evaluate_ranking(model, self.data, "test", self.cfg.ks, self.cfg.max_scores)
        self.facts = {"test_users": test["users"], "rank_ms": 1e3 * rank_time()}
        out: dict[str, Any] = {k: v for k, v in test.items() if k != "users"}
        if self.data.val is not None:
            val = evaluate_ranking(model, self.data, "val", self.cfg.ks, self.cfg.max_scores)
            out.update({f"val_{k}": v for k, v in val.items() if k != "users"})
        return out

    def measure(self, round_idx: int, model: MF) -> dict[str, Any]:
        out = dict(self.facts)
        w, mask = model.embedding.weight, model.embedding_mask()
        out.update(embedding_bytes(w, mask))
        if self.measure_latency:
            out.update(lookup_latency(w, mask))
        tr = self.last
        if tr is not None:
            out.update({
                "best_epoch": tr.best_epoch,
                "epochs_run": tr.epochs_run,
                "stopped_early": tr.stopped_early,
                "train_seconds": tr.seconds,
                "select_on": tr.select_on,
                "epoch_seconds": statistics.median([h["train_s"] for h in tr.history]),
            })
        return out


# keys of an IMP record that the flat recommender records leave out
_IMP_ONLY = ("metrics", "sparsity_per_layer", "zeros", "total", "remaining", "macs",
             "macs_dense", "rewind", "rewind_step", "wall_time_s")


def _flatten(rec: Mapping[str, Any], total: int) -> dict[str, Any]:
    m = dict(rec["metrics"])
    kept = total - int(rec["zeros"])
    out = {
        "round": rec["round"],
        "sparsity": rec["sparsity"],
        "fraction_kept": kept / total if total else 0.0,
        "params_kept": kept,
        "params_total": total,
    }
    for k in ("recall@20", "ndcg@20", "recall@10", "ndcg@10", "precision@20", "precision@10"):
        out[k] = m.pop(k, None)
    out.update(m)
    out.update({k: v for k, v in rec.items() if k not in _IMP_ONLY and k not in out})
    out["seconds"] = rec.get("wall_time_s")
    return out


def find_recsys_ticket(
    model: str | MF,
    data: Interactions,
    *,
    rounds: int = 12,
    fraction: float = 0.2,
    granularity: str = "element",
    strategy: str = "magnitude",
    train: BPRConfig | None = None,
    dim: int = 32,
    layers: int = 3,
    seed: int = 2020,
    run_dir: Any = None,
    measure_latency: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """IMP on the embedding table of a recommender (see the module docstring).

    Args:
        model: ``"mf"``/``"lightgcn"`` (built here after ``torch.manual_seed(seed)``, so θ0
            is reproducible), or a built model at its initial weights.
        data: interactions with a validation split (unless ``train.select_on != "val"``).
        rounds: pruning rounds R (R + 1 trainings; round 0 is dense).
        fraction: fraction of the surviving entries pruned after each round; ``(1 -
            fraction)^r`` of the table remains in round r (LTH-MRS: 0.1).
        granularity: ``"element"`` or ``"row"`` (whole user/item rows by L2 norm).
        strategy: ``"magnitude"`` or ``"random"`` (baseline).
        run_dir: the run folder (kind ``"recsys"``, resumable: the same arguments resume or,
            with a larger ``rounds``, extend the run; other settings are refused); default:
            a temporary folder.

    Returns:
        ``{"records": [...], "config": {...}, "run_dir": str, "model": str}``; a record has
        ``round, sparsity, fraction_kept, params_kept, recall@20, ndcg@20, recall@10,
        ndcg@10, precision@K, val_*, bytes_dense, bytes_stored, bytes_format, rank_ms,
        lookup_ms_dense, lookup_ms_compressed, best_epoch, epochs_run, train_seconds,
        epoch_seconds, seconds``.
    """
    fn = "find_recsys_ticket"
    if granularity not in ("element", "row"):
        raise ValueError(f"{fn}: granularity must be 'element' or 'row', got {granularity!r}")
    if strategy not in ("magnitude", "random"):
        raise ValueError(f"{fn}: strategy must be 'magnitude' or 'random', got {strategy!r}")
    cfg = train or BPRConfig()
    if isinstance(model, str):
        name = model.lower()
        torch.manual_seed(seed)
        net = build_recsys_model(name, data, dim=dim, layers=layers)
    elif isinstance(model, MF):
        net, name = model, type(model).__name__.lower()
    else:
        raise TypeError(f"{fn}: model must be 'mf', 'lightgcn' or an MF/LightGCN module")
    strat = {("magnitude", "element"): "magnitude", ("random", "element"): "random",
             ("magnitude", "row"): "embedding_row_norm",
             ("random", "row"): "embedding_random_row"}[
        (strategy, granularity)]
    imp_cfg = IMPConfig(rounds=rounds, fraction=fraction, strategy=strat, scope="global",
                        granularity=granularity, include=("embedding.weight",), rewind="init",
                        seed=seed)
    tmp = None
    if run_dir is None:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="sparselth-lth-")
        run_dir = tmp.name
    runner = _RoundRunner(data, cfg, progress, measure_latency)
    try:
        settings = {"model": name, "dim": net.dim, "layers": getattr(net, "layers", None),
                    "train": cfg.to_dict()}
        imp = IMP(net, runner, config=imp_cfg, run_dir=run_dir, progress=progress,
                  kind="recsys", metric=cfg.metric, settings=settings)
        raw = imp.run()
        total = imp.masks.numel()
        records = [_flatten(r, total) for r in raw]
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "model": name,
        "records": records,
        "config": {"imp": imp_cfg.to_dict(), "train": cfg.to_dict(), "dim": dim,
                   "layers": layers if name == "lightgcn" else None, "seed": seed,
                   "granularity": granularity, "strategy": strategy},
        "run_dir": None if tmp is not None else str(Path(run_dir)),
        "data": data.summary(),
    }


def largest_sparsity_within(
    records: Sequence[Mapping[str, Any]],
    dense: Mapping[str, Any],
    metric: str = "recall@20",
    tolerance: float = 0.02,
) -> Mapping[str, Any] | None:
    """The record with the largest sparsity whose ``metric`` is at least
    ``(1 - tolerance) * dense[metric]`` (within ``tolerance`` relative of dense), or None."""
    ref = dense[metric]
    ok = [r for r in records if r.get(metric) is not None and r[metric] >= (1 - tolerance) * ref]
    return max(ok, key=lambda r: r["sparsity"]) if ok else None
