"""Node-level GraphCL pre-training (determinism, early stopping, checkpoint written and read
back) and the linear evaluation, on a tiny synthetic graph; one Cora run when the data is
there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sparselth.data import contextual_sbm
from sparselth.models import FIRST_LAYER_KEY
from sparselth.train import (NodeGraphCLConfig, NodeGraphCLPretrain, linear_evaluate,
                             read_checkpoint)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
REAL_DATA = Path(os.environ.get("SPARSELTH_DATA", SHARED))


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return contextual_sbm(60, num_classes=3, avg_degree=6, num_features=12, seed=0,
                          train_per_class=5, num_val=15, num_test=20)


def _cfg(**kw):
    base = dict(dataset="csbm", hidden=16, max_epochs=6, eval_runs=3, eval_steps=20, seed=3)
    base.update(kw)
    return NodeGraphCLConfig(**base)


def test_linear_evaluate_separable_and_bad_input():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    emb = torch.nn.functional.one_hot(y, 4).float() * 5 + 0.01 * torch.randn(40, 4, generator=g)
    train = torch.arange(40) < 20
    res = linear_evaluate(emb, y, train, ~train, runs=3, steps=50)
    assert res["acc_mean"] == 1.0 and res["acc_std"] == 0.0 and len(res["accs"]) == 3
    with pytest.raises(ValueError, match="labels"):
        linear_evaluate(emb, y[:5], train, ~train)
    with pytest.raises(ValueError, match="test_mask"):
        linear_evaluate(emb, y, train, torch.zeros(40, dtype=torch.bool))
    with pytest.raises(ValueError, match="runs"):
        linear_evaluate(emb, y, train, ~train, runs=0)


@pytest.mark.parametrize("aug", ["edge", "mask", "node", "subgraph"])
def test_pretraining_is_deterministic_under_its_seed(data, aug):
    a = NodeGraphCLPretrain(data, _cfg(aug=aug, max_epochs=3), progress=False).run()
    b = NodeGraphCLPretrain(data, _cfg(aug=aug, max_epochs=3), progress=False).run()
    assert a["losses"] == b["losses"] and len(a["losses"]) == 3
    assert a["linear_eval"] == b["linear_eval"]
    c = NodeGraphCLPretrain(data, _cfg(aug=aug, max_epochs=3, seed=4), progress=False).run()
    assert c["losses"] != a["losses"]


def test_early_stopping_keeps_the_best_epoch(data):
    res = NodeGraphCLPretrain(data, _cfg(patience=1, max_epochs=200, lr=0.5),
                              progress=False).run()
    losses = res["losses"]
    assert res["stopped"] == "patience" and len(losses) < 200
    assert res["best_loss"] == min(losses) and losses[res["best_epoch"]] == min(losses)
    assert losses[-1] >= res["best_loss"] and res["epochs"] == res["best_epoch"] + 2


def test_checkpoint_is_written_and_read_back(data, tmp_path):
    ck = tmp_path / "enc.safetensors"
    run = NodeGraphCLPretrain(data, _cfg(), checkpoint=ck, progress=False)
    first = run.run()
    state, meta = read_checkpoint(ck)
    assert state[FIRST_LAYER_KEY].shape == (16, 12)
    assert meta["config"] == _cfg().to_dict() and meta["first_layer_key"] == FIRST_LAYER_KEY
    for k, v in run.encoder_state().items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    again = NodeGraphCLPretrain(data, _cfg(), checkpoint=ck, progress=False).run()
    assert again["reused"] and not first["reused"]
    assert again["losses"] == first["losses"] and again["linear_eval"] == first["linear_eval"]
    with pytest.raises(ValueError, match="another config"):
        NodeGraphCLPretrain(data, _cfg(lr=0.01), checkpoint=ck, progress=False).run()
    other = tmp_path / "other.safetensors"
    from sparselth._io import save_safetensors
    save_safetensors(other, {"w": torch.ones(2)})
    with pytest.raises(ValueError, match="not a node-level GraphCL checkpoint"):
        read_checkpoint(other)


def test_config_validation(data):
    with pytest.raises(ValueError, match="aug"):
        NodeGraphCLConfig(aug="random4")
    with pytest.raises(ValueError, match="drop_percent"):
        NodeGraphCLConfig(drop_percent=1.0)
    with pytest.raises(ValueError, match="patience"):
        NodeGraphCLConfig(patience=0)
    with pytest.raises(TypeError, match="GraphData"):
        NodeGraphCLPretrain(object(), NodeGraphCLConfig())
    assert NodeGraphCLConfig().run_name() != NodeGraphCLConfig(seed=0).run_name()


def test_cora_few_epochs():
    if not (REAL_DATA / "planetoid").exists():
        pytest.skip(f"planetoid not found under {REAL_DATA} (set SPARSELTH_DATA to the datasets "
                    "folder)")
    from sparselth.data import load_planetoid

    data = load_planetoid("cora", root=REAL_DATA)
    run = NodeGraphCLPretrain(data, NodeGraphCLConfig(dataset="cora", max_epochs=3, eval_runs=2,
                                                      eval_steps=20), progress=False)
    res = run.run()
    assert len(res["losses"]) == 3 and abs(res["losses"][0] - 0.6931) < 0.01  # log 2 at start
    assert run.encoder_state()[FIRST_LAYER_KEY].shape == (512, 1433)
    assert 0.3 < res["linear_eval"]["acc_mean"] <= 1.0
