"""The ``sparselth`` command (also ``python -m sparselth``).

Subcommands::

    sparselth demo  [--data DIR] [--rounds R] ... a graph lottery ticket: UGS, compile, time, PNG
    sparselth demo-spmm [--nodes N] ...           pruned edges -> measured SpMM time, table + PNG
    sparselth find CONFIG | compile TICKET ...    lottery tickets (sparselth.cli.tickets)
    sparselth plot RUN_DIR ... | REPORT.json      metric and latency vs sparsity, any run kind
    sparselth bench [SUITE] [options]             a benchmark suite of sparselth.bench

Adding a subcommand: write a function that takes the sub-parser set, creates its parser with
:func:`sparselth.cli.common.add_command` (which sets ``func``: namespace -> exit code) and
adds its arguments, then list it in ``_SUBCOMMANDS``. Subcommands that hand their whole
argument list to another program's parser go in ``_PASSTHROUGH`` instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable
from types import ModuleType

from . import demo_glt, demo_spmm, plot, tickets

__all__ = ["bench_suites", "build_parser", "main"]

BENCH_PACKAGE = "sparselth.bench"
DEFAULT_SUITE = "spmm"
BENCH_USAGE = f"""\
usage: sparselth bench [--list] [SUITE] [options of the suite]

Runs {BENCH_PACKAGE}.SUITE (default: {DEFAULT_SUITE}) with the options that follow;
`sparselth bench --list` lists the suites, `sparselth bench SUITE --help` shows a
suite's options. The options of {DEFAULT_SUITE}:
"""


def _add_bench(sub) -> None:
    sub.add_parser(
        "bench",
        help=f"run a benchmark suite of {BENCH_PACKAGE} (default {DEFAULT_SUITE}); "
             "options are passed through; --list lists the suites",
        description=BENCH_USAGE,
        add_help=False,
    )


def _bench_package() -> ModuleType | None:
    """The installed benchmark package, or None when this installation has none."""
    try:
        return importlib.import_module(BENCH_PACKAGE)
    except ModuleNotFoundError as e:
        if e.name not in (BENCH_PACKAGE, "sparselth"):
            raise
        return None


def bench_suites(package: ModuleType) -> dict[str, str]:
    """``{suite: first line of its docstring}`` for every module of ``package`` with a
    ``main(argv)`` (a module that fails to import is listed with the error)."""
    suites = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError as e:
            suites[info.name] = f"(cannot be imported here: {e})"
            continue
        if callable(getattr(mod, "main", None)):
            suites[info.name] = (mod.__doc__ or "").strip().split("\n")[0]
    return suites


def _run_bench(argv: list[str]) -> int:
    package = _bench_package()
    if package is None:
        print(f"sparselth bench: the benchmark suites ({BENCH_PACKAGE}) are not installed "
              "here; install sparselth from its source repository (`pip install -e .` or "
              "`make build`), then run `sparselth bench --list`.", file=sys.stderr)
        return 2
    if argv[:1] == ["--list"]:
        for name, doc in bench_suites(package).items():
            print(f"{name:24s} {doc}")
        return 0
    suite = DEFAULT_SUITE
    if argv and not argv[0].startswith("-"):
        suite, argv = argv[0], argv[1:]
    elif argv[:1] in (["-h"], ["--help"]):
        print(BENCH_USAGE)
    try:
        mod = importlib.import_module(f"{BENCH_PACKAGE}.{suite}")
    except ModuleNotFoundError as e:
        if e.name != f"{BENCH_PACKAGE}.{suite}":
            raise
        mod = None
    if not callable(getattr(mod, "main", None)):
        known = ", ".join(bench_suites(package))
        print(f"sparselth bench: no suite {suite!r}; suites: {known}", file=sys.stderr)
        return 2
    result = mod.main(argv)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


_SUBCOMMANDS: list[Callable] = [demo_glt.add_subcommand, demo_spmm.add_subcommand,
                                tickets.add_subcommands, plot.add_subcommand, _add_bench]
_PASSTHROUGH: dict[str, Callable[[list[str]], int]] = {"bench": _run_bench}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="sparselth",
        description="sparselth: lottery tickets that run on sparse kernels. "
        "Run `sparselth <command> --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sparselth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sparselth`` command on ``argv`` (default ``sys.argv[1:]``); the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:
        return _PASSTHROUGH[argv[0]](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    return int(args.func(args) or 0)
