"""The ticket commands end to end: find -> compile -> plot, through the `sparselth` command."""

from __future__ import annotations

import json

import pytest

from sparselth import Ticket, cli
from sparselth.cli.tickets import load_config
from sparselth.deploy import CompileReport

TINY = {
    "seed": 3,
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "synthetic", "n_train": 256, "n_test": 64, "image_size": 6},
    "train": {"epochs": 1, "max_steps": 6, "batch_size": 32, "lr": 0.05},
    "imp": {"rounds": 2, "fraction": 0.5, "rewind": "late", "rewind_step": 2},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    root = tmp_path_factory.mktemp("find")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = root / "run"
    assert _run(["find", cfg, "--out", out, "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_find_writes_run_and_tickets(found, capsys):
    assert (found / "imp" / "records.json").is_file()
    summary = json.loads((found / "find.json").read_text())
    recs = summary["records"]
    assert [r["round"] for r in recs] == [0, 1, 2]
    assert [round(r["weight_sparsity"], 3) for r in recs] == [0.0, 0.5, 0.75]
    assert all("accuracy" in r["metrics"] for r in recs)
    for r in range(3):
        t = Ticket.load(found / "tickets" / f"round_{r:03d}")
        assert t.sparsity()["overall"] == pytest.approx(recs[r]["weight_sparsity"])
        assert t.metadata["model"]["name"] == "mlp"
        assert t.metadata["input_shape"] == [1, 6, 6]
    last = Ticket.load(found / "ticket")
    assert last.sparsity()["overall"] == pytest.approx(0.75)
    assert last.init_state is not None  # late rewinding state travels with the ticket


@pytest.mark.slow
def test_find_resumes_and_overrides(found, tmp_path):
    # rerunning the same command finds every round on disk and trains nothing again
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    before = (found / "imp" / "round_002" / "trained.safetensors").read_bytes()
    assert _run(["find", cfg, "--out", found, "--no-progress"]) == 0
    assert (found / "imp" / "round_002" / "trained.safetensors").read_bytes() == before
    # overrides from the command line
    toml = tmp_path / "tiny.toml"
    toml.write_text('seed = 1\n[model]\nname = "convnet"\nchannels = [4, 4, 4]\nhidden = 8\n'
                    '[data]\nn_train = 64\nn_test = 32\nimage_size = 8\n'
                    '[train]\nmax_steps = 2\nbatch_size = 32\n[imp]\nrounds = 3\nrewind = "init"\n')
    out = tmp_path / "conv"
    assert _run(["find", toml, "--out", out, "--rounds", "1", "--fraction", "0.3",
                 "--no-progress"]) == 0
    recs = json.loads((out / "find.json").read_text())["records"]
    assert len(recs) == 2 and recs[1]["weight_sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert Ticket.load(out / "ticket").metadata["model"]["name"] == "convnet"


@pytest.mark.slow
def test_compile_report_and_export(found, tmp_path, capsys):
    from safetensors.torch import load_file

    report_path = tmp_path / "one.json"
    export = tmp_path / "compiled.safetensors"
    assert _run(["compile", found, "--out", report_path, "--export", export, "--batch-size", 16,
                 "--budget", 0.01, "--e2e-budget", 0.02, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "realised savings" in text and "layers.0" in text
    rep = CompileReport.load(report_path)
    assert [r.name for r in rep.layers] == ["layers.0", "layers.2"]
    assert rep.meta["ticket_sparsity"] == pytest.approx(0.75)
    assert rep.meta["input_shapes"] == [[16, 1, 6, 6]]
    state = load_file(str(export))
    assert state  # the compiled model's tensors
    for rec in rep.layers:
        if rec.route == "csr":
            assert any(k.startswith(rec.name + ".") for k in state)


@pytest.mark.slow
def test_compile_all_rounds_then_plot(found, tmp_path, capsys):
    reports = found / "compile.json"
    assert _run(["compile", found, "--all-rounds", "--out", reports, "--routes", "dense,csr",
                 "--budget", 0.01, "--e2e-budget", 0.02, "--quiet", "--no-progress"]) == 0
    doc = json.loads(reports.read_text())
    assert doc["format"] == "sparselth.compile_reports" and len(doc["reports"]) == 3
    sp = [d["meta"]["ticket_sparsity"] for d in doc["reports"]]
    assert sp == pytest.approx([0.0, 0.5, 0.75])
    for d in doc["reports"]:
        assert {r["route"] for r in d["layers"]} <= {"dense", "csr"}
    out = tmp_path / "plots"
    assert _run(["plot", found, "--out", out]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["accuracy_vs_sparsity.png", "latency_vs_sparsity.png",
                     "realised_vs_promised.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a single compile report JSON alone is enough for the latency and savings plots
    out2 = tmp_path / "plots2"
    single = tmp_path / "single.json"
    CompileReport.from_dict(doc["reports"][2]).save(single)
    assert _run(["plot", single, "--out", out2]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["latency_vs_sparsity.png",
                                                       "realised_vs_promised.png"]


def test_help_explains_each_command(capsys):
    for cmd, words in (("find", ["IMP", "rewind", "config"]),
                       ("compile", ["route", "realised", "--export"]),
                       ("plot", ["accuracy_vs_sparsity.png", "realised_vs_promised.png"])):
        with pytest.raises(SystemExit) as e:
            _run([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for w in words:
            assert w in text, (cmd, w)


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"name": "resnet"}}))
    assert _run(["find", bad, "--out", tmp_path / "x"]) == 2
    assert "model.name" in capsys.readouterr().err
    bad.write_text(json.dumps({"optim": {}}))
    assert _run(["find", bad, "--out", tmp_path / "x"]) == 2
    assert "unknown section" in capsys.readouterr().err
    bad.write_text(json.dumps({"imp": {"fraction": 1.5}}))
    assert _run(["find", bad, "--out", tmp_path / "x"]) == 2
    assert "fraction" in capsys.readouterr().err
    bad.write_text(json.dumps({"train": {"max_steps": 3}, "imp": {"rewind_step": 5}}))
    assert _run(["find", bad, "--out", tmp_path / "x", "--no-progress"]) == 2
    assert "rewind_step" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # no config error leaves a folder behind
    assert _run(["compile", tmp_path, "--out", tmp_path / "r.json"]) == 2
    assert "not a ticket" in capsys.readouterr().err
    assert _run(["plot", tmp_path / "missing", "--out", tmp_path / "p"]) == 2
    with pytest.raises(ValueError, match="train.batch_size"):
        bad.write_text(json.dumps({"train": {"batch_size": 0}}))
        load_config(bad)


def test_no_arguments_is_a_usage_error(capsys):
    for cmd in ("find", "compile", "plot"):
        with pytest.raises(SystemExit) as e:
            _run([cmd])
        assert e.value.code == 2
        assert f"usage: sparselth {cmd}" in capsys.readouterr().err


def test_default_rewind_step_beyond_a_round_leaves_no_folder(tmp_path, capsys):
    cfg = tmp_path / "short.json"
    cfg.write_text(json.dumps({"data": {"n_train": 640}, "train": {"epochs": 1}}))
    out = tmp_path / "runs" / "short"
    assert _run(["find", cfg, "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "imp.rewind_step = 20 is beyond the 10 training steps" in err
    assert "set imp.rewind_step to at most 10" in err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_failure_before_the_first_commit_removes_the_new_folder(tmp_path, monkeypatch):
    from sparselth.prune import IMP

    def crash(self):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(IMP, "run", crash)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    with pytest.raises(RuntimeError, match="out of memory"):
        _run(["find", cfg, "--out", tmp_path / "new", "--no-progress"])
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before is left alone
    with pytest.raises(RuntimeError):
        _run(["find", cfg, "--out", tmp_path / "mine", "--no-progress"])
    assert (tmp_path / "mine").is_dir()


@pytest.mark.slow
def test_more_rounds_continue_a_finished_run_other_changes_say_what_to_do(tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "imp": {**TINY["imp"], "rounds": 1}}))
    out = tmp_path / "run"
    assert _run(["find", cfg, "--out", out, "--no-progress"]) == 0
    trained = (out / "imp" / "round_001" / "trained.safetensors").read_bytes()
    assert _run(["find", cfg, "--out", out, "--rounds", "2", "--no-progress"]) == 0
    capsys.readouterr()
    recs = json.loads((out / "find.json").read_text())["records"]
    assert [r["round"] for r in recs] == [0, 1, 2]
    assert (out / "imp" / "round_001" / "trained.safetensors").read_bytes() == trained
    assert Ticket.load(out / "ticket").sparsity()["overall"] == pytest.approx(0.75)
    saved = (out / "config.json").read_text()

    # any other change is refused before anything is touched, with what to do
    assert _run(["find", cfg, "--out", out, "--rounds", "3", "--fraction", "0.3",
                 "--max-steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for part in (f"the output folder {out} holds a run made with another config",
                 "train.max_steps = 6 there, 4 now", "imp.fraction = 0.5 there, 0.3 now",
                 "--max-steps 6", "--fraction 0.5", "new --out folder"):
        assert part in err, part
    assert (out / "config.json").read_text() == saved
    assert not (out / "imp" / "round_003").exists()

    # fewer rounds read the first ones; the last ticket is the last round asked for
    assert _run(["find", cfg, "--out", out, "--rounds", "1", "--no-progress"]) == 0
    assert Ticket.load(out / "ticket").sparsity()["overall"] == pytest.approx(0.5)


def test_digits_without_scikit_learn_is_one_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # import sklearn raises ImportError
    cfg = tmp_path / "digits.toml"
    cfg.write_text('[data]\nname = "digits"\nn_train = 1000\nn_test = 200\n')
    out = tmp_path / "run"
    assert _run(["find", cfg, "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "data.name = 'digits' needs scikit-learn" in err
    assert "pip install 'sparselth[digits]'" in err
    assert not out.exists()
