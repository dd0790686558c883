"""Self-supervised pre-training of graph encoders: GraphCL (You et al. 2020).

- :mod:`~sparselth.pretrain.augment`: node dropping, edge perturbation, attribute masking,
  subgraph and the random2/3/4 mixtures, vectorised over a block-diagonal
  :class:`~sparselth.sparse.GraphBatch`, seeded by a ``torch.Generator``;
  :class:`AugmentConfig` holds the ratios and the reference codes' variants.
- :mod:`~sparselth.pretrain.loss`: NT-Xent as the reference codes compute it and the symmetric
  (SimCLR) form of the paper's text.

The encoder (:class:`~sparselth.models.GraphCLGIN`) lives with the other models.
"""

from .augment import __all__ as _augment_all
from .augment import *  # noqa: F401,F403  (the function ``augment`` shadows the module name)
from .loss import __all__ as _loss_all
from .loss import *  # noqa: F401,F403

__all__ = [*_augment_all, *_loss_all]
