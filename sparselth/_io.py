"""Crash-safe file writes and checksums, shared by tickets and IMP checkpoints.

Every write goes to a temporary file in the destination's directory, is flushed and
``fsync``-ed, then moved over the destination with ``os.replace`` (atomic on POSIX and
Windows), and finally the directory entry is ``fsync``-ed where the platform allows it.
A reader therefore sees either the old file or the complete new one, never a partial
write. Tensors are stored as safetensors; nothing here pickles.

Files get the permissions every other tool gives them: ``0o666`` less the process umask
(the temporary is created with that mode, so the kernel applies the umask and any default
ACL; ``tempfile.mkstemp`` would make every file ``0o600``).

A writer killed between creating its temporary and the rename (SIGKILL, power loss) leaves
the temporary behind. Temporaries are named ``.<name>.<pid>.<host>.<random>.tmp``
(``host``: 8 hex digits of the machine's name and pid namespace), so the next write of the
same file removes those of writers that are gone: the pid no longer exists here, or it
belongs to a process that started after the temporary was last written (a reused pid).
Where the writer cannot be asked (another machine, a system without ``/proc``, a name from
before pids were recorded), a temporary not modified for :data:`STALE_TEMP_SECONDS` counts
as abandoned.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "load_safetensors",
    "remove_stale_temporaries",
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


#: a temporary whose writer cannot be asked (another machine, no pid in the name) or that was
#: not modified for this long is taken as abandoned (a save writes its bytes in one go)
STALE_TEMP_SECONDS = 24 * 3600
_CLOCK_SLACK_S = 2.0  # file time stamps and process start times are this coarse
_TMP_SUFFIX = ".tmp"
_HEX8 = re.compile(r"[0-9a-f]{8}")
_MKSTEMP_NAME = re.compile(r"[a-z0-9_]{8}")  # temporaries of older versions (tempfile.mkstemp)


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """8 hex digits naming the machine and its pid namespace: the scope in which a pid in a
    temporary's name can be checked (two containers may share a host name and a folder)."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{pid_ns}".encode("utf-8", "replace")
                          ).hexdigest()[:8]


def _temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{_host_tag()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"


def _parse_temp(entry: str) -> tuple[str, int | None, str | None] | None:
    """``(target, pid, host)`` of a temporary's file name (pid and host None for names of
    older versions), or None when ``entry`` is not a temporary."""
    if not (entry.startswith(".") and entry.endswith(_TMP_SUFFIX)):
        return None
    body = entry[1:-len(_TMP_SUFFIX)]
    parts = body.rsplit(".", 3)
    if (len(parts) == 4 and parts[0] and parts[1].isdigit() and parts[1].isascii()
            and _HEX8.fullmatch(parts[2]) and _HEX8.fullmatch(parts[3])):
        return parts[0], int(parts[1]), parts[2]
    target, _, rand = body.rpartition(".")
    if target and _MKSTEMP_NAME.fullmatch(rand):
        return target, None, None
    return None


def _writer_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (POSIX; signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def _process_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started (Linux ``/proc``), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start_ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _writer_gone(pid: int | None, host: str | None, age: float) -> bool:
    """Whether the writer of a temporary last modified ``age`` seconds ago is gone."""
    if pid is None or host != _host_tag() or os.name != "posix":
        return age > STALE_TEMP_SECONDS  # nobody to ask
    if not _writer_alive(pid):
        return True
    started = _process_age(pid)
    if started is None:
        return age > STALE_TEMP_SECONDS
    # a process that started after the temporary was last written is a later holder of the
    # pid (e.g. a restarted container); both ages are durations, so clock offsets cancel
    return started + _CLOCK_SLACK_S < age


def remove_stale_temporaries(directory: PathLike, target: str | Callable[[str], bool], *,
                             now: float | None = None, keep: PathLike | None = None
                             ) -> list[Path]:
    """Remove the temporaries that writers which are gone left for ``target`` in
    ``directory`` (module docstring); returns the paths removed.

    ``target``: the file name the temporaries were for, or a predicate on that name (e.g.
    every content-addressed tensor file of a ticket). ``now``: the current time on the file
    system's clock (the modification time of a file just created; default: the newest
    modification time seen, which can only make temporaries look younger). ``keep``: a
    temporary never to remove (the caller's own).
    """
    directory = Path(directory)
    match = (lambda name: name == target) if isinstance(target, str) else target
    keep_name = Path(keep).name if keep is not None else None
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        parsed = _parse_temp(entry.name)
        if parsed is None or entry.name == keep_name or not match(parsed[0]):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        found.append((Path(entry.path), parsed[1], parsed[2], st.st_mtime))
    if now is None:
        now = max((m for *_, m in found), default=0.0)
    removed = []
    for path, pid, host, mtime in found:
        if _writer_gone(pid, host, now - mtime):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _create_temp(directory: Path, name: str) -> tuple[int, str]:
    """Create a new temporary for ``name`` with mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(
        os, "O_CLOEXEC", 0)
    while True:
        tmp = str(directory / _temp_name(name))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def atomic_write_bytes(path: PathLike, data: bytes,
                       stale: Callable[[str], bool] | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + os.replace).

    The file gets mode 0o666 less the umask. Temporaries left for the same file by writers
    that are gone are removed first (:func:`remove_stale_temporaries`); ``stale`` widens that
    to every file name it accepts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            now = os.fstat(f.fileno()).st_mtime
            remove_stale_temporaries(
                path.parent, (lambda n: n == path.name or stale(n)) if stale else path.name,
                now=now, keep=tmp)
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
