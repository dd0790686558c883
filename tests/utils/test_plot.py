"""The figure writer: one style, atomic PNG files."""

import pytest

from sparselth.utils import plot


def test_save_png_writes_a_png_atomically(tmp_path):
    fig, ax = plot.figure()
    ax.plot([0, 1], [1, 0], label="line")
    plot.style_axes(ax, xlabel="x", ylabel="y", title="t")
    path = plot.save_png(fig, tmp_path / "out" / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]


def test_several_panels():
    fig, axes = plot.figure(2, 1)
    assert len(axes) == 2
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_save_png_refuses_other_suffixes(tmp_path):
    fig, _ = plot.figure()
    with pytest.raises(ValueError, match="path"):
        plot.save_png(fig, tmp_path / "f.jpg")
