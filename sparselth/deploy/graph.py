"""Graph layers in ``sparselth.compile``: each GNN layer as a whole, not only its ``lin``.

A graph layer (:class:`~sparselth.nn.GCNConv`, :class:`~sparselth.nn.GINConv`,
:class:`~sparselth.nn.GATConv`) runs an aggregation and a transform whose order and kernels
matter more than the weight route alone. For every graph layer the example inputs call:

1. **candidates**: each order the layer can run (``A(XW)``: transform first; ``(AX)W``:
   aggregate first) with the ``lin`` the per-layer routes chose, and, where that stayed
   dense, with a CSR ``lin`` too: timed alone a pruned ``lin`` may not beat dense beyond the
   noise, and with sparse features it is never called alone (the features then multiply
   the kept weights as a sparse x sparse product);
2. **verify**: each candidate runs on the layer's real input in the compiled model (the
   compacted graph) and must equal the masked dense layer's output (full graph, pruned edges
   weighted 0) within the tolerance;
3. **time** the survivors and the dense layer together, keep the fastest candidate;
4. **fuse**: a model that can run a layer's transform inside the previous layer's
   aggregation (``GCN.fuse``) is verified and timed end to end with and without; the
   faster stays;
5. **report** one row per graph layer: exact MACs of the unpruned layer (every weight and
   stored edge) and of the ticket, each in its order with fewer MACs (the promise does not
   depend on the route a timing picks), both latencies, measured and promised
   speed-up, the route (the order) and the implementation. The layer's ``lin`` row is marked
   ``part_of`` the graph layer: its MACs are inside the graph layer's and are not summed twice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..metrics.cost import state_bytes
from ..nn import SparseLinear
from ..nn._graph_plan import ORDER_NAMES, is_plain_linear, sparse_product
from ..nn.graph import GATConv, GCNConv, GINConv
from ..sparse.csr import CSR
from .report import LayerReport
from .select import Selection, call, capture_calls, rel_error, summary_ms, time_calls

__all__ = ["GRAPH_LAYERS", "compile_graph_layers", "graph_layer_names"]

#: the graph layer types compiled as a whole
GRAPH_LAYERS: tuple[type[nn.Module], ...] = (GCNConv, GINConv, GATConv)


def graph_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in GRAPH_LAYERS]


def _conv_macs(conv: nn.Module, args: tuple, kwargs: dict, *, dense: bool) -> int:
    """Exact MACs of one call of graph layer ``conv`` on the same arguments, in the order with
    fewer MACs: the promise does not depend on the route a timing picks."""
    rest = {k: v for k, v in kwargs.items() if k != "relu"}
    with torch.no_grad():
        return min(int(conv.macs(*args, **rest, order=o, dense=dense)["total"])
                   for o in conv.orders)


def _features_sparse(args: tuple) -> bool:
    return bool(args) and isinstance(args[0], CSR)


def _candidates(conv: nn.Module, dense_lin: nn.Module, mask: Tensor | None,
                sparse_x: bool, backend: str) -> list[tuple[str, str, nn.Module]]:
    """``(route, implementation, module)`` per order x ``lin`` variant."""
    lins: list[tuple[str, nn.Module]] = [(type(conv.lin).__name__, conv.lin)]
    if is_plain_linear(conv.lin) and mask is not None and not bool(mask.all()):
        lins.append(("SparseLinear", SparseLinear.from_dense(dense_lin, mask, backend=backend)))
    out = []
    for order in conv.orders:
        for lin_name, lin in lins:
            cand = copy.deepcopy(conv)
            cand.lin = lin
            cand.order = order
            route = ORDER_NAMES[order]
            how = ("x CSR: sparse x sparse" if sparse_x and not is_plain_linear(lin)
                   else "x CSR: spmm(x, W^T)" if sparse_x else "x dense")
            impl = f"{type(conv).__name__}(order={route}, lin={lin_name}, {how})"
            out.append((route if len(lins) == 1 else f"{route} {lin_name}", impl, cand))
    return out


def compile_graph_layers(dense_model: nn.Module, compiled: nn.Module,
                         masks: Mapping[str, Tensor], inputs: Any, sel: Selection,
                         reports: list[LayerReport],
                         replace: Callable[[nn.Module, str, nn.Module], None]
                         ) -> list[LayerReport]:
    """Choose each graph layer's order and transform in ``compiled`` (module docstring);
    marks the rows of ``reports`` for their ``lin`` as ``part_of`` them. Returns one row per
    graph layer called by ``inputs``."""
    names = graph_layer_names(compiled)
    if not names:
        return []
    compiled.eval()
    fuse = getattr(compiled, "fuse", None)
    if fuse is not None:    # layer by layer first: a fused pair does not call its layers
        compiled.fuse = False
    got = capture_calls(compiled, inputs, names).calls
    ref = capture_calls(dense_model, inputs, names).calls
    by_name = {r.name: r for r in reports}
    rows = []
    first: dict[str, dict[str, nn.Module]] = {}   # per layer: fastest transform-first candidates
    for name in names:
        if name not in got or name not in ref:
            continue
        conv = compiled.get_submodule(name)
        dense_conv = dense_model.get_submodule(name)
        args, kwargs = got[name]
        dargs, dkwargs = ref[name]
        mask = masks.get(f"{name}.lin.weight")
        W = dense_conv._weight().detach()
        rec = LayerReport(
            name=name, type=type(conv).__name__, shape=[conv.in_dim, int(W.shape[0])],
            sparsity=1.0 - (int(mask.count_nonzero()) / max(1, mask.numel())
                            if mask is not None else 1.0),
            macs_dense=_conv_macs(dense_conv, dargs, dkwargs, dense=True),
            macs_ticket=0, bytes_dense=0, bytes_stored=0, latency_ms={}, route="dense",
            impl=type(conv).__name__, speedup=None, promised_speedup=None)
        rows.append(rec)
        lin_rec = by_name.get(f"{name}.lin")
        if lin_rec is not None:
            lin_rec.part_of = name
        with torch.no_grad():
            want = dense_conv(*dargs, **dkwargs)
        cands = []
        for route, impl, module in _candidates(conv, dense_conv.lin, mask,
                                               _features_sparse(args), sel.backend):
            try:
                with torch.no_grad():
                    err = rel_error(module(*args, **kwargs), want)
            except Exception as e:  # noqa: BLE001 - a failing candidate is reported
                rec.rejected[route] = f"{impl}: {type(e).__name__}: {e}"[:300]
                continue
            if not err <= sel.tolerance:
                rec.rejected[route] = (f"{impl}: not exact: max relative error {err:.3g} > "
                                       f"{sel.tolerance:.3g}")
                continue
            cands.append((route, impl, module))
        if not cands:
            rec.note = "no order verified: left as compiled"
            continue
        fns = {"dense": lambda: dense_conv(*dargs, **dkwargs)}
        fns.update({route: (lambda m=module: m(*args, **kwargs)) for route, _, module in cands})
        timed = time_calls(fns, sel.budget_s, sel.device, sel.clock)
        for key, t in timed.timings.items():
            s = summary_ms(t, sel.clock)
            rec.latency_ms[key], rec.latency_iqr_ms[key] = s["ms"], [s["q1_ms"], s["q3_ms"]]
            rec.latency_wall_ms[key], rec.latency_cpu_ms[key] = s["wall_ms"], s["cpu_ms"]
        route, impl, best = min(cands, key=lambda c: rec.latency_ms[c[0]])
        replace(compiled, name, best)
        first[name] = {}
        for cand in sorted(cands, key=lambda c: rec.latency_ms[c[0]]):
            if cand[2].order == "transform_first":
                first[name].setdefault("sparse" if not is_plain_linear(cand[2].lin) else "dense",
                                       cand)
                first[name].setdefault("any", cand)
        rec.route, rec.impl = route, impl
        rec.variants_ms = {i: rec.latency_ms[r] for r, i, _ in cands}
        rec.macs_ticket = _conv_macs(best, args, kwargs, dense=False)
        rec.promised_speedup = rec.macs_dense / rec.macs_ticket if rec.macs_ticket else None
        rec.speedup = rec.latency_ms["dense"] / max(rec.latency_ms[route], 1e-12)
        half = [q[1] - q[0] for q in (rec.latency_iqr_ms["dense"], rec.latency_iqr_ms[route])]
        rec.noise_ms = 0.5 * sum(half)
        rec.bytes_dense = state_bytes(dense_conv)
    if fuse is not None and rows:
        _choose_fusion(compiled, dense_model, inputs, sel, rows, bool(fuse), first, replace,
                       got)
    for rec in rows:            # the modules that run now
        conv = compiled.get_submodule(rec.name)
        rec.bytes_stored = state_bytes(conv)
        lin_rec = by_name.get(f"{rec.name}.lin")
        if lin_rec is not None and not is_plain_linear(conv.lin) and lin_rec.route == "dense":
            lin_rec.route, lin_rec.impl = "csr", f"sparselth.nn.{type(conv.lin).__name__}"
            lin_rec.bytes_stored = state_bytes(conv.lin)
            lin_rec.note = f"chosen with {rec.name} as a whole"
        if lin_rec is not None and not lin_rec.latency_ms:
            _transform_row(lin_rec, rec.name, conv, dense_model.get_submodule(rec.name),
                           got[rec.name], ref[rec.name], sel)
    return rows


def _aggregated(conv: nn.Module, args: tuple, kwargs: dict) -> Tensor:
    """``A x`` as ``conv``'s inference plan computes it before its transform (aggregate
    first): the input its ``lin`` multiplies."""
    with torch.no_grad():
        conv(*args, **kwargs)               # builds (or reuses) the plan for these inputs
        p, x = conv._plan, args[0]
        if isinstance(x, CSR):
            return sparse_product(p.agg, x)
        a = p.agg
        return p.spmm(a.rowptr, a.col, a.val, x.contiguous(), None, None, None, p.n, False)


def _transform_row(rec: LayerReport, layer: str, conv: nn.Module, dense_conv: nn.Module,
                   call_args: tuple, ref_args: tuple, sel: Selection) -> None:
    """The row of a graph layer's ``lin``, which the layer calls on its own (never as a module
    the per-layer routes see, e.g. ``spmm(x, W^T)`` for CSR features): the MACs of its
    transform in the order the layer runs (``macs_dense``: every weight, on the same
    features) and the transform timed dense against the compiled ``lin``. The row stays
    ``part_of`` the layer, out of the totals (the layer's row counts it)."""
    (args, kwargs), (dargs, dkwargs) = call_args, ref_args
    order = conv.order if conv.order in ORDER_NAMES else "transform_first"
    rest = {k: v for k, v in kwargs.items() if k != "relu"}
    drest = {k: v for k, v in dkwargs.items() if k != "relu"}
    with torch.no_grad():
        rec.macs_dense = int(dense_conv.macs(*dargs, **drest, order=order,
                                             dense=True)["transform"])
        rec.macs_ticket = int(conv.macs(*args, **rest, order=order)["transform"])
    rec.promised_speedup = rec.macs_dense / rec.macs_ticket if rec.macs_ticket else None
    if order == "aggregate_first":
        h, dh = _aggregated(conv, args, kwargs), _aggregated(dense_conv, dargs, dkwargs)
        fns = {"dense": lambda: dense_conv.lin(dh), rec.route: lambda: conv.lin(h)}
        what = f"(A x) W^T after {layer}'s aggregation"
    else:
        x, dx = args[0], dargs[0]
        fns = {"dense": lambda: dense_conv._transform(dx), rec.route: lambda: conv._transform(x)}
        what = ("x W^T on the sparse features (spmm or sparse x sparse)" if isinstance(x, CSR)
                else "x W^T")
    timed = time_calls(fns, sel.budget_s, sel.device, sel.clock)
    for key, t in timed.timings.items():
        q = summary_ms(t, sel.clock)
        rec.latency_ms[key], rec.latency_iqr_ms[key] = q["ms"], [q["q1_ms"], q["q3_ms"]]
        rec.latency_wall_ms[key], rec.latency_cpu_ms[key] = q["wall_ms"], q["cpu_ms"]
    rec.speedup = rec.latency_ms["dense"] / max(rec.latency_ms[rec.route], 1e-12)
    half = [q[1] - q[0] for q in (rec.latency_iqr_ms["dense"], rec.latency_iqr_ms[rec.route])]
    rec.noise_ms = 0.5 * sum(half)
    rec.note = (f"timed inside {layer}: {what}, as {layer} runs it (counted in {layer}'s row, "
                f"not in the totals)")


def _choose_fusion(compiled: nn.Module, dense_model: nn.Module, inputs: Any, sel: Selection,
                   rows: list[LayerReport], allowed: bool,
                   first: Mapping[str, Mapping[str, nn.Module]],
                   replace: Callable[[nn.Module, str, nn.Module], None],
                   calls: Mapping[str, tuple]) -> None:
    """A model that can fuse a pair of graph layers (``fuse``, ``fused_layers``: the
    consumer's transform run in the producer's aggregation, which needs both to transform
    first and the consumer's ``lin`` sparse) is verified and timed end to end as chosen layer
    by layer (unfused) and fused, with the fastest fitting candidates of the pair; the faster
    stays. The decision is noted on the graph layers' rows."""
    producer, consumer = getattr(compiled, "fused_layers", (None, None))
    picks = (first.get(producer, {}).get("any"), first.get(consumer, {}).get("sparse"))
    fit = tuple(p[2] for p in picks if p is not None)
    note = ""
    if not allowed or len(fit) < 2:
        compiled.fuse = False
        note = "" if not allowed else "layers not fused: no transform-first sparse candidate"
    else:
        chosen = (compiled.get_submodule(producer), compiled.get_submodule(consumer))

        def use(mods: tuple, flag: bool) -> None:
            replace(compiled, producer, mods[0])
            replace(compiled, consumer, mods[1])
            compiled.fuse = flag

        with torch.no_grad():
            want = call(dense_model, inputs)
            use(fit, True)
            err = rel_error(call(compiled, inputs), want)
        if not err <= sel.tolerance:
            use(chosen, False)
            note = f"fused layers not exact (max relative error {err:.3g}): run unfused"
        else:
            def run(mods: tuple, flag: bool) -> Callable[[], Any]:
                def fn() -> Any:
                    use(mods, flag)
                    return call(compiled, inputs)
                return fn

            timed = time_calls({"fused": run(fit, True), "unfused": run(chosen, False)},
                               sel.budget_s, sel.device, sel.clock)
            ms = {k: summary_ms(t, sel.clock)["ms"] for k, t in timed.timings.items()}
            fused = ms["fused"] < ms["unfused"]
            use(fit if fused else chosen, fused)
            note = (f"model {'fused' if fused else 'unfused'}: {ms['fused']:.3g} ms with "
                    f"{consumer}'s transform in {producer}'s aggregation, {ms['unfused']:.3g} "
                    f"ms without")
            if fused:   # the pair's rows name the candidates that run
                by_row = {r.name: r for r in rows}
                for layer, (route, impl, _) in zip((producer, consumer), picks):
                    rec = by_row[layer]
                    rec.route, rec.impl = route, impl + " (fused pair)"
                    rec.speedup = rec.latency_ms["dense"] / max(rec.latency_ms[route], 1e-12)
                _note_live_channels(compiled, inputs, by_row[producer], calls[producer])
    for rec in rows:
        if note:
            rec.note = (rec.note + "; " if rec.note else "") + note


def _note_live_channels(compiled: nn.Module, inputs: Any, rec: LayerReport,
                        call_args: tuple) -> None:
    """The producer of a fused pair that skips hidden channels no kept weight of the consumer
    reads: its executed MACs (``rec.macs_executed``) and a note."""
    live_fn = getattr(compiled, "live_channels", None)
    if not callable(live_fn):
        return
    with torch.no_grad():
        call(compiled, inputs)
    n_live = live_fn()
    live = getattr(getattr(compiled, "_live", None), "live", None)
    conv = compiled.get_submodule(rec.name)
    W = conv._weight().detach()
    if n_live is None or live is None or n_live >= W.shape[0]:
        return
    args, kwargs = call_args
    rest = {k: v for k, v in kwargs.items() if k != "relu"}
    with torch.no_grad():
        full = conv.macs(*args, **rest, order="transform_first")
    kept = (W[live] != 0)
    x = args[0]
    if isinstance(x, CSR):
        counts = torch.bincount(x.col.long(), minlength=W.shape[1])
        transform = int((counts * kept.sum(0)).sum())
    else:
        transform = int(x.shape[0]) * int(kept.sum())
    rec.macs_executed = transform + (full["aggregate"] + full["self"]) * n_live // W.shape[0]
    rec.note = (rec.note + "; " if rec.note else "") + (
        f"computes {n_live} of {W.shape[0]} output channels (the others are read by no kept "
        f"weight of the next layer): {rec.macs_executed} MACs executed of {rec.macs_ticket} "
        f"counted")
