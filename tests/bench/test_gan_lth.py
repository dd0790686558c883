"""``python -m bench.gan_lth`` end to end on synthetic images: its files, its table, the
matching rule, resume, and the proxy FID network cached with its hash."""

from __future__ import annotations

import json

import pytest

from sparselth.bench import gan_lth

ARGS = ["--dataset", "synthetic", "--rounds", "1", "--iterations", "4", "--g-ch", "4",
        "--d-ch", "4", "--latent-dim", "16", "--n-critic", "1", "--d-batch", "8",
        "--g-batch", "8", "--eval-every", "2", "--eval-samples", "64", "--real-samples", "200",
        "--train-images", "200", "--no-progress"]


def test_gan_lth_end_to_end(tmp_path, one_thread):
    argv = ARGS + ["--random", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    rep = gan_lth.main(argv)
    stem = tmp_path / "out" / "gan-sngan-synthetic"
    for suffix in (".json", ".md", ".png", "-samples.png"):
        assert (tmp_path / "out" / f"gan-sngan-synthetic{suffix}").is_file(), suffix
    saved = json.loads(stem.with_suffix(".json").read_text())
    t = saved["tickets"]
    assert [r["round"] for r in t] == [0, 1] and t[1]["remaining"] < 1.0
    assert t[1]["macs"] < t[0]["macs"] == t[0]["macs_dense"]
    assert len(saved["random"]) == 2 and saved["fid_network"].startswith("proxy")
    assert (tmp_path / "runs" / "features-synthetic.safetensors").is_file()
    assert "proxy FID" in stem.with_suffix(".md").read_text()
    assert 0 <= saved["real_halves_fid"] < max(r["best_fid"] for r in t)
    again = gan_lth.main(argv)                       # resumes: the same numbers
    assert [r["best_fid"] for r in again["tickets"]] == [r["best_fid"] for r in rep["tickets"]]
    assert again["fid_network_hash"] == rep["fid_network_hash"]


def test_cyclegan_end_to_end(tmp_path, one_thread):
    argv = ["--model", "cyclegan", "--dataset", "synthetic", "--rounds", "1", "--iterations",
            "4", "--ngf", "2", "--n-res", "1", "--ndf", "2", "--d-layers", "1", "--eval-every",
            "2", "--real-samples", "40", "--train-images", "400", "--no-progress",
            "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    rep = gan_lth.main(argv)
    for suffix in (".json", ".md", ".png", "-samples.png"):
        assert (tmp_path / "out" / f"gan-cyclegan-synthetic{suffix}").is_file(), suffix
    t = rep["tickets"]
    assert [r["round"] for r in t] == [0, 1] and t[1]["macs"] < t[0]["macs"]
    assert "translated" in (tmp_path / "out" / "gan-cyclegan-synthetic.md").read_text()
    with pytest.raises(SystemExit):
        gan_lth.main(argv[:4] + ["--variant", "impgd-kd"])


def test_transfer(tmp_path, one_thread):
    argv = ARGS + ["--transfer", "synthetic", "--train-images", "100", "--out",
                   str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    rep = gan_lth.main(argv)
    tr = rep["transfer"]
    assert tr["dataset"] == "synthetic" and [r["round"] for r in tr["tickets"]] == [0, 1]
    assert tr["tickets"][1]["remaining"] == pytest.approx(rep["tickets"][1]["remaining"])
    text = (tmp_path / "out" / "gan-sngan-synthetic-transfer-synthetic.md").read_text()
    assert "## Transfer" in text


def test_compare_table(tmp_path, one_thread):
    argv = ARGS + ["--compare", "--rounds", "1", "--out", str(tmp_path / "out"), "--runs",
                   str(tmp_path / "runs")]
    rep = gan_lth.main(argv)
    assert list(rep["compare"]) == ["impg, D init", "impgd, D init", "impgd-kd, D init",
                                    "impg, D trained", "impg, D seed"]
    assert all(len(v) == 2 for v in rep["compare"].values())
    text = (tmp_path / "out" / "gan-sngan-synthetic-compare.md").read_text()
    assert "Variants and D initialisations" in text


def test_matching_rule():
    rows = [{"round": 0, "remaining": 1.0, "best_fid": 10.0},
            {"round": 1, "remaining": 0.8, "best_fid": 10.4},
            {"round": 2, "remaining": 0.64, "best_fid": 10.6},
            {"round": 3, "remaining": 0.51, "best_fid": 10.2}]
    m = gan_lth.matching(rows)
    assert m["sparsest_matching_round"] == 3
    assert m["sparsest_matching_sparsity"] == pytest.approx(0.49)
    assert gan_lth.matching(rows[:1] + [dict(rows[2])])["sparsest_matching_round"] is None


def test_refuses_tiny_budgets(tmp_path):
    with pytest.raises(SystemExit):
        gan_lth.main(["--iterations", "1", "--out", str(tmp_path)])
