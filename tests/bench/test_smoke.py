"""Every benchmark suite runs end to end on tiny inputs and writes its reports into a temporary
folder (never into bench/results/ or runs/). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sparselth
from sparselth.bench import common
from sparselth.bench import embedding as bench_embedding
from sparselth.bench import lightgcn_propagation as bench_lightgcn
from sparselth.bench import lth_rec as bench_lth_rec
from sparselth.bench import realised as bench_realised
from sparselth.bench import sparse_weights as bench_sparse_weights
from sparselth.bench import spmm as bench_spmm
from sparselth.bench import ugs as bench_ugs

TIMING = ["--budget", "0.005", "--min-reps", "2", "--max-reps", "3"]


@pytest.fixture(autouse=True)
def results_untouched():
    """Fails a test that writes into the committed results or the run folders."""

    def snapshot():
        roots = [common.RESULTS_DIR, common.RUNS_DIR / "ugs", common.RUNS_DIR / "local",
                 *common.RUNS_DIR.glob("lth-*")]
        return {p: p.stat().st_mtime_ns for root in roots if root.is_dir()
                for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    assert snapshot() == before, "a benchmark wrote into bench/results/ or runs/"


def _check_files(tmp_path: Path, stem: str, suffixes=(".json", ".md", ".png")) -> dict:
    for suffix in suffixes:
        assert (tmp_path / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "temporary files left"
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    assert data["machine"]["cpu"] and data["machine"]["copy_bandwidth_gbs"] > 0
    assert data["published_protocol"] is False and data["run_protocol"]
    assert "Protocol: not the published protocol" in (tmp_path / f"{stem}.md").read_text()
    return data


@pytest.mark.slow
def test_bench_spmm_smoke(tmp_path):
    report = bench_spmm.main(
        ["--graphs", "powerlaw:1500:4", "--F", "8", "--keep", "1", "0.5", "--out",
         str(tmp_path), "--tag", "smoke", *TIMING, "--copy-mb", "8", "--no-progress"]
    )
    data = _check_files(tmp_path, "spmm-smoke")
    for key in ("suite", "tag", "machine", "copy_bandwidth_gbs", "protocol", "args", "notes",
                "graphs", "results", "elapsed_s", "clock", "threads"):
        assert key in data, key
    for key in ("cpu", "torch", "git_commit", "date_utc", "usable_cores"):
        assert key in data["machine"], key
    assert data["copy_bandwidth_gbs"] > 0
    res = data["results"]
    assert {r["mode"] for r in res} == {"fwd", "fwdbwd"}
    assert {r["keep"] for r in res} == {1.0, 0.5}
    timed = [r for r in res if r["status"] == "ok"]
    assert timed
    for r in timed:
        for key in ("ms", "cpu_ms", "iqr_ms", "cpu_iqr_ms", "reps", "gmacs", "min_bytes", "gbs",
                    "frac_copy_bw", "speedup_vs_best_peer", "best_peer", "max_rel_err"):
            assert key in r, (r["contender"], key)
        assert r["ms"] > 0 and r["reps"] >= 2
    # every contender that ran gave the right answer; every sparselth backend ran
    assert not [r for r in res if r["status"] in ("wrong", "error")], [
        r for r in res if r["status"] != "ok"
    ]
    names = {r["contender"] for r in timed}
    for b in sparselth.backends():
        if b in ("reference", "cpp"):
            assert f"sparselth[{b}]" in names
    assert "torch.sparse.mm csr" in names and "scipy csr @ dense" in names
    half = [r for r in timed if r["keep"] == 0.5]
    assert half and all("ratio_vs_keep1" in r for r in half)
    text = (tmp_path / "spmm-smoke.md").read_text()
    assert "# SpMM benchmark: smoke" in text and "copy bandwidth" in text
    assert "ms(keep k) / ms(keep 1)" in text and "Ratios and rates use" in text
    assert report["files"]


@pytest.mark.slow
def test_bench_embedding_smoke(tmp_path):
    bench_embedding.main(
        ["--quick", "--rows", "3000", "--dim", "16", "--sparsity", "0.9", "--masks", "random",
         "--batch", "256", "--id-batches", "4", "--threads", "1", *TIMING, "--copy-mb", "8",
         "--out", str(tmp_path), "--no-progress"]
    )
    data = _check_files(tmp_path, "embedding-cpu-quick")
    assert data["clock"] == "cpu"
    lookup = data["cases"][0]["lookup"]["dense F.embedding"]
    assert lookup["cpu_ms"] > 0 and lookup["vs_dense"] == pytest.approx(1.0)
    steps = data["training"]["steps"]
    assert all(v["cpu_ms"] > 0 and v["speedup_vs_naive"] > 0 for v in steps.values())


@pytest.mark.slow
def test_bench_sparse_weights_smoke(tmp_path):
    bench_sparse_weights.main(
        ["--sizes", "48", "--batches", "3", "--sparsities", "0.9", "--conv-cases",
         "3x3 8ch 6x6 b2", "--repeat", "1", "--threads", "1", *TIMING, "--out", str(tmp_path),
         "--tag", "smoke", "--no-progress"]
    )
    data = _check_files(tmp_path, "sparse-weights-smoke", (".json", ".md"))
    assert data["clock"] == "cpu" and not data["notes"][1:]
    lin, conv = data["results"]
    assert set(lin["ms"]) == {"dense", "torch csr", "sparselth", "sparselth spmm"}
    assert set(conv["ms"]) == {"dense", "sparselth direct", "sparselth im2col"}
    assert all(len(v) == 1 for v in lin["runs_cpu_ms"].values())


@pytest.mark.slow
def test_bench_realised_smoke(tmp_path):
    bench_realised.main(
        ["--quick", "--sparsities", "0.9", "--threads", "1", "--budget", "0.005",
         "--e2e-budget", "0.01", "--out", str(tmp_path), "--tag", "smoke", "--no-progress"]
    )
    data = _check_files(tmp_path, "realised-smoke")
    assert data["clock"] == "cpu"
    for r in data["results"]:
        assert r["clock"] == "cpu" and r["dense"]["cpu_ms"] > 0 and r["speedup"] > 0
        assert r["realised_savings"] == pytest.approx(r["speedup"] / r["promised_speedup"])


@pytest.mark.slow
def test_bench_lightgcn_propagation_smoke(tmp_path):
    bench_lightgcn.main(["--quick", "--users", "300", "--items", "200", "--budget", "0.01",
                         "--out", str(tmp_path)])
    data = _check_files(tmp_path, "lightgcn-propagation-cpu-quick")
    assert data["clock"] == "cpu" and len(data["rows"]) == 4
    row = data["rows"][-1]
    assert row["rows dropped_ms"] == row["timings"]["rows dropped"]["cpu_ms"]


@pytest.mark.slow
def test_bench_lth_rec_smoke(tmp_path):
    run_dir = tmp_path / "run"
    bench_lth_rec.main(
        ["--model", "mf", "--dataset", "synthetic", "--synthetic-users", "120",
         "--synthetic-items", "150", "--rounds", "1", "--epochs", "2", "--eval-every", "1",
         "--dim", "8", "--out", str(tmp_path), "--run-dir", str(run_dir), "--no-progress"]
    )
    data = _check_files(tmp_path, "lth-mf-synthetic")
    assert len(data["rounds"]) == 1 and (run_dir / "ticket").is_dir()
    # a rerun with other settings in the same run folder is refused
    with pytest.raises(SystemExit, match="other settings"):
        bench_lth_rec.main(
            ["--model", "mf", "--dataset", "synthetic", "--synthetic-users", "120",
             "--synthetic-items", "150", "--rounds", "1", "--epochs", "3", "--dim", "8",
             "--out", str(tmp_path), "--run-dir", str(run_dir), "--no-progress"]
        )


@pytest.mark.slow
def test_bench_ugs_smoke(tmp_path):
    common_args = ["--dataset", "csbm", "--csbm-nodes", "200", "--rounds", "1", "--epochs", "2",
                   "--hidden", "8", "--threads", "1", "--latency-budget", "0.02",
                   "--compile-budget", "0.005", "--out", str(tmp_path), "--runs",
                   str(tmp_path / "runs"), "--no-progress"]
    bench_ugs.main(common_args)
    data = _check_files(tmp_path, "ugs-gcn-csbm")
    assert data["rounds"][0]["latency_clock"] == "cpu"
    assert data["rounds"][0]["latency_dense"]["cpu_ms"] > 0
    # a random baseline of another protocol stays out of the UGS table; one of the same joins
    bench_ugs.main(common_args + ["--baseline", "random", "--no-latency", "--epochs", "3"])
    text = (tmp_path / "ugs-gcn-csbm.md").read_text()
    assert "| random test % |" not in text and "mask_epochs: 3 (this run: 2)" in text
    bench_ugs.main(common_args + ["--baseline", "random", "--no-latency"])
    assert "| random test % |" in (tmp_path / "ugs-gcn-csbm.md").read_text()
