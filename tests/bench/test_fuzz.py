"""The fuzzing harness: every family runs and passes a few cases in-process, and the harness
pins crashes, hangs and mismatches of planted cases to their index and goes on."""

from __future__ import annotations

import pytest

from sparselth.bench import fuzz
from sparselth.bench.fuzz_cases import FAMILIES, Mismatch, run_case


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_passes_its_first_cases_on_every_cpu_backend(family):
    for backend in FAMILIES[family][1]:
        if backend == "triton":
            continue   # needs TRITON_INTERPRET=1 from process start; the full run covers it
        for index in range(6):
            assert run_case(family, backend, 0, index) in ("ok", "rejected"), (backend, index)


def test_cases_are_deterministic_in_their_seed_and_index():
    import torch
    from sparselth.bench.fuzz_cases import Draw
    import numpy as np
    a = Draw(np.random.default_rng([3, 1, 4])).csr(9, 7)
    b = Draw(np.random.default_rng([3, 1, 4])).csr(9, 7)
    assert torch.equal(a.to_dense(), b.to_dense())


def test_a_wrong_kernel_answer_is_a_mismatch(monkeypatch):
    from sparselth.bench import fuzz_cases
    monkeypatch.setattr(fuzz_cases, "spmm", lambda A, X, **kw: torch_zeros_like_result(A, X))
    with pytest.raises(Mismatch):
        for index in range(20):   # some case has a non-zero product
            run_case("spmm", "reference", 0, index)


def torch_zeros_like_result(A, X):
    import torch
    return torch.zeros(A.shape[0], X.shape[1], dtype=X.dtype)


def test_plan_splits_the_cases_and_refuses_unknown_families():
    args = fuzz.build_parser().parse_args(["--cases", "1000", "--triton-share", "0"])
    jobs = fuzz.plan(args)
    assert {f for f, _, _ in jobs} == set(FAMILIES)
    assert all(b != "triton" for _, b, _ in jobs)
    assert sum(k for *_, k in jobs) == 1000
    with pytest.raises(ValueError, match="--families"):
        fuzz.plan(fuzz.build_parser().parse_args(["--families", "nope"]))


def test_crashes_hangs_and_mismatches_are_pinned_to_their_case_and_the_run_goes_on(tmp_path):
    rep = fuzz.main(["--families", "_crash", "_hang", "_mismatch", "--cases", "6",
                     "--chunk", "2", "--timeout", "4", "--jobs", "2", "--out", str(tmp_path),
                     "--no-progress"])
    rows = {r["family"]: r for r in rep["rows"]}
    assert rows["_crash"]["crash"] == 2 and rows["_hang"]["hang"] == 2
    assert rows["_mismatch"]["mismatch"] == 2
    pinned = sorted((f["family"], f["index"]) for f in rep["findings"])
    assert pinned == [(f, i) for f in ("_crash", "_hang", "_mismatch") for i in (0, 1)]
    assert all("--replay" in f["replay"] for f in rep["findings"])
    assert (tmp_path / "fuzz-cpu.md").exists()


def test_replay_runs_one_case_in_process():
    assert fuzz.main(["--replay", "spmm:cpp:3"])["outcome"] == "ok"
