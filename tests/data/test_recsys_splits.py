"""The standard protocol's per-user 80/10/10 split and the loaders' ``protocol`` argument."""

from __future__ import annotations

import pytest
import torch

from sparselth.data import (
    load_lastfm,
    load_movielens_100k,
    load_recsys,
    split_80_10_10,
    synthetic_interactions,
)
from sparselth.data.splits import PROTOCOLS, check_protocol

from .test_recsys import REAL, _lastfm_dir, _ml_dir


def _pairs(num_users: int = 40, num_items: int = 60, seed: int = 0) -> torch.Tensor:
    """Distinct pairs; user u has u % 25 items (0, 1 and 2 included)."""
    g = torch.Generator().manual_seed(seed)
    cols = []
    for u in range(num_users):
        items = torch.randperm(num_items, generator=g)[: u % 25]
        cols.append(torch.stack([torch.full_like(items, u), items]))
    pairs = torch.cat(cols, 1)
    return pairs[:, torch.randperm(pairs.shape[1], generator=g)]


def _key(p: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, p.t().tolist()))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_split_is_a_per_user_partition_with_the_fractions(dtype):
    pairs = _pairs().to(dtype)
    train, val, test = split_80_10_10(pairs, 40, seed=3)
    assert train.dtype == val.dtype == test.dtype == torch.int64
    assert train.shape[1] + val.shape[1] + test.shape[1] == pairs.shape[1]
    assert _key(train) | _key(val) | _key(test) == _key(pairs.long())
    assert not (_key(train) & _key(val)) and not (_key(train) & _key(test))
    assert not (_key(val) & _key(test))
    counts = [torch.bincount(p[0], minlength=40) for p in (train, val, test)]
    n = torch.bincount(pairs[0].long(), minlength=40)
    for u in range(40):
        nu = int(n[u])
        if nu < 3:  # too few to hold any out: all in train
            assert (int(counts[0][u]), int(counts[1][u]), int(counts[2][u])) == (nu, 0, 0)
            continue
        assert counts[0][u] >= 1 and counts[1][u] >= 1 and counts[2][u] >= 1
        for c, f in zip(counts, (0.8, 0.1, 0.1)):
            assert abs(int(c[u]) - f * nu) <= 1.5, (u, nu, [int(x[u]) for x in counts])


def test_split_deterministic_by_seed_and_generator():
    pairs = _pairs()
    a = split_80_10_10(pairs, 40, seed=7)
    b = split_80_10_10(pairs, 40, seed=7)
    c = split_80_10_10(pairs, 40, seed=8)
    d = split_80_10_10(pairs, 40, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, d))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_split_other_fractions_and_empty():
    train, val, test = split_80_10_10(_pairs(), 40, fractions=(0.6, 0.2, 0.2), seed=0)
    assert test.shape[1] > 0.15 * (train.shape[1] + val.shape[1] + test.shape[1])
    empty = torch.zeros(2, 0, dtype=torch.int64)
    assert all(p.shape == (2, 0) for p in split_80_10_10(empty, 5))


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.2, 0.1), (1.0, 0.0, 0.0),
                                       (0.9, -0.05, 0.15), "abc", None])
def test_split_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_80_10_10(_pairs(), 40, fractions=fractions)


def test_split_bad_inputs():
    with pytest.raises(TypeError, match="pairs"):
        split_80_10_10([[0], [1]], 1)
    with pytest.raises(TypeError, match="pairs"):
        split_80_10_10(torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match="pairs"):
        split_80_10_10(torch.zeros(3, 3, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="num_users"):
        split_80_10_10(torch.zeros(2, 3, dtype=torch.int64), -1)
    with pytest.raises(ValueError, match="user ids"):
        split_80_10_10(torch.tensor([[0, 5], [0, 1]]), 2)
    with pytest.raises(TypeError, match="generator"):
        split_80_10_10(_pairs(), 40, generator=3)


@pytest.mark.parametrize("bad", ["Standard", "80/10/10", None, 1])
def test_bad_protocol_names(bad, tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        check_protocol("f", bad)
    with pytest.raises(ValueError, match="protocol"):
        synthetic_interactions(30, 40, protocol=bad)
    root = _lastfm_dir(tmp_path, "1\t2\t1\n", "1\t3\t1\n")
    with pytest.raises(ValueError, match="protocol"):
        load_lastfm(root, protocol=bad)
    assert PROTOCOLS == ("reference", "standard")


def test_lastfm_standard_resplits_all_pairs(tmp_path):
    train = "".join(f"{u}\t{i}\t1\n" for u in (1, 2) for i in range(1, 9))
    test = "".join(f"{u}\t{i}\t1\n" for u in (1, 2, 3) for i in range(9, 11)) + "1\t2\t1\n"
    root = _lastfm_dir(tmp_path, train, test)
    ref = load_lastfm(root)
    d = load_lastfm(root, protocol="standard", seed=1)
    assert _key(d.train) | _key(d.val) | _key(d.test) == _key(ref.train) | _key(ref.test)
    assert d.num_train + d.num_val + d.num_test == 2 * 10 + 2  # the duplicate counted once
    assert d.num_val == d.num_test == 2 and "0.8/0.1/0.1" in d.info["split"]
    assert int((d.train[0] == 2).sum()) == 2  # user 3 (id 2): 2 pairs, all in train
    with pytest.raises(ValueError, match="val_fraction"):
        load_lastfm(root, protocol="standard", val_fraction=0.1)
    same = load_recsys("lastfm", root, protocol="standard", seed=1)
    assert torch.equal(same.test, d.test)


def test_movielens_standard(tmp_path):
    rows = [(u, i, 4, 100 + i) for u in range(1, 4) for i in range(1, 11)]
    root = _ml_dir(tmp_path, rows)
    d = load_movielens_100k(root, protocol="standard", seed=0)
    assert (d.num_train, d.num_val, d.num_test) == (24, 3, 3)
    with pytest.raises(ValueError, match="split"):
        load_movielens_100k(root, protocol="standard", split="time")
    with pytest.raises(ValueError, match="protocol"):
        load_movielens_100k(root, protocol="8/1/1")


def test_synthetic_standard():
    ref = synthetic_interactions(60, 80, seed=4)
    d = synthetic_interactions(60, 80, seed=4, protocol="standard")
    assert _key(d.train) | _key(d.val) | _key(d.test) == _key(ref.train) | _key(ref.test)
    assert d.num_val > 0 and d.num_test > 0
    assert torch.equal(d.test, synthetic_interactions(60, 80, seed=4, protocol="standard").test)


@pytest.mark.skipif(not (REAL / "lastfm" / "data1.txt").is_file(), reason="no LastFM files")
def test_real_lastfm_standard():
    d = load_lastfm(REAL, protocol="standard")
    total = d.num_train + d.num_val + d.num_test
    assert abs(d.num_test / total - 0.1) < 0.01 and abs(d.num_val / total - 0.1) < 0.01
    assert int(d.train[0].unique().numel()) == int(
        torch.cat([d.train, d.val, d.test], 1)[0].unique().numel())
