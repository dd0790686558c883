"""The `sparselth` command: python -m sparselth {--help, demo-spmm, bench}
(the graph-lottery-ticket demo: test_demos.py; find/compile: test_tickets.py; plot:
test_plot.py)."""

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sparselth import cli
from sparselth.cli import parser as cli_parser

REPO = Path(__file__).resolve().parents[2]


def _run(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sparselth", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_help_through_python_m():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "demo-spmm", "find", "compile", "plot", "bench"):
        assert cmd in r.stdout
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


@pytest.mark.slow
def test_demo_spmm_tiny(tmp_path, capsys):
    code = cli.main(["demo-spmm", "--nodes", "2000", "--degree", "6", "--F", "8",
                     "--keep", "1", "0.5", "0.1", "--reps", "1", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "demo-spmm.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "torch.sparse ms" in out and "sparselth ms" in out and "10%" in out
    assert "time per call" in out  # names the clock of the medians


def test_bad_arguments():
    with pytest.raises(SystemExit):
        cli.main(["demo-spmm", "--keep", "2"])
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])


# --------------------------------------------------------------------------- bench

SUITE = '''"""A fake suite for the tests."""
def main(argv=None):
    print("ran {name}", list(argv or []))
    return {{"argv": argv}}
'''


@pytest.fixture
def fake_bench(tmp_path, monkeypatch):
    """A stand-in `sparselth.bench` package with suites `spmm` and `other` and a helper
    module without `main`."""
    folder = tmp_path / "fake_bench"
    folder.mkdir()
    for name in ("spmm", "other"):
        (folder / f"{name}.py").write_text(SUITE.format(name=name))
    (folder / "common.py").write_text("X = 1\n")
    pkg = types.ModuleType("sparselth.bench")
    pkg.__path__ = [str(folder)]
    for name in [m for m in sys.modules if m.startswith("sparselth.bench.")]:
        monkeypatch.delitem(sys.modules, name)  # the real suites, if another test imported them
    monkeypatch.setitem(sys.modules, "sparselth.bench", pkg)
    yield
    for name in ("spmm", "other", "common"):
        sys.modules.pop(f"sparselth.bench.{name}", None)


def test_bench_runs_the_named_suite(fake_bench, capsys):
    assert cli.main(["bench", "--quick"]) == 0
    assert "ran spmm ['--quick']" in capsys.readouterr().out
    assert cli.main(["bench", "other", "--x", "1"]) == 0
    assert "ran other ['--x', '1']" in capsys.readouterr().out


def test_bench_list_and_unknown_suite(fake_bench, capsys):
    assert cli.main(["bench", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["other", "spmm"]  # common has no main
    assert "fake suite" in lines[0]
    assert cli.main(["bench", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "other, spmm" in err


def test_bench_unavailable(monkeypatch, capsys):
    monkeypatch.setattr(cli_parser, "_bench_package", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    assert "sparselth.bench" in capsys.readouterr().err


def test_bench_does_not_touch_sys_path(fake_bench):
    before = list(sys.path)
    cli.main(["bench", "--list"])
    assert sys.path == before


@pytest.mark.skipif(importlib.util.find_spec("sparselth.bench") is None,
                    reason="sparselth.bench is not installed here")
def test_bench_help_of_the_installed_spmm_suite(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--list" in out
