"""Implicit-feedback recommender data: user-item interactions, loaders, a latent-factor
generator, per-user splits, a BPR sampler and the LightGCN bipartite adjacency.

An :class:`Interactions` holds ``train``/``test`` (and optionally ``val``) as int64
``(2, N)`` pair tensors (row 0 = user ids ``0..U-1``, row 1 = item ids ``0..I-1``),
duplicate-free and sorted by (user, item). The per-user item lists are binary
:class:`~sparselth.CSR` matrices ``U x I`` (``train_csr``, ``test_csr``, ``val_csr``).

Loaders read a folder of datasets (the ``root`` argument or the ``SPARSELTH_DATA``
environment variable):

- :func:`load_lastfm`: ``lastfm/data1.txt`` (train) and ``lastfm/test1.txt`` (test), the
  LightGCN reference's LastFM split: ``user<TAB>item<TAB>count`` per line, ids from 1, CRLF
  line ends; 1,892 users and 4,489 items as the reference hard-codes; the count is ignored.
- :func:`load_movielens_100k`: ``movielens-100k/ml-100k.inter`` (RecBole atomic file with
  the header ``user_id:token item_id:token rating:float timestamp:float``); every rating (or
  every rating >= ``min_rating``) is an interaction, split per user 80/20 at random (seeded)
  or by time.
- :func:`load_lightgcn_text`: LightGCN's ``train.txt``/``test.txt`` (``uid item item ...``).
- :func:`synthetic_interactions`: latent-factor implicit feedback with power-law item
  popularity, vectorised in memory-bounded chunks (up to millions of users and items).

``protocol="standard"`` (LastFM, MovieLens-100K, synthetic) splits every interaction 80/10/10
per user at random instead (:func:`~sparselth.data.splits.split_80_10_10`), the split other
recommender toolkits use, so dense numbers can be compared with theirs.

Model selection: the reference implementations keep the epoch with the best *test*
Recall@20. Here :meth:`Interactions.with_validation` carves a per-user validation split out
of the training pairs (seeded), and early stopping selects on it; test numbers are reported
for the selected epoch only.

Example::

    >>> from sparselth.data import load_lastfm, BPRSampler
    >>> data = load_lastfm("datasets").with_validation(0.1, seed=0)
    >>> sampler = BPRSampler(data.train_csr, seed=0)
    >>> for users, pos, neg in sampler.epoch(batch_size=2048): ...
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import torch

from ..sparse.csr import CSR
from .files import ENV_VAR, dataset_dir, line_error, parse_ints, read_lines
from .splits import _rank_in_group, check_protocol, split_80_10_10

Tensor = torch.Tensor

__all__ = [
    "BPRSampler",
    "Interactions",
    "LASTFM_ITEMS",
    "LASTFM_USERS",
    "load_lastfm",
    "load_lightgcn_text",
    "load_movielens_100k",
    "load_recsys",
    "split_80_10_10",
    "split_per_user",
    "synthetic_interactions",
]

LASTFM_USERS = 1892
LASTFM_ITEMS = 4489
_CAND_CHUNK = 1 << 20  # candidate (user, item) draws per chunk of the generator


# --------------------------------------------------------------------------- pairs


def _check_pairs(fn: str, arg: str, pairs: Tensor, num_users: int, num_items: int) -> Tensor:
    if not isinstance(pairs, Tensor):
        raise TypeError(f"{fn}: {arg} must be a torch.Tensor, got {type(pairs).__name__}")
    if pairs.dim() != 2 or pairs.shape[0] != 2:
        raise ValueError(f"{fn}: {arg} must have shape (2, N), got {tuple(pairs.shape)}")
    if pairs.dtype.is_floating_point or pairs.dtype == torch.bool or pairs.dtype.is_complex:
        raise TypeError(f"{fn}: {arg} must hold integer ids, got {pairs.dtype}")
    pairs = pairs.to(torch.int64)
    if pairs.numel():
        for row, n, what in ((0, num_users, "user"), (1, num_items, "item")):
            lo, hi = int(pairs[row].min()), int(pairs[row].max())
            if lo < 0 or hi >= n:
                raise ValueError(
                    f"{fn}: {arg} has {what} ids in [{lo}, {hi}], outside [0, {n})"
                )
    return pairs


def _unique_pairs(pairs: Tensor, num_items: int) -> Tensor:
    """Sorted by (user, item), duplicates removed."""
    if pairs.shape[1] == 0:
        return pairs.clone()
    key = torch.unique(pairs[0] * max(num_items, 1) + pairs[1], sorted=True)
    return torch.stack([key // max(num_items, 1), key % max(num_items, 1)])


def _pairs_csr(pairs: Tensor, num_users: int, num_items: int) -> CSR:
    return CSR.from_edge_index(pairs, num_nodes=num_users, num_cols=num_items)


def split_per_user(
    pairs: Tensor,
    num_users: int,
    fraction: float,
    *,
    seed: int = 0,
    order: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Split ``pairs`` (int64 ``(2, N)``) per user into ``(kept, held_out)``.

    Each user with ``n`` pairs holds out ``min(round(fraction * n), n - 1)`` of them (so a
    user keeps at least one pair): a uniformly random subset (``torch.Generator`` seeded with
    ``seed``), or, when ``order`` (``(N,)`` e.g. timestamps) is given, the pairs with the
    largest ``order`` (ties: the later pair in ``pairs``). Vectorised; both parts keep the
    relative order of ``pairs``.
    """
    fn = "split_per_user"
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"{fn}: fraction must be in [0, 1), got {fraction!r}")
    n = pairs.shape[1]
    if order is None:
        gen = torch.Generator().manual_seed(int(seed))
        key = torch.rand(n, generator=gen, dtype=torch.float64)
    else:
        if not isinstance(order, Tensor) or order.shape != (n,):
            raise ValueError(f"{fn}: order must be a tensor of shape ({n},)")
        key = order.to(torch.float64)
    users = pairs[0]
    idx, rank, counts = _rank_in_group(users, key, num_users)
    held_n = torch.floor(counts.to(torch.float64) * float(fraction) + 0.5).to(torch.int64)
    held_n = torch.minimum(held_n, (counts - 1).clamp(min=0))
    held = torch.zeros(n, dtype=torch.bool)
    held[idx] = rank >= (counts - held_n)[users[idx]]
    return pairs[:, ~held], pairs[:, held]


# --------------------------------------------------------------------------- Interactions


@dataclass
class Interactions:
    """User-item implicit feedback with a train/test (and optional validation) split.

    Attributes:
        name: dataset name.
        num_users, num_items: ``U`` and ``I``; ids are ``0..U-1`` and ``0..I-1``.
        train, test: int64 ``(2, N)`` (row 0 users, row 1 items), made duplicate-free and
            sorted by (user, item) on construction.
        val: like ``train``, or None; carved from the training pairs by
            :meth:`with_validation` for model selection.
        info: notes (source files, split, generator settings, ...).
    """

    name: str
    num_users: int
    num_items: int
    train: Tensor
    test: Tensor
    val: Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        fn = "Interactions"
        for what in ("num_users", "num_items"):
            v = getattr(self, what)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{fn}: {what} must be an int >= 0, got {v!r}")
        U, I = self.num_users, self.num_items
        self.train = _unique_pairs(_check_pairs(fn, "train", self.train, U, I), I)
        self.test = _unique_pairs(_check_pairs(fn, "test", self.test, U, I), I)
        if self.val is not None:
            self.val = _unique_pairs(_check_pairs(fn, "val", self.val, U, I), I)

    # -- per-user item lists
    @cached_property
    def train_csr(self) -> CSR:
        """Binary ``U x I`` CSR of the training pairs (each user's items, sorted)."""
        return _pairs_csr(self.train, self.num_users, self.num_items)

    @cached_property
    def test_csr(self) -> CSR:
        return _pairs_csr(self.test, self.num_users, self.num_items)

    @cached_property
    def val_csr(self) -> CSR | None:
        return None if self.val is None else _pairs_csr(self.val, self.num_users, self.num_items)

    @property
    def num_train(self) -> int:
        return int(self.train.shape[1])

    @property
    def num_test(self) -> int:
        return int(self.test.shape[1])

    @property
    def num_val(self) -> int:
        return 0 if self.val is None else int(self.val.shape[1])

    def adjacency(self, normalize: bool = True, dtype: torch.dtype = torch.float32) -> CSR:
        """The ``(U + I) x (U + I)`` bipartite graph of the training pairs,
        ``D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` (no self loops) unless ``normalize=False``:
        users are nodes ``0..U-1``, items ``U..U+I-1``. LightGCN propagates over it."""
        return self.train_csr.bipartite_adjacency(normalize=normalize, dtype=dtype)

    def with_validation(self, fraction: float = 0.1, seed: int = 0) -> Interactions:
        """A copy whose ``val`` holds, per user, ``round(fraction * n)`` (at most ``n - 1``)
        of the user's training pairs chosen at random (seeded); ``train`` keeps the rest.
        The test split is unchanged."""
        if self.val is not None:
            raise ValueError("with_validation: this dataset already has a validation split")
        train, val = split_per_user(self.train, self.num_users, fraction, seed=seed)
        info = dict(self.info)
        info["validation"] = (
            f"{fraction:g} of each user's training pairs at random (seed {seed}), "
            "at least one pair left in train"
        )
        return Interactions(self.name, self.num_users, self.num_items, train, self.test, val, info)

    def summary(self) -> dict[str, Any]:
        """Counts and density, JSON-ready."""
        U, I = self.num_users, self.num_items
        total = self.num_train + self.num_val + self.num_test
        return {
            "name": self.name,
            "users": U,
            "items": I,
            "train": self.num_train,
            "val": self.num_val,
            "test": self.num_test,
            "density": total / (U * I) if U and I else 0.0,
            "train_users": int(self.train[0].unique().numel()),
            "test_users": int(self.test[0].unique().numel()),
        }

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"train={self.num_train}, val={self.num_val}, test={self.num_test})"
        )


# --------------------------------------------------------------------------- file access


def _read_pair_file(
    fn: str, path: Path, num_users: int | None, num_items: int | None, base: int
) -> Tensor:
    """``user item [count]`` per line (whitespace-separated; integer ids from ``base``, the
    count any number, e.g. ``3.2466e+05``)."""
    users: list[int] = []
    items: list[int] = []
    for lineno, line in read_lines(fn, path):
        fields = line.split()
        if len(fields) not in (2, 3):
            raise line_error(
                fn, path, lineno, f"expected 'user item count' (3 fields), got {len(fields)}"
            )
        vals = parse_ints(fn, path, lineno, fields[:2])
        if len(fields) == 3:
            try:
                float(fields[2])
            except ValueError:
                raise line_error(fn, path, lineno, f"count {fields[2]!r} is not a number") from None
        u, i = vals[0] - base, vals[1] - base
        for what, v, n in (("user", u, num_users), ("item", i, num_items)):
            if v < 0 or (n is not None and v >= n):
                top = "" if n is None else f", {base + n - 1}"
                raise line_error(fn, path, lineno, f"{what} id {v + base} outside [{base}{top}]")
        users.append(u)
        items.append(i)
    return torch.tensor([users, items], dtype=torch.int64).reshape(2, -1)


def _maybe_val(data: Interactions, val_fraction: float | None, val_seed: int) -> Interactions:
    return data if val_fraction is None else data.with_validation(val_fraction, val_seed)


def _apply_protocol(fn: str, data: Interactions, protocol: str, seed: int,
                    val_fraction: float | None, val_seed: int) -> Interactions:
    """``data`` as loaded (``"reference"``), or all its pairs re-split 80/10/10 per user
    at random (``"standard"``, :func:`~sparselth.data.splits.split_80_10_10`)."""
    if check_protocol(fn, protocol) == "reference":
        return _maybe_val(data, val_fraction, val_seed)
    if val_fraction is not None:
        raise ValueError(f"{fn}: val_fraction must be None with protocol='standard' (its split "
                         f"has a validation part), got {val_fraction!r}")
    parts = [data.train, data.test] + ([] if data.val is None else [data.val])
    pairs = _unique_pairs(torch.cat(parts, 1), data.num_items)
    train, val, test = split_80_10_10(pairs, data.num_users, seed=seed)
    info = {**data.info, "protocol": "standard", "split": (
        f"every interaction per user 0.8/0.1/0.1 train/validation/test at random (seed {seed}); "
        "users with fewer than 3 interactions keep all in train")}
    return Interactions(data.name, data.num_users, data.num_items, train, test, val, info)


# --------------------------------------------------------------------------- loaders


def load_lastfm(
    root: Any = None, *, protocol: str = "reference", seed: int = 0,
    val_fraction: float | None = None, val_seed: int = 0,
) -> Interactions:
    """LastFM as in the LightGCN reference: ``data1.txt`` (train, 42,135 pairs) and
    ``test1.txt`` (test, 10,533 pairs) from ``root/lastfm`` or ``root`` (default
    ``$SPARSELTH_DATA``). 1,892 users and 4,489 items (hard-coded like the reference); ids
    shifted to start at 0; the third column (a play count) is ignored.
    ``val_fraction`` carves a validation split out of train (:meth:`Interactions.with_validation`).
    ``protocol="standard"`` re-splits both files' pairs 80/10/10 per user at random (``seed``).
    """
    fn = "load_lastfm"
    check_protocol(fn, protocol)
    folder = dataset_dir(fn, "lastfm", "data1.txt", root)
    train = _read_pair_file(fn, folder / "data1.txt", LASTFM_USERS, LASTFM_ITEMS, base=1)
    test = _read_pair_file(fn, folder / "test1.txt", LASTFM_USERS, LASTFM_ITEMS, base=1)
    data = Interactions(
        "lastfm",
        LASTFM_USERS,
        LASTFM_ITEMS,
        train,
        test,
        info={"source": str(folder), "split": "the reference's data1.txt / test1.txt"},
    )
    return _apply_protocol(fn, data, protocol, seed, val_fraction, val_seed)


def load_lightgcn_text(
    folder: Any,
    *,
    name: str | None = None,
    train_file: str = "train.txt",
    test_file: str = "test.txt",
    val_fraction: float | None = None,
    val_seed: int = 0,
) -> Interactions:
    """LightGCN's text format (gowalla, yelp2018, amazon-book): ``train.txt`` and
    ``test.txt``, one line per user ``uid item item ...`` with 0-based ids (a line with only
    ``uid`` is a user without items). ``U = max uid + 1`` and ``I = max item + 1`` over both
    files. A relative ``folder`` that does not exist is looked up under ``$SPARSELTH_DATA``."""
    fn = "load_lightgcn_text"
    folder = Path(folder).expanduser()
    if not folder.is_dir() and not folder.is_absolute() and os.environ.get(ENV_VAR):
        folder = Path(os.environ[ENV_VAR]).expanduser() / folder
    if not folder.is_dir():
        raise FileNotFoundError(f"{fn}: folder {str(folder)!r} does not exist")

    def read(path: Path) -> tuple[Tensor, int]:
        users: list[int] = []
        items: list[int] = []
        max_user = -1
        for lineno, line in read_lines(fn, path):
            vals = parse_ints(fn, path, lineno, line.split())
            if min(vals) < 0:
                raise line_error(fn, path, lineno, "ids must be >= 0")
            u = vals[0]
            max_user = max(max_user, u)
            users.extend([u] * (len(vals) - 1))
            items.extend(vals[1:])
        return torch.tensor([users, items], dtype=torch.int64).reshape(2, -1), max_user

    train, mu_tr = read(folder / train_file)
    test, mu_te = read(folder / test_file)
    num_users = max(mu_tr, mu_te) + 1
    num_items = max([int(t[1].max()) + 1 for t in (train, test) if t.numel()] or [0])
    data = Interactions(
        name or folder.name,
        num_users,
        num_items,
        train,
        test,
        info={"source": str(folder), "split": f"the files {train_file} / {test_file}"},
    )
    return _maybe_val(data, val_fraction, val_seed)


def _token_ids(tokens: list[str]) -> tuple[Tensor, list[str]]:
    """Dense ids for tokens, in numeric order when every token is an integer."""
    uniq = sorted(set(tokens))
    if all(t.lstrip("-").isdigit() for t in uniq):
        uniq = sorted(uniq, key=int)
    index = {t: k for k, t in enumerate(uniq)}
    return torch.tensor([index[t] for t in tokens], dtype=torch.int64), uniq


def load_movielens_100k(
    root: Any = None,
    *,
    split: str = "random",
    test_fraction: float = 0.2,
    seed: int = 0,
    protocol: str = "reference",
    min_rating: float | None = None,
    val_fraction: float | None = None,
    val_seed: int = 0,
) -> Interactions:
    """MovieLens-100K from ``movielens-100k/ml-100k.inter`` (RecBole atomic file: a header
    ``user_id:token item_id:token rating:float timestamp:float``, then tab-separated rows).

    Every rating is an interaction (or only ratings >= ``min_rating``); user and item tokens
    get dense ids in numeric order (943 users, 1,682 items). Per user, ``test_fraction`` of
    the pairs (at most ``n - 1``) go to test: at random (``split="random"``, seeded) or the
    latest by timestamp (``split="time"``). ``protocol="standard"`` instead splits every
    interaction 80/10/10 per user at random (``seed``; ``split`` must stay ``"random"``).
    """
    fn = "load_movielens_100k"
    if split not in ("random", "time"):
        raise ValueError(f"{fn}: split must be 'random' or 'time', got {split!r}")
    if check_protocol(fn, protocol) == "standard" and split != "random":
        raise ValueError(f"{fn}: split must be 'random' with protocol='standard', got {split!r}")
    folder = dataset_dir(fn, "movielens-100k", "ml-100k.inter", root)
    path = folder / "ml-100k.inter"
    lines = read_lines(fn, path)
    try:
        lineno, header = next(lines)
    except StopIteration:
        raise ValueError(f"{fn}: {str(path)!r} is empty") from None
    names = [h.split(":")[0] for h in header.split("\t")]
    for need in ("user_id", "item_id", "rating", "timestamp"):
        if need not in names:
            raise line_error(fn, path, lineno, f"header lacks {need!r}: {header!r}")
    cu, ci, cr, ct = (names.index(n) for n in ("user_id", "item_id", "rating", "timestamp"))
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise line_error(
                fn, path, lineno, f"expected {len(names)} tab-separated fields, got {len(fields)}"
            )
        try:
            r, t = float(fields[cr]), float(fields[ct])
        except ValueError:
            msg = f"rating/timestamp are not numbers: {line!r}"
            raise line_error(fn, path, lineno, msg) from None
        if not fields[cu] or not fields[ci]:
            raise line_error(fn, path, lineno, "empty user or item token")
        users.append(fields[cu])
        items.append(fields[ci])
        ratings.append(r)
        times.append(t)
    uid, _ = _token_ids(users)
    iid, _ = _token_ids(items)
    num_users = int(uid.max()) + 1 if uid.numel() else 0
    num_items = int(iid.max()) + 1 if iid.numel() else 0
    rating = torch.tensor(ratings, dtype=torch.float64)
    ts = torch.tensor(times, dtype=torch.float64)
    keep = torch.ones_like(rating, dtype=torch.bool) if min_rating is None else rating >= min_rating
    pairs = torch.stack([uid, iid])[:, keep]
    ts = ts[keep]
    # One interaction per (user, item): keep the latest timestamp of repeated ratings.
    key = pairs[0] * max(num_items, 1) + pairs[1]
    if torch.unique(key).numel() != key.numel():
        order = torch.argsort(ts, stable=True)
        key_o = key[order]
        last = torch.ones_like(key_o, dtype=torch.bool)
        srt = torch.argsort(key_o, stable=True)
        dup_next = key_o[srt][:-1] == key_o[srt][1:]
        last[srt[:-1][dup_next]] = False
        sel = order[last]
        pairs, ts = pairs[:, sel], ts[sel]
    train, test = split_per_user(
        pairs, num_users, test_fraction, seed=seed, order=ts if split == "time" else None
    )
    data = Interactions(
        "ml100k",
        num_users,
        num_items,
        train,
        test,
        info={
            "source": str(path),
            "interactions": "every rating" if min_rating is None else f"rating >= {min_rating:g}",
            "split": (
                f"per user {1 - test_fraction:g}/{test_fraction:g} "
                + (f"at random (seed {seed})" if split == "random" else "by time (latest to test)")
            ),
        },
    )
    return _apply_protocol(fn, data, protocol, seed, val_fraction, val_seed)


# --------------------------------------------------------------------------- generator


def synthetic_interactions(
    num_users: int = 1000, num_items: int = 2000, *,
    avg_interactions: float = 20.0, min_interactions: int = 5, latent_dim: int = 16,
    popularity_exponent: float = 0.8, temperature: float = 0.3, oversample: float = 4.0,
    test_fraction: float = 0.2, val_fraction: float | None = None, seed: int = 0,
    name: str | None = None, protocol: str = "reference",
) -> Interactions:
    """Latent-factor implicit feedback, deterministic by ``seed``.

    Users and items get latent vectors ``p_u, q_i ~ N(0, I / latent_dim)``; items a
    popularity ``pop_i ~ (rank_i + 1)^-popularity_exponent`` over a random ranking. User
    ``u`` interacts with ``n_u`` items, ``n_u = min_interactions + (avg - min) * X`` with X
    log-normal (mean 1, heavy-tailed activity), capped at half the items. Its items are
    drawn without replacement with probability ~ ``pop_i * exp(p_u . q_i / temperature)``,
    approximately: ``oversample * n_u`` candidates are drawn from the popularity
    distribution and the ``n_u`` best by ``p_u . q_i / temperature + Gumbel noise`` among
    the distinct ones are kept (Gumbel top-k). Work and memory go in chunks of ~1M
    candidates, so 1M users x 1M items fits in a few GB (the pairs themselves dominate).
    Per user, ``test_fraction`` of the pairs (at most n_u - 1) go to test at random; with
    ``protocol="standard"`` the pairs are split 80/10/10 per user instead (seed ``seed + 1``).
    """
    fn = "synthetic_interactions"
    check_protocol(fn, protocol)
    for what, v in (("num_users", num_users), ("num_items", num_items)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {what} must be an int >= 1, got {v!r}")
    if not 1 <= min_interactions <= avg_interactions:
        raise ValueError(
            f"{fn}: need 1 <= min_interactions <= avg_interactions, got "
            f"{min_interactions!r}, {avg_interactions!r}"
        )
    if oversample < 1.0:
        raise ValueError(f"{fn}: oversample must be >= 1, got {oversample!r}")
    if temperature <= 0:
        raise ValueError(f"{fn}: temperature must be > 0, got {temperature!r}")
    gen = torch.Generator().manual_seed(int(seed))
    scale = 1.0 / math.sqrt(latent_dim)
    item_f = torch.randn(num_items, latent_dim, generator=gen) * scale
    ranks = torch.randperm(num_items, generator=gen).to(torch.float64)
    pop = (ranks + 1.0).pow(-float(popularity_exponent))
    cdf = torch.cumsum(pop, 0)
    cdf /= cdf[-1].clone()
    sigma = 1.0
    x = torch.exp(sigma * torch.randn(num_users, generator=gen, dtype=torch.float64) - sigma**2 / 2)
    n_u = (min_interactions + (avg_interactions - min_interactions) * x).round().to(torch.int64)
    n_u = n_u.clamp(min=min_interactions, max=max(1, num_items // 2)).clamp(max=num_items)
    m_u = torch.ceil(n_u.to(torch.float64) * oversample).to(torch.int64)
    user_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    out: list[Tensor] = []
    start = 0
    csum = torch.cumsum(m_u, 0)
    chunk_index = 0
    while start < num_users:
        # users [start, stop): about _CAND_CHUNK candidates (at least one user)
        base = int(csum[start - 1]) if start else 0
        stop = int(torch.searchsorted(csum, base + _CAND_CHUNK, right=True))
        stop = min(num_users, max(stop, start + 1))
        g = torch.Generator().manual_seed(user_seed + chunk_index)
        chunk_index += 1
        nu = stop - start
        user_f = torch.randn(nu, latent_dim, generator=g) * scale
        m = m_u[start:stop]
        local = torch.repeat_interleave(torch.arange(nu), m)
        u = torch.rand(local.numel(), generator=g, dtype=torch.float64)
        items = torch.searchsorted(cdf, u).clamp_(max=num_items - 1)
        score = (user_f[local] * item_f[items]).sum(1) / temperature
        score -= torch.log(-torch.log(torch.rand(score.numel(), generator=g).clamp_(min=1e-12)))
        # distinct (user, item) candidates, then the n_u best per user
        key = local * num_items + items
        key, inv = torch.unique(key, sorted=True, return_inverse=True)
        best = torch.full((key.numel(),), -math.inf).scatter_reduce_(
            0, inv, score, reduce="amax"
        )
        lu = key // num_items
        order, rank, _ = _rank_in_group(lu, -best, nu)
        sel = order[rank < n_u[start:stop][lu[order]]]
        out.append(torch.stack([lu[sel] + start, key[sel] % num_items]))
        start = stop
    pairs = torch.cat(out, 1) if out else torch.zeros(2, 0, dtype=torch.int64)
    pairs = _unique_pairs(pairs, num_items)
    train, test = split_per_user(pairs, num_users, test_fraction, seed=int(seed) + 1)
    data = Interactions(
        name or f"synthetic-{num_users}x{num_items}",
        num_users,
        num_items,
        train,
        test,
        info={
            "generator": "latent-factor implicit feedback (Gumbel top-k over popularity draws)",
            "avg_interactions": avg_interactions,
            "min_interactions": min_interactions,
            "latent_dim": latent_dim,
            "popularity_exponent": popularity_exponent,
            "temperature": temperature,
            "oversample": oversample,
            "seed": seed,
            "split": (
                f"per user {1 - test_fraction:g}/{test_fraction:g} at random (seed {seed + 1})"
            ),
        },
    )
    if protocol == "standard":
        return _apply_protocol(fn, data, protocol, int(seed) + 1, val_fraction, int(seed) + 2)
    return _maybe_val(data, val_fraction, int(seed) + 2)


def load_recsys(name: str, root: Any = None, **kwargs: Any) -> Interactions:
    """Load by name: ``"lastfm"``, ``"ml100k"`` (also ``"ml-100k"``, ``"movielens-100k"``),
    ``"synthetic"`` (``kwargs`` go to :func:`synthetic_interactions`), or a folder in
    LightGCN's text format. ``kwargs`` go to the loader (e.g. ``val_fraction=0.1``)."""
    key = str(name).lower()
    if key == "lastfm":
        return load_lastfm(root, **kwargs)
    if key in ("ml100k", "ml-100k", "movielens-100k", "movielens100k"):
        return load_movielens_100k(root, **kwargs)
    if key == "synthetic":
        return synthetic_interactions(**kwargs)
    folder = Path(name)
    if not folder.is_absolute() and root is not None:
        folder = Path(root) / name
    if folder.is_dir():
        return load_lightgcn_text(folder, **kwargs)
    raise ValueError(
        f"load_recsys: unknown dataset {name!r}; use 'lastfm', 'ml100k', 'synthetic' or a "
        "folder with train.txt/test.txt"
    )


# --------------------------------------------------------------------------- BPR sampling


class BPRSampler:
    """Uniform BPR triples ``(user, positive, negative)`` from a binary ``U x I`` CSR.

    Per sample (as the LightGCN and LTH-MRS references do): a user uniformly at random with
    replacement (among users with at least one training item and at least one item not
    interacted with), one positive uniformly from the user's items, one negative uniformly
    from the items the user has not interacted with (rejection sampling, vectorised: only
    rejected draws are redrawn). An epoch has as many samples as training interactions.

    Args:
        train: binary ``U x I`` :class:`~sparselth.CSR` (``Interactions.train_csr``).
        seed: seed of the sampler's own ``torch.Generator`` (the global RNG is untouched).
    """

    def __init__(self, train: CSR, seed: int = 0):
        if not isinstance(train, CSR):
            raise TypeError(f"BPRSampler: train must be a CSR, got {type(train).__name__}")
        self.num_users, self.num_items = train.shape
        self.rowptr = train.rowptr.to(torch.int64)
        self.col = train.col.to(torch.int64)
        deg = self.rowptr[1:] - self.rowptr[:-1]
        self.users = torch.nonzero((deg > 0) & (deg < self.num_items)).flatten()
        self.keys = train.row() * self.num_items + self.col  # sorted: CSR order
        self.num_samples = int(self.col.numel())
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return self.num_samples

    def _is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        q = users * self.num_items + items
        pos = torch.searchsorted(self.keys, q).clamp_(max=max(self.keys.numel() - 1, 0))
        return self.keys[pos] == q if self.keys.numel() else torch.zeros_like(q, dtype=torch.bool)

    def sample(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` triples as three int64 tensors ``(users, pos_items, neg_items)``."""
        if n < 0:
            raise ValueError(f"BPRSampler.sample: n must be >= 0, got {n}")
        g = self.generator
        if self.users.numel() == 0:
            if n:
                raise ValueError("BPRSampler.sample: no user has both positives and negatives")
            e = torch.zeros(0, dtype=torch.int64)
            return e, e, e
        users = self.users[torch.randint(self.users.numel(), (n,), generator=g)]
        start = self.rowptr[users]
        deg = self.rowptr[users + 1] - start
        off = (torch.rand(n, generator=g, dtype=torch.float64) * deg).to(torch.int64)
        pos = self.col[start + torch.minimum(off, deg - 1)]
        neg = torch.randint(self.num_items, (n,), generator=g)
        bad = torch.nonzero(self._is_positive(users, neg)).flatten()
        while bad.numel():
            neg[bad] = torch.randint(self.num_items, (bad.numel(),), generator=g)
            bad = bad[self._is_positive(users[bad], neg[bad])]
        return users, pos, neg

    def epoch(self, batch_size: int = 2048) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """One epoch: ``len(self)`` samples in batches of ``batch_size`` (the last may be
        smaller)."""
        if batch_size < 1:
            raise ValueError(f"BPRSampler.epoch: batch_size must be >= 1, got {batch_size}")
        users, pos, neg = self.sample(self.num_samples)
        for s in range(0, self.num_samples, batch_size):
            yield users[s : s + batch_size], pos[s : s + batch_size], neg[s : s + batch_size]

    def num_batches(self, batch_size: int = 2048) -> int:
        return -(-self.num_samples // batch_size)
