"""Publishing results: JSON-safe numbers, atomic JSON and Markdown writers, one number format.

Every result file and every printed table of sparselth formats numbers with
:func:`format_number` / :func:`format_si` and writes through :func:`write_json` /
:func:`write_markdown` (atomic; NaN and inf become ``null`` so the JSON is standard)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text

__all__ = ["finite", "format_number", "format_si", "markdown_table", "write_json",
           "write_markdown"]


def finite(o: Any) -> Any:
    """``o`` with every non-finite float (NaN, inf) replaced by None, recursively."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    import torch

    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return finite(dataclasses.asdict(o))
    if hasattr(o, "item") and callable(o.item):  # numpy / torch scalars
        return finite(o.item())
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented, standard JSON (NaN/inf become null)."""
    path = Path(path)
    text = json.dumps(finite(obj), indent=1, default=_json_default, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    return path


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write Markdown ``text`` (with a final newline)."""
    path = Path(path)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return path


def format_number(v: Any, digits: int = 3) -> str:
    """``v`` with about ``digits`` significant digits; ``-`` for None and non-finite."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v == 0:
            return "0"
        mag = math.floor(math.log10(abs(v)))
        return f"{v:.{max(0, digits - 1 - mag)}f}"
    return str(v)


def format_si(v: Any) -> str:
    """``v`` with a k/M/G suffix (MACs, bytes); ``-`` for None."""
    if v is None:
        return "-"
    v = float(v)
    if not math.isfinite(v):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats via :func:`format_number`, None as empty."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return format_number(v)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, headers)) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
