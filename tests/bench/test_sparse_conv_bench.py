"""``python -m bench.sparse_conv`` on tiny cases writes its JSON and Markdown into a temporary
folder (no timing is asserted)."""

import json

from bench import sparse_conv


def test_sparse_conv_bench_smoke(tmp_path):
    report = sparse_conv.main(["--smoke", "--threads", "1", "--repeat", "1", "--budget", "0.005",
                               "--min-reps", "2", "--max-reps", "3", "--copy-mb", "8",
                               "--out", str(tmp_path), "--no-progress"])
    data = json.loads((tmp_path / "sparse-conv.json").read_text())
    assert [r["case"] for r in data["results"]] == [c[0] for c in sparse_conv.SMOKE]
    for r in report["results"]:
        assert r["speedup"] > 0 and 0 < r["density"] <= 1 and r["byte_bound_ms"] > 0
    assert "| case | sparsity |" in (tmp_path / "sparse-conv.md").read_text()
    assert data["published_protocol"] is False
