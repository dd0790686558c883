"""The one-shot GPU check's logic without a GPU: the no-GPU exit, the order of steps, partial
results after every step, the time budget, a failed build; and its micro-benchmarks on CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sparselth.bench import gpu_check, gpu_micro

ROOT = Path(gpu_check.__file__).resolve().parent.parent
GPU = {"cuda": True, "name": "NVIDIA H100 80GB HBM3", "capability": [9, 0], "torch": "x",
       "cuda_runtime": "13.0", "memory_gb": 80.0}


def _args(tmp_path, *extra):
    return gpu_check.build_parser().parse_args(["--out", str(tmp_path), *extra])


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path, capsys):
    code, rep = gpu_check.run_check(_args(tmp_path), probe=lambda py: {"cuda": False})
    assert code == 0 and rep["steps"] == {}
    assert "nothing to check" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_the_script_exits_0_on_this_machine_when_torch_sees_no_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is usable here: the script would run the whole check")
    p = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--steps", "device"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "nothing to check" in p.stdout


def test_every_step_runs_in_order_and_results_are_written_after_each(tmp_path):
    seen = []

    def runner(cmd, limit, env, cwd):
        seen.append(cmd)
        assert env["TORCH_CUDA_ARCH_LIST"] == "9.0" and "TRITON_INTERPRET" not in env
        # the report on disk already holds every earlier step
        rep = json.loads((tmp_path / "gpu-h100-80gb-hbm3.json").read_text()) \
            if len(seen) > 1 else {"steps": {"device": {}}}
        assert len(rep["steps"]) == len(seen)
        return {"rc": 0, "ok": True, "timed_out": False, "seconds": 1.0, "tail": ""}

    code, rep = gpu_check.run_check(_args(tmp_path), probe=lambda py: GPU, runner=runner)
    assert code == 0
    assert list(rep["steps"]) == list(gpu_check.STEPS)
    assert [c[1:3] for c in seen][0] == ["setup.py", "build_ext"]
    assert any("bench.spmm" in c for c in seen[2]) and "--device" in seen[2]
    md = (tmp_path / "gpu-h100-80gb-hbm3.md").read_text()
    assert "H100" in md and "| realised | ok |" in md


def test_a_failed_build_skips_the_rest_and_fails_the_check(tmp_path):
    def runner(cmd, limit, env, cwd):
        return {"rc": 1, "ok": False, "timed_out": False, "seconds": 2.0, "tail": "error"}

    code, rep = gpu_check.run_check(_args(tmp_path), probe=lambda py: GPU, runner=runner)
    assert code == 1
    assert rep["steps"]["build"]["ok"] is False
    assert all(rep["steps"][s].get("skipped") for s in ("tests", "spmm", "micro", "realised"))


def test_steps_that_do_not_fit_the_budget_are_skipped(tmp_path):
    ran = []

    def runner(cmd, limit, env, cwd):
        ran.append(limit)
        return {"rc": 0, "ok": True, "timed_out": False, "seconds": 0.0, "tail": ""}

    code, rep = gpu_check.run_check(_args(tmp_path, "--budget", "40"), probe=lambda py: GPU,
                                    runner=runner)
    assert rep["steps"]["build"].get("skipped")           # build needs 60 s left
    assert all(limit <= 40 for limit in ran)


def test_a_step_past_its_limit_is_reported_as_timed_out(tmp_path):
    res = gpu_check.run_step(["python3", "-c", "import time; print('started', flush=True); "
                              "time.sleep(30)"], 1.0, {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert res["timed_out"] and not res["ok"] and res["seconds"] < 10


def test_device_tag_names_the_files():
    assert gpu_check.device_tag("NVIDIA H200") == "h200"
    assert gpu_check.device_tag("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"


def test_micro_benchmarks_check_and_time_every_contender_on_cpu(tmp_path):
    rep = gpu_micro.main(["--device", "cpu", "--scale", "0.003", "--budget", "0.02",
                          "--out", str(tmp_path)])
    assert len(rep["rows"]) == len(gpu_micro.CASES)
    assert all(len(r["ms"]) == 2 and all(v > 0 for v in r["ms"].values()) for r in rep["rows"])
    assert (tmp_path / "gpu-micro-cpu.md").exists()
