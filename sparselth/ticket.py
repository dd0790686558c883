"""``Ticket``: a lottery ticket = masks + weights (trained, and optionally the initial
weights to rewind to) + metadata, with a validated, checksummed, pickle-free file format.

File format (version 1). ``Ticket.save(path)`` writes a **directory**::

    path/
      ticket.json                       metadata + schema + checksums (human-readable)
      ticket-<sha256[:16]>.safetensors  all tensors (content-addressed name)

Tensors are keyed ``masks/<param>`` (bool), ``trained/<key>`` and ``init/<key>`` where
``<key>`` runs over the model's ``state_dict()`` without mask buffers. ``ticket.json``::

    {"format": "sparselth.ticket", "format_version": 1, "library_version": "...",
     "tensor_file": "ticket-....safetensors", "tensor_file_sha256": "...",
     "tensor_file_size": <bytes>,
     "tensors": {"masks/fc.weight": {"dtype": "bool", "shape": [4, 8]}, ...},
     "masks": [...], "trained": [...], "init": [...] or null,
     "metadata": {...}, "json_sha256": "..."}

``json_sha256`` is the sha256 of the canonical JSON (sorted keys, compact) of the document
without that field, so hand edits are detected. Writing is atomic: the tensor file is
written under a new content-addressed name (temp file + fsync + rename), then
``ticket.json`` is replaced atomically (the commit point), then tensor files no longer
referenced are deleted. A crash at any point leaves either the old or the new ticket;
the temporaries of a save that was killed are removed by the next save into the directory.

``Ticket.load`` refuses, with a ``ValueError`` naming the problem: invalid JSON, a wrong
``format``, a newer ``format_version``, a modified ``ticket.json``, a schema violation, a
truncated or corrupted tensor file (size and sha256), and tensor names/shapes/dtypes that
disagree with the JSON or with each other. Missing files raise ``FileNotFoundError``.
Nothing is ever pickled (no ``torch.save``/``torch.load``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import _io
from .prune import Masks, apply, from_torch_prune, masks_of, remove, state_without_masks
from .prune.run import ticket_parts

__all__ = ["FORMAT", "FORMAT_VERSION", "Ticket", "load_round"]

FORMAT = "sparselth.ticket"
FORMAT_VERSION = 1
_JSON_NAME = "ticket.json"
_TENSOR_RE = re.compile(r"ticket-[0-9a-f]{16}\.safetensors")
_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "bool",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "uint16",
        "uint32",
        "uint64",
        "float8_e4m3fn",
        "float8_e5m2",
    )
    if hasattr(torch, name)
}


def _library_version() -> str:
    """``sparselth.__version__`` if the package is importable, else ``"0"``."""
    mod = sys.modules.get("sparselth")
    v = getattr(mod, "__version__", None)
    if v is None:
        try:
            import importlib

            v = getattr(importlib.import_module("sparselth"), "__version__", None)
        except ImportError:
            v = None
    return str(v) if v is not None else "0"


def _to_json(x: Any, where: str) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _to_json(dataclasses.asdict(x), where)
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise TypeError(
                f"Ticket metadata {where}: only scalar tensors are allowed, got shape "
                f"{tuple(x.shape)}"
            )
        return x.item()
    if hasattr(x, "item") and type(x).__module__ == "numpy" and getattr(x, "size", 1) == 1:
        return x.item()
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise TypeError(f"Ticket metadata {where}: keys must be str, got {k!r}")
            out[k] = _to_json(v, f"{where}.{k}")
        return out
    if isinstance(x, (list, tuple)):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"Ticket metadata {where}: {type(x).__name__} is not JSON-serialisable")


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _cpu_state(sd: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise TypeError(
                f"Ticket {what}: expected a mapping str -> Tensor, got {k!r}: {type(v).__name__}"
            )
        out[k] = v.detach().to("cpu", copy=True)
    return out


def _bad(path: Path, msg: str) -> ValueError:
    return ValueError(f"invalid ticket {str(path)!r}: {msg}")


class Ticket:
    """A lottery ticket: ``masks`` (parameter name -> bool tensor), ``trained_state`` (the
    model's state_dict without mask buffers, after training), optional ``init_state``
    (the weights to rewind to) and JSON ``metadata``.

    ``metadata`` always holds ``format_version``, ``library_version`` and ``sparsity``
    (``{"overall", "layers", "zeros", "total"}``); conventional extra keys are ``config``,
    ``seed``, ``metrics`` and ``macs``. Metadata is normalised to JSON on construction
    (tuples become lists), so a loaded ticket's metadata equals the saved one.

    Example::

        ticket = Ticket.from_model(model, masks, init_state=theta0, seed=0,
                                   metrics={"acc": 0.81}, config=cfg)
        ticket.save("runs/cora_glt")
        t2 = Ticket.load("runs/cora_glt")
        t2.apply_to(fresh_model, state="init")      # rewind: θ0 with the ticket's masks
    """

    def __init__(
        self,
        masks: Mapping[str, Tensor],
        trained_state: Mapping[str, Tensor],
        init_state: Mapping[str, Tensor] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.masks = (
            masks.to("cpu")
            if isinstance(masks, Masks)
            else Masks.from_state_dict(_cpu_state(masks, "masks"))
        )
        self.masks = Masks({k: v for k, v in self.masks.items()})  # unbound, CPU
        self.trained_state = _cpu_state(trained_state, "trained_state")
        self.init_state = None if init_state is None else _cpu_state(init_state, "init_state")
        self._check_consistent(Path("<memory>"))
        meta = dict(_to_json(dict(metadata or {}), "metadata"))
        meta["format_version"] = FORMAT_VERSION
        meta.setdefault("library_version", _library_version())
        meta["sparsity"] = self.masks.sparsity()
        self.metadata: dict[str, Any] = json.loads(json.dumps(meta))

    # -- construction
    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        masks: Mapping[str, Tensor] | None = None,
        init_state: Mapping[str, Tensor] | None = None,
        **metadata: Any,
    ) -> Ticket:
        """Ticket from ``model``'s current (trained) state and ``masks`` (default: the masks
        installed on the model). ``init_state`` is a state dict (or a subset of one, e.g.
        parameters only) to rewind to; mask buffers in it are ignored. Keyword arguments
        become metadata (``config`` may be a dataclass)."""
        if masks is None:
            masks = masks_of(model)
            if len(masks) == 0 and len(from_torch_prune(model)):
                raise ValueError(
                    "Ticket.from_model: the model is pruned with torch.nn.utils.prune; convert "
                    "with sparselth.prune.from_torch_prune(model, remove=True) and apply() first"
                )
        elif not isinstance(masks, Masks):
            masks = Masks.from_state_dict(masks, model=model)
        else:
            masks = masks.bind(model)
        trained = state_without_masks(model)
        if init_state is not None:
            mask_keys = {f"{k}_mask" for k in masks}
            init_state = {k: v for k, v in init_state.items() if k not in mask_keys}
        return cls(masks, trained, init_state, metadata)

    @classmethod
    def from_run(cls, run_dir: Any, round: int | None = None, **metadata: Any) -> Ticket:
        """Ticket of a finished round of a run folder of any kind (IMP, UGS, recommender,
        ...; default: the last finished round): that round's masks and trained weights, the
        state its survivors were rewound to (θ0, or θk for late rewinding) as
        ``init_state``, and metadata (kind, config, seed, round, metric, metrics, MACs,
        sparsities). Keyword arguments are added to the metadata."""
        parts = ticket_parts(run_dir, round)
        parts["metadata"].update(metadata)
        return cls(**parts)

    @classmethod
    def from_imp(cls, run_dir: Any, round: int | None = None, **metadata: Any) -> Ticket:
        """Deprecated: use :meth:`from_run` (every run kind)."""
        warnings.warn("Ticket.from_imp is deprecated; use Ticket.from_run", DeprecationWarning,
                      stacklevel=2)
        return cls.from_run(run_dir, round, **metadata)

    # -- validation shared by construction and load
    def _check_consistent(self, path: Path) -> None:
        for name, m in self.masks.items():
            if m.dtype != torch.bool:
                raise _bad(path, f"mask {name!r} has dtype {m.dtype}, expected bool")
            t = self.trained_state.get(name)
            if t is None:
                raise _bad(path, f"mask {name!r} has no tensor in the trained state")
            if t.shape != m.shape:
                raise _bad(
                    path,
                    f"mask {name!r} has shape {tuple(m.shape)} but the trained "
                    f"weight has shape {tuple(t.shape)}",
                )
        if self.init_state is not None:
            for k, v in self.init_state.items():
                t = self.trained_state.get(k)
                if t is None:
                    raise _bad(path, f"init tensor {k!r} is not in the trained state")
                if t.shape != v.shape or t.dtype != v.dtype:
                    raise _bad(
                        path,
                        f"init tensor {k!r} is {_dtype_name(v)}{list(v.shape)} but the "
                        f"trained one is {_dtype_name(t)}{list(t.shape)}",
                    )

    # -- persistence
    def save(self, path: Any) -> Path:
        """Write the ticket into directory ``path`` (created if needed; an existing ticket
        there is replaced atomically). Returns the path of ``ticket.json``."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"Ticket.save: {str(path)!r} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        for k, v in self.masks.items():
            tensors[f"masks/{k}"] = v
        for k, v in self.trained_state.items():
            tensors[f"trained/{k}"] = v
        for k, v in (self.init_state or {}).items():
            tensors[f"init/{k}"] = v
        from safetensors.torch import save as st_save

        plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
        data = st_save(plain, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        sha = _io.sha256_bytes(data)
        tensor_name = f"ticket-{sha[:16]}.safetensors"
        # the tensor file's name changes with its content: temporaries that killed saves left
        # for any earlier tensor file of this ticket are removed too
        _io.atomic_write_bytes(path / tensor_name, data,
                               stale=lambda name: _TENSOR_RE.fullmatch(name) is not None)
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": _library_version(),
            "tensor_file": tensor_name,
            "tensor_file_sha256": sha,
            "tensor_file_size": len(data),
            "tensors": {
                k: {"dtype": _dtype_name(v), "shape": list(v.shape)} for k, v in plain.items()
            },
            "masks": list(self.masks.keys()),
            "trained": list(self.trained_state.keys()),
            "init": None if self.init_state is None else list(self.init_state.keys()),
            "metadata": self.metadata,
        }
        doc["json_sha256"] = _io.sha256_bytes(_io.canonical_json(doc).encode())
        _io.atomic_write_json(path / _JSON_NAME, doc)
        for old in path.glob("ticket-*.safetensors"):
            if old.name != tensor_name and _TENSOR_RE.fullmatch(old.name):
                try:
                    old.unlink()
                except OSError:
                    pass
        return path / _JSON_NAME

    @classmethod
    def load(cls, path: Any) -> Ticket:
        """Read and validate a ticket directory written by ``save`` (or its ``ticket.json``).
        Tensors are returned on the CPU."""
        path = Path(path)
        if path.is_file() and path.name == _JSON_NAME:
            path = path.parent
        jpath = path / _JSON_NAME
        if not path.exists():
            raise FileNotFoundError(f"no ticket at {str(path)!r}")
        if not jpath.is_file():
            raise FileNotFoundError(f"no {_JSON_NAME} in {str(path)!r}")
        try:
            doc = json.loads(jpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _bad(path, f"{_JSON_NAME} is not valid JSON ({e})") from e
        if not isinstance(doc, dict):
            raise _bad(path, f"{_JSON_NAME} must hold a JSON object")
        if doc.get("format") != FORMAT:
            raise _bad(path, f"'format' is {doc.get('format')!r}, expected {FORMAT!r}")
        ver = doc.get("format_version")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            raise _bad(path, f"'format_version' must be a positive int, got {ver!r}")
        if ver > FORMAT_VERSION:
            raise _bad(
                path,
                f"format version {ver} is newer than this sparselth supports "
                f"({FORMAT_VERSION}); it was written by sparselth "
                f"{doc.get('library_version')!r}; upgrade sparselth to read it",
            )
        body = {k: v for k, v in doc.items() if k != "json_sha256"}
        if doc.get("json_sha256") != _io.sha256_bytes(_io.canonical_json(body).encode()):
            raise _bad(
                path, f"{_JSON_NAME} failed its checksum (json_sha256): it was edited or corrupted"
            )
        schema = {
            "library_version": str,
            "tensor_file": str,
            "tensor_file_sha256": str,
            "tensor_file_size": int,
            "tensors": dict,
            "masks": list,
            "trained": list,
            "metadata": dict,
        }
        for key, typ in schema.items():
            if not isinstance(doc.get(key), typ):
                raise _bad(
                    path, f"{key!r} must be a {typ.__name__}, got {type(doc.get(key)).__name__}"
                )
        if doc.get("init") is not None and not isinstance(doc["init"], list):
            raise _bad(path, "'init' must be a list or null")
        if not _TENSOR_RE.fullmatch(doc["tensor_file"]):
            raise _bad(
                path, f"'tensor_file' {doc['tensor_file']!r} is not a ticket tensor file name"
            )
        for k, spec in doc["tensors"].items():
            if (
                not isinstance(spec, dict)
                or spec.get("dtype") not in _DTYPES
                or not isinstance(spec.get("shape"), list)
                or not all(isinstance(s, int) and s >= 0 for s in spec["shape"])
            ):
                raise _bad(path, f"tensor spec of {k!r} is malformed: {spec!r}")
        expected = (
            [f"masks/{k}" for k in doc["masks"]]
            + [f"trained/{k}" for k in doc["trained"]]
            + [f"init/{k}" for k in (doc.get("init") or [])]
        )
        if sorted(expected) != sorted(doc["tensors"]) or len(set(expected)) != len(expected):
            raise _bad(
                path, "the 'tensors' table does not match the 'masks'/'trained'/'init' lists"
            )

        tensors = _io.load_safetensors(
            path / doc["tensor_file"],
            sha256=doc["tensor_file_sha256"],
            size=doc["tensor_file_size"],
        )
        if set(tensors) != set(doc["tensors"]):
            extra = sorted(set(tensors) - set(doc["tensors"]))
            missing = sorted(set(doc["tensors"]) - set(tensors))
            raise _bad(
                path,
                f"tensor file names differ from {_JSON_NAME}: missing {missing[:5]}, "
                f"unexpected {extra[:5]}",
            )
        for k, spec in doc["tensors"].items():
            t = tensors[k]
            if _dtype_name(t) != spec["dtype"] or list(t.shape) != spec["shape"]:
                raise _bad(
                    path,
                    f"tensor {k!r} is {_dtype_name(t)}{list(t.shape)}, {_JSON_NAME} says "
                    f"{spec['dtype']}{spec['shape']}",
                )
        masks = {k: tensors[f"masks/{k}"] for k in doc["masks"]}
        for k, m in masks.items():
            if m.dtype != torch.bool:
                raise _bad(path, f"mask {k!r} has dtype {m.dtype}, expected bool")
        t = cls.__new__(cls)
        t.masks = Masks(masks)
        t.trained_state = {k: tensors[f"trained/{k}"] for k in doc["trained"]}
        t.init_state = (
            None if doc.get("init") is None else {k: tensors[f"init/{k}"] for k in doc["init"]}
        )
        t._check_consistent(path)
        t.metadata = doc["metadata"]
        return t

    # -- use
    def apply_to(self, model: nn.Module, state: str = "trained") -> nn.Module:
        """Load the ``"trained"`` (default) or ``"init"`` weights into ``model`` and install
        the ticket's masks (``sparselth.prune.apply``); masks already installed on the model
        are removed first. Pruned entries end up exactly zero. Returns ``model``.

        ``"trained"`` must match the model's state_dict (without mask buffers) exactly;
        ``"init"`` may cover a subset (entries it lacks keep the model's current values).
        Raises ``ValueError`` naming the first mismatch.
        """
        if state == "trained":
            sd = self.trained_state
        elif state == "init":
            if self.init_state is None:
                raise ValueError("Ticket.apply_to(state='init'): this ticket has no init_state")
            sd = self.init_state
        else:
            raise ValueError(f"Ticket.apply_to: state must be 'trained' or 'init', got {state!r}")
        remove(model)
        own = state_without_masks(model)
        missing = sorted(set(own) - set(sd)) if state == "trained" else []
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"Ticket.apply_to: the {state} state does not fit the model: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}"
            )
        for k, v in sd.items():
            if own[k].shape != v.shape:
                raise ValueError(
                    f"Ticket.apply_to: {k!r} has shape {tuple(v.shape)} in the ticket, "
                    f"{tuple(own[k].shape)} in the model"
                )
        masks = self.masks.bind(model)
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)
        apply(model, masks)
        return model

    def sparsity(self) -> dict[str, Any]:
        """Same as ``sparselth.prune.sparsity(self.masks)``."""
        return self.masks.sparsity()

    def __repr__(self) -> str:
        s = self.masks.sparsity()
        return (
            f"Ticket({len(self.masks)} masks, sparsity {s['overall']:.4f}, "
            f"{len(self.trained_state)} trained tensors, "
            f"init={'yes' if self.init_state is not None else 'no'})"
        )


def load_round(run_dir: Any, round: int | None = None) -> Ticket:
    """The ticket of round ``round`` (default: the last finished one) of a run folder of any
    kind: ``Ticket.from_run(run_dir, round)``."""
    return Ticket.from_run(run_dir, round)
