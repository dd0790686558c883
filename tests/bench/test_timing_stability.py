"""The timing-stability suite runs end to end (quick mode, no extra load) into a temp folder."""

import json

import pytest

from bench import timing_stability


@pytest.mark.slow
def test_quick_run_writes_both_clocks(tmp_path, one_thread):
    out = timing_stability.main(["--quick", "--load", "0", "--repeats", "2", "--out",
                                 str(tmp_path), "--no-progress"])
    assert out["clock"] == "cpu" and len(out["rows"]) == 2
    saved = json.loads((tmp_path / "timing-stability-quick.json").read_text())
    assert saved["published_protocol"] is False
    for row in saved["rows"]:
        assert row["cpu_unpruned_ms"] > 0 and row["wall_ticket_ms"] > 0
    assert set(saved["spread"]) == {"cpu", "wall"}


def test_fewer_than_two_repeats_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        timing_stability.main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
