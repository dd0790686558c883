"""Link-prediction split, ROC-AUC / AP metrics and the GAE-style link-prediction task."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sparselth.data import contextual_sbm, link_split
from sparselth.train import (
    GCNLinkEncoder,
    LinkPredictionTask,
    average_precision,
    link_scores,
    roc_auc,
    train_link_prediction,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs: one thread avoids waiting on descheduled OpenMP threads on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_roc_auc_hand_computed():
    # pairs (pos, neg): (.9,.4) 1, (.9,.1) 1, (.4,.4) tie 1/2, (.4,.1) 1, (.2,.4) 0, (.2,.1) 1
    pos, neg = torch.tensor([0.9, 0.4, 0.2]), torch.tensor([0.4, 0.1])
    assert roc_auc(pos, neg) == pytest.approx(4.5 / 6)
    assert roc_auc(torch.tensor([1.0]), torch.tensor([0.0])) == 1.0
    assert roc_auc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    assert roc_auc(torch.full((3,), 0.5), torch.full((4,), 0.5)) == 0.5
    # brute force over all pairs on random scores with ties
    g = torch.Generator().manual_seed(0)
    p = torch.randint(0, 5, (40,), generator=g).float()
    q = torch.randint(0, 5, (33,), generator=g).float()
    brute = ((p[:, None] > q[None]).double() + 0.5 * (p[:, None] == q[None]).double()).mean()
    assert roc_auc(p, q) == pytest.approx(float(brute))
    with pytest.raises(ValueError, match="^roc_auc: neg"):
        roc_auc(torch.ones(2), torch.ones(0))


def test_average_precision_hand_computed():
    # descending: .9 (+), .8 (-), .7 (+): AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision(torch.tensor([0.9, 0.7]), torch.tensor([0.8])) == pytest.approx(
        0.5 + 1 / 3)
    # a tie of one positive and one negative at the top: one threshold, precision 1/2
    assert average_precision(torch.tensor([0.5]), torch.tensor([0.5, 0.1])) == pytest.approx(0.5)


def test_link_scores_normalise():
    z = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    s = link_scores(z, torch.tensor([[0, 0], [1, 2]]))
    torch.testing.assert_close(s, torch.sigmoid(torch.tensor([1.0, 0.0])))


def test_link_prediction_training(graph):
    torch.manual_seed(0)
    s = link_split(graph.edge_index, graph.num_nodes, seed=0)
    enc = GCNLinkEncoder(s.train_edge_index, graph.num_features, out_dim=8, hidden=16,
                         num_nodes=graph.num_nodes)
    assert enc.adjacency().nnz == s.train_edge_index.size(1)
    res = train_link_prediction(enc, s, graph.x, epochs=30, lr=0.01)
    assert res.metric == "auc" and 0 <= res.best_epoch < 30
    assert res.best_val == max(res.val_history)
    assert res.test == res.test_history[res.best_epoch]
    assert res.test > 0.6  # a homophilous SBM is easy to beat chance on
    assert set(res.extra) == {"val_ap", "test_ap"}
    task = LinkPredictionTask(s, graph.x)
    loss = task.loss(enc)
    assert loss.ndim == 0 and torch.isfinite(loss)


def _ap_brute(pos: list[float], neg: list[float]) -> float:
    """Average precision by its definition: a step per distinct threshold, high to low."""
    scores = sorted(set(pos) | set(neg), reverse=True)
    ap, prev_recall = 0.0, 0.0
    for t in scores:
        tp = sum(p >= t for p in pos)
        fp = sum(q >= t for q in neg)
        recall = tp / len(pos)
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return ap


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12),
       st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_auc_ap_fuzz(pos, neg):
    p, q = torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32)
    brute = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert roc_auc(p, q) == pytest.approx(brute)
    assert average_precision(p, q) == pytest.approx(_ap_brute(pos, neg))
