"""Transitional: the names ``sparselth.cli_tickets`` and ``sparselth.demo`` still import from
here; they live in :mod:`sparselth.deploy` and :mod:`sparselth.utils.records`."""

from .deploy import ROUTES, CompileError, CompileReport, LayerReport, compile
from .utils.records import format_number, format_si

__all__ = ["ROUTES", "CompileError", "CompileReport", "LayerReport", "compile", "format_number",
           "format_si"]
