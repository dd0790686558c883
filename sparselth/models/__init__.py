"""Built-in models. Small image models for tickets, tests and benchmarks live in
:mod:`sparselth.models.small`: :class:`MLP`, :class:`SmallConvNet`, :class:`ConvAutoencoder`,
built by name with :func:`build_model`. The UGS graph networks :class:`GCN`, :class:`GIN` and
:class:`GAT` (one fixed graph, learnable edge mask) live in :mod:`sparselth.models.gnn`.
GraphCL's GIN encoder with its projection head, :class:`GraphCLGIN`, runs on a batch of graphs
(:mod:`sparselth.models.graphcl`); the GFN/GraphCL semi-supervised backbone :class:`ResGCN` in
:mod:`sparselth.models.resgcn`. The recommenders :class:`MF` and :class:`LightGCN` live in
:mod:`sparselth.models.recsys`.

The image data sets (``synthetic_images``, ``load_digits``, ``make_dataset``, ``DATASETS``)
moved to :mod:`sparselth.data.images`; their old names here still work for one release, with
a DeprecationWarning."""

from . import gnn, graphcl, recsys, resgcn, small
from .gnn import *  # noqa: F401,F403
from .graphcl import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403
from .resgcn import *  # noqa: F401,F403
from .small import *  # noqa: F401,F403
from .small import __getattr__  # noqa: F401  (the moved image data names)

__all__ = [*gnn.__all__, *graphcl.__all__, *recsys.__all__, *resgcn.__all__, *small.__all__]
