"""Sparse formats: the CSR type, compressed embedding formats (and, later, weight formats)."""

from .csr import CSR
from .embedding_formats import (BitmaskEmbedding, CSREmbedding, EmbeddingFormat,
                                RowCompactEmbedding, choose_format, compress_embedding,
                                predict_bytes)

__all__ = ["CSR", "EmbeddingFormat", "RowCompactEmbedding", "CSREmbedding", "BitmaskEmbedding",
           "compress_embedding", "choose_format", "predict_bytes"]
