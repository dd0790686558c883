"""Names that moved keep working for one release: :func:`moved_names` builds the module-level
``__getattr__`` that forwards an old name to its new home with a ``DeprecationWarning``."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for ``module``: ``moved`` maps an old attribute name to its new home,
    ``"package.module:name"``. The new module is imported on first use only."""

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, _, new_name = target.partition(":")
        warnings.warn(f"{module}.{name} moved to {new_module}.{new_name}; import it from there "
                      "(the old name goes away in the next release)", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__
