"""Fréchet distance (FID) and Inception Score (IS) of generated images, with a pluggable feature
network.

FID (Heusel et al. 2017) fits a Gaussian to the features of each image set and returns
``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``; the matrix square root is SciPy's
``sqrtm`` in float64 (a near-singular product gets ``eps * I`` added to both covariances, as
the common implementations do). IS (Salimans et al. 2016) is ``exp(E_x KL(p(y|x) || p(y)))``
over ``splits`` equal parts, mean and std over the parts.

A score is only as comparable as its feature network: with the standard Inception-v3 FID
weights (:func:`sparselth.models.fid_inception`) the numbers are the standard ones; any other
network gives a *proxy* score. Every :class:`FeatureStats` and score records the network's
name, a hash of its weights, the sample count and the reference split, so a proxy never passes
for a published number.

Example::

    >>> real = feature_stats(net, real_images, network="inception-fid", split="test")
    >>> fake = feature_stats(net, generator_samples, network="inception-fid", split="G")
    >>> fid_score(real, fake)["fid"]
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._io import atomic_write_bytes

__all__ = ["FeatureStats", "gaussian_stats", "frechet_distance", "feature_stats", "fid_score",
           "inception_score", "module_hash", "batched_features"]

PathLike = Union[str, Path]


def module_hash(module: nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes and values, in name order): two
    feature networks with the same hash give the same features."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _as_2d(fn: str, name: str, x: Any) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{fn}: {name} must be 2-D (n >= 2 samples, d >= 1 features), got "
                         f"shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{fn}: {name} contains NaN or infinite values")
    return a


def gaussian_stats(features: Any) -> tuple:
    """``(mu (d,), sigma (d, d))`` of ``(n, d)`` features in float64 (unbiased covariance, as
    ``numpy.cov``)."""
    a = _as_2d("gaussian_stats", "features", features)
    return a.mean(0), np.atleast_2d(np.cov(a, rowvar=False))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    from scipy import linalg

    fn = "frechet_distance"
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"{fn}: means must be (d,) and covariances (d, d) of one d, got "
                         f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    for name, a in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{fn}: {name} contains NaN or infinite values")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular: handled below
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"{fn}: the matrix square root has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}); the covariances are not "
                             "positive semi-definite")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(value, 0.0)


@dataclass
class FeatureStats:
    """The Gaussian of one image set's features and where it came from."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    network: str = "unnamed"
    network_hash: str = ""
    split: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_features(cls, features: Any, **kwargs: Any) -> "FeatureStats":
        mu, sigma = gaussian_stats(features)
        return cls(mu, sigma, int(np.shape(features)[0]), **kwargs)

    def describe(self) -> Dict[str, Any]:
        """The record of these statistics (no arrays)."""
        return {"network": self.network, "network_hash": self.network_hash,
                "count": self.count, "split": self.split, "dim": int(self.mu.shape[0])}

    def save(self, path: PathLike) -> None:
        """Write an ``.npz`` (``mu``, ``sigma`` plus the record as strings) atomically."""
        buf = io.BytesIO()
        np.savez(buf, mu=self.mu, sigma=self.sigma, count=np.int64(self.count),
                 network=np.str_(self.network), network_hash=np.str_(self.network_hash),
                 split=np.str_(self.split))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: PathLike, **defaults: Any) -> "FeatureStats":
        """Read an ``.npz`` with ``mu`` and ``sigma`` (the format of the common FID packages'
        precomputed statistics; their other fields are optional). Never unpickles."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FeatureStats.load: {str(path)!r} does not exist")
        with open(path, "rb") as f:
            if f.read(2) != b"PK":
                raise ValueError(f"FeatureStats.load: {str(path)!r} is not a readable .npz "
                                 "(no zip header)")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "mu" not in z or "sigma" not in z:
                    raise ValueError(f"FeatureStats.load: {str(path)!r} lacks 'mu' or 'sigma' "
                                     f"(has {sorted(z.files)})")
                mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
                rec = {k: (z[k].item() if k in z else defaults.get(k, d)) for k, d in
                       (("count", 0), ("network", "unnamed"), ("network_hash", ""),
                        ("split", ""))}
        except (OSError, EOFError) as e:  # zip errors and truncated files
            raise ValueError(f"FeatureStats.load: {str(path)!r} is not a readable .npz: {e}") \
                from e
        d = mu.shape[0] if mu.ndim == 1 else -1
        if d < 1 or sigma.shape != (d, d):
            raise ValueError(f"FeatureStats.load: {str(path)!r} has mu {mu.shape} and sigma "
                             f"{sigma.shape}; expected (d,) and (d, d)")
        return cls(mu, sigma, int(rec["count"]), str(rec["network"]), str(rec["network_hash"]),
                   str(rec["split"]))


@torch.no_grad()
def batched_features(net: Callable[[Tensor], Any], images: Any, batch_size: int = 128,
                     device: Any = None) -> Tensor:
    """``net(batch)`` over ``images`` (a tensor ``(n, C, H, W)`` or an iterable of batches),
    concatenated as float64 ``(n, d)``. A network returning a list or tuple (as the common
    Inception ports do) contributes its last element; 4-D outputs are flattened."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batched_features: batch_size must be a positive int, got "
                         f"{batch_size!r}")
    was = getattr(net, "training", None)
    if isinstance(net, nn.Module):
        net.eval()
    try:
        chunks = images.split(batch_size) if isinstance(images, Tensor) else images
        out = []
        for b in chunks:
            y = net(b if device is None else b.to(device))
            if isinstance(y, (list, tuple)):
                y = y[-1]
            out.append(y.reshape(y.shape[0], -1).double().cpu())
    finally:
        if isinstance(net, nn.Module) and was:
            net.train()
    if not out:
        raise ValueError("batched_features: images is empty")
    return torch.cat(out)


def feature_stats(net: Callable[[Tensor], Any], images: Any, *, network: Optional[str] = None,
                  split: str = "", batch_size: int = 128, device: Any = None) -> FeatureStats:
    """:class:`FeatureStats` of ``net``'s features of ``images``; ``network`` names the
    network (default: its class name) and, for an ``nn.Module``, its weights are hashed."""
    feats = batched_features(net, images, batch_size, device)
    name = network or type(net).__name__
    digest = module_hash(net) if isinstance(net, nn.Module) else ""
    return FeatureStats.from_features(feats, network=name, network_hash=digest, split=split)


def fid_score(real: FeatureStats, fake: FeatureStats, eps: float = 1e-6) -> Dict[str, Any]:
    """FID between two :class:`FeatureStats` of the same network, with its record:
    ``{"fid", "network", "network_hash", "real": {...}, "fake": {...}}``."""
    for name, s in (("real", real), ("fake", fake)):
        if not isinstance(s, FeatureStats):
            raise TypeError(f"fid_score: {name} must be FeatureStats, got {type(s).__name__}")
    if real.network_hash and fake.network_hash and real.network_hash != fake.network_hash:
        raise ValueError(f"fid_score: the statistics come from different feature networks "
                         f"({real.network} {real.network_hash[:12]} vs {fake.network} "
                         f"{fake.network_hash[:12]})")
    value = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma, eps)
    return {"fid": value, "network": real.network or fake.network,
            "network_hash": real.network_hash or fake.network_hash,
            "real": real.describe(), "fake": fake.describe()}


def inception_score(probs: Any, splits: int = 10) -> Dict[str, float]:
    """IS of class probabilities ``(n, classes)`` (rows sum to 1): ``{"is", "is_std",
    "splits"}``, mean and std over ``splits`` equal consecutive parts."""
    fn = "inception_score"
    p = _as_2d(fn, "probs", probs)
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError(f"{fn}: probs must be non-negative rows summing to 1 (apply softmax "
                         "to logits first)")
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= p.shape[0]:
        raise ValueError(f"{fn}: splits must be an int in [1, {p.shape[0]}], got {splits!r}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0).sum(1)
        scores.append(math.exp(float(kl.mean())))
    return {"is": float(np.mean(scores)), "is_std": float(np.std(scores)), "splits": splits}
