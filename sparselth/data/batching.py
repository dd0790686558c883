"""Mini-batches of graphs: a loader over a :class:`~sparselth.data.tu.GraphDataset`, a collate
function for ``torch.utils.data.DataLoader``, and conversion of PyG ``Data``/``Batch`` objects
(accepted when torch_geometric is installed; never required).

Example::

    >>> for batch in GraphLoader(ds, batch_size=128, shuffle=True, generator=g):
    ...     h = encoder(batch)          # batch: GraphBatch (block-diagonal CSR + ptr)
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional, Sequence

import torch

from ..sparse.batch import Graph, GraphBatch, _csr
from ..sparse.csr import CSR

__all__ = ["GraphLoader", "collate_graphs", "from_pyg", "as_graph_batch"]


class GraphLoader:
    """Iterate a dataset (or a :class:`GraphBatch`) in mini-batches of ``batch_size`` graphs,
    each one vectorised :meth:`GraphBatch.select`; ``shuffle`` draws a permutation per epoch
    from ``generator``."""

    def __init__(self, dataset: Any, batch_size: int = 128, shuffle: bool = False,
                 drop_last: bool = False, generator: Optional[torch.Generator] = None,
                 index: Optional[torch.Tensor] = None):
        data = getattr(dataset, "data", dataset)
        if not isinstance(data, GraphBatch):
            raise TypeError(f"GraphLoader: dataset must be a GraphDataset or GraphBatch, got "
                            f"{type(dataset).__name__}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"GraphLoader: batch_size must be a positive int, got {batch_size!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"GraphLoader: generator must be a torch.Generator, got "
                            f"{type(generator).__name__}")
        self.data, self.batch_size, self.shuffle = data, batch_size, bool(shuffle)
        self.drop_last, self.generator = bool(drop_last), generator
        self.index = torch.arange(data.num_graphs) if index is None else \
            torch.as_tensor(index, dtype=torch.long)

    def __len__(self) -> int:
        n = self.index.numel()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[GraphBatch]:
        idx = self.index
        if self.shuffle:
            idx = idx[torch.randperm(idx.numel(), generator=self.generator)]
        for k in range(len(self)):
            yield self.data.select(idx[k * self.batch_size:(k + 1) * self.batch_size])


def collate_graphs(items: Sequence[Any]) -> GraphBatch:
    """``collate_fn`` for ``torch.utils.data.DataLoader``: :class:`Graph` objects or PyG
    ``Data`` objects into one :class:`GraphBatch`."""
    items = list(items)
    graphs = [g if isinstance(g, Graph) else from_pyg(g).graph(0) for g in items]
    return GraphBatch.from_graphs(graphs)


def _pyg_types() -> tuple:
    try:  # optional dependency
        from torch_geometric.data import Batch, Data
    except ImportError:
        return ()
    return (Data, Batch)


def from_pyg(obj: Any) -> GraphBatch:
    """A PyG ``Data`` (one graph) or ``Batch`` as a :class:`GraphBatch`. Anything with
    ``edge_index`` (``[source, target]``), ``x`` or ``num_nodes``, and for several graphs a sorted
    ``batch`` vector, is accepted; edge attributes are dropped, duplicate edges stored once.
    Without ``x`` the nodes get one constant feature."""
    types = _pyg_types()
    if not (isinstance(obj, types) if types else False) and not hasattr(obj, "edge_index"):
        raise TypeError(f"from_pyg: expected a torch_geometric Data/Batch (or an object with "
                        f"edge_index), got {type(obj).__name__}")
    ei = obj.edge_index
    if not isinstance(ei, torch.Tensor) or ei.dim() != 2 or ei.shape[0] != 2:
        raise ValueError("from_pyg: edge_index must be a (2, E) tensor")
    x = getattr(obj, "x", None)
    n = int(x.shape[0]) if x is not None else getattr(obj, "num_nodes", None)
    if n is None:
        raise ValueError("from_pyg: the object has neither x nor num_nodes")
    if x is None:
        x = torch.ones(n, 1)
    batch = getattr(obj, "batch", None)
    if batch is None:
        ptr = torch.tensor([0, n], dtype=torch.long, device=x.device)
    else:
        batch = batch.long()
        if batch.numel() != n or (n and bool((batch[1:] < batch[:-1]).any())):
            raise ValueError("from_pyg: batch must be a sorted (N,) graph-id vector")
        B = int(getattr(obj, "num_graphs", 0) or (int(batch.max()) + 1 if n else 0))
        ptr = torch.zeros(B + 1, dtype=torch.long, device=x.device)
        torch.cumsum(torch.bincount(batch, minlength=B), 0, out=ptr[1:])
    A = CSR.from_edge_index(ei.flip(0), n)          # rows = targets
    adj = _csr(A.rowptr.long(), A.col.long(), None, n)
    y = getattr(obj, "y", None)
    if y is not None:
        y = torch.as_tensor(y).reshape(-1)
        if y.numel() != ptr.numel() - 1:
            y = None  # node-level labels: not a graph label
    return GraphBatch(x if x.is_floating_point() else x.float(), adj, ptr, y)


def as_graph_batch(obj: Any) -> GraphBatch:
    """A :class:`GraphBatch`, a :class:`Graph`, a sequence of graphs or a PyG object, as a
    :class:`GraphBatch`."""
    if isinstance(obj, GraphBatch):
        return obj
    if isinstance(obj, Graph):
        return GraphBatch.from_graphs([obj])
    if isinstance(obj, (list, tuple)):
        return collate_graphs(obj)
    return from_pyg(obj)
