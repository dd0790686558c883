"""Embedding layers for pruned recommender tables.

Training (finding tickets): :class:`MaskedEmbedding` is an ``nn.Embedding`` with a
``weight_mask`` buffer (the conventions of :mod:`sparselth.nn.masked`: ``set_mask``,
``masked_weight``, ``apply_mask_``, ``sparsity``), whose forward looks up ``(weight * mask)[ids]``
for the batch's rows only (:func:`~sparselth.ops.masked_embedding`), never forming
``weight * mask`` for the whole table; pruned entries get exactly zero gradient, dense or sparse
(``sparse_grad=True``). The mask is kept as ``bool`` rather than the weight's dtype: the
table is most of a recommender's memory, and a float mask would double it.

Deployment (running tickets): :class:`CompressedEmbedding` stores only the kept values in the
smallest of the formats of :mod:`sparselth.sparse.embedding_formats` (row-compact, per-row CSR,
per-row bitmask; optionally int8 per-row quantised) and looks rows up from it;
:class:`CompressedEmbeddingBag` pools bags the same way.

Example::

    >>> emb = MaskedEmbedding(10_000, 32, sparse_grad=True)
    >>> emb.set_mask(masks["emb.weight"])
    >>> deploy = emb.to_compressed()              # CompressedEmbedding, same lookups
    >>> deploy.format, deploy.stored_bytes
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..ops.embedding import embedding_bag, embedding_lookup, masked_embedding
from ..sparse.embedding_formats import FORMATS, EmbeddingFormat, compress_embedding
from ..sparse.weights import weight_mask
from .masked import _Masked
from .sparse import _incoming, _tensor_version

Tensor = torch.Tensor

__all__ = ["MaskedEmbedding", "CompressedEmbedding", "CompressedEmbeddingBag"]


class MaskedEmbedding(_Masked, nn.Embedding):
    """``nn.Embedding`` looking up ``(weight * weight_mask)[ids]``.

    Args:
        num_embeddings, embedding_dim: table shape ``(R, d)``.
        mask: bool or 0/1 ``(R, d)``; None keeps everything.
        sparse_grad: sparse COO gradient for ``weight`` (O(batch) per step; use an optimizer
            that takes sparse gradients, e.g. ``torch.optim.SGD`` or ``SparseAdam``).
        padding_idx: as in ``nn.Embedding`` (that row gets no gradient).
        backend: kernel backend (``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"``, ``"cuda"``).

    ``sparselth.prune`` selects its weight like any ``nn.Embedding`` weight; install a mask it
    computes with ``set_mask``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, mask: Optional[Tensor] = None,
                 sparse_grad: bool = False, padding_idx: Optional[int] = None, *,
                 backend: str = "auto", device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx,
                         sparse=sparse_grad, device=device, dtype=dtype)
        self.backend = backend
        self._init_mask(mask)

    def _init_mask(self, mask: Optional[Tensor]) -> None:
        w = self.weight
        m = torch.ones_like(w, dtype=torch.bool) if mask is None else weight_mask(
            w, mask.to(w.device), type(self).__name__)
        self.register_buffer("weight_mask", m.clone())

    @property
    def sparse_grad(self) -> bool:
        return self.sparse

    @sparse_grad.setter
    def sparse_grad(self, value: bool) -> None:
        self.sparse = bool(value)

    @classmethod
    def from_dense(cls, module: nn.Embedding, mask: Optional[Tensor] = None,
                   sparse_grad: Optional[bool] = None) -> "MaskedEmbedding":
        """Copy of ``module`` with ``mask`` (``None``: its ``weight_mask``, else all ones)."""
        if not isinstance(module, nn.Embedding):
            raise TypeError(f"MaskedEmbedding.from_dense: module must be an nn.Embedding, got "
                            f"{type(module).__name__}")
        if module.max_norm is not None or module.scale_grad_by_freq:
            raise ValueError("MaskedEmbedding.from_dense: max_norm and scale_grad_by_freq are "
                             "not supported")
        new = cls(module.num_embeddings, module.embedding_dim,
                  sparse_grad=module.sparse if sparse_grad is None else sparse_grad,
                  padding_idx=module.padding_idx, device=module.weight.device,
                  dtype=module.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(module.weight)
        if mask is None:
            mask = getattr(module, "weight_mask", None)
        new._init_mask(mask)
        return new

    def forward(self, ids: Tensor) -> Tensor:
        return masked_embedding(self.weight, self.weight_mask, ids, sparse_grad=self.sparse,
                                padding_idx=self.padding_idx, backend=self.backend)

    def to_compressed(self, format: str = "auto", quantize=None) -> "CompressedEmbedding":
        """The deploy-time :class:`CompressedEmbedding` (same lookups, fewer bytes)."""
        return CompressedEmbedding.from_masked(self.weight, self.weight_mask, format=format,
                                               quantize=quantize, backend=self.backend)

    to_sparse = to_compressed

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sparsity={self.sparsity:.3f}"


class CompressedEmbedding(nn.Module):
    """A pruned embedding table stored compressed; ``forward(ids)`` = ``(W * M)[ids]``.

    The format's tensors are buffers (they follow ``.to(device)`` and ``state_dict``).
    ``stored_bytes`` counts them all; ``format`` names the layout. The lookup kernels trust the
    structure, so it is checked (O(nnz)) whenever it comes from outside: a loaded state dict
    is checked before anything is copied (a ``ValueError``/``TypeError`` names the entry, e.g.
    a ``remap`` or ``col`` out of range), and a buffer replaced or changed in place is checked
    again before the next lookup. A state dict of another ticket of the same table (another
    number of stored entries) loads, buffers taking its sizes.

    Example::

        >>> emb = CompressedEmbedding.from_masked(weight, mask)       # format by bytes
        >>> emb.format, emb.stored_bytes, emb.dense_bytes
        >>> torch.equal(emb(ids), (weight * mask)[ids])                # True
    """

    def __init__(self, table: EmbeddingFormat, backend: str = "auto"):
        super().__init__()
        if not isinstance(table, EmbeddingFormat):
            raise TypeError(f"CompressedEmbedding: table must be an EmbeddingFormat, got "
                            f"{type(table).__name__}")
        self.format = table.kind
        self.num_embeddings, self.embedding_dim = table.shape
        self.backend = backend
        self._names = tuple(table.tensors())
        for name, t in table.tensors().items():
            self.register_buffer(name, t)
        self._table = table
        self._seen = self._buffer_key()

    @classmethod
    def from_masked(cls, weight: Tensor, mask: Optional[Tensor] = None, format: str = "auto",
                    quantize=None, backend: str = "auto") -> "CompressedEmbedding":
        """Compress ``weight * mask`` (``mask`` None: the non-zeros of ``weight``);
        ``format="auto"`` picks the fewest bytes; ``quantize="int8"`` stores int8 values."""
        return cls(compress_embedding(weight.detach(), mask, format, quantize), backend)

    @classmethod
    def from_module(cls, module: nn.Embedding, mask: Optional[Tensor] = None,
                    format: str = "auto", quantize=None,
                    backend: str = "auto") -> "CompressedEmbedding":
        """From an ``nn.Embedding`` / :class:`MaskedEmbedding` (``mask`` None: its
        ``weight_mask`` when it has one, else its non-zeros). ``nn.EmbeddingBag`` gives a
        :class:`CompressedEmbeddingBag`."""
        if not isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            raise TypeError(f"CompressedEmbedding.from_module: module must be an nn.Embedding or "
                            f"nn.EmbeddingBag, got {type(module).__name__}")
        if module.max_norm is not None:
            raise ValueError("CompressedEmbedding.from_module: max_norm (which rewrites the "
                             "weight during lookups) is not supported")
        if mask is None:
            mask = getattr(module, "weight_mask", None)
        table = compress_embedding(module.weight.detach(), mask, format, quantize)
        if isinstance(module, nn.EmbeddingBag):
            if module.mode not in ("sum", "mean"):
                raise ValueError(f"CompressedEmbedding.from_module: EmbeddingBag mode "
                                 f"{module.mode!r} is not supported (sum, mean)")
            return CompressedEmbeddingBag(table, mode=module.mode,
                                          include_last_offset=module.include_last_offset,
                                          backend=backend)
        return cls(table, backend)

    @property
    def storage(self) -> EmbeddingFormat:
        """The stored format (its tensors are this module's buffers, named as in
        ``storage.tensors()``)."""
        return self._storage()

    # the stored format over the current buffers, checked when they change ---------------
    def _buffer_key(self) -> tuple:
        buffers = self._buffers
        return tuple((buffers[n], _tensor_version(buffers[n])) for n in self._names)

    def _checked(self, parts: dict, op: str, prefix: str = "") -> EmbeddingFormat:
        """The format of ``parts`` (buffer name -> tensor) after the full O(nnz) check."""
        shape = (self.num_embeddings, self.embedding_dim)
        try:
            table = FORMATS[self.format]._from_parts(shape, parts)
            if table.shape != shape:
                raise ValueError(f"{type(table).__name__}: the table is {table.shape[0]} x "
                                 f"{table.shape[1]}, the module's {shape[0]} x {shape[1]}")
        except (TypeError, ValueError) as e:
            names = ", ".join(prefix + n for n in parts)
            raise type(e)(f"{op}: {names} do not hold a valid {self.format!r} table: "
                          f"{e}") from None
        return table

    def _storage(self) -> EmbeddingFormat:
        """The format over the current buffers; checked again when a buffer was replaced or
        changed in place since the last check (a few attribute reads otherwise)."""
        buffers = self._buffers
        for name, (t, version) in zip(self._names, self._seen):
            now = buffers[name]
            if now is not t or (version >= 0 and now._version != version):
                break
        else:
            return self._table
        self._table = self._checked({n: buffers[n] for n in self._names}, type(self).__name__)
        self._seen = self._buffer_key()
        return self._table

    def _trust_buffers(self) -> None:
        """Rebuild the format over buffers holding checked contents (moved, cast, loaded)."""
        parts = {n: self._buffers[n] for n in self._names}
        self._table = FORMATS[self.format]._from_parts(
            (self.num_embeddings, self.embedding_dim), parts, check=False)
        self._seen = self._buffer_key()

    def _apply(self, fn, recurse=True):
        self._storage()   # contents changed in place are checked before being trusted
        out = super()._apply(fn, recurse)
        self._trust_buffers()
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        parts = {n: _incoming(self, state_dict, prefix, n) for n in self._names}
        self._checked(parts, f"{type(self).__name__}.load_state_dict", prefix)
        # Another ticket of the table stores another number of entries: take incoming sizes.
        for name, t in parts.items():
            own = self._buffers[name]
            if t.shape != own.shape or t.dtype != own.dtype:
                self._buffers[name] = torch.empty(t.shape, dtype=t.dtype, device=own.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._trust_buffers()

    @property
    def quantized(self) -> bool:
        return self._storage().quantized

    @property
    def stored_bytes(self) -> int:
        return self._storage().stored_bytes

    @property
    def dense_bytes(self) -> int:
        return self._storage().dense_bytes

    def to_dense(self) -> Tensor:
        """The ``(num_embeddings, embedding_dim)`` masked table (dequantised if quantised)."""
        return self._storage().to_dense()

    def forward(self, ids: Tensor) -> Tensor:
        return embedding_lookup(self._storage(), ids, backend=self.backend)

    def extra_repr(self) -> str:
        q = ", int8" if self.quantized else ""
        frac = self.stored_bytes / max(1, self.dense_bytes)
        return (f"{self.num_embeddings}, {self.embedding_dim}, format={self.format}{q}, "
                f"stored_bytes={self.stored_bytes} ({frac:.3f} of dense)")


class CompressedEmbeddingBag(CompressedEmbedding):
    """:class:`CompressedEmbedding` pooling bags: ``forward(ids, offsets=None)`` as
    ``nn.EmbeddingBag`` (``mode`` ``"sum"`` or ``"mean"``; an empty bag gives zeros)."""

    def __init__(self, table: EmbeddingFormat, mode: str = "mean",
                 include_last_offset: bool = False, backend: str = "auto"):
        super().__init__(table, backend)
        if mode not in ("sum", "mean"):
            raise ValueError(f"CompressedEmbeddingBag: mode must be 'sum' or 'mean', got {mode!r}")
        self.mode = mode
        self.include_last_offset = include_last_offset

    @classmethod
    def from_masked(cls, weight: Tensor, mask: Optional[Tensor] = None, format: str = "auto",
                    quantize=None, backend: str = "auto",
                    mode: str = "mean") -> "CompressedEmbeddingBag":
        return cls(compress_embedding(weight.detach(), mask, format, quantize), mode=mode,
                   backend=backend)

    def forward(self, ids: Tensor, offsets: Optional[Tensor] = None) -> Tensor:
        return embedding_bag(self._storage(), ids, offsets, mode=self.mode,
                             include_last_offset=self.include_last_offset, backend=self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode}"
