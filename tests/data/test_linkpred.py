"""Link-prediction split: held-out edges that keep the components, non-edge negatives, seeding
and the reference procedure (one component count per edge) as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sparselth.data import contextual_sbm, link_split


def _components(n: int, pairs: np.ndarray) -> int:
    m = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(n, n))
    return connected_components(m, directed=False)[0]


def _keys(pairs: torch.Tensor, n: int) -> set[int]:
    return set((pairs[0] * n + pairs[1]).tolist())


def _naive_split(ei: np.ndarray, n: int, val: float, test: float, seed: int):
    """The reference procedure, literally: one component count per candidate edge."""
    a, b = np.minimum(ei[0], ei[1]), np.maximum(ei[0], ei[1])
    keep = a != b
    keys = np.unique(a[keep] * n + b[keep])
    e = keys.size
    nt, nv = int(np.floor(e * test)), int(np.floor(e * val))
    order = keys[np.random.default_rng(seed).permutation(e)]
    alive = np.ones(e, bool)
    base = _components(n, np.stack([order // n, order % n]))
    t, v = [], []
    for i in range(e):
        if len(t) == nt and len(v) == nv:
            break
        alive[i] = False
        rest = order[alive]
        if _components(n, np.stack([rest // n, rest % n])) > base:
            alive[i] = True
            continue
        (t if len(t) < nt else v).append(int(order[i]))
    return sorted(t), sorted(v)


@pytest.fixture(scope="module")
def graph():
    return contextual_sbm(120, num_classes=3, avg_degree=6, num_features=8, seed=3,
                          train_per_class=5, num_val=20, num_test=40)


def test_split_properties(graph):
    n = graph.num_nodes
    ei = graph.edge_index
    with_loops = torch.cat([ei, torch.tensor([[0, 5], [0, 5]])], 1)  # self loops are dropped
    s = link_split(with_loops, n, val=0.05, test=0.10, seed=7)
    e = s.info["undirected_edges"]
    assert e == ei.size(1) // 2 and s.info["self_loops_dropped"] == 2
    assert s.test_pos.size(1) == int(np.floor(e * 0.10)) == s.test_neg.size(1)
    assert s.val_pos.size(1) == int(np.floor(e * 0.05)) == s.val_neg.size(1)
    assert s.train_pos.size(1) + s.val_pos.size(1) + s.test_pos.size(1) == e
    edges = _keys(torch.stack([ei.min(0).values, ei.max(0).values]), n)
    parts = {k: _keys(getattr(s, k), n) for k in
             ("train_pos", "val_pos", "test_pos", "val_neg", "test_neg")}
    for k, v in parts.items():
        assert len(v) == getattr(s, k).size(1), f"{k} has duplicates"
        p = getattr(s, k)
        assert bool((p[0] < p[1]).all()), f"{k}: pairs must be (i < j), no self loops"
    assert parts["train_pos"] | parts["val_pos"] | parts["test_pos"] == edges
    assert not parts["train_pos"] & parts["val_pos"] and not parts["val_pos"] & parts["test_pos"]
    assert not parts["train_pos"] & parts["test_pos"]
    assert not (parts["val_neg"] | parts["test_neg"]) & edges, "negatives must be non-edges"
    assert not parts["val_neg"] & parts["test_neg"]
    # the training graph: both directions, and the same components as the full graph
    t = s.train_edge_index
    assert t.size(1) == 2 * s.train_pos.size(1)
    assert _keys(t, n) == _keys(t.flip(0), n)
    assert _components(n, t.numpy()) == _components(n, ei.numpy())


def test_split_seeded(graph):
    a = link_split(graph.edge_index, graph.num_nodes, seed=1)
    b = link_split(graph.edge_index, graph.num_nodes, seed=1)
    c = link_split(graph.edge_index, graph.num_nodes, seed=2)
    for k in ("train_edge_index", "val_pos", "val_neg", "test_pos", "test_neg"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    assert not torch.equal(a.test_pos, c.test_pos)


@pytest.mark.parametrize("seed", range(12))
def test_split_matches_one_component_count_per_edge(seed):
    g = np.random.default_rng(seed)
    n = int(g.integers(6, 30))
    ei = g.integers(0, n, (2, int(g.integers(n, 4 * n))))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # forests cannot spare every edge asked
        try:
            s = link_split(torch.from_numpy(ei), n, val=0.2, test=0.3, seed=seed)
        except ValueError as e:  # too dense to draw the negatives: a legitimate refusal
            assert "negatives" in str(e)
            return
    t, v = _naive_split(ei, n, 0.2, 0.3, seed)
    assert sorted(_keys(s.test_pos, n)) == t
    assert sorted(_keys(s.val_pos, n)) == v


def test_split_bad_input():
    with pytest.raises(ValueError, match="^link_split: edge_index"):
        link_split(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="^link_split: edge_index"):
        link_split(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="^link_split: val"):
        link_split(torch.zeros(2, 4, dtype=torch.long), val=1.5)
    with pytest.raises(ValueError, match="^link_split: num_nodes"):
        link_split(torch.tensor([[0, 9], [9, 0]]), num_nodes=3)
