"""Crash-safe file writes and checksums, shared by tickets and IMP checkpoints.

Every write goes to a temporary file in the destination's directory, is flushed and
``fsync``-ed, then moved over the destination with ``os.replace`` (atomic on POSIX and
Windows), and finally the directory entry is ``fsync``-ed where the platform allows it.
A reader therefore sees either the old file or the complete new one, never a partial
write. Tensors are stored as safetensors; nothing here pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "load_safetensors",
    "save_safetensors",
    "sha256_bytes",
    "sha256_file",
]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the form that checksums are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def atomic_write_json(path: PathLike, obj: Any) -> str:
    """Write ``obj`` as indented, key-sorted JSON atomically; returns the text written."""
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    atomic_write_text(path, text)
    return text


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _plain_cpu(tensors: Mapping[str, Any]) -> dict[str, Any]:
    # A private contiguous CPU copy of every tensor: safetensors refuses shared storage
    # (tied weights) and non-contiguous views.
    out = {}
    for name, t in tensors.items():
        out[name] = t.detach().to("cpu", copy=True).contiguous()
    return out


def save_safetensors(
    path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """Write ``tensors`` (name -> torch.Tensor) as a safetensors file, atomically.

    Returns ``(sha256_hex, size_in_bytes)`` of the bytes written.
    """
    from safetensors.torch import save

    data = save(_plain_cpu(tensors), metadata=dict(metadata) if metadata else None)
    atomic_write_bytes(path, data)
    return sha256_bytes(data), len(data)


def load_safetensors(
    path: PathLike, sha256: str | None = None, size: int | None = None
) -> dict[str, Any]:
    """Read a safetensors file into CPU tensors, verifying size and sha256 when given.

    Raises ``FileNotFoundError`` if the file is missing and ``ValueError`` naming the file
    when it is truncated, corrupted or not a safetensors file.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tensor file {str(path)!r} does not exist")
    data = path.read_bytes()
    if size is not None and len(data) != size:
        raise ValueError(
            f"tensor file {str(path)!r} has {len(data)} bytes, expected {size} "
            "(truncated or replaced)"
        )
    if sha256 is not None:
        got = sha256_bytes(data)
        if got != sha256:
            raise ValueError(
                f"tensor file {str(path)!r} failed its checksum: sha256 {got} != recorded "
                f"{sha256} (corrupted or modified)"
            )
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"tensor file {str(path)!r} is not a valid safetensors file: {e}") from e
