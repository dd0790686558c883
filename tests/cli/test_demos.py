"""`sparselth demo`: the graph-lottery-ticket demo end to end on tiny graphs (UGS rounds,
random baseline, saved ticket, compile report, table, JSON, PNG) and its argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sparselth
from sparselth import CSR, cli
from sparselth.cli.demo_glt import CSBM, GLTRow, load_demo_data, ugs_vs_random
from sparselth.models import GCN
from sparselth.prune.ugs import ugs_schedule
from sparselth.train import NodeClassificationTask, node_features

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
TINY = ["--nodes", "200", "--features", "32", "--hidden", "16", "--epochs", "5",
        "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path, *extra):
    return cli.main(["demo", *TINY, "--out", str(tmp_path), *extra])


@pytest.mark.slow
def test_tiny_demo_writes_ticket_plot_json_and_table(tmp_path, capsys):
    assert _run(tmp_path, "--rounds", "2") == 0
    out = capsys.readouterr().out
    # the compile report of the last ticket and the per-round table
    assert "conv1.lin" in out and "conv2.lin" in out and "verified: max relative error" in out
    for col in ("graph sp.", "weight sp.", "test acc", "random acc", "MACs", "dense ms",
                "ticket ms", "speed-up"):
        assert col in out
    assert "p_g = 0.2" in out and "p_θ = 0.4" in out
    assert (tmp_path / "demo-glt.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))
    assert torch.get_num_threads() == 1  # --threads 1 is restored to what it was

    summary = json.loads((tmp_path / "demo-glt.json").read_text())
    rows = summary["rows"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    # the sparsities reached follow the UGS schedule exactly
    edges, weights = summary["data"]["stored_edges"], summary["model"]["weights"]
    assert weights == 32 * 16 + 16 * CSBM["num_classes"]
    assert [r["edges_kept"] for r in rows] == ugs_schedule(edges, 0.2, 2)
    assert [r["weights_kept"] for r in rows] == ugs_schedule(weights, 0.4, 2)
    for r in rows:
        assert r["graph_sparsity"] == pytest.approx(1 - r["edges_kept"] / edges)
        assert r["weight_sparsity"] == pytest.approx(1 - r["weights_kept"] / weights)
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["random_test_acc"] <= 1
        assert r["latency_ms_dense"] > 0 and r["latency_ms_ticket"] > 0
    assert rows[0]["macs"] > rows[1]["macs"] > rows[2]["macs"]
    assert rows[0]["random_test_acc"] == rows[0]["test_acc"]  # round 0 is the same dense run
    assert [r["round"] for r in summary["random_records"]] == [0, 1, 2]
    # the verdict says plainly where UGS is below random pruning, whatever the outcome
    verdict = summary["ugs_vs_random"]
    below = [r["round"] for r in rows[1:] if r["test_acc"] < r["random_test_acc"]]
    assert verdict["below"] == below and sorted(verdict["at_or_above"] + below) == [1, 2]
    assert verdict["text"] in out
    assert ("BELOW random pruning" in out) == bool(below)
    # one thread: the medians are CPU time per forward pass, and the output says so
    assert summary["clock"] == "cpu" and "cpu time per forward pass" in out
    assert all(r["timing"]["clock"] == "cpu" and r["timing"]["threads"] == 1 for r in rows)

    # the saved ticket loads, has the last round's masks and reproduces its accuracy
    ticket = sparselth.Ticket.load(tmp_path / "demo-glt-ticket")
    assert set(ticket.masks) == {"edge_mask", "conv1.lin.weight", "conv2.lin.weight"}
    assert int(ticket.masks["edge_mask"].sum()) == rows[-1]["edges_kept"]
    assert ticket.metadata["round"] == 2 and ticket.metadata["demo"]["hidden"] == 16
    data = load_demo_data(None, "csbm", 200, 32, seed=0)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    model = ticket.apply_to(GCN(A, 32, data.num_classes, hidden=16)).eval()
    acc = NodeClassificationTask(data, node_features(data.x)).evaluate(model)
    assert acc["test"] == rows[-1]["test_acc"]
    assert summary["compile_report"]["end_to_end"]["max_rel_error"] <= 1e-4


def _row(r, acc, rnd):
    return GLTRow(round=r, graph_sparsity=0.1 * r, weight_sparsity=0.2 * r, edges_kept=10,
                  weights_kept=10, test_acc=acc, val_acc=acc, macs=1, latency_ms_dense=1.0,
                  latency_ms_ticket=1.0, random_test_acc=rnd)


def test_ugs_vs_random_verdict_names_every_round_below():
    rows = [_row(0, 0.9, 0.9), _row(1, 0.85, 0.86), _row(2, 0.84, 0.84), _row(3, 0.80, 0.83)]
    text, where = ugs_vs_random(rows)
    assert where == {"at_or_above": [2], "below": [1, 3]}
    assert "BELOW random pruning at rounds 1 (85.0 % vs 86.0 %), 3 (80.0 % vs 83.0 %)" in text
    assert "does not beat random pruning at every round" in text
    text, where = ugs_vs_random([_row(0, 0.9, 0.9), _row(1, 0.88, 0.87)])
    assert where == {"at_or_above": [1], "below": []}
    assert "at or above random pruning at every round (1)" in text and "BELOW" not in text
    assert ugs_vs_random([_row(0, 0.9, None), _row(1, 0.8, None)]) is None


@pytest.mark.slow
def test_demo_custom_schedule_without_baseline(tmp_path, capsys):
    assert _run(tmp_path, "--rounds", "1", "--prune-graph", "0.5", "--prune-weight", "0.1",
                "--no-baseline", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "random acc" not in out and "p_g = 0.5" in out
    summary = json.loads((tmp_path / "demo-glt.json").read_text())
    edges, weights = summary["data"]["stored_edges"], summary["model"]["weights"]
    assert [r["edges_kept"] for r in summary["rows"]] == ugs_schedule(edges, 0.5, 1)
    assert [r["weights_kept"] for r in summary["rows"]] == ugs_schedule(weights, 0.1, 1)
    assert summary["random_records"] is None and summary["config"]["seed"] == 3


@pytest.mark.skipif(not (DATASETS / "planetoid" / "ind.cora.graph").is_file(),
                    reason="Cora not found in the datasets folder CI provides")
@pytest.mark.slow
def test_demo_on_cora(tmp_path, capsys):
    assert cli.main(["demo", "--data", str(DATASETS), "--rounds", "1", "--epochs", "2",
                     "--hidden", "8", "--no-baseline", "--no-progress",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cora from" in out and "2,708 nodes" in out and "(CSR)" in out
    summary = json.loads((tmp_path / "demo-glt.json").read_text())
    assert summary["dataset"] == "cora" and summary["data"]["features_as"] == "CSR"
    assert (tmp_path / "demo-glt-ticket" / "ticket.json").is_file()


def test_missing_data_folder_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert cli.main(["demo", "--data", str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sparselth demo" in err and str(missing) in err and "does not exist" in err
    # a folder without the dataset's files: the loader's message names the files tried
    (tmp_path / "empty").mkdir()
    assert cli.main(["demo", "--data", str(tmp_path / "empty"), "--dataset", "citeseer",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "citeseer" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "demo-glt.png").exists()


def test_dataset_without_data_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPARSELTH_DATA", raising=False)
    assert cli.main(["demo", "--dataset", "cora", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["demo", "--dataset", "csbm", "--data", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["--rounds", "0"], "--rounds"),
    (["--epochs", "-3"], "--epochs"),
    (["--nodes", "5"], "--nodes"),
    (["--nodes", "many"], "--nodes"),
    (["--prune-graph", "1"], "--prune-graph"),
    (["--prune-weight", "-0.1"], "--prune-weight"),
    (["--threads", "-1"], "--threads"),
    (["--dataset", "imagenet"], "--dataset"),
    (["--keep", "0.5"], "--keep"),  # an option of demo-spmm, not of demo
])
def test_bad_flags_are_argparse_errors(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sparselth" in err and flag in err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--data", "--dataset", "--rounds", "--epochs", "--nodes", "--seed", "--out",
                 "--no-progress", "--threads", "--no-baseline"):
        assert flag in out
    assert "SPARSELTH_DATA" in out
