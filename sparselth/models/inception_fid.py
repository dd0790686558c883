"""The Inception-v3 of the standard FID (the TensorFlow 2015-12-05 graph as ported to PyTorch by
the common FID packages), written without torchvision, so that FID and IS are the published
ones when its weights file is on disk.

The network is Inception-v3 with 1008 output classes, ``BatchNorm eps = 1e-3``, and the FID
variants of its blocks: the average pools of the A, C and first E blocks exclude the padding
(``count_include_pad=False``) and the last E block max-pools. Inputs in [0, 1] are resized to
299 x 299 (bilinear) and mapped to [-1, 1]; grey images are repeated to three channels.
``forward`` returns the 2048-d pool features (FID); :meth:`FIDInceptionV3.class_probs` the
1008-way softmax (IS).

Weights: ``pt_inception-2015-12-05-6726825d.pth`` (the file the common FID packages download).
:func:`fid_inception` reads it from ``path`` or ``$SPARSELTH_FID_WEIGHTS``, checks that its
sha256 starts with ``6726825d`` (the hash prefix in the file name, as ``torch.hub`` checks it)
and loads it with ``torch.load(weights_only=True)`` (tensors only, no arbitrary objects).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._io import sha256_file

__all__ = ["FIDInceptionV3", "fid_inception", "FID_WEIGHTS_FILE", "FID_WEIGHTS_SHA256_PREFIX",
           "FID_WEIGHTS_ENV"]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
FID_WEIGHTS_ENV = "SPARSELTH_FID_WEIGHTS"

_K = Union[int, Tuple[int, int]]


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: _K, stride: int = 1,
                 padding: _K = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """``pool="avg"`` (the first E block of the FID network) or ``"max"`` (the second)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as the FID computes it; parameter names match the published weights file."""

    def __init__(self, num_classes: int = 1008, resize: bool = True):
        super().__init__()
        self.resize = resize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(2048, num_classes)

    def _prepare(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FIDInceptionV3: images must be (n, 1 or 3, H, W) in [0, 1], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        x = x.to(self.fc.weight.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def forward(self, x: Tensor) -> Tensor:
        """``(n, 2048)`` pool features of images in [0, 1]."""
        x = self._prepare(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    @torch.no_grad()
    def class_probs(self, x: Tensor) -> Tensor:
        """``(n, num_classes)`` softmax of the classifier (the input of the Inception Score)."""
        return F.softmax(self.fc(self.forward(x)), dim=1)


def fid_inception(path: Optional[Any] = None, *, check_hash: bool = True) -> FIDInceptionV3:
    """The FID Inception network with its published weights, from ``path`` or
    ``$SPARSELTH_FID_WEIGHTS``, in eval mode. Raises FileNotFoundError when neither names an
    existing file, ValueError when the file's sha256 does not start with
    :data:`FID_WEIGHTS_SHA256_PREFIX` or its tensors do not fit the network."""
    if path is None:
        path = os.environ.get(FID_WEIGHTS_ENV)
        if not path:
            raise FileNotFoundError(f"fid_inception: no weights file given; pass path=... or set "
                                    f"{FID_WEIGHTS_ENV} to {FID_WEIGHTS_FILE}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"fid_inception: weights file {str(path)!r} does not exist")
    if check_hash:
        digest = sha256_file(path)
        if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
            raise ValueError(f"fid_inception: {str(path)!r} has sha256 {digest[:16]}..., not the "
                             f"FID weights ({FID_WEIGHTS_SHA256_PREFIX}...)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file
        raise ValueError(f"fid_inception: cannot read {str(path)!r} as a tensor file: {e}") from e
    net = FIDInceptionV3()
    missing, unexpected = _compare_keys(net, state)
    if missing or unexpected:
        raise ValueError(f"fid_inception: {str(path)!r} does not fit the network: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    net.load_state_dict(state, strict=False)  # keys checked above
    return net.eval()


def _compare_keys(net: nn.Module, state: Any) -> Tuple[Sequence[str], Sequence[str]]:
    if not isinstance(state, dict):
        return ["<a state dict>"], []
    # BatchNorm step counters are absent from files older than PyTorch 0.4.1: not needed
    own = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    # torchvision-style files may carry the auxiliary classifier: not used by the FID
    theirs = {k for k in state if not k.startswith("AuxLogits.")
              and not k.endswith("num_batches_tracked")}
    for k in list(state):
        if k.startswith("AuxLogits."):
            del state[k]
    return sorted(own - theirs), sorted(theirs - own)
