"""TU graph-classification datasets (MUTAG, PROTEINS, ENZYMES, NCI1, DD, ...) from local files.

Two layouts are read, found by dataset name under any root folder (the ``root`` argument or
``$SPARSELTH_DATA``):

* the TU text format (Morris et al., https://chrsmrrs.github.io/datasets): ``<N>_A.txt``
  (``"i, j"`` per line, 1-based global node ids, an edge from i to j), ``<N>_graph_indicator.txt``,
  ``<N>_graph_labels.txt``, optional ``<N>_node_labels.txt`` and ``<N>_node_attributes.txt``;
  looked up in ``root/tu/<N>/``, ``root/<N>/``, ``root/<N>/raw/`` and ``root/``;
* the GIN reference's text format (Xu et al. 2019): ``<N>.txt`` (the number of graphs, then per
  graph ``"n label"`` and n lines ``"tag k nbr_1 ... nbr_k [attributes]"``, 0-based ids within
  the graph) with its 10 folds ``10fold_idx/{train,test}_idx-<1..10>.txt``; looked up in
  ``root/gin/<N>/``, ``root/<N>/`` and ``root/``.

Features are the one-hot node labels (tags), sorted by label value; with ``use_node_attr`` the
continuous attributes come first (PyG's ``TUDataset`` order). A set without node labels (or
attributes, when asked for) gets one constant feature 1. Graph labels are renumbered 0..C-1 in
sorted order. The whole dataset is held as one :class:`~sparselth.sparse.GraphBatch`, so a
mini-batch is one vectorised :meth:`~GraphDataset.batch`.

For users with internet, :func:`download_tu` fetches ``<N>.zip`` from the TU site, checks its
sha256 and unpacks it with atomic writes. Example::

    >>> ds = load_tu("MUTAG", root="datasets")        # or load_tu("NCI1") with SPARSELTH_DATA
    >>> len(ds), ds.num_features, ds.num_classes
    (188, 7, 2)
    >>> b = ds.batch(torch.arange(32))                # GraphBatch of 32 graphs
"""

from __future__ import annotations

import io
import os
import urllib.request
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from .. import _io
from ..sparse.batch import Graph, GraphBatch, _csr
from .files import ENV_VAR

__all__ = ["GraphDataset", "load_tu", "find_tu", "download_tu", "TU_URL", "TU_SHA256"]

TU_URL = "https://www.chrsmrrs.de/graphkerneldatasets"
# sha256 of the TU site's zips, filled in only from verified downloads; download_tu warns when
# a name has none here and no ``sha256`` is passed, and fails on any mismatch.
TU_SHA256: dict = {}
_FN = "load_tu"


class GraphDataset:
    """A graph-classification dataset held as one batch of all its graphs.

    Attributes:
        name: dataset name.
        data: :class:`GraphBatch` of every graph (labels in ``data.y``).
        classes: the original graph-label values, index = class id.
        folds: for the GIN layout, 10 ``(train_index, test_index)`` int64 pairs; else None.
        layout: ``"tu"`` or ``"gin"``; ``path``: the folder read.
    """

    def __init__(self, name: str, data: GraphBatch, classes: List[float],
                 folds: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None,
                 layout: str = "tu", path: Optional[Path] = None):
        self.name, self.data, self.classes, self.folds = name, data, classes, folds
        self.layout, self.path = layout, path

    def __len__(self) -> int:
        return self.data.num_graphs

    def __getitem__(self, i: int) -> Graph:
        if isinstance(i, (int, torch.Tensor)) and not isinstance(i, bool) and \
                not -len(self) <= int(i) < len(self):
            raise IndexError(f"GraphDataset: index {int(i)} out of range for {len(self)} graphs")
        return self.data.graph(int(i))

    def __iter__(self) -> Iterator[Graph]:
        return (self.data.graph(i) for i in range(len(self)))

    @property
    def num_features(self) -> int:
        return self.data.num_features

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def y(self) -> torch.Tensor:
        return self.data.y

    def batch(self, index) -> GraphBatch:
        """The graphs ``index`` (int tensor or sequence) as one block-diagonal batch."""
        return self.data.select(torch.as_tensor(index, dtype=torch.long))

    def keep_edges(self, keep: torch.Tensor) -> "GraphDataset":
        """The dataset with only the stored edges where ``keep`` (bool ``(nnz,)``, one per
        stored entry of all graphs in dataset order) holds: pruned edges are removed from
        the stored index arrays (nodes, labels and folds unchanged)."""
        nnz = self.data.adj.nnz
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or \
                keep.shape != (nnz,):
            raise ValueError(f"GraphDataset.keep_edges: keep must be a bool tensor of shape "
                             f"({nnz},), got {keep!r}"[:200])
        data = self.data.keep_entries(keep.to(self.data.device))
        return GraphDataset(self.name, data, self.classes, self.folds, self.layout, self.path)

    def __repr__(self) -> str:
        return (f"GraphDataset({self.name!r}, graphs={len(self)}, features={self.num_features}, "
                f"classes={self.num_classes}, layout={self.layout!r})")


# --------------------------------------------------------------------------- finding files


def _root(root) -> Path:
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise FileNotFoundError(f"{_FN}: no data folder given; pass root=... or set {ENV_VAR}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{_FN}: data folder {str(root)!r} does not exist")
    return root


def find_tu(name: str, root=None, layout: str = "auto") -> Tuple[str, Path]:
    """``(layout, folder)`` of dataset ``name`` under ``root``; ``layout`` ``"auto"`` prefers the
    TU format when both are present. Raises FileNotFoundError listing the places tried."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{_FN}: name must be a dataset name such as 'MUTAG', got {name!r}")
    if layout not in ("auto", "tu", "gin"):
        raise ValueError(f"{_FN}: layout must be 'auto', 'tu' or 'gin', got {layout!r}")
    base = _root(root)
    tried = []
    for kind in (("tu", "gin") if layout == "auto" else (layout,)):
        for nm in dict.fromkeys((name, name.upper())):
            if kind == "tu":
                marker = f"{nm}_A.txt"
                cands = [base / "tu" / nm, base / nm, base / nm / "raw", base]
            else:
                marker = f"{nm}.txt"
                cands = [base / "gin" / nm, base / nm, base]
            for c in cands:
                if (c / marker).is_file():
                    return kind, c
                tried.append(str(c / marker))
    raise FileNotFoundError(f"{_FN}: dataset {name!r} not found; tried {', '.join(tried)}")


def load_tu(name: str, root=None, *, layout: str = "auto", use_node_attr: bool = False,
            download: bool = False, dtype: torch.dtype = torch.float32) -> GraphDataset:
    """Load TU dataset ``name`` from ``root`` (or ``$SPARSELTH_DATA``) in either layout (see the
    module docstring). ``download=True`` fetches it into ``root/tu/`` when it is not found."""
    if not isinstance(use_node_attr, bool):
        raise TypeError(f"{_FN}: use_node_attr must be a bool, got {use_node_attr!r}")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"{_FN}: dtype must be a floating dtype, got {dtype}")
    try:
        kind, folder = find_tu(name, root, layout)
    except FileNotFoundError:
        if not download or layout == "gin":
            raise
        download_tu(name, _root(root))
        kind, folder = find_tu(name, root, "tu")
    if kind == "tu":
        return _read_tu(name if (folder / f"{name}_A.txt").is_file() else name.upper(), folder,
                        use_node_attr, dtype)
    return _read_gin(name if (folder / f"{name}.txt").is_file() else name.upper(), folder,
                     use_node_attr, dtype)


# --------------------------------------------------------------------------- TU text format


def _table(path: Path, dtype, required: bool = True) -> Optional[np.ndarray]:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{_FN}: file {str(path)!r} does not exist")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty files
            arr = np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{_FN}: {str(path)!r} is malformed: {e}") from None
    return arr


def _one_hot_columns(labels: np.ndarray) -> torch.Tensor:
    """One-hot of every label column (values renumbered in sorted order), concatenated."""
    parts = []
    for c in range(labels.shape[1]):
        _, inv = np.unique(labels[:, c], return_inverse=True)
        k = int(inv.max()) + 1 if inv.size else 0
        oh = np.zeros((labels.shape[0], k), dtype=np.float64)
        oh[np.arange(labels.shape[0]), inv.reshape(-1)] = 1.0
        parts.append(torch.from_numpy(oh))
    return torch.cat(parts, 1) if parts else torch.zeros(labels.shape[0], 0, dtype=torch.float64)


def _labels(values: np.ndarray, path) -> Tuple[torch.Tensor, List[float]]:
    classes, inv = np.unique(values, return_inverse=True)
    return torch.from_numpy(inv.reshape(-1).astype(np.int64)), [
        int(c) if float(c).is_integer() else float(c) for c in classes]


def _assemble(name, gid, row, col, x, y_vals, path, layout, folds, dtype) -> GraphDataset:
    """Build the dataset from 0-based graph ids per node (sorted), global entries ``(row, col)``
    (rows = targets), features and raw graph labels."""
    n, B = gid.shape[0], y_vals.shape[0]
    if n and (int(gid.min()) < 0 or int(gid.max()) >= B):
        raise ValueError(f"{_FN}: {name}: graph ids outside 1..{B} (the number of graph labels)")
    if n and bool((gid[1:] < gid[:-1]).any()):
        raise ValueError(f"{_FN}: {name}: nodes must be listed graph after graph")
    gid_t = torch.from_numpy(gid.astype(np.int64))
    ptr = torch.zeros(B + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(gid_t, minlength=B), 0, out=ptr[1:])
    row_t, col_t = torch.from_numpy(row.astype(np.int64)), torch.from_numpy(col.astype(np.int64))
    if row_t.numel():
        lo, hi = int(torch.minimum(row_t, col_t).min()), int(torch.maximum(row_t, col_t).max())
        if lo < 0 or hi >= n:
            raise ValueError(f"{_FN}: {name}: edge endpoints outside the {n} nodes")
        if not bool((gid_t[row_t] == gid_t[col_t]).all()):
            raise ValueError(f"{_FN}: {name}: an edge joins two different graphs")
    key = torch.unique(row_t * max(n, 1) + col_t)                # sorted, duplicates once
    r, c = key // max(n, 1), key % max(n, 1)
    rowptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(r, minlength=n), 0, out=rowptr[1:])
    y, classes = _labels(y_vals, path)
    data = GraphBatch._trusted(x.to(dtype), _csr(rowptr, c, None, n), ptr, y)
    return GraphDataset(name, data, classes, folds, layout, path)


def _read_tu(name: str, folder: Path, use_node_attr: bool, dtype) -> GraphDataset:
    A = _table(folder / f"{name}_A.txt", np.int64)
    gi = _table(folder / f"{name}_graph_indicator.txt", np.int64)
    gl = _table(folder / f"{name}_graph_labels.txt", np.float64)
    nl = _table(folder / f"{name}_node_labels.txt", np.int64, required=False)
    na = _table(folder / f"{name}_node_attributes.txt", np.float64, required=False) \
        if use_node_attr else None
    if A.size and A.shape[1] != 2:
        raise ValueError(f"{_FN}: {name}_A.txt must hold two ids per line, got {A.shape[1]}")
    gid = gi.reshape(-1) - 1
    n = gid.shape[0]
    for nm, t in (("node_labels", nl), ("node_attributes", na)):
        if t is not None and t.shape[0] != n:
            raise ValueError(f"{_FN}: {name}_{nm}.txt has {t.shape[0]} lines for {n} nodes")
    parts = []
    if na is not None:
        parts.append(torch.from_numpy(na))
    if nl is not None:
        parts.append(_one_hot_columns(nl))
    x = torch.cat(parts, 1) if parts else torch.ones(n, 1, dtype=torch.float64)
    if x.shape[1] == 0:
        x = torch.ones(n, 1, dtype=torch.float64)
    A = A.reshape(-1, 2) - 1
    # "i, j" is an edge from i to j: row (target) j aggregates from column i
    return _assemble(name, gid, A[:, 1], A[:, 0], x, gl.reshape(-1), folder, "tu", None, dtype)


# --------------------------------------------------------------------------- GIN text format


def _read_gin(name: str, folder: Path, use_node_attr: bool, dtype) -> GraphDataset:
    path = folder / f"{name}.txt"
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{_FN}: {str(path)!r} is empty")
    width = np.fromiter((len(ln.split()) for ln in lines), dtype=np.int64, count=len(lines))
    try:
        tok = np.fromstring("\n".join(lines), dtype=np.float64, sep=" ")
    except ValueError:  # pragma: no cover - numpy versions that raise instead of stopping
        tok = np.zeros(0)
    if tok.size != int(width.sum()) or not np.isfinite(tok).all():
        raise ValueError(f"{_FN}: {str(path)!r} holds something other than numbers")
    start = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(width, out=start[1:])

    def bad(i, msg):
        return ValueError(f"{_FN}: {str(path)!r} line {i + 1}: {msg}")

    B = int(tok[0])
    if width[0] != 1 or B < 0:
        raise bad(0, "the first line must be the number of graphs")
    heads, counts = np.zeros(B, dtype=np.int64), np.zeros(B, dtype=np.int64)
    i = 1
    for g in range(B):  # one step per graph; the nodes are read vectorised below
        if i >= len(lines) or width[i] != 2:
            raise bad(i, f"expected 'n label' for graph {g}")
        heads[g], counts[g] = i, int(tok[start[i]])
        i += 1 + int(counts[g])
    if i > len(lines):
        raise bad(len(lines) - 1, f"graph {B - 1} ends before its {int(counts[-1])} nodes")
    if counts.size and (counts < 0).any():
        raise ValueError(f"{_FN}: {str(path)!r}: negative node count")
    y_vals = tok[start[heads] + 1]
    n = int(counts.sum())
    gid = np.repeat(np.arange(B), counts)
    offs = np.zeros(B, dtype=np.int64)
    np.cumsum(counts[:-1], out=offs[1:])
    local = np.arange(n) - offs[gid]
    node_line = heads[gid] + 1 + local
    s0 = start[node_line]
    tags = tok[s0].astype(np.int64)
    k = tok[s0 + 1].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    extra = width[node_line] - 2 - k
    if n and ((width[node_line] < 2).any() or (extra < 0).any()):
        j = int(node_line[np.argmax((width[node_line] < 2) | (extra < 0))])
        raise bad(j, "expected 'tag k nbr_1 ... nbr_k'")
    rows = np.repeat(np.arange(n), k)
    epos = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    nb = tok[np.repeat(s0 + 2, k) + epos].astype(np.int64)
    if nb.size and ((nb < 0) | (nb >= counts[gid[rows]])).any():
        j = int(node_line[rows[np.argmax((nb < 0) | (nb >= counts[gid[rows]]))]])
        raise bad(j, "a neighbour id lies outside its graph")
    cols = offs[gid[rows]] + nb
    x = _one_hot_columns(tags.reshape(-1, 1)) if n else torch.zeros(0, 1, dtype=torch.float64)
    if use_node_attr and n and extra.max() > 0:
        if extra.min() != extra.max():
            raise ValueError(f"{_FN}: {str(path)!r}: nodes have different attribute counts")
        a = int(extra[0])
        at = tok[(s0 + 2 + k)[:, None] + np.arange(a)[None, :]]
        x = torch.cat([torch.from_numpy(at), x], 1)
    if x.shape[1] == 0:
        x = torch.ones(x.shape[0], 1, dtype=torch.float64)
    folds = _gin_folds(folder, B)
    return _assemble(name, gid, rows, cols, x, y_vals, folder, "gin", folds, dtype)


def _gin_folds(folder: Path, B: int) -> Optional[List[Tuple[torch.Tensor, torch.Tensor]]]:
    d = folder / "10fold_idx"
    if not d.is_dir():
        return None
    folds = []
    k = 1
    while (d / f"train_idx-{k}.txt").is_file() and (d / f"test_idx-{k}.txt").is_file():
        pair = []
        for part in ("train", "test"):
            p = d / f"{part}_idx-{k}.txt"
            arr = _table(p, np.int64).reshape(-1)
            if arr.size and (arr.min() < 0 or arr.max() >= B):
                raise ValueError(f"{_FN}: {str(p)!r}: indices must lie in [0, {B})")
            pair.append(torch.from_numpy(arr.astype(np.int64)))
        folds.append((pair[0], pair[1]))
        k += 1
    return folds or None


# --------------------------------------------------------------------------- download


def download_tu(name: str, root, *, url: Optional[str] = None, sha256: Optional[str] = None,
                timeout: float = 60.0) -> Path:
    """Fetch ``<url>/<name>.zip`` (``url`` defaults to :data:`TU_URL`), check its sha256
    (``sha256`` or :data:`TU_SHA256`; a warning when neither knows it), and unpack its ``.txt``
    files into ``root/tu/<name>/`` with atomic writes (the ``<name>_A.txt`` that marks a complete
    folder last). Nothing is written when the checksum or the archive is bad. Returns the folder."""
    fn = "download_tu"
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{fn}: name must be a dataset name such as 'MUTAG', got {name!r}")
    url = TU_URL if url is None else url
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{fn}: url must be an http(s) URL, got {url!r}")
    if root is None:
        raise ValueError(f"{fn}: root must be a folder to download into, got None")
    expected = sha256 if sha256 is not None else TU_SHA256.get(name)
    if expected is not None and (not isinstance(expected, str) or len(expected) != 64):
        raise ValueError(f"{fn}: sha256 must be 64 hex digits, got {expected!r}")
    src = f"{url.rstrip('/')}/{name}.zip"
    with urllib.request.urlopen(src, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
        blob = resp.read()
    got = _io.sha256_bytes(blob)
    if expected is None:
        warnings.warn(f"{fn}: no known sha256 for {name!r}; downloaded {src} unverified "
                      f"(sha256 {got}); pass sha256=... to pin it", stacklevel=2)
    elif got != expected.lower():
        raise ValueError(f"{fn}: {src} failed its checksum: sha256 {got} != expected {expected}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(blob))
        members = [m for m in zf.infolist() if not m.is_dir()]
    except zipfile.BadZipFile as e:
        raise ValueError(f"{fn}: {src} is not a zip archive: {e}") from None
    files = {}
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{fn}: {src} holds an unsafe path {m.filename!r}")
        if p.suffix == ".txt":
            files[p.name] = zf.read(m)
    if f"{name}_A.txt" not in files:
        raise ValueError(f"{fn}: {src} holds no {name}_A.txt")
    dest = Path(root).expanduser() / "tu" / name
    marker = f"{name}_A.txt"      # written last: a folder with it is complete
    for fname in sorted(files, key=lambda f: f == marker):
        _io.atomic_write_bytes(dest / fname, files[fname])
    return dest
