"""GraphCL pre-training driver and the SVM evaluation of the unsupervised TU protocol, on tiny
synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparselth.prune.run import read_records
from sparselth.train.graphcl import (GraphCLConfig, GraphCLPretrain, embed_dataset, parse_aug,
                                     svm_evaluate)
from tests.pretrain._batches import random_batch

pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, d)) * 0.3 + 4.0 * y[:, None]
    return x, y


def test_svm_separable_is_perfect():
    x, y = _blobs()
    out = svm_evaluate(x, y, folds=5, inner_folds=3, seed=0)
    assert out["acc"] == pytest.approx(1.0)
    assert out["acc_std"] == pytest.approx(0.0)
    assert len(out["fold_acc"]) == 5 and len(out["fold_c"]) == 5
    assert out["val_acc"] == pytest.approx(1.0) and len(out["fold_val_acc"]) == 5


def test_svm_random_labels_near_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8))
    y = rng.permutation(np.arange(200) % 2)
    out = svm_evaluate(torch.from_numpy(x), torch.from_numpy(y), folds=5, inner_folds=3, seed=0)
    assert 0.3 <= out["acc"] <= 0.7


def test_svm_fold_split_is_seeded():
    x, y = _blobs(seed=3)
    x = x + np.random.default_rng(4).normal(size=x.shape) * 3.0  # overlap: errors to shuffle
    a = svm_evaluate(x, y, folds=4, inner_folds=2, seed=5)
    b = svm_evaluate(x, y, folds=4, inner_folds=2, seed=5)
    assert a == b


@pytest.mark.parametrize("kwargs,word", [
    (dict(folds=1), "folds"), (dict(inner_folds=True), "inner_folds"), (dict(cs=()), "cs"),
    (dict(cs=(1.0, -1.0)), "cs"), (dict(seed=1.5), "seed"), (dict(folds=40), "folds"),
])
def test_svm_bad_arguments(kwargs, word):
    x, y = _blobs()
    with pytest.raises(ValueError, match=word):
        svm_evaluate(x, y, **kwargs)


def test_svm_bad_shapes():
    x, y = _blobs()
    with pytest.raises(ValueError, match="labels"):
        svm_evaluate(x, y[:-1])
    with pytest.raises(ValueError, match="embeddings"):
        svm_evaluate(x[:, 0], y)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        svm_evaluate(x, y)


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("batch_size", -1), ("lr", 0.0), ("temperature", -0.2), ("loss", "simclr"),
    ("aug", "dropnodes"), ("aug", "dnodes+pedges+subgraph"), ("aug_config", "x"),
    ("folds", 1), ("eval_every", 0), ("seed", "0"),
])
def test_config_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GraphCLConfig(**{field: value})


def test_parse_aug():
    assert parse_aug("random4") == (None, "random4")
    assert parse_aug("dnodes+subgraph") == ("dnodes", "subgraph")
    assert not GraphCLConfig(aug="dnodes+subgraph").augment_config().original_first
    assert GraphCLConfig().augment_config().original_first


def _data():
    sizes = [5, 6, 7, 8, 5, 6, 7, 8, 6, 7, 5, 8]
    return random_batch(sizes, p=0.5, num_features=3, seed=0)


CFG = dict(dataset="tiny", epochs=2, batch_size=4, eval_every=1, folds=2, inner_folds=2)


def test_driver_runs_records_and_resumes(tmp_path, monkeypatch):
    data = _data()
    cfg = GraphCLConfig(**CFG)
    run = GraphCLPretrain(data, cfg, run_dir=tmp_path / "r", progress=False)
    recs = run.run()
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    assert recs[0]["loss"] is None and all(np.isfinite(r["loss"]) for r in recs[1:])
    for r in recs:
        assert r["evaluated"] and 0.0 <= r["metrics"]["svm_acc"] <= 1.0
        assert len(r["fold_acc"]) == 2 and r["metric"] == "svm_acc"
        assert 0.0 <= r["metrics"]["svm_val_acc"] <= 1.0 and len(r["fold_val_acc"]) == 2
        assert r["weight_sparsity"] == 0.0 and r["graph_sparsity"] is None
    kind, stored = read_records(tmp_path / "r")
    assert kind == "graphcl" and [r["round"] for r in stored] == [0, 1, 2]
    files = json.loads((tmp_path / "r" / "progress.json").read_text())["files"]
    assert "round_002/encoder.safetensors" in files and "init.safetensors" in files
    assert not list((tmp_path / "r").rglob("*.pt")) and not list((tmp_path / "r").rglob("*.pkl"))

    # a finished run is read back, nothing is trained again
    calls = []
    monkeypatch.setattr(GraphCLPretrain, "_epoch", lambda self, e: calls.append(e) or 0.0)
    again = GraphCLPretrain(data, cfg, run_dir=tmp_path / "r", progress=False).run()
    assert calls == [] and again == recs


def test_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    data = _data()
    cfg = GraphCLConfig(**CFG)
    full = GraphCLPretrain(data, cfg, run_dir=tmp_path / "full", progress=False).run()

    real = GraphCLPretrain._run_round

    def stop_at_two(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(GraphCLPretrain, "_run_round", stop_at_two)
    with pytest.raises(KeyboardInterrupt):
        GraphCLPretrain(data, cfg, run_dir=tmp_path / "cut", progress=False).run()
    monkeypatch.setattr(GraphCLPretrain, "_run_round", real)
    trained = []
    real_epoch = GraphCLPretrain._epoch
    monkeypatch.setattr(GraphCLPretrain, "_epoch",
                        lambda self, e: trained.append(e) or real_epoch(self, e))
    resumed = GraphCLPretrain(data, cfg, run_dir=tmp_path / "cut", progress=False)
    recs = resumed.run()
    assert trained == [2]
    # the same numbers as the uninterrupted run (weights, optimiser and generators restored)
    assert recs[2]["loss"] == pytest.approx(full[2]["loss"], rel=1e-5)
    assert recs[2]["metrics"] == pytest.approx(full[2]["metrics"], rel=1e-5)


def test_resume_refuses_another_config(tmp_path):
    data = _data()
    GraphCLPretrain(data, GraphCLConfig(**{**CFG, "epochs": 1}), run_dir=tmp_path,
                    progress=False).run()
    with pytest.raises(ValueError, match="lr"):
        GraphCLPretrain(data, GraphCLConfig(**{**CFG, "epochs": 1, "lr": 0.1}),
                        run_dir=tmp_path, progress=False).run()


def test_eval_every_and_root(tmp_path):
    data = _data()
    cfg = GraphCLConfig(**{**CFG, "epochs": 3, "eval_every": 2})
    recs = GraphCLPretrain(data, cfg, root=tmp_path, progress=False).run()
    assert [r["evaluated"] for r in recs] == [True, False, True, True]
    assert recs[1]["metrics"] == {}
    assert (tmp_path / cfg.run_name() / "progress.json").is_file()


def test_driver_bad_arguments(tmp_path):
    data = _data()
    with pytest.raises(TypeError, match="config"):
        GraphCLPretrain(data, {"epochs": 1}, run_dir=tmp_path)
    with pytest.raises(TypeError, match="dataset"):
        GraphCLPretrain(torch.zeros(3), GraphCLConfig(**CFG), run_dir=tmp_path)
    with pytest.raises(ValueError, match="run_dir"):
        GraphCLPretrain(data, GraphCLConfig(**CFG))


def test_embeddings_are_frozen_eval_mode():
    from sparselth.models import GraphCLGIN

    data = _data()
    torch.manual_seed(0)
    model = GraphCLGIN(3).train()
    a = embed_dataset(model, data, batch_size=5)
    b = embed_dataset(model, data, batch_size=100)
    assert a.shape == (12, 96) and model.training
    assert torch.allclose(a, b, atol=1e-5)  # eval mode: no batch statistics


def test_non_finite_loss_stops_the_run(tmp_path, monkeypatch):
    import sparselth.train.graphcl as mod

    monkeypatch.setattr(mod, "nt_xent", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        GraphCLPretrain(_data(), GraphCLConfig(**CFG), run_dir=tmp_path, progress=False).run()
    _, recs = read_records(tmp_path)
    assert [r["round"] for r in recs] == [0]   # epoch 0 stays committed
