"""Minibatch SGD on cross-entropy for small image (or feature) classifiers, evaluated by
accuracy and loss on a held-out set: the loop ``sparselth find`` runs in every IMP round.

:class:`ClassificationTask` is the object :class:`sparselth.prune.IMP` trains through
(``.train(model, round_idx)`` and ``.evaluate(model)``). Bound to the driver with
:meth:`ClassificationTask.bind`, it offers every step to the driver's late-rewind capture and
shows a progress bar per round.

Under ``torchrun`` (:mod:`sparselth.utils.distributed`) the model trains wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`: every rank draws the same shuffled
mini-batches and takes its :func:`~sparselth.utils.distributed.shard` of each, so the global
batch size, the steps and the learning rate are those of one process, and the loss is scaled
so that the averaged gradient is the gradient of the whole batch's mean loss. The masks'
gradient hooks zero pruned entries before DDP averages, so pruned weights stay exactly zero
on every rank. Evaluation is sharded too, its sums reduced over the ranks.

Example::

    >>> data = make_image_dataset("synthetic", n_train=2000, n_test=500)
    >>> task = ClassificationTask(data["x_train"], data["y_train"], data["x_test"],
    ...                           data["y_test"], SGDConfig(epochs=3), seed=0)
    >>> imp = IMP(model, task, config=IMPConfig(rounds=5, rewind="late", rewind_step=20))
    >>> records = task.bind(imp).run()
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics.classification import accuracy
from ..utils import distributed

__all__ = ["ClassificationTask", "SGDConfig", "evaluate_classifier"]


@dataclass
class SGDConfig:
    """Hyperparameters of one training run: SGD with momentum on cross-entropy.

    ``epochs`` passes over the training set, or ``max_steps`` optimizer steps (0: no limit;
    with both, whichever ends first). Raises ``ValueError`` naming the field on bad values.
    """

    epochs: int = 3
    max_steps: int = 0
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "max_steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (name == "batch_size"):
                what = "a positive int" if name == "batch_size" else "a non-negative int"
                raise ValueError(f"{name} must be {what}, got {v!r}")
        if self.epochs == 0 and self.max_steps == 0:
            raise ValueError("epochs or max_steps must be > 0")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SGDConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of one run over ``n_train`` samples."""
        per_epoch = max(1, math.ceil(n_train / self.batch_size))
        if self.max_steps and self.epochs:
            return min(self.max_steps, self.epochs * per_epoch)
        return self.max_steps or self.epochs * per_epoch


def evaluate_classifier(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """``{"accuracy", "loss"}`` of ``model`` on ``(x, y)`` in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return {"accuracy": accuracy(logits, y), "loss": F.cross_entropy(logits, y).item()}


class ClassificationTask:
    """Train on ``(x_train, y_train)`` with :class:`SGDConfig`, evaluate on ``(x_test,
    y_test)``. Round ``r`` shuffles with seed ``seed * 1000 + r``, so a resumed run trains
    as an uninterrupted one."""

    metric = "accuracy"

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 config: SGDConfig | None = None, *, seed: int = 0):
        self.x_train, self.y_train = x_train, y_train
        self.x_test, self.y_test = x_test, y_test
        self.config = config if config is not None else SGDConfig()
        self.seed = int(seed)
        self.driver: Any = None

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(len(self.y_train))

    def bind(self, driver: Any) -> Any:
        """Report steps to ``driver`` (an IMP driver: ``capture_rewind_point``,
        ``progress_bar``); returns the driver."""
        self.driver = driver
        return driver

    def train(self, model: nn.Module, round_idx: int) -> None:
        cfg, n = self.config, len(self.y_train)
        rank, size, _ = distributed.world()
        net = _data_parallel(model) if size > 1 else model
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(self.seed * 1000 + round_idx)
        total, step = self.total_steps, 0
        capture = getattr(self.driver, "capture_rewind_point", lambda *a, **k: False)
        capture(model, step=0)
        model.train()
        with self._bar(total) as bar:
            while step < total:
                perm = torch.randperm(n, generator=g)
                for i in range(0, n, cfg.batch_size):
                    if step >= total:
                        break
                    idx = perm[i:i + cfg.batch_size]
                    if size > 1:   # this rank's part; DDP averages, so the sum scales by size
                        part = idx[distributed.shard(len(idx), rank, size)]
                        total_loss = F.cross_entropy(net(self.x_train[part]), self.y_train[part],
                                                     reduction="sum")
                        loss = total_loss * (size / len(idx))
                        shown = total_loss.detach() / max(1, len(part))
                    else:
                        loss = shown = F.cross_entropy(model(self.x_train[idx]),
                                                       self.y_train[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    capture(model, step=step)
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(loss=f"{shown.item():.3f}")
        model.eval()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not distributed.is_distributed():
            return evaluate_classifier(model, self.x_test, self.y_test)
        part = distributed.shard(len(self.y_test))
        model.eval()
        with torch.no_grad():
            logits = model(self.x_test[part])
        y = self.y_test[part]
        sums = torch.tensor([float((logits.argmax(-1) == y).sum()),
                             float(F.cross_entropy(logits, y, reduction="sum")), float(len(y))],
                            dtype=torch.float64)
        correct, loss, count = distributed.all_reduce_sum(sums).tolist()
        return {"accuracy": correct / count, "loss": loss / count}

    def _bar(self, total: int):
        if distributed.world()[2] and self.driver is not None and \
                hasattr(self.driver, "progress_bar"):   # rank 0 shows it
            return self.driver.progress_bar(total=total, unit="step")
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="step", disable=True)


def _data_parallel(model: nn.Module) -> nn.Module:
    """``model`` in DDP (on its GPU when it has one); the parameters are ``model``'s."""
    from torch.nn.parallel import DistributedDataParallel

    p = next(model.parameters())
    # running statistics (batch norm) follow rank 0; the bool mask buffers are the same anyway
    stats = any(b.is_floating_point() for b in model.buffers())
    sync = ("forward_sync_buffers" if "forward_sync_buffers"
            in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
    return DistributedDataParallel(model, device_ids=[p.device.index] if p.is_cuda else None,
                                   **{sync: stats})
