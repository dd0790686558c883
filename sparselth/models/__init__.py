"""Built-in models. Small image models for tickets, tests and benchmarks live in
:mod:`sparselth.models.small`: :class:`MLP`, :class:`SmallConvNet`, :class:`ConvAutoencoder`,
built by name with :func:`build_model`. The UGS graph networks :class:`GCN`, :class:`GIN` and
:class:`GAT` (one fixed graph, learnable edge mask) live in :mod:`sparselth.models.gnn`.
The recommenders :class:`MF` and :class:`LightGCN` live in :mod:`sparselth.models.recsys`."""

from .gnn import GAT, GCN, GIN
from .recsys import RECSYS_MODELS, LightGCN, MF, build_recsys_model
from .small import (
    DATASETS,
    MLP,
    MODELS,
    ConvAutoencoder,
    SmallConvNet,
    build_model,
    load_digits,
    make_dataset,
    synthetic_images,
)

__all__ = [
    "DATASETS",
    "GAT",
    "GCN",
    "GIN",
    "MLP",
    "MODELS",
    "ConvAutoencoder",
    "SmallConvNet",
    "build_model",
    "load_digits",
    "make_dataset",
    "synthetic_images",
    "MF",
    "LightGCN",
    "RECSYS_MODELS",
    "build_recsys_model",
]
