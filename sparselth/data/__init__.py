"""Data: real datasets read from a local folder, and synthetic generators.

Real datasets live in a folder of datasets (the ``root`` argument or the ``SPARSELTH_DATA``
environment variable; see :mod:`~sparselth.data.files`). Synthetic generators are
deterministic by seed and cover sizes the real data does not.

- :class:`GraphData` (:mod:`~sparselth.data.graph`): a node-classification graph.
- :func:`load_planetoid` / :func:`load_planetoid_graph`: Cora, CiteSeer, PubMed (public split).
- :func:`power_law_graph`: heavy-tailed directed graphs up to millions of nodes, vectorised.
- :func:`prune_edges_random`: keep a random fraction of the edges (of an ``edge_index`` or a CSR).
- :func:`contextual_sbm`: contextual stochastic block model (features + labels + graph).
- :func:`link_split`: link-prediction split (held-out edges that keep components, negatives).
- :mod:`~sparselth.data.recsys`: user-item interactions (:class:`Interactions`): LastFM,
  MovieLens-100K, LightGCN's text format, a latent-factor generator, a BPR sampler.
- :func:`load_tu` (:mod:`~sparselth.data.tu`): TU graph-classification sets (TU and GIN text
  formats, GIN's 10 folds, download with sha256) as a :class:`GraphDataset`;
  :class:`GraphLoader`, :func:`collate_graphs`, :func:`from_pyg` (:mod:`~sparselth.data.batching`).
- :mod:`~sparselth.data.images`: small image classification data (synthetic templates,
  scikit-learn's digits) for ``sparselth find``.
- :mod:`~sparselth.data.image_files`: image sets from their file formats (Fashion-MNIST/MNIST
  IDX, MNIST-5k CSV, CIFAR-10 and STL-10 binary, image folders) and unpaired class pairs.
"""

from __future__ import annotations

from . import (batching, features, files, graph, image_files, images, linkpred, planetoid, recsys,
               splits, synthetic, tu)
from .batching import *  # noqa: F401,F403
from .features import *  # noqa: F401,F403
from .files import *  # noqa: F401,F403
from .graph import *  # noqa: F401,F403
from .image_files import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from .linkpred import *  # noqa: F401,F403
from .planetoid import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403
from .synthetic import *  # noqa: F401,F403
from .tu import *  # noqa: F401,F403

__all__ = [*batching.__all__, *features.__all__, *files.__all__, *graph.__all__,
           *image_files.__all__, *images.__all__, *linkpred.__all__, *planetoid.__all__,
           *recsys.__all__, *synthetic.__all__, *tu.__all__]
