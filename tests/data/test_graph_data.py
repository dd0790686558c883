"""Data loaders and synthetic generators: sparselth.data."""

import os
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sparselth.data import (
    GraphData,
    contextual_sbm,
    load_planetoid,
    load_planetoid_graph,
    power_law_graph,
    prune_edges_random,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
REAL_DATA = Path(os.environ.get("SPARSELTH_DATA", SHARED))
HAVE_PLANETOID = (REAL_DATA / "planetoid" / "ind.cora.graph").is_file()
needs_planetoid = pytest.mark.skipif(
    not HAVE_PLANETOID,
    reason="Planetoid (Cora) not found (set SPARSELTH_DATA)",
)


def _keys(ei, n):
    return (ei[0].long() * n + ei[1].long()).tolist()


def _is_symmetric(ei, n):
    return sorted(_keys(ei, n)) == sorted(_keys(ei.flip(0), n))


# --------------------------------------------------------------------------- power_law_graph


def test_power_law_graph_structure():
    n, deg = 5000, 8
    ei = power_law_graph(n, deg, seed=3)
    assert ei.dtype == torch.int64 and ei.shape == (2, n * deg)
    assert int(ei.min()) >= 0 and int(ei.max()) < n
    assert bool((ei[0] != ei[1]).all()), "self-loops"
    keys = ei[0] * n + ei[1]
    assert bool((keys[1:] > keys[:-1]).all()), "not sorted by (row, col) or duplicates"


def test_power_law_graph_deterministic():
    a = power_law_graph(3000, 6, seed=1)
    b = power_law_graph(3000, 6, seed=1)
    c = power_law_graph(3000, 6, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_power_law_graph_heavy_tail():
    n, deg = 20000, 8
    ei = power_law_graph(n, deg, seed=0)
    for side in (0, 1):  # out- and in-degrees
        d = torch.bincount(ei[side], minlength=n).double()
        assert d.max() > 20 * deg, f"max degree {d.max()} not heavy-tailed"
        top = d.sort(descending=True).values[: n // 100].sum() / d.sum()
        assert top > 0.15, f"top 1% of nodes hold only {top:.2f} of the edges"
        assert (d <= deg / 2).float().mean() > 0.3, "most nodes should have a small degree"


def test_power_law_graph_dtype_and_args():
    ei = power_law_graph(100, 3, seed=0, dtype=torch.int32)
    assert ei.dtype == torch.int32 and ei.shape == (2, 300)
    assert power_law_graph(100, 3, max_degree=5).shape == (2, 300)
    with pytest.raises(ValueError, match="num_nodes"):
        power_law_graph(1, 3)
    with pytest.raises(ValueError, match="exponent"):
        power_law_graph(100, 3, exponent=1.0)
    with pytest.raises(ValueError, match="avg_degree"):
        power_law_graph(10, 8)
    with pytest.raises(TypeError, match="dtype"):
        power_law_graph(10, 2, dtype=torch.float32)


# --------------------------------------------------------------------------- prune_edges_random


@pytest.mark.parametrize("keep", [1.0, 0.5, 0.2, 0.05, 0.0])
def test_prune_edge_index(keep):
    n = 2000
    ei = power_law_graph(n, 5, seed=0)
    out = prune_edges_random(ei, keep, seed=7)
    assert out.shape == (2, round(keep * ei.shape[1]))
    keys = ei[0] * n + ei[1]
    kept = out[0] * n + out[1]
    assert bool(torch.isin(kept, keys).all())
    assert bool((kept[1:] > kept[:-1]).all()), "original order not kept"
    assert torch.equal(out, prune_edges_random(ei, keep, seed=7))


def test_prune_edge_index_seed_and_errors():
    ei = power_law_graph(1000, 4, seed=0)
    assert not torch.equal(prune_edges_random(ei, 0.5, seed=1), prune_edges_random(ei, 0.5, seed=2))
    with pytest.raises(ValueError, match="keep"):
        prune_edges_random(ei, 1.5)
    with pytest.raises(ValueError, match="edge_index"):
        prune_edges_random(torch.zeros(3, 4, dtype=torch.long), 0.5)
    with pytest.raises(TypeError):
        prune_edges_random([[0, 1], [1, 0]], 0.5)


@pytest.mark.parametrize("with_values", [True, False])
def test_prune_csr(with_values):
    import sparselth

    n = 500
    ei = power_law_graph(n, 6, seed=0)
    vals = torch.rand(ei.shape[1], dtype=torch.float64) if with_values else None
    A = sparselth.CSR.from_edge_index(ei, num_nodes=n, values=vals)
    B = prune_edges_random(A, 0.3, seed=4)
    assert isinstance(B, sparselth.CSR)
    assert B.shape == A.shape and B.nnz == round(0.3 * A.nnz)
    assert B.rowptr.dtype == A.rowptr.dtype and B.col.dtype == A.col.dtype
    assert (B.val is None) == (not with_values)
    dA, dB = A.to_dense(), B.to_dense()
    kept = dB != 0
    assert int(kept.sum()) == B.nnz
    torch.testing.assert_close(dB[kept], dA[kept])  # kept entries keep their values
    assert bool((dA[kept] != 0).all())


# --------------------------------------------------------------------------- contextual SBM


def test_contextual_sbm():
    d = contextual_sbm(1200, num_classes=3, avg_degree=8, num_features=16, homophily=0.9, seed=5)
    assert isinstance(d, GraphData)
    n = d.num_nodes
    assert (
        n == 1200
        and d.x.shape == (n, 16)
        and d.x.dtype == torch.float32
        and d.y.dtype == torch.int64
    )
    assert d.num_classes == 3 and torch.bincount(d.y).tolist() == [400, 400, 400]
    ei = d.edge_index
    assert bool((ei[0] != ei[1]).all()) and _is_symmetric(ei, n)
    assert 6 < ei.shape[1] / n <= 8
    same = (d.y[ei[0]] == d.y[ei[1]]).float().mean()
    assert 0.85 < same < 0.95
    assert (
        int(d.train_mask.sum()) == 60
        and int(d.val_mask.sum()) == 500
        and int(d.test_mask.sum()) == 640
    )
    assert not bool(
        (d.train_mask & d.val_mask).any()
        | (d.val_mask & d.test_mask).any()
        | (d.train_mask & d.test_mask).any()
    )
    assert torch.bincount(d.y[d.train_mask]).tolist() == [20, 20, 20]
    e = contextual_sbm(1200, num_classes=3, avg_degree=8, num_features=16, homophily=0.9, seed=5)
    assert torch.equal(d.x, e.x) and torch.equal(d.edge_index, e.edge_index)


# --------------------------------------------------------------------------- Planetoid: tiny files


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _write_tiny(folder: Path, name="cora", with_allx=True):
    """14 nodes, 3 classes, 5 features; 3 train nodes (x/y), allx = nodes 0..9, test nodes
    13, 10, 12 (unsorted; node 11 is absent from tx like CiteSeer's isolated test nodes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    allx = (rng.random((10, 5)) < 0.5).astype(np.float32)
    allx[0] = [1, 1, 0, 0, 0]
    ally = np.eye(3, dtype=np.int32)[np.arange(10) % 3]
    tx = np.array([[0, 0, 1, 1, 1], [1, 0, 0, 0, 0], [0, 2, 0, 0, 2]], dtype=np.float32)
    ty = np.eye(3, dtype=np.int32)[[2, 0, 1]]
    files = {
        "x": sp.csr_matrix(allx[:3]),
        "y": ally[:3],
        "tx": sp.csr_matrix(tx),
        "ty": ty,
        "ally": ally,
        "graph": defaultdict(list, {0: [1, 2, 2], 1: [0], 2: [2, 3], 3: [], 10: [13], 12: [4]}),
    }
    if with_allx:
        files["allx"] = sp.csr_matrix(allx)
    for suffix, obj in files.items():
        _dump(folder / f"ind.{name}.{suffix}", obj)
    (folder / f"ind.{name}.test.index").write_text("13\n10\n12\n")
    return allx, tx


def test_planetoid_tiny(tmp_path):
    allx, tx = _write_tiny(tmp_path / "planetoid")
    d = load_planetoid("Cora", root=tmp_path)  # root holding planetoid/, name case-insensitive
    n = 14
    assert d.num_nodes == n and d.x.shape == (n, 5) and d.x.dtype == torch.float32
    assert not d.missing_features
    # symmetrised, self-loops (2-2) and duplicates (0-2 twice) removed, sorted
    expect = {(0, 1), (1, 0), (0, 2), (2, 0), (2, 3), (3, 2), (10, 13), (13, 10), (12, 4), (4, 12)}
    assert d.edge_index.dtype == torch.int64
    assert sorted(map(tuple, d.edge_index.t().tolist())) == sorted(expect)
    # features: row-normalised; test rows placed at their ids; node 11 padded with zeros
    torch.testing.assert_close(d.x[0], torch.tensor([0.5, 0.5, 0, 0, 0]))
    torch.testing.assert_close(d.x[13], torch.tensor(tx[0] / 3))
    torch.testing.assert_close(d.x[10], torch.tensor(tx[1]))
    torch.testing.assert_close(d.x[12], torch.tensor([0, 0.5, 0, 0, 0.5]))
    assert float(d.x[11].abs().sum()) == 0.0
    rows = d.x.sum(1)
    assert bool(((rows - 1).abs() < 1e-6).logical_or(rows == 0).all())
    assert d.y.tolist()[:10] == [i % 3 for i in range(10)]
    assert d.y[13].item() == 2 and d.y[10].item() == 0 and d.y[12].item() == 1
    assert d.train_mask.nonzero().flatten().tolist() == [0, 1, 2]
    assert d.val_mask.nonzero().flatten().tolist() == list(
        range(3, 10)
    )  # clamped before the first test id
    assert d.test_mask.nonzero().flatten().tolist() == [10, 12, 13]
    g = load_planetoid_graph("cora", root=tmp_path / "planetoid")  # root = the files' folder
    assert g.num_nodes == n and torch.equal(g.edge_index, d.edge_index)
    raw = load_planetoid("cora", root=tmp_path, normalize_features=False)
    torch.testing.assert_close(raw.x[13], torch.tensor(tx[0]))


def test_planetoid_env_var(tmp_path, monkeypatch):
    _write_tiny(tmp_path)
    monkeypatch.setenv("SPARSELTH_DATA", str(tmp_path))
    assert load_planetoid("cora").num_nodes == 14
    monkeypatch.delenv("SPARSELTH_DATA")
    with pytest.raises(FileNotFoundError, match="SPARSELTH_DATA"):
        load_planetoid("cora")


def test_planetoid_missing_allx(tmp_path):
    allx, _ = _write_tiny(tmp_path, with_allx=False)
    with pytest.warns(UserWarning, match="missing_features=True"):
        d = load_planetoid("cora", root=tmp_path)
    assert d.missing_features
    assert float(d.x[3:10].abs().sum()) == 0.0  # known only for x (0..2) and tx rows
    torch.testing.assert_close(d.x[0], torch.tensor([0.5, 0.5, 0, 0, 0]))
    assert float(d.x[13].sum()) == pytest.approx(1.0)


def test_planetoid_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_planetoid("reddit", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_planetoid("cora", root=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.graph"):
        load_planetoid("cora", root=tmp_path)
    _write_tiny(tmp_path)
    (tmp_path / "ind.cora.tx").unlink()
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.tx"):
        load_planetoid("cora", root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_planetoid_refuses_foreign_pickles(tmp_path):
    _write_tiny(tmp_path)
    _dump(tmp_path / "ind.cora.graph", _Evil())
    with pytest.raises(ValueError, match="refusing"):
        load_planetoid_graph("cora", root=tmp_path)
    (tmp_path / "ind.cora.ally").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"ind\.cora\.ally"):
        load_planetoid("cora", root=tmp_path)


# --------------------------------------------------------------------------- Planetoid: real files


@needs_planetoid
def test_cora_real():
    d = load_planetoid("cora", root=REAL_DATA)
    assert d.num_nodes == 2708 and d.num_features == 1433 and d.num_classes == 7
    assert d.num_edges == 10556
    assert (
        int(d.train_mask.sum()) == 140
        and int(d.val_mask.sum()) == 500
        and int(d.test_mask.sum()) == 1000
    )
    assert torch.bincount(d.y[d.train_mask]).tolist() == [20] * 7
    ei = d.edge_index
    assert bool((ei[0] != ei[1]).all()) and _is_symmetric(ei, d.num_nodes)
    assert len(set(_keys(ei, d.num_nodes))) == d.num_edges
    torch.testing.assert_close(d.x.sum(1), torch.ones(2708))
    assert not d.missing_features


@needs_planetoid
def test_citeseer_pubmed_real():
    c = load_planetoid("citeseer", root=REAL_DATA)
    assert c.num_nodes == 3327 and c.num_edges == 9104
    assert int(c.train_mask.sum()) == 120 and int(c.test_mask.sum()) == 1000
    assert (
        int((c.x.sum(1) == 0).sum()) >= 15
    )  # isolated test nodes padded with zeros (+ empty rows)
    if (REAL_DATA / "planetoid" / "ind.pubmed.allx").is_file():
        p = load_planetoid("pubmed", root=REAL_DATA)
    else:
        with pytest.warns(UserWarning, match="allx"):
            p = load_planetoid("pubmed", root=REAL_DATA)
    assert p.num_nodes == 19717 and p.num_edges == 88648 and p.num_features == 500
    assert (
        int(p.train_mask.sum()) == 60
        and int(p.val_mask.sum()) == 500
        and int(p.test_mask.sum()) == 1000
    )
    assert p.missing_features == (not (REAL_DATA / "planetoid" / "ind.pubmed.allx").is_file())
    g = load_planetoid_graph("pubmed", root=REAL_DATA)
    assert g.num_nodes == 19717 and torch.equal(g.edge_index, p.edge_index)
