"""Image datasets from their published file formats (never unpickled), for GAN training and FID.

- :func:`load_fashion_mnist`: the IDX files (gzipped or not) of Fashion-MNIST or MNIST;
- :func:`load_mnist_5k`: ``mnist_5k.csv.gz`` (784 pixel values 0-255 and the label per line);
- :func:`load_cifar10`: the *binary* CIFAR-10 release (``data_batch_1.bin`` ... ``test_batch.bin``);
- :func:`load_stl10`: the binary STL-10 release (``train_X.bin``, ``unlabeled_X.bin`` ...);
- :func:`load_image_folder`: every image of a folder (PIL), resized, for unpaired translation
  (``trainA``/``trainB`` of a horse2zebra-style layout);
- :func:`unpaired_classes`: an offline unpaired task from two classes of one dataset (e.g.
  Fashion-MNIST sneaker <-> ankle boot).

Every loader returns float32 images ``(n, C, H, W)`` in [0, 1] and int64 labels (``-1`` where a
set has none); ``root`` is a folder of datasets (or ``$SPARSELTH_DATA``) holding the dataset's
subfolder, or the dataset's own folder.

Example::

    >>> x, y = load_fashion_mnist("datasets", split="train")     # (60000, 1, 28, 28)
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .files import dataset_dir

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "load_mnist_5k", "load_cifar10",
           "load_stl10", "load_image_folder", "unpaired_classes", "read_idx"]

FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Any) -> np.ndarray:
    """An IDX file (the MNIST format; ``.gz`` read through gzip) as a NumPy array, checking its
    magic number and that its size matches the header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: {str(path)!r} does not exist")
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"read_idx: cannot read {str(path)!r}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {str(path)!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"read_idx: {str(path)!r} is truncated in its header")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = head + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"read_idx: {str(path)!r} holds {len(raw)} bytes, its header "
                         f"{dims} needs {expected}")
    return np.frombuffer(raw, dtype, offset=head).reshape(dims)


def _find(fn: str, folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{fn}: neither {stem}.gz nor {stem} in {str(folder)!r}")


def _images(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32) / np.float32(255.0))


def load_fashion_mnist(root: Any = None, split: str = "train", *,
                       name: str = "fashion-mnist") -> Tuple[Tensor, Tensor]:
    """Fashion-MNIST (or MNIST with ``name="mnist"``) from its IDX files: ``split`` is
    ``"train"`` (60,000) or ``"test"`` (10,000); images ``(n, 1, 28, 28)``."""
    fn = "load_fashion_mnist"
    if split not in ("train", "test"):
        raise ValueError(f"{fn}: split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    marker = f"{prefix}-images-idx3-ubyte"
    try:
        folder = dataset_dir(fn, name, marker + ".gz", root)
    except FileNotFoundError:
        folder = dataset_dir(fn, name, marker, root)
    x = read_idx(_find(fn, folder, marker))
    y = read_idx(_find(fn, folder, f"{prefix}-labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: images {x.shape} and labels {y.shape} in {str(folder)!r} do "
                         "not match")
    return _images(x)[:, None], torch.from_numpy(y.astype(np.int64))


def load_mnist_5k(root: Any = None) -> Tuple[Tensor, Tensor]:
    """The 5,000-digit MNIST subset: ``mnist_5k.csv.gz`` (or ``.csv``), images
    ``(5000, 1, 28, 28)``."""
    fn = "load_mnist_5k"
    try:
        folder = dataset_dir(fn, "mnist-5k", "mnist_5k.csv.gz", root)
        path = folder / "mnist_5k.csv.gz"
    except FileNotFoundError:
        folder = dataset_dir(fn, "mnist-5k", "mnist_5k.csv", root)
        path = folder / "mnist_5k.csv"
    try:
        with _open(path) as f:
            a = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{fn}: {str(path)!r} is not a CSV of integers: {e}") from e
    if a.shape[1] != 785:
        raise ValueError(f"{fn}: {str(path)!r} has {a.shape[1]} columns, expected 785 "
                         "(784 pixels and the label)")
    if a[:, :784].min(initial=0) < 0 or a[:, :784].max(initial=0) > 255:
        raise ValueError(f"{fn}: {str(path)!r} has pixel values outside 0..255")
    return _images(a[:, :784].reshape(-1, 1, 28, 28)), torch.from_numpy(a[:, 784].copy())


def _binary_records(fn: str, path: Path, label_bytes: int, shape: Tuple[int, ...]) -> Tuple:
    rec = label_bytes + int(np.prod(shape))
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % rec:
        raise ValueError(f"{fn}: {str(path)!r} holds {raw.size} bytes, not a multiple of the "
                         f"{rec}-byte record")
    raw = raw.reshape(-1, rec)
    return raw[:, label_bytes:].reshape(-1, *shape), raw[:, :label_bytes]


def load_cifar10(root: Any = None, split: str = "train") -> Tuple[Tensor, Tensor]:
    """CIFAR-10 from the binary release (``cifar-10-batches-bin``): ``split`` ``"train"`` (the
    five data batches, 50,000) or ``"test"`` (10,000); images ``(n, 3, 32, 32)``."""
    fn = "load_cifar10"
    if split not in ("train", "test"):
        raise ValueError(f"{fn}: split must be 'train' or 'test', got {split!r}")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else \
        ["test_batch.bin"]
    try:
        folder = dataset_dir(fn, "cifar-10-batches-bin", names[0], root)
    except FileNotFoundError:
        folder = dataset_dir(fn, "cifar10/cifar-10-batches-bin", names[0], root)
    xs, ys = [], []
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{fn}: {name} missing in {str(folder)!r}")
        x, y = _binary_records(fn, folder / name, 1, (3, 32, 32))
        xs.append(x)
        ys.append(y[:, 0])
    y = np.concatenate(ys).astype(np.int64)
    if y.max(initial=0) > 9:
        raise ValueError(f"{fn}: labels above 9 in {str(folder)!r}: not the CIFAR-10 format")
    return _images(np.concatenate(xs)), torch.from_numpy(y)


def load_stl10(root: Any = None, split: str = "unlabeled") -> Tuple[Tensor, Tensor]:
    """STL-10 from the binary release (``stl10_binary``): ``split`` ``"train"``, ``"test"`` or
    ``"unlabeled"`` (labels -1); images ``(n, 3, 96, 96)`` (the files are column-major)."""
    fn = "load_stl10"
    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"{fn}: split must be 'train', 'test' or 'unlabeled', got {split!r}")
    folder = dataset_dir(fn, "stl10_binary", f"{split}_X.bin", root)
    raw = np.fromfile(folder / f"{split}_X.bin", np.uint8)
    rec = 3 * 96 * 96
    if raw.size == 0 or raw.size % rec:
        raise ValueError(f"{fn}: {split}_X.bin holds {raw.size} bytes, not a multiple of {rec}")
    x = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    if split == "unlabeled":
        y = np.full(x.shape[0], -1, np.int64)
    else:
        y = np.fromfile(folder / f"{split}_y.bin", np.uint8).astype(np.int64) - 1
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{fn}: {split}_y.bin has {y.shape[0]} labels for {x.shape[0]} "
                             "images")
    return _images(x), torch.from_numpy(y)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def load_image_folder(folder: Any, size: int = 64, channels: int = 3) -> Tensor:
    """Every image file of ``folder`` (sorted by name), resized to ``size x size`` (bilinear),
    as ``(n, channels, size, size)`` in [0, 1]."""
    from PIL import Image

    fn = "load_image_folder"
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{fn}: {str(folder)!r} is not a folder")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{fn}: size must be a positive int, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"{fn}: channels must be 1 or 3, got {channels!r}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{fn}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in "
                         f"{str(folder)!r}")
    out = np.empty((len(files), size, size, channels), np.uint8)
    for i, p in enumerate(files):
        try:
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize(
                    (size, size), Image.BILINEAR)
                out[i] = np.asarray(im).reshape(size, size, channels)
        except OSError as e:
            raise ValueError(f"{fn}: cannot read {str(p)!r}: {e}") from e
    return _images(out.transpose(0, 3, 1, 2))


def unpaired_classes(x: Tensor, y: Tensor, a: Any, b: Any, *, seed: int = 0,
                     classes: Optional[Sequence[str]] = FASHION_MNIST_CLASSES
                     ) -> Tuple[Tensor, Tensor]:
    """Domains A and B of an unpaired translation task: the images of class ``a`` and of class
    ``b`` (ids, or names in ``classes``), each shuffled by ``seed`` and cut to the same count
    (the two domains share no images, so the task is unpaired)."""
    fn = "unpaired_classes"

    def cid(c: Any, name: str) -> int:
        if isinstance(c, str):
            if classes is None or c not in classes:
                raise ValueError(f"{fn}: {name}={c!r} is not one of {tuple(classes or ())}")
            return list(classes).index(c)
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"{fn}: {name} must be a class id or name, got {c!r}")
        return c

    ia, ib = cid(a, "a"), cid(b, "b")
    if ia == ib:
        raise ValueError(f"{fn}: a and b must be different classes, got {a!r} twice")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: x has {x.shape[0]} images, y {y.shape[0]} labels")
    g = torch.Generator().manual_seed(int(seed))
    pa = (y == ia).nonzero().squeeze(1)
    pb = (y == ib).nonzero().squeeze(1)
    pa, pb = pa[torch.randperm(pa.numel(), generator=g)], pb[torch.randperm(pb.numel(), generator=g)]
    n = min(pa.numel(), pb.numel())
    if n == 0:
        raise ValueError(f"{fn}: classes {a!r} and {b!r} need at least one image each")
    return x[pa[:n]], x[pb[:n]]
