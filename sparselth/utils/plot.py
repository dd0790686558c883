"""The one figure writer: every PNG sparselth publishes is drawn with :func:`figure` (one
style: size, fonts, grid) and written with :func:`save_png` (atomically: a reader never
sees a half-written file). matplotlib is imported lazily, with the non-interactive Agg
backend, so ``import sparselth`` does not pay for it."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes

__all__ = ["figure", "save_png", "style_axes", "DPI"]

DPI = 110
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure(ncols: int = 1, nrows: int = 1, *, width: float | None = None,
           height: float | None = None, **kwargs: Any):
    """``(fig, axes)`` in the house style; ``axes`` is a single Axes for one panel, else the
    array ``plt.subplots`` gives. Default size: 5 x 3.6 inches per panel."""
    plt = _pyplot()
    plt.rcParams.update(_STYLE)
    w = width if width is not None else 5.0 * ncols
    h = height if height is not None else 3.6 * nrows
    kwargs.setdefault("squeeze", True)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), **kwargs)
    return fig, axes


def style_axes(ax, *, xlabel: str | None = None, ylabel: str | None = None,
               title: str | None = None, legend: bool = True) -> None:
    """Labels, a light grid and a legend (when there are labelled artists)."""
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend()


def save_png(fig, path: str | os.PathLike[str], *, dpi: int = DPI, tight: bool = True) -> Path:
    """Render ``fig`` to PNG bytes, write them to ``path`` atomically, close the figure."""
    plt = _pyplot()
    path = Path(path)
    if path.suffix.lower() != ".png":
        plt.close(fig)
        raise ValueError(f"save_png: path must end in .png, got {str(path)!r}")
    buf = io.BytesIO()
    try:
        if tight:
            fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
