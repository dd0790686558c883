"""``python -m bench.graphcl`` end to end on a tiny TU dataset written by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparselth.bench import common
from sparselth.bench import graphcl as bench_graphcl

from ._tu import write_tu as _write_tu

pytest.importorskip("sklearn")


def test_bench_graphcl_writes_its_result_and_resumes(tmp_path, one_thread, monkeypatch):
    data = _write_tu(tmp_path / "data")
    argv = ["--dataset", "TINY", "--data", str(data), "--seeds", "0", "1", "--epochs", "2",
            "--eval-every", "1", "--folds", "2", "--batch-size", "8",
            "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--no-progress"]
    rep = bench_graphcl.main(argv)
    stem = tmp_path / "out" / "graphcl-unsupervised-TINY"
    for suffix in (".json", ".md", ".png"):
        assert stem.with_suffix(suffix).is_file()
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0, 1, 2]
    head = saved["headline"]
    assert head["epoch"] == 2 and set(head["per_seed"]) == {"0", "1"}
    accs = [v["acc"] for v in head["per_seed"].values()]
    assert head["acc_mean"] == pytest.approx(np.mean(accs))
    assert head["acc_std_seeds"] == pytest.approx(np.std(accs))
    assert saved["machine"]["torch_threads"] == 1 and saved["paper"] is None
    text = stem.with_suffix(".md").read_text()
    assert "rule: the last epoch (2)" in text and "fold std" in text
    assert not saved["published_protocol"]
    assert str(data) not in saved["command"] and "--seeds 0 1" in saved["command"]
    assert str(tmp_path / "out") not in saved["command"]
    assert saved["compute_seconds"] > 0
    vs = saved["val_selected"]
    assert set(vs["per_seed"]) == {"0", "1"} and all(
        p["epoch"] in (0, 1, 2) for p in vs["per_seed"].values())
    assert all(e["val_mean"] is not None for e in saved["epochs"])
    assert "Validation-selected epoch" in text

    # a second call reads the finished runs back instead of training again
    from sparselth.train.graphcl import GraphCLPretrain

    monkeypatch.setattr(GraphCLPretrain, "_epoch", lambda self, e: pytest.fail("retrained"))
    again = bench_graphcl.main(argv + ["--no-plot"])
    assert again["epochs"] == rep["epochs"]


def test_bench_graphcl_protocol_and_name():
    args = bench_graphcl.build_parser().parse_args(["--dataset", "MUTAG"])
    assert bench_graphcl.output_name(args) == "graphcl-unsupervised-MUTAG"
    proto = bench_graphcl.run_protocol(args)
    assert proto["lr"] == 0.01 and proto["batch_size"] == 128 and proto["epochs"] == 20
    assert proto["temperature"] == 0.2 and proto["aug"] == "random4"
    assert proto["seeds"] == [0, 1, 2, 3, 4] and "seed" not in proto
    assert bench_graphcl.PAPER["MUTAG"][0] == 86.80
    bad = bench_graphcl.build_parser().parse_args(["--epochs", "0"])
    with pytest.raises(ValueError, match="epochs"):
        bench_graphcl.run_protocol(bad)
    dest = common.result_path("graphcl-unsupervised-MUTAG", args, bench_graphcl.PUBLISHED,
                              parser=bench_graphcl.build_parser(),
                              protocol=bench_graphcl.run_protocol)
    assert dest.stem == "graphcl-unsupervised-MUTAG"


def test_bench_graphcl_semisupervised_writes_both_rules_and_the_baseline(tmp_path, one_thread,
                                                                         monkeypatch):
    data = _write_tu(tmp_path / "data", graphs=40)
    argv = ["--protocol", "semisupervised", "--dataset", "TINY", "--data", str(data),
            "--seeds", "0", "--epochs", "2", "--save-every", "1", "--model-epochs", "1", "2",
            "--finetune-epochs", "3", "--folds", "2", "--label-rate", "0.5", "--batch-size",
            "8", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
            "--no-progress"]
    rep = bench_graphcl.main(argv)
    stem = tmp_path / "out" / "graphcl-semisupervised-TINY-50pct"
    for suffix in (".json", ".md", ".png"):
        assert stem.with_suffix(suffix).is_file()
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert set(saved["results"]) == {"scratch", "pretrained@1", "pretrained@2"}
    assert saved["headline_init"] == "pretrained@2" and saved["finetune"]["semi_split"] == 2
    for r in saved["results"].values():
        assert len(r["curve"]) == 3
        assert r["last"]["per_seed"]["0"]["epoch"] == 3
        best = r["test_max"]["per_seed"]["0"]
        assert r["curve"][best["epoch"] - 1] == pytest.approx(max(r["curve"]))
        assert r["test_max"]["acc_mean"] >= r["last"]["acc_mean"] - 1e-9
    assert saved["run_protocol"]["finetune"]["epochs"] == 3
    assert saved["run_protocol"]["temperature"] == 0.5 and saved["run_protocol"]["lr"] == 0.001
    text = stem.with_suffix(".md").read_text()
    assert "test_max" in text and "last epoch" in text and "from scratch" in text
    assert str(data) not in saved["command"]

    from sparselth.train.graphcl_semi import SemiFinetune, SemiPretrain

    monkeypatch.setattr(SemiPretrain, "_epoch", lambda self, e: pytest.fail("retrained"))
    monkeypatch.setattr(SemiFinetune, "_run_round", lambda self, f: pytest.fail("retrained"))
    again = bench_graphcl.main(argv + ["--no-plot"])
    assert again["results"] == rep["results"]


def test_bench_graphcl_semisupervised_protocol_and_name():
    p = bench_graphcl.build_parser()
    args = p.parse_args(["--protocol", "semisupervised", "--dataset", "NCI1"])
    assert bench_graphcl.output_name(args) == "graphcl-semisupervised-NCI1"
    proto = bench_graphcl.run_protocol(args)
    assert proto["epochs"] == 100 and proto["lr"] == 0.001 and proto["temperature"] == 0.5
    assert proto["aug1"] == proto["aug2"] == "random2" and proto["aug_ratio"] == 0.2
    assert proto["model_epochs"] == [20, 40, 60, 80, 100]
    assert proto["finetune"] == {"semi_split": 10, "epochs": 100, "batch_size": 128,
                                 "lr": 0.001, "folds": 10, "split_seed": 12345}
    one = p.parse_args(["--protocol", "semisupervised", "--dataset", "NCI1",
                        "--label-rate", "0.01"])
    assert bench_graphcl.output_name(one) == "graphcl-semisupervised-NCI1-1pct"
    assert bench_graphcl.run_protocol(one)["finetune"]["semi_split"] == 100
    # the unsupervised protocol keeps its defaults
    un = bench_graphcl.run_protocol(p.parse_args(["--dataset", "MUTAG"]))
    assert un["epochs"] == 20 and un["lr"] == 0.01 and un["aug"] == "random4"
