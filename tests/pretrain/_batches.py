"""Small random batches of graphs for the GraphCL tests, and per-graph views of them."""

from __future__ import annotations

import torch

from sparselth.sparse import CSR, Graph, GraphBatch


def random_batch(sizes, p=0.4, num_features=3, seed=0, self_loops=False) -> GraphBatch:
    """Graphs of ``sizes`` nodes with directed entries drawn with probability ``p`` (made
    symmetric), small-integer features (exact comparisons) and labels 0/1."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for i, n in enumerate(sizes):
        dense = (torch.rand(n, n, generator=g) < p)
        dense = dense | dense.t()
        if not self_loops:
            dense.fill_diagonal_(False)
        adj = CSR.from_dense(dense.float(), keep_values=False)
        x = torch.randint(0, 4, (n, num_features), generator=g).float()
        graphs.append(Graph(x, adj, torch.tensor(i % 2)))
    return GraphBatch.from_graphs(graphs)


def edge_set(adj: CSR) -> set:
    ei = adj.to_edge_index()
    return set(zip(ei[0].tolist(), ei[1].tolist()))
