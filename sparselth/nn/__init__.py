"""Neural-network layers: training-time masked layers and deploy-time sparse layers.

Training (finding tickets): :class:`MaskedLinear`, :class:`MaskedConv2d`,
:class:`MaskedConvTranspose2d`, :class:`MaskedEmbedding` keep the dense weight and a
``weight_mask`` buffer.

Tables larger than one machine: :class:`ShardedMaskedEmbedding` / :class:`ShardedEmbedding`
keep rows :func:`row_partition` assigns to each rank of a ``torch.distributed`` group and route
lookups between ranks with all-to-all exchanges.

Deployment (running tickets): :class:`SparseLinear`, :class:`SparseConv2d`,
:class:`SparseConvTranspose2d` (CSR weights on sparselth's kernels), :class:`ChannelPrunedLinear`,
:class:`ChannelPrunedConv2d`, :class:`ChannelPrunedConvTranspose2d` (physically smaller dense
layers), :class:`BlockSparseLinear`, :class:`SemiStructuredLinear` (2:4, GPU). Each has
``from_dense(module, mask=None)``.

Graphs: :class:`GCNConv`, :class:`GINConv`, :class:`GATConv` take PyG's ``edge_index``
(row 0 sources, row 1 targets) or ``adj_t``, a CSR whose rows are the targets
(:func:`adj_t_from_edge_index` builds it), plus learnable per-edge weights (UGS edge masks). Readouts over a batch of
graphs: :func:`global_pool` (sum, mean: an SpMM with a pooling matrix; max).
"""

from .embedding import CompressedEmbedding, CompressedEmbeddingBag, MaskedEmbedding
from .sharded_embedding import (AllToAll, ShardedEmbedding, ShardedMaskedEmbedding, row_owner,
                                row_partition, sharded_state_names)
from .graph import GATConv, GCNConv, GINConv, adj_t_from_edge_index
from .pool import (global_add_pool, global_max_pool, global_mean_pool, global_pool,
                   pooling_matrix)
from .masked import MaskedConv2d, MaskedConvTranspose2d, MaskedLinear
from .sparse import (BlockSparseLinear, ChannelPrunedConv2d, ChannelPrunedConvTranspose2d,
                     ChannelPrunedLinear, SemiStructuredLinear, SparseConv2d,
                     SparseConvTranspose2d, SparseLinear)

__all__ = [
    "MaskedLinear", "MaskedConv2d", "MaskedConvTranspose2d",
    "SparseLinear", "SparseConv2d", "SparseConvTranspose2d",
    "ChannelPrunedLinear", "ChannelPrunedConv2d", "ChannelPrunedConvTranspose2d",
    "BlockSparseLinear", "SemiStructuredLinear",
    "GCNConv", "GINConv", "GATConv", "adj_t_from_edge_index",
    "MaskedEmbedding", "CompressedEmbedding", "CompressedEmbeddingBag",
    "ShardedEmbedding", "ShardedMaskedEmbedding", "AllToAll", "row_partition", "row_owner",
    "sharded_state_names",
    "global_pool", "global_add_pool", "global_mean_pool", "global_max_pool", "pooling_matrix",
]
