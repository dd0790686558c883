"""Evaluation metrics. :mod:`sparselth.metrics.ranking`: Recall@K, Precision@K and NDCG@K by
full ranking for recommenders."""

from .ranking import metrics_from_hits, ranking_metrics, topk_hits

__all__ = ["metrics_from_hits", "ranking_metrics", "topk_hits"]
