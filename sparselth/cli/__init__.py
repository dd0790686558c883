"""The ``sparselth`` command line: :mod:`~sparselth.cli.parser` (the command and ``main``),
:mod:`~sparselth.cli.tickets` (``find``, ``compile``), :mod:`~sparselth.cli.plot`
(``plot``), :mod:`~sparselth.cli.demo_glt` and :mod:`~sparselth.cli.demo_spmm` (the
demos)."""

from .parser import build_parser, main

__all__ = ["build_parser", "main"]
