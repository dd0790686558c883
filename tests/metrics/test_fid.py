"""FID and IS against closed forms: identical sets, Gaussians whose Fréchet distance is known,
predictions whose Inception Score is known; statistics files; refused inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from sparselth.metrics import (FeatureStats, feature_stats, fid_score, frechet_distance,
                               gaussian_stats, inception_score, module_hash)


def _spd(d, rng):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d) * 0.1


def test_a_set_against_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 16))
    s = FeatureStats.from_features(x)
    assert fid_score(s, s)["fid"] < 1e-6


def test_commuting_gaussians_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    d1, d2 = rng.uniform(0.5, 3, d), rng.uniform(0.5, 3, d)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = ((mu1 - mu2) ** 2).sum() + (d1 + d2 - 2 * np.sqrt(d1 * d2)).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-9)


def test_general_gaussians_match_eigenvalue_form():
    # tr (S1 S2)^(1/2) = sum of square roots of the eigenvalues of S1 S2 (real, >= 0)
    rng = np.random.default_rng(2)
    for d in (1, 3, 10):
        s1, s2 = _spd(d, rng), _spd(d, rng)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        ev = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
        exact = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum()
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-7, abs=1e-9)


def test_sampled_gaussians_converge_to_the_true_distance():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20000, 3))
    b = rng.standard_normal((20000, 3)) * 2 + 1
    got = fid_score(FeatureStats.from_features(a), FeatureStats.from_features(b))["fid"]
    exact = 3 * 1.0 + 3 * (1 + 4 - 2 * 2)
    assert got == pytest.approx(exact, rel=0.05)


def test_singular_covariances_are_handled():
    x = np.zeros((10, 4))
    x[:, 0] = np.arange(10)          # rank-one covariance
    s = FeatureStats.from_features(x)
    assert np.isfinite(fid_score(s, s)["fid"]) and fid_score(s, s)["fid"] < 1e-3


def test_inception_score_known_values():
    k = 7
    onehot = np.eye(k)[np.arange(70) % k]
    assert inception_score(onehot, splits=1)["is"] == pytest.approx(k)
    uniform = np.full((50, k), 1 / k)
    assert inception_score(uniform, splits=5)["is"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(k), 200)
    py = p.mean(0)
    exact = np.exp((p * (np.log(p) - np.log(py))).sum(1).mean())
    assert inception_score(p, splits=1)["is"] == pytest.approx(exact)


def test_inception_score_refuses_logits_and_bad_splits():
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.full((4, 2), 0.5), splits=5)


def test_stats_file_round_trip_and_refusals(tmp_path):
    x = np.random.default_rng(4).standard_normal((50, 5))
    s = FeatureStats.from_features(x, network="proxy", network_hash="ab" * 32, split="test")
    s.save(tmp_path / "s.npz")
    r = FeatureStats.load(tmp_path / "s.npz")
    assert np.array_equal(r.mu, s.mu) and np.array_equal(r.sigma, s.sigma)
    assert r.describe() == s.describe()
    np.savez(tmp_path / "plain.npz", mu=s.mu, sigma=s.sigma)      # the common packages' files
    assert FeatureStats.load(tmp_path / "plain.npz").count == 0
    np.savez(tmp_path / "obj.npz", mu=np.array([object()], dtype=object), sigma=s.sigma)
    with pytest.raises(ValueError):
        FeatureStats.load(tmp_path / "obj.npz")                      # never unpickles
    np.savez(tmp_path / "nomu.npz", sigma=s.sigma)
    with pytest.raises(ValueError, match="lacks"):
        FeatureStats.load(tmp_path / "nomu.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="readable"):
        FeatureStats.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "shape.npz", mu=s.mu, sigma=s.sigma[:3])
    with pytest.raises(ValueError, match="expected"):
        FeatureStats.load(tmp_path / "shape.npz")


def test_feature_stats_records_the_network_and_refuses_mixing():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.rand(40, 4)
    sa = feature_stats(a, x, split="test", batch_size=7)
    assert sa.count == 40 and sa.network == "Linear" and sa.network_hash == module_hash(a)
    mu, sigma = gaussian_stats(a(x).detach().double())
    assert np.allclose(sa.mu, mu) and np.allclose(sa.sigma, sigma)
    with pytest.raises(ValueError, match="different feature networks"):
        fid_score(sa, feature_stats(b, x))
    with torch.no_grad():
        b.weight.copy_(a.weight)
        b.bias.copy_(a.bias)
    assert module_hash(a) == module_hash(b)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.array([[np.nan], [1.0]]))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(TypeError, match="real"):
        fid_score(np.zeros(2), FeatureStats.from_features(np.eye(3)))
