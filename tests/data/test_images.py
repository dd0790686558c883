"""Small image data: synthetic templates (seeded, train and test share templates), scikit-learn's
digits, selection by name, and the old import paths under ``sparselth.models``."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sparselth.data import IMAGE_DATASETS, load_digits, make_image_dataset, synthetic_images


def test_synthetic_images_shapes_and_seeds():
    x, y = synthetic_images(50, num_classes=4, image_size=6, channels=2, seed=3)
    assert x.shape == (50, 2, 6, 6) and x.dtype == torch.float32
    assert y.shape == (50,) and int(y.min()) >= 0 and int(y.max()) < 4
    x2, y2 = synthetic_images(50, num_classes=4, image_size=6, channels=2, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = synthetic_images(50, num_classes=4, image_size=6, channels=2, seed=3, sample_seed=9)
    assert not torch.equal(x, x3)
    with pytest.raises(ValueError, match="^synthetic_images"):
        synthetic_images(5, image_size=1)


def test_make_image_dataset_synthetic():
    d = make_image_dataset("synthetic", n_train=40, n_test=10, num_classes=3, seed=1)
    assert d["x_train"].shape == (40, 1, 8, 8) and d["x_test"].shape == (10, 1, 8, 8)
    assert (d["num_classes"], d["image_size"], d["channels"]) == (3, 8, 1)
    assert not torch.equal(d["x_train"][:10], d["x_test"])
    assert set(IMAGE_DATASETS) == {"synthetic", "digits"}
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        make_image_dataset("mnist")


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="the digits data ship with scikit-learn, which is not installed")
def test_digits():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and float(x.max()) <= 1.0
    assert set(y.tolist()) == set(range(10))
    d = make_image_dataset("digits", n_train=100, n_test=50, seed=0)
    assert d["x_train"].shape == (100, 1, 8, 8) and d["num_classes"] == 10
    with pytest.raises(ValueError, match="digits has 1797 images"):
        make_image_dataset("digits", n_train=1700, n_test=200)


@pytest.mark.parametrize("old,new", [("DATASETS", "IMAGE_DATASETS"), ("load_digits", None),
                                     ("make_dataset", "make_image_dataset"),
                                     ("synthetic_images", None)])
@pytest.mark.parametrize("module", ["sparselth.models", "sparselth.models.small"])
def test_old_names_warn_and_forward(module, old, new):
    import sparselth.data

    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"sparselth.data.{new or old}"):
        value = getattr(mod, old)
    assert value is getattr(sparselth.data, new or old)
    with pytest.raises(AttributeError):
        getattr(mod, "no_such_name")
