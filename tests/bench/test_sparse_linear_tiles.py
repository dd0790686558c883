"""``bench.sparse_linear_tiles`` runs end to end on tiny inputs and writes its report into a
temporary folder. No timing is asserted."""

from __future__ import annotations

import json

import pytest

import sparselth
from sparselth.bench import sparse_linear_tiles as bench_tiles


@pytest.mark.skipif("cpp" not in sparselth.backends(), reason="the C++ extension is not built")
def test_bench_sparse_linear_tiles_smoke(tmp_path):
    report = bench_tiles.main(
        ["--quick", "--layers", "40x24", "--batches", "1", "17", "--mlps", "12-16-8-3",
         "--mlp-batches", "5", "--repeat", "1", "--budget", "0.005", "--min-reps", "2",
         "--max-reps", "3", "--compile-budget", "0.005", "--out", str(tmp_path),
         "--no-progress"])
    data = json.loads((tmp_path / "sparse-linear-tiles-quick.json").read_text())
    assert data["published_protocol"] is False
    assert [(r["batch"], r["layer"]) for r in data["layers"]] == [(1, "40x24"), (17, "40x24")]
    assert "sparse_gbs" in data["layers"][0] and data["layers"][1]["fraction"] > 0
    assert data["mlps"][0]["realised"] > 0 and report["mlps"][0]["routes"]
    text = (tmp_path / "sparse-linear-tiles-quick.md").read_text()
    assert "Compiled MLPs" in text and "GB/s (of copy bw)" in text
