"""Built-in models. Small image models for tickets, tests and benchmarks live in
:mod:`sparselth.models.small`: :class:`MLP`, :class:`SmallConvNet`, :class:`ConvAutoencoder`,
built by name with :func:`build_model`."""

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
    "MLP",
    "MODELS",
    "ConvAutoencoder",
    "SmallConvNet",
    "build_model",
    "load_digits",
    "make_dataset",
    "synthetic_images",
]
