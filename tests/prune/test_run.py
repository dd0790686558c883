"""The run folder core: pinned run-name hashes (a refactor must not orphan old runs), the
config base, the resume rule, checksums, RNG state, and the common record schema, read
also from folders written before it existed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from sparselth import prune
from sparselth.prune import IMP, IMPConfig, UGSConfig
from sparselth.prune.run import (
    Config,
    help_field,
    read_records,
    read_round,
    rng_state,
    set_rng_state,
    ticket_parts,
)
from sparselth.train.recsys import BPRConfig

# run names of existing run folders: these must never change
PINNED = [
    (IMPConfig(), "imp_44136fa355b3"),
    (IMPConfig(rounds=3), "imp_7eef2b66ab35"),
    (IMPConfig(rounds=5, fraction=0.3, strategy="random", scope="layer", exclude=("@last",),
               seed=1), "imp_a02183b370a4"),
    (IMPConfig(granularity="block", block=(4, 4), rewind="late", rewind_step=3,
               include=("embedding.weight",), seed=None), "imp_86f1cdaf1473"),
    (IMPConfig(rounds=12, fraction=0.2, strategy="embedding_row_norm", granularity="row",
               include=("embedding.weight",), seed=2020), "imp_9d26fdc4abe7"),
    (UGSConfig(), "ugs_44136fa355b3"),
    (UGSConfig(rounds=3), "ugs_44136fa355b3"),  # rounds is not part of a UGS run's name
    (UGSConfig(seed=2377), "ugs_533044133e05"),
    (UGSConfig(baseline="random", task="link", s1=0.5, lr=0.01, mask_epochs=4, fix_epochs=3,
               seed=1, rounds=3), "ugs_1605d3791531"),
    # fields added later enter the name only when not at their default, so the names above
    # stay; run folders written before gcn_degree resume as "receiver" (UGSConfig.legacy_values)
    (UGSConfig(gcn_degree="receiver"), "ugs_be0f5ba4f02c"),
    (IMPConfig(start_from="dense"), "imp_077584da4c9c"),
    (BPRConfig(), "bpr_44136fa355b3"),
    (BPRConfig(epochs=200, patience=10), "bpr_9d70ceaeef98"),
]


@pytest.mark.parametrize("config,name", PINNED, ids=[n for _, n in PINNED])
def test_pinned_run_names(config, name):
    assert config.run_name() == name
    assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_base_help_and_differences():
    @dataclass(frozen=True)
    class Toy(Config):
        run_prefix = "toy"

        rounds: int = help_field("rounds", 2)
        width: tuple[int, ...] = help_field("layer widths", (4, 8))

    assert Toy().to_dict() == {"rounds": 2, "width": [4, 8]}
    assert Toy.from_dict({"width": [1]}) == Toy(width=(1,))
    assert Toy(width=(1,)).non_default() == {"width": [1]}
    assert Toy().run_name().startswith("toy_") and Toy().identity() == {"width": [4, 8]}
    assert "width (default (4, 8)): layer widths" in Toy.help()
    with pytest.raises(ValueError, match="Toy: unknown fields"):
        Toy.from_dict({"depth": 1})
    with pytest.raises(TypeError, match="tuples"):
        help_field("bad", [1])


def test_every_strategy_resolves_from_the_prune_package():
    names = {"magnitude", "random", "embedding_row_norm", "embedding_random_row"}
    assert names <= set(prune.STRATEGIES)
    for name in names:
        assert prune.get_strategy(name).__module__ == "sparselth.prune.strategies"
    from sparselth.train import recsys

    assert recsys.row_norm_strategy is prune.STRATEGIES["embedding_row_norm"]


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(*state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# --------------------------------------------------------------------------- a small run


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _train(model, r):
    """One plain gradient step (masked gradients keep pruned weights at zero)."""
    model(torch.randn(16, 6)).pow(2).mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
            p.grad = None


def _imp_run(path, **kw):
    cfg = IMPConfig(rounds=2, fraction=0.5, **kw)
    imp = IMP(_mlp(), _train, lambda m: {"accuracy": 0.5, "loss": 1.0}, cfg, run_dir=path,
              example_inputs=torch.randn(2, 6), progress=False)
    return imp, imp.run()


def test_records_follow_the_common_schema(tmp_path):
    imp, records = _imp_run(tmp_path / "run")
    kind, on_disk = read_records(tmp_path / "run")
    assert kind == "imp" and len(on_disk) == 3
    for rec, disk in zip(records, on_disk):
        assert disk["round"] == rec["round"] and disk["metric"] == "accuracy"
        assert disk["weight_sparsity"] == rec["sparsity"] and disk["graph_sparsity"] is None
        assert disk["metrics"] == {"accuracy": 0.5, "loss": 1.0}
        assert isinstance(disk["macs"], int) and isinstance(disk["seconds"], float)
    assert on_disk[2]["weight_sparsity"] == pytest.approx(0.75, abs=0.02)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["kind"] == "imp" and config["config"]["fraction"] == 0.5
    rd = read_round(tmp_path / "run", 1)
    assert rd["kind"] == "imp" and rd["round"] == 1 and rd["record"]["round"] == 1
    parts = ticket_parts(tmp_path / "run")
    assert parts["metadata"]["round"] == 2 and parts["metadata"]["metric"] == "accuracy"
    assert parts["masks"] == prune.masks_of(imp.model)


def test_damaged_tensor_file_and_other_kind_are_refused(tmp_path):
    _imp_run(tmp_path / "run")
    path = tmp_path / "run" / "round_001" / "trained.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        read_round(tmp_path / "run", 1)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["kind"] = "ugs"
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="holds a run of kind 'ugs', not 'imp'"):
        _imp_run(tmp_path / "run")


# --------------------------------------------------------------------------- older folders


def _make_old(run_dir, config, records):
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "records.json").write_text(json.dumps(records))
    return run_dir


def test_read_records_of_old_imp_ugs_and_recsys_folders(tmp_path):
    imp = _make_old(tmp_path / "imp", {
        "format_version": 1, "config": IMPConfig().to_dict(), "run_name": "imp_44136fa355b3",
        "strategy": "magnitude"}, [
        {"round": 0, "sparsity": 0.0, "remaining": 1.0, "zeros": 0, "total": 10,
         "sparsity_per_layer": {}, "metrics": {"accuracy": 0.9, "loss": 0.3}, "macs": 100,
         "macs_dense": 100, "rewind": "init", "rewind_step": None, "wall_time_s": 1.5},
        {"round": 1, "sparsity": 0.2, "remaining": 0.8, "zeros": 2, "total": 10,
         "sparsity_per_layer": {}, "metrics": {"accuracy": 0.8, "loss": 0.4}, "macs": None,
         "macs_dense": None, "rewind": "init", "rewind_step": None, "wall_time_s": 2.0}])
    kind, recs = read_records(imp)
    assert kind == "imp"
    assert [r["weight_sparsity"] for r in recs] == [0.0, 0.2]
    assert recs[1]["graph_sparsity"] is None and recs[1]["metric"] == "accuracy"
    assert recs[1]["metrics"] == {"accuracy": 0.8, "loss": 0.4}
    assert recs[0]["macs"] == 100 and recs[1]["macs"] is None and recs[1]["seconds"] == 2.0
    assert recs[1]["remaining"] == 0.8  # the old keys stay

    ugs = _make_old(tmp_path / "ugs", {
        "format_version": 1, "config": UGSConfig().to_dict(), "run_name": "ugs_44136fa355b3",
        "model": "GCN"}, [
        {"round": 1, "baseline": "ugs", "task": "node", "metric": "acc", "graph_sparsity": 0.05,
         "weight_sparsity": 0.2, "graph_edges_kept": 95, "test_acc": 0.7, "val_acc": 0.6,
         "best_epoch": 3, "fix_seconds": 1.0, "mask_search": None,
         "macs": {"total": 1000, "paper_formula": 900}, "macs_total": 1000,
         "macs_paper": 900, "seconds_train": 2.0, "seconds": 2.5}])
    kind, (rec,) = read_records(ugs)
    assert kind == "ugs" and rec["metric"] == "test_acc"
    assert rec["metrics"] == {"test_acc": 0.7, "val_acc": 0.6}
    assert rec["graph_sparsity"] == 0.05 and rec["weight_sparsity"] == 0.2
    assert rec["macs"] == 1000 and rec["macs_detail"]["paper_formula"] == 900
    assert rec["seconds"] == 2.5

    recsys = _make_old(tmp_path / "recsys", {
        "format_version": 1, "config": PINNED[4][0].to_dict(), "run_name": "imp_9d26fdc4abe7",
        "strategy": "embedding_row_norm"}, [
        {"round": 0, "sparsity": 0.0, "remaining": 1.0, "zeros": 0, "total": 40,
         "sparsity_per_layer": {}, "macs": None, "macs_dense": None, "wall_time_s": 3.0,
         "metrics": {"recall@20": 0.1, "ndcg@20": 0.05, "val_recall@20": 0.09,
                     "bytes_dense": 160, "best_epoch": 4, "select_on": "val",
                     "stopped_early": False, "test_users": 30}}])
    kind, (rec,) = read_records(recsys)
    assert kind == "recsys" and rec["metric"] == "recall@20" and rec["weight_sparsity"] == 0.0
    assert rec["metrics"] == {"recall@20": 0.1, "ndcg@20": 0.05, "val_recall@20": 0.09}


def test_old_imp_folder_loads_resumes_and_extends(tmp_path):
    """A folder as older versions wrote it (no kind, no common record keys) gives tickets
    and records, and a resume with a larger ``rounds`` extends it."""
    run = tmp_path / "run"
    _, records = _imp_run(run)
    new_keys = ("weight_sparsity", "graph_sparsity", "metric", "seconds")
    old_records = [{k: v for k, v in r.items() if k not in new_keys} for r in records]
    cfg = json.loads((run / "config.json").read_text())
    del cfg["kind"]
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "records.json").write_text(json.dumps(old_records))
    prog = json.loads((run / "progress.json").read_text())
    prog["records"] = old_records
    (run / "progress.json").write_text(json.dumps(prog))

    kind, recs = read_records(run)
    assert kind == "imp" and [r["metric"] for r in recs] == ["accuracy"] * 3
    assert ticket_parts(run, 1)["metadata"]["weight_sparsity"] == records[1]["sparsity"]
    imp = IMP(_mlp(), _train, lambda m: {"accuracy": 0.5, "loss": 1.0},
              IMPConfig(rounds=3, fraction=0.5), run_dir=run, progress=False)
    assert [r["round"] for r in imp.run()] == [0, 1, 2, 3]
    assert json.loads((run / "config.json").read_text())["kind"] == "imp"
    assert read_records(run)[1][3]["weight_sparsity"] == pytest.approx(0.875, abs=0.02)
