"""Tickets of row-sharded embedding tables: every rank writes its own rows, any number of ranks
reads them back.

:func:`save_sharded_ticket` (a collective) writes a **directory**::

    path/
      manifest.json                                   shards, row ranges, checksums
      shard-00000-of-00002-<sha256[:16]>.safetensors  rank 0's rows
      shard-00001-of-00002-<sha256[:16]>.safetensors  rank 1's rows

Each shard file holds ``masks/weight`` (bool), ``trained/weight`` and optionally
``init/weight`` (the weights to rewind to) for rows ``[start, end)``, keyed as in
:class:`~sparselth.ticket.Ticket`. ``manifest.json``::

    {"format": "sparselth.sharded_table", "format_version": 1, "library_version": "...",
     "num_embeddings": R, "embedding_dim": d, "dtype": "float32", "init": true,
     "shards": [{"rank": 0, "rows": [0, 6], "file": "shard-...", "sha256": "...",
                 "size": <bytes>}, ...],
     "metadata": {..., "sparsity": {"overall", "zeros", "total"}}, "json_sha256": "..."}

Writing is atomic as a whole (``sparselth._io``): every rank writes its file under a new
content-addressed name, rank 0 replaces ``manifest.json`` once all are written (the commit
point), then removes shard files no longer listed. A crash leaves the old ticket or the new one.
The directory must be one every rank sees (a shared file system when ranks are on several
machines).

:meth:`ShardedTicket.load` reads the rows of one rank under any world size: the rows
``row_partition(R, world_size)[rank]`` are cut out of the files that overlap them, whichever
world size wrote them (each file read is checked against its size and sha256; only those files
are read). A manifest or file that is edited, truncated, corrupted or inconsistent raises
``ValueError`` naming the problem; a missing one ``FileNotFoundError``. Nothing is pickled.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .. import _io
from ..nn.sharded_embedding import ShardedMaskedEmbedding, _rank_world, row_partition

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "ShardedTicket", "save_sharded_ticket"]

MANIFEST_FORMAT = "sparselth.sharded_table"
MANIFEST_VERSION = 1
_MANIFEST = "manifest.json"
_SHARD_RE = re.compile(r"shard-\d{5}-of-\d{5}-[0-9a-f]{16}\.safetensors")
# what each rank tells the others about its file: sha256 (32 bytes), size, init saved, zeros,
# entries, failed
_SIZE, _INIT, _ZEROS, _TOTAL, _FAILED = 32, 33, 34, 35, 36
_FLOATS = {str(d).replace("torch.", ""): d for d in
           (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def _library_version() -> str:
    return str(getattr(sys.modules.get("sparselth"), "__version__", "0"))


def _bad(path: Path, msg: str) -> ValueError:
    return ValueError(f"invalid sharded ticket {str(path)!r}: {msg}")


def _json_metadata(metadata: Any) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"save_sharded_ticket: metadata must be a mapping, got "
                        f"{type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_sharded_ticket: metadata must be JSON-serialisable: {e}") from None


def save_sharded_ticket(table: ShardedMaskedEmbedding, path: Any, *,
                        init_weight: Tensor | None = None, metadata: Any = None) -> Path:
    """Write ``table``'s ticket (its masks, trained weights and optional ``init_weight``, this
    rank's ``(rows, d)`` weights to rewind to) into directory ``path``; a collective (every
    rank of ``table``'s group calls it with the same ``path``). Returns the manifest's path."""
    op = "save_sharded_ticket"
    if not isinstance(table, ShardedMaskedEmbedding):
        raise TypeError(f"{op}: table must be a ShardedMaskedEmbedding, got "
                        f"{type(table).__name__}")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{op}: path must be a str or Path, got {type(path).__name__}")
    meta = _json_metadata(metadata)
    path = Path(path)
    rank, world = table.rank, table.world_size
    weight = table.weight.detach()
    mask = table.weight_mask.detach().bool()
    # a problem of one rank stops every rank (after the exchange below), none is left waiting
    problem: BaseException | None = None
    if init_weight is not None and (not isinstance(init_weight, Tensor)
                                    or init_weight.shape != weight.shape
                                    or init_weight.dtype != weight.dtype):
        problem = ValueError(
            f"{op}: init_weight must be this rank's rows, a "
            f"{str(weight.dtype).replace('torch.', '')} tensor of shape {tuple(weight.shape)}, "
            f"got {getattr(init_weight, 'dtype', type(init_weight).__name__)}"
            f"{list(getattr(init_weight, 'shape', []))}")
    elif path.exists() and not path.is_dir():
        problem = ValueError(f"{op}: path {str(path)!r} exists and is not a directory")
    sha, size = "00" * 32, 0
    if problem is None:
        try:
            sha, size = _write_shard(path, table, weight, mask, init_weight)
        except OSError as e:
            problem = e
    mine = torch.tensor([*bytes.fromhex(sha), size, int(init_weight is not None),
                         mask.numel() - int(mask.count_nonzero()), mask.numel(),
                         int(problem is not None)], dtype=torch.int64)
    every = mine.unsqueeze(0)
    if world > 1:     # also the barrier: every shard file is written past this point
        every = mine.new_empty(world * mine.numel())
        dist.all_gather_single(every, mine, group=table.group)
        every = every.view(world, mine.numel())
    if problem is not None:
        raise problem
    failed = [r for r in range(world) if int(every[r, _FAILED])]
    if failed:
        raise RuntimeError(f"{op}: rank(s) {failed} could not write their shard (see the error "
                           "raised there); nothing was committed")
    if len(set(every[:, _INIT].tolist())) != 1:
        raise ValueError(f"{op}: init_weight must be given on every rank or on none")
    status = torch.zeros(1, dtype=torch.int64)
    error = None
    if rank == 0:
        try:
            _write_manifest(path, table, every, meta)
        except BaseException as e:   # told to the other ranks before it is raised here
            error = e
            status[0] = 1
    if world > 1:
        dist.broadcast(status, 0, group=table.group)
    if error is not None:
        raise error
    if int(status[0]):
        raise RuntimeError(f"{op}: rank 0 failed to write {str(path / _MANIFEST)!r}")
    return path / _MANIFEST


def _write_shard(path: Path, table: ShardedMaskedEmbedding, weight: Tensor, mask: Tensor,
                 init_weight: Tensor | None) -> tuple[str, int]:
    """Write this rank's shard file (content-addressed name); its sha256 and size."""
    from safetensors.torch import save as st_save

    tensors = {"masks/weight": mask, "trained/weight": weight}
    if init_weight is not None:
        tensors["init/weight"] = init_weight.detach()
    start, end = table.rows
    data = st_save({k: v.to("cpu", copy=True).contiguous() for k, v in tensors.items()},
                   metadata={"format": MANIFEST_FORMAT, "rows": f"{start},{end}"})
    sha = _io.sha256_bytes(data)
    name = f"shard-{table.rank:05d}-of-{table.world_size:05d}-{sha[:16]}.safetensors"
    path.mkdir(parents=True, exist_ok=True)
    _io.atomic_write_bytes(path / name, data, stale=lambda n: _SHARD_RE.fullmatch(n) is not None)
    return sha, len(data)


def _write_manifest(path: Path, table: ShardedMaskedEmbedding, every: Tensor,
                    meta: dict) -> None:
    world = every.shape[0]
    shards = []
    for r, (start, end) in enumerate(row_partition(table.num_embeddings, world)):
        sha = bytes(every[r, :32].tolist()).hex()
        shards.append({"rank": r, "rows": [start, end], "sha256": sha,
                       "size": int(every[r, _SIZE]),
                       "file": f"shard-{r:05d}-of-{world:05d}-{sha[:16]}.safetensors"})
    zeros, total = int(every[:, _ZEROS].sum()), int(every[:, _TOTAL].sum())
    meta = dict(meta)
    meta["sparsity"] = {"overall": zeros / max(total, 1), "zeros": zeros, "total": total}
    doc = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
           "library_version": _library_version(), "num_embeddings": table.num_embeddings,
           "embedding_dim": table.embedding_dim,
           "dtype": str(table.weight.dtype).replace("torch.", ""),
           "init": bool(every[0, _INIT]), "shards": shards, "metadata": meta}
    doc["json_sha256"] = _io.sha256_bytes(_io.canonical_json(doc).encode())
    _io.atomic_write_json(path / _MANIFEST, doc)
    listed = {s["file"] for s in shards}
    for old in path.glob("shard-*.safetensors"):
        if _SHARD_RE.fullmatch(old.name) and old.name not in listed:
            try:
                old.unlink()
            except OSError:
                pass


def _read_manifest(path: Path) -> dict:
    jpath = path / _MANIFEST
    if not jpath.is_file():
        raise FileNotFoundError(f"no {_MANIFEST} in {str(path)!r}")
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"{_MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise _bad(path, f"'format' must be {MANIFEST_FORMAT!r}")
    ver = doc.get("format_version")
    if not isinstance(ver, int) or isinstance(ver, bool) or not 1 <= ver <= MANIFEST_VERSION:
        raise _bad(path, f"'format_version' {ver!r} is not one this sparselth reads "
                         f"(1..{MANIFEST_VERSION})")
    body = {k: v for k, v in doc.items() if k != "json_sha256"}
    if doc.get("json_sha256") != _io.sha256_bytes(_io.canonical_json(body).encode()):
        raise _bad(path, f"{_MANIFEST} failed its checksum (json_sha256): it was edited or "
                         "corrupted")
    R, d = doc.get("num_embeddings"), doc.get("embedding_dim")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (R, d)):
        raise _bad(path, "'num_embeddings' and 'embedding_dim' must be ints >= 0")
    if doc.get("dtype") not in _FLOATS or not isinstance(doc.get("init"), bool) or \
            not isinstance(doc.get("metadata"), dict):
        raise _bad(path, "'dtype', 'init' or 'metadata' is malformed")
    shards = doc.get("shards")
    if not isinstance(shards, list) or not shards:
        raise _bad(path, "'shards' must be a non-empty list")
    at = 0
    for i, s in enumerate(shards):
        ok = (isinstance(s, dict) and s.get("rank") == i and isinstance(s.get("rows"), list)
              and len(s["rows"]) == 2 and all(isinstance(v, int) for v in s["rows"])
              and isinstance(s.get("file"), str) and _SHARD_RE.fullmatch(s["file"])
              and isinstance(s.get("sha256"), str) and isinstance(s.get("size"), int))
        if not ok or s["rows"][0] != at or s["rows"][1] < at:
            raise _bad(path, f"shard {i} is malformed or its rows do not follow on from "
                             f"row {at}: {s!r}")
        at = s["rows"][1]
    if at != R:
        raise _bad(path, f"the shards cover rows [0, {at}) of {R}")
    return doc


class ShardedTicket:
    """The rows ``rows = (start, end)`` of a sharded table's ticket: ``mask`` (bool),
    ``trained`` and ``init`` (None when not saved) ``(end - start, d)`` tensors on the CPU, the
    table's ``num_embeddings``, ``embedding_dim``, the ``world_size`` that wrote it and its
    ``metadata``.

    Example (every rank, any world size)::

        >>> t = ShardedTicket.load("runs/emb-ticket")        # this rank's rows
        >>> emb = t.to_module(sparse_grad=True)              # a ShardedMaskedEmbedding
        >>> t.apply_to(emb, state="init")                    # rewind: θ0 with the masks
    """

    def __init__(self, rows, mask, trained, init, num_embeddings, embedding_dim, world_size,
                 metadata):
        self.rows, self.mask, self.trained, self.init = rows, mask, trained, init
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.world_size, self.metadata = world_size, metadata

    @classmethod
    def load(cls, path: Any, *, group=None, rows=None) -> "ShardedTicket":
        """Read the rows of this rank of ``group`` (None: the default group; the whole table
        when no process group is initialised), or explicit ``rows=(start, end)``."""
        op = "ShardedTicket.load"
        if not isinstance(path, (str, Path)):
            raise TypeError(f"{op}: path must be a str or Path, got {type(path).__name__}")
        path = Path(path)
        if path.is_file() and path.name == _MANIFEST:
            path = path.parent
        if not path.exists():
            raise FileNotFoundError(f"no sharded ticket at {str(path)!r}")
        doc = _read_manifest(path)
        R, d = doc["num_embeddings"], doc["embedding_dim"]
        if rows is None:
            rank, world = _rank_world(group)
            rows = row_partition(R, world)[rank]
        elif group is not None:
            raise ValueError(f"{op}: pass group or rows, not both")
        elif (not isinstance(rows, (tuple, list)) or len(rows) != 2
              or not all(isinstance(v, int) and not isinstance(v, bool) for v in rows)
              or not 0 <= rows[0] <= rows[1] <= R):
            raise ValueError(f"{op}: rows must be (start, end) with 0 <= start <= end <= {R}, "
                             f"got {rows!r}")
        start, end = int(rows[0]), int(rows[1])
        names = ["masks/weight", "trained/weight"] + (["init/weight"] if doc["init"] else [])
        parts: dict[str, list[Tensor]] = {n: [] for n in names}
        for s in doc["shards"]:
            lo, hi = s["rows"]
            if hi <= start or lo >= end or lo == hi:
                continue
            tensors = _io.load_safetensors(path / s["file"], sha256=s["sha256"], size=s["size"])
            _check_shard(path, s, tensors, names, d, _FLOATS[doc["dtype"]])
            for n in names:
                parts[n].append(tensors[n][max(start, lo) - lo:min(end, hi) - lo])
        dtypes = {"masks/weight": torch.bool}
        out = {n: torch.cat(p) if p else torch.empty(0, d, dtype=dtypes.get(
            n, _FLOATS[doc["dtype"]])) for n, p in parts.items()}
        return cls((start, end), out["masks/weight"], out["trained/weight"],
                   out.get("init/weight"), R, d, len(doc["shards"]), doc["metadata"])

    def apply_to(self, table: ShardedMaskedEmbedding, state: str = "trained"):
        """Copy the ``"trained"`` (default) or ``"init"`` weights and the mask into ``table``,
        whose rows must be this ticket's; pruned entries end up exactly zero. Returns it."""
        op = "ShardedTicket.apply_to"
        if not isinstance(table, ShardedMaskedEmbedding):
            raise TypeError(f"{op}: table must be a ShardedMaskedEmbedding, got "
                            f"{type(table).__name__}")
        if state not in ("trained", "init"):
            raise ValueError(f"{op}: state must be 'trained' or 'init', got {state!r}")
        weight = self.trained if state == "trained" else self.init
        if weight is None:
            raise ValueError(f"{op}: state='init' but this ticket has no init weights")
        if (table.num_embeddings, table.embedding_dim) != (
                self.num_embeddings, self.embedding_dim) or tuple(table.rows) != self.rows:
            raise ValueError(f"{op}: table holds rows [{table.rows[0]}, {table.rows[1]}) of a "
                             f"{table.num_embeddings} x {table.embedding_dim} table, the ticket "
                             f"rows [{self.rows[0]}, {self.rows[1]}) of {self.num_embeddings} x "
                             f"{self.embedding_dim}")
        with torch.no_grad():
            table.weight.copy_(weight)
        table.set_mask(self.mask)
        table.apply_mask_()
        return table

    def to_module(self, *, group=None, exchange=None, state: str = "trained",
                  **kwargs) -> ShardedMaskedEmbedding:
        """A :class:`~sparselth.nn.ShardedMaskedEmbedding` on ``group`` holding this ticket
        (``kwargs``: ``sparse_grad``, ``padding_idx``, ``backend``, ``device``)."""
        kwargs.setdefault("dtype", self.trained.dtype)
        table = ShardedMaskedEmbedding(self.num_embeddings, self.embedding_dim, group=group,
                                       exchange=exchange, **kwargs)
        return self.apply_to(table, state)

    def __repr__(self) -> str:
        return (f"ShardedTicket(rows [{self.rows[0]}, {self.rows[1]}) of {self.num_embeddings} "
                f"x {self.embedding_dim}, saved by {self.world_size} ranks, "
                f"init={'yes' if self.init is not None else 'no'})")


def _check_shard(path: Path, spec: dict, tensors: dict, names: list, dim: int,
                 dtype: torch.dtype) -> None:
    lo, hi = spec["rows"]
    if sorted(tensors) != sorted(names):
        raise _bad(path, f"{spec['file']} holds {sorted(tensors)}, expected {sorted(names)}")
    for n in names:
        t = tensors[n]
        want = torch.bool if n == "masks/weight" else dtype
        if t.dtype != want or tuple(t.shape) != (hi - lo, dim):
            raise _bad(path, f"{spec['file']}: {n} is {t.dtype}{list(t.shape)}, expected "
                             f"{want}{[hi - lo, dim]}")
