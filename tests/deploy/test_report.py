"""CompileReport: per-layer fields, totals, end to end, JSON round trip, the printed table."""

from __future__ import annotations

import json

import pytest
import torch

import sparselth
from sparselth.deploy import CompileReport, LayerReport

from ._tickets import FAST, MLP, make_masks, make_ticket


@pytest.fixture(scope="module")
def mlp_report():
    torch.manual_seed(0)
    model = MLP()
    masks = make_masks(model, {"fc1": 0.0, "fc2": 0.9, "fc3": 0.5, "fc4": 1.0})
    ticket = make_ticket(model, masks)
    _, report = sparselth.compile(model, ticket, example_inputs=torch.randn(8, 37), **FAST)
    return report, masks


def test_layer_rows(mlp_report):
    report, masks = mlp_report
    fc2 = report.layer("fc2")
    assert isinstance(fc2, LayerReport)
    assert fc2.type == "Linear" and fc2.shape == [48, 64]
    nnz = int(masks["fc2.weight"].sum())
    assert fc2.sparsity == pytest.approx(1 - nnz / (48 * 64))
    assert fc2.macs_dense == 8 * 48 * 64 and fc2.macs_ticket == 8 * nnz
    assert fc2.bytes_dense == (48 * 64 + 48) * 4
    assert fc2.promised_speedup == pytest.approx(48 * 64 / nnz)
    assert fc2.realised == pytest.approx(fc2.speedup / fc2.promised_speedup)
    assert report.layer("fc1").promised_speedup == pytest.approx(1.0)
    assert report.layer("fc4").macs_ticket == 0 and report.layer("fc4").promised_speedup is None
    with pytest.raises(KeyError):
        report.layer("nope")


def test_totals_end_to_end_memory_meta(mlp_report):
    report, _ = mlp_report
    t = report.totals
    assert t["macs_dense"] == sum(r.macs_dense for r in report.layers)
    assert t["macs_ticket"] == sum(r.macs_ticket for r in report.layers)
    e = report.end_to_end
    for k in ("dense_ms", "compiled_ms", "speedup", "promised_speedup", "realised_savings",
              "max_rel_error", "dense_wall_ms", "dense_cpu_ms", "speedup_wall", "speedup_cpu",
              "speedup_best", "realised_savings_best"):
        assert e[k] is not None, k
    assert e["realised_savings"] == pytest.approx(e["speedup"] / e["promised_speedup"])
    assert e["clock"] == report.meta["clock"] == "cpu"  # the tests run one thread
    assert e["speedup"] == pytest.approx(e["speedup_cpu"])
    assert e["max_rel_error"] <= report.meta["tolerance"]
    assert report.memory["method"] and report.memory["dense_bytes"] > 0
    assert report.memory["compiled_bytes"] > 0
    assert report.meta["device"] == "cpu" and report.meta["ticket_sparsity"] > 0


def test_json_round_trip(mlp_report, tmp_path):
    report, _ = mlp_report
    d = report.to_dict()
    assert d["format"] == "sparselth.compile_report"
    back = CompileReport.from_dict(json.loads(json.dumps(d)))  # standard JSON as is
    assert back.to_dict() == d
    path = report.save(tmp_path / "r.json")
    assert CompileReport.load(path).to_dict() == d
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # atomic: no temp file left
    with pytest.raises(ValueError, match="not a compile report"):
        CompileReport.from_dict({"format": "something else"})
    with pytest.raises(ValueError, match="newer"):
        CompileReport.from_dict({**d, "format_version": 99})


def test_a_version_1_report_still_loads(mlp_report):
    d = mlp_report[0].to_dict()
    d["format_version"] = 1
    for rec in d["layers"]:
        for key in ("latency_wall_ms", "latency_cpu_ms", "noise_ms"):
            del rec[key]
    back = CompileReport.from_dict(d)
    assert back.layer("fc2").latency_wall_ms == {} and back.layer("fc2").noise_ms is None


def test_printed_table(mlp_report):
    report, _ = mlp_report
    s = str(report)
    lines = s.splitlines()
    for word in ("fc1", "fc2", "fc3", "fc4", "total", "realised savings", "promised",
                 "headline ratio uses cpu time"):
        assert word in s, word
    header = lines[0]
    for column in ("sparsity", "route", "speed-up", "promised", "realised", "dense ms"):
        assert column in header
    assert len(lines[0]) == len(lines[1]) == len(lines[2])  # aligned columns
