"""Graph training loops: link scores, GAE-style link prediction and node classification with
model selection by the best validation metric."""

from __future__ import annotations

import pytest
import torch

from sparselth.data import contextual_sbm, link_split
from sparselth.models import GCN
from sparselth.sparse.csr import CSR
from sparselth.train import (
    GCNLinkEncoder,
    LinkPredictionTask,
    NodeClassificationTask,
    evaluate_node_classification,
    link_scores,
    node_features,
    train_link_prediction,
    train_node_classification,
)


@pytest.fixture(scope="module")
def graph():
    return contextual_sbm(120, num_classes=3, avg_degree=6, num_features=8, seed=3,
                          train_per_class=5, num_val=20, num_test=40)


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


def test_node_classification_selects_the_best_validation_epoch(graph):
    torch.manual_seed(0)
    A = CSR.from_edge_index(graph.edge_index.flip(0), num_nodes=graph.num_nodes)
    model = GCN(A, graph.num_features, graph.num_classes, hidden=16)
    res = train_node_classification(model, graph, epochs=20, lr=0.05)
    assert res.metric == "acc" and 0 <= res.best_epoch < 20 and res.seconds > 0
    assert res.best_val == max(res.val_history)
    assert res.test == res.test_history[res.best_epoch]
    model.load_state_dict(res.best_state)
    ev = evaluate_node_classification(model, graph)
    assert ev["val"] == res.best_val and ev["test"] == res.test
    assert model.training  # evaluation restores the mode
    assert set(NodeClassificationTask(graph).evaluate(model)) == {"train", "val", "test"}


def test_node_features_as_csr_when_sparse():
    x = torch.zeros(10, 20)
    x[0, 3] = 1.0
    assert isinstance(node_features(x), CSR)
    assert isinstance(node_features(torch.ones(10, 20)), torch.Tensor)
