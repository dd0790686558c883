"""Built-in models. Small image models for tickets, tests and benchmarks live in
:mod:`sparselth.models.small`: :class:`MLP`, :class:`SmallConvNet`, :class:`ConvAutoencoder`,
built by name with :func:`build_model`. The UGS graph networks :class:`GCN`, :class:`GIN` and
:class:`GAT` (one fixed graph, learnable edge mask) live in :mod:`sparselth.models.gnn`.
:class:`GINGraphClassifier` (same module) classifies the graphs of a whole dataset, with one
learnable mask value per stored edge of the dataset (UGS on graph classification).
GraphCL's GIN encoder with its projection head, :class:`GraphCLGIN`, runs on a batch of graphs
(:mod:`sparselth.models.graphcl`); node-level GraphCL's GCN encoder :class:`GCNNodeEncoder`
with its discriminator, :class:`GraphCLNode`, in :mod:`sparselth.models.graphcl_node`; the
GFN/GraphCL semi-supervised backbone :class:`ResGCN` in :mod:`sparselth.models.resgcn`. The
recommenders :class:`MF` and :class:`LightGCN` live in :mod:`sparselth.models.recsys`.
:class:`FIDInceptionV3` / :func:`fid_inception` are the standard FID feature network
(:mod:`sparselth.models.inception_fid`), :class:`ImageFeatureNet` the proxy one
(:mod:`sparselth.models.feature_net`). The GANs of GAN tickets (:class:`SNGANGenerator`,
:class:`SNGANDiscriminator`, :class:`CycleGANGenerator`, :class:`PatchGANDiscriminator`) live
in :mod:`sparselth.models.gan`; their channel tickets (:func:`channel_prune_generator`,
:func:`keep_for_macs`) in :mod:`sparselth.models.gan_channels`.

The image data sets (``synthetic_images``, ``load_digits``, ``make_dataset``, ``DATASETS``)
moved to :mod:`sparselth.data.images`; their old names here still work for one release, with
a DeprecationWarning."""

from . import (feature_net, gan, gan_channels, gnn, graphcl, graphcl_node, inception_fid, recsys,
               resgcn, small)
from .feature_net import *  # noqa: F401,F403
from .gan import *  # noqa: F401,F403
from .gan_channels import *  # noqa: F401,F403
from .gnn import *  # noqa: F401,F403
from .graphcl import *  # noqa: F401,F403
from .graphcl_node import *  # noqa: F401,F403
from .inception_fid import *  # noqa: F401,F403
from .recsys import *  # noqa: F401,F403
from .resgcn import *  # noqa: F401,F403
from .small import *  # noqa: F401,F403
from .small import __getattr__  # noqa: F401  (the moved image data names)

__all__ = [*feature_net.__all__, *gan.__all__, *gan_channels.__all__, *gnn.__all__,
           *graphcl.__all__, *graphcl_node.__all__, *inception_fid.__all__, *recsys.__all__,
           *resgcn.__all__, *small.__all__]
