"""GraphCL's graph augmentations (You et al., NeurIPS 2020, arXiv 2010.13902), vectorised over a
whole :class:`~sparselth.sparse.GraphBatch` (no loop per graph) and seeded by a
``torch.Generator``.

Every augmentation draws one uniform key per node (or per stored entry) and acts, inside each
graph, on the elements of lowest key: the ``k`` lowest-keyed nodes of a graph are a uniform
sample without replacement, so one sort of the batch does what the reference codes do graph by
graph. ``k = floor(ratio * n)`` per graph. ``active`` (``(B,)`` bool) restricts an
augmentation to some graphs (the others come back unchanged); the random2/3/4 mixtures use it.

* :func:`drop_nodes`: delete ``floor(ratio n)`` nodes with their features and edges (renumbering
  the rest), keeping at least one node of a non-empty graph;
* :func:`perturb_edges`: delete ``m = floor(ratio E)`` stored (directed) entries and, with
  ``add``, insert ``m`` uniform random ordered pairs of the graph (self pairs possible; an added
  pair already present is stored once). ``add=False`` is the removal-only variant of the
  unsupervised TU code;
* :func:`mask_attributes`: ``floor(ratio n)`` nodes get their feature row replaced by the graph's
  mean feature row (``fill="mean"``), zeros, or N(0.5, 0.5^2) noise (``"gaussian"``);
* :func:`subgraph`: grow a connected node set from a random start node, breadth-first with a
  random order inside each layer, until it holds ``n - floor(ratio n)`` nodes
  (``size="complement"``) or ``floor(ratio n) + 1`` (``size="ratio"``, the TU codes) or the
  frontier is empty; keep the induced subgraph. ``one_hop=True`` reproduces the reference TU
  codes' quirk (candidates only from the start node's neighbours; upstream issue #24).

Neighbours of node ``v`` are the targets of its edges (the rows ``i`` with ``adj[i, v]`` stored),
as in the reference's ``edge_index[1][edge_index[0] == v]``.

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> v1, v2 = graphcl_views(batch, "random4", generator=g)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

from ..sparse.batch import GraphBatch, segment_rank

Tensor = torch.Tensor

__all__ = ["AugmentConfig", "AUGMENTATIONS", "drop_nodes", "perturb_edges", "mask_attributes",
           "subgraph", "drop_isolated", "augment", "graphcl_views", "per_graph_counts"]

AUGMENTATIONS = ("none", "dnodes", "pedges", "subgraph", "mask_nodes", "random2", "random3",
                 "random4")
_ALIASES = {"node_drop": "dnodes", "drop_nodes": "dnodes", "edge_perturb": "pedges",
            "perturb_edges": "pedges", "attr_mask": "mask_nodes", "mask_attributes": "mask_nodes",
            "identity": "none"}
_MIXTURES = {"random2": ("dnodes", "subgraph"), "random3": ("dnodes", "subgraph", "pedges"),
             "random4": ("dnodes", "subgraph", "pedges", "mask_nodes")}
_FILLS = ("mean", "zero", "gaussian")
_SIZES = ("complement", "ratio")


@dataclass(frozen=True)
class AugmentConfig:
    """Ratios and reference-code variants (PAPERS.md §3.3). Defaults follow the paper and the
    semi-supervised TU code: ratio 0.2 for every augmentation, edges removed *and* added, both
    views augmented.

    Attributes:
        ratio: default fraction for every augmentation.
        node_ratio, edge_ratio, mask_ratio, subgraph_ratio: per-augmentation overrides.
        edge_add: insert as many random pairs as removed (False: removal only).
        mask_fill: ``"mean"``, ``"zero"`` or ``"gaussian"`` (N(0.5, 0.5^2)).
        subgraph_size: ``"complement"`` (keep ``n - floor(r n)``) or ``"ratio"`` (``floor(r n)+1``).
        original_first: the first view is the un-augmented graph (unsupervised TU code).
        drop_isolated: after node dropping, subgraph and the mixtures, delete self loops and
            the nodes left without edges (the unsupervised TU code's training loop), keeping
            one node of a graph that would be emptied.
        reference_quirks: the one-hop subgraph of the reference TU codes.
    """

    ratio: float = 0.2
    node_ratio: Optional[float] = None
    edge_ratio: Optional[float] = None
    mask_ratio: Optional[float] = None
    subgraph_ratio: Optional[float] = None
    edge_add: bool = True
    mask_fill: str = "mean"
    subgraph_size: str = "complement"
    original_first: bool = False
    drop_isolated: bool = False
    reference_quirks: bool = False

    def __post_init__(self):
        for name in ("ratio", "node_ratio", "edge_ratio", "mask_ratio", "subgraph_ratio"):
            v = getattr(self, name)
            if v is not None:
                _check_ratio("AugmentConfig", name, v)
        if self.mask_fill not in _FILLS:
            raise ValueError(f"AugmentConfig: mask_fill must be one of {_FILLS}, got "
                             f"{self.mask_fill!r}")
        if self.subgraph_size not in _SIZES:
            raise ValueError(f"AugmentConfig: subgraph_size must be one of {_SIZES}, got "
                             f"{self.subgraph_size!r}")

    def of(self, kind: str) -> float:
        """The ratio used by augmentation ``kind``."""
        own = {"dnodes": self.node_ratio, "pedges": self.edge_ratio, "mask_nodes": self.mask_ratio,
               "subgraph": self.subgraph_ratio}[kind]
        return self.ratio if own is None else own

    @classmethod
    def reference(cls, code: str) -> "AugmentConfig":
        """The settings of a reference code base: ``"unsupervised_TU"`` (10 % ratios, 20 %
        subgraph, removal-only edges, Gaussian masks, original first view, isolated nodes and
        self loops dropped after node-removing augmentations, one-hop subgraph) or
        ``"semisupervised_TU"`` (20 % everywhere, mean masks, one-hop subgraph)."""
        if code == "unsupervised_TU":
            return cls(ratio=0.1, subgraph_ratio=0.2, edge_add=False, mask_fill="gaussian",
                       subgraph_size="ratio", original_first=True, drop_isolated=True,
                       reference_quirks=True)
        if code == "semisupervised_TU":
            return cls(ratio=0.2, mask_fill="mean", subgraph_size="ratio", reference_quirks=True)
        raise ValueError(f"AugmentConfig.reference: code must be 'unsupervised_TU' or "
                         f"'semisupervised_TU', got {code!r}")

    def with_(self, **changes) -> "AugmentConfig":
        return replace(self, **changes)


def _check_ratio(fn: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{fn}: {name} must be a number in [0, 1], got {v!r}")
    return float(v)


def _check(fn: str, batch, generator, active) -> Tensor:
    if not isinstance(batch, GraphBatch):
        raise TypeError(f"{fn}: batch must be a GraphBatch, got {type(batch).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    B = batch.num_graphs
    if active is None:
        return torch.ones(B, dtype=torch.bool, device=batch.device)
    if not isinstance(active, Tensor) or active.dtype != torch.bool or active.shape != (B,):
        raise TypeError(f"{fn}: active must be a bool tensor of shape ({B},)")
    return active.to(batch.device)


def _rand(n: int, generator: Optional[torch.Generator], device) -> Tensor:
    """``n`` uniform keys drawn on the generator's device, moved to ``device``."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=gdev, dtype=torch.float64).to(device)


def per_graph_counts(ratio: float, n: Tensor) -> Tensor:
    """``floor(ratio * n)`` per graph, computed in float64 as Python's ``int(ratio * n)``."""
    return torch.floor(ratio * n.to(torch.float64)).long()


def drop_nodes(batch: GraphBatch, ratio: float = 0.2, *,
               generator: Optional[torch.Generator] = None,
               active: Optional[Tensor] = None) -> GraphBatch:
    """Delete ``min(floor(ratio n), n - 1)`` uniformly chosen nodes of each (active) graph with
    their features and edges. Draws ``N`` keys."""
    fn = "drop_nodes"
    active = _check(fn, batch, generator, active)
    ratio = _check_ratio(fn, "ratio", ratio)
    keys = _rand(batch.num_nodes, generator, batch.device)
    n = batch.counts
    k = torch.minimum(per_graph_counts(ratio, n), (n - 1).clamp_min(0)) * active
    rank = segment_rank(keys, batch.batch)
    return batch.keep_nodes(rank >= k[batch.batch])


def perturb_edges(batch: GraphBatch, ratio: float = 0.2, *, add: bool = True,
                  generator: Optional[torch.Generator] = None,
                  active: Optional[Tensor] = None) -> GraphBatch:
    """Delete ``m = floor(ratio E)`` uniformly chosen stored entries of each (active) graph and,
    with ``add``, insert ``m`` uniform random ordered pairs of its nodes. Draws ``nnz`` keys, then
    (with ``add``) ``M`` source keys and ``M`` target keys, ``M`` the total of the ``m``, in
    graph order."""
    fn = "perturb_edges"
    active = _check(fn, batch, generator, active)
    ratio = _check_ratio(fn, "ratio", ratio)
    if batch.adj.val is not None:
        raise ValueError(f"{fn}: batch.adj must be a pattern (val None)")
    keys = _rand(batch.adj.nnz, generator, batch.device)
    eptr = batch.edge_ptr
    m = per_graph_counts(ratio, eptr[1:] - eptr[:-1]) * active
    eb = batch.edge_batch()
    out = batch.keep_entries(segment_rank(keys, eb) >= m[eb])
    if not add:
        return out
    M = int(m.sum())
    u, v = _rand(M, generator, batch.device), _rand(M, generator, batch.device)
    g = torch.repeat_interleave(torch.arange(batch.num_graphs, device=batch.device), m,
                                output_size=M)
    n = batch.counts[g].to(torch.float64)
    hi = (batch.counts[g] - 1).clamp_min(0)
    row = batch.ptr[g] + torch.minimum(torch.floor(u * n).long(), hi)
    col = batch.ptr[g] + torch.minimum(torch.floor(v * n).long(), hi)
    return out.add_entries(row, col)


def mask_attributes(batch: GraphBatch, ratio: float = 0.2, *, fill: str = "mean",
                    generator: Optional[torch.Generator] = None,
                    active: Optional[Tensor] = None) -> GraphBatch:
    """Replace the feature rows of ``floor(ratio n)`` uniformly chosen nodes of each (active)
    graph by ``fill``: the graph's mean row, zeros, or N(0.5, 0.5^2) noise. Draws ``N`` keys,
    then (``"gaussian"``) one normal per masked feature, masked nodes in node order."""
    fn = "mask_attributes"
    active = _check(fn, batch, generator, active)
    ratio = _check_ratio(fn, "ratio", ratio)
    if fill not in _FILLS:
        raise ValueError(f"{fn}: fill must be one of {_FILLS}, got {fill!r}")
    keys = _rand(batch.num_nodes, generator, batch.device)
    k = per_graph_counts(ratio, batch.counts) * active
    masked = segment_rank(keys, batch.batch) < k[batch.batch]
    x = batch.x
    if fill == "zero":
        new = torch.zeros_like(x)
    elif fill == "mean":
        sums = torch.zeros(batch.num_graphs, x.shape[1], dtype=x.dtype, device=x.device)
        sums.index_add_(0, batch.batch, x)
        new = (sums / batch.counts.clamp_min(1).to(x.dtype).unsqueeze(1))[batch.batch]
    else:
        gdev = generator.device if generator is not None else torch.device("cpu")
        noise = torch.normal(0.5, 0.5, (int(masked.sum()), x.shape[1]), generator=generator,
                             device=gdev, dtype=torch.float64).to(x.device, x.dtype)
        new = torch.zeros_like(x)
        new[masked] = noise
    return batch.with_x(torch.where(masked.unsqueeze(1), new, x))


def subgraph(batch: GraphBatch, ratio: float = 0.2, *, size: str = "complement",
             one_hop: bool = False, generator: Optional[torch.Generator] = None,
             active: Optional[Tensor] = None) -> GraphBatch:
    """Keep, in each (active) graph, a connected node set grown breadth-first from a random start
    node (the lowest key), adding the lowest-keyed frontier nodes while the set is smaller than
    its target (see the module docstring); the induced subgraph. Draws ``N`` keys. The loop runs
    once per BFS layer for the whole batch (at most the largest graph's depth)."""
    fn = "subgraph"
    active = _check(fn, batch, generator, active)
    ratio = _check_ratio(fn, "ratio", ratio)
    if size not in _SIZES:
        raise ValueError(f"{fn}: size must be one of {_SIZES}, got {size!r}")
    keys = _rand(batch.num_nodes, generator, batch.device)
    n, b = batch.counts, batch.batch
    r = per_graph_counts(ratio, n)
    target = (n - r) if size == "complement" else (r + 1)
    target = torch.where(active, torch.minimum(target.clamp_min(1), n), n)
    rank = segment_rank(keys, b)
    visited = (rank == 0) | ~active[b]
    size_now = torch.zeros_like(n).index_add_(0, b, visited.long())
    row, col = batch.adj.row(), batch.adj.col.long()
    hit = torch.zeros_like(visited)
    new = visited & active[b]                 # nodes whose neighbours are not yet scanned
    while True:
        scan = new[col]
        hit[row[scan]] = True
        need = (target - size_now).clamp_min(0)
        cand = (hit & ~visited).nonzero().squeeze(1)
        cand = cand[need[b[cand]] > 0]
        if cand.numel() == 0:
            break
        crank = segment_rank(keys[cand], b[cand])
        add = cand[crank < need[b[cand]]]
        new = torch.zeros_like(visited)
        new[add] = True
        visited = visited | new
        size_now = size_now + torch.zeros_like(n).index_add_(0, b[add], torch.ones_like(add))
        if one_hop:
            break
    return batch.keep_nodes(visited)


def augment(batch: GraphBatch, kind: str, config: AugmentConfig = AugmentConfig(), *,
            generator: Optional[torch.Generator] = None) -> GraphBatch:
    """One augmented view of every graph: ``kind`` is one of :data:`AUGMENTATIONS`. A mixture
    ``randomK`` picks one augmentation per graph uniformly (one ``randint`` per graph, then each
    member augmentation runs on the graphs that picked it, in the mixture's order)."""
    fn = "augment"
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"{fn}: config must be an AugmentConfig, got {type(config).__name__}")
    if not isinstance(kind, str) or _ALIASES.get(kind, kind) not in AUGMENTATIONS:
        raise ValueError(f"{fn}: kind must be one of {AUGMENTATIONS}, got {kind!r}")
    kind = _ALIASES.get(kind, kind)
    _check(fn, batch, generator, None)
    if kind == "none":
        return batch
    if kind in _MIXTURES:
        members = _MIXTURES[kind]
        gdev = generator.device if generator is not None else torch.device("cpu")
        pick = torch.randint(len(members), (batch.num_graphs,), generator=generator,
                             device=gdev).to(batch.device)
        for i, member in enumerate(members):
            batch = _one(batch, member, config, generator, pick == i)
    else:
        batch = _one(batch, kind, config, generator, None)
    if config.drop_isolated and kind in ("dnodes", "subgraph", *_MIXTURES):
        batch = drop_isolated(batch)
    return batch


def drop_isolated(batch: GraphBatch) -> GraphBatch:
    """Delete self loops, then every node without an edge; a graph that would be emptied keeps
    its first node. (The unsupervised TU code's clean-up after node-removing augmentations,
    without its empty graphs.)"""
    if not isinstance(batch, GraphBatch):
        raise TypeError(f"drop_isolated: batch must be a GraphBatch, got {type(batch).__name__}")
    row, col = batch.adj.row(), batch.adj.col.long()
    batch = batch.keep_entries(row != col)
    row, col = batch.adj.row(), batch.adj.col.long()
    keep = torch.zeros(batch.num_nodes, dtype=torch.bool, device=batch.device)
    keep[row] = True
    keep[col] = True
    kept = torch.zeros_like(batch.counts).index_add_(0, batch.batch, keep.long())
    rescue = (kept == 0) & (batch.counts > 0)
    keep[batch.ptr[:-1][rescue]] = True
    return batch.keep_nodes(keep)


def _one(batch, kind, config, generator, active):
    ratio = config.of(kind)
    if kind == "dnodes":
        return drop_nodes(batch, ratio, generator=generator, active=active)
    if kind == "pedges":
        return perturb_edges(batch, ratio, add=config.edge_add, generator=generator, active=active)
    if kind == "mask_nodes":
        return mask_attributes(batch, ratio, fill=config.mask_fill, generator=generator,
                               active=active)
    return subgraph(batch, ratio, size=config.subgraph_size, one_hop=config.reference_quirks,
                    generator=generator, active=active)


def graphcl_views(batch: GraphBatch, aug1: str, aug2: Optional[str] = None,
                  config: AugmentConfig = AugmentConfig(), *,
                  generator: Optional[torch.Generator] = None) -> Tuple[GraphBatch, GraphBatch]:
    """The two views GraphCL contrasts: ``augment(batch, aug1)`` and ``augment(batch, aug2)``
    (``aug2`` defaults to ``aug1``); with ``config.original_first`` the first view is ``batch``
    itself, as in the unsupervised TU code."""
    aug2 = aug1 if aug2 is None else aug2
    v1 = batch if config.original_first else augment(batch, aug1, config, generator=generator)
    v2 = augment(batch, aug2, config, generator=generator)
    return v1, v2
