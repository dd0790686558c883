"""sparselth: lottery tickets that run on sparse kernels.

Layers, bottom to top: ``sparse`` (CSR), ``ops`` (spmm, sddmm on reference/cpp/triton/cuda),
``nn``, ``prune``, ``data``/``metrics``, ``ticket``, ``deploy`` (``compile``), ``cli``.
"""

__version__ = "0.1.0"

from . import nn, ops, prune, sparse  # noqa: E402
from .deploy import CompileReport, compile  # noqa: E402
from .ops import backends, use_backend  # noqa: E402
from .sparse import CSR  # noqa: E402
from .ticket import Ticket  # noqa: E402

__all__ = ["CSR", "Ticket", "CompileReport", "compile", "nn", "ops", "prune", "sparse",
           "backends", "use_backend", "__version__"]
