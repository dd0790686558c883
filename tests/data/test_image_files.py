"""Image loaders on files the tests write in each format (and on the real files when present):
values, shapes, layouts, and clear errors for broken files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sparselth.data import (load_cifar10, load_fashion_mnist, load_image_folder, load_mnist_5k,
                            load_stl10, read_idx, unpaired_classes)

DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">") if code != 0x08 else np.uint8).tobytes()


def _write_mnist(folder: Path, n=5, gz=True, prefix="train"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    for stem, a in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
        data = _idx(a)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx(tmp_path, gz):
    x, y = _write_mnist(tmp_path / "fashion-mnist", gz=gz, prefix="t10k")
    gx, gy = load_fashion_mnist(tmp_path, split="test")
    assert gx.shape == (5, 1, 28, 28) and gx.dtype == torch.float32
    assert torch.equal(gy, torch.from_numpy(y.astype(np.int64)))
    assert torch.allclose(gx[:, 0] * 255, torch.from_numpy(x.astype(np.float32)))
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, split="val")


def test_idx_other_dtypes_and_broken_files(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    (tmp_path / "i.idx").write_bytes(_idx(a, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "i.idx"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(ValueError, match="needs"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


def test_mnist_5k_csv(tmp_path):
    folder = tmp_path / "mnist-5k"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = np.concatenate([rng.integers(0, 256, (3, 784)), [[4], [0], [9]]], 1)
    text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    (folder / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    x, y = load_mnist_5k(tmp_path)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [4, 0, 9]
    assert torch.allclose(x.reshape(3, -1) * 255, torch.from_numpy(rows[:, :784]).float())
    (folder / "mnist_5k.csv.gz").write_bytes(gzip.compress(b"1,2,3\n"))
    with pytest.raises(ValueError, match="785"):
        load_mnist_5k(tmp_path)


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(2)
    recs = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 2).astype(np.uint8)
        pix = rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)
        recs[name] = (labels, pix)
        np.concatenate([labels[:, None], pix], 1).tofile(folder / name)
    x, y = load_cifar10(tmp_path, "test")
    labels, pix = recs["test_batch.bin"]
    assert x.shape == (2, 3, 32, 32) and y.tolist() == labels.tolist()
    # channel-major records: the first 1024 bytes are the red plane
    assert torch.allclose(x[1, 0].reshape(-1) * 255, torch.from_numpy(pix[1, :1024]).float())
    assert load_cifar10(tmp_path, "train")[0].shape == (10, 3, 32, 32)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="record"):
        load_cifar10(tmp_path, "test")


def test_stl10_binary_is_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    img = np.zeros((3, 96, 96), np.uint8)
    img[0, 5, 7] = 200                         # row 5, column 7 of the red plane
    img.transpose(0, 2, 1).tofile(folder / "train_X.bin")   # the file stores columns first
    np.array([3], np.uint8).tofile(folder / "train_y.bin")
    x, y = load_stl10(tmp_path, "train")
    assert x.shape == (1, 3, 96, 96) and y.tolist() == [2]
    assert x[0, 0, 5, 7] == pytest.approx(200 / 255) and x.sum() == pytest.approx(200 / 255)
    img.transpose(0, 2, 1).tofile(folder / "unlabeled_X.bin")
    assert load_stl10(tmp_path, "unlabeled")[1].tolist() == [-1]


def test_image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "trainA"
    folder.mkdir()
    Image.new("RGB", (10, 6), (255, 0, 0)).save(folder / "b.png")
    Image.new("RGB", (8, 8), (0, 0, 255)).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    x = load_image_folder(folder, size=4)
    assert x.shape == (2, 3, 4, 4)
    assert torch.allclose(x[0, 2], torch.ones(4, 4)) and torch.allclose(x[1, 0], torch.ones(4, 4))
    assert load_image_folder(folder, size=4, channels=1).shape == (2, 1, 4, 4)
    (folder / "c.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot read"):
        load_image_folder(folder, size=4)
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(_empty(tmp_path), size=4)


def _empty(tmp_path):
    p = tmp_path / "empty"
    p.mkdir()
    return p


def test_unpaired_classes():
    y = torch.tensor([7, 9, 7, 7, 9, 1, 9, 9])
    x = torch.arange(8.0).reshape(8, 1, 1, 1)
    a, b = unpaired_classes(x, y, "sneaker", "ankle boot", seed=0)
    assert a.shape[0] == b.shape[0] == 3
    assert set(a.flatten().tolist()) <= {0.0, 2.0, 3.0} and set(b.flatten().tolist()) <= {1, 4, 6, 7}
    with pytest.raises(ValueError, match="different"):
        unpaired_classes(x, y, 7, "sneaker")
    with pytest.raises(ValueError, match="one of"):
        unpaired_classes(x, y, "sneakers", 9)


@pytest.mark.skipif(not (DATA / "fashion-mnist").is_dir() or not (DATA / "mnist-5k").is_dir(),
                    reason="the real Fashion-MNIST / MNIST-5k files are not in ../shared/datasets")
def test_real_files():
    x, y = load_fashion_mnist(DATA, "test")
    assert x.shape == (10000, 1, 28, 28) and torch.equal(y.bincount(), torch.full((10,), 1000))
    x5, y5 = load_mnist_5k(DATA)
    assert x5.shape == (5000, 1, 28, 28) and torch.equal(y5.bincount(), torch.full((10,), 500))
    assert 0 <= float(x.min()) and float(x.max()) == 1.0
