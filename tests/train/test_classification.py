"""The SGD classification loop of `sparselth find`: steps per run, seeding, late-rewind
capture through the IMP driver, evaluation, and config validation."""

import pytest
import torch

from sparselth.data import make_image_dataset
from sparselth.models.small import build_model
from sparselth.prune import IMP, IMPConfig
from sparselth.train.classification import ClassificationTask, SGDConfig, evaluate_classifier


@pytest.fixture(scope="module")
def data():
    return make_image_dataset("synthetic", n_train=96, n_test=40, image_size=6, seed=1)


def _task(data, **cfg):
    return ClassificationTask(data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                              SGDConfig(**cfg), seed=2)


def _model(data, seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", in_channels=1, image_size=6, num_classes=data["num_classes"],
                       hidden=[16])


@pytest.mark.parametrize("cfg, n, steps", [
    ({"epochs": 2, "batch_size": 32}, 96, 6),
    ({"epochs": 2, "batch_size": 40}, 96, 6),       # a partial last batch is a step
    ({"epochs": 0, "max_steps": 5}, 96, 5),
    ({"epochs": 3, "max_steps": 4, "batch_size": 32}, 96, 4),   # whichever ends first
    ({"epochs": 1, "max_steps": 50, "batch_size": 32}, 96, 3),
])
def test_total_steps(cfg, n, steps):
    assert SGDConfig(**cfg).total_steps(n) == steps


@pytest.mark.parametrize("bad, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": 0, "max_steps": 0}, "max_steps"),
    ({"lr": "fast"}, "lr"),
    ({"epochs": 1.5}, "epochs"),
])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        SGDConfig(**bad)


def test_from_dict_refuses_unknown_keys():
    assert SGDConfig.from_dict({"lr": 0.1}).to_dict()["lr"] == 0.1
    with pytest.raises(ValueError, match="optimizer"):
        SGDConfig.from_dict({"optimizer": "adam"})


def test_training_learns_and_is_deterministic(data):
    task = _task(data, epochs=8, batch_size=16, lr=0.1)
    a, b = _model(data), _model(data)
    before = evaluate_classifier(a, data["x_test"], data["y_test"])
    task.train(a, 0)
    task.train(b, 0)
    after = task.evaluate(a)
    assert after["loss"] < before["loss"]
    assert set(after) == {"accuracy", "loss"} and 0 <= after["accuracy"] <= 1
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # same round, same seed: the same shuffles
    c = _model(data)
    task.train(c, 1)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_steps_reach_the_driver_for_late_rewinding(data, tmp_path):
    task = _task(data, epochs=1, max_steps=3, batch_size=32)
    model = _model(data)
    imp = task.bind(IMP(model, task, None, IMPConfig(rounds=1, fraction=0.5, rewind="late",
                                                     rewind_step=2),
                        run_dir=tmp_path / "imp", progress=False))
    records = imp.run()
    assert imp.rewind_step == 2  # captured at step 2 of round 0
    assert [r["round"] for r in records] == [0, 1]
    assert all("accuracy" in r["metrics"] for r in records)


def test_unbound_task_trains_without_a_driver(data):
    task = _task(data, epochs=0, max_steps=2, batch_size=32)
    assert task.driver is None
    task.train(_model(data), 0)  # no rewind capture, no progress bar
