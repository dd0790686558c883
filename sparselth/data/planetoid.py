"""Planetoid citation graphs (Cora, CiteSeer, PubMed) in the public split.

Reads the original Planetoid files ``ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``
(Yang et al. 2016, as used by the GCN reference implementation and PyG) from a local folder.
Those files are Python pickles; they are read with an unpickler that only accepts the few
classes the format uses (NumPy arrays, SciPy sparse matrices, ``defaultdict`` of lists), so a
tampered file cannot run code.

Example::

    >>> from sparselth.data import load_planetoid
    >>> data = load_planetoid("cora", root="datasets")   # or env SPARSELTH_DATA
    >>> data.x.shape, data.edge_index.shape, int(data.train_mask.sum())
    (torch.Size([2708, 1433]), torch.Size([2, 10556]), 140)
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import dataset_dir
from .graph import GraphData, index_masks

__all__ = ["load_planetoid", "load_planetoid_graph", "PlanetoidGraph", "planetoid_dir"]

NAMES = ("cora", "citeseer", "pubmed")
NUM_VAL = 500


@dataclass
class PlanetoidGraph:
    """Graph only: ``edge_index`` int64 ``[2, E]`` (symmetric, no self-loops, no duplicates,
    sorted by (row, col)) over ``num_nodes`` nodes."""

    name: str
    edge_index: torch.Tensor
    num_nodes: int

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.size(1))


# --------------------------------------------------------------------------- file access


def _canonical_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"load_planetoid: unknown dataset name {name!r}; expected one of {NAMES}")
    return name.lower()


def planetoid_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder holding ``ind.<name>.*``: ``root`` (or ``$SPARSELTH_DATA``) itself or its
    ``planetoid/`` subfolder. Raises FileNotFoundError naming the paths tried."""
    name = _canonical_name(name)
    return dataset_dir("load_planetoid", "planetoid", f"ind.{name}.graph", root)


def _allowed_global(module: str, qualname: str):
    """The classes/functions the Planetoid pickles reference, and nothing else."""
    if module in ("builtins", "__builtin__") and qualname in (
        "list",
        "dict",
        "set",
        "tuple",
        "int",
        "float",
    ):
        import builtins

        return getattr(builtins, qualname)
    if (
        module == "_codecs" and qualname == "encode"
    ):  # bytes in protocol-2 pickles written by Python 3
        import codecs

        return codecs.encode
    if module == "collections" and qualname in ("defaultdict", "OrderedDict"):
        import collections

        return getattr(collections, qualname)
    if module == "numpy" and qualname in ("ndarray", "dtype"):
        return getattr(np, qualname)
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and qualname in (
        "_reconstruct",
        "scalar",
    ):
        for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(importlib.import_module(mod), qualname)
            except (ImportError, AttributeError):
                continue
    if module.startswith("scipy.sparse") and qualname in (
        "csr_matrix",
        "csc_matrix",
        "coo_matrix",
        "lil_matrix",
        "dok_matrix",
    ):
        import scipy.sparse

        return getattr(scipy.sparse, qualname)  # the public names: no deprecated-module warning
    return None


class _PlanetoidUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: not part of the Planetoid format"
            )
        return obj


def _read_pickle(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"load_planetoid: missing file {str(path)!r}")
    try:
        with open(path, "rb") as f:
            return _PlanetoidUnpickler(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
    ) as e:
        raise ValueError(
            f"load_planetoid: cannot read {str(path)!r} as a Planetoid pickle: {e}"
        ) from e


def _read_test_index(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"load_planetoid: missing file {str(path)!r}")
    try:
        idx = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    except ValueError as e:
        raise ValueError(
            f"load_planetoid: {str(path)!r} must hold one integer per line: {e}"
        ) from e
    if idx.size == 0 or idx.min() < 0:
        raise ValueError(f"load_planetoid: {str(path)!r} holds no valid (non-negative) node ids")
    return idx


def _dense(m, path: Path) -> np.ndarray:
    """SciPy sparse or NumPy 2-D -> float32 dense array."""
    if hasattr(m, "toarray"):
        m = m.toarray()
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(
            f"load_planetoid: {str(path)!r} should hold a 2-D matrix, got shape {m.shape}"
        )
    return m.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- graph


def _edge_index_from_dict(graph, num_nodes: int, path: Path) -> torch.Tensor:
    """Adjacency-list dict -> int64 [2, E], symmetrised, self-loops and duplicates removed,
    sorted by (row, col)."""
    if not isinstance(graph, dict):
        raise ValueError(
            f"load_planetoid: {str(path)!r} should hold a dict of adjacency lists, "
            f"got {type(graph)}"
        )
    keys = np.fromiter(graph.keys(), dtype=np.int64, count=len(graph))
    lengths = np.fromiter((len(v) for v in graph.values()), dtype=np.int64, count=len(graph))
    cols = np.fromiter(
        (c for v in graph.values() for c in v), dtype=np.int64, count=int(lengths.sum())
    )
    rows = np.repeat(keys, lengths)
    if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= num_nodes):
        raise ValueError(f"load_planetoid: {str(path)!r} has node ids outside [0, {num_nodes})")
    row = torch.from_numpy(np.concatenate([rows, cols]))
    col = torch.from_numpy(np.concatenate([cols, rows]))
    keep = row != col
    key = torch.unique(row[keep] * num_nodes + col[keep])  # sorted, duplicate-free
    return torch.stack([key // num_nodes, key % num_nodes])


def _graph_num_nodes(graph) -> int:
    n = len(graph)
    if graph:
        n = max(
            n,
            max(graph.keys()) + 1,
            max((max(v) for v in graph.values() if len(v)), default=-1) + 1,
        )
    return int(n)


def load_planetoid_graph(name: str, root: str | os.PathLike | None = None) -> PlanetoidGraph:
    """Read only the graph of a Planetoid dataset (for kernels and benchmarks).

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"`` (case-insensitive).
        root: folder holding ``planetoid/`` or the ``ind.<name>.*`` files;
            default ``$SPARSELTH_DATA``.

    Returns:
        :class:`PlanetoidGraph` with the same ``edge_index`` and ``num_nodes`` as
        :func:`load_planetoid` (Cora: 2708 nodes, 10556 directed edges).
    """
    name = _canonical_name(name)
    folder = planetoid_dir(name, root)
    gpath = folder / f"ind.{name}.graph"
    graph = _read_pickle(gpath)
    test_index = _read_test_index(folder / f"ind.{name}.test.index")
    n = max(_graph_num_nodes(graph) if isinstance(graph, dict) else 0, int(test_index.max()) + 1)
    ally_path = folder / f"ind.{name}.ally"
    if ally_path.is_file():
        n = max(n, len(_read_pickle(ally_path)))
    return PlanetoidGraph(name, _edge_index_from_dict(graph, n, gpath), n)


# --------------------------------------------------------------------------- full dataset


def load_planetoid(
    name: str, root: str | os.PathLike | None = None, *, normalize_features: bool = True
) -> GraphData:
    """Load Cora, CiteSeer or PubMed with the public Planetoid split.

    Follows the GCN reference (Kipf & Welling) and PyG: test nodes sit at the ids in
    ``ind.<name>.test.index``; CiteSeer's isolated test nodes that are missing from ``tx`` get
    zero feature rows (and label 0); features are row-normalised (each row sums to 1, zero rows
    stay zero); the graph is symmetric, without self-loops or duplicate edges.

    Split: train = the first ``len(ind.<name>.y)`` nodes (20 per class), val = the next 500
    (fewer only in files too small to hold them before the first test node), test = the nodes
    in ``test.index`` (1000).

    PubMed: ``ind.pubmed.allx`` may be absent (some copies of the dataset lack it). Then the
    features of nodes outside ``x`` and ``tx`` are zeros, ``missing_features=True`` and a
    warning is issued; graph, labels and split are complete.

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"`` (case-insensitive).
        root: folder holding ``planetoid/`` or the ``ind.<name>.*`` files; default
            ``$SPARSELTH_DATA``.
        normalize_features: row-normalise ``x`` as the GCN reference does (default True).

    Returns:
        :class:`GraphData` (x float32 [N, F], y int64 [N], edge_index int64 [2, E], bool masks).

    Raises:
        FileNotFoundError: folder or a required file absent (the message names the path).
        ValueError: unknown name, or a file that does not hold what the format says.
    """
    name = _canonical_name(name)
    folder = planetoid_dir(name, root)

    def path(suffix):
        return folder / f"ind.{name}.{suffix}"

    x_train = _dense(_read_pickle(path("x")), path("x"))
    y_train = np.asarray(_read_pickle(path("y")))
    tx = _dense(_read_pickle(path("tx")), path("tx"))
    ty = np.asarray(_read_pickle(path("ty")))
    ally = np.asarray(_read_pickle(path("ally")))
    graph = _read_pickle(path("graph"))
    test_index = _read_test_index(path("test.index"))
    allx = _dense(_read_pickle(path("allx")), path("allx")) if path("allx").is_file() else None

    for arr, suffix in ((y_train, "y"), (ty, "ty"), (ally, "ally")):
        if arr.ndim != 2:
            raise ValueError(
                f"load_planetoid: {str(path(suffix))!r} should hold one-hot labels [N, C], "
                f"got {arr.shape}"
            )
    if len(tx) != len(test_index) or len(ty) != len(test_index):
        raise ValueError(
            f"load_planetoid: {len(test_index)} test ids in {str(path('test.index'))!r} but tx has "
            f"{len(tx)} rows and ty {len(ty)}"
        )
    num_classes = ally.shape[1]
    num_feats = tx.shape[1]
    n = max(
        len(ally),
        int(test_index.max()) + 1,
        _graph_num_nodes(graph) if isinstance(graph, dict) else 0,
    )

    x = np.zeros((n, num_feats), dtype=np.float32)
    missing = False
    if allx is not None:
        x[: len(allx)] = allx
    else:
        x[: len(x_train)] = x_train  # x is the first rows of allx
        missing = True
    x[test_index] = tx  # row i of tx belongs to node test_index[i] (CiteSeer gaps stay zero)

    y_onehot = np.zeros((n, num_classes), dtype=np.float32)
    y_onehot[: len(ally)] = ally
    y_onehot[test_index] = ty
    y = y_onehot.argmax(axis=1).astype(np.int64)

    if missing:
        known = np.zeros(n, dtype=bool)
        known[: len(x_train)] = True
        known[test_index] = True
        warnings.warn(
            f"load_planetoid({name!r}): {str(path('allx'))!r} not found; the features of "
            f"{int((~known).sum())} of {n} nodes (outside x and tx) are zeros "
            "(missing_features=True). Graph, labels and split are complete; accuracy on these "
            "features is not comparable to papers.",
            UserWarning,
            stacklevel=2,
        )

    if normalize_features:
        rowsum = x.sum(axis=1, dtype=np.float64)
        with np.errstate(divide="ignore"):
            r_inv = np.where(rowsum != 0, 1.0 / rowsum, 0.0)
        x = (x * r_inv[:, None]).astype(np.float32)

    num_train = len(y_train)
    val_stop = min(num_train + NUM_VAL, int(test_index.min()), n)  # only tiny files need the clamp
    split = index_masks(n, slice(0, num_train), slice(num_train, val_stop),
                        torch.from_numpy(test_index))
    edge_index = _edge_index_from_dict(graph, n, path("graph"))
    x_t, y_t = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
    return GraphData(name, x_t, y_t, edge_index, *split, num_classes=int(num_classes),
                     missing_features=missing, info={"source": str(folder)})
