"""sparselth: lottery tickets that run on sparse kernels.

Layers, bottom to top: ``utils`` (timing, plots, records), ``sparse`` (CSR), ``ops`` (spmm,
sddmm, ... on reference/cpp/triton/cuda), ``nn``, ``metrics``, ``prune`` (masks, strategies, run
folders, IMP, UGS), ``data``/``models``, ``train``, ``ticket`` and ``deploy`` (``compile``),
``cli``. Each imports only the layers below it.
"""

__version__ = "0.1.0"

from . import nn, ops, prune, sparse  # noqa: E402
from .deploy import CompileReport, compile  # noqa: E402
from .ops import backends, use_backend  # noqa: E402
from .sparse import CSR  # noqa: E402
from .ticket import Ticket, load_round  # noqa: E402


def _allow_safe_loading() -> None:
    """Let ``torch.load(..., weights_only=True)`` rebuild a saved :class:`CSR` (its state is
    tensors and a shape), instead of asking for ``weights_only=False``, which can run
    arbitrary code."""
    import torch

    torch.serialization.add_safe_globals([CSR])


_allow_safe_loading()

__all__ = ["CSR", "Ticket", "CompileReport", "compile", "load_round", "nn", "ops", "prune", "sparse",
           "backends", "use_backend", "__version__"]
