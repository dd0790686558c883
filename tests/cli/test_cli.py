"""The `sparselth` command: python -m sparselth {--help, demo, demo-spmm, bench}
(the graph-lottery-ticket demo itself: tests/cli/test_demos.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparselth import cli

REPO = Path(__file__).resolve().parents[2]


def _run(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "sparselth", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert "demo" in r.stdout and "demo-spmm" in r.stdout and "bench" in r.stdout
    assert "usage: sparselth" in r.stdout


def test_demo_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--nodes" in out and "--out" in out and "--rounds" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["demo-spmm", "--help"])
    assert e.value.code == 0
    assert "--keep" in capsys.readouterr().out
    assert cli.main([]) == 0
    assert "<command>" in capsys.readouterr().out


def test_demo_spmm_tiny(tmp_path, capsys):
    code = cli.main(
        [
            "demo-spmm",
            "--nodes",
            "2000",
            "--degree",
            "6",
            "--F",
            "8",
            "--keep",
            "1",
            "0.5",
            "0.1",
            "--reps",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert (tmp_path / "demo-spmm.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "torch.sparse ms" in out and "sparselth ms" in out and "10%" in out


def test_bench_passthrough(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_bench_unavailable(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_find_bench", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    assert "bench/" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(SystemExit):
        cli.main(["demo-spmm", "--keep", "2"])
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])
