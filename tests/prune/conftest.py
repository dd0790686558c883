"""Shared fixtures of the UGS tests: a small contextual SBM graph and its adjacency."""

from __future__ import annotations

import pytest

from sparselth.data import contextual_sbm
from sparselth.sparse import CSR


@pytest.fixture(scope="module")
def data():
    return contextual_sbm(60, num_classes=3, avg_degree=6, num_features=12, seed=0,
                          train_per_class=5, num_val=15, num_test=20)


@pytest.fixture(scope="module")
def adj(data):
    return CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
