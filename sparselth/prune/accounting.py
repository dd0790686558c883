"""MAC and parameter counts now live in :mod:`sparselth.metrics.cost`; this module forwards
:func:`count_macs` there."""

from ..metrics.cost import count_macs

__all__ = ["count_macs"]
