"""GraphBatch: graphs as one block-diagonal CSR; collation, selection and the edits the
augmentations use, against per-graph references (hypothesis-fuzzed)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth.sparse import CSR, Graph, GraphBatch
from sparselth.sparse.batch import segment_rank

from ..pretrain._batches import edge_set, random_batch


def _edges(adj):
    return sorted(edge_set(adj))


def test_graph_batch_round_trip_and_validation():
    g = Graph(torch.arange(6.).reshape(3, 2), CSR.from_edge_index(torch.tensor([[0, 2], [1, 0]])))
    b = GraphBatch.from_graphs([g, Graph(torch.zeros(0, 2), CSR.from_edge_index(
        torch.zeros(2, 0, dtype=torch.long), 0)), g])
    assert b.counts.tolist() == [3, 0, 3] and b.edge_ptr.tolist() == [0, 2, 2, 4]
    for i, h in enumerate(b.to_graphs()):
        want = [g, None, g][i]
        if want is not None:
            assert torch.equal(h.x, want.x) and _edges(h.adj) == _edges(want.adj)
    assert b.select(torch.tensor([2, 1])).counts.tolist() == [3, 0]
    bad = CSR.from_edge_index(torch.tensor([[0], [4]]), 6)
    with pytest.raises(ValueError, match="block-diagonal"):
        GraphBatch(torch.zeros(6, 1), bad, torch.tensor([0, 3, 6]))
    with pytest.raises(ValueError, match="ptr"):
        GraphBatch(torch.zeros(6, 1), bad, torch.tensor([0, 3, 5]))
    with pytest.raises(ValueError, match="index"):
        b.select(torch.tensor([3]))
    with pytest.raises(ValueError, match="feature widths"):
        GraphBatch.from_graphs([g, Graph(torch.zeros(1, 3), CSR.from_edge_index(
            torch.zeros(2, 0, dtype=torch.long), 1))])


@given(sizes=st.lists(st.integers(0, 7), min_size=1, max_size=6), seed=st.integers(0, 999),
       data=st.data())
def test_select_and_keep_nodes_match_per_graph_references(sizes, seed, data):
    b = random_batch(sizes, p=0.4, seed=seed, self_loops=True)
    idx = data.draw(st.lists(st.integers(0, len(sizes) - 1), max_size=8))
    sel = b.select(torch.tensor(idx, dtype=torch.long))
    want = [b.graph(i) for i in idx]
    assert sel.num_graphs == len(idx)
    for j, g in enumerate(want):
        h = sel.graph(j)
        assert torch.equal(h.x, g.x) and _edges(h.adj) == _edges(g.adj) and int(h.y) == int(g.y)
    keep = torch.rand(b.num_nodes, generator=torch.Generator().manual_seed(seed)) < 0.6
    kb = b.keep_nodes(keep)
    GraphBatch(kb.x, kb.adj, kb.ptr, kb.y)                    # valid and block-diagonal
    kb.adj._validate()
    for i in range(b.num_graphs):
        lo = int(b.ptr[i])
        kept = [v for v in range(b.graph(i).num_nodes) if keep[lo + v]]
        new = {v: j for j, v in enumerate(kept)}
        ref = {(new[r], new[c]) for r, c in edge_set(b.graph(i).adj) if r in new and c in new}
        assert edge_set(kb.graph(i).adj) == ref
        assert torch.equal(kb.graph(i).x, b.graph(i).x[kept])


def test_segment_rank():
    keys = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.2, 0.2])
    seg = torch.tensor([0, 0, 0, 1, 1, 1])
    assert segment_rank(keys, seg).tolist() == [1, 0, 2, 2, 0, 1]     # ties by position
    assert segment_rank(torch.zeros(0), torch.zeros(0, dtype=torch.long)).numel() == 0


def test_keep_entries_and_add_entries():
    b = random_batch([4, 3], p=0.5, seed=3)
    keep = torch.arange(b.adj.nnz) % 2 == 0
    kb = b.keep_entries(keep)
    kb.adj._validate()
    assert kb.adj.nnz == int(keep.sum())
    ab = b.add_entries(torch.tensor([0, 0, 5]), torch.tensor([3, 3, 4]))
    ab.adj._validate()
    assert edge_set(ab.adj) == edge_set(b.adj) | {(0, 3), (5, 4)}
    with pytest.raises(ValueError, match="joins two graphs"):
        b.add_entries(torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(TypeError, match="keep"):
        b.keep_nodes(torch.ones(3, dtype=torch.bool))


def test_constructor_always_checks_the_blocks():
    """``validate=False`` (of older code) is ignored: an entry joining two graphs or a ``ptr``
    past the nodes is refused (pooling and message passing index by them unchecked)."""
    x = torch.ones(4, 1)
    joins = CSR.from_edge_index(torch.tensor([[0, 1], [3, 0]]), num_nodes=4)
    ok = CSR.from_edge_index(torch.tensor([[0, 2], [1, 3]]), num_nodes=4)
    ptr = torch.tensor([0, 2, 4])
    with pytest.warns(DeprecationWarning, match="ignored"):
        with pytest.raises(ValueError, match="different graphs"):
            GraphBatch(x, joins, ptr, validate=False)
    with pytest.raises(ValueError, match="ptr"):
        GraphBatch(x, ok, torch.tensor([0, 2, 9]))
    with pytest.raises(ValueError, match="ptr"):
        GraphBatch(x, ok, torch.tensor([0, 3, 2, 4]))
    assert GraphBatch(x, ok, ptr).num_graphs == 2
