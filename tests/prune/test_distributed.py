"""Ticket search on two processes (gloo, torchrun's environment variables): IMP through
``ClassificationTask`` (DDP) and UGS node classification (loss shares) end with the same
masks on both ranks and the one-process run's masks and metrics, rank 0 alone writes the run
folder, a one-process round resumes on two ranks, and ranks that diverge raise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparselth import _io

from . import _distributed_jobs as jobs

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not torch.distributed.is_available()
                       or not torch.distributed.is_gloo_available(),
                       reason="torch.distributed with gloo is not available"),
]


def _counting_writes(monkeypatch) -> list[str]:
    written: list[str] = []
    write = _io.atomic_write_bytes

    def counted(path, data, *args, **kwargs):
        written.append(str(path))
        write(path, data, *args, **kwargs)

    monkeypatch.setattr(_io, "atomic_write_bytes", counted)
    return written


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process references (in this process), then the same searches on two ranks."""
    base = tmp_path_factory.mktemp("distributed")
    mp = pytest.MonkeyPatch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the ranks
    try:
        written = _counting_writes(mp)
        one = {"imp": jobs.imp_search(base / "one_imp")}
        one["imp_writes"] = len(written)
        one["ugs"] = jobs.ugs_search(base / "one_ugs")
        one["ugs_writes"] = len(written) - one["imp_writes"]
        two = base / "two"
        two.mkdir()
        jobs.imp_search(two / "resume", rounds=1)   # round 0 on one process
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    jobs.run_two_ranks(two)
    return one, two


def _rank_files(two: Path, name: str, rank: int):
    return (json.loads((two / f"{name}_records_{rank}.json").read_text()),
            load_file(two / f"{name}_masks_{rank}.st"),
            load_file(two / f"{name}_state_{rank}.st"))


def _same_masks(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].bool(), b[k].bool()) for k in a)


@pytest.mark.parametrize("name", ["imp", "ugs"])
def test_both_ranks_end_with_the_same_masks_and_weights(runs, name):
    _, two = runs
    _, masks0, state0 = _rank_files(two, name, 0)
    _, masks1, state1 = _rank_files(two, name, 1)
    assert _same_masks(masks0, masks1)
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
    report = json.loads((two / "report_1.json").read_text())
    assert report["world"] == [1, 2, False]


@pytest.mark.parametrize("name,metric", [("imp", "accuracy"), ("ugs", "test_acc")])
def test_two_ranks_match_one_process(runs, name, metric):
    """The same global batch (IMP) / the same loss split in shares (UGS): the masks of every
    round are those of one process, weights and metrics agree up to float rounding."""
    one, two = runs
    recs1, masks1, state1 = one[name]
    recs2, masks2, state2 = _rank_files(two, name, 0)
    assert _same_masks(masks1, masks2)
    for k in state1:
        torch.testing.assert_close(state2[k], state1[k], rtol=1e-4, atol=1e-5)
    assert len(recs1) == len(recs2) == jobs.IMP_ROUNDS + 1
    for a, b in zip(recs1, recs2):
        assert a["weight_sparsity"] == b["weight_sparsity"]
        assert a["graph_sparsity"] == b["graph_sparsity"]
        value = a["metrics"][metric] if name == "imp" else a[metric]
        other = b["metrics"][metric] if name == "imp" else b[metric]
        assert math.isclose(value, other, abs_tol=0.02)
    if name == "imp":
        assert all(math.isclose(a["metrics"]["loss"], b["metrics"]["loss"], rel_tol=1e-3)
                   for a, b in zip(recs1, recs2))


@pytest.mark.parametrize("name", ["imp", "ugs"])
def test_rank_zero_alone_writes_the_run_folder(runs, name):
    one, two = runs
    r0 = json.loads((two / "report_0.json").read_text())
    r1 = json.loads((two / "report_1.json").read_text())
    assert r1[f"{name}_writes"] == 0
    assert r0[f"{name}_writes"] == one[f"{name}_writes"]   # each file once, as one process
    assert json.loads((two / name / "progress.json").read_text())["next_round"] == \
        jobs.IMP_ROUNDS + 1
    assert not list((two / name).rglob(".*.tmp"))


def test_resume_on_two_ranks_after_a_one_process_round(runs):
    """Round 0 ran on one process; rounds 1-2 on two ranks continue it as one process would
    have (same masks, same records up to rounding)."""
    one, two = runs
    recs1, masks1, _ = one["imp"]
    for rank in (0, 1):
        recs, masks, _ = _rank_files(two, "resumed", rank)
        assert _same_masks(masks, masks1)
        assert [r["round"] for r in recs] == [0, 1, 2]
        assert [r["weight_sparsity"] for r in recs] == [r["weight_sparsity"] for r in recs1]
    saved = json.loads((two / "resume" / "records.json").read_text())
    assert saved[0]["metrics"] == recs1[0]["metrics"]   # round 0: the one-process record
    assert math.isclose(saved[2]["metrics"]["loss"], recs1[2]["metrics"]["loss"], rel_tol=1e-3)


def test_a_planted_mismatch_raises_naming_the_ranks(runs):
    _, two = runs
    for rank in (0, 1):
        msg = json.loads((two / f"report_{rank}.json").read_text())["planted_error"]
        assert "the planted masks differ between ranks: rank(s) [1]" in msg
        assert "'planted'" in msg and "'keep'" not in msg


def test_gradients_are_summed_over_the_ranks(runs):
    _, two = runs
    for rank in (0, 1):
        grads = json.loads((two / f"report_{rank}.json").read_text())["grads"]
        assert grads == [[3.0, 3.0, 3.0], [0.0, 1.0, 2.0], None]


def test_ranks_that_diverge_in_training_raise(runs):
    """A train function that does not synchronise the ranks is caught after the round."""
    _, two = runs
    for rank in (0, 1):
        msg = json.loads((two / f"report_{rank}.json").read_text())["diverged_error"]
        assert msg.startswith("IMP round 0: the trained weights differ between ranks: "
                              "rank(s) [1]")


@pytest.mark.slow
def test_sparselth_find_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 -m sparselth find``: the launcher's environment, DDP,
    one table printed, the run folder and tickets of one process, the same masks."""
    import os
    import subprocess
    import sys

    from sparselth.cli.tickets import run_find
    from sparselth.prune.run import read_round

    cfg = tmp_path / "tiny.toml"
    cfg.write_text('seed = 0\n[model]\nname = "mlp"\nhidden = [16]\n'
                   '[data]\nn_train = 101\nn_test = 64\nimage_size = 4\nnum_classes = 3\n'
                   '[train]\nepochs = 1\nbatch_size = 32\n[imp]\nrounds = 1\nfraction = 0.5\n'
                   'rewind = "init"\n')
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", "-m", "sparselth", "find", str(cfg), "--out",
                        str(tmp_path / "two"), "--no-progress"],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("IMP run:") == 1
    one = run_find(str(cfg), tmp_path / "one", progress=False)
    two = json.loads((tmp_path / "two" / "find.json").read_text())
    assert [x["weight_sparsity"] for x in two["records"]] == \
        [x["weight_sparsity"] for x in one["records"]]
    assert (tmp_path / "two" / "tickets" / "round_001" / "ticket.json").is_file()
    for rnd in (0, 1):
        assert _same_masks(read_round(tmp_path / "two" / "imp", rnd)["masks"],
                           read_round(tmp_path / "one" / "imp", rnd)["masks"])
