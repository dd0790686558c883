"""bench.lth_rec --protocol: the standard protocol's defaults, naming and recorded protocol,
and a tiny end-to-end run on synthetic interactions."""

from __future__ import annotations

import json
import shlex

import pytest

from sparselth.bench import common
from sparselth.bench import lth_rec


def _args(argv: str):
    return lth_rec.build_parser().parse_args(shlex.split(argv))


def _dest(argv: str):
    args = _args(argv)
    return common.result_path(lth_rec.output_name(args), args, lth_rec.PUBLISHED,
                              parser=lth_rec.build_parser(), protocol=lth_rec.run_protocol)


def test_reference_is_the_default_and_records_no_protocol_key():
    p = lth_rec.run_protocol(_args("--model mf --dataset lastfm"))
    assert "protocol" not in p and p["dim"] == 32 and p["val_fraction"] == 0.1
    assert lth_rec.run_protocol(_args("--model mf --protocol reference")) == p


def test_standard_protocol_defaults_and_name():
    p = lth_rec.run_protocol(_args("--model lightgcn --dataset lastfm --protocol standard"))
    assert p["protocol"] == "standard" and p["dim"] == 64 and p["val_fraction"] is None
    assert lth_rec.run_protocol(_args("--protocol standard --dim 16"))["dim"] == 16
    args = _args("--model lightgcn --dataset ml100k --protocol standard --baseline random")
    assert lth_rec.output_name(args) == "lth-lightgcn-ml100k-standard-random"
    with pytest.raises(SystemExit, match="val-fraction"):
        lth_rec.run_protocol(_args("--protocol standard --val-fraction 0.2"))
    with pytest.raises(SystemExit):
        _args("--protocol paper")


@pytest.mark.parametrize("name", sorted(lth_rec.PUBLISHED))
def test_standard_never_goes_to_the_published_folder(name):
    argv = lth_rec.PUBLISHED[name]
    assert _dest(argv).published
    dest = _dest(argv + " --protocol standard")
    assert not dest.published and dest.folder == common.LOCAL_RESULTS_DIR
    assert dest.stem != name
    # the same name but another protocol is not published either
    args = _args(argv + " --protocol standard")
    mine = lth_rec.run_protocol(args)
    ref = common.published_protocol(name, lth_rec.PUBLISHED, lth_rec.build_parser(),
                                    lth_rec.run_protocol)
    assert common.protocol_differences(mine, ref)


def test_standard_end_to_end_synthetic(tmp_path, one_thread):
    run_dir = tmp_path / "run"
    lth_rec.main(shlex.split(
        f"--model mf --dataset synthetic --protocol standard --synthetic-users 120 "
        f"--synthetic-items 150 --rounds 1 --epochs 2 --eval-every 1 --no-latency --no-plot "
        f"--out {tmp_path} --run-dir {run_dir} --no-progress"))
    rep = json.loads((tmp_path / "lth-mf-synthetic-standard.json").read_text())
    assert rep["run_protocol"]["protocol"] == "standard" and rep["run_protocol"]["dim"] == 64
    assert rep["published_protocol"] is False and len(rep["rounds"]) == 1
    assert "0.8/0.1/0.1" in rep["protocol"] and "VALIDATION Recall@20" in rep["protocol"]
    assert rep["config"]["dim"] == 64
    d = rep["data"]
    assert d["val"] > 0 and abs(d["val"] - d["test"]) <= 0.2 * d["test"]
