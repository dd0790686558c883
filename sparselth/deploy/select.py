"""Choosing each layer's route: capture its real input, verify every candidate, time, choose.

1. **capture**: forward pre-hooks record the arguments each layer receives when the example
   inputs run through the masked dense model (:func:`capture_calls`);
2. **verify**: every route that applies is built and run on that input; a candidate whose
   output differs from the dense layer's by more than the tolerance (``max|out - ref| /
   max|ref|``, :func:`default_tolerance`) is rejected and reported, never used;
3. **time**: the survivors and dense are timed together with
   :func:`sparselth.utils.timing.measure` (interleaved, wall and CPU time per sample,
   ``rewarm=True``: each sample starts from the model's own warm caches, as when it serves
   requests back to back); ratios use the headline clock;
4. **choose** (:func:`choose_route`): the fastest route that beats dense by more than the
   measured noise and by ``min_gain``; otherwise dense stays.

Masked embedding tables take another path (:func:`compile_embeddings`): they are compressed
into the format with the fewest stored bytes, verified bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..sparse.csr import CSR
from ..testing import tolerances
from ..utils.timing import Measurement, Timing, measure
from .report import LayerReport
from .routes import ROUTES, forced_route

__all__ = ["Candidate", "Captured", "Selection", "call", "capture_calls", "choose_route",
           "compile_embeddings", "default_tolerance", "map_tensors", "noise_ms", "rel_error",
           "select_route", "summary_ms", "tensors", "time_calls"]


# --------------------------------------------------------------------------- inputs, errors


def call(model: nn.Module, inputs: Any) -> Any:
    """``model`` on ``inputs``: a dict is keyword arguments, a tuple/list positional ones."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def map_tensors(x: Any, fn: Callable[[Any], Any]) -> Any:
    """``x`` with ``fn`` applied to every tensor (and CSR: sparse node features) inside it."""
    if isinstance(x, (Tensor, CSR)):
        return fn(x)
    if isinstance(x, Mapping):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(map_tensors(v, fn) for v in x)
    return x


def tensors(x: Any) -> list[Any]:
    out: list[Any] = []
    map_tensors(x, out.append)
    return out


def rel_error(got: Any, ref: Any) -> float:
    """``max |got - ref| / max |ref|`` over all tensors (inf on a structure mismatch or NaN)."""
    g, r = tensors(got), tensors(ref)
    if len(g) != len(r):
        return math.inf
    err, scale = 0.0, 0.0
    for a, b in zip(g, r):
        if a.shape != b.shape:
            return math.inf
        if b.numel() == 0:
            continue
        a64, b64 = a.detach().double(), b.detach().double()
        d = (a64 - b64).abs().max().item()
        if math.isnan(d):
            return math.inf
        err = max(err, d)
        scale = max(scale, b64.abs().max().item())
    return err / max(scale, 1e-30) if err else 0.0


def default_tolerance(dtype: torch.dtype) -> float:
    """Accepted relative error of a route in ``dtype``: ``sparselth.testing.tolerances``' rtol
    (float32's for other dtypes)."""
    try:
        return float(tolerances(dtype)["rtol"])
    except KeyError:
        return float(tolerances(torch.float32)["rtol"])


@dataclass
class Captured:
    """What the example inputs did: the model's output and each layer's first call."""

    output: Any
    calls: dict[str, tuple[tuple, dict]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # layers in the order first called


def capture_calls(model: nn.Module, inputs: Any, names: Sequence[str]) -> Captured:
    """Run ``model`` on ``inputs`` (no grad) recording the arguments each named layer gets."""
    captured = Captured(None)

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name not in captured.calls:
                captured.order.append(name)
                captured.calls[name] = (tuple(a.detach() if isinstance(a, Tensor) else a
                                              for a in args), dict(kwargs))
        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n), with_kwargs=True)
               for n in names]
    try:
        with torch.no_grad():
            try:
                captured.output = call(model, inputs)
            except Exception as e:
                raise ValueError(f"compile: the model fails on example_inputs: "
                                 f"{type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    return captured


# --------------------------------------------------------------------------- timing


def time_calls(fns: Mapping[str, Callable[[], Any]], budget_s: float, device: torch.device,
               clock: str) -> Measurement:
    """Time ``fns`` together (no grad), ``budget_s`` seconds in all."""
    with torch.no_grad():
        return measure(fns, clock=clock, budget_s=budget_s / max(1, len(fns)), rewarm=True,
                       target_sample_s=1e-3, device=device)


def summary_ms(t: Timing, clock: str) -> dict[str, float]:
    """Milliseconds per call of ``t``: median, quartiles and min on ``clock``, both medians."""
    s = t.samples(clock)
    return {"ms": t.median_of(clock) * 1e3, "q1_ms": t.quantile(0.25, clock) * 1e3,
            "q3_ms": t.quantile(0.75, clock) * 1e3, "min_ms": min(s) * 1e3 if s else math.nan,
            "wall_ms": t.median_of("wall") * 1e3, "cpu_ms": t.median_of("cpu") * 1e3,
            "reps": t.reps}


def noise_ms(iqr_ms: Mapping[str, Sequence[float]], a: str, b: str) -> float:
    """Half the sum of the interquartile ranges of routes ``a`` and ``b``: their medians
    differ by more than this when their boxes do not overlap."""
    def iqr(r: str) -> float:
        q = iqr_ms.get(r)
        return float(q[1] - q[0]) if q else 0.0

    return 0.5 * (iqr(a) + iqr(b))


def choose_route(latency_ms: Mapping[str, float], iqr_ms: Mapping[str, Sequence[float]],
                 min_gain: float) -> str:
    """The fastest route whose median beats dense's by more than both the measured noise
    (:func:`noise_ms`) and ``min_gain`` times dense's median; ``"dense"`` when none does, so a
    route slower than dense beyond the noise is never chosen."""
    t_dense = latency_ms["dense"]
    best = "dense"
    for route, t in latency_ms.items():
        margin = max(min_gain * t_dense, noise_ms(iqr_ms, "dense", route))
        if route != "dense" and t < t_dense - margin and t < latency_ms[best]:
            best = route
    return best


# --------------------------------------------------------------------------- one layer


@dataclass
class Selection:
    """The settings of one compile that every layer's choice shares."""

    allowed: set[str]
    forced: dict[str, str]
    backend: str
    device: torch.device
    tolerance: float
    budget_s: float
    min_gain: float
    clock: str


@dataclass
class Candidate:
    route: str
    impl: str
    module: nn.Module


def _verified(module: nn.Module, mask: Tensor, args: tuple, kwargs: dict, ref: Any,
              want: str | None, rec: LayerReport, sel: Selection) -> list[Candidate]:
    """Dense and every exact candidate of the allowed routes (only ``want`` when forced);
    rejections are written into ``rec.rejected``."""
    cands = [Candidate("dense", rec.impl, module)]
    for route in ROUTES.values():
        if route.name == "dense" or route.name not in sel.allowed or want not in (None, route.name):
            continue
        if type(module) not in route.layer_types:
            unfit = f"{route.name} runs {', '.join(t.__name__ for t in route.layer_types)} only"
        else:
            unfit = route.unfit(module, mask, sel.device)
        if unfit is not None:
            if not route.quiet or want is not None:
                rec.rejected[route.name] = f"not applicable: {unfit}"[:300]
            continue
        why = []
        for options in route.variants(module, mask):
            impl = route.describe(None, options)
            try:
                built = route.build(module, mask, sel.backend, **options).to(sel.device).eval()
                impl = route.describe(built, options)
                err = rel_error(built(*args, **kwargs), ref)
            except Exception as e:  # noqa: BLE001 - a failing route is reported, not fatal
                why.append(f"{impl}: {type(e).__name__}: {e}"[:300])
                continue
            if not err <= sel.tolerance:
                why.append(f"{impl}: not exact: max relative error {err:.3g} > "
                           f"{sel.tolerance:.3g}")
                continue
            cands.append(Candidate(route.name, impl, built))
        if why:
            rec.rejected[route.name] = "; ".join(why)
    return cands


def select_route(name: str, module: nn.Module, mask: Tensor, args: tuple, kwargs: dict,
                 rec: LayerReport, sel: Selection) -> Candidate:
    """The route layer ``name`` runs on; fills ``rec`` with latencies, rejections, the noise,
    the chosen route and its speed-up. A route forced by exact name that cannot run raises
    ``ValueError``; one forced by a pattern is noted and dense stays."""
    want = forced_route(name, sel.forced)
    rec.forced = want is not None
    with torch.no_grad():
        cands = _verified(module, mask, args, kwargs, module(*args, **kwargs), want, rec, sel)
    if want is not None and want not in {c.route for c in cands}:
        why = rec.rejected.get(want, "not allowed")
        if name in sel.forced:  # forced by exact name: the caller must hear about it
            raise ValueError(f"compile: routes forces {want!r} on layer {name!r}, but it is "
                             f"not applicable: {why}")
        rec.note = f"forced route {want!r} not applicable ({why}): left dense"
        want, rec.forced = None, False
    timed = time_calls({f"{c.route}|{c.impl}": (lambda m=c.module: m(*args, **kwargs))
                        for c in cands}, sel.budget_s, sel.device, sel.clock)
    fastest: dict[str, Candidate] = {}  # each route's time is its fastest implementation's
    for c in cands:
        t = summary_ms(timed[f"{c.route}|{c.impl}"], sel.clock)
        if c.route not in fastest or t["ms"] < rec.latency_ms[c.route]:
            fastest[c.route] = c
            rec.latency_ms[c.route] = t["ms"]
            rec.latency_iqr_ms[c.route] = [t["q1_ms"], t["q3_ms"]]
            rec.latency_wall_ms[c.route], rec.latency_cpu_ms[c.route] = t["wall_ms"], t["cpu_ms"]
    if len(cands) > len(fastest):
        rec.variants_ms = {c.impl: timed[f"{c.route}|{c.impl}"].median_of(sel.clock) * 1e3
                           for c in cands}
    rec.route = want or choose_route(rec.latency_ms, rec.latency_iqr_ms, sel.min_gain)
    rival = rec.route if rec.route != "dense" else min(
        (r for r in rec.latency_ms if r != "dense"), key=rec.latency_ms.get, default="dense")
    rec.noise_ms = noise_ms(rec.latency_iqr_ms, "dense", rival)
    best = fastest[rec.route]
    rec.impl = best.impl
    t_best = rec.latency_ms[rec.route]
    rec.speedup = rec.latency_ms["dense"] / t_best if t_best > 0 else None
    return best


# --------------------------------------------------------------------------- embeddings


def compile_embeddings(dense_model: nn.Module, compiled: nn.Module,
                       masks: Mapping[str, Tensor], inputs: Any, sel: Selection,
                       replace: Callable[[nn.Module, str, nn.Module], None]) -> list[LayerReport]:
    """Embedding tables with a mask (the ticket's, or a ``MaskedEmbedding``'s own
    ``weight_mask``) become :class:`~sparselth.nn.CompressedEmbedding` (``EmbeddingBag``:
    ``CompressedEmbeddingBag``) in ``compiled``, in the format with the fewest stored bytes.
    Chosen by bytes, not time (a table is mostly memory); kept dense when no format is smaller
    than the dense table. Each is verified first: the stored table equals ``W * M`` bit for
    bit, and on the ids ``inputs`` feed it the lookups equal the dense layer's (exactly for
    ``Embedding``; within the tolerance for bags, whose sums may add in another order).
    Returns one report row per masked table: bytes dense vs stored, lookup times of both."""
    from ..nn.embedding import CompressedEmbedding, MaskedEmbedding

    tables = [(n, m) for n, m in dense_model.named_modules()
              if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if not tables:
        return []
    calls = capture_calls(dense_model, inputs, [n for n, _ in tables]).calls
    reports = []
    for name, mod in tables:
        mask = masks.get(f"{name}.weight")
        if mask is None and isinstance(mod, MaskedEmbedding):
            mask = mod.weight_mask
        if mask is None:
            continue
        w = mod.weight.detach()
        mask = mask.to(w.device).bool()
        rec = LayerReport.for_layer(name, mod, int(mask.count_nonzero()) / max(1, mask.numel()),
                                    0, 0, w.numel() * w.element_size())
        reports.append(rec)
        try:
            comp = CompressedEmbedding.from_module(mod, mask, backend=sel.backend)
        except ValueError as e:
            rec.note = f"left dense: {e}"[:300]
            continue
        comp = comp.to(sel.device).eval()
        why = "" if torch.equal(comp.to_dense(), w * mask) else "stored table differs from W * M"
        args, kwargs = calls.get(name, (None, None))
        if not why and args is not None:
            with torch.no_grad():
                got, ref = comp(*args, **kwargs), mod(*args, **kwargs)
            exact = (torch.equal(got, ref) if isinstance(mod, nn.Embedding)
                     else rel_error(got, ref) <= sel.tolerance)
            why = "" if exact else "lookups differ from the dense layer's"
        if why:
            rec.rejected["compressed"] = why
            continue
        if args is not None:
            timed = time_calls({"dense": lambda: mod(*args, **kwargs),
                                "compressed": lambda: comp(*args, **kwargs)},
                               sel.budget_s, sel.device, sel.clock)
            for key, t in timed.timings.items():
                s = summary_ms(t, sel.clock)
                rec.latency_ms[key], rec.latency_iqr_ms[key] = s["ms"], [s["q1_ms"], s["q3_ms"]]
                rec.latency_wall_ms[key], rec.latency_cpu_ms[key] = s["wall_ms"], s["cpu_ms"]
        fmt = comp.format + (", int8" if comp.quantized else "")
        if comp.stored_bytes >= rec.bytes_dense:
            rec.note = f"no compressed format is smaller than the dense table ({fmt}): left dense"
            continue
        replace(compiled, name, comp)
        rec.route, rec.impl = "compressed", f"sparselth.nn.{type(comp).__name__}({fmt})"
        rec.bytes_stored = comp.stored_bytes
        if rec.latency_ms:
            rec.speedup = rec.latency_ms["dense"] / max(rec.latency_ms["compressed"], 1e-12)
        rec.note = (f"format {fmt} chosen by bytes ({comp.stored_bytes} vs {rec.bytes_dense} "
                    "dense); verified exact" + ("" if args is not None else "; not called by "
                                                "example_inputs, not timed"))
    return reports
