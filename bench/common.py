"""Shared benchmark protocol: timing, hardware limits, byte/MAC models, result writers.

Protocol (STYLE.md item 15), used by every suite:

1. every contender's result is checked against a float64 oracle *before* it is timed; a wrong
   contender is reported as wrong and not timed;
2. warm-up calls (first-call costs: allocation, kernel selection, caches);
3. interleaved repetitions ``A B C A B C ...`` so drifts (thermal, other processes, turbo)
   hit every contender alike; each sample groups enough calls to last ``target_sample_s``;
4. report the median and the inter-quartile range (IQR) of the per-call times;
5. ``torch.set_num_threads`` is left at its default (all cores).

Rates: GMAC/s (SpMM: ``nnz * F`` multiply-adds, i.e. ``2 * nnz * F`` flops) and GB/s counted on
the *minimum* bytes any kernel must move (each input read once, the output written once),
compared with the machine's measured copy bandwidth.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Per-call times (seconds) of one contender, with summary statistics."""

    name: str
    times: List[float] = field(default_factory=list)
    calls_per_sample: int = 1

    @property
    def reps(self) -> int:
        return len(self.times)

    def quantile(self, q: float) -> float:
        if not self.times:
            return math.nan
        s = sorted(self.times)
        pos = q * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan

    @property
    def q1(self) -> float:
        return self.quantile(0.25)

    @property
    def q3(self) -> float:
        return self.quantile(0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def summary(self) -> Dict[str, float]:
        ms = 1e3
        return {
            "ms": self.median * ms,
            "q1_ms": self.q1 * ms,
            "q3_ms": self.q3 * ms,
            "iqr_ms": self.iqr * ms,
            "reps": self.reps,
            "calls_per_sample": self.calls_per_sample,
        }


def _sync_for(device: Optional[torch.device]) -> Callable[[], None]:
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_interleaved(
    fns: Dict[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    budget_s: float = 2.0,
    min_reps: int = 5,
    max_reps: int = 50,
    target_sample_s: float = 2e-3,
    max_call_s: float = 30.0,
    max_extra_warmup: int = 8,
    device: Optional[torch.device] = None,
) -> Dict[str, Timing]:
    """Time each callable with the interleaved protocol; returns ``{name: Timing}``.

    At least ``warmup`` untimed calls each, more (up to ``max_extra_warmup``) until a call is
    no slower than 1.25x the fastest so far (first calls pay lazy initialisation and, in VMs,
    first-touch page faults); one only when a call is slower than 1 s. Then rounds
    ``A B C A B C ...``. Each contender gets ``clamp(budget_s / t_call, min_reps, max_reps)``
    samples (at most 3 when a call takes over 1 s; a single one when it takes over
    ``max_call_s``) and drops out
    of later rounds once it has them, so slow contenders do not starve the fast ones of samples.
    A sample runs ``ceil(target_sample_s / t_call)`` calls back to back to beat timer overhead
    on microsecond kernels. The garbage collector is paused while timing.
    """
    sync = _sync_for(device)
    est: Dict[str, float] = {}
    for name, fn in fns.items():
        ts: List[float] = []
        t_warm = time.perf_counter()
        for _ in range(max(1, warmup) + max_extra_warmup):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
            if ts[-1] > 1.0 or time.perf_counter() - t_warm > 2 * budget_s + 0.01:
                break  # slow call: one warm-up is enough
            if len(ts) >= max(1, warmup) and (len(ts) == 1 or ts[-1] <= 1.25 * min(ts[:-1])):
                break  # settled: first-call costs (lazy init, first-touch page faults) are over
        est[name] = max(ts[-1], 1e-7)

    number = {n: max(1, min(10_000, math.ceil(target_sample_s / t))) for n, t in est.items()}
    reps = {}
    for n, t in est.items():
        if t > max_call_s:
            reps[n] = 1
        else:
            floor = min(min_reps, 3) if t > 1.0 else min_reps  # slow calls: 3 samples suffice
            reps[n] = int(min(max_reps, max(floor, budget_s / (t * number[n]))))
    out = {n: Timing(n, [], number[n]) for n in fns}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(max(reps.values(), default=0)):
            for name, fn in fns.items():
                if r >= reps[name]:
                    continue
                k = number[name]
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                sync()
                out[name].times.append((time.perf_counter() - t0) / k)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def max_rel_error(got: torch.Tensor, ref: torch.Tensor, chunk: int = 1 << 24) -> float:
    """``max |got - ref| / max(max |ref|, 1e-30)``, computed in float64 on CPU in chunks of
    ``chunk`` elements (bounded memory on large outputs); inf on a shape mismatch or NaN."""
    if got.shape != ref.shape:
        return math.inf
    if ref.numel() == 0:
        return 0.0
    g, r = got.detach().reshape(-1), ref.detach().reshape(-1)
    err = scale = 0.0
    for s in range(0, r.numel(), chunk):
        gc_ = g[s : s + chunk].to("cpu", torch.float64)
        rc = r[s : s + chunk].to("cpu", torch.float64)
        e = (gc_ - rc).abs().max().item()
        if math.isnan(e):
            return math.inf
        err = max(err, e)
        scale = max(scale, rc.abs().max().item())
    return err / max(scale, 1e-30)


def tolerance_for(dtype: torch.dtype) -> float:
    """Accepted :func:`max_rel_error` against a float64 oracle."""
    return {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}[
        dtype
    ]


# --------------------------------------------------------------------------- hardware limits


def copy_bandwidth_gbs(
    size_mb: float = 256.0, reps: int = 9, device: Optional[torch.device] = None
) -> float:
    """Measured memory bandwidth in GB/s: median over ``reps`` of ``dst.copy_(src)`` on a
    ``size_mb`` MB float32 tensor (far larger than caches), counting the bytes read plus the
    bytes written (``2 * size``), with the default number of threads."""
    device = torch.device(device or "cpu")
    n = max(1, int(size_mb * 1e6 / 4))
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_interleaved(
        {"copy": functools.partial(dst.copy_, src)},
        warmup=2,
        budget_s=0.0,
        min_reps=reps,
        max_reps=reps,
        target_sample_s=0.0,
        device=device,
    )["copy"]
    del src, dst
    return 2 * n * 4 / timing.median / 1e9


# --------------------------------------------------------------------------- byte and MAC models


def spmm_min_bytes(
    num_rows: int,
    num_cols: int,
    nnz: int,
    F: int,
    *,
    index_bytes: int = 4,
    value_bytes: int = 4,
    x_bytes: int = 4,
    out_bytes: int = 4,
) -> int:
    """Minimum bytes of ``out[m, F] = A[m, n] @ X[n, F]`` for a CSR ``A``: rowptr
    ``(m + 1) * index_bytes`` + col ``nnz * index_bytes`` + val ``nnz * value_bytes`` (0 for a
    binary pattern) + X ``n * F * x_bytes`` read once + out ``m * F * out_bytes`` written once."""
    return (
        (num_rows + 1) * index_bytes
        + nnz * (index_bytes + value_bytes)
        + num_cols * F * x_bytes
        + num_rows * F * out_bytes
    )


def spmm_backward_min_bytes(
    num_rows: int,
    num_cols: int,
    nnz: int,
    F: int,
    *,
    index_bytes: int = 4,
    value_bytes: int = 4,
    x_bytes: int = 4,
) -> int:
    """Minimum bytes of SpMM's backward with respect to X and the values:
    ``dX = A^T @ dY`` (transpose index arrays + values + dY read, dX written) plus
    ``dval = SDDMM(A, dY, X)`` (index arrays + dY + X read, dval written)."""
    d_x = spmm_min_bytes(
        num_cols,
        num_rows,
        nnz,
        F,
        index_bytes=index_bytes,
        value_bytes=value_bytes,
        x_bytes=x_bytes,
        out_bytes=x_bytes,
    )
    d_val = (
        (num_rows + 1) * index_bytes
        + nnz * index_bytes
        + (num_rows + num_cols) * F * x_bytes
        + nnz * value_bytes
    )
    return d_x + d_val


def spmm_macs(nnz: int, F: int, backward: bool = False) -> int:
    """Multiply-adds of SpMM: ``nnz * F`` forward; backward (dX and dval) adds ``2 * nnz * F``."""
    return nnz * F * (3 if backward else 1)


def gmacs(macs: float, seconds: float) -> float:
    return macs / seconds / 1e9 if seconds > 0 else math.nan


def gbs(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else math.nan


# --------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1e6, 1)
    except (OSError, ValueError):
        pass
    return None


def git_commit(repo: Path = REPO_ROOT) -> str:
    """``<sha>`` (``+dirty`` when the work tree has changes), or ``"unknown"``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return "unknown (no commit)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> Optional[float]:
    """1-minute load average (other processes compete for the cores when it is high)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def busy_note(info: Dict[str, Any]) -> Optional[str]:
    """A warning when the machine was not idle during the run, else None."""
    cores = info.get("usable_cores") or 1
    loads = [v for v in (info.get("loadavg_start"), info.get("loadavg_end")) if v is not None]
    if loads and max(loads) > 0.5 * cores + 0.5:
        return (
            f"machine busy: load average up to {max(loads):.1f} on {cores} cores during this run; "
            "multi-threaded contenders wait for descheduled threads, so their times are inflated "
            "(by up to a scheduler time slice, ~10-25 ms, per parallel region). Rerun on an idle "
            "machine before drawing conclusions."
        )
    return None


def machine_info() -> Dict[str, Any]:
    """Where and with what a result was measured."""
    import numpy

    info: Dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
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
    try:
        import sparselth

        info["sparselth"] = getattr(sparselth, "__version__", "?")
        info["sparselth_backends"] = list(sparselth.backends())
    except Exception as e:  # report, do not fail the benchmark over it
        info["sparselth"] = f"import failed: {e}"
    return info


# --------------------------------------------------------------------------- writers


def atomic_write_text(path: os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _json_default(o):
    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o):
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_json(path: os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, standard JSON (NaN becomes null)."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=1, default=_json_default) + "\n")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats are shown with 3 significant digits."""

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return fmt_num(v)
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(str, headers)) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_num(v: Optional[float], digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:.{decimals}f}"


def write_markdown(path: os.PathLike, text: str) -> Path:
    return atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def machine_markdown(info: Dict[str, Any]) -> str:
    keys = [
        "host",
        "cpu",
        "usable_cores",
        "torch_threads",
        "mem_total_gb",
        "torch",
        "numpy",
        "scipy",
        "sparselth",
        "sparselth_backends",
        "cuda_device",
        "loadavg_start",
        "loadavg_end",
        "git_commit",
        "date_utc",
        "platform",
    ]
    return "\n".join(f"- {k}: {info[k]}" for k in keys if info.get(k) is not None)
