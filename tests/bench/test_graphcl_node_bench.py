"""``python -m bench.graphcl --protocol node`` (arguments, protocol, a short Cora run when the
data is there) and the pre-trained vs random-init comparison of ``bench.ugs --init graphcl``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from sparselth.bench import common
from sparselth.bench import graphcl as bench_graphcl
from sparselth.bench import ugs as bench_ugs
from sparselth.bench import ugs_pretrained
from sparselth.utils.records import write_json

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
REAL_DATA = Path(os.environ.get("SPARSELTH_DATA", SHARED))


def _args(argv):
    return bench_graphcl.build_parser().parse_args(argv.split())


def test_node_protocol_resolves_the_dataset_defaults():
    cora = bench_graphcl.run_protocol(_args("--protocol node --dataset Cora"))
    assert (cora["aug"], cora["drop_percent"], cora["seeds"]) == ("subgraph", 0.1, [39])
    assert cora["lr"] == 0.001 and cora["patience"] == 20 and cora["protocol"] == "node"
    cite = bench_graphcl.run_protocol(_args("--protocol node --dataset CiteSeer"))
    assert (cite["aug"], cite["seeds"]) == ("node", [31])
    assert bench_graphcl.output_name(_args("--protocol node --dataset Cora")) == \
        "graphcl-node-Cora"
    # the graph-level protocol keeps its defaults
    tu = bench_graphcl.run_protocol(_args("--dataset MUTAG"))
    assert (tu["aug"], tu["lr"], tu["seeds"]) == ("random4", 0.01, [0, 1, 2, 3, 4])


def test_ugs_init_graphcl_names_and_configures_the_run(tmp_path):
    p = bench_ugs.build_parser()
    args = p.parse_args(["--init", "graphcl", "--init-checkpoint", str(tmp_path / "c.st")])
    assert bench_ugs.output_name(args) == "ugs-gcn-cora-graphcl"
    cfg, source = bench_ugs.config_from_args(args)
    assert cfg.init.endswith("c.st") and "pre-trained" in source
    plain = p.parse_args([])
    assert bench_ugs.config_from_args(plain)[0].init == ""
    default = p.parse_args(["--init", "graphcl"])
    assert "graphcl-node/cora/graphcl_node_" in bench_ugs.config_from_args(default)[0].init


def test_comparison_pairs_rounds_and_refuses_another_protocol(tmp_path):
    rand = json.loads((common.RESULTS_DIR / "ugs-gcn-cora.json").read_text())
    write_json(tmp_path / "ugs-gcn-cora.json", rand)
    pre = json.loads(json.dumps(rand))
    pre["config"]["init"] = "runs/x.safetensors"
    for r in pre["rounds"]:
        r["test_acc"] += 0.01
    pre["published_protocol"] = False
    dest = common.ResultPath(tmp_path, "ugs-gcn-cora-graphcl")
    ugs_pretrained.attach_comparison(tmp_path, pre, "ugs-gcn-cora")
    rows = pre["comparison"]
    assert len(rows) == 21 and rows[0]["difference"] == 0
    assert all(r["difference"] == pytest.approx(1.0) for r in rows[1:])
    written = ugs_pretrained.render(dest, pre, "# body\ntext", plot_png=True)
    text = (tmp_path / "ugs-gcn-cora-graphcl.md").read_text()
    assert "pre-trained ≥ random init in 17 of 17 rounds" in text
    assert tmp_path / "ugs-gcn-cora-graphcl.png" in written
    pre["config"]["s1"] = 0.5
    ugs_pretrained.attach_comparison(tmp_path, pre, "ugs-gcn-cora")
    assert pre["random_init"]["result"] is None
    assert "s1" in pre["random_init"]["not_shown"]


def test_short_cora_run(tmp_path, one_thread):
    if not (REAL_DATA / "planetoid").exists():
        pytest.skip(f"planetoid not found under {REAL_DATA} (set SPARSELTH_DATA to the datasets "
                    "folder)")
    rep = bench_graphcl.main(["--protocol", "node", "--dataset", "Cora", "--data",
                              str(REAL_DATA), "--max-epochs", "2", "--eval-runs", "2",
                              "--out", str(tmp_path), "--runs", str(tmp_path / "runs"),
                              "--no-progress"])
    assert rep["per_seed"]["39"]["epochs"] == 2 and rep["dgi_paper"] == 82.3
    saved = json.loads((tmp_path / "graphcl-node-Cora.json").read_text())
    assert saved["headline"]["acc_mean"] == rep["headline"]["acc_mean"]
    assert (tmp_path / "graphcl-node-Cora.png").is_file()
    assert "DGI (Veličković et al. 2019) reports 82.3 %" in \
        (tmp_path / "graphcl-node-Cora.md").read_text()


def test_ugs_init_graphcl_pretrains_a_missing_checkpoint(tmp_path, one_thread, monkeypatch):
    reference = ugs_pretrained._reference_config   # shortened: a few epochs, 2 eval runs
    monkeypatch.setattr(ugs_pretrained, "_reference_config", lambda d: dataclasses.replace(
        reference(d), max_epochs=3, eval_runs=2, eval_steps=10))
    ck = tmp_path / "enc.safetensors"
    argv = ["--dataset", "csbm", "--csbm-nodes", "120", "--init", "graphcl", "--init-checkpoint",
            str(ck), "--rounds", "1", "--epochs", "2", "--no-latency",
            "--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--no-progress",
            "--threads", "1", "--no-plot"]
    rep = bench_ugs.main(argv)
    assert ck.is_file() and rep["pretraining"] == "pre-trained in this invocation"
    assert [r["init"] for r in [rep["dense"]] + rep["rounds"]] == ["pretrained"] * 2
    assert rep["random_init"]["result"] is None          # no random-init run beside it
    again = bench_ugs.main(argv)
    assert again["pretraining"] == "checkpoint read from disk"
    assert again["init_sha256"] == rep["init_sha256"]
    assert "Random-init GLT not shown" in (tmp_path / "ugs-gcn-csbm-graphcl.md").read_text()
