"""One-shot GPU check: build the CUDA extension, run every GPU test, then time the GPU kernels
against the vendor libraries, in one command (``make gpu-check`` or
``bash bench/gpu_check.sh``), in minutes.

Steps, each a subprocess with its own time limit, each recorded as soon as it ends (so a run
killed half-way leaves its finished steps in ``bench/results/gpu-<device>.{json,md}``):

1. ``device``: is an NVIDIA GPU usable from this Python's torch? Without one the check says
   so and exits 0 (nothing to check is not a failure).
2. ``build``: the extension with its CUDA sources, for this GPU's architecture only (fast).
3. ``tests``: every test whose id names ``cuda`` or ``triton`` (compiled Triton, CUDA, fp16 and
   bf16 paths, 2:4 where supported) under ``tests/ops``, ``tests/kernels``, ``tests/nn`` and
   ``tests/deploy``; failures are listed.
4. ``spmm``: ``bench.spmm --device cuda --quick`` (sparselth's CUDA and Triton SpMM against
   cuSPARSE through ``torch.sparse``), written beside the report.
5. ``micro``: SDDMM against ``torch.sparse.sampled_addmm`` (cuSPARSE), embedding lookups
   against ``F.embedding``, a pruned 3x3 convolution against cuDNN (:mod:`bench.gpu_micro`).
6. ``realised``: ``bench.realised --device cuda --quick`` (compiled tickets end to end).

``--steps`` picks a subset; ``--budget`` (seconds, default 480) bounds the whole run: a step
that would start with less than its minimum left is recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from sparselth.utils.records import markdown_table, write_json, write_markdown
from sparselth.utils.timing import stopwatch

from . import common

STEPS = ("device", "build", "tests", "spmm", "micro", "realised")
# step -> (seconds it may run, seconds it needs left to start)
LIMITS = {"device": (60, 5), "build": (300, 60), "tests": (240, 30), "spmm": (150, 30),
          "micro": (120, 20), "realised": (120, 30)}
TEST_DIRS = ("tests/ops", "tests/kernels", "tests/nn", "tests/deploy")


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("gpu_check", "Build, test and time sparselth on an NVIDIA GPU in one "
                          "run; exits 0 saying so where there is none.")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check")
    p.add_argument("--python", default=sys.executable,
                   help="the Python whose torch sees the GPU (builds and runs every step)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default bench/results/)")
    return p


def device_probe(python: str) -> dict[str, Any]:
    """What ``python``'s torch sees: ``{"cuda": bool, "name", "capability", "torch", ...}``."""
    code = ("import json, torch; ok = torch.cuda.is_available(); print(json.dumps({"
            "'cuda': ok, 'torch': torch.__version__, 'cuda_runtime': torch.version.cuda, "
            "'name': torch.cuda.get_device_name(0) if ok else None, "
            "'capability': list(torch.cuda.get_device_capability(0)) if ok else None, "
            "'memory_gb': torch.cuda.get_device_properties(0).total_memory / 2**30 "
            "if ok else None}))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"cuda": False, "error": f"{type(e).__name__}: {e}"}
    if out.returncode != 0:
        return {"cuda": False, "error": out.stderr.strip()[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def device_tag(name: str | None) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"h100-80gb-hbm3"`` (the result files' name)."""
    return common.safe_name((name or "none").lower().replace("nvidia ", "")).replace("_", "-")


def step_commands(python: str, info: dict[str, Any], out: Path) -> dict[str, list[str]]:
    """The command of every step after ``device``."""
    cap = info.get("capability") or [9, 0]
    k = " or ".join(("cuda", "triton"))
    return {
        "build": [python, "setup.py", "build_ext", "--inplace", "-j", str(os.cpu_count() or 4)],
        "tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", k,
                  "--junitxml", str(out / "gpu-tests.xml"), *TEST_DIRS],
        "spmm": [python, "-m", "bench.spmm", "--device", "cuda", "--quick", "--no-progress",
                 "--out", str(out)],
        "micro": [python, "-m", "bench.gpu_micro", "--device", "cuda", "--out", str(out)],
        "realised": [python, "-m", "bench.realised", "--device", "cuda", "--quick",
                     "--out", str(out)],
        "_env": [f"TORCH_CUDA_ARCH_LIST={cap[0]}.{cap[1]}"],
    }


def run_step(cmd: list[str], limit: float, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run one step; its exit code, seconds, whether it timed out, and its output's tail."""
    watch = stopwatch()
    print(f"gpu_check: $ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env,
                           cwd=str(cwd))
        rc, text, timed_out = p.returncode, p.stdout + p.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, timed_out = None, True
        text = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                else (e.stdout or "")) + ((e.stderr or b"").decode(errors="replace")
                                          if isinstance(e.stderr, bytes) else (e.stderr or ""))
    return {"rc": rc, "ok": rc == 0, "timed_out": timed_out, "seconds": round(watch(), 1),
            "tail": text[-3000:]}


def markdown(rep: dict[str, Any]) -> str:
    dev = rep["device"]
    rows = [[name, "ok" if s.get("ok") else ("skipped" if s.get("skipped") else
                                              ("timed out" if s.get("timed_out") else "FAILED")),
             s.get("seconds", ""), s.get("why", "")] for name, s in rep["steps"].items()]
    lines = [f"# GPU check: {dev.get('name') or 'no GPU'}", "",
             f"torch {dev.get('torch')}, CUDA runtime {dev.get('cuda_runtime')}, compute "
             f"capability {dev.get('capability')}, {dev.get('memory_gb') or 0:.0f} GiB. "
             "Each step's output ends the JSON file; the benchmark tables are the files listed.",
             "", markdown_table(["step", "result", "seconds", "note"], rows), ""]
    files = [f for s in rep["steps"].values() for f in s.get("files", [])]
    if files:
        lines += ["## Result files", "", *[f"- `{f}`" for f in files], ""]
    return "\n".join(lines)


def run_check(args: argparse.Namespace, probe: Callable[[str], dict] = device_probe,
              runner: Callable[..., dict] = run_step) -> tuple[int, dict[str, Any]]:
    """The whole check; ``(exit code, report)``. ``probe``/``runner`` are replaceable so the
    logic runs without a GPU."""
    root = Path(__file__).resolve().parent.parent
    out = Path(args.out) if args.out else common.RESULTS_DIR
    info = probe(args.python)
    rep: dict[str, Any] = {"benchmark": "gpu_check", "device": info, "steps": {},
                           "command": "python -m bench.gpu_check " + " ".join(
                               shlex.quote(s) for s in sys.argv[1:])}
    if not info.get("cuda"):
        print(f"gpu_check: no NVIDIA GPU usable from {args.python} "
              f"({info.get('error') or 'torch.cuda.is_available() is False'}): nothing to "
              "check", flush=True)
        return 0, rep
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{device_tag(info['name'])}"
    rep["machine"] = common.machine()
    cmds = step_commands(args.python, info, out)
    env = dict(os.environ, **dict(e.split("=", 1) for e in cmds.pop("_env")))
    env.pop("TRITON_INTERPRET", None)   # compiled Triton on the GPU
    env["PYTHONUNBUFFERED"] = "1"
    watch = stopwatch()
    rep["steps"]["device"] = {"ok": True, "seconds": 0.0}
    failed = False
    for step in [s for s in STEPS if s in args.steps and s != "device"]:
        limit, need = LIMITS[step]
        left = args.budget - watch()
        if left < need:
            rep["steps"][step] = {"skipped": True, "why": f"{left:.0f} s left of --budget"}
        elif step != "build" and rep["steps"].get("build", {}).get("ok") is False:
            rep["steps"][step] = {"skipped": True, "why": "the build failed"}
        else:
            before = set(out.glob("*"))
            res = runner(cmds[step], min(limit, left), env, root)
            res["files"] = sorted(str(p.relative_to(out)) for p in set(out.glob("*")) - before)
            rep["steps"][step] = res
            failed |= not res["ok"]
            print(f"gpu_check: {step}: {'ok' if res['ok'] else 'FAILED'} in "
                  f"{res['seconds']} s", flush=True)
        write_json(out / f"{stem}.json", rep)          # partial results survive a kill
        write_markdown(out / f"{stem}.md", markdown(rep))
    rep["seconds"] = round(watch(), 1)
    write_json(out / f"{stem}.json", rep)
    write_markdown(out / f"{stem}.md", markdown(rep))
    print(markdown(rep))
    return (1 if failed else 0), rep


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.budget <= 0:
        raise SystemExit("gpu_check: --budget must be > 0")
    code, rep = run_check(args)
    if argv is None:
        raise SystemExit(code)
    return rep


if __name__ == "__main__":
    main()
