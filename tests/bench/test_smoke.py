"""The benchmark harness runs end to end on a tiny graph and writes its reports.

No timing is asserted."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from bench import spmm as bench_spmm  # noqa: E402


def test_bench_spmm_smoke(tmp_path):
    report = bench_spmm.main(
        [
            "--graphs",
            "powerlaw:1500:4",
            "--F",
            "8",
            "--keep",
            "1",
            "0.5",
            "--out",
            str(tmp_path),
            "--tag",
            "smoke",
            "--budget",
            "0.005",
            "--min-reps",
            "2",
            "--max-reps",
            "3",
            "--copy-mb",
            "8",
            "--no-progress",
        ]
    )
    js, md, png = (
        tmp_path / "spmm-smoke.json",
        tmp_path / "spmm-smoke.md",
        tmp_path / "spmm-smoke.png",
    )
    assert js.is_file() and md.is_file() and png.is_file()
    assert not list(tmp_path.glob(".*.tmp*")), "temporary files left behind"
    data = json.loads(js.read_text())
    for key in (
        "suite",
        "tag",
        "machine",
        "copy_bandwidth_gbs",
        "protocol",
        "args",
        "notes",
        "graphs",
        "results",
        "elapsed_s",
    ):
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
        for key in (
            "ms",
            "iqr_ms",
            "reps",
            "gmacs",
            "min_bytes",
            "gbs",
            "frac_copy_bw",
            "speedup_vs_best_peer",
            "best_peer",
            "max_rel_err",
        ):
            assert key in r, (r["contender"], key)
        assert r["ms"] > 0 and r["reps"] >= 2
    # every contender that ran gave the right answer; every sparselth backend ran
    assert not [r for r in res if r["status"] in ("wrong", "error")], [
        r for r in res if r["status"] != "ok"
    ]
    import sparselth

    names = {r["contender"] for r in timed}
    for b in sparselth.backends():
        if b in ("reference", "cpp"):
            assert f"sparselth[{b}]" in names
    assert "torch.sparse.mm csr" in names and "scipy csr @ dense" in names
    half = [r for r in timed if r["keep"] == 0.5]
    assert half and all("ratio_vs_keep1" in r for r in half)
    text = md.read_text()
    assert (
        "# SpMM benchmark: smoke" in text
        and "copy bandwidth" in text
        and "ms(keep k) / ms(keep 1)" in text
    )
    assert report["files"]


def test_min_bytes_and_macs():
    # 3 x 4 matrix, 5 entries, F = 2, int32 indices, float32 values / features
    b = common.spmm_min_bytes(3, 4, 5, 2)
    assert b == 4 * 4 + 5 * 4 + 5 * 4 + 4 * 2 * 4 + 3 * 2 * 4
    assert common.spmm_min_bytes(3, 4, 5, 2, value_bytes=0) == b - 20
    assert common.spmm_backward_min_bytes(3, 4, 5, 2) > b
    assert common.spmm_macs(5, 2) == 10 and common.spmm_macs(5, 2, backward=True) == 30
    assert common.gbs(2e9, 1.0) == 2.0 and common.gmacs(3e9, 2.0) == 1.5


def test_timing_protocol_interleaves():
    order = []
    t = common.time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")},
        warmup=1,
        budget_s=0.0,
        min_reps=3,
        max_reps=3,
        target_sample_s=0.0,
    )
    assert t["a"].reps == 3 and t["b"].reps == 3
    timed = order[-6:]
    assert timed == ["a", "b"] * 3
    s = t["a"].summary()
    assert s["ms"] >= 0 and s["q1_ms"] <= s["ms"] <= s["q3_ms"] and s["iqr_ms"] >= 0


def test_timing_stats_and_errors():
    tm = common.Timing("x", [1.0, 2.0, 3.0, 4.0, 100.0])
    assert tm.median == 3.0 and tm.q1 == 2.0 and tm.q3 == 4.0 and tm.iqr == 2.0
    assert math.isnan(common.Timing("y").median)
    ref = torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert common.max_rel_error(ref.float(), ref) == 0.0
    assert common.max_rel_error(torch.tensor([1.0, -2.1]), ref) == pytest.approx(0.05)
    assert common.max_rel_error(torch.tensor([float("nan"), 0.0]), ref) == math.inf
    assert common.max_rel_error(torch.zeros(3), ref) == math.inf


def test_writers_atomic(tmp_path):
    p = common.write_json(
        tmp_path / "sub" / "r.json", {"a": 1.5, "b": float("nan"), "c": [torch.float32]}
    )
    assert json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": ["torch.float32"]}
    common.write_markdown(
        tmp_path / "r.md", common.markdown_table(["x", "y"], [[1, 0.123456], ["a|b", None]])
    )
    text = (tmp_path / "r.md").read_text()
    assert "| x | y |" in text and "0.123" in text and "a\\|b" in text
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.md", "sub"]
    info = common.machine_info()
    assert info["torch"] == torch.__version__ and info["usable_cores"] >= 1
