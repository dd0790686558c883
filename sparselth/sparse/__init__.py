"""Sparse formats: the CSR type, mini-batches of graphs as one block-diagonal CSR
(:class:`GraphBatch`), compressed embedding formats (and, later, weight formats)."""

from .batch import Graph, GraphBatch
from .csr import CSR
from .embedding_formats import (BitmaskEmbedding, CSREmbedding, EmbeddingFormat,
                                RowCompactEmbedding, choose_format, compress_embedding,
                                predict_bytes)

__all__ = ["CSR", "Graph", "GraphBatch", "EmbeddingFormat", "RowCompactEmbedding",
           "CSREmbedding", "BitmaskEmbedding", "compress_embedding", "choose_format",
           "predict_bytes"]
