"""GraphCL augmentations: the vectorised batch versions against slow per-graph references that
consume the same random draws (so results compare exactly), mixtures against their chain of
single augmentations, and invariants under hypothesis fuzzing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth.pretrain import (AugmentConfig, augment, drop_isolated, drop_nodes,
                                graphcl_views, mask_attributes, perturb_edges, subgraph)
from sparselth.sparse import GraphBatch

from ._batches import edge_set, random_batch

SIZES = [5, 1, 0, 8, 2, 13, 3]          # an empty graph, single nodes, odd sizes


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _keys(seed, n):
    """The first draw every augmentation makes: ``n`` float64 uniforms."""
    return torch.rand(n, generator=_gen(seed), dtype=torch.float64)


def _induced(graph, kept):
    """Reference induced subgraph of one graph on the sorted local node list ``kept``."""
    new = {v: i for i, v in enumerate(kept)}
    edges = {(new[i], new[j]) for i, j in edge_set(graph.adj) if i in new and j in new}
    return graph.x[kept], edges


def _assert_graph(out_graph, x, edges):
    torch.testing.assert_close(out_graph.x, x, rtol=0, atol=0)
    assert edge_set(out_graph.adj) == edges


# --------------------------------------------------------------------------- node dropping


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 1.0])
def test_drop_nodes_matches_per_graph_reference(ratio):
    b = random_batch(SIZES, seed=1)
    out = drop_nodes(b, ratio, generator=_gen(7))
    out._validate()
    keys = _keys(7, b.num_nodes)
    for i in range(b.num_graphs):
        g = b.graph(i)
        lo, n = int(b.ptr[i]), g.num_nodes
        k = min(math.floor(ratio * n), max(n - 1, 0))
        order = torch.sort(keys[lo:lo + n], stable=True).indices.tolist()
        kept = sorted(order[k:])
        _assert_graph(out.graph(i), *_induced(g, kept))
        assert out.graph(i).num_nodes == (n - k)
        assert n == 0 or out.graph(i).num_nodes >= 1


def test_drop_nodes_active_leaves_other_graphs_alone():
    b = random_batch(SIZES, seed=2)
    active = torch.tensor([True, False] * 3 + [True])
    out = drop_nodes(b, 0.5, generator=_gen(3), active=active)
    for i in range(b.num_graphs):
        if not active[i]:
            _assert_graph(out.graph(i), b.graph(i).x, edge_set(b.graph(i).adj))


# --------------------------------------------------------------------------- edge perturbation


@pytest.mark.parametrize("add", [True, False])
@pytest.mark.parametrize("ratio", [0.2, 0.6])
def test_perturb_edges_matches_per_graph_reference(add, ratio):
    b = random_batch(SIZES, seed=3)
    out = perturb_edges(b, ratio, add=add, generator=_gen(11))
    out._validate()
    g = _gen(11)
    keys = torch.rand(b.adj.nnz, generator=g, dtype=torch.float64)
    eptr = b.edge_ptr.tolist()
    m = [math.floor(ratio * (eptr[i + 1] - eptr[i])) for i in range(b.num_graphs)]
    M = sum(m)
    u = torch.rand(M, generator=g, dtype=torch.float64)
    v = torch.rand(M, generator=g, dtype=torch.float64)
    at = 0
    for i in range(b.num_graphs):
        gr = b.graph(i)
        n, lo = gr.num_nodes, int(b.ptr[i])
        ei = gr.adj.to_edge_index()
        entries = list(zip(ei[0].tolist(), ei[1].tolist()))       # CSR order
        order = torch.sort(keys[eptr[i]:eptr[i + 1]], stable=True).indices.tolist()
        kept = {entries[e] for e in order[m[i]:]}
        if add:
            for t in range(at, at + m[i]):
                kept.add((min(math.floor(float(u[t]) * n), n - 1),
                          min(math.floor(float(v[t]) * n), n - 1)))
        at += m[i]
        _assert_graph(out.graph(i), gr.x, kept)
        assert out.graph(i).num_nodes == n
    assert lo >= 0


def test_perturb_edges_removal_only_never_adds():
    b = random_batch([6, 7, 4], seed=5)
    out = perturb_edges(b, 0.3, add=False, generator=_gen(1))
    for i in range(b.num_graphs):
        assert edge_set(out.graph(i).adj) <= edge_set(b.graph(i).adj)


# --------------------------------------------------------------------------- attribute masking


@pytest.mark.parametrize("fill", ["mean", "zero", "gaussian"])
def test_mask_attributes_matches_per_graph_reference(fill):
    b = random_batch(SIZES, seed=4)
    ratio = 0.4
    out = mask_attributes(b, ratio, fill=fill, generator=_gen(5))
    g = _gen(5)
    keys = torch.rand(b.num_nodes, generator=g, dtype=torch.float64)
    masked = []
    for i in range(b.num_graphs):
        lo, n = int(b.ptr[i]), int(b.counts[i])
        order = torch.sort(keys[lo:lo + n], stable=True).indices.tolist()
        masked += [lo + j for j in order[:math.floor(ratio * n)]]
    masked = sorted(masked)
    noise = torch.normal(0.5, 0.5, (len(masked), b.num_features), generator=g,
                         dtype=torch.float64).float()
    want = b.x.clone()
    for r, node in enumerate(masked):
        gi = int(b.batch[node])
        gx = b.graph(gi).x
        want[node] = {"mean": gx.mean(0) if gx.shape[0] else torch.zeros(b.num_features),
                      "zero": torch.zeros(b.num_features), "gaussian": noise[r]}[fill]
    torch.testing.assert_close(out.x, want)
    assert edge_set(out.adj) == edge_set(b.adj)
    assert not torch.isnan(out.x).any()


# --------------------------------------------------------------------------- subgraph


def _subgraph_reference(graph, keys, target, one_hop):
    n = graph.num_nodes
    if n == 0:
        return []
    order = torch.sort(keys, stable=True).indices.tolist()
    rank = {v: r for r, v in enumerate(order)}
    visited = {order[0]}
    edges = edge_set(graph.adj)                   # (i, j): i is a neighbour of j
    while len(visited) < target:
        frontier = sorted({i for i, j in edges if j in visited} - visited, key=rank.get)
        if not frontier:
            break
        visited |= set(frontier[:target - len(visited)])
        if one_hop:
            break
    return sorted(visited)


@pytest.mark.parametrize("size,one_hop", [("complement", False), ("ratio", False),
                                          ("ratio", True), ("complement", True)])
def test_subgraph_matches_per_graph_reference(size, one_hop):
    b = random_batch(SIZES + [20, 17], p=0.15, seed=6)
    ratio = 0.3
    out = subgraph(b, ratio, size=size, one_hop=one_hop, generator=_gen(9))
    out._validate()
    keys = _keys(9, b.num_nodes)
    for i in range(b.num_graphs):
        gr = b.graph(i)
        lo, n = int(b.ptr[i]), gr.num_nodes
        r = math.floor(ratio * n)
        target = min(max(n - r if size == "complement" else r + 1, 1), n)
        kept = _subgraph_reference(gr, keys[lo:lo + n], target, one_hop)
        _assert_graph(out.graph(i), *_induced(gr, kept))


# --------------------------------------------------------------------------- mixtures, views


@pytest.mark.parametrize("kind", ["random2", "random3", "random4"])
def test_mixture_is_the_chain_of_its_members_on_the_graphs_that_picked_them(kind):
    b = random_batch(SIZES * 2, seed=8)
    cfg = AugmentConfig(ratio=0.3)
    out = augment(b, kind, cfg, generator=_gen(4))
    members = {"random2": 2, "random3": 3, "random4": 4}[kind]
    g = _gen(4)
    pick = torch.randint(members, (b.num_graphs,), generator=g)
    want = drop_nodes(b, 0.3, generator=g, active=pick == 0)
    want = subgraph(want, 0.3, generator=g, active=pick == 1)
    if members > 2:
        want = perturb_edges(want, 0.3, generator=g, active=pick == 2)
    if members > 3:
        want = mask_attributes(want, 0.3, generator=g, active=pick == 3)
    torch.testing.assert_close(out.x, want.x)
    assert torch.equal(out.ptr, want.ptr) and edge_set(out.adj) == edge_set(want.adj)
    assert set(pick.tolist()) == set(range(members))      # every member used here


def test_views_seeded_and_original_first():
    b = random_batch(SIZES, seed=9)
    v1, v2 = graphcl_views(b, "random4", generator=_gen(0))
    w1, w2 = graphcl_views(b, "random4", generator=_gen(0))
    assert edge_set(v1.adj) == edge_set(w1.adj) and edge_set(v2.adj) == edge_set(w2.adj)
    torch.testing.assert_close(v2.x, w2.x)
    o1, o2 = graphcl_views(b, "dnodes", config=AugmentConfig.reference("unsupervised_TU"),
                           generator=_gen(0))
    assert o1 is b and o2.num_graphs == b.num_graphs


def test_reference_configs():
    u = AugmentConfig.reference("unsupervised_TU")
    assert (u.of("dnodes"), u.of("pedges"), u.of("mask_nodes"), u.of("subgraph")) == \
        (0.1, 0.1, 0.1, 0.2)
    assert not u.edge_add and u.original_first and u.reference_quirks
    s = AugmentConfig.reference("semisupervised_TU")
    assert s.ratio == 0.2 and s.edge_add and s.mask_fill == "mean" and not s.original_first
    d = AugmentConfig()
    assert d.ratio == 0.2 and d.edge_add and not d.reference_quirks


def test_bad_arguments_name_themselves():
    b = random_batch([3, 2])
    with pytest.raises(ValueError, match="ratio"):
        drop_nodes(b, 1.5)
    with pytest.raises(ValueError, match="kind"):
        augment(b, "rotate")
    with pytest.raises(TypeError, match="batch"):
        augment("graphs", "dnodes")
    with pytest.raises(TypeError, match="generator"):
        drop_nodes(b, generator=3)
    with pytest.raises(TypeError, match="active"):
        drop_nodes(b, active=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="fill"):
        mask_attributes(b, fill="noise")
    with pytest.raises(ValueError, match="mask_fill"):
        AugmentConfig(mask_fill="noise")
    with pytest.raises(ValueError, match="code"):
        AugmentConfig.reference("cora")


# --------------------------------------------------------------------------- fuzzing

KINDS = ["none", "dnodes", "pedges", "subgraph", "mask_nodes", "random2", "random3", "random4"]


@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6),
       p=st.floats(0.0, 1.0), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1),
       kind=st.sampled_from(KINDS), quirks=st.booleans(), add=st.booleans(),
       iso=st.booleans())
def test_fuzz_invariants(sizes, p, ratio, seed, kind, quirks, add, iso):
    b = random_batch(sizes, p=p, seed=seed % 1000, self_loops=bool(seed % 2))
    cfg = AugmentConfig(ratio=ratio, reference_quirks=quirks, edge_add=add, drop_isolated=iso,
                        mask_fill=["mean", "zero", "gaussian"][seed % 3])
    out = augment(b, kind, cfg, generator=_gen(seed))
    GraphBatch(out.x, out.adj, out.ptr, out.y)            # block-diagonal, valid ptr
    out.adj._validate()                                    # sorted, unique, in range
    assert out.num_graphs == b.num_graphs and torch.equal(out.y, b.y)
    assert not torch.isnan(out.x).any()
    n_in, n_out = b.counts, out.counts
    assert bool((n_out <= n_in).all())
    assert bool(((n_in == 0) | (n_out >= 1)).all())         # no graph emptied
    if kind == "dnodes" and not iso:
        k = torch.minimum(torch.floor(ratio * n_in.double()).long(), (n_in - 1).clamp_min(0))
        assert torch.equal(n_out, n_in - k)
    if kind in ("pedges", "mask_nodes", "none"):
        assert torch.equal(n_out, n_in)
    if kind == "mask_nodes":
        assert edge_set(out.adj) == edge_set(b.adj)
    if kind == "pedges" and not add:
        assert edge_set(out.adj) <= edge_set(b.adj)
    if kind == "subgraph":
        for i in range(b.num_graphs):                     # induced: no edge invented
            assert out.graph(i).adj.nnz <= b.graph(i).adj.nnz


# --------------------------------------------------------------------------- clean-up variant


def test_drop_isolated_matches_per_graph_reference():
    b = random_batch(SIZES + [6], p=0.25, seed=12, self_loops=True)
    out = drop_isolated(b)
    out._validate()
    for i in range(b.num_graphs):
        gr = b.graph(i)
        edges = {(r, c) for r, c in edge_set(gr.adj) if r != c}
        kept = sorted({v for e in edges for v in e}) or ([0] if gr.num_nodes else [])
        new = {v: j for j, v in enumerate(kept)}
        _assert_graph(out.graph(i), gr.x[kept], {(new[r], new[c]) for r, c in edges})


def test_unsupervised_reference_cleans_up_after_node_removal_only():
    b = random_batch(SIZES, p=0.3, seed=13, self_loops=True)
    cfg = AugmentConfig.reference("unsupervised_TU")
    assert cfg.drop_isolated
    out = augment(b, "dnodes", cfg, generator=_gen(2))
    want = drop_isolated(drop_nodes(b, 0.1, generator=_gen(2)))
    assert torch.equal(out.ptr, want.ptr) and edge_set(out.adj) == edge_set(want.adj)
    masked = augment(b, "mask_nodes", cfg, generator=_gen(2))
    assert edge_set(masked.adj) == edge_set(b.adj)              # self loops stay
