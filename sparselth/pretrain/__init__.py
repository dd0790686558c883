"""Self-supervised pre-training of graph encoders: GraphCL (You et al. 2020).

- :mod:`~sparselth.pretrain.augment`: node dropping, edge perturbation, attribute masking,
  subgraph and the random2/3/4 mixtures, vectorised over a block-diagonal
  :class:`~sparselth.sparse.GraphBatch`, seeded by a ``torch.Generator``;
  :class:`AugmentConfig` holds the ratios and the reference codes' variants.
- :mod:`~sparselth.pretrain.loss`: NT-Xent as the reference codes compute it and the symmetric
  (SimCLR) form of the paper's text.
- :mod:`~sparselth.pretrain.node_augment`: the augmentations of one large graph for
  node-level GraphCL (Cora/CiteSeer code): undirected edge perturbation, random-expansion
  subgraph, and node dropping / zero masking reused from ``augment``.
- :mod:`~sparselth.pretrain.dgi`: the DGI-style objective of node-level GraphCL (bilinear
  discriminator, sigmoid mean summary, BCE).

The encoders (:class:`~sparselth.models.GraphCLGIN`, :class:`~sparselth.models.GCNNodeEncoder`)
live with the other models.
"""

from .augment import __all__ as _augment_all
from .augment import *  # noqa: F401,F403  (the function ``augment`` shadows the module name)
from .dgi import __all__ as _dgi_all
from .dgi import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .loss import *  # noqa: F401,F403
from .node_augment import __all__ as _node_augment_all
from .node_augment import *  # noqa: F401,F403

__all__ = [*_augment_all, *_loss_all, *_dgi_all, *_node_augment_all]
