"""The ``sparselth`` command (also ``python -m sparselth``).

Subcommands::

    sparselth demo  [--data DIR] [--rounds R] ... a graph lottery ticket: UGS, compile, time, PNG
    sparselth demo-spmm [--nodes N] ...           pruned edges -> measured SpMM time, table + PNG
    sparselth find | compile | plot ...           lottery tickets (sparselth.cli_tickets)
    sparselth bench [bench.spmm options]          the full SpMM benchmark (source checkout only)

Adding a subcommand: write ``_add_<name>(subparsers)`` that creates its parser, adds its
arguments and sets ``func`` (a callable taking the parsed namespace and returning an exit
code), then list it in ``_SUBCOMMANDS``. Subcommands that hand their whole argument list to
another program's parser go in ``_PASSTHROUGH`` instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="find a graph lottery ticket (UGS) for a GCN, compile it and time it vs dense",
        description=(
            "Train a GCN on a synthetic contextual-SBM graph (default 3,000 nodes, 500 "
            "features; or Cora/CiteSeer/PubMed with --data), find a graph lottery ticket with "
            "UGS (p_g 0.2 of the edges and p_θ 0.4 of the weights pruned per round), run the "
            "random-pruning baseline, save the last round's ticket, compile every round's "
            "ticket with sparselth.compile and time it against the unpruned model; print the "
            "compile report and a table per round, save demo-glt.png and demo-glt.json. "
            "About two minutes on one thread."
        ),
    )
    from . import demo

    demo.add_arguments(p)
    p.set_defaults(func=demo.main)


def _add_demo_spmm(sub) -> None:
    p = sub.add_parser(
        "demo-spmm",
        help="prune a synthetic graph's edges in steps and time SpMM: sparselth vs "
        "torch.sparse.mm",
        description=(
            "Build a synthetic power-law graph (default 200k nodes, average degree 12, F=64), "
            "prune its edges at random in steps (keep 1, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05), time "
            "A @ X with sparselth (cpp backend when built, else reference) and torch.sparse.mm, "
            "print the table and save "
            "demo-spmm.png. About a minute on 2 cores."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from . import demo

    demo.add_spmm_arguments(p)
    p.set_defaults(func=demo.spmm_main)


def _add_bench(sub) -> None:
    sub.add_parser(
        "bench",
        help="run the SpMM benchmark suite (python -m bench.spmm); options are passed through",
        description="Runs bench.spmm from a source checkout; "
        "`sparselth bench --help` shows its options.",
        add_help=False,
    )


def _find_bench():
    """Import ``bench.spmm`` from the current folder or from the checkout this package lives in."""
    try:
        return importlib.import_module("bench.spmm")
    except ImportError:
        pass
    repo = Path(__file__).resolve().parent.parent
    if (repo / "bench" / "spmm.py").is_file() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
        try:
            return importlib.import_module("bench.spmm")
        except ImportError:
            pass
    return None


def _run_bench(argv: List[str]) -> int:
    mod = _find_bench()
    if mod is None:
        print(
            "sparselth bench: the benchmark suites live in the source repository's bench/ "
            "folder, which is not importable here (an installed package does not include "
            "them). From a checkout of sparselth "
            "run `python -m bench.spmm --help` or `make bench`.",
            file=sys.stderr,
        )
        return 2
    mod.main(argv)
    return 0


def _add_tickets(sub) -> None:
    """``find``, ``compile``, ``plot`` from :mod:`sparselth.cli_tickets` (when present)."""
    try:
        from . import cli_tickets
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.cli_tickets":
            raise
        return
    cli_tickets.add_subcommands(sub)


_SUBCOMMANDS: List[Callable] = [_add_demo, _add_demo_spmm, _add_tickets, _add_bench]
_PASSTHROUGH: Dict[str, Callable[[List[str]], int]] = {"bench": _run_bench}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

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


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:
        return _PASSTHROUGH[argv[0]](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
