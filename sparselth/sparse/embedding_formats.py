"""Compressed storage for pruned embedding tables (recommender tickets).

A pruned table is a dense weight ``W`` (R x d) and a keep-mask ``M`` of the same shape; every
format below stores exactly the masked table ``W * M`` (``torch.where(M, W, 0)``: equal for finite
weights) and a lookup of any row gives exactly ``(W * M)[id]``:

* :class:`RowCompactEmbedding` (``"row_compact"``): the rows holding any kept entry as a dense
  compact table (K x d, pruned entries of kept rows stored as 0) and ``remap`` (R,) int32 from
  row id to compact row, ``-1`` for an all-pruned row (looked up as zeros).
  Bytes: ``4 R + K d v``. Wins when whole rows are pruned and the rest are dense.
* :class:`CSREmbedding` (``"csr"``): per-row CSR: ``rowptr`` (R + 1), ``col`` (nnz,) int16 when
  ``d <= 32767`` else int32, ``values`` (nnz,). Bytes: ``i (R + 1) + nnz (c + v)``.
  Wins at very high element sparsity (under ~1/16 of the entries kept for int16 columns).
* :class:`BitmaskEmbedding` (``"bitmask"``): per-row bitmask ``bits`` (R, ceil(d / 8)) uint8 (bit
  ``f % 8`` of byte ``f // 8`` marks feature ``f``), ``rowptr`` (R + 1) offsets into ``values``
  (nnz,) packed in row-major order. Bytes: ``R ceil(d / 8) + i (R + 1) + nnz v``.
  Wins at moderate element sparsity (50-95 %).

(``v``: bytes per stored value, ``i``: 4 for int32 row pointers, 8 beyond 2^31 - 1 entries.)
``stored_bytes`` counts every stored tensor. :func:`predict_bytes` gives all three sizes from
the mask's counts alone, and :func:`choose_format` picks the smallest without building any.

Optional row-wise int8 quantisation (``quantize="int8"``): each stored row keeps
``scale = max |kept value| / 127`` (the table's dtype) and ``int8`` values ``round(w / scale)``;
a lookup returns ``q * scale``. This is lossy (error up to ``scale / 2`` per entry): exact
equality with ``W * M`` is not expected, only with the dequantised table (:meth:`to_dense`).

Example::

    >>> fmt = compress_embedding(weight, mask)             # smallest format by bytes
    >>> fmt.kind, fmt.stored_bytes, weight.numel() * 4
    >>> torch.equal(fmt.to_dense(), weight * mask)          # True
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .csr import _legacy_kwargs
from .weights import weight_mask

Tensor = torch.Tensor

__all__ = ["EmbeddingFormat", "RowCompactEmbedding", "CSREmbedding", "BitmaskEmbedding",
           "FORMATS", "predict_bytes", "choose_format", "compress_embedding", "pack_bits",
           "unpack_bits"]

_INT32_MAX = 2 ** 31 - 1
_COL16_MAX_DIM = 32767  # int16 columns hold 0 .. 32766


def _index_dtype(nnz: int) -> torch.dtype:
    return torch.int32 if nnz <= _INT32_MAX else torch.int64


def _col_dtype(dim: int) -> torch.dtype:
    return torch.int16 if dim <= _COL16_MAX_DIM else torch.int32


def _nbytes(t: Optional[Tensor]) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def pack_bits(mask: Tensor) -> Tensor:
    """``(R, d)`` bool -> ``(R, ceil(d / 8))`` uint8: bit ``f % 8`` of byte ``f // 8`` is
    ``mask[:, f]``."""
    R, d = mask.shape
    nb = (d + 7) // 8
    m = mask.to(torch.uint8)
    if nb * 8 != d:
        m = torch.nn.functional.pad(m, (0, nb * 8 - d))
    shifts = torch.arange(8, dtype=torch.uint8, device=mask.device)
    return (m.view(R, nb, 8) << shifts).sum(-1, dtype=torch.uint8)


def unpack_bits(bits: Tensor, dim: int) -> Tensor:
    """Inverse of :func:`pack_bits`: ``(R, nb)`` uint8 -> ``(R, dim)`` bool."""
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    out = (bits.unsqueeze(-1) >> shifts) & 1
    return out.reshape(bits.shape[0], bits.shape[1] * 8)[:, :dim].bool()


def _quantize_rows(values: Tensor, rows: Tensor, num_rows: int):
    """Row-wise symmetric int8: ``(q int8, scale (num_rows,))``, ``values ~= q * scale[rows]``."""
    absmax = torch.zeros(num_rows, dtype=values.dtype, device=values.device)
    if values.numel():
        absmax.scatter_reduce_(0, rows, values.abs(), reduce="amax", include_self=True)
    scale = absmax / 127
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    q = torch.round(values * inv[rows]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _check_quantize(op: str, quantize) -> Optional[str]:
    if quantize in (None, False):
        return None
    if quantize != "int8":
        raise ValueError(f"{op}: quantize must be None or 'int8', got {quantize!r}")
    return "int8"


class EmbeddingFormat:
    """A compressed ``(num_embeddings, embedding_dim)`` table. Subclasses list their stored
    tensors in ``_names``; ``values`` (or ``table``) is int8 exactly when ``scale`` is given."""

    kind: str = ""
    _names: tuple = ()

    num_embeddings: int
    embedding_dim: int
    scale: Optional[Tensor]

    # -- common properties
    @property
    def shape(self) -> tuple:
        return (self.num_embeddings, self.embedding_dim)

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def dtype(self) -> torch.dtype:
        """dtype of a looked-up row (the values', or the scale's when quantised)."""
        return self.scale.dtype if self.scale is not None else self._values().dtype

    @property
    def device(self) -> torch.device:
        return self._values().device

    def tensors(self) -> Dict[str, Tensor]:
        """The stored tensors by name (absent optional ones left out)."""
        return {n: getattr(self, n) for n in self._names if getattr(self, n) is not None}

    @property
    def stored_bytes(self) -> int:
        """Bytes of every stored tensor together."""
        return sum(_nbytes(t) for t in self.tensors().values())

    @property
    def dense_bytes(self) -> int:
        """Bytes of the uncompressed table in the lookup dtype."""
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        return self.num_embeddings * self.embedding_dim * itemsize

    def to(self, device) -> "EmbeddingFormat":
        """A copy with every tensor on ``device``."""
        parts = {k: v.to(device) for k, v in self.tensors().items()}
        return type(self)._from_parts(self.shape, parts, check=False)

    @classmethod
    def _trusted(cls, *args, **kwargs) -> "EmbeddingFormat":
        """Build from parts known to be valid (the library's own builders): the O(1) checks
        only, not the O(nnz) range checks. Never for tensors that come from outside."""
        out = cls.__new__(cls)
        out._init(*args, check=False, **kwargs)
        out._seen = out._versions()
        return out

    def _versions(self) -> Optional[tuple]:
        ts = self.tensors().values()
        if torch.compiler.is_compiling() or any(t.is_inference() for t in ts):
            return None   # traced graphs and inference tensors have no version counters
        return tuple(t._version for t in ts)

    def _recheck(self) -> None:
        """Validate again when a stored tensor changed in place since the last check (version
        counters compared per lookup): a lookup never reads indices edited out of range."""
        if torch.compiler.is_compiling() or self.device.type == "meta":
            return
        now = self._versions()
        if now is not None and now != getattr(self, "_seen", None):
            type(self)._from_parts(self.shape, self.tensors(), check=True)
            self._seen = now

    @classmethod
    def _from_parts(cls, shape, parts: Dict[str, Tensor], check: bool = True
                    ) -> "EmbeddingFormat":
        """Rebuild from :meth:`tensors` and ``shape``; ``check=False`` (parts of a format
        already checked, e.g. moved to another device) skips the O(nnz) validation."""
        raise NotImplementedError

    def _values(self) -> Tensor:
        raise NotImplementedError

    def to_dense(self) -> Tensor:
        """The ``(num_embeddings, embedding_dim)`` table (dequantised when quantised)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        q = ", int8" if self.quantized else ""
        return (f"{type(self).__name__}({self.num_embeddings}x{self.embedding_dim}, "
                f"nnz={self.nnz}, {self.stored_bytes} bytes{q})")

    @property
    def nnz(self) -> int:
        raise NotImplementedError


def _check_tensor(op: str, name: str, t, dim: int, dtypes) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(f"{op}: {name} must be {dim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise TypeError(f"{op}: {name} must have dtype in {dtypes}, got {t.dtype}")
    return t.contiguous()


def _check_values_scale(op: str, values: Tensor, scale: Optional[Tensor], rows: int):
    if values.dtype == torch.int8:
        if scale is None:
            raise ValueError(f"{op}: int8 values need scale (one per stored row)")
    elif not values.dtype.is_floating_point:
        raise TypeError(f"{op}: values must be floating point or int8, got {values.dtype}")
    elif scale is not None:
        raise ValueError(f"{op}: scale is only for int8 values, got values of {values.dtype}")
    if scale is not None:
        scale = _check_tensor(op, "scale", scale, 1, (torch.float16, torch.bfloat16,
                                                      torch.float32, torch.float64))
        if scale.numel() != rows:
            raise ValueError(f"{op}: scale must have shape ({rows},), got {tuple(scale.shape)}")
        if scale.device != values.device:
            raise ValueError(f"{op}: scale is on {scale.device} but values on {values.device}")
    return scale


def _check_rowptr(op: str, rowptr: Tensor, nnz: int) -> None:
    if rowptr.numel() < 1 or int(rowptr[0]) != 0 or int(rowptr[-1]) != nnz:
        raise ValueError(f"{op}: rowptr must start at 0 and end at nnz = {nnz}")
    if rowptr.numel() > 1 and bool((rowptr[1:] < rowptr[:-1]).any()):
        raise ValueError(f"{op}: rowptr must be non-decreasing")


def _dequant(values: Tensor, scale: Optional[Tensor], rows: Tensor) -> Tensor:
    if scale is None:
        return values
    return values.to(scale.dtype) * scale[rows]


class RowCompactEmbedding(EmbeddingFormat):
    """Kept rows as a dense compact table plus a row remap.

    Args:
        remap: ``(R,)`` int32, ``remap[id]`` in ``[0, K)`` or ``-1`` (all-pruned row: zeros).
        table: ``(K, d)`` values (pruned entries of kept rows are 0), or int8 with ``scale``.
        scale: ``(K,)`` per compact row when ``table`` is int8, else None.
    """

    kind = "row_compact"
    _names = ("remap", "table", "scale")

    def __init__(self, remap: Tensor, table: Tensor, scale: Optional[Tensor] = None, **legacy):
        if legacy:
            _legacy_kwargs("RowCompactEmbedding", legacy)
        self._init(remap, table, scale, check=True)
        self._seen = self._versions()

    def _init(self, remap, table, scale, check: bool) -> None:
        op = "RowCompactEmbedding"
        remap = _check_tensor(op, "remap", remap, 1, (torch.int32,))
        table = _check_tensor(op, "table", table, 2, (torch.float16, torch.bfloat16,
                                                      torch.float32, torch.float64, torch.int8))
        scale = _check_values_scale(op, table, scale, table.shape[0])
        if remap.device != table.device:
            raise ValueError(f"{op}: remap is on {remap.device} but table on {table.device}")
        if check and remap.numel():
            lo, hi = int(remap.min()), int(remap.max())
            if lo < -1 or hi >= table.shape[0]:
                raise ValueError(f"{op}: remap must be in [-1, {table.shape[0]}), got [{lo}, {hi}]")
        self.remap, self.table, self.scale = remap, table, scale
        self.num_embeddings, self.embedding_dim = remap.numel(), table.shape[1]

    @classmethod
    def _from_parts(cls, shape, parts, check: bool = True):
        build = cls if check else cls._trusted
        return build(parts["remap"], parts["table"], parts.get("scale"))

    @classmethod
    def from_masked(cls, weight: Tensor, mask: Tensor, quantize=None) -> "RowCompactEmbedding":
        keep = mask.any(1)
        kept = keep.nonzero().squeeze(1)
        remap = torch.full((weight.shape[0],), -1, dtype=torch.int32, device=weight.device)
        remap[kept] = torch.arange(kept.numel(), dtype=torch.int32, device=weight.device)
        table = (weight.detach()[kept] * mask[kept]).contiguous()
        scale = None
        if quantize:
            rows = torch.arange(kept.numel(), device=weight.device).repeat_interleave(
                weight.shape[1])
            q, scale = _quantize_rows(table.reshape(-1), rows, kept.numel())
            table = q.view(kept.numel(), weight.shape[1])
        return cls._trusted(remap, table, scale)

    def _values(self) -> Tensor:
        return self.table

    @property
    def nnz(self) -> int:
        return self.table.numel()

    @property
    def kept_rows(self) -> int:
        return self.table.shape[0]

    def to_dense(self) -> Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        live = self.remap >= 0
        table = self.table
        if self.scale is not None:
            table = table.to(self.dtype) * self.scale[:, None]
        out[live] = table[self.remap[live].long()]
        return out


def _packed_rows(weight: Tensor, mask: Tensor, quantize) -> tuple:
    """The kept values of ``weight`` row after row, their ``rowptr`` (int32 when it fits) and,
    with ``quantize``, the row-wise int8 values and scales: the parts the per-row CSR and the
    bitmask formats share."""
    R = weight.shape[0]
    counts = mask.sum(1)
    nnz = int(counts.sum())
    rowptr = torch.zeros(R + 1, dtype=torch.int64, device=weight.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    values = weight.detach()[mask]
    scale = None
    if quantize:
        rows = torch.repeat_interleave(torch.arange(R, device=weight.device), counts)
        values, scale = _quantize_rows(values, rows, R)
    return rowptr.to(_index_dtype(nnz)), values.contiguous(), scale


class _PackedRows(EmbeddingFormat):
    """The kept values of each row packed one after the other (``values[rowptr[r]:rowptr[r+1]]``),
    with a per-row index of where they go (CSR columns or a bitmask): shared checks and
    accessors of :class:`CSREmbedding` and :class:`BitmaskEmbedding`."""

    @staticmethod
    def _check_packed(op: str, rowptr: Tensor, values: Tensor, embedding_dim: int):
        rowptr = _check_tensor(op, "rowptr", rowptr, 1, (torch.int32, torch.int64))
        values = _check_tensor(op, "values", values, 1, (torch.float16, torch.bfloat16,
                                                         torch.float32, torch.float64, torch.int8))
        d = int(embedding_dim)
        if d < 0:
            raise ValueError(f"{op}: embedding_dim must be >= 0, got {embedding_dim}")
        return rowptr, values, d

    @classmethod
    def _from_parts(cls, shape, parts, check: bool = True):
        first, second, third = (parts[n] for n in cls._names[:3])
        build = cls if check else cls._trusted
        out = build(first, second, third, shape[1], parts.get("scale"))
        if out.num_embeddings != shape[0]:
            raise ValueError(f"{cls.__name__}: rowptr must have {shape[0] + 1} entries for "
                             f"{shape[0]} rows, got {out.num_embeddings + 1}")
        return out

    def _values(self) -> Tensor:
        return self.values

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def _row_ids(self) -> Tensor:
        """The row of every packed value."""
        return torch.repeat_interleave(torch.arange(self.num_embeddings, device=self.device),
                                       (self.rowptr[1:] - self.rowptr[:-1]).long())


class CSREmbedding(_PackedRows):
    """Per-row CSR of the kept entries.

    Args:
        rowptr: ``(R + 1,)`` int32/int64, from 0 to nnz, non-decreasing.
        col: ``(nnz,)`` int16/int32, strictly increasing within each row, in ``[0, d)``.
        values: ``(nnz,)`` float, or int8 with ``scale``.
        embedding_dim: ``d``.
        scale: ``(R,)`` per row when ``values`` is int8.
    """

    kind = "csr"
    _names = ("rowptr", "col", "values", "scale")

    def __init__(self, rowptr: Tensor, col: Tensor, values: Tensor, embedding_dim: int,
                 scale: Optional[Tensor] = None, **legacy):
        if legacy:
            _legacy_kwargs("CSREmbedding", legacy)
        self._init(rowptr, col, values, embedding_dim, scale, check=True)
        self._seen = self._versions()

    def _init(self, rowptr, col, values, embedding_dim, scale, check: bool) -> None:
        op = "CSREmbedding"
        rowptr, values, d = self._check_packed(op, rowptr, values, embedding_dim)
        col = _check_tensor(op, "col", col, 1, (torch.int16, torch.int32))
        if col.dtype == torch.int16 and d > _COL16_MAX_DIM:
            raise TypeError(f"{op}: int16 col holds at most {_COL16_MAX_DIM} features, "
                            f"embedding_dim is {d}")
        if values.numel() != col.numel():
            raise ValueError(f"{op}: values must have col's shape ({col.numel()},), "
                             f"got {tuple(values.shape)}")
        R = rowptr.numel() - 1
        scale = _check_values_scale(op, values, scale, R)
        if not (rowptr.device == col.device == values.device):
            raise ValueError(f"{op}: rowptr, col and values must be on one device")
        if check:
            _check_rowptr(op, rowptr, col.numel())
            if col.numel():
                c = col.long()
                if int(c.min()) < 0 or int(c.max()) >= d:
                    raise ValueError(f"{op}: col must be in [0, {d})")
                row = torch.repeat_interleave(torch.arange(R, device=col.device),
                                              (rowptr[1:] - rowptr[:-1]).long())
                same_row = row[1:] == row[:-1]
                if bool((same_row & (c[1:] <= c[:-1])).any()):
                    raise ValueError(f"{op}: col must be strictly increasing within each row")
        self.rowptr, self.col, self.values, self.scale = rowptr, col, values, scale
        self.num_embeddings, self.embedding_dim = R, d

    @classmethod
    def from_masked(cls, weight: Tensor, mask: Tensor, quantize=None) -> "CSREmbedding":
        R, d = weight.shape
        rowptr, values, scale = _packed_rows(weight, mask, quantize)
        col = torch.arange(d, dtype=_col_dtype(d), device=weight.device).expand(R, d)[mask]
        return cls._trusted(rowptr, col.contiguous(), values, d, scale)

    def to_dense(self) -> Tensor:
        row = self._row_ids()
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        out[row, self.col.long()] = _dequant(self.values, self.scale, row)
        return out


class BitmaskEmbedding(_PackedRows):
    """Per-row bitmask plus packed values.

    Args:
        rowptr: ``(R + 1,)`` int32/int64: row ``r``'s values are ``values[rowptr[r]:rowptr[r+1]]``.
        bits: ``(R, ceil(d / 8))`` uint8 from :func:`pack_bits`; padding bits zero; each row's
            number of set bits equals its number of values.
        values: ``(nnz,)`` float, or int8 with ``scale``, in row-major order of the set bits.
        embedding_dim: ``d``.
        scale: ``(R,)`` per row when ``values`` is int8.
    """

    kind = "bitmask"
    _names = ("rowptr", "bits", "values", "scale")

    def __init__(self, rowptr: Tensor, bits: Tensor, values: Tensor, embedding_dim: int,
                 scale: Optional[Tensor] = None, **legacy):
        if legacy:
            _legacy_kwargs("BitmaskEmbedding", legacy)
        self._init(rowptr, bits, values, embedding_dim, scale, check=True)
        self._seen = self._versions()

    def _init(self, rowptr, bits, values, embedding_dim, scale, check: bool) -> None:
        op = "BitmaskEmbedding"
        rowptr, values, d = self._check_packed(op, rowptr, values, embedding_dim)
        bits = _check_tensor(op, "bits", bits, 2, (torch.uint8,))
        R = rowptr.numel() - 1
        if tuple(bits.shape) != (R, (d + 7) // 8):
            raise ValueError(f"{op}: bits must have shape ({R}, {(d + 7) // 8}), "
                             f"got {tuple(bits.shape)}")
        scale = _check_values_scale(op, values, scale, R)
        if not (rowptr.device == bits.device == values.device):
            raise ValueError(f"{op}: rowptr, bits and values must be on one device")
        if check:
            _check_rowptr(op, rowptr, values.numel())
            full = unpack_bits(bits, bits.shape[1] * 8)
            if bool(full[:, d:].any()):
                raise ValueError(f"{op}: padding bits beyond embedding_dim must be zero")
            if not torch.equal(full.sum(1), (rowptr[1:] - rowptr[:-1]).long()):
                raise ValueError(f"{op}: each row's set bits must equal its number of values")
        self.rowptr, self.bits, self.values, self.scale = rowptr, bits, values, scale
        self.num_embeddings, self.embedding_dim = R, d

    @classmethod
    def from_masked(cls, weight: Tensor, mask: Tensor, quantize=None) -> "BitmaskEmbedding":
        d = weight.shape[1]
        rowptr, values, scale = _packed_rows(weight, mask, quantize)
        return cls._trusted(rowptr, pack_bits(mask), values, d, scale)

    def to_dense(self) -> Tensor:
        keep = unpack_bits(self.bits, self.embedding_dim)
        row = self._row_ids()
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        out[keep] = _dequant(self.values, self.scale, row)
        return out


FORMATS = {"row_compact": RowCompactEmbedding, "csr": CSREmbedding, "bitmask": BitmaskEmbedding}
_PREFERENCE = ("row_compact", "bitmask", "csr")  # ties: the simplest lookup first


def _check_weight_and_mask(op: str, weight, mask) -> Tensor:
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {tuple(weight.shape)}")
    return weight_mask(weight, mask, op)


def predict_bytes(weight: Tensor, mask: Optional[Tensor] = None, quantize=None) -> Dict[str, int]:
    """Stored bytes of every format for ``(weight, mask)``, from the mask's counts (nnz and
    rows with a kept entry) without building any format. Equals each format's
    ``stored_bytes`` once built."""
    op = "predict_bytes"
    quantize = _check_quantize(op, quantize)
    keep = _check_weight_and_mask(op, weight, mask)
    R, d = weight.shape
    nnz = int(keep.sum())
    kept_rows = int(keep.any(1).sum()) if R and d else 0
    return _bytes_from_counts(R, d, nnz, kept_rows, weight.element_size(), quantize)


def _bytes_from_counts(R: int, d: int, nnz: int, kept_rows: int, value_bytes: int,
                       quantize) -> Dict[str, int]:
    vb = 1 if quantize else value_bytes
    sb = value_bytes if quantize else 0  # one scale per stored row
    ib = torch.empty(0, dtype=_index_dtype(nnz)).element_size()
    cb = torch.empty(0, dtype=_col_dtype(d)).element_size()
    return {
        "row_compact": 4 * R + kept_rows * d * vb + kept_rows * sb,
        "csr": ib * (R + 1) + nnz * (cb + vb) + R * sb,
        "bitmask": R * ((d + 7) // 8) + ib * (R + 1) + nnz * vb + R * sb,
    }


def choose_format(weight: Tensor, mask: Optional[Tensor] = None, quantize=None) -> str:
    """The format name with the fewest stored bytes for ``(weight, mask)`` (see
    :func:`predict_bytes`); ties go to ``row_compact``, then ``bitmask``, then ``csr``."""
    sizes = predict_bytes(weight, mask, quantize)
    return min(_PREFERENCE, key=lambda k: (sizes[k], _PREFERENCE.index(k)))


def compress_embedding(weight: Tensor, mask: Optional[Tensor] = None, format: str = "auto",
                       quantize=None) -> EmbeddingFormat:
    """Store the masked table ``weight * mask`` compressed.

    Args:
        weight: ``(R, d)`` floating-point table (any device).
        mask: bool or 0/1 tensor of ``weight``'s shape; ``None`` keeps the non-zeros.
        format: ``"auto"`` (fewest bytes, :func:`choose_format`), ``"row_compact"``, ``"csr"``
            or ``"bitmask"``.
        quantize: ``None`` or ``"int8"`` (row-wise int8 values with a scale per stored row).

    Returns:
        an :class:`EmbeddingFormat` whose lookups give ``(weight * mask)[ids]`` exactly (the
        dequantised values when quantised).
    """
    op = "compress_embedding"
    quantize = _check_quantize(op, quantize)
    keep = _check_weight_and_mask(op, weight, mask)
    if not weight.dtype.is_floating_point:
        raise TypeError(f"{op}: weight must be floating point, got {weight.dtype}")
    if format == "auto":
        format = choose_format(weight, keep, quantize)
    if format not in FORMATS:
        raise ValueError(f"{op}: format must be 'auto' or one of {tuple(FORMATS)}, got {format!r}")
    return FORMATS[format].from_masked(weight.detach(), keep, quantize)
