"""What the commands share: registering a subcommand, plain-text tables, the demos' output
folder and argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_command", "default_out_dir", "fail", "fraction_arg", "int_at_least",
           "text_table"]


def add_command(subparsers: Any, name: str, func: Callable[[argparse.Namespace], int], *,
                help: str, description: str,
                formatter: type = argparse.RawDescriptionHelpFormatter) -> argparse.ArgumentParser:
    """A subcommand parser whose ``func`` (namespace -> exit code) runs the command (by
    default the description keeps its line breaks)."""
    p = subparsers.add_parser(name, help=help, description=description,
                              formatter_class=formatter)
    p.set_defaults(func=func)
    return p


def fail(command: str, error: BaseException | str) -> int:
    """Print ``sparselth <command>: <error>`` to stderr; returns the usage-error exit code 2."""
    print(f"sparselth {command}: {error}", file=sys.stderr)
    return 2


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns under a header and a dashed rule."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def default_out_dir() -> Path:
    """``bench/results`` when run from the repository root, else the current folder."""
    cwd = Path.cwd()
    if (cwd / "bench").is_dir() and (cwd / "sparselth").is_dir():
        return cwd / "bench" / "results"
    return cwd


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


def fraction_arg(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v:g}")
    return v
