"""Evaluation metrics and cost counters.

- :mod:`~sparselth.metrics.classification`: :func:`accuracy`.
- :mod:`~sparselth.metrics.link`: :func:`roc_auc`, :func:`average_precision` (link prediction).
- :mod:`~sparselth.metrics.ranking`: Recall@K, Precision@K and NDCG@K by full ranking
  (recommenders).
- :mod:`~sparselth.metrics.cost`: MACs per layer (:func:`count_macs`), parameters
  (:func:`count_params`) and bytes (:func:`tensor_bytes`, :func:`state_bytes`,
  :func:`embedding_bytes`) of a (masked) model.
- :mod:`~sparselth.metrics.fid`: FID and Inception Score with a pluggable feature network
  (:class:`FeatureStats`, :func:`fid_score`, :func:`inception_score`).
"""

from . import classification, cost, fid, link, ranking
from .classification import *  # noqa: F401,F403
from .cost import *  # noqa: F401,F403
from .fid import *  # noqa: F401,F403
from .link import *  # noqa: F401,F403
from .ranking import *  # noqa: F401,F403

__all__ = [*classification.__all__, *cost.__all__, *fid.__all__, *link.__all__, *ranking.__all__]
