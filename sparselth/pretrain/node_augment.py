"""GraphCL's augmentations of one large graph, for node-level pre-training on Cora/CiteSeer
(You et al. 2020, ``unsupervised_Cora_Citeseer/aug.py``; PAPERS.md §3.3, last column).

The graph is a :class:`~sparselth.sparse.GraphBatch` of one graph (:func:`single_graph`), so
node dropping and attribute masking are those of :mod:`sparselth.pretrain.augment`. With
``p = drop_percent`` (the reference's ``--drop_percent``):

* ``"node"``: delete ``floor(p N)`` uniformly chosen nodes with their features and edges
  (:func:`~sparselth.pretrain.augment.drop_nodes`);
* ``"edge"``: :func:`perturb_undirected_edges` with ratio ``p / 4``: the graph is read as
  undirected (entries ``i < j``; self loops are left alone), ``m = floor(E_u p / 4)``
  uniformly chosen undirected edges are deleted (both directions) and ``m`` distinct
  uniformly chosen unordered pairs ``{i, j}``, ``i != j``, are inserted (both directions; a
  pair already present, or just deleted, is stored once), as the reference's
  ``aug_random_edge`` (``p = 0.2``: 5 % deleted, 5 % added);
* ``"mask"``: ``floor(p N)`` uniformly chosen nodes get an all-zero feature row
  (:func:`~sparselth.pretrain.augment.mask_attributes` with ``fill="zero"``);
* ``"subgraph"``: :func:`random_expansion_subgraph`: start at a uniformly chosen node and
  repeatedly add a uniformly chosen node of the frontier (the unvisited neighbours of *all*
  visited nodes) until ``floor((1 - p) N)`` nodes are kept or the frontier is empty; the
  induced subgraph (the reference's ``aug_subgraph``, a proper random expansion).

Draws, all from the ``torch.Generator`` given (float64 uniforms, so a test can replay them):
:func:`perturb_undirected_edges` draws ``E_u`` keys (the ``m`` lowest-keyed edges go), then
batches of ``m - found`` uniform pair indices in ``[0, N (N - 1) / 2)`` until ``m`` distinct
ones are found (a pair index ``t`` is the pair ``i > j`` with ``t = i (i - 1) / 2 + j``);
:func:`random_expansion_subgraph` draws ``floor((1 - p) N)`` uniforms: the first picks the
start node ``floor(u N)``, the ``k``-th the frontier node at position ``floor(u |F|)`` of the
frontier sorted by node id.

Example::

    >>> g = single_graph(data.x, adj)
    >>> v1, v2 = node_views(g, "subgraph", 0.2, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..sparse.batch import GraphBatch
from ..sparse.csr import CSR
from .augment import _check_ratio, _rand, drop_nodes, mask_attributes

Tensor = torch.Tensor

__all__ = ["NODE_AUGMENTATIONS", "single_graph", "perturb_undirected_edges",
           "random_expansion_subgraph", "node_augment", "node_views", "pair_from_index"]

#: the reference's ``--aug_type`` values
NODE_AUGMENTATIONS = ("edge", "mask", "node", "subgraph")


def single_graph(x: Tensor, adj: CSR) -> GraphBatch:
    """A :class:`GraphBatch` holding the one graph with dense features ``x`` ``(N, F)`` and
    pattern ``adj`` ``(N, N)`` (rows = targets; values are dropped)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise TypeError("single_graph: x must be a floating 2-D tensor (N, F)")
    if not isinstance(adj, CSR):
        raise TypeError(f"single_graph: adj must be a sparselth.CSR, got {type(adj).__name__}")
    n = x.shape[0]
    if adj.shape != (n, n):
        raise ValueError(f"single_graph: adj must have shape ({n}, {n}), got {adj.shape}")
    return GraphBatch._trusted(x, adj.with_values(None),
                               torch.tensor([0, n], dtype=torch.int64, device=x.device))


def _check_single(fn: str, g, generator) -> None:
    if not isinstance(g, GraphBatch):
        raise TypeError(f"{fn}: g must be a GraphBatch (see single_graph), got "
                        f"{type(g).__name__}")
    if g.num_graphs != 1:
        raise ValueError(f"{fn}: g must hold exactly one graph, got {g.num_graphs}")
    if g.adj.val is not None:
        raise ValueError(f"{fn}: g.adj must be a pattern (val None)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")


def pair_from_index(t: Tensor) -> Tuple[Tensor, Tensor]:
    """The unordered pair ``(i, j)``, ``i > j``, of pair index ``t = i (i - 1) / 2 + j``
    (int64 tensors; exact, the float square root is corrected)."""
    t = t.long()
    i = torch.floor((1 + torch.sqrt(1 + 8 * t.double())) / 2).long()
    i = torch.where(i * (i - 1) // 2 > t, i - 1, i)
    i = torch.where((i + 1) * i // 2 <= t, i + 1, i)
    return i, t - i * (i - 1) // 2


def perturb_undirected_edges(g: GraphBatch, ratio: float, *,
                             generator: Optional[torch.Generator] = None) -> GraphBatch:
    """Delete ``m = floor(ratio E_u)`` uniformly chosen undirected edges of the symmetric
    one-graph ``g`` (``E_u`` = stored entries with row < col) in both directions, then insert
    ``m`` distinct uniformly chosen unordered pairs ``i != j`` in both directions. Self loops
    stay. See the module docstring for the draws."""
    fn = "perturb_undirected_edges"
    _check_single(fn, g, generator)
    ratio = _check_ratio(fn, "ratio", ratio)
    adj, n = g.adj, g.num_nodes
    row, col = adj.row(), adj.col.long()
    key = row * n + col
    if not torch.equal(torch.sort(key).values, torch.sort(col * n + row).values):
        raise ValueError(f"{fn}: g.adj must be symmetric (an undirected graph)")
    upper = (row < col).nonzero().squeeze(1)
    keys = _rand(upper.numel(), generator, g.device)
    m = int(np.floor(ratio * upper.numel()))
    drop = upper[torch.sort(keys, stable=True).indices[:m]]
    gone = torch.isin(key, torch.cat([key[drop], col[drop] * n + row[drop]]))
    out = g.keep_entries(~gone)
    pairs = n * (n - 1) // 2
    m_add = min(m, pairs)
    found = torch.zeros(0, dtype=torch.long, device=g.device)
    while found.numel() < m_add:
        u = _rand(m_add - found.numel(), generator, g.device)
        t = torch.minimum(torch.floor(u * pairs).long(), torch.tensor(pairs - 1))
        cand = torch.cat([found, t])
        # first occurrences, in draw order
        uniq, inv = torch.unique(cand, return_inverse=True)
        first = torch.full((uniq.numel(),), cand.numel(), dtype=torch.long, device=g.device)
        first.scatter_reduce_(0, inv, torch.arange(cand.numel(), device=g.device), "amin")
        found = cand[torch.sort(first).values]
    i, j = pair_from_index(found)
    return out.add_entries(torch.cat([i, j]), torch.cat([j, i]))


def random_expansion_subgraph(g: GraphBatch, ratio: float, *,
                              generator: Optional[torch.Generator] = None) -> GraphBatch:
    """The subgraph induced by a random expansion of ``floor((1 - ratio) N)`` nodes of the
    one-graph ``g`` (module docstring). Runs one step per kept node (O(N) each)."""
    fn = "random_expansion_subgraph"
    _check_single(fn, g, generator)
    ratio = _check_ratio(fn, "ratio", ratio)
    n = g.num_nodes
    target = int(np.floor((1.0 - ratio) * n))
    keep = torch.zeros(n, dtype=torch.bool, device=g.device)
    if target < 1 or n == 0:
        if n:
            keep[0] = True  # a graph is never emptied
        return g.keep_nodes(keep)
    u = _rand(target, generator, torch.device("cpu")).numpy()
    rowptr, col = g.adj.rowptr.long().cpu().numpy(), g.adj.col.long().cpu().numpy()
    visited = np.zeros(n, dtype=bool)
    frontier = np.zeros(n, dtype=bool)
    node = min(int(np.floor(u[0] * n)), n - 1)
    for k in range(1, target + 1):
        visited[node] = True
        frontier[node] = False
        nb = col[rowptr[node]:rowptr[node + 1]]
        frontier[nb[~visited[nb]]] = True
        if k == target:
            break
        cand = np.flatnonzero(frontier)
        if cand.size == 0:
            break
        node = int(cand[min(int(np.floor(u[k] * cand.size)), cand.size - 1)])
    keep = torch.from_numpy(visited).to(g.device)
    return g.keep_nodes(keep)


def node_augment(g: GraphBatch, kind: str, drop_percent: float = 0.2, *,
                 generator: Optional[torch.Generator] = None) -> GraphBatch:
    """One augmented view of the one-graph ``g``: ``kind`` in :data:`NODE_AUGMENTATIONS`,
    ``drop_percent`` the reference's ``p`` (see the module docstring for what each does)."""
    fn = "node_augment"
    _check_single(fn, g, generator)
    if kind not in NODE_AUGMENTATIONS:
        raise ValueError(f"{fn}: kind must be one of {NODE_AUGMENTATIONS}, got {kind!r}")
    p = _check_ratio(fn, "drop_percent", drop_percent)
    if kind == "node":
        return drop_nodes(g, p, generator=generator)
    if kind == "mask":
        return mask_attributes(g, p, fill="zero", generator=generator)
    if kind == "edge":
        return perturb_undirected_edges(g, p / 2 / 2, generator=generator)
    return random_expansion_subgraph(g, p, generator=generator)


def node_views(g: GraphBatch, kind: str, drop_percent: float = 0.2, *,
               generator: Optional[torch.Generator] = None) -> Tuple[GraphBatch, GraphBatch]:
    """The two independently augmented views (same ``kind``) that node-level GraphCL
    contrasts with the original graph."""
    v1 = node_augment(g, kind, drop_percent, generator=generator)
    return v1, node_augment(g, kind, drop_percent, generator=generator)
