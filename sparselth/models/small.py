"""Small built-in models for ``sparselth find``, tests and benchmarks.

Models (all take ``(N, C, H, W)`` images; the MLP also takes ``(N, features)``):

- :class:`MLP` — fully connected ReLU network, e.g. ``MLP((784, 1024, 1024, 10))``.
- :class:`SmallConvNet` — three 3x3 convolutions (the last two with stride 2) and two
  linear layers: LeNet-sized, for 8x8 to 32x32 images.
- :class:`ConvAutoencoder` — strided convolutions down, transposed convolutions up (the
  generator-like shape of GAN tickets).

Models are built by name with :func:`build_model`, which also fills in sizes the data
decides (input features, channels, image size, classes). The image data they train on is in
:mod:`sparselth.data.images`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..utils.deprecation import moved_names

__all__ = ["MLP", "MODELS", "ConvAutoencoder", "SmallConvNet", "build_model"]

# The image data that lived here before :mod:`sparselth.data.images` (also reachable through
# :mod:`sparselth.models`): old name -> new home; the old names work for one release.
__getattr__ = moved_names("sparselth.models", {
    "DATASETS": "sparselth.data:IMAGE_DATASETS",
    "load_digits": "sparselth.data:load_digits",
    "make_dataset": "sparselth.data:make_image_dataset",
    "synthetic_images": "sparselth.data:synthetic_images",
})


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
