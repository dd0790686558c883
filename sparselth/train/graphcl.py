"""GraphCL pre-training and the unsupervised TU evaluation (You et al. 2020, ``unsupervised_TU``):
contrastive pre-training of :class:`~sparselth.models.GraphCLGIN`, then an RBF SVM on the
frozen graph embeddings.

- :func:`svm_evaluate`: outer stratified K-fold CV (default 10), inside each training fold C is
  chosen from ``C_GRID`` by an inner 5-fold grid search (scikit-learn ``SVC`` with an RBF
  kernel, ``GridSearchCV``), as the reference's ``evaluate_embedding.svc_classify``; the outer
  split is seeded (the reference's is not).
- :class:`GraphCLConfig` / :class:`GraphCLPretrain`: the pre-training run (Adam, NT-Xent,
  augmented views), one round of a run folder (:class:`sparselth.prune.run.RunDir`, kind
  ``"graphcl"``) per epoch: round 0 evaluates the untrained encoder, round ``e`` trains epoch
  ``e``. The encoder and the optimiser state are saved after every epoch, so an interrupted
  run resumes at the first unfinished epoch. Evaluated epochs: 0, every ``eval_every``-th and
  the last.

Each epoch draws its shuffling and augmentations from a generator seeded by ``(seed, epoch)``,
so a resumed run repeats exactly what an uninterrupted one does.

Example::

    >>> ds = load_tu("MUTAG", "datasets")
    >>> run = GraphCLPretrain(ds, GraphCLConfig(dataset="MUTAG", seed=0), root="runs/graphcl")
    >>> records = run.run()            # records[-1]["metrics"]["svm_acc"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.batching import GraphLoader
from ..models.graphcl import GraphCLGIN
from ..pretrain.augment import AUGMENTATIONS, AugmentConfig, graphcl_views
from ..pretrain.loss import nt_xent
from ..prune.run import Config, RunDir, default_run_dir, help_field, loop_rounds, seed_everything
from ..utils.timing import stopwatch

__all__ = ["C_GRID", "GraphCLConfig", "GraphCLPretrain", "svm_evaluate", "embed_dataset",
           "parse_aug", "restore_epoch"]

#: the SVM's C values of the reference grid search
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
_AUG_CONFIGS = ("unsupervised_TU", "paper")


def _positive_int(fn: str, name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def svm_evaluate(embeddings: Any, labels: Any, *, folds: int = 10, inner_folds: int = 5,
                 cs: Sequence[float] = C_GRID, seed: Optional[int] = 0) -> Dict[str, Any]:
    """Test accuracy of an RBF ``SVC`` on ``embeddings`` (``(n, d)``) with ``labels`` (``(n,)``)
    by stratified ``folds``-fold CV, C picked per training fold by ``inner_folds``-fold grid
    search over ``cs``. Returns ``{"acc", "acc_std"`` (over folds), ``"val_acc"`` (mean over
    folds of the inner CV accuracy of the chosen C: a validation number that never sees the
    test fold), ``"fold_acc", "fold_val_acc", "fold_c"}`` (accuracies as fractions)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    fn = "svm_evaluate"
    x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) \
        else np.asarray(embeddings)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{fn}: embeddings must be a numeric 2-D array (n, d), got shape "
                         f"{tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: labels must be 1-D with one entry per embedding row, got shape "
                         f"{tuple(y.shape)} for {x.shape[0]} rows")
    if not np.isfinite(x).all():
        raise ValueError(f"{fn}: embeddings contain NaN or infinite values")
    folds = _positive_int(fn, "folds", folds, 2)
    inner_folds = _positive_int(fn, "inner_folds", inner_folds, 2)
    cs = tuple(cs)
    if not cs or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0
                     for c in cs):
        raise ValueError(f"{fn}: cs must be a non-empty sequence of positive numbers, got {cs!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{fn}: seed must be an int or None, got {seed!r}")
    _, counts = np.unique(y, return_counts=True)
    if counts.size < 2 or counts.min() < folds:
        raise ValueError(f"{fn}: folds={folds} needs at least 2 classes with >= {folds} "
                         f"members each, got class sizes {counts.tolist()}")
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accs, vals, best = [], [], []
    for train, test in outer.split(x, y):
        search = GridSearchCV(SVC(kernel="rbf"), {"C": list(cs)}, cv=inner_folds,
                              scoring="accuracy")
        search.fit(x[train], y[train])
        accs.append(float((search.predict(x[test]) == y[test]).mean()))
        vals.append(float(search.best_score_))
        best.append(float(search.best_params_["C"]))
    return {"acc": float(np.mean(accs)), "acc_std": float(np.std(accs)),
            "val_acc": float(np.mean(vals)), "fold_acc": accs, "fold_val_acc": vals,
            "fold_c": best}


@torch.no_grad()
def embed_dataset(model: GraphCLGIN, data: Any, batch_size: int = 512) -> torch.Tensor:
    """``(n, d)`` embeddings of every graph of ``data`` (un-augmented, eval mode)."""
    was = model.training
    model.eval()
    try:
        parts = [model.embed(b) for b in GraphLoader(data, batch_size=batch_size)]
    finally:
        model.train(was)
    return torch.cat(parts)


def parse_aug(aug: str) -> tuple:
    """``"random4"`` -> ``(None, "random4")`` (the first view set by the augmentation config),
    ``"dnodes+subgraph"`` -> ``("dnodes", "subgraph")`` (a named pair: both views augmented)."""
    if not isinstance(aug, str) or not aug:
        raise ValueError(f"GraphCL: aug must be an augmentation name or 'a+b', got {aug!r}")
    parts = aug.split("+")
    if len(parts) > 2 or any(p not in AUGMENTATIONS for p in parts):
        raise ValueError(f"GraphCL: aug must be one of {AUGMENTATIONS} or a pair 'a+b' of them, "
                         f"got {aug!r}")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


@dataclass(frozen=True)
class GraphCLConfig(Config):
    """Hyperparameters of one GraphCL pre-training run (defaults: the reference's unsupervised
    TU command, ``gsimclr.py --lr 0.01 --num-gc-layers 3 --aug random4``, and its SVM)."""

    run_prefix: ClassVar[str] = "graphcl"

    dataset: str = help_field("dataset name (recorded; the data is passed to the driver)", "")
    seed: int = help_field("seed of the weights, shuffling, augmentations and SVM folds", 0)
    epochs: int = help_field("pre-training epochs", 20)
    batch_size: int = help_field("graphs per mini-batch", 128)
    lr: float = help_field("Adam learning rate", 0.01)
    temperature: float = help_field("NT-Xent temperature (0.2: unsupervised TU code)", 0.2)
    loss: str = help_field("NT-Xent variant: 'reference' (view-1 anchors) or 'symmetric'",
                           "reference")
    aug: str = help_field("augmentation of the second view ('random4', 'dnodes', ...) or a "
                          "named pair 'a+b' (both views augmented)", "random4")
    aug_config: str = help_field("'unsupervised_TU' (the reference code's ratios and variants, "
                                 "original first view) or 'paper' (AugmentConfig defaults)",
                                 "unsupervised_TU")
    hidden: int = help_field("GIN hidden width", 32)
    layers: int = help_field("GIN layers", 3)
    eval_every: int = help_field("evaluate every this many epochs (and epoch 0 and the last)",
                                 10)
    folds: int = help_field("outer stratified CV folds of the SVM", 10)
    inner_folds: int = help_field("inner grid-search folds choosing C", 5)

    def __post_init__(self):
        fn = "GraphCLConfig"
        for name in ("epochs", "batch_size", "hidden", "layers", "eval_every"):
            _positive_int(fn, name, getattr(self, name))
        _positive_int(fn, "folds", self.folds, 2)
        _positive_int(fn, "inner_folds", self.inner_folds, 2)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{fn}: seed must be an int, got {self.seed!r}")
        for name in ("lr", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{fn}: {name} must be a positive number, got {v!r}")
        if self.loss not in ("reference", "symmetric"):
            raise ValueError(f"{fn}: loss must be 'reference' or 'symmetric', got {self.loss!r}")
        if self.aug_config not in _AUG_CONFIGS:
            raise ValueError(f"{fn}: aug_config must be one of {_AUG_CONFIGS}, got "
                             f"{self.aug_config!r}")
        if not isinstance(self.dataset, str):
            raise ValueError(f"{fn}: dataset must be a str, got {self.dataset!r}")
        parse_aug(self.aug)

    def augment_config(self) -> AugmentConfig:
        """The :class:`AugmentConfig` of the run (a named pair augments both views)."""
        cfg = AugmentConfig.reference("unsupervised_TU") if self.aug_config == "unsupervised_TU" \
            else AugmentConfig()
        first, _ = parse_aug(self.aug)
        return cfg.with_(original_first=first is None and cfg.original_first)

    def evaluated(self, epoch: int) -> bool:
        """Whether ``epoch`` is evaluated: 0, multiples of ``eval_every`` and the last."""
        return epoch == 0 or epoch == self.epochs or epoch % self.eval_every == 0


def _optimizer_tensors(opt: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{i}.{k}"] = v.detach().clone() if isinstance(v, torch.Tensor) \
                else torch.tensor(float(v))
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor]) -> None:
    state: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def restore_epoch(folder: RunDir, prog: Dict[str, Any], model: torch.nn.Module,
                  opt: torch.optim.Optimizer) -> int:
    """Load the encoder, the optimiser and the RNG state after the last finished epoch of a
    resumed pre-training folder (files ``round_XXX/{encoder,optimizer}.safetensors``); returns
    the next epoch."""
    nxt = int(prog["next_round"])
    if nxt > 0:
        last = f"round_{nxt - 1:03d}"
        model.load_state_dict(folder.load(f"{last}/encoder.safetensors"))
        state = folder.load(f"{last}/optimizer.safetensors")
        if state:
            _load_optimizer(opt, state)
        folder.restore_rng(prog)
    return nxt


class GraphCLPretrain:
    """One GraphCL pre-training run on ``dataset`` (a :class:`~sparselth.data.GraphDataset` or
    :class:`~sparselth.sparse.GraphBatch` with labels), resumable in ``run_dir`` (default
    ``root / config.run_name()``). :meth:`run` returns one record per epoch 0..epochs with the
    run folder's common keys plus ``epoch``, ``loss`` (mean NT-Xent of the epoch),
    ``evaluated`` and, when evaluated, ``fold_acc``/``fold_c`` and ``metrics["svm_acc"]``,
    ``metrics["svm_acc_std"]`` (std over folds), ``metrics["svm_val_acc"]`` (inner-CV
    accuracy, for choosing an epoch without the test folds)."""

    def __init__(self, dataset: Any, config: GraphCLConfig, *, run_dir: Any = None,
                 root: Any = None, progress: bool = True):
        fn = "GraphCLPretrain"
        if not isinstance(config, GraphCLConfig):
            raise TypeError(f"{fn}: config must be a GraphCLConfig, got {type(config).__name__}")
        data = getattr(dataset, "data", dataset)
        if not hasattr(data, "num_graphs") or getattr(data, "y", None) is None:
            raise TypeError(f"{fn}: dataset must be a GraphDataset or a labelled GraphBatch, got "
                            f"{type(dataset).__name__}")
        if data.num_graphs < 2:
            raise ValueError(f"{fn}: dataset needs at least 2 graphs, got {data.num_graphs}")
        if run_dir is None and root is None:
            raise ValueError(f"{fn}: pass run_dir= or root= (the run folder)")
        self.data, self.config, self.progress = data, config, bool(progress)
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, config)
        self.folder = RunDir(self.run_dir, "graphcl", "GraphCL")
        self.aug_config = config.augment_config()
        self.aug1, self.aug2 = parse_aug(config.aug)
        self.records: List[Dict[str, Any]] = []
        self.settings = {"num_graphs": int(data.num_graphs),
                         "num_features": int(data.num_features)}

    def _build(self) -> None:
        seed_everything(self.config.seed)
        c = self.config
        self.model = GraphCLGIN(self.data.num_features, hidden=c.hidden, num_layers=c.layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr)

    def _start(self) -> int:
        self._build()
        prog = self.folder.resume(self.config, self.settings)
        if prog is None:
            self.folder.create(self.config, self.settings)
            self.folder.save("init.safetensors", self.model.state_dict())
            return 0
        self.records = list(prog["records"])
        return restore_epoch(self.folder, prog, self.model, self.opt)

    def _epoch(self, epoch: int) -> float:
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
        self.model.train()
        losses = []
        for batch in GraphLoader(self.data, batch_size=c.batch_size, shuffle=True,
                                 generator=gen):
            if batch.num_graphs < 2:  # NT-Xent needs a negative
                continue
            aug1 = self.aug1 if self.aug1 is not None else self.aug2
            v1, v2 = graphcl_views(batch, aug1, self.aug2, self.aug_config, generator=gen)
            loss = nt_xent(self.model(v1), self.model(v2), c.temperature, c.loss)
            if not torch.isfinite(loss):  # stop before the weights are spoiled
                raise FloatingPointError(f"GraphCL: non-finite NT-Xent loss in epoch {epoch}")
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")

    def _run_round(self, epoch: int) -> Dict[str, Any]:
        c = self.config
        clock = stopwatch()
        loss = self._epoch(epoch) if epoch > 0 else None
        train_s = clock()
        rec: Dict[str, Any] = {
            "round": epoch, "epoch": epoch, "weight_sparsity": 0.0, "graph_sparsity": None,
            "metric": "svm_acc", "metrics": {}, "macs": None, "loss": loss,
            "evaluated": c.evaluated(epoch), "train_seconds": train_s}
        if rec["evaluated"]:
            emb = embed_dataset(self.model, self.data)
            ev = svm_evaluate(emb, self.data.y, folds=c.folds, inner_folds=c.inner_folds,
                              seed=c.seed)
            rec["metrics"] = {"svm_acc": ev["acc"], "svm_acc_std": ev["acc_std"],
                              "svm_val_acc": ev["val_acc"]}
            rec["fold_acc"], rec["fold_c"] = ev["fold_acc"], ev["fold_c"]
            rec["fold_val_acc"] = ev["fold_val_acc"]
        rec["seconds"] = clock()
        d = f"round_{epoch:03d}"
        self.folder.save(f"{d}/encoder.safetensors", self.model.state_dict())
        self.folder.save(f"{d}/optimizer.safetensors", _optimizer_tensors(self.opt))
        self.records.append(rec)
        self.folder.commit(epoch + 1, self.records, f"{d}/rng.safetensors")
        return rec

    def run(self) -> List[Dict[str, Any]]:
        """Run (or resume) epochs 0..epochs; the records of every epoch."""
        start = self._start()

        def postfix(rec: Dict[str, Any]) -> Dict[str, str]:
            out = {} if rec["loss"] is None else {"loss": f"{rec['loss']:.3f}"}
            if rec["metrics"]:
                out["svm_acc"] = f"{100 * rec['metrics']['svm_acc']:.2f}%"
            return out

        loop_rounds(f"GraphCL {self.config.dataset or ''} seed {self.config.seed}".strip(),
                    start, self.config.epochs, self._run_round, postfix, self.progress)
        return list(self.records)

    def encoder_state(self) -> Dict[str, torch.Tensor]:
        """The pre-trained encoder's weights (projection head included)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
