"""``sparselth.compile``: run a lottery ticket on the fastest exact route per layer."""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..metrics.cost import count_macs, state_bytes
from ..nn import SparseLinear
from ..ops import backends
from ..prune import remove
from ..sparse.csr import CSR
from ..ticket import Ticket
from ..utils.timing import cpu_model, headline_clock, load_average
from .graph import compile_graph_layers
from .memory import forward_memory
from .report import CompileError, CompileReport, LayerReport, layer_totals
from .routes import layer_types, parse_routes
from .select import (Captured, Selection, call, capture_calls, compile_embeddings,
                     default_tolerance, map_tensors, rel_error, select_route, summary_ms,
                     tensors, time_calls)

__all__ = ["compile"]

_BACKENDS = ("auto", "reference", "cpp", "triton", "cuda")


def compile(
    model: nn.Module,
    ticket: Ticket | str | Path,
    device: str | torch.device | None = None,
    example_inputs: Any = None,
    routes: Any = None,
    backend: str = "auto",
    *,
    budget_s: float = 0.3,
    e2e_budget_s: float = 1.0,
    min_gain: float = 0.05,
    tolerance: float | None = None,
    progress: bool = False,
) -> tuple[nn.Module, CompileReport]:
    """Compile ``ticket`` onto ``model``: every prunable layer runs its fastest exact route.

    Each prunable layer (``Linear``, ``Conv2d``, ``ConvTranspose2d``, and any type a registered
    route adds) is fed the input it actually sees when ``example_inputs`` runs through the
    masked model; every route of :data:`sparselth.deploy.ROUTES` that applies is verified on
    it, all are timed together, and the fastest that beats dense beyond the measured noise
    wins (:mod:`sparselth.deploy.select`). Masked embedding tables are compressed. Finally the
    compiled model's output is compared with the masked dense model's on ``example_inputs``.
    All timings are inference timings (``torch.no_grad``, eval mode).

    Args:
        model: the network the ticket was found on (left unchanged; a deep copy is compiled).
            A graph model with ``compact_graph()`` (:mod:`sparselth.models.gnn`) is compacted
            after the ticket is applied, so its pruned edges are not stored; a
            :class:`~sparselth.CSR` of node features may stand for a tensor in
            ``example_inputs``.
        ticket: a :class:`~sparselth.Ticket` or the path of a saved ticket. Its trained state
            must fit ``model.state_dict()`` (without mask buffers).
        device: target device (default: where ``model``'s parameters are, else CPU). Routes
            are timed there.
        example_inputs: a tensor, a tuple of positional arguments or a dict of keyword
            arguments for ``model``; required. Layer inputs are captured from this forward
            pass, routes are timed on them, and the compiled output is verified on them.
        routes: ``None`` (all routes), a list of route names to consider (``"dense"`` is
            always one), or a mapping ``layer name or fnmatch pattern -> route`` that forces
            routes (still verified and timed; a forced route may be slower than dense).
            Route names: ``"dense"``, ``"csr"``, ``"channel"``, ``"block"``, ``"2:4"`` and
            those added with :func:`sparselth.deploy.register_route`.
        backend: sparselth kernel backend for the CSR route (``"auto"``, ``"cpp"``,
            ``"reference"``, ``"triton"``, ``"cuda"``).
        budget_s: timing budget per layer (seconds, all candidates together).
        e2e_budget_s: timing budget of the end-to-end comparison.
        min_gain: a sparse route must be at least this fraction faster than dense (and
            faster beyond the measured noise).
        tolerance: accepted ``max|out - ref| / max|ref|`` (default by dtype, from
            :func:`sparselth.testing.tolerances`: 1e-4 for float32, 1e-10 for float64).
        progress: show a progress bar over the layers.

    Returns:
        ``(compiled_model, report)``: the compiled model in eval mode on ``device``, and a
        :class:`CompileReport` (per layer: MACs, bytes, latency of every route on the
        headline clock, the route taken; end to end: speed-up measured vs promised by the
        MACs vs realised, and which clock the headline ratio uses).

    Raises:
        TypeError / ValueError: bad arguments (the message names the argument), e.g. a
            ticket that does not fit the model or missing ``example_inputs``.
        CompileError: the compiled model's output differs from the masked dense model's.

    Example::

        compiled, report = sparselth.compile(model, ticket, example_inputs=torch.randn(64, 784))
        print(report)                        # per-layer table, totals, end to end
        report.end_to_end["realised_savings"]
    """
    ticket = _check_arguments(model, ticket, example_inputs, backend)
    allowed, forced = parse_routes(routes)
    device = _target_device(model, device)
    _refuse_meta(model, example_inputs, device)

    # the masked dense reference (the ticket on a copy of the model) and each layer's input
    masked = copy.deepcopy(model)
    try:
        ticket.apply_to(masked)
    except ValueError as e:
        raise ValueError(f"compile: ticket does not fit the model: {e}") from e
    masked = masked.to(device).eval()
    masks = {k: v.to(device) for k, v in ticket.masks.items()}
    inputs = map_tensors(example_inputs, lambda t: t.to(device))
    dtype = next((p.dtype for p in masked.parameters()), torch.float32)
    kinds = layer_types()
    layer_names = [n for n, m in masked.named_modules() if type(m) in kinds]
    captured = capture_calls(masked, inputs, layer_names)
    macs = count_macs(masked, inputs)

    # the baseline (masks folded in, plain modules) and the copy whose layers get swapped
    dense_model = copy.deepcopy(masked)
    remove(dense_model)
    dense_model.eval()
    compiled = copy.deepcopy(dense_model)
    if callable(getattr(compiled, "compact_graph", None)):
        compiled.compact_graph()  # graph models: pruned edges not stored (verified below)

    clock = "wall" if device.type == "cuda" else headline_clock()
    sel = Selection(allowed, forced, backend, device,
                    float(tolerance) if tolerance is not None else default_tolerance(dtype),
                    budget_s, min_gain, clock)
    reports, noncontiguous = _select_layers(layer_names, dense_model, compiled, masks,
                                            captured, macs, sel, progress)
    graph_rows = compile_graph_layers(dense_model, compiled, masks, inputs, sel, reports,
                                      _set_module)
    reports += graph_rows
    reports += compile_embeddings(dense_model, compiled, masks, inputs, sel, _set_module)
    fused = fuse_relu(compiled)
    compiled.eval()

    macs_totals = _macs_totals(macs, reports, graph_rows)
    promised = macs_totals[0] / macs_totals[1] if macs_totals[1] else None
    end_to_end = _verify_and_time(compiled, dense_model, inputs, captured, reports,
                                  noncontiguous, sel, e2e_budget_s, promised)
    _executed_promise(end_to_end, macs_totals, graph_rows)
    memory = forward_memory({"dense": dense_model, "compiled": compiled},
                            lambda m: call(m, inputs), device)
    meta = _meta(device, dtype, backend, inputs, ticket, sel)
    meta["fused_relu"] = fused
    return compiled, CompileReport(reports, layer_totals(reports), end_to_end, memory, meta)


def _macs_totals(macs: Mapping[str, Any], reports: list[LayerReport],
                 graph_rows: list[LayerReport]) -> tuple[int, int]:
    """``(MACs dense, MACs ticket)`` of the whole model: the counted layers, with the layers
    inside a graph layer replaced by the graph layer's exact count (transform and
    aggregation)."""
    dense, ticket = macs["total"]["macs_dense"], macs["total"]["macs"]
    for rec in reports:
        if rec.part_of:
            layer = macs["layers"].get(rec.name, {})
            dense -= int(layer.get("macs_dense", 0))
            ticket -= int(layer.get("macs", 0))
    dense += sum(r.macs_dense for r in graph_rows)
    ticket += sum(r.macs_ticket for r in graph_rows)
    return dense, ticket


def _executed_promise(end_to_end: dict[str, Any], macs_totals: tuple[int, int],
                      graph_rows: list[LayerReport]) -> None:
    """Where compiled layers execute fewer MACs than the ticket counts (a fused pair skipping
    hidden channels no kept weight reads), the promise by the executed MACs beside the
    counted one, and the measured speed-up against it."""
    skipped = sum(r.macs_ticket - r.macs_executed for r in graph_rows
                  if r.macs_executed is not None)
    dense, ticket = macs_totals
    if not skipped or ticket - skipped <= 0:
        return
    executed = dense / (ticket - skipped)
    speedup = end_to_end.get("speedup")
    end_to_end.update(macs_skipped=skipped, promised_speedup_executed=executed,
                      realised_savings_executed=None if speedup is None else speedup / executed)


def fuse_relu(model: nn.Module) -> list[str]:
    """Folds each ``nn.ReLU`` that directly follows a ``SparseLinear`` in an ``nn.Sequential``
    into it (``relu=True``: the kernel applies it as it stores the output, saving a pass over
    the activations) and puts an ``nn.Identity`` in the ReLU's place. Returns the names of the
    layers that took a ReLU; the end-to-end check of ``compile`` verifies the result."""
    fused = []
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            first, second = seq._modules[a], seq._modules[b]
            if type(first) is SparseLinear and not first.relu and type(second) is nn.ReLU:
                first.relu = True
                seq._modules[b] = nn.Identity()
                fused.append(f"{name}.{a}" if name else a)
    return fused


def _check_arguments(model: Any, ticket: Any, example_inputs: Any, backend: Any) -> Ticket:
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(ticket, (str, Path)):
        ticket = Ticket.load(ticket)
    if not isinstance(ticket, Ticket):
        raise TypeError(f"compile: ticket must be a sparselth.Ticket or the path of a saved one, "
                        f"got {type(ticket).__name__}")
    if example_inputs is None:
        raise ValueError(
            "compile: example_inputs is required: routes are timed and the result is verified "
            "on them (pass a tensor, a tuple of positional arguments or a dict of keyword "
            "arguments, e.g. example_inputs=torch.randn(64, 784))")
    if not isinstance(example_inputs, (Tensor, CSR, tuple, list, Mapping)):
        raise TypeError(f"compile: example_inputs must be a tensor, a tuple of positional "
                        f"arguments or a dict of keyword arguments, got "
                        f"{type(example_inputs).__name__}")
    if not tensors(example_inputs):
        raise TypeError("compile: example_inputs holds no tensor (pass a tensor, a tuple of "
                        "positional arguments or a dict of keyword arguments)")
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ValueError(f"compile: backend must be one of {_BACKENDS}, got {backend!r}")
    return ticket


def _target_device(model: nn.Module, device: Any) -> torch.device:
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"compile: device {device!r} is not a torch device: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"compile: device {device} requested but CUDA is not available")
    return device


def _refuse_meta(model: nn.Module, example_inputs: Any, device: torch.device) -> None:
    """Meta tensors are shapes without values: nothing to verify or time."""
    why = "compile verifies and times every route on real values, which meta tensors lack"
    if device.type == "meta":
        raise ValueError(f"compile: device is meta: {why}; pass a real device")
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_meta:
            raise ValueError(f"compile: model holds meta tensors ({name!r}): {why}; materialise "
                             f"the model first (model.to_empty(device=...) and load its state)")
    if any((t.col if isinstance(t, CSR) else t).is_meta for t in tensors(example_inputs)):
        raise ValueError(f"compile: example_inputs holds meta tensors: {why}; pass real inputs")


def _select_layers(names: list[str], dense_model: nn.Module, compiled: nn.Module,
                   masks: Mapping[str, Tensor], captured: Captured, macs: Mapping[str, Any],
                   sel: Selection, progress: bool) -> tuple[list[LayerReport], list[str]]:
    """Choose every layer's route and swap it into ``compiled``; returns the rows and the
    swapped layers whose output is a non-contiguous view."""
    from tqdm.auto import tqdm

    reports: list[LayerReport] = []
    noncontiguous: list[str] = []
    bar = tqdm(names, desc="compile", unit="layer", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        module = dense_model.get_submodule(name)
        mask = masks.get(f"{name}.weight")
        if mask is None:
            mask = torch.ones_like(module.weight, dtype=torch.bool)
        layer_macs = macs["layers"].get(name, {})
        rec = LayerReport.for_layer(name, module, int(mask.count_nonzero()) / max(1, mask.numel()),
                                    int(layer_macs.get("macs_dense", 0)),
                                    int(layer_macs.get("macs", 0)), state_bytes(module))
        reports.append(rec)
        if name not in captured.calls:
            rec.note = "not called by example_inputs: left dense, not timed"
            continue
        rec.speedup = 1.0
        args, kwargs = captured.calls[name]
        best = select_route(name, module, mask, args, kwargs, rec, sel)
        if best.route != "dense":
            with torch.no_grad():
                out = best.module(*args, **kwargs)
            if isinstance(out, Tensor) and not out.is_contiguous():
                noncontiguous.append(name)
            _set_module(compiled, name, best.module)
            rec.bytes_stored = state_bytes(best.module)
    bar.close()
    return reports, noncontiguous


def _verify_and_time(compiled: nn.Module, dense_model: nn.Module, inputs: Any,
                     captured: Captured, reports: list[LayerReport], noncontiguous: list[str],
                     sel: Selection, budget_s: float, promised: float | None) -> dict[str, Any]:
    """Verify the compiled model end to end, time it against dense and set the measured
    speed-up beside the one the MACs promise (``promised``).

    A sparse layer may return a transposed view, which a following sparse layer reads for
    free but a dense layer reads slowly; the variants "as returned", "contiguous before dense
    layers" and "all contiguous" are each verified and timed, and the fastest is kept (a
    forward hook makes the listed layers' outputs contiguous)."""
    variants = _layout_variants(noncontiguous, captured.order, {r.name: r for r in reports})
    active: dict[str, frozenset] = {"set": frozenset()}

    def hook_for(name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            return _contiguous_output(module, args, output) if name in active["set"] else output
        return hook

    handles = [compiled.get_submodule(n).register_forward_hook(hook_for(n))
               for n in noncontiguous]

    def run(label: str) -> Any:
        active["set"] = variants[label]
        return call(compiled, inputs)

    try:
        with torch.no_grad():
            err = max(rel_error(run(label), captured.output) for label in variants)
        if not err <= sel.tolerance:
            raise CompileError(
                f"compile: the compiled model's output differs from the masked dense model's: "
                f"max relative error {err:.3g} > tolerance {sel.tolerance:.3g} (routes: "
                f"{ {r.name: r.route for r in reports} })")
        fns = {"dense": lambda: call(dense_model, inputs)}
        fns.update({label: (lambda lb=label: run(lb)) for label in variants})
        timed = time_calls(fns, budget_s, sel.device, sel.clock)
    finally:
        for h in handles:
            h.remove()
    s = {k: summary_ms(t, sel.clock) for k, t in timed.timings.items()}
    layout = min(variants, key=lambda lb: s[lb]["ms"])
    for n in sorted(variants[layout]):
        compiled.get_submodule(n).register_forward_hook(_contiguous_output)
    d, c = s["dense"], s[layout]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    speedup, best = ratio(d["ms"], c["ms"]), ratio(d["min_ms"], c["min_ms"])
    return {
        "clock": sel.clock, "dense_ms": d["ms"], "compiled_ms": c["ms"],
        "dense_iqr_ms": [d["q1_ms"], d["q3_ms"]], "compiled_iqr_ms": [c["q1_ms"], c["q3_ms"]],
        "speedup": speedup, "promised_speedup": promised,
        "realised_savings": ratio(speedup, promised), "max_rel_error": err,
        "dense_wall_ms": d["wall_ms"], "compiled_wall_ms": c["wall_ms"],
        "speedup_wall": ratio(d["wall_ms"], c["wall_ms"]),
        "dense_cpu_ms": d["cpu_ms"], "compiled_cpu_ms": c["cpu_ms"],
        "speedup_cpu": ratio(d["cpu_ms"], c["cpu_ms"]),
        # fastest samples: what each model does with the cores to itself
        "dense_min_ms": d["min_ms"], "compiled_min_ms": c["min_ms"],
        "speedup_best": best, "realised_savings_best": ratio(best, promised), "reps": d["reps"],
        "threads": timed.threads, "loadavg_before": timed.loadavg_before,
        "loadavg_after": timed.loadavg_after,
        "layout": layout, "layout_ms": {lb: s[lb]["ms"] for lb in variants},
        "contiguous_outputs": sorted(variants[layout]),
    }


def _layout_variants(noncontiguous: list[str], order: list[str],
                     by_name: Mapping[str, LayerReport]) -> dict[str, frozenset]:
    variants: dict[str, frozenset] = {"as returned": frozenset()}
    if not noncontiguous:
        return variants

    def feeds_sparse_linear(n: str) -> bool:
        i = order.index(n) if n in order else -1
        nxt = by_name.get(order[i + 1]) if 0 <= i < len(order) - 1 else None
        return nxt is not None and nxt.type == "Linear" and nxt.route == "csr"

    before_dense = frozenset(n for n in noncontiguous if not feeds_sparse_linear(n))
    for label, chosen in (("contiguous before dense layers", before_dense),
                          ("all contiguous", frozenset(noncontiguous))):
        if chosen not in variants.values():
            variants[label] = chosen
    return variants


def _contiguous_output(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: hand the next layer a contiguous tensor."""
    return output.contiguous() if isinstance(output, Tensor) else output


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _meta(device: torch.device, dtype: torch.dtype, backend: str, inputs: Any, ticket: Ticket,
          sel: Selection) -> dict[str, Any]:
    return {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else cpu_model()),
        "dtype": str(dtype).replace("torch.", ""),
        "backend": backend,
        "backends_available": list(backends()),
        "threads": torch.get_num_threads(),
        "clock": sel.clock,
        "load_avg_1min": load_average(),
        "torch": torch.__version__,
        "sparselth": str(getattr(sys.modules.get("sparselth"), "__version__", "0")),
        "input_shapes": [list(t.shape) for t in tensors(inputs)],
        "ticket_sparsity": ticket.sparsity()["overall"],
        "ticket_metadata": {k: ticket.metadata.get(k) for k in ("round", "seed", "metrics")
                            if k in ticket.metadata},
        "tolerance": sel.tolerance,
        "min_gain": sel.min_gain,
        "timing": "inference (torch.no_grad), sparselth.utils.timing protocol: warm-up, "
                  "interleaved samples re-warmed before each, wall and CPU time; medians of the "
                  "headline clock",
    }
