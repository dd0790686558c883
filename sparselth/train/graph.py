"""Full-batch training and evaluation of GNNs on one graph: node classification and link
prediction, with model selection by the best validation metric.

A *task* bundles the data, the loss and the evaluation; :meth:`GraphTask.fit` runs the
epoch loop (Adam, one full-batch step per epoch, evaluation after every epoch, the test
metric reported at the best validation epoch). The UGS driver
(:class:`sparselth.prune.UGS`) drives the same loop through two hooks: ``after_backward``
(adds the L1 sub-gradients to the mask gradients before the optimizer step) and
``on_best`` (keeps the mask values of the best validation epoch).

Node classification (:class:`NodeClassificationTask`): cross-entropy on the training
nodes; accuracy on the validation and test nodes (micro-F1 in the reference equals accuracy
for single-label data).

Link prediction (:class:`LinkPredictionTask`): the encoder maps node features to
embeddings ``z`` over the *training* graph of a :func:`~sparselth.data.link_split`. It is
trained with a GAE-style objective: inner-product decoder, binary cross-entropy of
``z_i · z_j`` on the training edges against as many uniformly drawn node pairs per epoch
(pairs that are training edges are left out of the loss). Evaluation as in the UGS
reference: L2-normalised embeddings, score ``sigmoid(z_i · z_j)``, ROC-AUC over the held-out
positives and negatives (:func:`sparselth.metrics.roc_auc`, rank based, ties count one half).

**Deviation from UGS:** the reference trains the link-prediction encoder with the
unsupervised GIC objective (DGI-style and cluster discriminators; UGS paper, Sec. 'link
prediction'); here it is the GAE reconstruction loss above. AUCs are therefore not the
paper's numbers.

Example::

    >>> from sparselth.models import GCN
    >>> A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    >>> model = GCN(A, data.num_features, data.num_classes)
    >>> result = train_node_classification(model, data, epochs=200, lr=0.01, weight_decay=5e-4)
    >>> result.test, result.best_epoch
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import GraphData, LinkSplit
from ..metrics.classification import accuracy
from ..metrics.link import average_precision, roc_auc
from ..models.gnn import GCN
from ..sparse.csr import CSR
from ..utils import distributed
from ..utils.timing import stopwatch

__all__ = [
    "FitResult",
    "GCNLinkEncoder",
    "GraphTask",
    "LinkPredictionTask",
    "NodeClassificationTask",
    "evaluate_link_prediction",
    "evaluate_node_classification",
    "link_scores",
    "node_features",
    "train_link_prediction",
    "train_node_classification",
]


# --------------------------------------------------------------------------- features


def link_scores(z: Tensor, pairs: Tensor, normalize: bool = True) -> Tensor:
    """``sigmoid(z_i · z_j)`` for each column ``(i, j)`` of ``pairs`` ``[2, k]``; with
    ``normalize`` the embeddings are L2-normalised first (the UGS evaluation)."""
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"link_scores: pairs must have shape [2, k], got {tuple(pairs.shape)}")
    if normalize:
        z = F.normalize(z, dim=1)
    return torch.sigmoid((z[pairs[0]] * z[pairs[1]]).sum(-1))


def node_features(x: Tensor, max_density: float = 0.1) -> Tensor | CSR:
    """``x`` as a :class:`~sparselth.CSR` when at most ``max_density`` of its entries are
    non-zero (bag-of-words features: Cora 1.3 %, CiteSeer 0.9 %), else ``x`` itself. GNN
    layers then transform them with ``spmm(x, W^T)`` instead of a dense product."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise TypeError("node_features: x must be a 2-D tensor")
    density = float((x != 0).sum()) / max(1, x.numel())
    return CSR.from_dense(x) if density <= max_density else x


def _to_device(x: Any, device: torch.device | None) -> Any:
    if device is None:
        return x
    return x.to(device)


# --------------------------------------------------------------------------- fit loop


@dataclass
class FitResult:
    """Outcome of :meth:`GraphTask.fit`.

    Attributes:
        best_epoch: epoch (0-based) with the highest validation metric (first one on ties).
        best_val: that validation metric.
        test: the test metric at ``best_epoch``.
        metric: ``"acc"`` or ``"auc"``.
        last_loss: training loss of the last epoch (mean over its batches).
        best_state: a copy of ``model.state_dict()`` at ``best_epoch`` (``keep_state=True``).
        val_history, test_history: the metrics after every epoch.
        seconds: wall time of the loop.
    """

    best_epoch: int
    best_val: float
    test: float
    metric: str
    last_loss: float
    best_state: dict[str, Tensor] | None = None
    val_history: list[float] = field(default_factory=list)
    test_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class GraphTask:
    """Data + loss + evaluation of one graph learning problem (subclasses below).

    Subclasses define ``metric`` (``"acc"``/``"auc"``), :meth:`inputs` (the model's
    positional arguments), :meth:`loss` (training mode, one full batch) and
    :meth:`evaluate` (``{"val": float, "test": float, ...}``). A mini-batch task also
    overrides :meth:`batches`: an epoch then takes one optimizer step per batch, with
    ``loss(model, batch)``.
    """

    metric = "acc"
    #: True when, under torchrun, :meth:`loss` on each rank is that rank's share of the total
    #: loss (the shares add up to the one-process loss): :meth:`fit` then sums the gradients
    #: over the ranks. False: every rank computes the whole loss (a replica; nothing to sum).
    splits_loss = False

    def inputs(self) -> tuple:
        raise NotImplementedError

    def batches(self) -> Iterable[Any]:
        """The training batches of one epoch; ``(None,)``: one full-batch step, ``loss(model)``."""
        return (None,)

    def loss(self, model: Callable[..., Tensor]) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: Callable[..., Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def eval_output(self, model: nn.Module) -> Tensor:
        """``model(*self.inputs())`` in eval mode (the model's mode is restored after)."""
        was = model.training
        model.eval()
        out = model(*self.inputs())
        model.train(was)
        return out

    def fit(
        self,
        model: nn.Module,
        epochs: int,
        lr: float,
        weight_decay: float = 0.0,
        *,
        params: Iterable[Tensor] | None = None,
        after_backward: Callable[[], None] | None = None,
        on_best: Callable[[int, dict[str, float]], None] | None = None,
        keep_state: bool = False,
        state_fn: Callable[[], Mapping[str, Tensor]] | None = None,
        progress: bool = False,
        desc: str | None = None,
        position: int = 1,
    ) -> FitResult:
        """Train ``model`` for ``epochs`` epochs of Adam steps (one full-batch step, or one
        per item of :meth:`batches`), evaluating after each epoch.

        Args:
            model: the network (or any module whose call returns the task's output).
            epochs: number of steps (> 0).
            lr, weight_decay: Adam's learning rate and (coupled, L2) weight decay.
            params: what Adam updates (default: ``model``'s parameters that require grad).
            after_backward: called after every ``loss.backward()`` and before
                ``optimizer.step()`` (UGS adds its L1 sub-gradients here).
            on_best: ``on_best(epoch, metrics)`` whenever the validation metric improves
                strictly (so the first best epoch wins ties), after the step of that epoch.
            keep_state: keep a copy of the state at the best epoch in ``best_state``
                (``state_fn()`` if given, else ``model.state_dict()``).
            progress, desc, position: a tqdm bar over the epochs.

        Returns:
            :class:`FitResult` (the model is left at its *last* epoch's weights).
        """
        from tqdm.auto import tqdm

        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
        params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
        if not params:
            raise ValueError("fit: nothing to train (no parameter requires grad)")
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        reduce = self.splits_loss and distributed.is_distributed()
        best_val, best_test, best_epoch, best_state = -math.inf, math.nan, -1, None
        best_extra: dict[str, float] = {}
        vals, tests = [], []
        loss_value = math.nan
        elapsed = stopwatch()
        bar = tqdm(range(epochs), desc=desc or "epochs", leave=False, position=position,
                   disable=not distributed.show_progress(progress), unit="epoch")
        for epoch in bar:
            model.train()
            total, steps = 0.0, 0
            for batch in self.batches():
                opt.zero_grad(set_to_none=True)
                loss = self.loss(model) if batch is None else self.loss(model, batch)
                loss.backward()
                if reduce:   # the shares' gradients add up to the whole loss's
                    distributed.all_reduce_gradients(params)
                if after_backward is not None:
                    after_backward()
                opt.step()
                total, steps = total + float(loss.detach()), steps + 1
            if reduce:
                total = float(distributed.all_reduce_sum(
                    torch.tensor([total], dtype=torch.float64)))
            loss_value = total / max(steps, 1)
            ev = self.evaluate(model)
            vals.append(ev["val"])
            tests.append(ev["test"])
            if ev["val"] > best_val:
                best_val, best_test, best_epoch = ev["val"], ev["test"], epoch
                best_extra = {k: v for k, v in ev.items() if k not in ("val", "test")}
                if keep_state:
                    sd = state_fn() if state_fn is not None else model.state_dict()
                    best_state = {k: v.detach().clone() for k, v in sd.items()}
                if on_best is not None:
                    on_best(epoch, ev)
            bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{ev['val']:.4f}",
                            best=f"{best_val:.4f}")
        bar.close()
        return FitResult(best_epoch, best_val, best_test, self.metric, loss_value, best_state,
                         vals, tests, elapsed(), best_extra)


class NodeClassificationTask(GraphTask):
    """Semi-supervised node classification on a :class:`~sparselth.data.GraphData`.

    ``x``: the features to feed the model (default ``data.x``; pass
    ``node_features(data.x)`` for a CSR of sparse features). The model maps ``x`` to logits
    ``(N, C)`` over its own stored graph.

    Under torchrun every rank runs the full-batch forward and takes the cross-entropy of its
    :func:`~sparselth.utils.distributed.shard` of the training nodes, summed and divided by
    the number of all training nodes: the ranks' losses add up to the one-process loss.
    """

    metric = "acc"
    splits_loss = True

    def __init__(self, data: GraphData, x: Tensor | CSR | None = None,
                 device: str | torch.device | None = None):
        if not isinstance(data, GraphData):
            raise TypeError(
                f"NodeClassificationTask: data must be a GraphData, got {type(data).__name__}"
            )
        self.data = data
        self.device = None if device is None else torch.device(device)
        self.x = _to_device(data.x if x is None else x, self.device)
        self.y = _to_device(data.y, self.device)
        self.train_mask = _to_device(data.train_mask, self.device)
        self.val_mask = _to_device(data.val_mask, self.device)
        self.test_mask = _to_device(data.test_mask, self.device)

    def inputs(self) -> tuple:
        return (self.x,)

    def loss(self, model: Callable[..., Tensor]) -> Tensor:
        logits = model(self.x)
        if not distributed.is_distributed():
            return F.cross_entropy(logits[self.train_mask], self.y[self.train_mask])
        nodes = self.train_mask.nonzero().squeeze(1)
        mine = nodes[distributed.shard(nodes.numel())]
        return F.cross_entropy(logits[mine], self.y[mine], reduction="sum") / nodes.numel()

    @torch.no_grad()
    def evaluate(self, model: Callable[..., Tensor]) -> dict[str, float]:
        logits = self.eval_output(model)
        return {
            "val": accuracy(logits, self.y, self.val_mask),
            "test": accuracy(logits, self.y, self.test_mask),
            "train": accuracy(logits, self.y, self.train_mask),
        }


class LinkPredictionTask(GraphTask):
    """Link prediction on a :class:`~sparselth.data.LinkSplit` with a GAE-style loss (see the
    module docstring; the UGS reference uses GIC instead).

    The encoder must aggregate over ``split.train_edge_index`` only (build it on that graph)
    and map ``x`` to embeddings ``(N, d)``. Negative pairs for the loss are drawn from
    torch's global RNG, so ``torch.manual_seed`` makes training reproducible.
    """

    metric = "auc"

    def __init__(self, split: LinkSplit, x: Tensor | CSR,
                 device: str | torch.device | None = None):
        if not isinstance(split, LinkSplit):
            raise TypeError(
                f"LinkPredictionTask: split must be a LinkSplit, got {type(split).__name__}"
            )
        if x.shape[0] != split.num_nodes:
            raise ValueError(
                f"LinkPredictionTask: x has {x.shape[0]} rows, the split {split.num_nodes} nodes"
            )
        self.split = split
        self.device = None if device is None else torch.device(device)
        self.x = _to_device(x, self.device)
        dev = self.device
        self.train_pos = _to_device(split.train_pos, dev)
        self.val_pos, self.val_neg = _to_device(split.val_pos, dev), _to_device(split.val_neg, dev)
        self.test_pos = _to_device(split.test_pos, dev)
        self.test_neg = _to_device(split.test_neg, dev)
        n = split.num_nodes
        ei = split.train_edge_index
        self._train_keys = _to_device(torch.sort(ei[0] * n + ei[1]).values, dev)

    def inputs(self) -> tuple:
        return (self.x,)

    def _negatives(self, count: int, device: torch.device) -> tuple[Tensor, Tensor]:
        n = self.split.num_nodes
        pairs = torch.randint(0, n, (2, count)).to(device)
        keys = pairs[0] * n + pairs[1]
        pos = torch.searchsorted(self._train_keys, keys).clamp_max(self._train_keys.numel() - 1)
        valid = (self._train_keys[pos] != keys) & (pairs[0] != pairs[1])
        return pairs, valid

    def loss(self, model: Callable[..., Tensor]) -> Tensor:
        z = model(self.x)
        pos = self.train_pos
        pos_logit = (z[pos[0]] * z[pos[1]]).sum(-1)
        neg, valid = self._negatives(pos.size(1), z.device)
        neg_logit = (z[neg[0]] * z[neg[1]]).sum(-1)
        pos_loss = F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
        neg_all = F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit),
                                                     reduction="none")
        neg_loss = (neg_all * valid).sum() / valid.sum().clamp_min(1)
        return 0.5 * (pos_loss + neg_loss)

    @torch.no_grad()
    def evaluate(self, model: Callable[..., Tensor]) -> dict[str, float]:
        z = self.eval_output(model)
        out = {}
        for part, p, n in (("val", self.val_pos, self.val_neg),
                           ("test", self.test_pos, self.test_neg)):
            sp, sn = link_scores(z, p), link_scores(z, n)
            out[part] = roc_auc(sp, sn)
            out[f"{part}_ap"] = average_precision(sp, sn)
        return out


# --------------------------------------------------------------------------- encoder


class GCNLinkEncoder(GCN):
    """The UGS link-prediction encoder (``net_gcn_baseline``): two :class:`~sparselth.nn.GCNConv`
    layers ``[in_dim, hidden, out_dim]`` (default ``[F, 512, 16]``), each ``Â (x W^T)``, no
    nonlinearity and no dropout between them, PReLU at the end, Xavier-uniform weights;
    ``degree`` as :class:`~sparselth.models.GCN` (default ``"sender"``, the reference's).

    Same UGS contract as :class:`~sparselth.models.GCN` (graph buffers, ``edge_mask``,
    ``ugs_weight_names``, ``compact_graph``, ``macs``); build it on the *training* graph of a
    link split: ``GCNLinkEncoder(split.train_edge_index, F, num_nodes=split.num_nodes)``.
    """

    def __init__(self, adj: CSR | Tensor, in_dim: int, out_dim: int = 16, hidden: int = 512,
                 learn_edge_mask: bool = True, num_nodes: int | None = None,
                 degree: str = "sender"):
        super().__init__(adj, in_dim, out_dim, hidden=hidden, dropout=0.0,
                         learn_edge_mask=learn_edge_mask, num_nodes=num_nodes, degree=degree)
        self.act = nn.PReLU()
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.lin.weight)

    def forward(self, x: Tensor | CSR) -> Tensor:
        A, w = self.adjacency(), self.edge_mask
        return self.act(self.conv2(self.conv1(x, A, w), A, w))


# --------------------------------------------------------------------------- shortcuts


def train_node_classification(
    model: nn.Module,
    data: GraphData,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    x: Tensor | CSR | None = None,
    *,
    keep_state: bool = True,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` on ``data`` (Adam, full batch) and return the test accuracy at the best
    validation epoch. ``best_state`` holds the weights of that epoch; load them with
    ``model.load_state_dict(result.best_state)``."""
    task = NodeClassificationTask(data, x, device=_model_device(model))
    return task.fit(model, epochs, lr, weight_decay, keep_state=keep_state, progress=progress,
                    desc="train")


def evaluate_node_classification(model: nn.Module, data: GraphData,
                                 x: Tensor | CSR | None = None) -> dict[str, float]:
    """``{"train", "val", "test"}`` accuracies of ``model`` in eval mode."""
    return NodeClassificationTask(data, x, device=_model_device(model)).evaluate(model)


def train_link_prediction(
    model: nn.Module,
    split: LinkSplit,
    x: Tensor | CSR,
    epochs: int = 200,
    lr: float = 0.001,
    weight_decay: float = 0.0,
    *,
    keep_state: bool = True,
    progress: bool = False,
) -> FitResult:
    """Train an encoder with the GAE-style loss and return the test ROC-AUC at the best
    validation AUC (``extra`` holds the average precisions of that epoch)."""
    task = LinkPredictionTask(split, x, device=_model_device(model))
    return task.fit(model, epochs, lr, weight_decay, keep_state=keep_state, progress=progress,
                    desc="train")


def evaluate_link_prediction(model: nn.Module, split: LinkSplit,
                             x: Tensor | CSR) -> dict[str, float]:
    """``{"val", "test", "val_ap", "test_ap"}``: ROC-AUC and average precision."""
    return LinkPredictionTask(split, x, device=_model_device(model)).evaluate(model)


def _model_device(model: nn.Module) -> torch.device | None:
    p = next(iter(model.parameters()), None)
    return None if p is None else p.device
