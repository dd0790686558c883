"""Atomic writes: temporaries of writers that are gone are removed by the next write (a live
writer's are kept), and written files get 0o666 less the umask, for every writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sparselth._io as sio
from sparselth.prune.run import RunDir
from sparselth.ticket import Ticket
from sparselth.utils import plot
from sparselth.utils.records import write_json, write_markdown

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600.0


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temp(directory: Path, target: str, pid: int, host: str | None = None,
          age_s: float = 0.0, size: int = 16) -> Path:
    p = directory / f".{target}.{pid}.{host or sio._host_tag()}.{os.urandom(4).hex()}.tmp"
    p.write_bytes(b"x" * size)
    if age_s:
        st = p.stat()
        os.utime(p, (st.st_atime - age_s, st.st_mtime - age_s))
    return p


def _age(path: Path, seconds: float) -> Path:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))
    return path


@pytest.mark.skipif(os.name != "posix", reason="writers are asked by pid on POSIX only")
def test_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    target = "report.json"
    dead = _temp(tmp_path, target, _dead_pid())
    live = _temp(tmp_path, target, os.getpid())
    reused = _temp(tmp_path, target, os.getpid(), age_s=30 * 24 * HOUR)  # before we started
    other_file = _temp(tmp_path, "other.json", _dead_pid())
    remote_fresh = _temp(tmp_path, target, 1, host="00000000")
    remote_old = _temp(tmp_path, target, 1, host="00000000", age_s=sio.STALE_TEMP_SECONDS + HOUR)
    legacy_old = tmp_path / f".{target}.ab_c9xyz.tmp"  # a tempfile.mkstemp name
    legacy_old.write_bytes(b"x")
    _age(legacy_old, sio.STALE_TEMP_SECONDS + HOUR)
    legacy_fresh = tmp_path / f".{target}.q1w2e3r4.tmp"
    legacy_fresh.write_bytes(b"x")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_bytes(b"x")

    sio.atomic_write_json(tmp_path / target, {"a": 1})

    for p in (dead, reused, remote_old, legacy_old):
        assert not p.exists(), p.name
    for p in (live, other_file, remote_fresh, legacy_fresh, unrelated):
        assert p.exists(), p.name
    assert (tmp_path / target).read_text() == '{\n  "a": 1\n}\n'
    # the other file's writer is gone too: its next write removes that temporary
    sio.atomic_write_json(tmp_path / "other.json", [])
    assert not other_file.exists() and live.exists()


def test_temp_names_carry_the_writer_and_parse_back():
    name = sio._temp_name("ticket-0123456789abcdef.safetensors")
    target, pid, host = sio._parse_temp(name)
    assert (target, pid, host) == ("ticket-0123456789abcdef.safetensors", os.getpid(),
                                   sio._host_tag())
    assert sio._parse_temp(".a.json.12.0badcafe.0badcafe.tmp")[0] == "a.json"
    assert sio._parse_temp(".a.json.ab_c9xyz.tmp") == ("a.json", None, None)
    assert sio._parse_temp(".a.json") is None and sio._parse_temp("a.tmp") is None


_KILLED_SAVE = textwrap.dedent("""
    import os, sys, time
    import torch
    from sparselth.ticket import Ticket

    real_fsync = os.fsync

    def fsync_then_hang(fd):  # the bytes are on disk, the rename has not happened
        real_fsync(fd)
        print("written", flush=True)
        time.sleep(600)

    os.fsync = fsync_then_hang
    w = torch.arange(2_000_000, dtype=torch.float32).reshape(1000, 2000)
    Ticket({"w": w != 0}, {"w": w}).save(sys.argv[1])
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_ticket_save_removes_what_a_killed_save_left(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(tmp_path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    (left,) = tmp_path.glob(".ticket-*.safetensors.*.tmp")
    assert left.stat().st_size > 8_000_000 and f".{child.pid}." in left.name
    assert not (tmp_path / "ticket.json").exists()

    small = Ticket({"w": torch.ones(2, 3, dtype=torch.bool)}, {"w": torch.ones(2, 3)})
    small.save(tmp_path)  # a different ticket: another content-addressed tensor file name
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert Ticket.load(tmp_path).masks["w"].all()


def _writers(root: Path) -> dict[str, list[Path]]:
    """Every writer that goes through the atomic path -> the files it wrote."""
    out: dict[str, list[Path]] = {}
    t = Ticket({"w": torch.ones(2, 3, dtype=torch.bool)}, {"w": torch.ones(2, 3)})
    json_path = t.save(root / "ticket")
    out["ticket"] = [json_path, *(root / "ticket").glob("ticket-*.safetensors")]
    out["atomic_write_json"] = [root / "a.json"]
    sio.atomic_write_json(out["atomic_write_json"][0], {"x": 1})
    out["write_json"] = [write_json(root / "r.json", {"x": float("nan")})]
    out["write_markdown"] = [write_markdown(root / "r.md", "| a |")]
    fig, ax = plot.figure()
    ax.plot([0, 1], [0, 1])
    out["save_png"] = [plot.save_png(fig, root / "f.png")]
    run = RunDir(root / "run", "imp")
    run.save("init.safetensors", {"w": torch.ones(3)})
    run.write_json("records.json", [])
    out["run folder"] = [root / "run" / "init.safetensors", root / "run" / "records.json"]
    return out


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        written = _writers(tmp_path)
    finally:
        os.umask(before)
    for writer, paths in written.items():
        assert paths, writer
        for p in paths:
            assert p.stat().st_mode & 0o777 == mode, (writer, p.name, oct(p.stat().st_mode))
