"""Training and evaluation loops for the built-in models (above ``models``/``data``, below
``ticket``/``deploy``).

:mod:`sparselth.train.classification`: minibatch SGD on cross-entropy for the small image
models (the loop ``sparselth find`` runs in every IMP round).

:mod:`sparselth.train.graph`: full-batch node classification and link prediction on one
graph, model selection by the best validation metric, the UGS link-prediction encoder, and
the task objects the UGS driver (:class:`sparselth.prune.UGS`) trains through.

:mod:`sparselth.train.recsys`: BPR training of MF/LightGCN with early stopping on a
validation split, full-ranking evaluation, and lottery-ticket search on the embedding table.

:mod:`sparselth.train.graphcl`: GraphCL pre-training of the GIN encoder (resumable run
folders, one round per epoch) and the unsupervised TU evaluation (RBF SVM on frozen
embeddings, C by inner grid search, outer stratified CV).

:mod:`sparselth.train.graphcl_semi`: GraphCL's semi-supervised TU protocol: pre-training of
ResGCN, then fine-tuning on 1/``semi_split`` of every training fold (stratified CV).

The metrics ``accuracy``, ``roc_auc`` and ``average_precision`` moved to
:mod:`sparselth.metrics`; their old names here still work for one release, with a
DeprecationWarning.
"""

from ..utils.deprecation import moved_names
from . import classification, graph, graphcl, graphcl_semi, recsys
from .classification import *  # noqa: F401,F403
from .graph import *  # noqa: F401,F403
from .graphcl import *  # noqa: F401,F403
from .graphcl_semi import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403

__all__ = [*classification.__all__, *graph.__all__, *graphcl.__all__,
           *graphcl_semi.__all__, *recsys.__all__]

__getattr__ = moved_names(__name__, {name: f"sparselth.metrics:{name}"
                                     for name in ("accuracy", "average_precision", "roc_auc")})
