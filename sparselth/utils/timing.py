"""The one measurement protocol of sparselth, and the facts of the machine it ran on.

Protocol (every benchmark, ``sparselth.compile``'s route choice, the demos and the training
loops' latency columns use it, so their numbers compare):

1. warm-up: at least ``warmup`` untimed calls per contender, more (up to
   ``max_extra_warmup``) until a call is no slower than 1.25x the fastest so far (first calls
   pay lazy initialisation and first-touch page faults);
2. interleaved rounds ``A B C A B C ...`` so drifts (other processes, clocks, turbo) hit every
   contender alike; each sample times ``k`` calls back to back, ``k`` chosen so a sample
   lasts ``target_sample_s`` (timer overhead is negligible even for microsecond kernels);
   with ``rewarm=True`` each sample first makes one untimed call, so a model is timed with
   its own data in cache, as when it serves requests back to back;
3. per sample, the wall time *and* the CPU time of the whole process are recorded; the
   garbage collector is paused;
4. each contender reports the median, the quartiles (IQR) and the minimum of both clocks;
   a :class:`Measurement` adds the load average before and after and the thread count.

Which clock a headline ratio uses (:func:`headline_clock`): with one thread, CPU time. A
descheduled single thread accumulates no CPU time, so on a shared machine (load average
above the core count) the CPU-time ratio of two single-threaded contenders is stable where
the wall-time ratio is not. With several threads the wall clock is the only honest one
(CPU time also counts threads spinning at barriers).
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import math
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Measurement",
    "Timing",
    "busy_note",
    "copy_bandwidth_gbs",
    "cpu_model",
    "git_commit",
    "headline_clock",
    "load_average",
    "machine_info",
    "measure",
    "now",
    "pause",
    "stopwatch",
    "sync_for",
    "time_interleaved",
]

CLOCKS = ("wall", "cpu")


def now() -> float:
    """A monotonic wall clock in seconds (for elapsed times of long work: epochs, rounds)."""
    return time.perf_counter()


def stopwatch() -> Callable[[], float]:
    """Start a wall clock; the returned function gives the seconds elapsed since."""
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


def pause(seconds: float) -> None:
    """Sleep ``seconds`` (e.g. to let a background load settle before measuring)."""
    if seconds > 0:
        time.sleep(seconds)


def sync_for(device: Any) -> Callable[[], None]:
    """A function that waits for ``device`` to finish queued work (a no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Timing:
    """Per-call times in seconds of one contender: ``wall`` and process ``cpu`` per sample."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    calls_per_sample: int = 1

    @property
    def times(self) -> list[float]:
        """The wall-clock samples (the historical name)."""
        return self.wall

    @property
    def reps(self) -> int:
        return len(self.wall)

    def samples(self, clock: str = "wall") -> list[float]:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        return self.wall if clock == "wall" else self.cpu

    def quantile(self, q: float, clock: str = "wall") -> float:
        return _quantile(self.samples(clock), q)

    def median_of(self, clock: str = "wall") -> float:
        s = self.samples(clock)
        return statistics.median(s) if s else math.nan

    @property
    def median(self) -> float:
        return self.median_of("wall")

    @property
    def q1(self) -> float:
        return self.quantile(0.25)

    @property
    def q3(self) -> float:
        return self.quantile(0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        return min(self.wall) if self.wall else math.nan

    @property
    def cpu_median(self) -> float:
        return self.median_of("cpu")

    def summary(self) -> dict[str, float]:
        """Milliseconds per call: median, quartiles, IQR and min of both clocks, plus counts."""
        ms = 1e3
        out: dict[str, float] = {}
        for clock, prefix in (("wall", ""), ("cpu", "cpu_")):
            s = self.samples(clock)
            out[f"{prefix}ms"] = (statistics.median(s) if s else math.nan) * ms
            out[f"{prefix}q1_ms"] = _quantile(s, 0.25) * ms
            out[f"{prefix}q3_ms"] = _quantile(s, 0.75) * ms
            out[f"{prefix}iqr_ms"] = out[f"{prefix}q3_ms"] - out[f"{prefix}q1_ms"]
            out[f"{prefix}min_ms"] = (min(s) if s else math.nan) * ms
        out["reps"] = self.reps
        out["calls_per_sample"] = self.calls_per_sample
        return out


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    budget_s: float = 2.0,
    min_reps: int = 5,
    max_reps: int = 50,
    target_sample_s: float = 2e-3,
    max_call_s: float = 30.0,
    max_extra_warmup: int = 8,
    rewarm: bool = False,
    collect: bool = False,
    device: Any = None,
) -> dict[str, Timing]:
    """Time each callable with the protocol of this module; returns ``{name: Timing}``.

    Each contender gets ``clamp(budget_s / t_sample, min_reps, max_reps)`` samples (at most 3
    when a call takes over 1 s, one when it takes over ``max_call_s``) and drops out of later
    rounds once it has them, so slow contenders do not starve fast ones of samples.
    The garbage collector is paused while timing; ``collect=True`` also runs a full collection
    first (frees memory before large benchmarks; it costs ~0.1-0.3 s in a process holding
    models, more than timing a small layer, so it is off by default).
    """
    if not fns:
        raise ValueError("time_interleaved: fns is empty")
    sync = sync_for(device)
    est: dict[str, float] = {}
    for name, fn in fns.items():
        ts: list[float] = []
        t_warm = time.perf_counter()
        for _ in range(max(1, warmup) + max_extra_warmup):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
            if ts[-1] > 1.0 or time.perf_counter() - t_warm > 2 * budget_s + 0.01:
                break  # slow call: one warm-up is enough
            if len(ts) >= max(1, warmup) and (len(ts) == 1 or ts[-1] <= 1.25 * min(ts[:-1])):
                break  # settled: first-call costs are over
        est[name] = max(min(ts[-1], min(ts)) if len(ts) > 1 else ts[-1], 1e-7)

    number = {n: max(1, min(10_000, math.ceil(target_sample_s / t))) for n, t in est.items()}
    reps: dict[str, int] = {}
    for n, t in est.items():
        if t > max_call_s:
            reps[n] = 1
        else:
            floor = min(min_reps, 3) if t > 1.0 else min_reps
            per_sample = t * (number[n] + (1 if rewarm else 0))
            reps[n] = int(min(max_reps, max(floor, budget_s / per_sample)))
    out = {n: Timing(n, [], [], number[n]) for n in fns}
    gc_was_enabled = gc.isenabled()
    if collect:
        gc.collect()
    gc.disable()
    try:
        for r in range(max(reps.values())):
            for name, fn in fns.items():
                if r >= reps[name]:
                    continue
                k = number[name]
                if rewarm:
                    fn()
                    sync()
                c0 = time.process_time()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                sync()
                t1 = time.perf_counter()
                c1 = time.process_time()
                out[name].wall.append((t1 - t0) / k)
                out[name].cpu.append((c1 - c0) / k)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def headline_clock(threads: int | None = None) -> str:
    """``"cpu"`` for single-threaded timings (stable on a shared machine), else ``"wall"``."""
    threads = torch.get_num_threads() if threads is None else threads
    return "cpu" if threads == 1 else "wall"


@dataclass
class Measurement:
    """One interleaved measurement: the timings plus the conditions they were taken under."""

    timings: dict[str, Timing]
    threads: int
    clock: str
    loadavg_before: float | None
    loadavg_after: float | None

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def ms(self, name: str, clock: str | None = None) -> float:
        """Median ms per call of ``name`` on ``clock`` (default: the headline clock)."""
        return self.timings[name].median_of(clock or self.clock) * 1e3

    def speedup(self, baseline: str, other: str, clock: str | None = None) -> float:
        """``time(baseline) / time(other)`` of the medians on ``clock`` (default: headline)."""
        clock = clock or self.clock
        t = self.timings[other].median_of(clock)
        return self.timings[baseline].median_of(clock) / t if t > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "threads": self.threads,
            "loadavg_before": self.loadavg_before,
            "loadavg_after": self.loadavg_after,
            "timings": {n: t.summary() for n, t in self.timings.items()},
        }


def measure(fns: Mapping[str, Callable[[], Any]], *, clock: str | None = None,
            **kwargs: Any) -> Measurement:
    """:func:`time_interleaved` plus load average before/after, thread count and the clock
    that headline ratios use (``clock=None``: :func:`headline_clock`)."""
    if clock is not None and clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS} or None, got {clock!r}")
    threads = torch.get_num_threads()
    before = load_average()
    timings = time_interleaved(fns, **kwargs)
    return Measurement(timings, threads, clock or headline_clock(threads), before, load_average())


# --------------------------------------------------------------------------- machine facts


def copy_bandwidth_gbs(size_mb: float = 256.0, reps: int = 9, device: Any = None) -> float:
    """Measured memory bandwidth in GB/s: median over ``reps`` of ``dst.copy_(src)`` on a
    ``size_mb`` MB float32 tensor (far larger than caches), counting bytes read + written."""
    device = torch.device(device or "cpu")
    n = max(1, int(size_mb * 1e6 / 4))
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_interleaved(
        {"copy": functools.partial(dst.copy_, src)}, warmup=2, budget_s=0.0, min_reps=reps,
        max_reps=reps, target_sample_s=0.0, device=device,
    )["copy"]
    del src, dst
    return 2 * n * 4 / timing.median / 1e9


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1e6, 1)
    except (OSError, ValueError):
        pass
    return None


def git_commit(repo: Path | None = None) -> str:
    """``<sha>`` (``+dirty`` when the work tree has changes) of ``repo``, or ``"unknown"``."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown (no commit)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> float | None:
    """1-minute load average (other processes compete for the cores when it is high)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_note(info: Mapping[str, Any]) -> str | None:
    """A warning when the machine was not idle during a run (``info`` from
    :func:`machine_info`, with ``loadavg_end`` filled in at the end), else None."""
    cores = info.get("usable_cores") or 1
    loads = [v for v in (info.get("loadavg_start"), info.get("loadavg_end")) if v is not None]
    if loads and max(loads) > 0.5 * cores + 0.5:
        return (f"machine busy: load average up to {max(loads):.1f} on {cores} cores during this "
                "run; multi-threaded contenders wait for descheduled threads, so their wall "
                "times are inflated. Single-threaded ratios use CPU time, which is not.")
    return None


def machine_info(*, bandwidth: bool = False, copy_mb: float = 256.0,
                 device: Any = None) -> dict[str, Any]:
    """Where and with what a result was measured (``bandwidth=True`` also measures the copy
    bandwidth on ``device`` with a ``copy_mb`` MB buffer, ~0.5 s)."""
    import numpy

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "mem_total_gb": _mem_total_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "git_commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_start": load_average(),
    }
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    import sys

    pkg = sys.modules.get("sparselth")
    if pkg is not None:
        info["sparselth"] = getattr(pkg, "__version__", "?")
        backends = getattr(pkg, "backends", None)
        if backends is not None:
            info["sparselth_backends"] = list(backends())
    if bandwidth:
        info["copy_bandwidth_gbs"] = round(copy_bandwidth_gbs(copy_mb, device=device), 2)
    return info
