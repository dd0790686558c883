"""What the benchmark suites share beyond :mod:`sparselth.utils`.

Measurement is :mod:`sparselth.utils.timing` (warm-up, interleaved contenders, wall *and* CPU
time per sample, median/IQR/min, the headline clock), figures go through
:mod:`sparselth.utils.plot` and result files through :mod:`sparselth.utils.records`. This
module adds what only the suites need:

- **where a result goes** (:func:`result_path`). Each suite declares ``PUBLISHED``: for every
  result committed in ``bench/results/``, the command-line arguments it was made with. A run
  whose resolved protocol (the argument values that change its numbers) equals the published
  protocol of its result name writes to ``bench/results/``; any other run writes under
  ``bench/results/local/`` (ignored by git), unless ``--out`` names a folder. A table that
  merges several result files shows only files of one protocol (:func:`same_protocol`);
- the suites' shared command-line flags and timing settings;
- correctness against a float64 oracle (:func:`max_rel_error`, :func:`tolerance_for`);
- byte and MAC models: GMAC/s counts SpMM's ``nnz * F`` multiply-adds (``2 * nnz * F``
  flops); GB/s counts the *minimum* bytes any kernel must move (each input read once, the
  output written once), to compare with the machine's measured copy bandwidth;
- the machine section and the clock sentence of a report.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparselth.testing import tolerances
from sparselth.utils import distributed
from sparselth.utils.plot import save_png
from sparselth.utils.records import write_json, write_markdown
from sparselth.utils.timing import (
    Measurement,
    busy_note,
    load_average,
    machine_info,
    measure,
)

__all__ = [
    "LOCAL_RESULTS_DIR", "REPO_ROOT", "RESULTS_DIR", "RUNS_DIR", "ResultPath",
    "add_output_args", "add_timing_args", "clock_sentence", "default_data_dir",
    "finish_machine", "gbs", "gmacs", "log_ticks", "machine", "machine_markdown",
    "machine_section", "max_rel_error", "ms_key", "new_parser", "notes_section",
    "portable_argv", "protocol_differences",
    "protocol_line", "published_protocol", "result_path", "safe_name", "same_protocol",
    "spmm_backward_min_bytes", "spmm_macs", "spmm_min_bytes", "time_contenders",
    "timing_config", "tolerance_for", "write_result", "wrong_result",
]


def _checkout_root() -> Path | None:
    """The source checkout holding this folder, or None when installed elsewhere."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "sparselth").is_dir() and (root / "bench").is_dir() else None


REPO_ROOT = _checkout_root()
# outside a checkout there are no published results: everything goes below the current folder
RESULTS_DIR = REPO_ROOT / "bench" / "results" if REPO_ROOT else Path("bench-results")
LOCAL_RESULTS_DIR = RESULTS_DIR / "local"
RUNS_DIR = REPO_ROOT / "runs" if REPO_ROOT else Path("runs")


def default_data_dir() -> Path:
    """The folder of datasets: ``$SPARSELTH_DATA`` if set, else a ``shared/datasets`` folder
    beside the checkout (outside the repository; where CI keeps the data)."""
    env = os.environ.get("SPARSELTH_DATA")
    if env:
        return Path(env)
    return (REPO_ROOT.parent if REPO_ROOT else Path("..")) / "shared" / "datasets"


def portable_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` less the flags naming local folders (``--data``, ``--out``, ``--runs``): the
    command line a report records, the same on every machine."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--data", "--out", "--runs"):
            skip = True
        elif not a.startswith(("--data=", "--out=", "--runs=")):
            out.append(a)
    return out


def safe_name(text: str) -> str:
    """``text`` usable in a file name (anything but letters, digits, ``_.-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# --------------------------------------------------------------------------- where results go


@dataclass(frozen=True)
class ResultPath:
    """``folder/stem.{json,md,png}`` of one result, and how its protocol compares with the
    published result of the same name."""

    folder: Path
    stem: str
    protocol: dict[str, Any] = field(default_factory=dict)
    differences: tuple[str, ...] = ()

    @property
    def published(self) -> bool:
        return not self.differences

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v


def protocol_differences(mine: Mapping[str, Any], reference: Mapping[str, Any] | None,
                         label: str = "published") -> list[str]:
    """``"key: mine (label: theirs)"`` for every key whose value differs (lists and tuples,
    1 and 1.0 compare equal); one entry when there is no reference at all."""
    if reference is None:
        return [f"no {label} result of this name"]
    out = []
    for k in sorted(set(mine) | set(reference), key=str):
        a, b = _plain(mine.get(k)), _plain(reference.get(k))
        if isinstance(a, dict) and isinstance(b, dict):  # nested settings: name the leaf
            out += [f"{k}.{d}" for d in protocol_differences(a, b, label)]
        elif a != b:
            out.append(f"{k}: {a!r} ({label}: {b!r})")
    return out


ResolveProtocol = Callable[[argparse.Namespace], dict]


def published_protocol(name: str, published: Mapping[str, str], parser: argparse.ArgumentParser,
                       protocol: ResolveProtocol) -> dict[str, Any] | None:
    """The resolved protocol of the published result ``name`` (its arguments parsed by
    ``parser`` and resolved by ``protocol``), or None when ``name`` is not published."""
    argv = published.get(name)
    return None if argv is None else protocol(parser.parse_args(shlex.split(argv)))


def result_path(name: str, args: argparse.Namespace, published: Mapping[str, str], *,
                parser: argparse.ArgumentParser, protocol: ResolveProtocol) -> ResultPath:
    """Where the result ``name`` of a run with ``args`` goes: ``args.out`` when given, else
    :data:`RESULTS_DIR` when ``protocol(args)`` equals the published protocol of ``name``,
    else :data:`LOCAL_RESULTS_DIR`. The one rule every suite uses. A run on several processes
    (torchrun) has ``world_size`` in its protocol, so it is never the published result."""
    mine = protocol(args)
    size = distributed.world()[1]
    if size > 1:
        mine = {**mine, "world_size": size}
    diffs = tuple(protocol_differences(mine, published_protocol(name, published, parser,
                                                                protocol)))
    out = getattr(args, "out", None)
    folder = Path(out) if out is not None else (LOCAL_RESULTS_DIR if diffs else RESULTS_DIR)
    return ResultPath(folder, name, mine, diffs)


def protocol_line(report: Mapping[str, Any], stem: str) -> str:
    """The sentence a report ends with: whether it was made with the published protocol of
    ``stem`` (empty for a report that does not record it)."""
    if "published_protocol" not in report:
        return ""
    if report["published_protocol"]:
        return "Protocol: the published protocol of this result."
    return ("Protocol: not the published protocol of this result ("
            + "; ".join(report.get("differences_from_published") or []) + "); do not compare "
            f"it with bench/results/{stem}.*.")


def write_result(dest: ResultPath, report: dict[str, Any], markdown: str | None = None,
                 figure: Any = None) -> list[Path]:
    """Write ``report`` (with its protocol and how it compares with the published one) as
    JSON, ``markdown`` (plus a protocol line) and ``figure`` as PNG; sets ``report["files"]``."""
    report["run_protocol"] = dest.protocol
    report["published_protocol"] = dest.published
    report["differences_from_published"] = list(dest.differences)
    paths = [write_json(dest.file(".json"), report)]
    if markdown is not None:
        paths.append(write_markdown(
            dest.file(".md"), f"{markdown.rstrip()}\n\n{protocol_line(report, dest.stem)}\n"))
    if figure is not None:
        paths.append(save_png(figure, dest.file(".png")))
    report["files"] = [str(p) for p in paths]
    print(f"written: {', '.join(report['files'])}", file=sys.stderr)
    return paths


def same_protocol(main: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]],
                  comparable: Callable[[Mapping[str, Any]], dict]
                  ) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """The reports of ``others`` whose ``comparable`` protocol equals ``main``'s, and a note
    for each one left out, so that one table never mixes runs of different protocols."""
    ref = comparable(main)
    kept: dict[str, Mapping[str, Any]] = {}
    notes = []
    for label, rep in others.items():
        diffs = protocol_differences(comparable(rep), ref, label="this run")
        if diffs:
            notes.append(f"{label} not shown: made with another protocol ({'; '.join(diffs)})")
        else:
            kept[label] = rep
    return kept, notes


# --------------------------------------------------------------------------- flags and timing


def check_fractions(parser: argparse.ArgumentParser, flag: str, values: Sequence[float]) -> None:
    """Exits through ``parser.error`` unless every value of ``flag`` lies in [0, 1)."""
    for s in values:
        if not 0.0 <= s < 1.0:
            parser.error(f"{flag} values must lie in [0, 1), got {s}")


def new_parser(suite: str, description: str) -> argparse.ArgumentParser:
    """The command-line parser of ``python -m bench.<suite>`` (defaults shown in --help)."""
    return argparse.ArgumentParser(prog=f"python -m bench.{suite}", description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_output_args(p: argparse.ArgumentParser, *, plot: bool = True) -> None:
    """``--out``, ``--no-plot`` (when the suite draws one) and ``--no-progress``."""
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: bench/results/ when the arguments are the "
                   "published protocol of this result, else bench/results/local/)")
    if plot:
        p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_timing_args(p: argparse.ArgumentParser, *, budget: tuple[float, float],
                    max_reps: int = 50) -> None:
    """``--budget`` (default ``budget = (full, quick)``), ``--min-reps``, ``--max-reps``."""
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds of timing per contender and case (default {budget[0]:g}, "
                   f"quick {budget[1]:g})")
    p.add_argument("--min-reps", type=int, default=None,
                   help="minimum samples per contender (default 5, quick 3)")
    p.add_argument("--max-reps", type=int, default=max_reps, help="maximum samples per contender")


def timing_config(args: argparse.Namespace, *, budget: tuple[float, float]) -> dict[str, Any]:
    """The timing settings of a run from the :func:`add_timing_args` flags and ``--quick``."""
    quick = bool(getattr(args, "quick", False))
    return dict(
        warmup=1 if quick else 2,
        budget_s=args.budget if args.budget is not None else (budget[1] if quick else budget[0]),
        min_reps=args.min_reps if args.min_reps is not None else (3 if quick else 5),
        max_reps=args.max_reps,
    )


_TIMING_KEYS = ("warmup", "budget_s", "min_reps", "max_reps", "max_call_s")


def time_contenders(fns: Mapping[str, Callable[[], Any]], cfg: Mapping[str, Any],
                    **kwargs: Any) -> Measurement:
    """:func:`sparselth.utils.timing.measure` with the timing settings found in ``cfg``."""
    return measure(fns, **{k: cfg[k] for k in _TIMING_KEYS if k in cfg}, **kwargs)


def ms_key(clock: str) -> str:
    """The summary key of the median on ``clock``: ``"cpu_ms"`` or ``"ms"`` (wall)."""
    return "cpu_ms" if clock == "cpu" else "ms"


def clock_sentence(clock: str, threads: int) -> str:
    """Which clock the headline ratios of a report use, and why."""
    if clock == "cpu":
        return (f"Ratios and rates use the process CPU time ({threads} thread: a descheduled "
                "thread accumulates none, so they hold on a busy machine); the JSON has the "
                "wall and CPU medians, quartiles and minima.")
    return (f"Ratios and rates use wall time ({threads} threads: CPU time would also count "
            "threads waiting at barriers); the JSON has the wall and CPU medians, quartiles "
            "and minima.")


# --------------------------------------------------------------------------- correctness


def tolerance_for(dtype: torch.dtype) -> float:
    """Accepted :func:`max_rel_error` against a float64 oracle: the ``rtol`` of
    :func:`sparselth.testing.tolerances`."""
    return tolerances(dtype)["rtol"]


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


def wrong_result(name: str, got: torch.Tensor, ref: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> str | None:
    """A message when ``got`` is not within :func:`tolerance_for` of ``ref``, else None."""
    err = max_rel_error(got, ref)
    if err <= tolerance_for(dtype):
        return None
    return f"{name}: wrong result (max relative error {err:.2e}), not timed"


# --------------------------------------------------------------------------- byte and MAC models


def spmm_min_bytes(num_rows: int, num_cols: int, nnz: int, F: int, *, index_bytes: int = 4,
                   value_bytes: int = 4, x_bytes: int = 4, out_bytes: int = 4) -> int:
    """Minimum bytes of ``out[m, F] = A[m, n] @ X[n, F]`` for a CSR ``A``: rowptr
    ``(m + 1) * index_bytes`` + col ``nnz * index_bytes`` + val ``nnz * value_bytes`` (0 for a
    binary pattern) + X ``n * F * x_bytes`` read once + out ``m * F * out_bytes`` written once."""
    index = (num_rows + 1 + nnz) * index_bytes
    return index + nnz * value_bytes + num_cols * F * x_bytes + num_rows * F * out_bytes


def spmm_backward_min_bytes(num_rows: int, num_cols: int, nnz: int, F: int, *,
                            index_bytes: int = 4, value_bytes: int = 4, x_bytes: int = 4) -> int:
    """Minimum bytes of SpMM's backward with respect to X and the values:
    ``dX = A^T @ dY`` (transpose index arrays + values + dY read, dX written) plus
    ``dval = SDDMM(A, dY, X)`` (index arrays + dY + X read, dval written)."""
    sizes = dict(index_bytes=index_bytes, value_bytes=value_bytes, x_bytes=x_bytes)
    d_x = spmm_min_bytes(num_cols, num_rows, nnz, F, out_bytes=x_bytes, **sizes)
    d_val = ((num_rows + 1 + nnz) * index_bytes + (num_rows + num_cols) * F * x_bytes
             + nnz * value_bytes)
    return d_x + d_val


def spmm_macs(nnz: int, F: int, backward: bool = False) -> int:
    """Multiply-adds of SpMM: ``nnz * F`` forward; backward (dX and dval) adds ``2 * nnz * F``."""
    return nnz * F * (3 if backward else 1)


def gmacs(macs: float, seconds: float) -> float:
    return macs / seconds / 1e9 if seconds > 0 else math.nan


def gbs(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else math.nan


# --------------------------------------------------------------------------- the machine


def machine(copy_mb: float | None = None, device: Any = None) -> dict[str, Any]:
    """:func:`sparselth.utils.timing.machine_info` with the measured copy bandwidth (the
    default probe, or a ``copy_mb`` MB probe on ``device``)."""
    return machine_info(bandwidth=True, copy_mb=copy_mb or 256.0, device=device)


def finish_machine(info: dict[str, Any]) -> list[str]:
    """Record the load average at the end of a run; the busy-machine note, if any."""
    info["loadavg_end"] = load_average()
    note = busy_note(info)
    return [note] if note else []


_MACHINE_KEYS = ("host", "cpu", "usable_cores", "torch_threads", "mem_total_gb",
                 "copy_bandwidth_gbs", "torch", "numpy", "scipy", "sparselth",
                 "sparselth_backends", "cuda_device", "loadavg_start", "loadavg_end",
                 "git_commit", "date_utc", "platform")


def machine_markdown(info: Mapping[str, Any]) -> str:
    """The machine facts of a report as a Markdown list."""
    return "\n".join(f"- {k}: {info[k]}" for k in _MACHINE_KEYS if info.get(k) is not None)


def machine_section(info: Mapping[str, Any]) -> list[str]:
    """``## Machine`` and its list, as report lines."""
    return ["## Machine", "", machine_markdown(info), ""]


def notes_section(notes: Sequence[str]) -> list[str]:
    """``## Notes`` and one bullet per note (nothing without notes), as report lines."""
    return ["## Notes", "", *[f"- {n}" for n in notes], ""] if notes else []


def log_ticks(ax: Any, ticks: Sequence[float], axis: str = "x", fmt: str = "{:g}") -> None:
    """A log ``axis`` on ``ax`` labelled exactly at ``ticks`` (no minor ticks)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    getattr(ax, f"set_{axis}scale")("log")
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(sorted(set(ticks))))
    a.set_major_formatter(FuncFormatter(lambda v, _: fmt.format(v)))
    a.set_minor_locator(NullLocator())
