"""The CSR matrix type every sparselth kernel consumes.

A ``CSR`` holds ``rowptr`` (rows + 1), ``col`` (nnz) and optional ``val`` (nnz; ``None`` means a
binary pattern whose stored entries are all one). Columns are sorted within each row and free of
duplicates. Indices are int32 when every index and the nnz fit (halving index bytes), int64
otherwise. Validation (O(nnz)) happens once, at construction, always: every public way to
build a ``CSR`` checks the structure, so the kernels can trust it (only the library's own
builders, whose output is valid by construction, skip the check). The transpose is computed
once and cached, with the csr-to-csc permutation backward passes need. The product with a dense
matrix is :func:`sparselth.ops.spmm` (``spmm(A, X)``, also ``A @ X`` once ``sparselth.ops`` is
imported, as ``import sparselth`` does; ``A @ B`` of two CSRs is :func:`sparselth.ops.spgemm`).
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Tuple

import torch

Tensor = torch.Tensor

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
# rowptr holds rows + 1 int64 entries, and a tensor's size in bytes must fit in int64
_MAX_ROWS = _INT64_MAX // 8 - 1
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _pick_index_dtype(num_rows: int, num_cols: int, nnz: int, index_dtype=None) -> torch.dtype:
    if index_dtype is not None:
        if index_dtype not in (torch.int32, torch.int64):
            raise TypeError(f"CSR: index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
        if index_dtype == torch.int32 and max(num_rows, num_cols, nnz) > _INT32_MAX:
            raise ValueError("CSR: index_dtype=torch.int32 cannot hold these sizes "
                             f"(rows={num_rows}, cols={num_cols}, nnz={nnz})")
        return index_dtype
    return torch.int32 if max(num_rows, num_cols, nnz) <= _INT32_MAX else torch.int64


def _check_shape(shape) -> Tuple[int, int]:
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2:
        raise ValueError(f"CSR: shape must be a pair (rows, cols), got {shape!r}")
    for s in shape:
        if isinstance(s, (bool, float, str)) or (isinstance(s, Tensor) and (
                s.dim() != 0 or s.is_floating_point() or s.dtype == torch.bool)):
            raise TypeError(f"CSR: shape must hold two ints, got {tuple(shape)!r}")
    rows, cols = (int(s) for s in shape)
    if rows < 0 or cols < 0:
        raise ValueError(f"CSR: shape must be non-negative, got {tuple(shape)}")
    if rows > _MAX_ROWS:
        raise ValueError(f"CSR: shape[0] (rows) must be at most {_MAX_ROWS} (rowptr holds rows + 1 "
                         f"int64 entries), got shape {(rows, cols)}")
    if cols > _INT64_MAX:
        raise ValueError(f"CSR: shape[1] (cols) must fit in int64, got shape {(rows, cols)}")
    return rows, cols


def _legacy_kwargs(op: str, kwargs: dict) -> None:
    """``validate=`` of older releases: accepted, but the structure is always checked."""
    unknown = sorted(set(kwargs) - {"validate"})
    if unknown:
        raise TypeError(f"{op}: unexpected keyword argument {unknown[0]!r}")
    if not kwargs.get("validate", True):
        warnings.warn(f"{op}: validate=False is ignored: the structure is always checked",
                      DeprecationWarning, stacklevel=3)


def check_structure(op: str, rowptr: Tensor, col: Tensor, val: Optional[Tensor],
                    shape: Tuple[int, int], names: Tuple[str, str, str] = ("rowptr", "col", "val")
                    ) -> None:
    """Raise ``TypeError``/``ValueError`` (naming the offending tensor by ``names``) unless
    ``(rowptr, col, val)`` is a valid CSR of ``shape``: the O(nnz) check every public
    constructor runs and that a loaded state dict goes through."""
    n_rp, n_col, n_val = names
    rows, cols = _check_shape(shape)
    for name, t in ((n_rp, rowptr), (n_col, col)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{op}: {name} must be int32 or int64, got {t.dtype}")
        if t.layout != torch.strided:
            raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got {t.layout}")
    if rowptr.dim() != 1 or rowptr.numel() != rows + 1:
        raise ValueError(f"{op}: {n_rp} must have shape ({rows + 1},) for {rows} rows, "
                         f"got {tuple(rowptr.shape)}")
    if col.dim() != 1:
        raise ValueError(f"{op}: {n_col} must be 1-D, got shape {tuple(col.shape)}")
    if rowptr.dtype != col.dtype:
        raise TypeError(f"{op}: {n_rp} and {n_col} must share a dtype, got {rowptr.dtype} and "
                        f"{col.dtype}")
    if rowptr.device != col.device:
        raise ValueError(f"{op}: {n_rp} is on {rowptr.device} but {n_col} is on {col.device}")
    if val is not None:
        if not isinstance(val, Tensor):
            raise TypeError(f"{op}: {n_val} must be a torch.Tensor or None, got "
                            f"{type(val).__name__}")
        if val.dim() != 1 or val.numel() != col.numel():
            raise ValueError(f"{op}: {n_val} must have shape ({col.numel()},) like {n_col}, "
                             f"got {tuple(val.shape)}")
        if val.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{op}: {n_val} must be a floating dtype, got {val.dtype}")
        if val.device != col.device:
            raise ValueError(f"{op}: {n_val} is on {val.device} but {n_col} is on {col.device}")
    nnz = col.numel()
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != nnz:
        raise ValueError(f"{op}: {n_rp} must start at 0 and end at nnz={nnz} (the length of "
                         f"{n_col}), got {int(rowptr[0])} and {int(rowptr[-1])}")
    if rows > 0 and bool((rowptr[1:] < rowptr[:-1]).any()):
        raise ValueError(f"{op}: {n_rp} must be non-decreasing")
    if nnz:
        lo, hi = int(col.min()), int(col.max())
        if lo < 0 or hi >= cols:
            raise ValueError(f"{op}: {n_col} indices must lie in [0, {cols}), got min {lo} "
                             f"max {hi}")
        # Within a row, columns strictly increase: a decrease is allowed only at a row start.
        step = col[1:] > col[:-1]
        row_start = torch.zeros(nnz, dtype=torch.bool, device=col.device)
        starts = rowptr[1:-1].long()
        starts = starts[starts < nnz]
        row_start[starts] = True
        if not bool((step | row_start[1:]).all()):
            raise ValueError(f"{op}: {n_col} must be sorted and free of duplicates within each "
                             "row (use CSR.from_edge_index or from_coo to sort and sum)")


def _unique_pairs(row: Tensor, col: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Distinct ``(row, col)`` pairs in row-major order and the position of every input pair
    among them, by two stable sorts (col, then row): no ``row * cols + col`` key, which
    overflows int64 for shapes beyond ``2**63`` entries."""
    n = row.numel()
    order = torch.sort(col, stable=True).indices
    order = order[torch.sort(row[order], stable=True).indices]
    rs, cs = row[order], col[order]
    new = torch.ones(n, dtype=torch.bool, device=row.device)
    if n > 1:
        new[1:] = (rs[1:] != rs[:-1]) | (cs[1:] != cs[:-1])
    inverse = torch.empty(n, dtype=torch.long, device=row.device)
    inverse[order] = torch.cumsum(new.long(), 0) - 1
    return rs[new], cs[new], inverse


def _versions(rowptr: Tensor, col: Tensor) -> Optional[Tuple[int, int]]:
    if _tracing(rowptr) or rowptr.is_inference() or col.is_inference():
        return None   # traced graphs and inference tensors have no version counters to read
    return (rowptr._version, col._version)


def _tracing(t: Tensor) -> bool:
    return t.is_meta or torch.compiler.is_compiling()


class CSR:
    """A sparse matrix in compressed sparse row form.

    Args:
        rowptr: ``(rows + 1,)`` int32/int64, non-decreasing, ``rowptr[0] == 0``,
            ``rowptr[-1] == nnz``.
        col: ``(nnz,)`` column of each stored entry, same dtype and device as ``rowptr``,
            sorted and unique within each row.
        val: ``(nnz,)`` floating values, or ``None`` for a binary pattern (all ones).
        shape: ``(rows, cols)``; default ``(rowptr.numel() - 1, col.max() + 1)``.

    The structure is checked (O(nnz)) and a ``ValueError``/``TypeError`` names what is wrong:
    no ``CSR`` reaches a kernel unchecked. Products: ``A @ X`` = ``spmm(A, X)``
    (:func:`sparselth.ops.spmm`), ``A @ B`` = ``spgemm(A, B)`` (dense result).

    Values built from a tensor that requires grad (``from_coo``/``from_edge_index`` with
    ``values=v``) are re-read from ``v`` at every use (``A.val`` gathers them in CSR order), so
    one ``A`` serves any number of optimisation steps, each seeing the updated ``v``.

    Example::

        >>> A = CSR.from_edge_index(torch.tensor([[0, 1, 1], [1, 0, 2]]), num_nodes=3)
        >>> A.to_dense()
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 0., 0.]])
    """

    __slots__ = ("rowptr", "col", "_val", "_val_fn", "_val_dtype", "shape", "_t", "_perm", "_row",
                 "_seen")

    def __init__(self, rowptr: Tensor, col: Tensor, val: Optional[Tensor] = None,
                 shape: Optional[Sequence[int]] = None, **legacy):
        if legacy:
            _legacy_kwargs("CSR", legacy)
        if not isinstance(rowptr, Tensor):
            raise TypeError(f"CSR: rowptr must be a torch.Tensor, got {type(rowptr).__name__}")
        if not isinstance(col, Tensor):
            raise TypeError(f"CSR: col must be a torch.Tensor, got {type(col).__name__}")
        if val is not None and not isinstance(val, Tensor):
            raise TypeError(f"CSR: val must be a torch.Tensor or None, got {type(val).__name__}")
        if shape is None:
            if rowptr.dim() != 1 or rowptr.numel() < 1:
                raise ValueError(f"CSR: rowptr must be 1-D with at least one entry, got shape "
                                 f"{tuple(rowptr.shape)}")
            if col.dim() != 1 or col.dtype not in (torch.int32, torch.int64):
                raise ValueError("CSR: shape is needed unless col is a 1-D int32/int64 tensor")
            rows = rowptr.numel() - 1
            cols = int(col.max()) + 1 if col.numel() else 0
            shape = (rows, cols)
        self._init(rowptr, col, val, _check_shape(shape))
        self._validate()

    def _init(self, rowptr: Tensor, col: Tensor, val: Optional[Tensor], shape) -> None:
        self.shape = shape
        self.rowptr = rowptr
        self.col = col
        self._val = val
        self._val_fn: Optional[Callable[[], Tensor]] = None
        self._val_dtype: Optional[torch.dtype] = None
        self._t: Optional[CSR] = None
        self._perm: Optional[Tensor] = None
        self._row: Optional[Tensor] = None
        self._seen = _versions(rowptr, col)

    @classmethod
    def _trusted(cls, rowptr: Tensor, col: Tensor, val: Optional[Tensor],
                 shape: Tuple[int, int]) -> "CSR":
        """A CSR from parts already known to be valid (the library's own builders): no
        O(nnz) check. Never for structures that come from outside (files, state dicts)."""
        out = cls.__new__(cls)
        out._init(rowptr, col, val, (int(shape[0]), int(shape[1])))
        return out

    @classmethod
    def _lazy(cls, rowptr: Tensor, col: Tensor, fn: Callable[[], Tensor], dtype: torch.dtype,
              shape: Tuple[int, int]) -> "CSR":
        """A trusted CSR whose values are ``fn()``, recomputed at every read of ``val``."""
        out = cls._trusted(rowptr, col, None, shape)
        out._val_fn, out._val_dtype = fn, dtype
        return out

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        check_structure("CSR", self.rowptr, self.col, self.val, self.shape)
        self._seen = _versions(self.rowptr, self.col)

    def _recheck(self) -> None:
        """Validate again when ``rowptr`` or ``col`` changed in place since the last check
        (two version counters compared per call): the kernels never read a structure that
        was edited into an invalid one after it was built."""
        now = _versions(self.rowptr, self.col)
        if now is not None and self._seen != now:
            self._validate()

    def __reduce__(self):
        """Pickle (and ``torch.load(weights_only=True)``) through the validating constructor:
        a saved CSR is checked again when it is loaded; cached transposes are rebuilt."""
        val = self.val
        if self._val_fn is not None and val is not None:
            val = val.detach()   # values computed from a tensor: saved as they are now
        return (CSR, (self.rowptr, self.col, val, tuple(self.shape)))

    @property
    def val(self) -> Optional[Tensor]:
        """``(nnz,)`` stored values in CSR order, or ``None`` for a binary pattern."""
        fn = self._val_fn
        return self._val if fn is None else fn()

    # ------------------------------------------------------------------ basics
    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """Dtype of the values, or ``None`` for a binary pattern."""
        if self._val_fn is not None:
            return self._val_dtype
        return None if self._val is None else self._val.dtype

    @property
    def index_dtype(self) -> torch.dtype:
        return self.col.dtype

    def __repr__(self) -> str:
        kind = "pattern" if self.dtype is None else str(self.dtype).replace("torch.", "")
        return (f"CSR(shape={self.shape}, nnz={self.nnz}, values={kind}, "
                f"index={str(self.col.dtype).replace('torch.', '')}, device={self.device})")

    def row(self) -> Tensor:
        """Row index (int64) of every stored entry, in CSR order. Cached (not while traced:
        a traced graph must not leave its tensors on the caller's object)."""
        if self._row is not None:
            return self._row
        counts = self.rowptr[1:] - self.rowptr[:-1]
        row = torch.repeat_interleave(torch.arange(self.shape[0], device=self.device),
                                      counts.long(), output_size=self.nnz)
        if not torch.compiler.is_compiling():
            self._row = row
        return row

    def values(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Stored values, materialising ones for a binary pattern."""
        val = self.val
        if val is not None:
            return val if dtype is None else val.to(dtype)
        return torch.ones(self.nnz, dtype=dtype or torch.get_default_dtype(), device=self.device)

    def with_values(self, val: Optional[Tensor]) -> "CSR":
        """The same pattern (and cached transpose structure) with new values."""
        if val is not None:
            if not isinstance(val, Tensor):
                raise TypeError(f"CSR.with_values: val must be a tensor, got {type(val).__name__}")
            if val.dim() != 1 or val.numel() != self.nnz:
                raise ValueError(f"CSR.with_values: val must have shape ({self.nnz},), "
                                 f"got {tuple(val.shape)}")
            if val.device != self.device:
                raise ValueError(f"CSR.with_values: val is on {val.device}, the pattern on {self.device}")
            if val.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"CSR.with_values: val must be a floating dtype, got {val.dtype}")
        out = CSR._trusted(self.rowptr, self.col, val, self.shape)
        out._row = self._row
        if self._t is not None:
            tval = None if val is None else val[self._perm]
            out._t = CSR._trusted(self._t.rowptr, self._t.col, tval, self._t.shape)
            out._t._t = out
            out._t._perm = self._t._perm
            out._perm = self._perm
        return out

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "CSR":
        """Move to ``device`` and/or cast the values to ``dtype``."""
        rowptr = self.rowptr.to(device) if device is not None else self.rowptr
        col = self.col.to(device) if device is not None else self.col
        fn = self._val_fn
        if fn is not None:   # still re-read at every use, now moved/cast
            dev, new_dtype = col.device, dtype if dtype is not None else self._val_dtype
            return CSR._lazy(rowptr, col, lambda: fn().to(device=dev, dtype=new_dtype),
                             new_dtype, self.shape)
        val = self._val
        if val is not None:
            val = val.to(device=device if device is not None else val.device,
                         dtype=dtype if dtype is not None else val.dtype)
        return CSR._trusted(rowptr, col, val, self.shape)

    def index_as(self, index_dtype: torch.dtype) -> "CSR":
        """The same matrix with int32 or int64 indices."""
        _pick_index_dtype(*self.shape, self.nnz, index_dtype)
        rowptr, col = self.rowptr.to(index_dtype), self.col.to(index_dtype)
        if self._val_fn is not None:
            return CSR._lazy(rowptr, col, self._val_fn, self._val_dtype, self.shape)
        return CSR._trusted(rowptr, col, self._val, self.shape)

    # ------------------------------------------------------------------ transpose
    def csr_to_csc_perm(self) -> Tensor:
        """``perm`` (int64, nnz) such that ``self.t().val == self.val[perm]``. Cached."""
        if self._t is not None:
            return self._perm
        return self._transpose()[1]

    def t(self) -> "CSR":
        """The transpose, computed once and cached (with its permutation; not cached while
        traced, so a traced graph leaves no tensors on the caller's object)."""
        if self._t is not None:
            return self._t
        return self._transpose()[0]

    def _transpose(self) -> Tuple["CSR", Tensor]:
        rows, cols = self.shape
        if cols > _MAX_ROWS:
            raise ValueError(f"CSR.t: the transpose of shape {self.shape} would have "
                             f"{cols} rows, more than a rowptr can hold ({_MAX_ROWS})")
        col = self.col.long()
        # A stable sort by column keeps rows ascending within each column.
        perm = torch.sort(col, stable=True).indices
        counts = torch.bincount(col, minlength=cols)
        t_rowptr = torch.zeros(cols + 1, dtype=torch.long, device=self.device)
        torch.cumsum(counts, 0, out=t_rowptr[1:])
        t_col = self.row()[perm]
        idx = self.col.dtype
        fn = self._val_fn
        if fn is not None:
            t = CSR._lazy(t_rowptr.to(idx), t_col.to(idx),
                          lambda: fn().index_select(0, perm), self._val_dtype, (cols, rows))
        else:
            t_val = None if self._val is None else self._val[perm]
            t = CSR._trusted(t_rowptr.to(idx), t_col.to(idx), t_val, (cols, rows))
        if not torch.compiler.is_compiling():
            t._t, t._perm = self, torch.argsort(perm)
            self._t, self._perm = t, perm
        return t, perm

    # ------------------------------------------------------------------ conversions
    def to_dense(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """The dense ``(rows, cols)`` matrix."""
        val = self.values(dtype)
        out = torch.zeros(self.shape, dtype=val.dtype, device=self.device)
        out.index_put_((self.row(), self.col.long()), val, accumulate=True)
        return out

    def to_torch(self, layout=torch.sparse_csr) -> Tensor:
        """A ``torch.sparse_csr`` (default) or ``torch.sparse_coo`` tensor (int64 indices)."""
        val = self.values()
        if layout == torch.sparse_csr:
            return torch.sparse_csr_tensor(self.rowptr.long(), self.col.long(), val, self.shape)
        if layout == torch.sparse_coo:
            idx = torch.stack([self.row(), self.col.long()])
            return torch.sparse_coo_tensor(idx, val, self.shape, is_coalesced=True)
        raise ValueError(f"CSR.to_torch: layout must be torch.sparse_csr or torch.sparse_coo, got {layout}")

    def to_scipy(self):
        """A ``scipy.sparse.csr_matrix`` (CPU)."""
        import scipy.sparse as sp
        val = self.values().detach().cpu().numpy()
        return sp.csr_matrix((val, self.col.cpu().numpy(), self.rowptr.cpu().numpy()), shape=self.shape)

    def to_edge_index(self) -> Tensor:
        """``(2, nnz)`` int64 ``[row, col]``."""
        return torch.stack([self.row(), self.col.long()])

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_coo(cls, row: Tensor, col: Tensor, values: Optional[Tensor], shape: Sequence[int],
                 index_dtype: Optional[torch.dtype] = None, _arg: str = "edge_index") -> "CSR":
        """Build from coordinates: sorts, and sums duplicates.

        A binary pattern (``values=None``) with duplicate coordinates gets their counts as
        values (``A @ X`` then counts a repeated edge twice, as an edge list would).
        """
        rows, cols = _check_shape(shape)
        for name, t in (("row", row), ("col", col)):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
                raise TypeError(f"CSR: {_arg} must hold integer indices, got {t.dtype}")
        if row.numel() != col.numel():
            raise ValueError(f"CSR: {_arg} rows and cols differ in length: {row.numel()} vs {col.numel()}")
        if row.device != col.device:
            raise ValueError(f"CSR: {_arg} rows on {row.device}, cols on {col.device}")
        if values is not None:
            if not isinstance(values, Tensor):
                raise TypeError(f"CSR: values must be a tensor or None, got {type(values).__name__}")
            if values.dim() != 1 or values.numel() != row.numel():
                raise ValueError(f"CSR: values must have shape ({row.numel()},), got {tuple(values.shape)}")
            if values.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"CSR: values must be floating, got {values.dtype}")
            if values.device != row.device:
                raise ValueError(f"CSR: values on {values.device}, indices on {row.device}")
        row, col = row.long(), col.long()
        if row.numel():
            if int(row.min()) < 0 or int(col.min()) < 0:
                raise ValueError(f"CSR: {_arg} has negative indices")
            if int(row.max()) >= rows:
                raise ValueError(f"CSR: {_arg} row index {int(row.max())} out of range for {rows} rows")
            if int(col.max()) >= cols:
                raise ValueError(f"CSR: {_arg} col index {int(col.max())} out of range for {cols} cols")
        if rows * max(cols, 1) - 1 <= _INT64_MAX:   # the key row * cols + col fits in int64
            key = row * max(cols, 1) + col
            uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
            r = torch.div(uniq, max(cols, 1), rounding_mode="floor")
            c = uniq - r * max(cols, 1)
        else:
            r, c, inverse = _unique_pairs(row, col)
        nu, device = r.numel(), row.device
        dup = nu != row.numel()
        val = None
        if values is None:
            if dup:   # a repeated coordinate of a pattern counts once per occurrence
                val = torch.zeros(nu, dtype=torch.get_default_dtype(), device=device)
                val.index_add_(0, inverse, torch.ones(inverse.numel(), dtype=val.dtype,
                                                      device=device))
        elif dup:
            def summed(values=values, inverse=inverse, nu=nu):
                return torch.zeros(nu, dtype=values.dtype, device=values.device).index_add(
                    0, inverse, values)
            fn = summed
        else:
            perm = torch.empty_like(inverse).scatter_(
                0, inverse, torch.arange(inverse.numel(), device=device))
            fn = lambda values=values, perm=perm: values.index_select(0, perm)  # noqa: E731
        counts = torch.bincount(r, minlength=rows)
        rowptr = torch.zeros(rows + 1, dtype=torch.long, device=device)
        torch.cumsum(counts, 0, out=rowptr[1:])
        idx = _pick_index_dtype(rows, cols, nu, index_dtype)
        if values is None:
            return cls._trusted(rowptr.to(idx), c.to(idx), val, (rows, cols))
        if values.requires_grad:   # re-read values at every use: one CSR, many backward passes
            return cls._lazy(rowptr.to(idx), c.to(idx), fn, values.dtype, (rows, cols))
        return cls._trusted(rowptr.to(idx), c.to(idx), fn(), (rows, cols))

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: Optional[int] = None,
                        values: Optional[Tensor] = None, *, num_cols: Optional[int] = None,
                        index_dtype: Optional[torch.dtype] = None) -> "CSR":
        """From a ``(2, E)`` edge list: ``A[edge_index[0, e], edge_index[1, e]] = values[e]``.

        ``num_nodes`` defaults to ``max index + 1``; ``num_cols`` (bipartite) to ``num_nodes``.
        Duplicates are summed, entries sorted. For PyG's ``[source, target]`` convention,
        ``from_edge_index(edge_index.flip(0))`` is the ``adj_t`` that aggregates at targets.
        """
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"CSR.from_edge_index: edge_index must be a tensor, got {type(edge_index).__name__}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"CSR.from_edge_index: edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool:
            raise TypeError(f"CSR.from_edge_index: edge_index must be integer, got {edge_index.dtype}")
        if num_nodes is None:
            num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
        if num_nodes < 0:
            raise ValueError(f"CSR.from_edge_index: num_nodes must be >= 0, got {num_nodes}")
        shape = (int(num_nodes), int(num_cols if num_cols is not None else num_nodes))
        return cls.from_coo(edge_index[0], edge_index[1], values, shape, index_dtype)

    @classmethod
    def from_dense(cls, dense: Tensor, keep_values: bool = True) -> "CSR":
        """From a dense 2-D tensor; zeros are not stored. ``keep_values=False`` gives a pattern."""
        if not isinstance(dense, Tensor):
            raise TypeError(f"CSR.from_dense: dense must be a tensor, got {type(dense).__name__}")
        if dense.dim() != 2:
            raise ValueError(f"CSR.from_dense: dense must be 2-D, got shape {tuple(dense.shape)}")
        row, col = dense.nonzero(as_tuple=True)
        val = None
        if keep_values:
            val = dense[row, col]
            if not val.dtype.is_floating_point:
                val = val.to(torch.get_default_dtype())
        return cls.from_coo(row, col, val, tuple(dense.shape), _arg="dense")

    @classmethod
    def from_scipy(cls, matrix, dtype: Optional[torch.dtype] = None) -> "CSR":
        """From any ``scipy.sparse`` matrix (duplicates summed, indices sorted)."""
        import numpy as np
        import scipy.sparse as sp
        if not sp.issparse(matrix):
            raise TypeError(f"CSR.from_scipy: matrix must be a scipy.sparse matrix, got {type(matrix).__name__}")
        m = sp.csr_matrix(matrix, copy=True)
        m.sum_duplicates()
        m.sort_indices()
        rows, cols = m.shape
        idx = _pick_index_dtype(rows, cols, m.nnz)
        data = torch.from_numpy(np.ascontiguousarray(m.data))
        if not data.dtype.is_floating_point:
            data = data.to(torch.get_default_dtype())
        if dtype is not None:
            data = data.to(dtype)
        return cls(torch.from_numpy(m.indptr.astype(np.int64)).to(idx),
                   torch.from_numpy(m.indices.astype(np.int64)).to(idx), data, (rows, cols))

    @classmethod
    def from_torch(cls, tensor: Tensor) -> "CSR":
        """From a 2-D torch sparse tensor (``sparse_coo``, ``sparse_csr``, ``sparse_csc``,
        ``sparse_bsr``, ``sparse_bsc``) or a dense one. Block layouts are expanded entry by
        entry (a stored block keeps its zeros as stored entries); duplicates are summed."""
        op = "CSR.from_torch"
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{op}: tensor must be a torch tensor, got {type(tensor).__name__}")
        if tensor.dim() != 2:
            raise ValueError(f"{op}: tensor must be 2-D, got {tensor.dim()}-D")
        layout = tensor.layout
        if layout == torch.strided:
            return cls.from_dense(tensor)
        if layout not in (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr,
                          torch.sparse_bsc):
            raise ValueError(f"{op}: unsupported layout {layout}")
        if tensor.dense_dim() != 0:
            raise ValueError(f"{op}: hybrid sparse tensors (dense_dim={tensor.dense_dim()}) are "
                             "not supported: each stored entry must be a scalar")
        shape = tuple(tensor.shape)
        if layout == torch.sparse_coo:
            t = tensor.coalesce()
            return cls.from_coo(t.indices()[0], t.indices()[1], t.values(), shape, _arg="tensor")
        if layout in (torch.sparse_csr, torch.sparse_bsr):
            ptr, idx = tensor.crow_indices(), tensor.col_indices()
        else:
            ptr, idx = tensor.ccol_indices(), tensor.row_indices()
        outer = torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=ptr.device),
                                        (ptr[1:] - ptr[:-1]).long(), output_size=idx.numel())
        major, minor = (outer, idx.long()) if layout in (torch.sparse_csr, torch.sparse_bsr) \
            else (idx.long(), outer)
        val = tensor.values()
        if layout in (torch.sparse_bsr, torch.sparse_bsc):
            # block b at block coordinates (major[b], minor[b]) holds val[b] (bh, bw)
            nb, bh, bw = val.shape
            i = torch.arange(bh, device=ptr.device).view(1, bh, 1)
            j = torch.arange(bw, device=ptr.device).view(1, 1, bw)
            major = (major.view(nb, 1, 1) * bh + i).expand(nb, bh, bw).reshape(-1)
            minor = (minor.view(nb, 1, 1) * bw + j).expand(nb, bh, bw).reshape(-1)
            val = val.reshape(-1)
        return cls.from_coo(major, minor, val, shape, _arg="tensor")

    @classmethod
    def from_torch_sparse(cls, tensor) -> "CSR":
        """From a ``torch_sparse.SparseTensor`` (needs the optional torch_sparse package)."""
        try:
            from torch_sparse import SparseTensor
        except ImportError as e:  # pragma: no cover - optional peer
            raise ImportError("CSR.from_torch_sparse needs torch_sparse (pip install torch_sparse)") from e
        if not isinstance(tensor, SparseTensor):
            raise TypeError(f"CSR.from_torch_sparse: expected a SparseTensor, got {type(tensor).__name__}")
        rowptr, col, val = tensor.csr()
        rows, cols = tensor.sparse_sizes()
        idx = _pick_index_dtype(rows, cols, col.numel())
        return cls(rowptr.to(idx), col.to(idx), val, (rows, cols))

    def to_torch_sparse(self):
        """A ``torch_sparse.SparseTensor`` (optional package)."""
        from torch_sparse import SparseTensor
        return SparseTensor(rowptr=self.rowptr.long(), col=self.col.long(), value=self.val,
                            sparse_sizes=self.shape, is_sorted=True)

    # ------------------------------------------------------------------ normalisation
    def add_self_loops(self, fill_value: float = 1.0) -> "CSR":
        """``A`` with a self-loop of ``fill_value`` on every row that lacks one (square only);
        existing self-loops keep their value (PyG's ``add_remaining_self_loops``)."""
        rows, cols = self.shape
        if rows != cols:
            raise ValueError(f"CSR.add_self_loops: the matrix must be square, got {self.shape}")
        row, col = self.row(), self.col.long()
        val = self.values()
        has_loop = torch.zeros(rows, dtype=torch.bool, device=self.device)
        has_loop[row[row == col]] = True
        missing = (~has_loop).nonzero(as_tuple=True)[0]
        fill = torch.full((missing.numel(),), fill_value, dtype=val.dtype, device=self.device)
        return CSR.from_coo(torch.cat([row, missing]), torch.cat([col, missing]),
                            torch.cat([val, fill]), self.shape, self.col.dtype)

    def gcn_norm(self, add_self_loops: bool = True, dtype: Optional[torch.dtype] = None) -> "CSR":
        """``D^-1/2 Â D^-1/2`` with ``D`` the row sums of ``Â`` (Kipf & Welling's GCN), where
        ``Â`` is ``A`` with a self-loop of weight 1 added at every node that has none (a stored
        self-loop keeps its weight: PyG's ``add_remaining_self_loops``), or ``A`` itself when
        ``add_self_loops`` is False."""
        A = self.add_self_loops() if add_self_loops else self
        val = A.values(dtype or (self.val.dtype if self.val is not None else None))
        deg = torch.zeros(A.shape[0], dtype=val.dtype, device=A.device)
        deg.index_add_(0, A.row(), val)
        dis = deg.pow(-0.5)
        dis.masked_fill_(torch.isinf(dis), 0.0)
        return A.with_values(dis[A.row()] * val * dis[A.col.long()])

    def bipartite_norm(self, dtype: Optional[torch.dtype] = None) -> "CSR":
        """``Du^-1/2 R Di^-1/2`` for a user-item matrix ``R`` (LightGCN's normalisation, the
        off-diagonal block of ``D^-1/2 [[0, R], [R^T, 0]] D^-1/2``)."""
        val = self.values(dtype)
        du = torch.zeros(self.shape[0], dtype=val.dtype, device=self.device).index_add_(0, self.row(), val)
        di = torch.zeros(self.shape[1], dtype=val.dtype, device=self.device).index_add_(0, self.col.long(), val)
        du, di = du.pow(-0.5), di.pow(-0.5)
        du.masked_fill_(torch.isinf(du), 0.0)
        di.masked_fill_(torch.isinf(di), 0.0)
        return self.with_values(du[self.row()] * val * di[self.col.long()])

    def bipartite_adjacency(self, normalize: bool = True, dtype: Optional[torch.dtype] = None) -> "CSR":
        """The ``(U + I) x (U + I)`` graph ``[[0, R], [R^T, 0]]`` LightGCN propagates over,
        symmetrically normalised unless ``normalize=False``."""
        users, items = self.shape
        R = self.bipartite_norm(dtype) if normalize else self.with_values(self.values(dtype))
        row, col = R.row(), R.col.long()
        full_row = torch.cat([row, col + users])
        full_col = torch.cat([col + users, row])
        val = torch.cat([R.val, R.val])
        return CSR.from_coo(full_row, full_col, val, (users + items, users + items))
