"""GraphCL's semi-supervised TU protocol (You et al. 2020, ``semisupervised_TU``): contrastive
pre-training of :class:`~sparselth.models.ResGCN` on the whole dataset, then fine-tuning of the
whole network on a small labelled part of every training fold.

- :class:`SemiPretrainConfig` / :class:`SemiPretrain`: Adam, NT-Xent (view-1 anchors,
  temperature 0.5, the reference's ``loss_cl``) on two augmented views of every graph (both
  views augmented, :meth:`AugmentConfig.reference` ``"semisupervised_TU"``: ratio 0.2, edges
  removed *and* added, mean-feature masks, the one-hop subgraph). A run folder
  (:class:`sparselth.prune.run.RunDir`, kind ``"graphcl"``) holds one round per epoch (round 0:
  the initial weights); the weights are kept for every ``save_every``-th epoch (the reference's
  checkpoints 20, 40, ...) and the last, the optimiser state only for the last finished epoch,
  so an interrupted run resumes where it stopped.
- :func:`semi_supervised_splits`: the reference's ``k_fold`` with ``epoch_select=test_max``:
  ``StratifiedKFold(folds, shuffle=True, random_state=split_seed)`` test folds, the training
  fold the rest, and the labelled set the first part of a ``StratifiedKFold(semi_split)`` of
  the training fold (so ``semi_split=10`` labels ~10 % of it, ``100`` ~1 %).
- :class:`SemiFinetuneConfig` / :class:`SemiFinetune`: per fold, a fresh ResGCN (from a
  pre-trained state or from its random initialisation) trained with Adam on the labelled set
  (NLL of the log-softmax), the test accuracy of the fold recorded after every epoch (eval
  mode). One round per fold in a run folder.
- :func:`select_epoch`: the two ways to turn the ``(folds, epochs)`` test accuracies into one
  number: ``"test_max"`` (the reference: the epoch whose mean test accuracy over folds is
  highest, the same epoch for every fold; it looks at the test folds, so it is optimistic) and
  ``"last"`` (the last epoch, fixed in advance).

Every epoch draws its shuffling and augmentations from a generator seeded by the run's seed
and the epoch (and fold), so a resumed run repeats what an uninterrupted one does.

Example::

    >>> ds = with_degree_features(load_tu("PROTEINS", "datasets", use_node_attr=True))
    >>> pre = SemiPretrain(ds, SemiPretrainConfig(dataset="PROTEINS", epochs=20), root="runs")
    >>> pre.run()
    >>> ft = SemiFinetune(ds, SemiFinetuneConfig(dataset="PROTEINS", semi_split=10),
    ...                   init_state=pre.checkpoint(20), root="runs")
    >>> acc = ft.accuracies()          # (folds, epochs) test accuracies
    >>> select_epoch(acc, "test_max")["acc"], select_epoch(acc, "last")["acc"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batching import GraphLoader
from ..models.resgcn import ResGCN
from ..pretrain.augment import AUGMENTATIONS, AugmentConfig, graphcl_views
from ..pretrain.loss import nt_xent
from ..prune.run import Config, RunDir, default_run_dir, help_field, loop_rounds, seed_everything
from ..utils.timing import stopwatch
from .graphcl import _optimizer_tensors, _positive_int, restore_epoch

__all__ = ["SemiPretrainConfig", "SemiPretrain", "SemiFinetuneConfig", "SemiFinetune",
           "semi_supervised_splits", "select_epoch", "SELECTIONS"]

#: the epoch-selection rules of :func:`select_epoch`
SELECTIONS = ("test_max", "last")


def _labelled_data(fn: str, dataset: Any):
    data = getattr(dataset, "data", dataset)
    if not hasattr(data, "num_graphs") or getattr(data, "y", None) is None:
        raise TypeError(f"{fn}: dataset must be a GraphDataset or a labelled GraphBatch, got "
                        f"{type(dataset).__name__}")
    if data.num_graphs < 2:
        raise ValueError(f"{fn}: dataset needs at least 2 graphs, got {data.num_graphs}")
    return data


def _positive_float(fn: str, name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError(f"{fn}: {name} must be a positive number, got {v!r}")


def _int(fn: str, name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{fn}: {name} must be an int, got {v!r}")


@dataclass(frozen=True)
class SemiPretrainConfig(Config):
    """Hyperparameters of one GraphCL pre-training run of ResGCN (defaults: the reference's
    ``pre-training/main.py`` with the README's sampled augmentations, ``--aug1 random2 --aug2
    random2 --lr 0.001``)."""

    run_prefix: ClassVar[str] = "graphcl_semi"

    dataset: str = help_field("dataset name (recorded; the data is passed to the driver)", "")
    seed: int = help_field("seed of the weights, shuffling and augmentations", 0)
    epochs: int = help_field("pre-training epochs", 100)
    batch_size: int = help_field("graphs per mini-batch", 128)
    lr: float = help_field("Adam learning rate", 0.001)
    temperature: float = help_field("NT-Xent temperature (0.5: the semi-supervised TU code)", 0.5)
    aug1: str = help_field("augmentation of the first view", "random2")
    aug2: str = help_field("augmentation of the second view", "random2")
    aug_ratio: float = help_field("ratio of every augmentation", 0.2)
    hidden: int = help_field("ResGCN hidden width", 128)
    save_every: int = help_field("keep the weights of every this many epochs (and the last)", 20)

    def __post_init__(self):
        fn = "SemiPretrainConfig"
        for name in ("epochs", "batch_size", "hidden", "save_every"):
            _positive_int(fn, name, getattr(self, name))
        _int(fn, "seed", self.seed)
        for name in ("lr", "temperature"):
            _positive_float(fn, name, getattr(self, name))
        for name in ("aug1", "aug2"):
            if getattr(self, name) not in AUGMENTATIONS:
                raise ValueError(f"{fn}: {name} must be one of {AUGMENTATIONS}, got "
                                 f"{getattr(self, name)!r}")
        if isinstance(self.aug_ratio, bool) or not isinstance(self.aug_ratio, (int, float)) or \
                not 0 <= self.aug_ratio < 1:
            raise ValueError(f"{fn}: aug_ratio must be in [0, 1), got {self.aug_ratio!r}")
        if not isinstance(self.dataset, str):
            raise ValueError(f"{fn}: dataset must be a str, got {self.dataset!r}")

    def augment_config(self) -> AugmentConfig:
        """The semi-supervised TU code's augmentation settings at ``aug_ratio``."""
        return AugmentConfig.reference("semisupervised_TU").with_(ratio=float(self.aug_ratio))

    def kept(self, epoch: int) -> bool:
        """Whether the weights of ``epoch`` are kept: 0, multiples of ``save_every``, last."""
        return epoch == 0 or epoch == self.epochs or epoch % self.save_every == 0


class SemiPretrain:
    """One GraphCL pre-training run of :class:`ResGCN` on ``dataset`` (a
    :class:`~sparselth.data.GraphDataset` or labelled :class:`GraphBatch` with its final node
    features, e.g. :func:`~sparselth.data.with_degree_features`), resumable in ``run_dir``
    (default ``root / config.run_name()``). :meth:`run` returns one record per epoch
    0..epochs with ``epoch``, ``loss`` (mean NT-Xent) and ``seconds``; :meth:`checkpoint`
    gives the weights of a kept epoch."""

    def __init__(self, dataset: Any, config: SemiPretrainConfig, *, run_dir: Any = None,
                 root: Any = None, progress: bool = True):
        fn = "SemiPretrain"
        if not isinstance(config, SemiPretrainConfig):
            raise TypeError(f"{fn}: config must be a SemiPretrainConfig, got "
                            f"{type(config).__name__}")
        data = _labelled_data(fn, dataset)
        if run_dir is None and root is None:
            raise ValueError(f"{fn}: pass run_dir= or root= (the run folder)")
        self.data, self.config, self.progress = data, config, bool(progress)
        self.num_classes = int(data.y.max()) + 1
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, config)
        self.folder = RunDir(self.run_dir, "graphcl", "GraphCL semi-supervised")
        self.aug_config = config.augment_config()
        self.records: List[Dict[str, Any]] = []
        self.settings = {"num_graphs": int(data.num_graphs),
                         "num_features": int(data.num_features),
                         "num_classes": self.num_classes}

    def new_model(self) -> ResGCN:
        """A ResGCN of this run's shape (random initialisation)."""
        return ResGCN(self.data.num_features, self.num_classes, hidden=self.config.hidden)

    def _start(self) -> int:
        seed_everything(self.config.seed)
        self.model = self.new_model()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        prog = self.folder.resume(self.config, self.settings)
        if prog is None:
            self.folder.create(self.config, self.settings)
            return 0
        self.records = list(prog["records"])
        return restore_epoch(self.folder, prog, self.model, self.opt)

    def _epoch(self, epoch: int) -> float:
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
        self.model.train()
        losses, weights = [], []
        for batch in GraphLoader(self.data, batch_size=c.batch_size, shuffle=True,
                                 generator=gen):
            if batch.num_graphs < 2:  # NT-Xent needs a negative
                continue
            v1, v2 = graphcl_views(batch, c.aug1, c.aug2, self.aug_config, generator=gen)
            loss = nt_xent(self.model.forward_cl(v1), self.model.forward_cl(v2),
                           c.temperature, "reference")
            if not torch.isfinite(loss):  # stop before the weights are spoiled
                raise FloatingPointError(f"GraphCL: non-finite NT-Xent loss in epoch {epoch}")
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
            weights.append(batch.num_graphs)
        return float(np.average(losses, weights=weights)) if losses else float("nan")

    def _run_round(self, epoch: int) -> Dict[str, Any]:
        clock = stopwatch()
        loss = self._epoch(epoch) if epoch > 0 else None
        rec: Dict[str, Any] = {
            "round": epoch, "epoch": epoch, "weight_sparsity": 0.0, "graph_sparsity": None,
            "metric": "loss", "metrics": {} if loss is None else {"loss": loss}, "macs": None,
            "loss": loss, "kept": self.config.kept(epoch)}
        d = f"round_{epoch:03d}"
        self.folder.save(f"{d}/encoder.safetensors", self.model.state_dict())
        self.folder.save(f"{d}/optimizer.safetensors", _optimizer_tensors(self.opt))
        rec["seconds"] = clock()
        self.records.append(rec)
        self.folder.commit(epoch + 1, self.records, f"{d}/rng.safetensors")
        self._forget(epoch - 1)
        return rec

    def _forget(self, epoch: int) -> None:
        """Delete the optimiser state of ``epoch`` and its weights unless kept (after the next
        epoch was committed, so a resume never needs them)."""
        if epoch < 0:
            return
        d = f"round_{epoch:03d}"
        names = ["optimizer.safetensors", "rng.safetensors"]
        if not self.config.kept(epoch):
            names.append("encoder.safetensors")
        for name in names:
            self.folder.files.pop(f"{d}/{name}", None)
            (self.run_dir / d / name).unlink(missing_ok=True)

    def run(self) -> List[Dict[str, Any]]:
        """Run (or resume) epochs 0..epochs; the records of every epoch."""
        start = self._start()
        loop_rounds(f"GraphCL-semi pre-training {self.config.dataset} seed {self.config.seed}",
                    start, self.config.epochs, self._run_round,
                    lambda r: {} if r["loss"] is None else {"loss": f"{r['loss']:.3f}"},
                    self.progress)
        return list(self.records)

    def checkpoint(self, epoch: int) -> Dict[str, torch.Tensor]:
        """The weights after ``epoch`` (a kept epoch of a finished or resumed run)."""
        rel = f"round_{epoch:03d}/encoder.safetensors"
        if self.config.kept(epoch) and not self.folder.has(rel) and \
                (self.run_dir / "progress.json").exists():
            self.folder.resume(self.config, self.settings)
        if not self.config.kept(epoch) or not self.folder.has(rel):
            raise ValueError(f"SemiPretrain.checkpoint: no weights kept for epoch {epoch!r} in "
                             f"{self.run_dir} (kept: 0, multiples of {self.config.save_every} "
                             f"and {self.config.epochs}, once trained)")
        return self.folder.load(rel)


def semi_supervised_splits(y: Any, folds: int = 10, semi_split: int = 10,
                           split_seed: int = 12345) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``folds`` pairs ``(labelled_index, test_index)`` (int64, sorted) as the reference's
    ``k_fold(..., epoch_select="test_max", semi_split)``: seeded stratified test folds, and the
    labelled set the first test part of a seeded ``StratifiedKFold(semi_split)`` of the rest."""
    from sklearn.model_selection import StratifiedKFold

    fn = "semi_supervised_splits"
    yy = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if yy.ndim != 1:
        raise ValueError(f"{fn}: y must be 1-D, got shape {tuple(yy.shape)}")
    folds = _positive_int(fn, "folds", folds, 2)
    semi_split = _positive_int(fn, "semi_split", semi_split, 2)
    _int(fn, "split_seed", split_seed)
    _, counts = np.unique(yy, return_counts=True)
    if counts.min() < folds:
        raise ValueError(f"{fn}: folds={folds} needs >= {folds} graphs of every class, got "
                         f"class sizes {counts.tolist()}")
    outer = StratifiedKFold(folds, shuffle=True, random_state=split_seed)
    out = []
    for train, test in outer.split(np.zeros(len(yy)), yy):
        inner = StratifiedKFold(semi_split, shuffle=True, random_state=split_seed)
        _, part = next(iter(inner.split(np.zeros(len(train)), yy[train])))
        out.append((torch.from_numpy(np.sort(train[part])).long(),
                    torch.from_numpy(np.sort(test)).long()))
    return out


def select_epoch(acc: Any, rule: str = "test_max") -> Dict[str, Any]:
    """One number from ``acc`` (``(folds, epochs)`` test accuracies, fractions): ``rule``
    ``"test_max"`` picks the epoch of highest mean over folds (the reference; optimistic: it
    looks at the test folds), ``"last"`` the last epoch. Returns ``{"epoch"`` (1-based),
    ``"acc"`` (mean over folds), ``"std"`` (std over folds, ddof 1 as the reference's
    ``torch.std``), ``"fold_acc"}``."""
    a = np.asarray(acc, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"select_epoch: acc must be a (folds, epochs) array, got shape "
                         f"{a.shape}")
    if rule not in SELECTIONS:
        raise ValueError(f"select_epoch: rule must be one of {SELECTIONS}, got {rule!r}")
    e = int(np.argmax(a.mean(0))) if rule == "test_max" else a.shape[1] - 1
    col = a[:, e]
    return {"epoch": e + 1, "acc": float(col.mean()),
            "std": float(col.std(ddof=1)) if col.size > 1 else 0.0,
            "fold_acc": [float(v) for v in col]}


@dataclass(frozen=True)
class SemiFinetuneConfig(Config):
    """One fine-tuning cross-validation (defaults: the reference's ``finetuning/main_cl.py``:
    100 epochs, Adam lr 0.001, batch 128, 10 folds, ``random_state`` 12345).
    ``init`` names the starting weights (``"scratch"`` or the pre-training run and epoch,
    e.g. ``"graphcl_semi_ab12cd34ef56@20"``): recorded, and part of the run folder's name."""

    run_prefix: ClassVar[str] = "graphcl_finetune"

    dataset: str = help_field("dataset name (recorded)", "")
    init: str = help_field("'scratch' or '<pre-training run name>@<epoch>'", "scratch")
    seed: int = help_field("seed of the initial weights (scratch) and the shuffling", 0)
    semi_split: int = help_field("labelled set = 1/semi_split of the training fold", 10)
    epochs: int = help_field("fine-tuning epochs", 100)
    batch_size: int = help_field("graphs per mini-batch", 128)
    lr: float = help_field("Adam learning rate", 0.001)
    folds: int = help_field("stratified CV folds", 10)
    split_seed: int = help_field("random_state of both StratifiedKFold splits", 12345)
    hidden: int = help_field("ResGCN hidden width", 128)

    def __post_init__(self):
        fn = "SemiFinetuneConfig"
        for name in ("epochs", "batch_size", "hidden"):
            _positive_int(fn, name, getattr(self, name))
        _positive_int(fn, "folds", self.folds, 2)
        _positive_int(fn, "semi_split", self.semi_split, 2)
        _int(fn, "seed", self.seed)
        _int(fn, "split_seed", self.split_seed)
        _positive_float(fn, "lr", self.lr)
        if not isinstance(self.init, str) or not self.init:
            raise ValueError(f"{fn}: init must be 'scratch' or '<run>@<epoch>', got "
                             f"{self.init!r}")
        if not isinstance(self.dataset, str):
            raise ValueError(f"{fn}: dataset must be a str, got {self.dataset!r}")


class SemiFinetune:
    """Fine-tuning cross-validation of :class:`ResGCN` on ``dataset`` from ``init_state`` (a
    state dict of the same shape, e.g. :meth:`SemiPretrain.checkpoint`; None: the random
    initialisation, for ``init="scratch"``). One round per fold in a run folder; every record
    holds ``fold``, ``n_labelled``, ``n_test`` and per epoch ``test_acc``, ``train_loss``,
    ``train_acc`` (lists of length ``epochs``)."""

    def __init__(self, dataset: Any, config: SemiFinetuneConfig, *,
                 init_state: Optional[Mapping[str, torch.Tensor]] = None, run_dir: Any = None,
                 root: Any = None, progress: bool = True):
        fn = "SemiFinetune"
        if not isinstance(config, SemiFinetuneConfig):
            raise TypeError(f"{fn}: config must be a SemiFinetuneConfig, got "
                            f"{type(config).__name__}")
        if (init_state is None) != (config.init == "scratch"):
            raise ValueError(f"{fn}: init_state must be given exactly when config.init is not "
                             f"'scratch' (init={config.init!r})")
        if run_dir is None and root is None:
            raise ValueError(f"{fn}: pass run_dir= or root= (the run folder)")
        self.data = _labelled_data(fn, dataset)
        self.config, self.progress = config, bool(progress)
        self.init_state = None if init_state is None else dict(init_state)
        self.num_classes = int(self.data.y.max()) + 1
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, config)
        self.folder = RunDir(self.run_dir, "graphcl", "GraphCL fine-tuning")
        self.splits = semi_supervised_splits(self.data.y, config.folds, config.semi_split,
                                             config.split_seed)
        self.records: List[Dict[str, Any]] = []
        self.settings = {"num_graphs": int(self.data.num_graphs),
                         "num_features": int(self.data.num_features),
                         "num_classes": self.num_classes}

    def _model(self, fold: int) -> ResGCN:
        seed_everything(self.config.seed * 1_000_003 + fold)
        model = ResGCN(self.data.num_features, self.num_classes, hidden=self.config.hidden)
        if self.init_state is not None:
            model.load_state_dict(self.init_state)
        return model

    @torch.no_grad()
    def _accuracy(self, model: ResGCN, index: torch.Tensor) -> float:
        model.eval()
        correct = 0
        for b in GraphLoader(self.data, batch_size=512, index=index):
            correct += int((model(b).argmax(1) == b.y).sum())
        return correct / max(index.numel(), 1)

    def _run_round(self, fold: int) -> Dict[str, Any]:
        c = self.config
        clock = stopwatch()
        labelled, test = self.splits[fold]
        model = self._model(fold)
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)
        test_acc, losses, train_acc = [], [], []
        for epoch in range(1, c.epochs + 1):
            gen = torch.Generator().manual_seed((c.seed * 1_000_003 + fold) * 1_009 + epoch)
            model.train()
            tot, correct = 0.0, 0
            for b in GraphLoader(self.data, batch_size=c.batch_size, shuffle=True,
                                 generator=gen, index=labelled):
                out = model(b)
                loss = F.nll_loss(out, b.y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * b.num_graphs
                correct += int((out.argmax(1) == b.y).sum())
            losses.append(tot / labelled.numel())
            train_acc.append(correct / labelled.numel())
            test_acc.append(self._accuracy(model, test))
        rec = {"round": fold, "fold": fold, "weight_sparsity": 0.0, "graph_sparsity": None,
               "metric": "test_acc_last", "metrics": {"test_acc_last": test_acc[-1]},
               "macs": None, "n_labelled": int(labelled.numel()), "n_test": int(test.numel()),
               "test_acc": test_acc, "train_loss": losses, "train_acc": train_acc,
               "seconds": clock()}
        self.records.append(rec)
        self.folder.commit(fold + 1, self.records, f"rng_{fold:03d}.safetensors")
        if fold > 0:
            self.folder.files.pop(f"rng_{fold - 1:03d}.safetensors", None)
            (self.run_dir / f"rng_{fold - 1:03d}.safetensors").unlink(missing_ok=True)
        return rec

    def run(self) -> List[Dict[str, Any]]:
        """Run (or resume) every fold; one record per fold."""
        prog = self.folder.resume(self.config, self.settings)
        start = 0
        if prog is None:
            self.folder.create(self.config, self.settings)
        else:
            self.records, start = list(prog["records"]), int(prog["next_round"])
        c = self.config
        loop_rounds(f"GraphCL-semi fine-tuning {c.dataset} 1/{c.semi_split} {c.init}", start,
                    c.folds - 1, self._run_round,
                    lambda r: {"last": f"{100 * r['test_acc'][-1]:.1f}%"}, self.progress)
        return list(self.records)

    def accuracies(self) -> np.ndarray:
        """``(folds, epochs)`` test accuracies (runs or resumes the folds not yet done)."""
        recs = self.records if len(self.records) == self.config.folds else self.run()
        return np.array([r["test_acc"] for r in recs], dtype=float)
