"""Training and evaluation loops for the built-in models (above ``models``/``data``, below
``ticket``/``deploy``).

:mod:`sparselth.train.classification`: minibatch SGD on cross-entropy for the small image
models (the loop ``sparselth find`` runs in every IMP round).

:mod:`sparselth.train.graph`: full-batch node classification and link prediction on one
graph, model selection by the best validation metric, the UGS link-prediction encoder, and
the task objects the UGS driver (:class:`sparselth.prune.UGS`) trains through.

:mod:`sparselth.train.graph_classification`: graph classification on a TU dataset with
mini-batch Adam (the UGS task for graph lottery tickets over a dataset of graphs).

:mod:`sparselth.train.recsys`: BPR training of MF/LightGCN with early stopping on a
validation split, full-ranking evaluation, and lottery-ticket search on the embedding table.

:mod:`sparselth.train.graphcl`: GraphCL pre-training of the GIN encoder (resumable run
folders, one round per epoch) and the unsupervised TU evaluation (RBF SVM on frozen
embeddings, C by inner grid search, outer stratified CV).

:mod:`sparselth.train.gan`: SNGAN training as GAN tickets run it (hinge loss, ``n_critic``,
EMA generator, masks that keep pruned weights at zero, distillation from a dense D).

:mod:`sparselth.train.cyclegan`: CycleGAN training (LSGAN, cycle and identity losses, replay
buffer, linear learning-rate decay) with masks for tickets; :mod:`sparselth.train.cyclegan_tickets`
its lottery tickets (each generator pruned on its own).

:mod:`sparselth.train.gan_tickets`: GAN lottery tickets (IMPG, IMPGD, IMPGD-KD, the D
initialisations, late rewinding, one-shot, random tickets) in a resumable run folder.

:mod:`sparselth.train.feature_net`: the proxy FID/IS feature network, trained on a labelled
image set and saved with the hash of its weights.

:mod:`sparselth.train.graphcl_node`: node-level GraphCL on one graph (DGI-style objective,
early stopping on the training loss, safetensors checkpoint of the GCN encoder) and the linear
evaluation (logistic regression on frozen embeddings, 50 runs).

:mod:`sparselth.train.graphcl_semi`: GraphCL's semi-supervised TU protocol: pre-training of
ResGCN, then fine-tuning on 1/``semi_split`` of every training fold (stratified CV).

The metrics ``accuracy``, ``roc_auc`` and ``average_precision`` moved to
:mod:`sparselth.metrics`; their old names here still work for one release, with a
DeprecationWarning.
"""

from ..utils.deprecation import moved_names
from . import (classification, cyclegan, cyclegan_tickets, feature_net, gan, gan_tickets, graph,
               graph_classification, graphcl, graphcl_node, graphcl_semi, recsys)
from .classification import *  # noqa: F401,F403
from .cyclegan import *  # noqa: F401,F403
from .cyclegan_tickets import *  # noqa: F401,F403
from .feature_net import *  # noqa: F401,F403
from .gan import *  # noqa: F401,F403
from .gan_tickets import *  # noqa: F401,F403
from .graph import *  # noqa: F401,F403
from .graph_classification import *  # noqa: F401,F403
from .graphcl import *  # noqa: F401,F403
from .graphcl_node import *  # noqa: F401,F403
from .graphcl_semi import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403

__all__ = [*classification.__all__, *cyclegan.__all__, *cyclegan_tickets.__all__,
           *feature_net.__all__, *gan.__all__, *gan_tickets.__all__, *graph.__all__,
           *graph_classification.__all__, *graphcl.__all__, *graphcl_node.__all__,
           *graphcl_semi.__all__, *recsys.__all__]

__getattr__ = moved_names(__name__, {name: f"sparselth.metrics:{name}"
                                     for name in ("accuracy", "average_precision", "roc_auc")})
