"""A tiny TU-format dataset written by bench tests."""

from __future__ import annotations

import numpy as np


def write_tu(root, name="TINY", graphs=24, seed=0):
    """Graphs in the TU text format: class 1 graphs are denser rings with another node label."""
    rng = np.random.default_rng(seed)
    folder = root / "tu" / name
    folder.mkdir(parents=True)
    edges, indicator, node_labels, labels = [], [], [], []
    start = 1
    for g in range(graphs):
        n, label = int(rng.integers(4, 8)), g % 2
        for i in range(n):
            for j in ((i + 1) % n, (i + 2) % n) if label else ((i + 1) % n,):
                edges += [(start + i, start + j), (start + j, start + i)]
            indicator.append(g + 1)
            node_labels.append(int(rng.integers(0, 2)) + 2 * label)
        labels.append(label)
        start += n
    (folder / f"{name}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("".join(f"{i}\n" for i in indicator))
    (folder / f"{name}_node_labels.txt").write_text("".join(f"{v}\n" for v in node_labels))
    (folder / f"{name}_graph_labels.txt").write_text("".join(f"{v}\n" for v in labels))
    return root
