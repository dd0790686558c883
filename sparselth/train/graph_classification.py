"""Graph classification on a TU dataset with mini-batch Adam: the task object the UGS driver
(:class:`sparselth.prune.UGS`, ``UGSConfig(task="graph")``) trains through.

The model holds the dataset's graphs (:class:`~sparselth.models.GINGraphClassifier`) and maps
``(x, index)`` to the logits of the graphs ``index``; ``x`` is the node-feature matrix of the
whole dataset. An epoch shuffles the training graphs with torch's global RNG (so a seeded run
and a resumed run draw the same batches) and takes one Adam step per batch of ``batch_size``
graphs (cross-entropy); evaluation is one eval-mode pass over every graph, accuracy on the
validation and test graphs.

Split (:func:`graph_split`): a dataset with the GIN reference's 10 folds uses fold 0's test
graphs as test set and carves a stratified 10 % of its training graphs as validation set;
any other dataset gets a seeded stratified 80/10/10 split (per class, the rounding of
:func:`sparselth.data.splits.split_80_10_10`).

Example::

    >>> ds = load_tu("MUTAG", root="datasets")
    >>> task = GraphClassificationTask(ds, batch_size=32, split_seed=0)
    >>> model = GINGraphClassifier(ds, ds.num_features, ds.num_classes)
    >>> task.fit(model, epochs=100, lr=0.01).test
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.splits import split_80_10_10
from ..data.tu import GraphDataset
from ..metrics.classification import accuracy
from .graph import GraphTask, _to_device

__all__ = ["GraphClassificationTask", "graph_split"]


def _stratified(labels: Tensor, graphs: Tensor, num_classes: int,
                seed: int) -> tuple[Tensor, Tensor, Tensor]:
    pairs = torch.stack([labels[graphs], graphs])
    tr, va, te = split_80_10_10(pairs, num_classes, seed=seed)
    return tr[1], va[1], te[1]


def graph_split(dataset: GraphDataset, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, str]:
    """``(train, val, test, description)``: sorted int64 graph indices (see the module
    docstring for the rule)."""
    if not isinstance(dataset, GraphDataset):
        raise TypeError(f"graph_split: dataset must be a GraphDataset, got "
                        f"{type(dataset).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"graph_split: seed must be an int, got {seed!r}")
    y, C = dataset.y.long(), dataset.num_classes
    if dataset.folds:
        train_fold, test = dataset.folds[0]
        a, val, b = _stratified(y, train_fold.long(), C, seed)
        train = torch.cat([a, b])
        how = f"GIN 10-fold split, fold 0 (test), stratified 10 % of its training graphs as " \
              f"validation (seed {seed})"
    else:
        train, val, test = _stratified(y, torch.arange(len(dataset)), C, seed)
        how = f"seeded stratified 80/10/10 split (seed {seed})"
    return (torch.sort(train).values, torch.sort(val).values, torch.sort(test.long()).values,
            how)


class GraphClassificationTask(GraphTask):
    """Graph classification on a :class:`~sparselth.data.GraphDataset` (see the module
    docstring).

    Args:
        dataset: the graphs, their features ``dataset.data.x`` and labels ``dataset.y``.
        batch_size: graphs per training step.
        split_seed: seed of the validation (and, without folds, test) draw.
        device: where features and labels live (the model's device).
    """

    metric = "acc"

    def __init__(self, dataset: GraphDataset, batch_size: int = 32, split_seed: int = 0,
                 device: str | torch.device | None = None):
        if not isinstance(dataset, GraphDataset):
            raise TypeError(f"GraphClassificationTask: dataset must be a GraphDataset, got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"GraphClassificationTask: batch_size must be a positive int, "
                             f"got {batch_size!r}")
        if dataset.y is None:
            raise ValueError("GraphClassificationTask: dataset has no graph labels")
        self.dataset, self.batch_size = dataset, batch_size
        self.device = None if device is None else torch.device(device)
        self.train_index, self.val_index, self.test_index, self.split = graph_split(
            dataset, split_seed)
        self.x = _to_device(dataset.data.x, self.device)
        self.y = _to_device(dataset.y.long(), self.device)
        self._masks = {}
        for part, index in (("val", self.val_index), ("test", self.test_index),
                            ("train", self.train_index)):
            mask = torch.zeros(len(dataset), dtype=torch.bool)
            mask[index] = True
            self._masks[part] = _to_device(mask, self.device)

    def inputs(self) -> tuple:
        return (self.x,)

    def batches(self) -> Iterator[Tensor]:
        """The training graphs in a fresh random order (torch's global RNG), in batches."""
        idx = self.train_index[torch.randperm(self.train_index.numel())]
        for s in range(0, idx.numel(), self.batch_size):
            yield _to_device(idx[s:s + self.batch_size], self.device)

    def prunable_entries(self, model: Any) -> Tensor:
        """The stored entries UGS may prune: the training graphs' edges (validation and test
        graphs take no part in the loss, so their mask values cannot be learned; they are kept
        whole, by UGS and by random pruning alike)."""
        return model.entries_of(self.train_index)

    def loss(self, model: Callable[..., Tensor], batch: Tensor | None = None) -> Tensor:
        index = self.train_index if batch is None else batch
        index = _to_device(index, self.device)
        self.last_batch = index  # the graphs this step's gradient saw (UGS's L1 term)
        return F.cross_entropy(model(self.x, index), self.y[index])

    @torch.no_grad()
    def evaluate(self, model: Callable[..., Tensor]) -> dict[str, Any]:
        logits = self.eval_output(model)
        return {part: accuracy(logits, self.y, mask) for part, mask in self._masks.items()}
