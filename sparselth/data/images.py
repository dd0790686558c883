"""Small image classification data, no download: for ``sparselth find``, tests and benchmarks.

- :func:`synthetic_images`: class templates plus noise, deterministic by seed;
- :func:`load_digits`: scikit-learn's bundled 8x8 handwritten digits (when scikit-learn is
  installed; it ships the data);
- :func:`make_image_dataset`: a train/test pair of either, by name (:data:`IMAGE_DATASETS`).

Example::

    >>> d = make_image_dataset("synthetic", n_train=2000, n_test=500, seed=0)
    >>> d["x_train"].shape, d["num_classes"]
    (torch.Size([2000, 1, 8, 8]), 10)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["IMAGE_DATASETS", "load_digits", "make_image_dataset", "synthetic_images"]


def synthetic_images(n: int, num_classes: int = 10, image_size: int = 8, channels: int = 1,
                     noise: float = 0.6, seed: int = 0,
                     sample_seed: int | None = None) -> tuple[Tensor, Tensor]:
    """``n`` images ``(n, channels, image_size, image_size)`` float32 and labels ``(n,)``.

    Each class has a smooth random template (bilinearly upsampled 4x4 noise); a sample is its
    class template, randomly scaled (0.7..1.3) and shifted by up to one pixel, plus Gaussian
    noise of std ``noise``. The templates depend on ``seed`` only; the samples on
    ``sample_seed`` (default: ``seed``), so a train and a test set share templates and differ
    in samples when drawn with the same ``seed`` and different ``sample_seed``.
    """
    if n < 0 or num_classes < 1 or image_size < 2 or channels < 1:
        raise ValueError("synthetic_images: n >= 0, num_classes >= 1, image_size >= 2, "
                         "channels >= 1")
    g = torch.Generator().manual_seed(int(seed))
    coarse = torch.randn(num_classes, channels, 4, 4, generator=g)
    templates = nn.functional.interpolate(coarse, size=(image_size, image_size),
                                          mode="bilinear", align_corners=False)
    templates = templates / templates.flatten(1).std(1).view(-1, 1, 1, 1)
    gs = torch.Generator().manual_seed(int(seed if sample_seed is None else sample_seed) + 1)
    y = torch.randint(0, num_classes, (n,), generator=gs)
    scale = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gs)
    x = templates[y] * scale
    shifts = torch.randint(-1, 2, (n, 2), generator=gs)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            if bool(sel.any()) and (dy or dx):
                x[sel] = torch.roll(x[sel], shifts=(dy, dx), dims=(2, 3))
    x = x + noise * torch.randn(x.shape, generator=gs)
    return x.float().contiguous(), y


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled handwritten digits: 1797 images ``(1797, 1, 8, 8)`` scaled to
    [0, 1], labels 0..9. Needs scikit-learn (it ships the data; nothing is downloaded)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:
        raise ImportError(
            "the 'digits' data set needs scikit-learn (pip install scikit-learn); "
            "use data name 'synthetic' instead") from e
    d = _load()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.int64)


IMAGE_DATASETS = ("synthetic", "digits")


def make_image_dataset(name: str = "synthetic", n_train: int = 2000, n_test: int = 500,
                 num_classes: int = 10, image_size: int = 8, channels: int = 1,
                 noise: float = 0.6, seed: int = 0) -> dict[str, Any]:
    """Train/test tensors by name: ``{"x_train", "y_train", "x_test", "y_test",
    "num_classes", "image_size", "channels"}``.

    ``"synthetic"``: :func:`synthetic_images`, train and test samples drawn from the same
    templates with different sample seeds.
    ``"digits"``: :func:`load_digits`, shuffled with ``seed`` and split into ``n_train``
    and ``n_test`` (at most 1797 together); ``num_classes``/``image_size``/``channels`` are
    the data's (10, 8, 1).
    """
    if name == "synthetic":
        x_tr, y_tr = synthetic_images(n_train, num_classes, image_size, channels, noise, seed,
                                      sample_seed=2 * seed + 1000)
        x_te, y_te = synthetic_images(n_test, num_classes, image_size, channels, noise, seed,
                                      sample_seed=2 * seed + 1001)
    elif name == "digits":
        x, y = load_digits()
        if n_train + n_test > len(y):
            raise ValueError(f"digits has {len(y)} images; n_train + n_test = "
                             f"{n_train + n_test}")
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))
        x, y = x[perm], y[perm]
        x_tr, y_tr = x[:n_train], y[:n_train]
        x_te, y_te = x[n_train:n_train + n_test], y[n_train:n_train + n_test]
        num_classes, image_size, channels = 10, 8, 1
    else:
        raise ValueError(f"unknown data set {name!r}; built-in: {list(IMAGE_DATASETS)}")
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te,
            "num_classes": num_classes, "image_size": image_size, "channels": channels}
