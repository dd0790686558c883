"""Fuzzing every op, backend, dtype and module state-dict path in subprocesses: no mismatch,
no crash, no hang.

``python -m bench.fuzz --cases 100000`` spreads the cases over the families of
:mod:`bench.fuzz_cases` (kernels against dense PyTorch; invalid structures, corrupted state
dicts and ticket files that must be refused) and their backends (``reference``, ``cpp``, and
``triton`` under ``TRITON_INTERPRET=1`` for ``--triton-share`` of a family's cases, its
interpreter being slow). Cases run in worker processes, a chunk at a time, each case announced
in a progress file before it starts: a worker killed by a signal is a **crash** and one still
running one case after ``--timeout`` seconds a **hang**, both pinned to the case that was
running; the chunk then goes on from the next case in a fresh worker. Every case is deterministic in
``(seed, family, backend, index)``, and every finding is reported with the command that
replays it alone: ``python -m bench.fuzz --replay FAMILY:BACKEND:INDEX --seed S``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from sparselth.utils.records import markdown_table
from sparselth.utils.timing import pause, stopwatch

from . import common

PUBLISHED = {"fuzz-cpu": "--cases 100000 --triton-share 0.002 --chunk 5000"}
OUTCOMES = ("ok", "rejected", "mismatch", "crash", "hang")
# Families that exercise the harness itself (named explicitly only, e.g. by its tests).
HARNESS_CHECKS = ("_crash", "_hang", "_mismatch")
STARTUP_S = 300.0   # seconds a worker may take to import before its first case


def _families() -> dict:
    from .fuzz_cases import FAMILIES
    return FAMILIES


def _triton_usable() -> bool:
    import importlib.util
    return importlib.util.find_spec("triton") is not None


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("fuzz", "Random inputs for every op, backend and state-dict path, "
                          "checked against dense PyTorch in worker processes; crashes and "
                          "hangs are caught and pinned to their case.")
    p.add_argument("--cases", type=int, default=100_000, help="cases in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", nargs="+", default=None,
                   help="families to run (default: all of bench.fuzz_cases.FAMILIES)")
    p.add_argument("--triton-share", type=float, default=0.01,
                   help="share of a family's cases run on the Triton interpreter")
    p.add_argument("--chunk", type=int, default=500, help="cases per worker process")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one case may run before it counts as a hang")
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once")
    p.add_argument("--replay", default=None, metavar="FAMILY:BACKEND:INDEX",
                   help="run one case in this process and print its outcome")
    p.add_argument("--worker", nargs=6, default=None, help=argparse.SUPPRESS)
    common.add_output_args(p, plot=False)
    return p


def run_protocol(args: argparse.Namespace) -> dict[str, Any]:
    return {"cases": args.cases, "seed": args.seed,
            "families": sorted(args.families or _families()),
            "triton_share": args.triton_share, "chunk": args.chunk}


def output_name(args: argparse.Namespace) -> str:
    return "fuzz-cpu"


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """``(family, backend, cases)`` for every family and backend the run covers: the cases
    split over the families by weight, then evenly over the backends (Triton gets
    ``--triton-share`` of its family, and nothing when Triton is not installed); the counts
    add up to ``--cases`` exactly (largest remainders)."""
    fams = _families()
    names = list(args.families or fams)
    unknown = [n for n in names if n not in fams and n not in HARNESS_CHECKS]
    if unknown:
        raise ValueError(f"--families: unknown {unknown}; known: {sorted(fams)}")
    weights = {n: fams[n][2] if n in fams else 1 for n in names}
    total = sum(weights.values())
    shares = []
    for n in names:
        backends = [b for b in (fams[n][1] if n in fams else ("reference",))
                    if b != "triton" or _triton_usable()]
        tri = args.triton_share if "triton" in backends else 0.0
        rest = [b for b in backends if b != "triton"]
        for b in backends:
            part = tri if b == "triton" else (1.0 - tri) / len(rest)
            shares.append((n, b, args.cases * weights[n] / total * part))
    counts = [int(x) for *_, x in shares]
    order = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i][2])
    for i in order[:args.cases - sum(counts)]:
        counts[i] += 1
    return [(n, b, k) for (n, b, _), k in zip(shares, counts) if k > 0]


# --------------------------------------------------------------------------- worker side
def _harness_case(family: str) -> str:
    if family == "_crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if family == "_hang":
        pause(3600)
    from .fuzz_cases import Mismatch
    raise Mismatch("a planted mismatch")


def run_one(family: str, backend: str, seed: int, index: int) -> tuple[str, str]:
    """``(outcome, detail)`` of one case in this process (a crash ends the process)."""
    from .fuzz_cases import Mismatch, run_case
    try:
        if family in HARNESS_CHECKS:
            return _harness_case(family), ""
        return run_case(family, backend, seed, index), ""
    except Mismatch as e:
        return "mismatch", str(e)
    except Exception as e:  # noqa: BLE001 - an unexpected error is a finding, not a stop
        tb = traceback.format_exception(type(e), e, e.__traceback__)[-3:]
        return "mismatch", f"{type(e).__name__}: {e} | {''.join(tb).strip()[-400:]}"


def worker(family: str, backend: str, seed: int, start: int, count: int, progress: str) -> None:
    """Run cases ``start .. start + count - 1``, appending to ``progress`` one JSON line when
    a case begins and one with its outcome when it ends (so a crash loses nothing)."""
    import torch
    torch.set_num_threads(1)
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for i in range(start, start + count):
            os.write(fd, (json.dumps({"begin": i}) + "\n").encode())
            outcome, detail = run_one(family, backend, seed, i)
            os.write(fd, (json.dumps({"end": i, "outcome": outcome, "detail": detail})
                          + "\n").encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- parent side
class _Chunk:
    def __init__(self, family: str, backend: str, start: int, count: int):
        self.family, self.backend, self.start, self.count = family, backend, start, count
        self.proc: subprocess.Popen | None = None
        self.progress = self.stderr = ""
        self.elapsed = None
        self.size = 0             # bytes of the progress file when last seen
        self.case_watch = None    # time since the progress file last grew

    def launch(self, seed: int, folder: str) -> None:
        fd, self.progress = tempfile.mkstemp(prefix="fuzz-", suffix=".progress", dir=folder)
        os.close(fd)
        env = dict(os.environ)
        if self.backend == "triton":
            env["TRITON_INTERPRET"] = "1"
        cmd = [sys.executable, "-m", __spec__.name if __spec__ else "bench.fuzz", "--worker", self.family, self.backend,
               str(seed), str(self.start), str(self.count), self.progress]
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
        self.stderr = self.progress[:-len(".progress")] + ".stderr"
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         cwd=str(root))
        self.elapsed = stopwatch()

    def read(self) -> tuple[list[dict], int | None]:
        """The finished cases' records, and the case begun but not finished (None if none)."""
        ends, begun = [], None
        for line in Path(self.progress).read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:   # a line cut by the kill
                continue
            if "begin" in rec:
                begun = rec["begin"]
            else:
                ends.append(rec)
                begun = None
        return ends, begun


def replay_command(f: dict, seed: int) -> str:
    env = "TRITON_INTERPRET=1 " if f["backend"] == "triton" else ""
    return (f"{env}python -m bench.fuzz --replay {f['family']}:{f['backend']}:{f['index']} "
            f"--seed {seed}")


def run_all(args: argparse.Namespace, progress: bool = True) -> dict[str, Any]:
    """Run the planned cases; per (family, backend) counts, findings, seconds."""
    from tqdm import tqdm
    jobs = plan(args)
    queue = deque(_Chunk(f, b, s, min(args.chunk, k - s)) for f, b, k in jobs
                  for s in range(0, k, args.chunk))
    stats = {(f, b): {"family": f, "backend": b, **{o: 0 for o in OUTCOMES}, "seconds": 0.0}
             for f, b, _ in jobs}
    findings: list[dict] = []
    running: list[_Chunk] = []
    bar = tqdm(total=sum(k for *_, k in jobs), desc="fuzz", unit="case", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="sparselth-fuzz-") as folder:
        while queue or running:
            while queue and len(running) < args.jobs:
                c = queue.popleft()
                c.launch(args.seed, folder)
                running.append(c)
            pause(0.05)
            for c in list(running):
                size = os.path.getsize(c.progress)
                if size != c.size:
                    c.size, c.case_watch = size, stopwatch()
                hung = (c.case_watch() > args.timeout if c.case_watch is not None
                        else c.elapsed() > STARTUP_S)
                if c.proc.poll() is None and not hung:
                    continue
                if hung and c.proc.poll() is None:
                    c.proc.kill()
                c.proc.wait()
                err = Path(c.stderr).read_text(errors="replace")
                running.remove(c)
                st = stats[(c.family, c.backend)]
                st["seconds"] += c.elapsed()
                ends, begun = c.read()
                for rec in ends:
                    st[rec["outcome"]] += 1
                    if rec["outcome"] != "ok" and rec["outcome"] != "rejected":
                        findings.append({"family": c.family, "backend": c.backend,
                                         "index": rec["end"], "outcome": rec["outcome"],
                                         "detail": rec["detail"]})
                bar.update(len(ends))
                if c.proc.returncode == 0 and not hung and begun is None:
                    continue
                # killed (crash), timed out (hang), or exited before finishing its cases
                i = begun if begun is not None else c.start + len(ends)
                outcome = "hang" if hung else "crash"
                st[outcome] += 1
                findings.append({"family": c.family, "backend": c.backend, "index": i,
                                 "outcome": outcome, "detail": f"exit {c.proc.returncode}; "
                                 f"stderr: {err.strip()[-300:]}"})
                bar.update(1)
                rest = c.start + c.count - (i + 1)
                if rest > 0:
                    queue.appendleft(_Chunk(c.family, c.backend, i + 1, rest))
    bar.close()
    for f in findings:
        f["replay"] = replay_command(f, args.seed)
    return {"rows": list(stats.values()), "findings": findings}


def markdown(rep: dict[str, Any], args: argparse.Namespace) -> str:
    rows = rep["rows"]
    totals = {o: sum(r[o] for r in rows) for o in OUTCOMES}
    n = sum(totals.values())
    head = ["family", "backend", "cases", "ok", "rejected (expected)", "mismatch", "crash",
            "hang", "seconds"]
    table = markdown_table(head, [[r["family"], r["backend"], sum(r[o] for o in OUTCOMES),
                                   r["ok"], r["rejected"], r["mismatch"], r["crash"], r["hang"],
                                   round(r["seconds"], 1)] for r in rows])
    lines = [f"# Fuzzing: {n:,} cases, {totals['mismatch']} mismatches, {totals['crash']} "
             f"crashes, {totals['hang']} hangs", "",
             f"Seed {args.seed}; every case is replayable alone with "
             "`python -m bench.fuzz --replay FAMILY:BACKEND:INDEX --seed SEED`. Kernels are "
             "checked against dense PyTorch; `bad_*` families feed invalid structures, "
             "corrupted module state dicts and corrupted ticket files, which must be refused "
             "with ValueError/TypeError (RuntimeError from `load_state_dict`). Triton runs "
             "under its CPU interpreter.", "", table, ""]
    if rep["findings"]:
        lines += ["## Findings", ""]
        lines += [f"- {f['outcome']} `{f['replay']}`: {f['detail'][:300]}"
                  for f in rep["findings"][:50]]
        lines.append("")
    lines += [*[f"- {x}" for x in rep.get("notes", [])], "",
              *common.machine_section(rep["machine"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        f, b, seed, start, count, progress = args.worker
        worker(f, b, int(seed), int(start), int(count), progress)
        return {}
    if args.replay:
        try:
            f, b, i = args.replay.split(":")
            index = int(i)
        except ValueError:
            parser.error("--replay must be FAMILY:BACKEND:INDEX")
        outcome, detail = run_one(f, b, args.seed, index)
        print(outcome, detail)
        return {"outcome": outcome, "detail": detail}
    for name in ("cases", "chunk", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not 0 <= args.triton_share <= 1:
        parser.error("--triton-share must be in [0, 1]")
    dest = common.result_path(output_name(args), args, PUBLISHED, parser=parser,
                              protocol=run_protocol)
    info = common.machine()
    watch = stopwatch()
    rep = run_all(args, progress=not args.no_progress)
    rep.update(benchmark="fuzz", seed=args.seed, seconds=watch(), machine=info,
               totals={o: sum(r[o] for r in rep["rows"]) for o in OUTCOMES},
               command="python -m bench.fuzz " + " ".join(common.portable_argv(
                   sys.argv[1:] if argv is None else argv)))
    rep["notes"] = common.finish_machine(info)
    md = markdown(rep, args)
    common.write_result(dest, rep, md)
    print(md)
    return rep


if __name__ == "__main__":
    main()
