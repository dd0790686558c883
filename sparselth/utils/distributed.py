"""Ticket search on several processes: the few collectives every distributed loop needs,
over :mod:`torch.distributed` as ``torchrun`` sets it up.

The model of a distributed run here: every rank runs the same program with the same RNG
streams (the same seeds), each rank takes its :func:`shard` of the data, gradients are
summed or averaged across ranks, and rank 0 is the authority for everything that is decided
once (masks: :func:`broadcast_masks`; files: only rank 0 writes, :func:`on_main` shares what
it read). :func:`check_same` turns a silent divergence of the ranks into an error.

Without an initialised process group (a plain ``python ...`` run) every function here is the
one-process identity: ``world() == (0, 1, True)``, broadcasts return their input, checks
pass, :func:`shard` returns everything. So code written for ``torchrun`` runs unchanged on
one process.

Collectives go through CPU tensors (gloo). :func:`init_from_env` picks gloo on a machine
without CUDA and ``"cpu:gloo,cuda:nccl"`` with CUDA, so model gradients on a GPU travel over
NCCL while masks, checksums and files travel over gloo.

Example (``torchrun --nproc_per_node=2 script.py``)::

    init_from_env()
    rank, size, main = world()
    part = batch_idx[shard(len(batch_idx))]
    masks = broadcast_masks(masks)          # rank 0 decided
    check_same(masks, "masks of round 3")   # every rank holds them
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = [
    "all_reduce_gradients",
    "all_reduce_sum",
    "barrier",
    "broadcast_json",
    "broadcast_masks",
    "broadcast_tensors",
    "check_same",
    "digest",
    "init_from_env",
    "is_distributed",
    "main_only",
    "on_main",
    "show_progress",
    "shard",
    "shutdown",
    "tensors_from_main",
    "world",
]

T = TypeVar("T")

# torchrun sets these (MASTER_ADDR/PORT may come from the launcher's rendezvous instead)
ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_OWNED = {"group": False}
# exception types re-raised by name on the other ranks (anything else: RuntimeError)
_RAISABLE = {e.__name__: e for e in (ValueError, TypeError, KeyError, FileNotFoundError,
                                     RuntimeError, OSError)}


def _dist():
    import torch.distributed as dist

    return dist


def world() -> tuple[int, int, bool]:
    """``(rank, world_size, is_main)`` of this process: from :mod:`torch.distributed` when a
    process group is initialised, else ``(0, 1, True)``."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return rank, dist.get_world_size(), rank == 0
    return 0, 1, True


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return world()[1] > 1


def init_from_env(backend: str | None = None, *, timeout_s: float | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment variables
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU);
    without them do nothing. Returns True when a process group is initialised afterwards
    (also when it was before).

    ``backend``: None picks ``"gloo"`` without CUDA and ``"cpu:gloo,cuda:nccl"`` with CUDA
    (CPU tensors over gloo, GPU tensors over NCCL; rank ``LOCAL_RANK`` uses that GPU when
    there is one), or any backend string
    :func:`torch.distributed.init_process_group` accepts. ``timeout_s``: how long a
    collective waits for the other ranks (None: torch's default).
    """
    dist = _dist()
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"init_from_env: backend must be a str or None, got {backend!r}")
    if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"init_from_env: timeout_s must be a positive number, got {timeout_s!r}")
    if dist.is_available() and dist.is_initialized():
        return True
    present = [v for v in ENV_VARS if v in os.environ]
    if "RANK" not in present and "WORLD_SIZE" not in present:
        return False
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise ValueError(f"init_from_env: the environment sets {present} but not {missing}; "
                         "start the program with torchrun (or set all of "
                         f"{list(ENV_VARS)})")
    if not dist.is_available():
        raise RuntimeError("init_from_env: this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and "nccl" in backend and local < torch.cuda.device_count():
        torch.cuda.set_device(local)   # one GPU per rank (more ranks than GPUs: CPU work)
    kwargs: dict[str, Any] = {}
    if timeout_s is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    dist.init_process_group(backend=backend, **kwargs)
    _OWNED["group"] = True
    return True


def shutdown() -> None:
    """Wait for every rank, then destroy the process group :func:`init_from_env` created (a
    group made elsewhere is left alone)."""
    dist = _dist()
    if _OWNED["group"] and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _OWNED["group"] = False


def barrier() -> None:
    """Wait until every rank gets here (nothing on one process)."""
    if is_distributed():
        _dist().barrier()


def shard(n: int, rank: int | None = None, world_size: int | None = None) -> slice:
    """The contiguous part of ``range(n)`` that ``rank`` of ``world_size`` takes (defaults:
    this process's): ``slice(n * rank // world_size, n * (rank + 1) // world_size)``. Parts
    differ in length by at most one and cover ``range(n)`` exactly once; a rank may get an
    empty part when ``n < world_size``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"shard: n must be an int >= 0, got {n!r}")
    r, w, _ = world()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"shard: world_size must be an int >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"shard: rank must be an int in [0, {world_size}), got {rank!r}")
    return slice(n * rank // world_size, n * (rank + 1) // world_size)


def show_progress(progress: bool) -> bool:
    """Whether this process shows progress bars: ``progress`` on rank 0, never elsewhere."""
    return bool(progress) and world()[2]


def main_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """``fn`` run on rank 0 only (other ranks get None, without communicating): for writes
    whose result the other ranks do not need (reports, tickets, plots)."""

    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if world()[2] else None

    wrapper.__name__ = getattr(fn, "__name__", "main_only")
    wrapper.__doc__ = fn.__doc__
    return wrapper


# --------------------------------------------------------------------------- broadcasts


def _send_bytes(data: bytes | None, src: int) -> bytes:
    """``data`` of rank ``src`` on every rank (two broadcasts: the length, the bytes)."""
    dist = _dist()
    n = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
    dist.broadcast(n, src)
    buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if data
           else torch.empty(int(n), dtype=torch.uint8))
    if int(n):
        dist.broadcast(buf, src)
    return buf.numpy().tobytes()


def broadcast_json(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (anything :func:`json.dumps` writes) on every rank; the other
    ranks' ``obj`` is ignored. One process: ``obj``."""
    if not is_distributed():
        return obj
    rank = world()[0]
    data = json.dumps(obj).encode() if rank == src else None
    return json.loads(_send_bytes(data, src).decode())


def _raise_shared(header: Mapping[str, Any], src: int) -> None:
    """Raise on this rank the exception rank ``src`` reported in ``header``, if any."""
    if "error" not in header:
        return
    name, message = header["error"], header["message"]
    exc = _RAISABLE.get(name)
    if exc is not None:
        raise exc(f"{message} (raised on rank {src})")
    raise RuntimeError(f"rank {src} failed: {name}: {message}")


def _error_header(e: BaseException) -> dict[str, str]:
    return {"error": type(e).__name__, "message": str(e)}


def on_main(fn: Callable[..., T], *args: Any, src: int = 0, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run on rank ``src`` only, its (JSON) result shared with every
    rank; an exception on rank ``src`` is raised on every rank (ValueError stays a
    ValueError, ...), so no rank waits forever for a result that will not come. Every rank
    must call it (a collective). One process: ``fn(*args, **kwargs)``."""
    if not is_distributed():
        return fn(*args, **kwargs)
    if world()[0] == src:
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            broadcast_json(_error_header(e), src)
            raise
        broadcast_json({"result": result}, src)
        return result
    header = broadcast_json(None, src)
    _raise_shared(header, src)
    return header["result"]


def _to_bytes(t: Tensor) -> Tensor:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)


def _dtype_of(name: str) -> torch.dtype:
    dt = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"broadcast_tensors: unknown dtype {name!r}")
    return dt


def _share_tensors(tensors: Mapping[str, Tensor] | None, header: dict[str, Any] | None,
                   src: int, like: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    """The tensor broadcast: a JSON header (names, dtypes, shapes, or an error) and one
    byte buffer. ``like`` places the received tensors on the devices of this rank's own."""
    dist = _dist()
    rank = world()[0]
    if rank == src:
        if header is None:
            header = {"tensors": [[k, str(v.dtype), list(v.shape)] for k, v in tensors.items()]}
        broadcast_json(header, src)
        if "error" in header:
            return {}
        parts = [_to_bytes(v) for v in tensors.values()]
        buf = torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)
        if buf.numel():
            dist.broadcast(buf, src)
        return dict(tensors)
    header = broadcast_json(None, src)
    _raise_shared(header, src)
    specs = [(k, _dtype_of(dt), torch.Size(shape)) for k, dt, shape in header["tensors"]]
    sizes = [s.numel() * torch.empty((), dtype=dt).element_size() for _, dt, s in specs]
    buf = torch.empty(sum(sizes), dtype=torch.uint8)
    if buf.numel():
        dist.broadcast(buf, src)
    out, start = {}, 0
    for (name, dt, shape), nbytes in zip(specs, sizes):
        t = buf[start:start + nbytes].clone().view(dt).reshape(shape)
        start += nbytes
        if like is not None and name in like and isinstance(like[name], Tensor):
            t = t.to(like[name].device)
        out[name] = t
    return out


def broadcast_tensors(tensors: Mapping[str, Tensor] | None, src: int = 0) -> dict[str, Tensor]:
    """Rank ``src``'s named tensors on every rank (any dtype, sent as bytes in one buffer).
    The other ranks may pass their own tensors of the same names (the result lands on their
    devices) or None (the result is on the CPU). One process: ``dict(tensors)``."""
    if not is_distributed():
        return dict(tensors or {})
    if world()[0] == src and tensors is None:
        raise ValueError("broadcast_tensors: the source rank must pass its tensors")
    return _share_tensors(tensors, None, src, tensors)


def tensors_from_main(fn: Callable[..., Mapping[str, Tensor]], *args: Any, src: int = 0,
                      **kwargs: Any) -> dict[str, Tensor]:
    """``fn(*args, **kwargs)`` (named tensors, e.g. a file read) run on rank ``src`` only and
    broadcast to every rank; an exception there is raised on every rank (see
    :func:`on_main`). A collective. One process: ``dict(fn(...))``."""
    if not is_distributed():
        return dict(fn(*args, **kwargs))
    if world()[0] == src:
        try:
            tensors = fn(*args, **kwargs)
        except Exception as e:
            _share_tensors(None, _error_header(e), src, None)
            raise
        return _share_tensors(tensors, None, src, None)
    return _share_tensors(None, None, src, None)


def broadcast_masks(masks: Mapping[str, Tensor], src: int = 0) -> dict[str, Tensor]:
    """Rank ``src``'s masks (name -> bool tensor) on every rank, on the devices of each rank's
    own masks: the masks rank ``src`` decided are the masks of the run. Every rank passes
    the masks it holds (same names). One process: ``dict(masks)``."""
    if not isinstance(masks, Mapping):
        raise TypeError(f"broadcast_masks: masks must be a mapping name -> tensor, got "
                        f"{type(masks).__name__}")
    return broadcast_tensors(masks, src)


# --------------------------------------------------------------------------- checks


def digest(name: str, t: Tensor) -> int:
    """A 63-bit checksum of a named tensor: sha256 over its name, dtype, shape and bytes."""
    h = hashlib.sha256(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(_to_bytes(t).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def _named(tensors: Mapping[str, Tensor] | Sequence[Tensor]) -> list[tuple[str, Tensor]]:
    if isinstance(tensors, Mapping):
        return [(str(k), v) for k, v in tensors.items()]
    if isinstance(tensors, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(tensors)]
    raise TypeError(f"check_same: tensors must be a mapping or a sequence, got "
                    f"{type(tensors).__name__}")


def _all_gather(row: Tensor) -> Tensor:
    dist = _dist()
    out = [torch.empty_like(row) for _ in range(world()[1])]
    dist.all_gather(out, row)
    return torch.stack(out)


def check_same(tensors: Mapping[str, Tensor] | Sequence[Tensor], what: str) -> None:
    """Raise ``RuntimeError`` unless every rank holds bit-identical ``tensors`` (names, dtypes,
    shapes and values). The message names ``what``, the ranks that differ from rank 0 and
    the first differing tensors. A collective over checksums (:func:`digest`), not the
    tensors. One process: nothing to compare."""
    if not isinstance(what, str):
        raise TypeError(f"check_same: what must be a str, got {type(what).__name__}")
    named = _named(tensors)
    if not is_distributed():
        return
    digests = [digest(k, v) for k, v in named]
    combined = 0
    for d in digests:
        combined = (combined * 1_000_003 + d) % (1 << 62)
    table = _all_gather(torch.tensor([len(named), combined], dtype=torch.int64))
    differ = [r for r in range(table.size(0)) if not torch.equal(table[r], table[0])]
    if not differ:
        return
    counts = table[:, 0].tolist()
    if len(set(counts)) > 1:
        raise RuntimeError(f"{what} differ between ranks: rank(s) {differ} hold a different "
                           f"number of tensors than rank 0 (per rank: {counts})")
    per = _all_gather(torch.tensor(digests, dtype=torch.int64))
    names = [named[i][0] for i in range(len(named))
             if any(per[r, i] != per[0, i] for r in differ)]
    raise RuntimeError(f"{what} differ between ranks: rank(s) {differ} hold different values "
                       f"than rank 0 in {names[:5]}{' ...' if len(names) > 5 else ''}; the "
                       "ranks have diverged (a step that was not synchronised, or data that "
                       "differ between ranks)")


# --------------------------------------------------------------------------- reductions


def all_reduce_sum(values: Tensor) -> Tensor:
    """``values`` summed over the ranks, in place (returned). One process: ``values``."""
    if is_distributed():
        _dist().all_reduce(values)
    return values


def all_reduce_gradients(params: Iterable[Tensor], average: bool = False) -> None:
    """Sum (or with ``average``, average) the ``.grad`` of ``params`` over the ranks, in one
    flat buffer per device and dtype. A parameter without a gradient on every rank keeps
    none (an optimizer skips it, as on one process); one with a gradient on some ranks only
    gets zeros on the others first, so the ranks always exchange the same buffers. Sum when
    each rank's loss is its share of the total (the shares add up to the one-process loss);
    average when each rank's loss is a mean over its own samples. One process: nothing."""
    if not is_distributed():
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    params = list(params)
    present = all_reduce_sum(torch.tensor([p.grad is not None for p in params],
                                          dtype=torch.int32))
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p, n in zip(params, present.tolist()):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse:
            raise TypeError("all_reduce_gradients: sparse gradients are not supported "
                            "(use a dense embedding gradient)")
        groups.setdefault((p.grad.device, p.grad.dtype), []).append(p)
    size = world()[1]
    for group in groups.values():
        grads = [p.grad for p in group]
        flat = _flatten_dense_tensors(grads)
        _dist().all_reduce(flat)
        if average:
            flat /= size
        for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(reduced)
