"""Train, save and load the proxy FID/IS feature network (:class:`ImageFeatureNet`) on a
labelled image set, for machines without the standard Inception weights.

The file is safetensors (no pickle) written atomically, with the network's configuration, the
dataset name and its held-out accuracy in the metadata; :func:`load_feature_net` checks the
weights' sha256 against the one recorded in the metadata, so a score's ``network_hash`` names
exactly the weights that produced it.

Example::

    >>> net, info = train_feature_net(x_train, y_train, x_test, y_test, name="fashion-mnist")
    >>> save_feature_net("fm-features.safetensors", net, info)
    >>> stats = feature_stats(load_feature_net("fm-features.safetensors"), images)
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._io import load_safetensors, save_safetensors
from ..metrics.fid import module_hash
from ..models.feature_net import ImageFeatureNet

__all__ = ["train_feature_net", "save_feature_net", "load_feature_net"]


def _check_images(fn: str, name: str, x: Any, y: Any) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{fn}: {name} images must be a float (n, C, H, W) tensor")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0] or \
            y.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{fn}: {name} labels must be an int (n,) tensor matching the images")


@torch.no_grad()
def _accuracy(net: ImageFeatureNet, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    net.eval()
    hits = sum(int((net.logits(xb).argmax(1) == yb).sum())
               for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    return hits / max(1, x.shape[0])


def train_feature_net(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, *,
                      name: str = "", epochs: int = 3, batch_size: int = 128, lr: float = 1e-3,
                      width: int = 32, feature_dim: int = 128, seed: int = 0,
                      progress: bool = False) -> Tuple[ImageFeatureNet, Dict[str, Any]]:
    """An :class:`ImageFeatureNet` trained with Adam on cross-entropy for ``epochs`` passes;
    returns it (eval mode) and ``{"dataset", "test_acc", "epochs", "seed", "config"}``."""
    from tqdm.auto import tqdm

    fn = "train_feature_net"
    _check_images(fn, "training", x, y)
    _check_images(fn, "test", x_test, y_test)
    for k, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {k} must be a positive int, got {v!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ImageFeatureNet(x.shape[1], int(max(y.max(), y_test.max())) + 1, width, feature_dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((x.shape[0] + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc=f"feature net {name}".strip(), disable=not progress)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        for idx in perm.split(batch_size):
            loss = F.cross_entropy(net.logits(x[idx]), y[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    acc = _accuracy(net, x_test, y_test.long())
    return net.eval(), {"dataset": name, "test_acc": acc, "epochs": epochs, "seed": seed,
                        "config": dict(net.config)}


def save_feature_net(path: Any, net: ImageFeatureNet, info: Optional[Dict[str, Any]] = None
                     ) -> str:
    """Write the network (safetensors, atomic) with its configuration, ``info`` and the hash of
    its weights in the metadata; returns that hash."""
    if not isinstance(net, ImageFeatureNet):
        raise TypeError(f"save_feature_net: net must be an ImageFeatureNet, got "
                        f"{type(net).__name__}")
    digest = module_hash(net)
    meta = {"kind": "sparselth.ImageFeatureNet", "config": json.dumps(net.config),
            "info": json.dumps(info or {}), "module_hash": digest}
    save_safetensors(path, net.state_dict(), meta)
    return digest


def load_feature_net(path: Any) -> ImageFeatureNet:
    """The network saved by :func:`save_feature_net`, in eval mode, its weights checked against
    the recorded hash (ValueError when they differ or the file is not such a network)."""
    from safetensors import safe_open

    tensors = load_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "sparselth.ImageFeatureNet":
        raise ValueError(f"load_feature_net: {str(path)!r} is not an ImageFeatureNet file")
    try:
        net = ImageFeatureNet(**json.loads(meta["config"]))
        net.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"load_feature_net: {str(path)!r} does not fit an ImageFeatureNet: "
                         f"{e}") from e
    if module_hash(net) != meta.get("module_hash"):
        raise ValueError(f"load_feature_net: the weights of {str(path)!r} do not match their "
                         "recorded hash (modified file)")
    net.info = json.loads(meta.get("info", "{}"))
    return net.eval()
