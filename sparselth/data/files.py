"""Where datasets live on disk: a folder of datasets (the ``root`` argument or the
``SPARSELTH_DATA`` environment variable), holding one subfolder per dataset
(``planetoid/``, ``lastfm/``, ``movielens-100k/``) or the dataset's files directly.
Also the line reader and error format the text-file loaders share."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Iterator
from typing import Any

__all__ = ["ENV_VAR", "dataset_dir"]

ENV_VAR = "SPARSELTH_DATA"


def dataset_dir(fn: str, sub: str, marker: str, root: Any = None) -> Path:
    """Folder holding the file ``marker``: ``root/sub`` or ``root`` itself (``root`` defaults
    to ``$SPARSELTH_DATA``). Raises FileNotFoundError naming the paths tried; ``fn`` (the
    loader's name) starts every message."""
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise FileNotFoundError(
                f"{fn}: no data folder given; pass root=... or set {ENV_VAR} to a folder holding "
                f"{sub}/{marker}"
            )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{fn}: data folder {str(root)!r} does not exist")
    candidates = [root / sub, root]
    for cand in candidates:
        if (cand / marker).is_file():
            return cand
    tried = ", ".join(repr(str(c / marker)) for c in candidates)
    raise FileNotFoundError(f"{fn}: {marker} not found; tried {tried}")


# --------------------------------------------------------------------------- text files


def read_lines(fn: str, path: Path) -> Iterator[tuple[int, str]]:
    """``(line number from 1, text without the line end)`` for non-blank lines; CRLF and LF."""
    if not path.is_file():
        raise FileNotFoundError(f"{fn}: file {str(path)!r} does not exist")
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def line_error(fn: str, path: Path, lineno: int, msg: str) -> ValueError:
    """The error for a malformed line: ``"<fn>: '<path>' line <n>: <msg>"``."""
    return ValueError(f"{fn}: {str(path)!r} line {lineno}: {msg}")


def parse_ints(fn: str, path: Path, lineno: int, fields: list[str]) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise line_error(fn, path, lineno, f"expected integers, got {fields!r}") from None
