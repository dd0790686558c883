"""Recommender data: loaders (on files written here and on the real files when present),
per-user splits, the latent-factor generator, the BPR sampler and the bipartite adjacency."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.data import (
    BPRSampler,
    Interactions,
    load_lastfm,
    load_lightgcn_text,
    load_movielens_100k,
    load_recsys,
    split_per_user,
    synthetic_interactions,
)
from sparselth.data.recsys import LASTFM_ITEMS, LASTFM_USERS
from sparselth.testing import tolerances

REAL = Path(
    os.environ.get("SPARSELTH_DATA") or Path(__file__).resolve().parents[3] / "shared" / "datasets"
)


def _pairs_set(t: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, t.T.tolist()))


# --------------------------------------------------------------------------- LightGCN text


def _write(path: Path, text: str, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
    return path


@pytest.mark.parametrize("crlf", [False, True])
def test_lightgcn_text(tmp_path, crlf):
    _write(tmp_path / "g" / "train.txt", "0 1 2 3\n1 0\n2\n3 4 4 1\n", crlf)
    _write(tmp_path / "g" / "test.txt", "0 4\n1 2 3\n3 0\n", crlf)
    d = load_lightgcn_text(tmp_path / "g")
    assert (d.num_users, d.num_items) == (4, 5)
    assert d.name == "g"
    assert _pairs_set(d.train) == {(0, 1), (0, 2), (0, 3), (1, 0), (3, 4), (3, 1)}
    assert _pairs_set(d.test) == {(0, 4), (1, 2), (1, 3), (3, 0)}
    assert d.num_train == 6  # the duplicate (3, 4) is stored once
    dense = d.train_csr.to_dense()
    assert dense.shape == (4, 5) and dense[2].sum() == 0 and dense[3, 4] == 1


def test_lightgcn_text_errors(tmp_path):
    _write(tmp_path / "g" / "train.txt", "0 1\n1 x 3\n")
    _write(tmp_path / "g" / "test.txt", "0 1\n")
    with pytest.raises(ValueError, match=r"train\.txt' line 2"):
        load_lightgcn_text(tmp_path / "g")
    _write(tmp_path / "g" / "train.txt", "0 1\n1 -3\n")
    with pytest.raises(ValueError, match=r"line 2.*>= 0"):
        load_lightgcn_text(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_lightgcn_text(tmp_path / "nowhere")
    (tmp_path / "h").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        load_lightgcn_text(tmp_path / "h")


# --------------------------------------------------------------------------- LastFM


def _lastfm_dir(tmp_path: Path, train: str, test: str) -> Path:
    root = tmp_path / "data"
    _write(root / "lastfm" / "data1.txt", train, crlf=True)
    _write(root / "lastfm" / "test1.txt", test, crlf=True)
    return root


def test_lastfm_written(tmp_path):
    root = _lastfm_dir(tmp_path, "1\t2\t10\n1\t5\t3.2466e+05\n1892\t4489\t1\n",
                       "2\t1\t7\n")
    d = load_lastfm(root)
    assert (d.num_users, d.num_items) == (LASTFM_USERS, LASTFM_ITEMS)
    assert _pairs_set(d.train) == {(0, 1), (0, 4), (1891, 4488)}
    assert _pairs_set(d.test) == {(1, 0)}
    # the folder itself works too, and so does SPARSELTH_DATA
    assert load_lastfm(root / "lastfm").num_train == 3


def test_lastfm_env(tmp_path, monkeypatch):
    root = _lastfm_dir(tmp_path, "1\t2\t1\n", "1\t3\t1\n")
    monkeypatch.setenv("SPARSELTH_DATA", str(root))
    assert load_lastfm().num_test == 1
    assert load_recsys("lastfm").num_train == 1
    monkeypatch.delenv("SPARSELTH_DATA")
    with pytest.raises(FileNotFoundError, match="SPARSELTH_DATA"):
        load_lastfm()


@pytest.mark.parametrize(
    "line, msg",
    [
        ("1\tabc\t3", "expected integers"),
        ("1\t2\t3\t4", "3 fields"),
        ("1", "3 fields"),
        ("0\t2\t3", "user id 0 outside"),
        ("1893\t2\t3", "user id 1893 outside"),
        ("1\t4490\t3", "item id 4490 outside"),
        ("1\t2\tnan?", "count"),
    ],
)
def test_lastfm_bad_lines(tmp_path, line, msg):
    root = _lastfm_dir(tmp_path, f"1\t2\t3\n{line}\n", "1\t3\t1\n")
    with pytest.raises(ValueError, match=rf"data1\.txt' line 2: .*{msg}"):
        load_lastfm(root)


def test_lastfm_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="data1.txt"):
        load_lastfm(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lastfm(tmp_path / "nope")


# --------------------------------------------------------------------------- MovieLens


_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _ml_dir(tmp_path: Path, rows: list[tuple], header: str = _HEADER) -> Path:
    body = "".join("\t".join(map(str, r)) + "\n" for r in rows)
    _write(tmp_path / "d" / "movielens-100k" / "ml-100k.inter", header + body)
    return tmp_path / "d"


def test_movielens_written(tmp_path):
    # user "10" has 5 ratings at times 1..5, user "2" has 1; token ids in numeric order
    rows = [(10, 7, 4, t) for t in range(1, 6)]
    rows = [(10, 100 + t, 4, t) for t in range(1, 6)] + [(2, 7, 1, 9)]
    root = _ml_dir(tmp_path, rows)
    d = load_movielens_100k(root, split="time", test_fraction=0.2)
    assert (d.num_users, d.num_items) == (2, 6)  # users 2, 10 -> 0, 1; items 7, 101..105
    assert d.num_train + d.num_test == 6
    assert _pairs_set(d.test) == {(1, 5)}  # the latest rating of user 10 (item 105)
    assert _pairs_set(d.train) >= {(0, 0)}  # a single-rating user keeps it in train
    r = load_movielens_100k(root, split="random", seed=3)
    assert r.num_test == 1 and _pairs_set(r.test) <= {(1, k) for k in range(1, 6)}
    assert load_movielens_100k(root, min_rating=4).num_users == 2
    assert load_movielens_100k(root, min_rating=4).num_train + load_movielens_100k(
        root, min_rating=4).num_test == 5


def test_movielens_errors(tmp_path):
    root = _ml_dir(tmp_path, [(1, 2, 3, 4), (1, 2, 3)])
    with pytest.raises(ValueError, match=r"ml-100k\.inter' line 3: expected 4"):
        load_movielens_100k(root)
    root = _ml_dir(tmp_path, [(1, 2, "x", 4)])
    with pytest.raises(ValueError, match=r"line 2: rating/timestamp"):
        load_movielens_100k(root)
    root = _ml_dir(tmp_path, [(1, 2, 3, 4)], header="user_id:token\titem:token\n")
    with pytest.raises(ValueError, match=r"line 1: header lacks 'item_id'"):
        load_movielens_100k(root)
    with pytest.raises(ValueError, match="split must be"):
        load_movielens_100k(root, split="weird")


# --------------------------------------------------------------------------- real files


@pytest.mark.skipif(not (REAL / "lastfm" / "data1.txt").is_file(),
                    reason="LastFM not found (set SPARSELTH_DATA)")
def test_real_lastfm():
    d = load_lastfm(REAL)
    assert (d.num_users, d.num_items) == (1892, 4489)
    assert (d.num_train, d.num_test) == (42135, 10533)
    s = d.summary()
    assert (s["train_users"], s["test_users"]) == (1878, 1858)
    v = d.with_validation(0.1, seed=0)
    assert v.num_train + v.num_val == 42135
    assert not (_pairs_set(v.val) & _pairs_set(v.train))


@pytest.mark.skipif(not (REAL / "movielens-100k" / "ml-100k.inter").is_file(),
                    reason="MovieLens-100K not found (set SPARSELTH_DATA)")
def test_real_movielens():
    d = load_movielens_100k(REAL)
    assert (d.num_users, d.num_items) == (943, 1682)
    assert d.num_train + d.num_test == 100_000
    assert 0.19 < d.num_test / 100_000 < 0.21
    t = load_movielens_100k(REAL, split="time")
    assert t.num_train + t.num_test == 100_000


# --------------------------------------------------------------------------- splits


def test_split_per_user_counts():
    g = torch.Generator().manual_seed(0)
    users = torch.repeat_interleave(torch.arange(6), torch.tensor([1, 2, 5, 10, 0, 3]))
    pairs = torch.stack([users, torch.randperm(users.numel(), generator=g)])
    keep, held = split_per_user(pairs, 6, 0.2, seed=1)
    assert keep.shape[1] + held.shape[1] == pairs.shape[1]
    assert _pairs_set(keep) | _pairs_set(held) == _pairs_set(pairs)
    assert not (_pairs_set(keep) & _pairs_set(held))
    held_n = torch.bincount(held[0], minlength=6).tolist()
    assert held_n == [0, 0, 1, 2, 0, 1]  # min(round(0.2 n), n - 1)
    again = split_per_user(pairs, 6, 0.2, seed=1)
    assert torch.equal(again[1], held)
    other = split_per_user(pairs, 6, 0.2, seed=2)[1]
    assert other.shape == held.shape


def test_split_by_order_takes_latest():
    pairs = torch.tensor([[0, 0, 0, 0, 0], [4, 3, 2, 1, 0]])
    order = torch.tensor([5.0, 1.0, 3.0, 4.0, 2.0])
    keep, held = split_per_user(pairs, 1, 0.4, order=order)
    assert _pairs_set(held) == {(0, 4), (0, 1)}
    with pytest.raises(ValueError, match="split_per_user: fraction"):
        split_per_user(pairs, 1, 1.0)


def test_interactions_validation():
    d = synthetic_interactions(50, 80, avg_interactions=10, seed=4)
    v = d.with_validation(0.25, seed=0)
    assert _pairs_set(v.train) | _pairs_set(v.val) == _pairs_set(d.train)
    assert torch.equal(v.test, d.test)
    assert "validation" in v.info
    with pytest.raises(ValueError, match="already has a validation"):
        v.with_validation(0.1)
    with pytest.raises(ValueError, match="Interactions: train has item ids"):
        Interactions("x", 2, 3, torch.tensor([[0], [3]]), torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Interactions: test must have shape \(2, N\)"):
        Interactions(
            "x", 2, 3, torch.zeros(2, 0, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long)
        )
    with pytest.raises(TypeError, match="Interactions: train must hold integer"):
        Interactions("x", 2, 3, torch.zeros(2, 1), torch.zeros(2, 0, dtype=torch.long))


# --------------------------------------------------------------------------- generator


def test_synthetic_properties():
    d = synthetic_interactions(300, 500, avg_interactions=12, min_interactions=4, seed=7)
    d2 = synthetic_interactions(300, 500, avg_interactions=12, min_interactions=4, seed=7)
    assert torch.equal(d.train, d2.train) and torch.equal(d.test, d2.test)
    assert not torch.equal(d.train, synthetic_interactions(300, 500, avg_interactions=12,
                                                           min_interactions=4, seed=8).train)
    assert (d.num_users, d.num_items) == (300, 500)
    assert not (_pairs_set(d.train) & _pairs_set(d.test))
    per_user = torch.bincount(torch.cat([d.train[0], d.test[0]]), minlength=300)
    assert int(per_user.min()) >= 3  # few duplicates among the oversampled candidates
    assert 8 < float(per_user.float().mean()) < 16
    assert bool((torch.bincount(d.train[0], minlength=300) >= 1).all())
    pop = torch.bincount(torch.cat([d.train[1], d.test[1]]), minlength=500).sort(descending=True)
    top = pop.values[:50].sum() / pop.values.sum()
    assert top > 0.25  # power-law popularity: the top 10% of items get well over 10%
    with pytest.raises(ValueError, match="synthetic_interactions: num_items"):
        synthetic_interactions(10, 0)


def test_synthetic_chunks(monkeypatch):
    """Chunking changes neither validity nor the count of pairs per user."""
    import sparselth.data.recsys as rs

    monkeypatch.setattr(rs, "_CAND_CHUNK", 97)
    d = synthetic_interactions(120, 90, avg_interactions=8, seed=1)
    per_user = torch.bincount(torch.cat([d.train[0], d.test[0]]), minlength=120)
    assert int(per_user.min()) >= 1 and d.num_items == 90


# --------------------------------------------------------------------------- sampler


def _check_samples(train: CSR, users, pos, neg):
    dense = train.to_dense().bool()
    assert bool(dense[users, pos].all()), "positives must be training items"
    assert not bool(dense[users, neg].any()), "negatives must never be positives"


def test_bpr_sampler():
    d = synthetic_interactions(100, 60, avg_interactions=15, seed=2)
    s = BPRSampler(d.train_csr, seed=0)
    assert len(s) == d.num_train
    u, p, n = s.sample(5000)
    assert u.dtype == p.dtype == n.dtype == torch.int64 and u.shape == (5000,)
    _check_samples(d.train_csr, u, p, n)
    # uniform over users: every user appears
    assert torch.unique(u).numel() == 100
    batches = list(s.epoch(batch_size=700))
    assert sum(b[0].numel() for b in batches) == d.num_train
    assert len(batches) == s.num_batches(700)
    assert all(b[0].numel() == 700 for b in batches[:-1])
    a = BPRSampler(d.train_csr, seed=3).sample(100)
    b = BPRSampler(d.train_csr, seed=3).sample(100)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(TypeError, match="BPRSampler: train must be a CSR"):
        BPRSampler(d.train)
    with pytest.raises(ValueError, match="BPRSampler.epoch: batch_size"):
        next(s.epoch(0))


def test_bpr_sampler_skips_full_and_empty_users():
    # user 0 has every item (no negatives), user 1 none, user 2 one item
    pairs = torch.tensor([[0, 0, 0, 2], [0, 1, 2, 1]])
    A = CSR.from_edge_index(pairs, num_nodes=3, num_cols=3)
    u, p, n = BPRSampler(A, seed=0).sample(200)
    assert bool((u == 2).all()) and bool((p == 1).all())
    assert set(n.tolist()) == {0, 2}


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(2, 15), st.floats(0.05, 0.9), st.integers(0, 10_000))
def test_bpr_sampler_fuzz(users, items, density, seed):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(users, items, generator=g) < density
    r, c = keep.nonzero(as_tuple=True)
    A = CSR.from_coo(r, c, None, (users, items))
    s = BPRSampler(A, seed=seed)
    deg = keep.sum(1)
    if not bool(((deg > 0) & (deg < items)).any()):
        with pytest.raises(ValueError, match="BPRSampler.sample"):
            s.sample(3)
        return
    u, p, n = s.sample(300)
    _check_samples(A, u, p, n)
    assert bool(((deg[u] > 0) & (deg[u] < items)).all())


# --------------------------------------------------------------------------- adjacency


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bipartite_adjacency(dtype):
    d = synthetic_interactions(30, 20, avg_interactions=6, seed=5)
    A = d.adjacency(dtype=dtype).to_dense()
    R = d.train_csr.to_dense().to(torch.float64)
    U, I = R.shape
    full = torch.zeros(U + I, U + I, dtype=torch.float64)
    full[:U, U:] = R
    full[U:, :U] = R.T
    deg = full.sum(1)
    dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    ref = dinv[:, None] * full * dinv[None, :]
    assert A.dtype == dtype
    torch.testing.assert_close(A.to(torch.float64), ref, **tolerances(dtype))
    assert torch.equal(A, A.T)
    assert float(A.diagonal().abs().sum()) == 0.0
