"""Lottery tickets for recommenders on a tiny synthetic dataset: the scheduled sparsity is
reached exactly, pruned entries stay zero, rows are pruned whole, the random baseline,
training with early stopping, the saved ticket and the benchmark script end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from sparselth import Ticket
from sparselth.prune.run import read_records
from sparselth.data import synthetic_interactions
from sparselth.models import LightGCN, MF
from sparselth.train.recsys import (
    BPRConfig,
    embedding_bytes,
    evaluate_ranking,
    find_recsys_ticket,
    largest_sparsity_within,
    lookup_latency,
    train_bpr,
)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAST = BPRConfig(epochs=2, patience=2, batch_size=256)


@pytest.fixture(scope="module")
def tiny():
    return synthetic_interactions(60, 80, avg_interactions=8, min_interactions=3,
                                  seed=0).with_validation(0.2, seed=0)


def test_train_bpr_selects_on_validation(tiny):
    torch.manual_seed(0)
    model = MF.from_interactions(tiny, dim=8)
    res = train_bpr(model, tiny, BPRConfig(epochs=6, patience=2, batch_size=128, lr=5e-2),
                    progress=False)
    assert res.select_on == "val" and 1 <= res.best_epoch <= res.epochs_run <= 6
    assert len(res.history) == res.epochs_run
    vals = [h["val_recall@20"] for h in res.history]
    assert res.best_metric == pytest.approx(max(vals))
    assert res.best_epoch == 1 + vals.index(max(vals))
    # the model holds the selected state: its validation metric is the best one
    assert evaluate_ranking(model, tiny, "val")["recall@20"] == pytest.approx(res.best_metric)
    no_val = synthetic_interactions(20, 30, avg_interactions=5, seed=1)
    with pytest.raises(ValueError, match="train_bpr: select_on='val' needs a validation"):
        train_bpr(MF.from_interactions(no_val), no_val, FAST, progress=False)
    with pytest.raises(ValueError, match="evaluate_ranking: split='val'"):
        evaluate_ranking(MF.from_interactions(no_val), no_val, "val")
    with pytest.raises(ValueError, match="BPRConfig: select_on"):
        BPRConfig(select_on="train")


def test_one_round_reaches_schedule_and_keeps_zeros(tiny, tmp_path):
    torch.manual_seed(2020)
    model = LightGCN.from_interactions(tiny, dim=8, layers=2)
    theta0 = model.embedding.weight.detach().clone()
    out = find_recsys_ticket(model, tiny, rounds=1, fraction=0.2, train=FAST,
                             run_dir=tmp_path / "run", measure_latency=True, progress=False)
    dense, r1 = out["records"]
    total = (60 + 80) * 8
    assert dense["round"] == 0 and dense["sparsity"] == 0.0 and dense["params_kept"] == total
    assert r1["params_kept"] == round(0.8 * total)
    assert r1["sparsity"] == pytest.approx(1 - round(0.8 * total) / total)
    assert r1["fraction_kept"] == pytest.approx(round(0.8 * total) / total)
    for key in ("recall@20", "ndcg@20", "recall@10", "ndcg@10", "bytes_dense", "bytes_stored",
                "rank_ms", "lookup_ms_dense", "seconds", "best_epoch", "val_recall@20"):
        assert r1[key] is not None, key
    assert r1["bytes_dense"] == total * 4 and r1["bytes_stored"] < dense["bytes_stored"]
    mask = model.embedding.weight_mask
    w = model.embedding.weight.detach()
    assert int(mask.sum()) == r1["params_kept"]
    assert float(w[~mask].abs().max()) == 0.0
    # the pruned entries are the smallest |W| of the dense round's trained table
    ticket = Ticket.from_run(tmp_path / "run", round=1)
    assert torch.equal(ticket.masks["embedding.weight"], mask)
    torch.testing.assert_close(ticket.init_state["embedding.weight"], theta0)
    trained0 = Ticket.from_run(tmp_path / "run", round=0).trained_state["embedding.weight"]
    kept_min = trained0.abs()[mask].min()
    pruned_max = trained0.abs()[~mask].max()
    assert float(pruned_max) <= float(kept_min)
    # the run folder: kind "recsys", the common record schema, costs beside the metrics
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kind"] == "recsys"
    kind, recs = read_records(tmp_path / "run")
    assert kind == "recsys" and [r["round"] for r in recs] == [0, 1]
    assert recs[1]["metric"] == "recall@20" and recs[1]["graph_sparsity"] is None
    assert recs[1]["metrics"]["recall@20"] == r1["recall@20"]
    assert recs[1]["weight_sparsity"] == r1["sparsity"] and "bytes_dense" not in recs[1]["metrics"]
    assert ticket.metadata["kind"] == "recsys" and ticket.metadata["metric"] == "recall@20"
    # resuming with other training settings is refused, naming them
    with pytest.raises(ValueError, match=r"settings\.train\.epochs: 2 -> 3"):
        find_recsys_ticket(model, tiny, rounds=1, fraction=0.2,
                           train=BPRConfig(epochs=3, patience=2, batch_size=256),
                           run_dir=tmp_path / "run", progress=False)


def test_row_granularity_and_random_baseline(tiny):
    out = find_recsys_ticket("mf", tiny, rounds=2, fraction=0.25, granularity="row",
                             train=FAST, dim=4, measure_latency=False, progress=False)
    rows = 140
    kept = [r["params_kept"] // 4 for r in out["records"]]
    assert kept == [rows, rows - round(0.25 * rows), rows - round(0.25 * rows)
                    - round(0.25 * (rows - round(0.25 * rows)))]
    assert all(r["params_kept"] % 4 == 0 for r in out["records"])
    rnd = find_recsys_ticket("mf", tiny, rounds=1, fraction=0.3, strategy="random",
                             train=FAST, dim=4, measure_latency=False, progress=False)
    assert rnd["records"][1]["params_kept"] == round(0.7 * rows * 4)
    assert rnd["config"]["strategy"] == "random"
    with pytest.raises(ValueError, match="find_recsys_ticket: granularity"):
        find_recsys_ticket("mf", tiny, granularity="block", progress=False)


def test_bytes_latency_and_selection():
    w = torch.randn(10, 4)
    m = torch.zeros(10, 4, dtype=torch.bool)
    m[:3] = True
    b = embedding_bytes(w, m)
    assert b["bytes_dense"] == 160 and b["bytes_stored"] > 0 and b["bytes_method"]
    lat = lookup_latency(w, m, batch=64, reps=2)
    assert lat["lookup_ms_dense"] > 0 and lat["lookup_batch"] == 64
    assert lat["lookup_ms_compressed"] > 0 and lat["lookup_clock"] in ("cpu", "wall")
    recs = [{"sparsity": 0.2, "recall@20": 0.099}, {"sparsity": 0.5, "recall@20": 0.0985},
            {"sparsity": 0.7, "recall@20": 0.09}]
    assert largest_sparsity_within(recs, {"recall@20": 0.1})["sparsity"] == 0.5
    assert largest_sparsity_within(recs, {"recall@20": 0.2}) is None


def test_bench_script(tmp_path):
    from bench import lth_rec

    report = lth_rec.main([
        "--model", "lightgcn", "--dataset", "synthetic", "--synthetic-users", "50",
        "--synthetic-items", "70", "--rounds", "1", "--epochs", "1", "--eval-every", "1",
        "--dim", "4", "--out", str(tmp_path / "res"), "--run-dir", str(tmp_path / "run"),
        "--no-progress", "--no-latency", "--threads", "0",  # leave torch's threads alone
    ])
    stem = tmp_path / "res" / "lth-lightgcn-synthetic"
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["dense"]["round"] == 0 and len(saved["rounds"]) == 1
    assert "VALIDATION" in saved["protocol"] and saved["seed"] == 2020
    assert stem.with_suffix(".md").read_text().startswith("# LTH for recommenders")
    assert stem.with_suffix(".png").stat().st_size > 1000
    assert Ticket.load(report["ticket_path"]).masks["embedding.weight"].shape == (120, 4)
    assert math.isclose(saved["rounds"][0]["fraction_kept"], 0.8, abs_tol=1e-9)
