"""Node-level GraphCL pre-training on one graph (You et al. 2020, ``unsupervised_Cora_Citeseer``;
PAPERS.md §3.6) and its linear evaluation.

- :class:`NodeGraphCLConfig` / :class:`NodeGraphCLPretrain`: :class:`~sparselth.models.GraphCLNode`
  trained full-batch with Adam (lr 0.001, no weight decay) on the DGI-style objective: per
  epoch two views of one augmentation type (:func:`~sparselth.pretrain.node_views`) and one
  row shuffle of the features. Early stopping: the run stops once the training loss has not
  improved for ``patience`` epochs (or at ``max_epochs``) and keeps the weights of the
  lowest-loss epoch, as the reference. The encoder checkpoint (safetensors, written
  atomically, the config and loss curve in its metadata) is the output; a finished checkpoint
  of the same config is read back instead of training again.
- :func:`linear_evaluate`: logistic regression on frozen embeddings of the training nodes,
  ``runs`` times ``steps`` full-batch Adam steps (lr 0.01), test accuracy per run: the DGI /
  GraphCL protocol (50 x 100), mean ± std over runs.

Every epoch draws its augmentations and its shuffle from a generator seeded by
``(seed, epoch)``, and the weights from ``seed``: a run is deterministic under its seed.

Example::

    >>> data = load_planetoid("cora", root)
    >>> run = NodeGraphCLPretrain(data, NodeGraphCLConfig(dataset="cora"), checkpoint="cora.st")
    >>> res = run.run()           # res["linear_eval"]["acc_mean"], res["losses"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import _io
from ..models.graphcl_node import FIRST_LAYER_KEY, GraphCLNode
from ..pretrain.dgi import COMBINES
from ..pretrain.node_augment import NODE_AUGMENTATIONS, node_views, single_graph
from ..prune.run import Config, help_field, seed_everything
from ..sparse.csr import CSR
from ..utils.timing import stopwatch
from .graph import node_features

__all__ = ["NodeGraphCLConfig", "NodeGraphCLPretrain", "linear_evaluate", "read_checkpoint",
           "CHECKPOINT_KIND"]

#: the ``kind`` metadata of a node-level GraphCL checkpoint
CHECKPOINT_KIND = "graphcl-node"


@dataclass(frozen=True)
class NodeGraphCLConfig(Config):
    """Hyperparameters of node-level GraphCL (defaults: the reference's ``execute.py`` and the
    Cora script of the UGS authors, ``--aug_type subgraph --drop_percent 0.1 --seed 39``)."""

    run_prefix: ClassVar[str] = "graphcl_node"

    dataset: str = help_field("dataset name (recorded; the data is passed to the driver)", "")
    seed: int = help_field("seed of the weights, augmentations, shuffles and linear eval", 39)
    aug: str = help_field("augmentation of both views: 'edge', 'mask', 'node' or 'subgraph'",
                          "subgraph")
    drop_percent: float = help_field("the reference's --drop_percent p", 0.1)
    hidden: int = help_field("GCN encoder width", 512)
    lr: float = help_field("Adam learning rate", 0.001)
    weight_decay: float = help_field("Adam weight decay", 0.0)
    patience: int = help_field("stop after this many epochs without a lower training loss", 20)
    max_epochs: int = help_field("epoch cap", 10000)
    combine: str = help_field("'logits' (the reference: the two views' logits added, one "
                              "BCE) or 'losses' (two BCEs added)", "logits")
    eval_runs: int = help_field("logistic-regression runs of the linear evaluation", 50)
    eval_steps: int = help_field("Adam steps per logistic-regression run", 100)
    eval_lr: float = help_field("Adam learning rate of the logistic regression", 0.01)

    def __post_init__(self):
        fn = "NodeGraphCLConfig"
        for name in ("hidden", "patience", "max_epochs", "eval_runs", "eval_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{fn}: seed must be an int, got {self.seed!r}")
        for name in ("lr", "eval_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{fn}: {name} must be a positive number, got {v!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not self.weight_decay >= 0:
            raise ValueError(f"{fn}: weight_decay must be a number >= 0, got "
                             f"{self.weight_decay!r}")
        if isinstance(self.drop_percent, bool) or not isinstance(self.drop_percent, (int, float)) \
                or not 0 <= self.drop_percent < 1:
            raise ValueError(f"{fn}: drop_percent must be in [0, 1), got {self.drop_percent!r}")
        if self.aug not in NODE_AUGMENTATIONS:
            raise ValueError(f"{fn}: aug must be one of {NODE_AUGMENTATIONS}, got {self.aug!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"{fn}: combine must be one of {COMBINES}, got {self.combine!r}")
        if not isinstance(self.dataset, str):
            raise ValueError(f"{fn}: dataset must be a str, got {self.dataset!r}")


def linear_evaluate(embeddings: torch.Tensor, labels: torch.Tensor, train_mask: torch.Tensor,
                    test_mask: torch.Tensor, *, runs: int = 50, steps: int = 100,
                    lr: float = 0.01, seed: int = 0) -> Dict[str, Any]:
    """Logistic regression (``Linear(d, C)``, Xavier-uniform weight, zero bias) trained
    ``steps`` full-batch Adam steps on the frozen ``embeddings`` of the training nodes with
    cross-entropy, ``runs`` times from fresh weights; returns ``{"acc_mean", "acc_std"``
    (population std over runs), ``"accs"}`` (test accuracies as fractions)."""
    fn = "linear_evaluate"
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        raise ValueError(f"{fn}: embeddings must be a 2-D tensor (N, d)")
    n, d = embeddings.shape
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        raise ValueError(f"{fn}: labels must have shape ({n},)")
    for name, m in (("train_mask", train_mask), ("test_mask", test_mask)):
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != (n,) or \
                not bool(m.any()):
            raise ValueError(f"{fn}: {name} must be a non-empty bool tensor of shape ({n},)")
    for name, v in (("runs", runs), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    x = embeddings.detach().float()
    y = labels.long()
    c = int(y.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    bound = (6.0 / (d + c)) ** 0.5
    accs = []
    for _ in range(runs):
        w = ((torch.rand(c, d, generator=gen) * 2 - 1) * bound).requires_grad_(True)
        b = torch.zeros(c, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=lr)
        xt, yt = x[train_mask], y[train_mask]
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(F.linear(xt, w, b), yt).backward()
            opt.step()
        with torch.no_grad():
            pred = F.linear(x[test_mask], w, b).argmax(1)
        accs.append(float((pred == y[test_mask]).float().mean()))
    return {"acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)), "accs": accs}


def read_checkpoint(path: Any) -> tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state dict, metadata)`` of a node-level GraphCL checkpoint; ValueError when the file
    is not one."""
    from safetensors import safe_open

    path = Path(path)
    tensors = _io.load_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"read_checkpoint: {path} is not a node-level GraphCL checkpoint "
                         f"(metadata kind {meta.get('kind')!r})")
    return tensors, {k: json.loads(v) for k, v in meta.items() if k != "kind"}


class NodeGraphCLPretrain:
    """One node-level GraphCL run on ``data`` (a :class:`~sparselth.data.GraphData`: ``x``,
    ``y``, ``edge_index``, ``train_mask``, ``test_mask``), writing the best-loss model to
    ``checkpoint`` (optional). :meth:`run` returns ``{"losses"`` (per epoch), ``"best_epoch",
    "best_loss", "epochs", "stopped"`` (``"patience"`` or ``"max_epochs"``),
    ``"linear_eval"`` (:func:`linear_evaluate`), ``"train_seconds", "reused"}``."""

    def __init__(self, data: Any, config: NodeGraphCLConfig, *, checkpoint: Any = None,
                 progress: bool = True):
        fn = "NodeGraphCLPretrain"
        if not isinstance(config, NodeGraphCLConfig):
            raise TypeError(f"{fn}: config must be a NodeGraphCLConfig, got "
                            f"{type(config).__name__}")
        for attr in ("x", "y", "edge_index", "train_mask", "test_mask"):
            if not isinstance(getattr(data, attr, None), torch.Tensor):
                raise TypeError(f"{fn}: data must be a GraphData (missing tensor {attr!r})")
        self.data, self.config, self.progress = data, config, bool(progress)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        n = data.x.shape[0]
        A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=n)
        self.adj = A.with_values(None)
        self.graph = single_graph(data.x.float(), self.adj)
        self.x = node_features(self.graph.x)
        self.model: Optional[GraphCLNode] = None

    def _epoch_loss(self, epoch: int) -> torch.Tensor:
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
        v1, v2 = node_views(self.graph, c.aug, c.drop_percent, generator=gen)
        perm = torch.randperm(self.graph.num_nodes, generator=gen)
        shuffled = node_features(self.graph.x[perm])
        return self.model.loss(self.x, self.adj, shuffled, (node_features(v1.x), v1.adj),
                               (node_features(v2.x), v2.adj))

    def _reuse(self) -> Optional[Dict[str, Any]]:
        if self.checkpoint is None or not self.checkpoint.exists():
            return None
        tensors, meta = read_checkpoint(self.checkpoint)
        if meta.get("config") != self.config.to_dict():
            raise ValueError(f"NodeGraphCLPretrain: {self.checkpoint} holds a run with another "
                             f"config ({meta.get('config')}); remove it or choose another path")
        self.model.load_state_dict(tensors)
        return dict(meta["result"], reused=True)

    def run(self) -> Dict[str, Any]:
        """Pre-train (or read a finished checkpoint back), then evaluate linearly."""
        c = self.config
        seed_everything(c.seed)
        self.model = GraphCLNode(self.data.x.shape[1], c.hidden, c.combine)
        res = self._reuse()
        if res is None:
            res = self._train()
        self.model.eval()
        emb = self.model.embed(self.x, self.adj)
        res["linear_eval"] = linear_evaluate(
            emb, self.data.y, self.data.train_mask, self.data.test_mask, runs=c.eval_runs,
            steps=c.eval_steps, lr=c.eval_lr, seed=c.seed)
        return res

    def _train(self) -> Dict[str, Any]:
        c, model = self.config, self.model
        opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        clock = stopwatch()
        losses: List[float] = []
        best, best_epoch, wait, best_state = float("inf"), -1, 0, None
        stopped = "max_epochs"
        model.train()
        for epoch in range(c.max_epochs):
            loss = self._epoch_loss(epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"NodeGraphCL: non-finite loss in epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            v = float(loss.detach())
            losses.append(v)
            if v < best:
                best, best_epoch, wait = v, epoch, 0
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            else:
                wait += 1
            if self.progress and epoch % 50 == 0:
                print(f"NodeGraphCL {c.dataset} epoch {epoch}: loss {v:.4f} (best {best:.4f} "
                      f"at {best_epoch})", flush=True)
            if wait >= c.patience:
                stopped = "patience"
                break
        model.load_state_dict(best_state)
        res = {"losses": losses, "best_epoch": best_epoch, "best_loss": best,
               "epochs": len(losses), "stopped": stopped, "train_seconds": clock(),
               "reused": False}
        if self.checkpoint is not None:
            meta = {"kind": CHECKPOINT_KIND, "config": json.dumps(c.to_dict()),
                    "result": json.dumps(res), "first_layer_key": json.dumps(FIRST_LAYER_KEY)}
            _io.save_safetensors(self.checkpoint, model.state_dict(), meta)
        return res

    def encoder_state(self) -> Dict[str, torch.Tensor]:
        """The pre-trained model's weights (encoder and discriminator)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
