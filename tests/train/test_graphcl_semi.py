"""GraphCL's semi-supervised TU protocol on tiny synthetic data: the reference's fold and
labelled-set split, the two epoch-selection rules, resumable pre-training and fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparselth.data import with_degree_features
from sparselth.models import ResGCN
from sparselth.train.graphcl_semi import (SemiFinetune, SemiFinetuneConfig, SemiPretrain,
                                          SemiPretrainConfig, select_epoch,
                                          semi_supervised_splits)
from tests.pretrain._batches import random_batch

pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=40):
    return with_degree_features(random_batch([4 + i % 5 for i in range(n)], num_features=2,
                                             seed=7), "deg+odeg10")


def test_splits_follow_the_reference_k_fold():
    from sklearn.model_selection import StratifiedKFold

    y = np.array([0] * 60 + [1] * 40)
    splits = semi_supervised_splits(torch.from_numpy(y), folds=5, semi_split=4, split_seed=3)
    outer = list(StratifiedKFold(5, shuffle=True, random_state=3).split(np.zeros(100), y))
    seen = []
    for (lab, test), (train, ref_test) in zip(splits, outer):
        assert test.tolist() == sorted(ref_test.tolist())
        assert set(lab.tolist()) <= set(train.tolist())
        assert lab.numel() == 20          # 80 training graphs / 4
        assert (y[lab.numpy()] == 1).sum() == 8   # stratified: 40 % of class 1
        # the reference keeps the first part of StratifiedKFold(semi_split) on the train fold
        _, part = next(iter(StratifiedKFold(4, shuffle=True, random_state=3).split(
            np.zeros(len(train)), y[train])))
        assert lab.tolist() == sorted(train[part].tolist())
        seen += test.tolist()
    assert sorted(seen) == list(range(100))
    with pytest.raises(ValueError, match="folds"):
        semi_supervised_splits(np.array([0, 0, 1]), folds=2)
    with pytest.raises(ValueError, match="semi_split"):
        semi_supervised_splits(y, semi_split=1)


def test_select_epoch_by_hand():
    acc = np.array([[0.5, 0.9, 0.6], [0.7, 0.7, 0.8]])
    best = select_epoch(acc, "test_max")
    assert best["epoch"] == 2 and best["acc"] == pytest.approx(0.8)
    assert best["std"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    last = select_epoch(acc, "last")
    assert last["epoch"] == 3 and last["acc"] == pytest.approx(0.7)
    assert last["fold_acc"] == [0.6, 0.8]
    with pytest.raises(ValueError, match="rule"):
        select_epoch(acc, "val_max")
    with pytest.raises(ValueError, match="folds, epochs"):
        select_epoch(np.ones(3))


def test_pretraining_resumes_exactly_and_keeps_checkpoints(tmp_path, monkeypatch):
    data = _data()
    cfg = SemiPretrainConfig(dataset="T", epochs=4, batch_size=16, hidden=8, save_every=2)
    full = SemiPretrain(data, cfg, run_dir=tmp_path / "a", progress=False)
    recs = full.run()
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in recs[1:])
    kept = sorted(p.parent.name for p in (tmp_path / "a").glob("round_*/encoder.safetensors"))
    assert kept == ["round_000", "round_002", "round_004"]
    with pytest.raises(ValueError, match="no weights kept"):
        full.checkpoint(3)

    # stop after epoch 3, resume: the same weights as the uninterrupted run
    part = SemiPretrain(data, cfg, run_dir=tmp_path / "b", progress=False)
    orig = SemiPretrain._run_round

    def stop(self, epoch):
        if epoch == 4:
            raise KeyboardInterrupt
        return orig(self, epoch)

    monkeypatch.setattr(SemiPretrain, "_run_round", stop)
    with pytest.raises(KeyboardInterrupt):
        part.run()
    monkeypatch.setattr(SemiPretrain, "_run_round", orig)
    again = SemiPretrain(data, cfg, run_dir=tmp_path / "b", progress=False)
    recs_b = again.run()
    assert [r["loss"] for r in recs_b] == pytest.approx([r["loss"] for r in recs])
    for k, v in full.checkpoint(4).items():
        torch.testing.assert_close(again.checkpoint(4)[k], v)
    model = ResGCN(data.num_features, 2, hidden=8)
    model.load_state_dict(again.checkpoint(2))          # a full ResGCN state


def test_finetuning_records_every_epoch_and_resumes(tmp_path, monkeypatch):
    data = _data(60)
    pre = SemiPretrain(data, SemiPretrainConfig(epochs=2, batch_size=16, hidden=8,
                                                save_every=2), run_dir=tmp_path / "p",
                       progress=False)
    pre.run()
    cfg = SemiFinetuneConfig(init="p@2", semi_split=2, epochs=3, batch_size=8, folds=3,
                             hidden=8)
    ft = SemiFinetune(data, cfg, init_state=pre.checkpoint(2), root=tmp_path, progress=False)
    acc = ft.accuracies()
    assert acc.shape == (3, 3) and ((acc >= 0) & (acc <= 1)).all()
    rec = ft.records[0]
    assert rec["n_labelled"] + rec["n_test"] < 60 and len(rec["train_loss"]) == 3
    # a finished run is read back, not trained again
    monkeypatch.setattr(SemiFinetune, "_run_round", lambda self, f: pytest.fail("retrained"))
    again = SemiFinetune(data, cfg, init_state=pre.checkpoint(2), root=tmp_path,
                         progress=False)
    np.testing.assert_array_equal(again.accuracies(), acc)
    # scratch and pre-trained starts differ, and the init must match the config
    with pytest.raises(ValueError, match="init_state"):
        SemiFinetune(data, cfg, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="init_state"):
        SemiFinetune(data, SemiFinetuneConfig(), init_state=pre.checkpoint(2), root=tmp_path)


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="aug1"):
        SemiPretrainConfig(aug1="rotate")
    with pytest.raises(ValueError, match="aug_ratio"):
        SemiPretrainConfig(aug_ratio=1.5)
    with pytest.raises(ValueError, match="semi_split"):
        SemiFinetuneConfig(semi_split=1)
    with pytest.raises(ValueError, match="lr"):
        SemiFinetuneConfig(lr=0)
    assert SemiPretrainConfig().augment_config().edge_add
    assert SemiPretrainConfig(aug_ratio=0.1).augment_config().ratio == 0.1
