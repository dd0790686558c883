"""Training and evaluation loops for the built-in models (above ``models``/``data``, below
``ticket``/``deploy``).

:mod:`sparselth.train.classification`: minibatch SGD on cross-entropy for the small image
models (the loop ``sparselth find`` runs in every IMP round).

:mod:`sparselth.train.graph`: full-batch node classification and link prediction on one
graph, model selection by the best validation metric, the UGS link-prediction encoder, and
the task objects the UGS driver (:class:`sparselth.prune.UGS`) trains through.

:mod:`sparselth.train.recsys`: BPR training of MF/LightGCN with early stopping on a
validation split, full-ranking evaluation, and lottery-ticket search on the embedding table.

The metrics ``accuracy``, ``roc_auc`` and ``average_precision`` moved to
:mod:`sparselth.metrics`; their old names here still work for one release, with a
DeprecationWarning.
"""

import warnings
from typing import Any

from . import classification, graph, recsys
from .classification import *  # noqa: F401,F403
from .graph import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403

__all__ = [*classification.__all__, *graph.__all__, *recsys.__all__]

_MOVED_TO_METRICS = ("accuracy", "average_precision", "roc_auc")


def __getattr__(name: str) -> Any:
    if name not in _MOVED_TO_METRICS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"sparselth.train.{name} moved to sparselth.metrics.{name}; import it from "
                  "there", DeprecationWarning, stacklevel=2)
    from .. import metrics

    return getattr(metrics, name)
