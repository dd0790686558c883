"""The GFN degree features (``deg+odeg<k>``): hand-counted degrees, the capped one-hot, and the
dataset wrapper."""

from __future__ import annotations

import pytest
import torch

from sparselth.data import (GraphDataset, degree_features, node_degrees, parse_feat_str,
                            with_degree_features)
from sparselth.sparse import CSR, Graph, GraphBatch


def _star_and_path() -> GraphBatch:
    # graph 0: a star centre 0 with leaves 1..3; graph 1: a path 0-1-2 (undirected entries)
    star = torch.tensor([[0, 1, 0, 2, 0, 3], [1, 0, 2, 0, 3, 0]])
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    g0 = Graph(torch.ones(4, 2), CSR.from_edge_index(star, 4), torch.tensor(0))
    g1 = Graph(torch.zeros(3, 2), CSR.from_edge_index(path, 3), torch.tensor(1))
    return GraphBatch.from_graphs([g0, g1])


def test_degrees_and_capped_one_hot_by_hand():
    b = _star_and_path()
    assert node_degrees(b).tolist() == [3, 1, 1, 1, 1, 2, 1]
    out = degree_features(b, max_degree=2)
    assert out.num_features == 2 + 1 + 3
    x = out.x
    torch.testing.assert_close(x[:, :2], b.x)
    assert x[:, 2].tolist() == [3, 1, 1, 1, 1, 2, 1]
    # one-hot of min(deg, 2): the centre (degree 3) falls into the last column
    assert x[:, 3:].argmax(1).tolist() == [2, 1, 1, 1, 1, 2, 1]
    assert x[:, 3:].sum(1).tolist() == [1.0] * 7
    assert degree_features(b, max_degree=2, raw=False).num_features == 2 + 3


def test_out_degree_counts_what_a_node_sends():
    # one directed entry 0 -> 1, stored as adj[1, 0] (rows are targets): node 0 sends it
    g = Graph(torch.ones(2, 1), CSR.from_edge_index(torch.tensor([[1], [0]]), 2))
    assert g.adj.to_dense()[1, 0] == 1
    assert node_degrees(GraphBatch.from_graphs([g])).tolist() == [1, 0]


def test_feat_str_and_dataset_wrapper():
    assert parse_feat_str("deg+odeg100") == {"raw": True, "max_degree": 100}
    assert parse_feat_str("odeg10") == {"raw": False, "max_degree": 10}
    for bad in ("", "deg", "ak3", "odeg0", "deg+odegx"):
        with pytest.raises(ValueError):
            parse_feat_str(bad)
    b = _star_and_path()
    ds = GraphDataset("T", b, [0.0, 1.0])
    out = with_degree_features(ds, "deg+odeg100")
    assert isinstance(out, GraphDataset) and out.num_features == 2 + 1 + 101
    assert ds.num_features == 2 and out.num_classes == 2 and out.name == "T"
    assert isinstance(with_degree_features(b, "odeg10"), GraphBatch)
    with pytest.raises(TypeError):
        with_degree_features(torch.ones(3))
    with pytest.raises(ValueError, match="max_degree"):
        degree_features(b, max_degree=0)
