"""Embedding recommenders: matrix factorisation (:class:`MF`) and :class:`LightGCN`, as in
the LTH-MRS reference (one table for users and items, BPR loss).

Both models hold a single table ``model.embedding`` (parameter ``embedding.weight``,
``(U + I) x d``): users are rows ``0..U-1``, items rows ``U..U+I-1``; Xavier-uniform init.
The table is a :class:`sparselth.nn.MaskedEmbedding`, whose forward gathers ``(W * M)[ids]``
for a batch's rows only on sparselth's kernels. Its mask ``M``, the bool buffer
``embedding.weight_mask``, is the one :mod:`sparselth.prune` owns: the models install an
all-ones mask with :func:`sparselth.prune.apply` at construction, so ``prune.apply`` (and the
IMP driver) and ``MaskedEmbedding.set_mask`` update the same buffer (``prune.apply`` also
zeroes pruned entries and masks their gradients). ``table="plain"`` gives a plain
``nn.Embedding`` instead (masks then come only from ``prune.apply``). The models compute
with ``W * M``:

- MF: final embedding ``e = (W * M)[row]``; score ``e_u . e_i``.
- LightGCN: ``E_0 = W * M``, ``E_k = A E_{k-1}`` for ``k = 1..K`` over the normalised
  bipartite adjacency ``A`` (no self loops), final ``E = mean(E_0..E_K)``. ``E_1`` is
  ``spmm(A, W, x_mask=M)``, which reads ``W * M`` on the fly, or, when reading only the
  table's kept entries pays (a cost model, :meth:`LightGCN.propagation_route`),
  ``spgemm(A, CSR(W * M))``, whose cost follows the kept entries; the CSR table is cached
  while ``W`` and ``M`` are unchanged, and in training its values are gathered from ``W`` so
  gradients reach the kept weights. ``E_0`` is gathered only for the rows a batch needs.

BPR loss (LTH-MRS ``reg_weight`` 1e-4)::

    mean_b softplus(s_neg - s_pos) + reg * 0.5 * (|w_u|^2 + |w_pos|^2 + |w_neg|^2) / B

with the regulariser on the ego rows of ``W`` (layer 0, not propagated).

Example::

    >>> data = load_lastfm("datasets")
    >>> model = LightGCN.from_interactions(data, dim=32, layers=3)
    >>> loss = model.bpr_loss(users, pos, neg, reg=1e-4)
    >>> user_emb, item_emb = model.all_embeddings()        # for full ranking
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import MaskedEmbedding
from ..ops import spgemm, spmm
from ..prune import apply as apply_masks
from ..sparse.csr import CSR

__all__ = ["MF", "LightGCN", "RECSYS_MODELS", "build_recsys_model"]


def _check_count(fn: str, name: str, v: Any, minimum: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}, got {v!r}")
    return v


class MF(nn.Module):
    """Matrix factorisation with one ``(U + I) x dim`` table; score = dot product.

    Args:
        num_users, num_items: ``U``, ``I``.
        dim: embedding size ``d`` (LTH-MRS: 32).
        table: ``"masked"`` (:class:`~sparselth.nn.MaskedEmbedding`, default) or ``"plain"``
            (``nn.Embedding``).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 32, *, table: str = "masked"):
        super().__init__()
        fn = type(self).__name__
        self.num_users = _check_count(fn, "num_users", num_users, 0)
        self.num_items = _check_count(fn, "num_items", num_items, 0)
        self.dim = _check_count(fn, "dim", dim, 1)
        rows = num_users + num_items
        if table == "masked":
            self.embedding = MaskedEmbedding(rows, dim)
            # hand the mask buffer to sparselth.prune (same name, same bool dtype)
            del self.embedding.weight_mask
            apply_masks(self, {"embedding.weight": torch.ones(rows, dim, dtype=torch.bool)})
        elif table == "plain":
            self.embedding = nn.Embedding(rows, dim)
        else:
            raise ValueError(f"{fn}: table must be 'masked' or 'plain', got {table!r}")
        if rows:
            with torch.no_grad():
                nn.init.xavier_uniform_(self.embedding.weight)

    # -- the table and its mask
    def embedding_mask(self) -> Tensor | None:
        """The table's mask buffer ``embedding.weight_mask`` (bool or 0/1), or None."""
        return getattr(self.embedding, "weight_mask", None)

    def masked_table(self) -> Tensor:
        """``W * M`` (or ``W`` without a mask), ``(U + I) x d``."""
        w = self.embedding.weight
        m = self.embedding_mask()
        return w if m is None else w * m.to(w.dtype)

    def _propagated(self) -> Tensor | None:
        """What the final embeddings add to layer 0 (LightGCN: sum of layers 1..K)."""
        return None

    def final_embeddings(self, rows: Tensor, propagated: Tensor | None = None) -> Tensor:
        """Final embeddings of table rows ``rows`` (users ``u``, items ``U + i``)."""
        return self.embedding(rows)

    def all_embeddings(self) -> tuple[Tensor, Tensor]:
        """Final ``(user_emb (U, d), item_emb (I, d))`` for full ranking."""
        e = self.masked_table()
        return e[: self.num_users], e[self.num_users :]

    # -- scores and loss
    def _check_ids(self, users: Tensor, items: Tensor) -> None:
        for name, t, n in (("users", users, self.num_users), ("items", items, self.num_items)):
            if not isinstance(t, Tensor) or t.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{type(self).__name__}: {name} must be an int32/int64 tensor")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                raise ValueError(f"{type(self).__name__}: {name} ids must lie in [0, {n})")

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores ``e_u . e_i`` of the pairs ``(users[b], items[b])``, shape ``(B,)``."""
        self._check_ids(users, items)
        prop = self._propagated()
        eu = self.final_embeddings(users.long(), prop)
        ei = self.final_embeddings(items.long() + self.num_users, prop)
        return (eu * ei).sum(-1)

    def bpr_loss(
        self, users: Tensor, pos: Tensor, neg: Tensor, reg: float = 1e-4
    ) -> Tensor:
        """``mean softplus(s_neg - s_pos) + reg * 0.5 * (|w_u|² + |w_pos|² + |w_neg|²) / B``
        (regulariser on the ego rows of the table ``W``)."""
        self._check_ids(users, pos)
        self._check_ids(users, neg)
        if not (users.shape == pos.shape == neg.shape) or users.dim() != 1:
            raise ValueError(
                f"{type(self).__name__}.bpr_loss: users, pos and neg must be 1-D of equal length"
            )
        B = users.numel()
        rows = torch.cat([users.long(), pos.long() + self.num_users, neg.long() + self.num_users])
        eu, ep, en = self.final_embeddings(rows, self._propagated()).split(B)
        s_pos = (eu * ep).sum(-1)
        s_neg = (eu * en).sum(-1)
        loss = F.softplus(s_neg - s_pos).mean()
        if reg:
            ego = self.embedding.weight[rows]
            loss = loss + reg * 0.5 * (ego * ego).sum() / max(B, 1)
        return loss

    @property
    def num_parameters(self) -> int:
        """Entries of the table: ``(U + I) * d`` (the only parameters)."""
        return self.embedding.weight.numel()

    @classmethod
    def from_interactions(cls, data: Any, dim: int = 32, *, table: str = "masked",
                          **kwargs: Any) -> MF:
        """Build for an :class:`~sparselth.data.Interactions`."""
        return cls(data.num_users, data.num_items, dim, table=table)

    def extra_repr(self) -> str:
        return f"users={self.num_users}, items={self.num_items}, dim={self.dim}"


# First propagation layer on an element-masked table, in units of the dense table's time, with
# keep = the table's kept fraction (bench.lightgcn_propagation, one thread, AVX-512 EPYC,
# d = 64, 150k rows, 3.2M edges: spgemm 1.56 / 1.12 / 0.71 of the dense table at 50 / 80 /
# 95 % pruned, x_mask 2.2-3.3; forward + backward: spgemm 3.0 / 1.5 / 1.25, x_mask 2.0-2.4).
# spgemm costs FIXED + PER_KEPT * keep; the x_mask route about X_MASK whatever the mask.
_EVAL_COST = {"fixed": 0.6, "per_kept": 2.0, "x_mask": 2.5}
_TRAIN_COST = {"fixed": 1.0, "per_kept": 4.0, "x_mask": 2.0}
_SPGEMM_MIN_ROWS = 1024  # below this the table is small and the x_mask route wins anyway


class LightGCN(MF):
    """LightGCN: layer-combination mean over ``layers`` propagation steps on ``adj``.

    Args:
        adj: ``(U + I) x (U + I)`` normalised bipartite adjacency (a
            :class:`~sparselth.CSR`, e.g. ``Interactions.adjacency()``); cast to the
            table's device and dtype on first use (and cached).
        num_users, num_items, dim: as for :class:`MF`.
        layers: number of propagation layers ``K`` (LTH-MRS and LightGCN: 3).

    Attributes:
        route: how the first layer reads a masked table: ``"auto"`` (default: by the cost
            model of :meth:`propagation_route`), ``"x_mask"`` (``spmm(A, W, x_mask=M)``) or
            ``"spgemm"`` (``spgemm(A, CSR(W * M))``). Both give the same values and gradients.
    """

    def __init__(self, adj: CSR, num_users: int, num_items: int, dim: int = 32, layers: int = 3,
                 *, table: str = "masked"):
        super().__init__(num_users, num_items, dim, table=table)
        if not isinstance(adj, CSR):
            raise TypeError(f"LightGCN: adj must be a sparselth.CSR, got {type(adj).__name__}")
        n = num_users + num_items
        if adj.shape != (n, n):
            raise ValueError(f"LightGCN: adj must have shape ({n}, {n}), got {adj.shape}")
        self.layers = _check_count("LightGCN", "layers", layers, 0)
        self.adj = adj
        self.route = "auto"
        self._adj_cache: dict[tuple[torch.device, torch.dtype], CSR] = {}
        self._table_cache: dict[str, Any] = {}

    def _adj_like(self, x: Tensor) -> CSR:
        key = (x.device, x.dtype)
        a = self._adj_cache.get(key)
        if a is None:
            a = self.adj
            if a.device != x.device:
                a = a.to(device=x.device)
            if a.val is not None and a.val.dtype != x.dtype:
                a = a.to(dtype=x.dtype)
            self._adj_cache[key] = a
        return a

    class _State:
        """What identifies a tensor's contents between calls: the tensor itself (held, so its
        memory is not reused by another) and its version (in-place updates bump it)."""

        def __init__(self, t: Tensor):
            self.t, self.version = t, t._version

        def __eq__(self, other) -> bool:
            return (isinstance(other, LightGCN._State) and other.t is self.t
                    and other.version == self.version)

    def _mask_pattern(self, m: Tensor) -> dict:
        """The kept entries of mask ``m``: kept fraction, a CSR pattern of its nonzeros (with
        its transpose cached) and their flat indices into the table. Cached while ``m`` is
        unchanged."""
        c = self._table_cache
        state = LightGCN._State(m)
        if c.get("mask_state") != state:
            kept = m if m.dtype == torch.bool else m != 0
            flat = kept.reshape(-1).nonzero().squeeze(1)
            d = m.shape[1]
            pattern = CSR.from_coo(flat // d, flat % d, None, tuple(m.shape))
            c.clear()
            c.update(mask_state=state, keep=flat.numel() / max(m.numel(), 1), flat=flat,
                     pattern=pattern)
        return c

    def propagation_route(self) -> str:
        """The first layer's route now: ``"dense"`` (no mask), ``"x_mask"`` or ``"spgemm"``.
        ``route="auto"`` compares estimated costs in units of the dense table's, ``keep``
        being the table's kept fraction: spgemm ``0.6 + 2 * keep`` against x_mask's ``2.5``
        without a gradient (spgemm below ~95 % kept), ``1 + 4 * keep`` against ``2`` with one
        (forward and backward: spgemm below 25 % kept)."""
        m = self.embedding_mask()
        w = self.embedding.weight
        if self.route not in ("auto", "x_mask", "spgemm"):
            raise ValueError(f"LightGCN: route must be 'auto', 'x_mask' or 'spgemm', got "
                             f"{self.route!r}")
        if m is None or self.layers == 0:
            return "dense"
        if self.route != "auto":
            return self.route
        training = torch.is_grad_enabled() and (w.requires_grad or m.requires_grad)
        if w.shape[0] < _SPGEMM_MIN_ROWS or (m.requires_grad and training):
            return "x_mask"
        cost = _TRAIN_COST if training else _EVAL_COST
        keep = self._mask_pattern(m)["keep"]
        return "spgemm" if cost["fixed"] + cost["per_kept"] * keep < cost["x_mask"] else "x_mask"

    def _masked_table_csr(self, w: Tensor, m: Tensor) -> CSR:
        """``CSR(W * M)`` on the table's kept entries. Its values are gathered from ``W`` (and
        ``M`` when it is a float mask) so that autograd reaches them; without a gradient the
        CSR is cached while ``W`` and ``M`` are unchanged."""
        c = self._mask_pattern(m)
        needs_grad = torch.is_grad_enabled() and (w.requires_grad or m.requires_grad)
        if not needs_grad:
            state = (LightGCN._State(w), c["mask_state"])
            if c.get("table_state") == state:
                return c["table"]
        pattern: CSR = c["pattern"]
        key = (w.device, w.dtype)
        if c.get("pattern_key") != key:
            pattern = pattern.to(device=w.device)
            pattern.t()   # cached: the backward with respect to the values needs it
            c.update(pattern=pattern, pattern_key=key, flat=c["flat"].to(w.device))
        flat = c["flat"]
        val = w.reshape(-1)[flat]
        if m.dtype != torch.bool:
            val = val * m.reshape(-1)[flat].to(w.dtype)
        table = pattern.with_values(val)
        if not needs_grad:
            c.update(table=table, table_state=(LightGCN._State(w), c["mask_state"]))
        return table

    def propagate(self) -> Tensor:
        """Sum of layers ``E_1 + ... + E_K`` (``(U + I) x d``; zeros for ``K = 0``).
        ``E_1 = A (W * M)``: ``spmm(A, W, x_mask=M)`` reads the masked table on the fly;
        ``spgemm(A, CSR(W * M))`` reads only its kept entries (see
        :meth:`propagation_route`)."""
        w = self.embedding.weight
        if self.layers == 0:
            return torch.zeros_like(w)
        a = self._adj_like(w)
        route = self.propagation_route()
        if route == "spgemm":
            h = spgemm(a, self._masked_table_csr(w, self.embedding_mask()))
        else:
            h = spmm(a, w, x_mask=self.embedding_mask())
        total = h
        for _ in range(1, self.layers):
            h = spmm(a, h)
            total = total + h
        return total

    def _propagated(self) -> Tensor:
        return self.propagate()

    def final_embeddings(self, rows: Tensor, propagated: Tensor | None = None) -> Tensor:
        if propagated is None:
            propagated = self.propagate()
        return (self.embedding(rows) + propagated[rows]) / (self.layers + 1)

    def all_embeddings(self) -> tuple[Tensor, Tensor]:
        e = (self.masked_table() + self.propagate()) / (self.layers + 1)
        return e[: self.num_users], e[self.num_users :]

    @classmethod
    def from_interactions(cls, data: Any, dim: int = 32, layers: int = 3, *,
                          table: str = "masked", **kwargs: Any) -> LightGCN:
        """Build over the training graph of an :class:`~sparselth.data.Interactions`."""
        return cls(data.adjacency(), data.num_users, data.num_items, dim, layers, table=table)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layers={self.layers}, nnz={self.adj.nnz}"


RECSYS_MODELS = {"mf": MF, "lightgcn": LightGCN}


def build_recsys_model(name: str, data: Any, dim: int = 32, layers: int = 3, *,
                       table: str = "masked") -> MF:
    """``"mf"`` or ``"lightgcn"`` for an :class:`~sparselth.data.Interactions`."""
    key = str(name).lower()
    if key not in RECSYS_MODELS:
        raise ValueError(f"build_recsys_model: unknown model {name!r}; use {sorted(RECSYS_MODELS)}")
    return RECSYS_MODELS[key].from_interactions(data, dim=dim, layers=layers, table=table)
