"""Node-level GraphCL augmentations of one graph: each against a slow per-node reference that
replays the same random draws (so the results compare exactly), plus invariants."""

from __future__ import annotations

import math

import pytest
import torch

from sparselth import CSR
from sparselth.pretrain import (drop_nodes, node_augment, node_views, pair_from_index,
                                perturb_undirected_edges, random_expansion_subgraph,
                                single_graph)
from sparselth.sparse import GraphBatch

from ._batches import edge_set


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _graph(n, p, seed, loops=()):
    """A random undirected graph on ``n`` nodes (edge probability ``p``, optional self loops)
    with random features; several components for small ``p``."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    a = upper | upper.t()
    for v in loops:
        a[v, v] = True
    r, c = a.nonzero(as_tuple=True)
    adj = CSR.from_coo(r, c, None, (n, n))
    return single_graph(torch.rand(n, 4, generator=g), adj)


def _induced(graph, kept):
    new = {v: i for i, v in enumerate(kept)}
    edges = {(new[i], new[j]) for i, j in edge_set(graph.adj) if i in new and j in new}
    return graph.x[kept], edges


# --------------------------------------------------------------------------- edge perturbation


def _perturb_reference(graph, ratio, seed):
    """Per edge, in python: the undirected edges in CSR order, the m lowest keys deleted; pair
    indices drawn in batches, duplicates skipped, read from the reference's list of pairs."""
    gen = _gen(seed)
    n = graph.num_nodes
    edges = edge_set(graph.adj)
    order = [(i, j) for i, j in sorted(edges) if i < j]
    keys = torch.rand(len(order), generator=gen, dtype=torch.float64).tolist()
    m = math.floor(ratio * len(order))
    ranked = sorted(range(len(order)), key=lambda k: (keys[k], k))
    for k in ranked[:m]:
        i, j = order[k]
        edges.discard((i, j))
        edges.discard((j, i))
    pairs = [(i, j) for i in range(n) for j in range(i)]   # the reference's list
    want, found = min(m, len(pairs)), []
    while len(found) < want:
        for u in torch.rand(want - len(found), generator=gen, dtype=torch.float64).tolist():
            t = min(math.floor(u * len(pairs)), len(pairs) - 1)
            if t not in found:
                found.append(t)
    for t in found:
        i, j = pairs[t]
        edges |= {(i, j), (j, i)}
    return edges


@pytest.mark.parametrize("n,p,ratio,seed", [(30, 0.15, 0.25, 0), (12, 0.3, 0.5, 3),
                                            (40, 0.05, 0.05, 7), (8, 0.9, 1.0, 1),
                                            (5, 0.0, 0.5, 2)])
def test_perturb_undirected_edges_matches_reference(n, p, ratio, seed):
    graph = _graph(n, p, seed, loops=(0, n - 1))
    out = perturb_undirected_edges(graph, ratio, generator=_gen(seed + 100))
    want = _perturb_reference(graph, ratio, seed + 100)
    got = edge_set(out.adj)
    assert got == want
    assert got == {(j, i) for i, j in got}                      # still undirected
    assert {(0, 0), (n - 1, n - 1)} <= got                      # self loops stay
    torch.testing.assert_close(out.x, graph.x, rtol=0, atol=0)


def test_perturb_undirected_edges_counts():
    graph = _graph(50, 0.2, 5)
    e_u = len(edge_set(graph.adj)) // 2
    out = perturb_undirected_edges(graph, 0.05, generator=_gen(0))
    m = math.floor(0.05 * e_u)
    gone = {e for e in edge_set(graph.adj) if e[0] < e[1]} - edge_set(out.adj)
    assert len(gone) <= m and m > 0
    # node_augment's "edge" uses the reference's p / 4: 5 % dropped and 5 % added at p = 0.2
    via = node_augment(graph, "edge", 0.2, generator=_gen(0))
    assert edge_set(via.adj) == edge_set(out.adj)


def test_pair_from_index_is_the_reference_enumeration():
    pairs = [(i, j) for i in range(70) for j in range(i)]
    i, j = pair_from_index(torch.arange(len(pairs)))
    assert list(zip(i.tolist(), j.tolist())) == pairs
    big = torch.tensor([3327 * 3326 // 2 - 1, 5_000_000, 2_147_483_647])
    i, j = pair_from_index(big)
    assert bool(((i * (i - 1) // 2 + j) == big).all()) and bool((j < i).all())


def test_perturb_rejects_directed_and_batches():
    adj = CSR.from_coo(torch.tensor([0]), torch.tensor([1]), None, (3, 3))
    with pytest.raises(ValueError, match="symmetric"):
        perturb_undirected_edges(single_graph(torch.ones(3, 1), adj), 0.5)
    two = GraphBatch.from_graphs([_graph(4, 0.5, 0).graph(0), _graph(3, 0.5, 1).graph(0)])
    with pytest.raises(ValueError, match="exactly one graph"):
        perturb_undirected_edges(two, 0.5)
    with pytest.raises(ValueError, match="ratio"):
        perturb_undirected_edges(_graph(4, 0.5, 0), 1.5)


# --------------------------------------------------------------------------- subgraph


def _expansion_reference(graph, ratio, seed):
    """The reference's loop with the same uniforms: a sorted python frontier list."""
    n = graph.num_nodes
    target = math.floor((1 - ratio) * n)
    u = torch.rand(target, generator=_gen(seed), dtype=torch.float64).tolist()
    nbrs = {v: set() for v in range(n)}
    for i, j in edge_set(graph.adj):
        nbrs[i].add(j)
    node = min(math.floor(u[0] * n), n - 1)
    kept = [node]
    frontier = set()
    for k in range(1, target):
        frontier |= nbrs[kept[-1]]
        cand = sorted(frontier - set(kept))
        if not cand:
            break
        kept.append(cand[min(math.floor(u[k] * len(cand)), len(cand) - 1)])
    return sorted(kept)


@pytest.mark.parametrize("n,p,ratio,seed", [(40, 0.08, 0.2, 0), (25, 0.2, 0.1, 1),
                                            (30, 0.03, 0.5, 2), (10, 0.5, 0.0, 3),
                                            (60, 0.05, 0.1, 4)])
def test_random_expansion_matches_reference(n, p, ratio, seed):
    graph = _graph(n, p, seed)
    out = random_expansion_subgraph(graph, ratio, generator=_gen(seed + 50))
    kept = _expansion_reference(graph, ratio, seed + 50)
    x, edges = _induced(graph, kept)
    torch.testing.assert_close(out.x, x, rtol=0, atol=0)
    assert edge_set(out.adj) == edges
    assert out.num_nodes == len(kept) <= math.floor((1 - ratio) * n)


def test_random_expansion_grows_to_target_on_a_connected_graph():
    n = 31
    ring = torch.arange(n)
    r = torch.cat([ring, (ring + 1) % n])
    c = torch.cat([(ring + 1) % n, ring])
    g = single_graph(torch.eye(n), CSR.from_coo(r, c, None, (n, n)))
    for seed in range(5):
        out = random_expansion_subgraph(g, 0.3, generator=_gen(seed))
        assert out.num_nodes == math.floor(0.7 * n)
        # a connected arc of the ring: one node fewer edges (undirected) than nodes
        assert len(edge_set(out.adj)) == 2 * (out.num_nodes - 1)


# --------------------------------------------------------------------------- node / mask


def test_node_and_mask_views_reuse_the_batch_augmentations():
    graph = _graph(20, 0.2, 9)
    out = node_augment(graph, "node", 0.2, generator=_gen(4))
    ref = drop_nodes(graph, 0.2, generator=_gen(4))
    assert out.num_nodes == 20 - math.floor(0.2 * 20)
    torch.testing.assert_close(out.x, ref.x, rtol=0, atol=0)
    assert edge_set(out.adj) == edge_set(ref.adj)
    masked = node_augment(graph, "mask", 0.25, generator=_gen(4))
    zero = (masked.x == 0).all(1)
    assert int(zero.sum()) == 5 and edge_set(masked.adj) == edge_set(graph.adj)
    torch.testing.assert_close(masked.x[~zero], graph.x[~zero], rtol=0, atol=0)


def test_views_are_two_independent_draws_and_seeded():
    graph = _graph(30, 0.2, 1)
    a1, a2 = node_views(graph, "subgraph", 0.3, generator=_gen(0))
    b1, b2 = node_views(graph, "subgraph", 0.3, generator=_gen(0))
    assert torch.equal(a1.x, b1.x) and torch.equal(a2.x, b2.x)
    assert not (a1.num_nodes == a2.num_nodes and torch.equal(a1.x, a2.x))
    with pytest.raises(ValueError, match="kind"):
        node_augment(graph, "dnodes", 0.2)
    with pytest.raises(TypeError, match="generator"):
        node_augment(graph, "node", 0.2, generator=0)
    with pytest.raises(TypeError, match="single_graph|GraphBatch"):
        node_augment(graph.x, "node", 0.2)
