"""Small built-in models and image data for ``sparselth find``, tests and benchmarks.

Models (all take ``(N, C, H, W)`` images; the MLP also takes ``(N, features)``):

- :class:`MLP` — fully connected ReLU network, e.g. ``MLP((784, 1024, 1024, 10))``.
- :class:`SmallConvNet` — three 3x3 convolutions (the last two with stride 2) and two
  linear layers: LeNet-sized, for 8x8 to 32x32 images.
- :class:`ConvAutoencoder` — strided convolutions down, transposed convolutions up (the
  generator-like shape of GAN tickets).

Data: :func:`synthetic_images` (deterministic by seed, no download) and :func:`load_digits`
(scikit-learn's bundled 8x8 digits, when scikit-learn is installed); :func:`make_dataset`
picks one by name. Models are built by name with :func:`build_model`, which also fills in
sizes the data decides (input features, channels, image size, classes).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DATASETS",
    "MLP",
    "MODELS",
    "ConvAutoencoder",
    "SmallConvNet",
    "build_model",
    "load_digits",
    "make_dataset",
    "synthetic_images",
]


class MLP(nn.Module):
    """Fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ReLU between
    layers (none after the last). Inputs with more than two dimensions are flattened.

    Example::

        model = MLP((784, 1024, 1024, 10))
        logits = model(torch.randn(64, 784))      # (64, 10)
    """

    def __init__(self, sizes: Sequence[int] = (784, 1024, 1024, 10), bias: bool = True):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP: sizes must hold >= 2 positive ints, got {sizes}")
        self.sizes = sizes
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.layers(x)


class SmallConvNet(nn.Module):
    """``conv3x3(C->c0) - conv3x3/2(c0->c1) - conv3x3/2(c1->c2) - fc(hidden) - fc(classes)``,
    ReLU after every layer but the last; padding 1 everywhere.

    Example::

        model = SmallConvNet(in_channels=1, num_classes=10, image_size=28)
        logits = model(torch.randn(64, 1, 28, 28))   # (64, 10)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 channels: Sequence[int] = (32, 64, 64), hidden: int = 256):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.conv1 = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.conv2 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        s = image_size
        for _ in range(2):
            s = (s + 2 - 3) // 2 + 1
        self.fc1 = nn.Linear(c2 * s * s, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.conv3(x))
        x = self.act(self.fc1(x.flatten(1)))
        return self.fc2(x)


class ConvAutoencoder(nn.Module):
    """Two stride-2 convolutions down, two stride-2 transposed convolutions up; the output
    has the input's shape (for image sizes divisible by 4)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32), **_: Any):
        super().__init__()
        c0, c1 = (int(c) for c in channels)
        self.enc1 = nn.Conv2d(in_channels, c0, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.dec1 = nn.ConvTranspose2d(c1, c0, 4, stride=2, padding=1)
        self.dec2 = nn.ConvTranspose2d(c0, in_channels, 4, stride=2, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.enc1(x))
        x = self.act(self.enc2(x))
        x = self.act(self.dec1(x))
        return self.dec2(x)


MODELS: dict[str, type] = {"mlp": MLP, "convnet": SmallConvNet, "conv_autoencoder": ConvAutoencoder}


def build_model(name: str, *, in_channels: int | None = None, image_size: int | None = None,
                num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a model of :data:`MODELS` by name; ``in_channels``/``image_size``/``num_classes``
    (usually from the data) fill in what ``kwargs`` leave out. For ``"mlp"`` without
    ``sizes``: ``(in_channels * image_size**2, *hidden, num_classes)`` with ``hidden``
    default ``(256, 256)``.

    Example::

        build_model("mlp", in_channels=1, image_size=8, num_classes=10, hidden=[64])
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; built-in models: {sorted(MODELS)}")
    if name == "mlp":
        hidden = kwargs.pop("hidden", (256, 256))
        if "sizes" not in kwargs:
            if None in (in_channels, image_size, num_classes):
                raise ValueError("mlp: give sizes, or in_channels, image_size and num_classes")
            kwargs["sizes"] = (in_channels * image_size * image_size, *hidden, num_classes)
    else:
        for k, v in (("in_channels", in_channels), ("image_size", image_size),
                     ("num_classes", num_classes)):
            if v is not None and k in inspect.signature(MODELS[name]).parameters:
                kwargs.setdefault(k, v)
    params = inspect.signature(MODELS[name]).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"{name}: unknown options {unknown}; it takes {list(params)}")
    return MODELS[name](**kwargs)


# --------------------------------------------------------------------------- data


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


DATASETS = ("synthetic", "digits")


def make_dataset(name: str = "synthetic", n_train: int = 2000, n_test: int = 500,
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
        raise ValueError(f"unknown data set {name!r}; built-in: {list(DATASETS)}")
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te,
            "num_classes": num_classes, "image_size": image_size, "channels": channels}


def spec_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., **kwargs}`` -> kwargs without ``name`` (lists kept as lists)."""
    return {k: v for k, v in spec.items() if k != "name"}
