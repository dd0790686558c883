"""Pruning criteria: which parameters to prune (``select``) and which entries
(``magnitude``, ``random``), globally or per layer, at several granularities.

Granularities (the weight is viewed as a matrix ``W.reshape(W.shape[0], -1)`` where a
matrix is needed; for ``nn.Linear`` that is ``(out, in)``, for convolutions
``(C_out, C_in/groups * prod(kernel))``, for embeddings ``(rows, dim)``):

* ``"element"``: single entries (unstructured).
* ``"row"``: whole slices along dim 0 (output rows of a Linear, rows of an embedding table;
  for ``ConvTranspose`` dim 0 is the *input* channel).
* ``"channel"``: whole output channels (``channel="out"``, default) or input channels
  (``channel="in"``), module-aware: dim 0/1 for Linear, Conv and Embedding, dim 1/0 for
  ConvTranspose (whose weight is ``(C_in, C_out/groups, *k)``). With ``groups > 1`` an
  input-channel index prunes that channel in every group.
* ``"N:M"`` e.g. ``"2:4"``: in every group of M consecutive entries along the last dim of
  the matrix view (the input dim of a Linear) exactly N are kept (the N largest, or N at
  random). A trailing group of r < M entries keeps min(N, r). The sparsity is fixed at
  1 - N/M, so ``sparsity`` must be None or equal to it; ``scope`` is ignored.
* ``"block"`` with ``block=(bh, bw)``: tiles of the matrix view; edge tiles may be smaller.

Structured groups are scored by the mean absolute value of their surviving entries
(magnitude) or a uniform random number (random). Groups are pruned in ascending score
order (ties broken by parameter order, then index order: deterministic) until the number
of pruned entries is as close as possible to the target (exact for ``"element"``).

``sparsity`` is the fraction of the selected entries that is zero *after* pruning,
counting entries that are already pruned (in ``masks``, or in masks installed on the
model). ``fraction`` (keyword) instead prunes that fraction of the surviving entries of
each scope unit. Already-pruned entries are never revived.

Selection (``include`` / ``exclude``): one item or a list of items, each

* a module class (``nn.Linear``) or ``"type:ClassName"``: in ``include``, the ``weight`` of
  such modules; in ``exclude``, every parameter of such modules;
* a name pattern matched against the parameter name *and* its module name:
  ``fnmatch`` style (``"encoder.*"``, ``"*.bias"``, ``"fc_out"``) or a regular expression
  prefixed with ``"re:"`` (``"re:layers\\.[0-3]\\..*"``, full match);
* ``"@first"`` / ``"@last"``: the first / last selected parameter in registration order
  (e.g. ``exclude=["@first", "@last"]`` keeps the first and last layer dense);
* a callable ``(name, module, param) -> bool``.

By default the weights of Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, Embedding and
EmbeddingBag are selected; biases and normalisation layers are not.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .masks import Masks, _as_masks, _resolve, _torch_pruned, masks_of

__all__ = ["PRUNABLE_TYPES", "magnitude", "parse_granularity", "random", "select"]

PRUNABLE_TYPES: tuple[type, ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.EmbeddingBag,
)

Selector = str | type | Callable[[str, nn.Module, Tensor], bool]

_LAYER_SCOPES = {"layer", "local", "per-layer", "per_layer", "layerwise"}


# --------------------------------------------------------------------------- selection


def _candidates(model: nn.Module) -> list[tuple[str, str, nn.Module, str, Tensor]]:
    seen = set()
    out = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr, p in module._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if attr.endswith("_orig") and _torch_pruned(module, attr[: -len("_orig")]):
                attr = attr[: -len("_orig")]
            out.append((prefix + attr, module_name, module, attr, p))
    return out


def _as_list(items: Any) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, (str, type)) or callable(items) and not isinstance(items, (list, tuple)):
        return [items]
    return list(items)


def _type_match(module: nn.Module, type_name: str) -> bool:
    return any(c.__name__ == type_name for c in type(module).__mro__)


def _matches(
    item: Any,
    name: str,
    module_name: str,
    module: nn.Module,
    attr: str,
    p: Tensor,
    types_weight_only: bool,
) -> bool:
    if isinstance(item, type):
        return isinstance(module, item) and (attr == "weight" or not types_weight_only)
    if isinstance(item, str):
        if item.startswith("type:"):
            return _type_match(module, item[5:]) and (attr == "weight" or not types_weight_only)
        if item.startswith("re:"):
            rx = re.compile(item[3:])
            return bool(rx.fullmatch(name) or (module_name and rx.fullmatch(module_name)))
        return fnmatch.fnmatchcase(name, item) or bool(
            module_name and fnmatch.fnmatchcase(module_name, item)
        )
    if callable(item):
        return bool(item(name, module, p))
    raise TypeError(f"include/exclude items must be str, a module type or a callable, got {item!r}")


def _is_position(item: Any) -> bool:
    return isinstance(item, str) and item in ("@first", "@last")


def select(model: nn.Module, include: Any = None, exclude: Any = None) -> list[str]:
    """Names of the parameters to prune, in registration order (see module docstring).

    Example::

        select(model)                                   # all Linear/Conv/Embedding weights
        select(model, exclude=["@first", "@last"])      # ... except first and last layer
        select(model, include=[nn.Conv2d], exclude="re:.*shortcut.*")
    """
    cands = _candidates(model)
    default = [c for c in cands if isinstance(c[2], PRUNABLE_TYPES) and c[3] == "weight"]
    inc = _as_list(include)
    exc = _as_list(exclude)
    for item in inc + exc:
        if isinstance(item, str) and item.startswith("@") and not _is_position(item):
            raise ValueError(f"unknown position selector {item!r}; use '@first' or '@last'")
    if not inc:
        chosen = default
    else:
        keep = set()
        for item in inc:
            if _is_position(item) and default:
                keep.add(default[0 if item == "@first" else -1][0])
        for c in cands:
            if any(_matches(i, *c, True) for i in inc if not _is_position(i)):
                keep.add(c[0])
        chosen = [c for c in cands if c[0] in keep]
    drop = set()
    for item in exc:
        if _is_position(item):
            if chosen:
                drop.add(chosen[0 if item == "@first" else -1][0])
        else:
            for c in chosen:
                if _matches(item, *c, False):
                    drop.add(c[0])
    return [c[0] for c in chosen if c[0] not in drop]


# --------------------------------------------------------------------------- granularity


def parse_granularity(granularity: str, block: Any = None) -> tuple[str, tuple[int, ...]]:
    """``("element"|"row"|"channel", ())``, ``("nm", (n, m))`` or ``("block", (bh, bw))``."""
    if not isinstance(granularity, str):
        raise TypeError(f"granularity must be a str, got {granularity!r}")
    g = granularity.strip().lower()
    if g in ("element", "unstructured"):
        return "element", ()
    if g in ("row", "rows"):
        return "row", ()
    if g in ("channel", "channels", "filter"):
        return "channel", ()
    if g == "block":
        if block is None:
            raise ValueError("granularity='block' needs block=(bh, bw), e.g. block=(4, 4)")
        try:
            bh, bw = (int(b) for b in block)
        except (TypeError, ValueError):
            raise ValueError(f"block must be two positive ints, got {block!r}") from None
        if bh < 1 or bw < 1:
            raise ValueError(f"block must be two positive ints, got {block!r}")
        return "block", (bh, bw)
    m = re.fullmatch(r"(\d+)\s*:\s*(\d+)", g)
    if m:
        n, mm = int(m.group(1)), int(m.group(2))
        if mm < 1 or not 0 <= n <= mm:
            raise ValueError(f"N:M granularity needs 0 <= N <= M and M >= 1, got {granularity!r}")
        return "nm", (n, mm)
    raise ValueError(
        f"unknown granularity {granularity!r}; use 'element', 'row', 'channel', 'N:M' "
        "(e.g. '2:4') or 'block' with block=(bh, bw)"
    )


def _matrix_shape(p: Tensor) -> tuple[int, int]:
    if p.dim() == 0:
        return 1, 1
    r = p.shape[0]
    return r, (p.numel() // r if r else 0)


def _channel_dim(module: nn.Module, channel: str, p: Tensor, name: str) -> int:
    if channel not in ("out", "in"):
        raise ValueError(f"channel must be 'out' or 'in', got {channel!r}")
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    if channel == "out":
        d = 1 if transposed else 0
    else:
        d = 0 if transposed else 1
    if p.dim() <= d:
        raise ValueError(
            f"granularity='channel' (channel={channel!r}) needs a {d + 1}-d weight; "
            f"{name!r} has shape {tuple(p.shape)}"
        )
    return d


def _group_ids(
    kind: str, args: tuple[int, ...], module: nn.Module, p: Tensor, name: str, channel: str
) -> tuple[Tensor, int]:
    """Flat int64 group index per entry of ``p`` and the number of groups."""
    if kind == "row":
        r, c = _matrix_shape(p)
        ids = torch.arange(r).repeat_interleave(c)
        return ids, r
    if kind == "channel":
        d = _channel_dim(module, channel, p, name)
        size = p.shape[d]
        shape = [1] * p.dim()
        shape[d] = size
        ids = torch.arange(size).view(shape).expand(p.shape).reshape(-1)
        return ids, size
    if kind == "block":
        bh, bw = args
        r, c = _matrix_shape(p)
        nbr, nbc = -(-r // bh), -(-c // bw)
        ids = ((torch.arange(r) // bh)[:, None] * nbc + (torch.arange(c) // bw)[None, :]).reshape(
            -1
        )
        return ids, nbr * nbc
    raise AssertionError(kind)


def _round(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


# --------------------------------------------------------------------------- core


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        # Drawn from torch's global RNG, so torch.manual_seed makes it reproducible.
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen.manual_seed(int(seed))
    return gen


def _prune(
    model: nn.Module,
    sparsity: float | None,
    scope: str,
    granularity: str,
    include: Any,
    exclude: Any,
    masks: Mapping[str, Tensor] | None,
    fraction: float | None,
    block: Any,
    channel: str,
    gen: torch.Generator | None,
    caller: str,
) -> Masks:
    kind, args = parse_granularity(granularity, block)
    if scope == "global":
        per_layer = False
    elif scope in _LAYER_SCOPES:
        per_layer = True
    else:
        raise ValueError(f"{caller}: scope must be 'global' or 'layer', got {scope!r}")
    for label, v in (("sparsity", sparsity), ("fraction", fraction)):
        if v is not None and not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{caller}: {label} must be a number in [0, 1], got {v!r}")
    if kind == "nm":
        n, m = args
        if fraction is not None:
            raise ValueError(f"{caller}: fraction= cannot be used with N:M granularity")
        if sparsity is not None and abs(float(sparsity) - (1.0 - n / m)) > 1e-6:
            raise ValueError(
                f"{caller}: granularity {granularity!r} fixes sparsity at "
                f"{1 - n / m:g}; pass sparsity=None or {1 - n / m:g}, got {sparsity!r}"
            )
    elif (sparsity is None) == (fraction is None):
        raise ValueError(f"{caller}: pass exactly one of sparsity or fraction=")

    names = select(model, include, exclude)
    if not names:
        raise ValueError(
            f"{caller}: no parameters selected (include={include!r}, exclude={exclude!r})"
        )
    base = masks_of(model) if masks is None else _as_masks(masks, model)
    out = Masks(model=model)
    for k, v in base.items():
        out[k] = v.clone()

    targets = []
    for name in names:
        module, _, p = _resolve(model, name)
        if p.is_meta:
            raise ValueError(f"{caller}: parameter {name!r} is a meta tensor (a shape without "
                             f"values): pruning needs the weights; materialise the model first "
                             f"(model.to_empty(device=...) and load its state)")
        cur = base.get(name)
        alive = cur.detach().to("cpu") if cur is not None else torch.ones(p.shape, dtype=torch.bool)
        targets.append((name, module, p, alive.clone().reshape(-1)))

    if kind == "nm":
        for name, module, p, alive in targets:
            out[name] = _nm_mask(p, alive, args, gen).reshape(p.shape).to(p.device)
        return out

    units = [[t] for t in targets] if per_layer else [targets]
    for unit in units:
        scores, sizes, tidx, gids, groups = [], [], [], [], []
        total = zeros = 0
        for ti, (name, module, p, alive) in enumerate(unit):
            total += alive.numel()
            zeros += alive.numel() - int(alive.count_nonzero())
            absw = None
            if gen is None:
                absw = p.detach().to("cpu", torch.float64).abs().reshape(-1)
            if kind == "element":
                idx = alive.nonzero().reshape(-1)
                if gen is None:
                    s = absw[idx]
                else:
                    s = torch.rand(alive.numel(), generator=gen, dtype=torch.float64)[idx]
                scores.append(s)
                sizes.append(torch.ones(idx.numel(), dtype=torch.int64))
                gids.append(idx)
                groups.append(None)
            else:
                ids, g = _group_ids(kind, args, module, p, name, channel)
                cnt = torch.bincount(ids[alive], minlength=g)
                if gen is None:
                    s = torch.zeros(g, dtype=torch.float64).index_add_(0, ids[alive], absw[alive])
                    s = s / cnt.clamp(min=1)
                else:
                    s = torch.rand(g, generator=gen, dtype=torch.float64)
                valid = (cnt > 0).nonzero().reshape(-1)
                scores.append(s[valid])
                sizes.append(cnt[valid])
                gids.append(valid)
                groups.append((ids, g))
            tidx.append(torch.full((gids[-1].numel(),), ti, dtype=torch.int64))
        if sparsity is not None:
            need = _round(float(sparsity) * total) - zeros
        else:
            n_alive = total - zeros
            need = n_alive - _round(n_alive * (1.0 - float(fraction)))
        if need <= 0:
            continue
        score = torch.cat(scores)
        size = torch.cat(sizes)
        order = torch.sort(score, stable=True).indices
        csum = torch.cumsum(size[order], 0)
        k = _closest_count(csum, need)
        chosen = order[:k]
        ch_t = torch.cat(tidx)[chosen]
        ch_g = torch.cat(gids)[chosen]
        for ti, (name, module, p, alive) in enumerate(unit):
            sel = ch_g[ch_t == ti]
            if sel.numel() == 0:
                continue
            if groups[ti] is None:
                alive[sel] = False
            else:
                ids, g = groups[ti]
                pruned = torch.zeros(g, dtype=torch.bool)
                pruned[sel] = True
                alive &= ~pruned[ids]

    for name, module, p, alive in targets:
        out[name] = alive.reshape(p.shape).to(p.device)
    return out


def _closest_count(csum: Tensor, need: int) -> int:
    """Number of groups (a prefix of the sorted order) whose total size is closest to
    ``need`` (ties: fewer groups)."""
    n = csum.numel()
    if n == 0:
        return 0
    i = int(torch.searchsorted(csum, torch.tensor([need], dtype=csum.dtype)).item())
    if i >= n:
        return n
    hi = int(csum[i]) - need
    lo = need - (int(csum[i - 1]) if i > 0 else 0)
    return i + 1 if hi < lo else i


def _nm_mask(
    p: Tensor, alive: Tensor, args: tuple[int, int], gen: torch.Generator | None
) -> Tensor:
    n, m = args
    r, c = _matrix_shape(p)
    if p.numel() == 0:
        return alive
    if gen is None:
        s = p.detach().to("cpu", torch.float64).abs().reshape(r, c)
    else:
        s = torch.rand(r, c, generator=gen, dtype=torch.float64)
    a = alive.reshape(r, c)
    pad = (-c) % m
    if pad:
        s = torch.cat([s, torch.zeros(r, pad, dtype=s.dtype)], 1)
        a = torch.cat([a, torch.zeros(r, pad, dtype=torch.bool)], 1)
    s = torch.where(a, s, torch.full_like(s, float("-inf"))).view(r, -1, m)
    top = torch.sort(s, dim=-1, descending=True, stable=True).indices[..., :n]
    keep = torch.zeros(s.shape, dtype=torch.bool).scatter_(-1, top, True).view(r, -1)
    keep &= a
    return keep[:, :c].reshape(-1)


# --------------------------------------------------------------------------- public criteria


def magnitude(model: nn.Module, sparsity: float | None = None, scope: str = "global",
              granularity: str = "element", include: Any = None, exclude: Any = None, *,
              masks: Mapping[str, Tensor] | None = None, fraction: float | None = None,
              block: Sequence[int] | None = None, channel: str = "out") -> Masks:
    """Magnitude pruning: keep the entries (or groups) with the largest ``|w|``.

    Args:
        model: the model; its current weights are scored.
        sparsity: fraction in [0, 1] of the selected entries that is zero afterwards,
            counting already-pruned ones (``round(sparsity * total)`` entries for
            ``"element"``). ``None`` with ``fraction=`` or with an ``"N:M"`` granularity.
        scope: ``"global"`` (one threshold over all selected parameters, as in the
            lottery-ticket papers) or ``"layer"`` (the same sparsity in each parameter).
        granularity: ``"element"``, ``"row"``, ``"channel"``, ``"N:M"`` or ``"block"``.
        include, exclude: which parameters (see module docstring); default: weights of
            Linear/Conv*/ConvTranspose*/Embedding.
        masks: existing masks; only their surviving entries can be pruned. Default: the
            masks installed on ``model`` by ``apply`` (if any). Entries of ``masks`` for
            unselected parameters are copied to the result unchanged.
        fraction: instead of ``sparsity``, prune this fraction of the surviving entries of
            each scope unit (the IMP step).
        block: ``(bh, bw)`` for ``granularity="block"``.
        channel: ``"out"`` or ``"in"`` for ``granularity="channel"``.

    Returns:
        ``Masks`` bound to ``model`` (True = keep). The model is not modified; install
        with ``sparselth.prune.apply(model, masks)``.

    Example::

        masks = magnitude(model, 0.9)                              # 90% global unstructured
        masks = magnitude(model, 0.5, scope="layer", granularity="channel")
        masks = magnitude(model, granularity="2:4", exclude="@first")
        masks = magnitude(model, fraction=0.2, masks=masks)        # one IMP step
    """
    return _prune(model, sparsity, scope, granularity, include, exclude, masks, fraction, block,
                  channel, None, "magnitude")


def random(model: nn.Module, sparsity: float | None = None, scope: str = "global",
           granularity: str = "element", include: Any = None, exclude: Any = None, *,
           masks: Mapping[str, Tensor] | None = None, fraction: float | None = None,
           block: Sequence[int] | None = None, channel: str = "out",
           seed: int | None = None) -> Masks:
    """Random pruning (the baseline): same arguments and counts as ``magnitude``, but the
    entries (or groups) to prune are drawn uniformly at random among the survivors.

    ``seed``: an int gives a private generator (same result on every call); ``None``
    draws the generator's seed from torch's global RNG (reproducible after
    ``torch.manual_seed``). Random numbers are drawn on the CPU, so the result does not
    depend on the device of the model.
    """
    return _prune(model, sparsity, scope, granularity, include, exclude, masks, fraction, block,
                  channel, _generator(seed), "random")
