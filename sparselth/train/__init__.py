"""Training and evaluation loops for the built-in models (above ``models``/``data``, below
``ticket``/``compile``).

:mod:`sparselth.train.graph`: full-batch node classification and link prediction on one
graph, model selection by the best validation metric, the ROC-AUC/AP metrics, the UGS
link-prediction encoder, and the task objects the UGS driver (:class:`sparselth.prune.UGS`)
trains through.

:mod:`sparselth.train.recsys`: BPR training of MF/LightGCN with early stopping on a
validation split, full-ranking evaluation, and lottery-ticket search on the embedding table.
"""

from .graph import (
    FitResult,
    GCNLinkEncoder,
    GraphTask,
    LinkPredictionTask,
    NodeClassificationTask,
    accuracy,
    average_precision,
    evaluate_link_prediction,
    evaluate_node_classification,
    link_scores,
    node_features,
    roc_auc,
    train_link_prediction,
    train_node_classification,
)
from .recsys import (
    BPRConfig,
    BPRResult,
    embedding_bytes,
    evaluate_ranking,
    find_recsys_ticket,
    largest_sparsity_within,
    lookup_latency,
    train_bpr,
)

__all__ = [
    "FitResult",
    "GCNLinkEncoder",
    "GraphTask",
    "LinkPredictionTask",
    "NodeClassificationTask",
    "accuracy",
    "average_precision",
    "evaluate_link_prediction",
    "evaluate_node_classification",
    "link_scores",
    "node_features",
    "roc_auc",
    "train_link_prediction",
    "train_node_classification",
    "BPRConfig",
    "BPRResult",
    "embedding_bytes",
    "evaluate_ranking",
    "find_recsys_ticket",
    "largest_sparsity_within",
    "lookup_latency",
    "train_bpr",
]
