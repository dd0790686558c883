"""The GANs of "GANs Can Play Lottery Tickets Too" (Chen et al. 2021; PAPERS.md §2), sized by
arguments so that a CPU run and the paper's configuration are the same code.

- :class:`SNGANGenerator`: ``Linear(latent, bottom^2 ch)``, then up-blocks ``BN -> ReLU ->
  nearest x2 -> conv3x3 -> BN -> ReLU -> conv3x3`` with a ``nearest x2 -> conv1x1`` shortcut,
  until the image size; ``BN -> ReLU -> conv3x3 -> tanh``. No spectral norm. CIFAR-10 (the
  paper): ``latent 128, ch 256, bottom 4, image 32`` (3,742,464 prunable conv weights).
- :class:`SNGANDiscriminator`: an optimised down-block (conv, ReLU, conv, avgpool; shortcut
  avgpool -> conv1x1), a down-block, two plain blocks, ReLU, *sum* over space, ``Linear(ch,
  1, bias=False)``; spectral norm on every conv and the Linear. CIFAR-10: ``ch 128``.
- :class:`CycleGANGenerator`: the ResNet generator, "transconv" variant (reflect-pad conv7x7,
  two stride-2 convs, ``n_res`` residual blocks with instance norm, two ConvTranspose stride 2,
  reflect-pad conv7x7, tanh). The paper: ``ngf 64, n_res 9`` (11,372,928 conv weights).
- :class:`PatchGANDiscriminator`: the 70x70 PatchGAN (conv4x4 ``ndf, 2ndf, 4ndf, 8ndf`` with
  LeakyReLU 0.2 and instance norm, conv to one channel), averaged over the patches.

:func:`gan_init` is the reference initialisation (Xavier-uniform conv weights, BatchNorm
weight ~ N(1, 0.02), zero biases; Linear layers keep PyTorch's defaults), applied by the
constructors. :func:`prunable_weights` lists the weights GAN IMP prunes (every Conv2d and
ConvTranspose2d weight; for spectral-normalised convs the parametrisation's original).
"""

from __future__ import annotations

import math
from typing import Any, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["SNGANGenerator", "SNGANDiscriminator", "CycleGANGenerator", "PatchGANDiscriminator",
           "gan_init", "prunable_weights", "upsample_nearest2x"]


def _pos_int(cls: str, name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{cls}: {name} must be an int >= {minimum}, got {v!r}")
    return v


def gan_init(model: nn.Module) -> nn.Module:
    """Xavier-uniform (gain 1) on conv and conv-transpose weights, BatchNorm weight ~ N(1, 0.02),
    their biases 0 (``train_impg.py: weights_init``); Linear layers untouched."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") \
                else m.weight
            nn.init.xavier_uniform_(w)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def prunable_weights(model: nn.Module) -> List[str]:
    """Parameter names of every Conv2d / ConvTranspose2d weight (GAN IMP's global scope)."""
    names = []
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            leaf = "parametrizations.weight.original" if parametrize.is_parametrized(m, "weight") \
                else "weight"
            names.append(f"{mname}.{leaf}" if mname else leaf)
    return names


def upsample_nearest2x(x: Tensor) -> Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")`` for an ``(n, c, h, w)`` tensor,
    bit for bit, as two broadcast copies (columns doubled, then whole rows): on CPU
    ``F.interpolate`` copies a contiguous input through two layout changes and takes four
    to six times as long, a tenth of a 90 %-sparse generator's time."""
    n, c, h, w = x.shape
    wide = x.unsqueeze(-1).expand(n, c, h, w, 2).reshape(n, c, h, 1, 2 * w)
    return wide.expand(n, c, h, 2, 2 * w).reshape(n, c, 2 * h, 2 * w).contiguous()


def _hidden_widths(cls: str, hidden: Any, ch: int, n_blocks: int) -> List[int]:
    if hidden is None:
        return [ch] * n_blocks
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = [hidden] * n_blocks
    if not isinstance(hidden, Sequence) or len(hidden) != n_blocks:
        raise ValueError(f"{cls}: hidden must be an int or {n_blocks} ints (one per up-block), "
                         f"got {hidden!r}")
    return [_pos_int(cls, "hidden", h) for h in hidden]


class _GenBlock(nn.Module):
    """Up-block; ``hidden`` channels between ``c1`` and ``c2`` (default ``cout``; fewer in a
    channel-pruned generator). Parameter names do not depend on ``hidden``."""

    def __init__(self, cin: int, cout: int, hidden: int | None = None):
        super().__init__()
        hidden = cout if hidden is None else hidden
        self.b1, self.b2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(hidden)
        self.c1 = nn.Conv2d(cin, hidden, 3, padding=1)
        self.c2 = nn.Conv2d(hidden, cout, 3, padding=1)
        self.c_sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = upsample_nearest2x(F.relu(self.b1(x)))
        h = self.c2(F.relu(self.b2(self.c1(h))))
        return h + self.c_sc(upsample_nearest2x(x))


class SNGANGenerator(nn.Module):
    """SNGAN generator: ``forward(z)`` maps ``(n, latent)`` noise to ``(n, channels, image_size,
    image_size)`` images in [-1, 1]; ``image_size / bottom_width`` must be a power of two.
    ``hidden``: the channels inside each up-block (between ``c1`` and ``c2``), one int for all
    blocks or one per block; default ``ch`` (the paper's generator). A channel-pruned generator
    (:func:`channel_prune_generator`) has fewer; state dict names are the same."""

    def __init__(self, latent_dim: int = 128, ch: int = 256, bottom_width: int = 4,
                 image_size: int = 32, channels: int = 3,
                 hidden: int | Sequence[int] | None = None):
        super().__init__()
        c = "SNGANGenerator"
        for name, v in (("latent_dim", latent_dim), ("ch", ch), ("bottom_width", bottom_width),
                        ("image_size", image_size), ("channels", channels)):
            _pos_int(c, name, v)
        ups = image_size / bottom_width
        if ups < 2 or ups != 2 ** round(math.log2(ups)):
            raise ValueError(f"{c}: image_size / bottom_width must be a power of two >= 2, got "
                             f"{image_size} / {bottom_width}")
        self.latent_dim, self.ch, self.bottom_width = latent_dim, ch, bottom_width
        self.image_size, self.channels = image_size, channels
        n_blocks = round(math.log2(ups))
        self.hidden = _hidden_widths(c, hidden, ch, n_blocks)
        self.l1 = nn.Linear(latent_dim, bottom_width ** 2 * ch)
        self.blocks = nn.ModuleList(_GenBlock(ch, ch, h) for h in self.hidden)
        self.b5 = nn.BatchNorm2d(ch)
        self.c5 = nn.Conv2d(ch, channels, 3, padding=1)
        gan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"SNGANGenerator: z must be (n, {self.latent_dim}), got "
                             f"{tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}")
        h = self.l1(z).view(-1, self.ch, self.bottom_width, self.bottom_width)
        for block in self.blocks:
            h = block(h)
        return torch.tanh(self.c5(F.relu(self.b5(h))))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from ``z ~ N(0, I)`` (no gradient, current mode)."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        with torch.no_grad():
            return self(z.to(self.l1.weight.device))


class _DisBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.c1 = spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.c2 = spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.learnable_sc = down or cin != cout
        if self.learnable_sc:
            self.c_sc = spectral_norm(nn.Conv2d(cin, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if not self.learnable_sc:
            return h + x
        if self.first:  # optimised block: pool, then the 1x1 conv
            return h + self.c_sc(F.avg_pool2d(x, 2))
        sc = self.c_sc(x)
        return h + (F.avg_pool2d(sc, 2) if self.down else sc)


class SNGANDiscriminator(nn.Module):
    """SNGAN discriminator: ``forward(x)`` gives ``(n, 1)`` scores (no sigmoid; hinge loss)."""

    def __init__(self, ch: int = 128, channels: int = 3):
        super().__init__()
        _pos_int("SNGANDiscriminator", "ch", ch)
        _pos_int("SNGANDiscriminator", "channels", channels)
        self.ch, self.channels = ch, channels
        self.block1 = _DisBlock(channels, ch, down=True, first=True)
        self.block2 = _DisBlock(ch, ch, down=True)
        self.block3 = _DisBlock(ch, ch, down=False)
        self.block4 = _DisBlock(ch, ch, down=False)
        self.l5 = spectral_norm(nn.Linear(ch, 1, bias=False))
        gan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SNGANDiscriminator: x must be (n, {self.channels}, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        h = x
        for block in (self.block1, self.block2, self.block3, self.block4):
            h = block(h)
        return self.l5(F.relu(h).sum(dim=(2, 3)))


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CycleGANGenerator(nn.Module):
    """The CycleGAN ResNet generator ("transconv" upsampling); maps ``(n, channels, H, W)`` to
    the same shape in [-1, 1] (H and W divisible by 4)."""

    def __init__(self, channels: int = 3, ngf: int = 64, n_res: int = 9):
        super().__init__()
        c = "CycleGANGenerator"
        _pos_int(c, "channels", channels)
        _pos_int(c, "ngf", ngf)
        _pos_int(c, "n_res", n_res, 0)
        self.channels = channels
        layers: List[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7),
                                   nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * ch),
                       nn.ReLU(True)]
            ch *= 2
        layers += [_ResBlock(ch) for _ in range(n_res)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.channels or \
                x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"CycleGANGenerator: x must be (n, {self.channels}, H, W) with H and "
                             f"W divisible by 4, got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return self.model(x)


class PatchGANDiscriminator(nn.Module):
    """70x70 PatchGAN (``n_layers`` = 3) returning the mean patch score ``(n, 1)`` (LSGAN)."""

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        c = "PatchGANDiscriminator"
        _pos_int(c, "channels", channels)
        _pos_int(c, "ndf", ndf)
        _pos_int(c, "n_layers", n_layers)
        self.channels = channels
        layers: List[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PatchGANDiscriminator: x must be (n, {self.channels}, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return self.model(x).mean(dim=(2, 3))
