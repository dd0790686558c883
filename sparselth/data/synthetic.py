"""Synthetic graphs, deterministic by seed: power-law graphs, random edge pruning, contextual SBM.

Example::

    >>> from sparselth.data import power_law_graph, prune_edges_random
    >>> ei = power_law_graph(100_000, avg_degree=16, seed=0)      # int64 [2, 1_600_000]
    >>> half = prune_edges_random(ei, keep=0.5, seed=1)           # int64 [2, 800_000]
"""

from __future__ import annotations

import math

import torch

from .graph import GraphData, index_masks

__all__ = ["power_law_graph", "prune_edges_random", "contextual_sbm"]

_CHUNK = 1 << 22  # samples drawn per chunk: bounds the float64 temporaries to ~100 MB


# --------------------------------------------------------------------------- power-law graph


def _rank_cdf_parts(a: float):
    """G(t) and its inverse for the density ~ t^-a (the integral of t^-a)."""
    if abs(a - 1.0) < 1e-12:
        return math.log, math.exp, torch.log, torch.exp
    b = 1.0 - a
    return (
        lambda t: t**b / b,
        lambda g: (g * b) ** (1.0 / b),
        lambda t: t.pow(b) / b,
        lambda g: (g * b).pow(1.0 / b),
    )


def _top_share(a: float, n: int, i0: float) -> float:
    """Probability that one endpoint draw lands on the heaviest node (rank 0)."""
    G, _, _, _ = _rank_cdf_parts(a)
    return (G(1.0 + i0) - G(i0)) / (G(n + i0) - G(i0))


def _solve_offset(a: float, n: int, num_edges: int, max_degree: float) -> float:
    """Offset i0 of the rank density (r + i0)^-a such that the heaviest node expects
    ``max_degree`` endpoint draws (bisection in log space; the share falls as i0 grows)."""
    lo, hi = -12.0, 15.0  # log10 of i0
    if num_edges * _top_share(a, n, 10.0**lo) <= max_degree:
        return 10.0**lo
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if num_edges * _top_share(a, n, 10.0**mid) > max_degree:
            lo = mid
        else:
            hi = mid
    return 10.0**hi


def _sample_nodes(
    count: int, n: int, a: float, i0: float, perm: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """``count`` node ids drawn from P(rank r) ~ (r + i0)^-a by inverse-CDF sampling, then
    relabelled through ``perm`` so heavy nodes are spread over the id range."""
    G, _, _, Ginv_t = _rank_cdf_parts(a)
    g_lo, g_hi = G(i0), G(n + i0)
    out = torch.empty(count, dtype=torch.int64)
    for start in range(0, count, _CHUNK):
        stop = min(count, start + _CHUNK)
        u = torch.rand(stop - start, dtype=torch.float64, generator=gen)
        r = Ginv_t(u.mul_(g_hi - g_lo).add_(g_lo)).sub_(i0)
        out[start:stop] = r.floor_().clamp_(0, n - 1).to(torch.int64)
    return perm[out]


def power_law_graph(
    num_nodes: int,
    avg_degree: float,
    exponent: float = 2.1,
    seed: int = 0,
    dtype: torch.dtype = torch.int64,
    max_degree: float | None = None,
) -> torch.Tensor:
    """Random directed graph with power-law in- and out-degrees (Chung-Lu style).

    Both endpoints of each edge are drawn independently from P(node of rank r) ~ (r + i0)^-a
    with a = 1 / (exponent - 1), so the expected degrees follow P(deg = k) ~ k^-exponent; the
    offset i0 caps the heaviest node's expected degree at ``max_degree``. Node ids are a random
    permutation of the ranks (hubs are spread, as in real data). Self-loops and duplicate edges
    are dropped and more edges drawn until exactly ``round(num_nodes * avg_degree)`` remain.
    Vectorised and chunked: 1M nodes x 16 average degree takes a few seconds and ~1 GB.

    Args:
        num_nodes: N >= 2.
        avg_degree: average out-degree (= in-degree) E / N, > 0.
        exponent: power-law exponent of the degree distribution, > 1 (default 2.1, typical of
            citation and social graphs).
        seed: random seed; equal arguments give equal graphs.
        dtype: index dtype of the result (torch.int64 or torch.int32).
        max_degree: expected degree of the heaviest node; default ``avg_degree * sqrt(N)``
            (capped at N - 1).

    Returns:
        edge_index ``[2, E]`` of ``dtype``, sorted by (source, target), duplicate-free,
        without self-loops.

    Example::

        >>> ei = power_law_graph(1000, avg_degree=8, seed=0)
        >>> ei.shape
        torch.Size([2, 8000])
    """
    n = int(num_nodes)
    if n < 2:
        raise ValueError(f"power_law_graph: num_nodes must be >= 2, got {num_nodes}")
    if not avg_degree > 0:
        raise ValueError(f"power_law_graph: avg_degree must be > 0, got {avg_degree}")
    if not exponent > 1:
        raise ValueError(f"power_law_graph: exponent must be > 1, got {exponent}")
    if dtype not in (torch.int64, torch.int32):
        raise TypeError(f"power_law_graph: dtype must be torch.int64 or torch.int32, got {dtype}")
    num_edges = int(round(n * avg_degree))
    if num_edges > 0.5 * n * (n - 1):
        raise ValueError(
            f"power_law_graph: avg_degree={avg_degree} is too dense for {n} nodes "
            f"(at most (N - 1) / 2 = {(n - 1) / 2} for a sparse random graph)"
        )
    if dtype == torch.int32 and n > 2**31 - 1:
        raise ValueError(f"power_law_graph: {n} nodes do not fit int32 indices")
    if max_degree is None:
        max_degree = avg_degree * math.sqrt(n)
    max_degree = min(float(max_degree), n - 1.0)
    if not max_degree > 0:
        raise ValueError(f"power_law_graph: max_degree must be > 0, got {max_degree}")

    a = 1.0 / (exponent - 1.0)
    i0 = _solve_offset(a, n, num_edges, max_degree)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)

    keys = torch.empty(0, dtype=torch.int64)
    for _ in range(20):
        need = num_edges - keys.numel()
        draw = int(need * 1.1) + 64
        src = _sample_nodes(draw, n, a, i0, perm, gen)
        dst = _sample_nodes(draw, n, a, i0, perm, gen)
        new = src.mul_(n).add_(dst)
        new = new[(new // n) != (new % n)]
        del src, dst
        keys = torch.unique(torch.cat([keys, new]))  # sorted, duplicate-free
        del new
        if keys.numel() >= num_edges:
            break
    else:
        raise RuntimeError(
            f"power_law_graph: could not draw {num_edges} distinct edges on {n} nodes "
            f"(got {keys.numel()}); lower avg_degree or raise max_degree"
        )
    surplus = keys.numel() - num_edges
    if surplus > 0:  # drop a uniformly random subset of the surplus size, keep the sort order
        drop = torch.empty(0, dtype=torch.int64)
        while drop.numel() < surplus:
            more = torch.randint(
                keys.numel(), (int((surplus - drop.numel()) * 1.2) + 16,), generator=gen
            )
            drop = torch.unique(torch.cat([drop, more]))
        drop = drop[torch.randperm(drop.numel(), generator=gen)[:surplus]]
        kept = torch.ones(keys.numel(), dtype=torch.bool)
        kept[drop] = False
        keys = keys[kept]
    return torch.stack([keys // n, keys % n]).to(dtype)


# --------------------------------------------------------------------------- pruning


def prune_edges_random(graph, keep: float, seed: int = 0):
    """Keep ``round(keep * E)`` edges chosen uniformly at random (the UGS-style random baseline).

    Args:
        graph: an ``edge_index`` tensor ``[2, E]`` or a ``sparselth.CSR``.
        keep: fraction of edges (stored entries) to keep, in [0, 1].
        seed: random seed; equal arguments give equal results.

    Returns:
        Same kind as ``graph``: an ``edge_index`` with the kept columns in their original order,
        or a CSR of the same shape (and index dtype) holding the kept entries and their values.

    Example::

        >>> ei = torch.tensor([[0, 0, 1, 2], [1, 2, 2, 0]])
        >>> prune_edges_random(ei, keep=0.5, seed=0).shape
        torch.Size([2, 2])
    """
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"prune_edges_random: keep must be in [0, 1], got {keep}")
    gen = torch.Generator().manual_seed(int(seed))

    if isinstance(graph, torch.Tensor):
        if graph.dim() != 2 or graph.size(0) != 2:
            raise ValueError(
                f"prune_edges_random: edge_index must have shape [2, E], got {tuple(graph.shape)}"
            )
        num = graph.size(1)
        k = int(round(keep * num))
        idx = torch.randperm(num, generator=gen)[:k].sort().values.to(graph.device)
        return graph[:, idx]

    if all(hasattr(graph, a) for a in ("rowptr", "col", "val", "shape")):
        rowptr, col, val = graph.rowptr, graph.col, graph.val
        num = col.numel()
        k = int(round(keep * num))
        idx = torch.randperm(num, generator=gen)[:k].sort().values.to(col.device)
        m = graph.shape[0]
        row = torch.repeat_interleave(
            torch.arange(m, device=col.device), rowptr.diff().to(torch.int64)
        )
        counts = torch.bincount(row[idx], minlength=m)
        new_rowptr = torch.zeros(m + 1, dtype=torch.int64, device=col.device)
        torch.cumsum(counts, 0, out=new_rowptr[1:])
        return type(graph)(
            new_rowptr.to(rowptr.dtype),
            col[idx],
            None if val is None else val[idx],
            shape=tuple(graph.shape),
        )

    raise TypeError(
        "prune_edges_random: graph must be an edge_index tensor or a CSR, "
        f"got {type(graph).__name__}"
    )


# --------------------------------------------------------------------------- contextual SBM


def contextual_sbm(
    num_nodes: int = 1000, num_classes: int = 2, avg_degree: float = 10.0,
    num_features: int = 64, homophily: float = 0.8, feature_snr: float = 1.0, seed: int = 0,
    train_per_class: int = 20, num_val: int = 500, num_test: int = 1000,
) -> GraphData:
    """Contextual stochastic block model (Deshpande et al. 2018, k-class form).

    Labels are balanced over ``num_classes``. ``round(N * avg_degree / 2)`` undirected edges are
    drawn: a uniform source, then with probability ``homophily`` a uniform target of the same
    class, otherwise of another class; the graph is symmetrised, self-loops and duplicates
    dropped (so the average degree is slightly below ``avg_degree``). Features:
    ``x_i = feature_snr * mu[y_i] + z_i`` with class means ``mu`` and noise ``z`` drawn from
    N(0, I / F), so ``feature_snr`` is the ratio of signal to noise norms.
    Split: ``train_per_class`` random nodes per class, then ``num_val`` validation and up to
    ``num_test`` test nodes, disjoint, at random.

    Returns:
        :class:`GraphData` (x float32 [N, F], y int64 [N], symmetric edge_index int64 [2, E]).

    Example::

        >>> d = contextual_sbm(2000, num_classes=3, avg_degree=8, homophily=0.9, seed=1)
        >>> d.x.shape, d.num_classes
        (torch.Size([2000, 64]), 3)
    """
    n, c, f = int(num_nodes), int(num_classes), int(num_features)
    if c < 2 or n < c:
        raise ValueError(
            f"contextual_sbm: need num_classes >= 2 and num_nodes >= num_classes, got {n}, {c}"
        )
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"contextual_sbm: homophily must be in [0, 1], got {homophily}")
    if f < 1 or avg_degree < 0:
        raise ValueError(
            f"contextual_sbm: need num_features >= 1 and avg_degree >= 0, got {f}, {avg_degree}"
        )
    gen = torch.Generator().manual_seed(int(seed))

    y = (torch.arange(n) % c)[torch.randperm(n, generator=gen)]
    members = torch.argsort(y, stable=True)  # node ids grouped by class
    sizes = torch.bincount(y, minlength=c)
    offsets = torch.cumsum(sizes, 0) - sizes

    m = int(round(n * avg_degree / 2))
    src = torch.randint(n, (m,), generator=gen)
    same = torch.rand(m, generator=gen) < homophily
    shift = torch.randint(1, c, (m,), generator=gen)
    cls = torch.where(same, y[src], (y[src] + shift) % c)
    pos = (torch.rand(m, generator=gen) * sizes[cls]).long().clamp_max_(sizes[cls] - 1)
    dst = members[offsets[cls] + pos]
    row, col = torch.cat([src, dst]), torch.cat([dst, src])
    keys = row * n + col
    keys = torch.unique(keys[row != col])
    edge_index = torch.stack([keys // n, keys % n])

    mu = torch.randn(c, f, generator=gen) / math.sqrt(f)
    x = (feature_snr * mu[y] + torch.randn(n, f, generator=gen) / math.sqrt(f)).float()

    order = torch.randperm(n, generator=gen)
    train = torch.cat([order[y[order] == k][:train_per_class] for k in range(c)])
    (train_mask,) = index_masks(n, train)
    rest = order[~train_mask[order]]
    split = index_masks(n, train, rest[:num_val], rest[num_val : num_val + num_test])
    info = dict(avg_degree=avg_degree, homophily=homophily, feature_snr=feature_snr, seed=seed)
    return GraphData("csbm", x, y, edge_index, *split, num_classes=c, info=info)
