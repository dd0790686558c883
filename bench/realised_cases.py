"""The cases of ``bench.realised``: what each one runs, and its exact MACs and minimum bytes.

A :class:`Case` holds a dense baseline and the sparse route(s) that run the same ticket today,
both already checked to give the same result (compiled models by ``sparselth.compile``
itself, kernels here against the dense output), plus the cost models that make the promise:

- **MACs**, exact: multiply-adds of kept weights only (``count_macs``' conventions for
  layers; :meth:`GCN.macs` for graph models, which counts a sparse first layer per stored
  feature; ``sum over stored A entries of nnz(table row)`` for a product with an
  element-sparse table). A gather has none.
- **bytes**, minimum: every kernel's inputs read once and its output written once, at 4 bytes
  per float and the index width actually stored (the compiled or built module's ``rowptr`` /
  ``col`` dtypes; int32 where a layer stayed dense). Elementwise work (ReLU, bias) is not
  counted. The sparse side counts the ideal format of the ticket, not what today's route
  happens to read, so ``bytes`` is a promise as well.
"""

from __future__ import annotations

import copy
import math
import shlex
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparselth.utils.timing import stopwatch

from . import common

FLOAT = 4  # bytes per float32 value
IDS = 8    # bytes per int64 id


@dataclass
class Settings:
    """What every builder needs from the command line."""

    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = "auto"
    scope: str = "layer"
    budget_s: float = 0.3
    e2e_budget_s: float = 2.0
    seed: int = 0
    data: Path | None = None
    ugs_runs: Path | None = None


@dataclass
class Case:
    """One row: ``dense`` and the sparse route(s) of the same computation (``sparse``: the
    fastest one is the headline), exact MACs and minimum bytes of both sides (``None`` MACs:
    a gather), what the sparse side runs (``route``), the target and case facts."""

    name: str
    group: str
    dense: Callable[[], Any]
    sparse: dict[str, Callable[[], Any]]
    macs: tuple[int, int | None]
    nbytes: tuple[int, int]
    route: str
    target: list[tuple[str, str, float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """A case to build: its name and group (known before building), the builder."""

    name: str
    group: str
    build: Callable[[Settings], Case]


# --------------------------------------------------------------------------- cost helpers


def csr_bytes(rows: int, nnz: int, rowptr_bytes: int = 4, col_bytes: int = 4,
              value_bytes: int = FLOAT) -> int:
    """Stored bytes of a CSR: rowptr, col and values."""
    return (rows + 1) * rowptr_bytes + nnz * (col_bytes + value_bytes)


def index_bytes(module: nn.Module | None) -> tuple[int, int]:
    """``(rowptr, col)`` bytes per entry a built sparse module stores; (4, 4) (int32, what a
    CSR of this size gets) for a layer that stayed dense."""
    rp, col = getattr(module, "rowptr", None), getattr(module, "col", None)
    if isinstance(rp, Tensor) and isinstance(col, Tensor):
        return rp.element_size(), col.element_size()
    return 4, 4


def _weight_mask(module: nn.Module) -> Tensor:
    w = module.weight
    return w.detach() != 0


def layer_model_costs(dense: nn.Module, compiled: nn.Module, x: Tensor) -> dict[str, Any]:
    """Exact MACs and minimum bytes of every Linear/Conv2d/ConvTranspose2d of ``dense`` (the
    masked model with the masks folded in: pruned weights are exact zeros) on input ``x``:
    per layer and in total, dense and ticket. Index widths from ``compiled``'s modules."""
    kinds = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    seen: dict[str, dict[str, Any]] = {}

    def hook(name):
        def fn(module, inputs, output):
            xin = inputs[0]
            w = module.weight
            nnz = int(_weight_mask(module).sum())
            if isinstance(module, nn.Linear):
                rows = xin.numel() // module.in_features
            elif isinstance(module, nn.Conv2d):
                rows = output.numel() // module.out_channels
            else:
                rows = xin.numel() // module.in_channels
            rp, col = index_bytes(_submodule(compiled, name))
            act = (xin.numel() + output.numel()) * FLOAT
            bias = 0 if module.bias is None else module.bias.numel() * FLOAT
            seen[name] = {
                "type": type(module).__name__, "shape": list(w.shape), "nnz": nnz,
                "sparsity": 1 - nnz / w.numel(),
                "macs_dense": rows * w.numel(), "macs": rows * nnz,
                "bytes_dense": w.numel() * FLOAT + act + bias,
                "bytes": csr_bytes(w.shape[0], nnz, rp, col) + act + bias,
                "index_bytes": [rp, col],
            }
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in dense.named_modules()
               if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            dense(x)
    finally:
        for h in handles:
            h.remove()
    total = {k: sum(v[k] for v in seen.values())
             for k in ("macs_dense", "macs", "bytes_dense", "bytes")}
    return {"layers": seen, "total": total}


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _random_mask(shape, sparsity: float, g: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=g) >= sparsity


def _check(name: str, got: Tensor, ref: Tensor) -> None:
    bad = common.wrong_result(name, got, ref)
    if bad:
        raise RuntimeError(bad)


def _compile_summary(report) -> dict[str, Any]:
    e = report.end_to_end
    return {
        "routes": dict(report.routes),
        "compile_end_to_end": {k: e.get(k) for k in ("dense_ms", "compiled_ms", "speedup",
                                                     "promised_speedup", "realised_savings")},
        "layers": [{"name": r.name, "type": r.type, "shape": r.shape,
                    "sparsity": r.sparsity, "route": r.route, "impl": r.impl,
                    "latency_ms": r.latency_ms, "speedup": r.speedup,
                    "promised_speedup": r.promised_speedup} for r in report.layers],
        "max_rel_error": e.get("max_rel_error"),
    }


def _routes_text(routes: Mapping[str, str]) -> str:
    return "compile: " + ", ".join(f"{k} {v}" for k, v in routes.items())


# --------------------------------------------------------------------------- layer models


def compiled_layer_model(cfg: Settings, *, name: str, model: str,
                         kwargs: dict[str, Any], input_shape: list[int], batch: int,
                         sparsity: float, scope: str,
                         target: list[tuple[str, str, float]] | None) -> Case:
    """An MLP or conv net pruned by magnitude, compiled with ``sparselth.compile``, against
    the masked dense model (masks folded in, plain modules)."""
    import sparselth
    from sparselth.models import build_model

    torch.manual_seed(cfg.seed)
    net = build_model(model, **kwargs)
    masks = sparselth.prune.magnitude(net, sparsity, scope=scope)
    ticket = sparselth.Ticket.from_model(net, masks)
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(cfg.seed))
    elapsed = stopwatch()
    compiled, report = sparselth.compile(net, ticket, device=cfg.device, example_inputs=x,
                                         backend=cfg.backend, budget_s=cfg.budget_s,
                                         e2e_budget_s=cfg.e2e_budget_s)
    compile_s = elapsed()
    dense = ticket.apply_to(copy.deepcopy(net))
    sparselth.prune.remove(dense)
    dense = dense.to(cfg.device).eval()
    x = x.to(cfg.device)
    costs = layer_model_costs(dense, compiled, x)
    t = costs["total"]
    info = {"model": model, "batch": batch, "sparsity": sparsity, "scope": scope,
            "ticket_sparsity": report.meta.get("ticket_sparsity"), "compile_s": compile_s,
            "cost_layers": costs["layers"], **_compile_summary(report)}
    return Case(name, model, lambda: dense(x), {"compiled": lambda: compiled(x)},
                (t["macs_dense"], t["macs"]), (t["bytes_dense"], t["bytes"]),
                _routes_text(report.routes), target, info)


# --------------------------------------------------------------------------- single layers


def sparse_linear_case(cfg: Settings, *, name: str, features: int, batch: int,
                       sparsity: float, target) -> Case:
    """``SparseLinear`` (random mask) against ``F.linear`` with the masked dense weight."""
    from sparselth.nn import SparseLinear

    g = torch.Generator().manual_seed(cfg.seed)
    lin = nn.Linear(features, features)
    mask = _random_mask(lin.weight.shape, sparsity, g)
    with torch.no_grad():
        lin.weight.mul_(mask)
    layer = SparseLinear.from_dense(lin, mask, backend=cfg.backend).to(cfg.device).eval()
    W, b = lin.weight.detach().to(cfg.device), lin.bias.detach().to(cfg.device)
    x = torch.randn(batch, features, generator=g).to(cfg.device)
    with torch.no_grad():
        _check(name, layer(x), F.linear(x, W, b))
    nnz = layer.nnz
    rp, col = index_bytes(layer)
    act = (batch * features * 2 + features) * FLOAT    # x read, y written, bias read
    return Case(name, "linear", lambda: F.linear(x, W, b), {"SparseLinear": lambda: layer(x)},
                (batch * W.numel(), batch * nnz),
                (W.numel() * FLOAT + act, csr_bytes(features, nnz, rp, col) + act),
                "SparseLinear", target,
                {"features": features, "batch": batch, "sparsity": sparsity, "nnz": nnz,
                 "index_bytes": [rp, col]})


def sparse_conv_case(cfg: Settings, *, name: str, transposed: bool, channels: int, px: int,
                     batch: int, sparsity: float, target) -> Case:
    """A 3x3 ``SparseConv2d`` (stride 1, padding 1) or ``SparseConvTranspose2d`` (stride 2,
    padding 1, output padding 1: the upsampling layer of image generators) with a random
    mask, against ``F.conv2d`` / ``F.conv_transpose2d`` (oneDNN) on the masked weight."""
    from sparselth.nn import SparseConv2d, SparseConvTranspose2d
    from sparselth.ops.sparse_conv import resolve_route

    g = torch.Generator().manual_seed(cfg.seed)
    if transposed:
        conv = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
    else:
        conv = nn.Conv2d(channels, channels, 3, padding=1)
    mask = _random_mask(conv.weight.shape, sparsity, g)
    with torch.no_grad():
        conv.weight.mul_(mask)
    kind = SparseConvTranspose2d if transposed else SparseConv2d
    layer = kind.from_dense(conv, mask, backend=cfg.backend).to(cfg.device).eval()
    conv = conv.to(cfg.device).eval()
    x = torch.randn(batch, channels, px, px, generator=g).to(cfg.device)
    with torch.no_grad():
        y = conv(x)
        _check(name, layer(x), y)
    route, backend = resolve_route(name, layer.route, layer.backend, x.device, x.dtype)
    nnz, numel = layer.nnz, conv.weight.numel()
    positions = x[:, 0].numel() if transposed else y[:, 0].numel()
    rp, col = index_bytes(layer)
    act = (x.numel() + y.numel() + channels) * FLOAT
    return Case(name, "conv", lambda: conv(x), {kind.__name__: lambda: layer(x)},
                (positions * numel, positions * nnz),
                (numel * FLOAT + act, csr_bytes(layer.weight_shape[0], nnz, rp, col) + act),
                f"{kind.__name__} route {route} ({backend})", target,
                {"channels": channels, "px": px, "batch": batch, "sparsity": sparsity,
                 "transposed": transposed, "nnz": nnz, "index_bytes": [rp, col],
                 "output_shape": list(y.shape)})


# --------------------------------------------------------------------------- graph models


def _planetoid(cfg: Settings, dataset: str):
    from sparselth.data import load_planetoid

    root = cfg.data or common.default_data_dir()
    if not (root / "planetoid" / f"ind.{dataset}.graph").exists():
        raise FileNotFoundError(f"{dataset} not found under {root}/planetoid (pass --data)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_planetoid(dataset, root=root)
    return data, [str(w.message) for w in caught]


def _csbm(nodes: int, features: int, seed: int):
    from sparselth.cli.demo_glt import load_demo_data

    return load_demo_data(None, "csbm", nodes, features, seed)


def _ugs_ticket(runs: Path, dataset: str, round_: int):
    """The ticket of round ``round_`` of the newest UGS run of a GCN on ``dataset``."""
    import sparselth

    folder = runs / f"ugs-gcn-{dataset}"
    candidates = sorted((p for p in folder.glob("*") if p.is_dir()),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no UGS run folder under {folder}")
    return sparselth.Ticket.from_run(candidates[-1], round_)


def gcn_bytes(model: nn.Module, x: Any, compiled: nn.Module | None = None) -> int:
    """Minimum bytes of a two-layer GCN forward (transform first in both layers, as
    :meth:`GCN.macs` counts): per layer the features and the weight read and the product
    written, then the normalised adjacency with its self loops stored and the product read
    and the output written. ``model`` holds the ticket (pruned weights and edge weights exact
    zeros; the dense model has none); the weight is counted as a CSR (indices as stored in
    ``compiled`` where it built one) when it has any zero, else dense."""
    from sparselth import CSR

    A = model.adjacency()
    N = A.shape[0]
    kept = int((model.edge_mask.detach() != 0).sum())
    rp_a, col_a = A.rowptr.element_size(), A.col.element_size()
    adj = csr_bytes(N, kept + N, rp_a, col_a)
    if isinstance(x, CSR):
        xb = csr_bytes(N, x.nnz, x.rowptr.element_size(), x.col.element_size(),
                       FLOAT if x.val is not None else 0)
    else:
        xb = x.numel() * FLOAT
    total = 0
    for i, conv in enumerate((model.conv1, model.conv2)):
        W = conv._weight().detach()
        nnz = int((W != 0).sum())
        if nnz == W.numel():
            wb = W.numel() * FLOAT
        else:
            sub = _submodule(compiled, f"conv{i + 1}.lin") if compiled is not None else None
            rp, col = index_bytes(sub)
            wb = csr_bytes(W.shape[1], nnz, rp, col)    # rows by input feature: X's columns
        width = W.shape[0]
        total += xb + wb + N * width * FLOAT                    # transform
        total += adj + 2 * N * width * FLOAT                    # aggregate (+ self loops)
        xb = N * width * FLOAT
    return total


def gcn_case(cfg: Settings, *, name: str, dataset: str, graph_sparsity: float,
             weight_sparsity: float, hidden: int, ugs_round: int | None, target) -> Case:
    """A two-layer GCN ticket (graph and weights pruned) compiled with ``sparselth.compile``,
    against the unpruned model. Masks are drawn at random at the given sparsities (as
    ``bench.timing_stability`` does), or taken from a UGS run folder with ``--ugs-runs``."""
    import sparselth
    from sparselth import CSR
    from sparselth.models import GCN
    from sparselth.train import node_features

    load_warnings: list[str] = []
    if dataset.startswith("csbm-"):
        nodes, features = (int(v) for v in dataset.split("-")[1:3])
        data = _csbm(nodes, features, cfg.seed)
    else:
        data, load_warnings = _planetoid(cfg, dataset)
    x = node_features(data.x)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    torch.manual_seed(cfg.seed)
    model = GCN(A, data.num_features, data.num_classes, hidden=hidden).eval()
    source = "random"
    if cfg.ugs_runs is not None and ugs_round is not None and not dataset.startswith("csbm"):
        ticket = _ugs_ticket(cfg.ugs_runs, dataset, ugs_round)
        source = f"UGS round {ugs_round}"
    else:
        masks = sparselth.prune.random(model, weight_sparsity,
                                       include=model.ugs_weight_names(), seed=cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        masks["edge_mask"] = torch.rand(A.nnz, generator=g) >= graph_sparsity
        ticket = sparselth.Ticket.from_model(model, masks)
    elapsed = stopwatch()
    compiled, report = sparselth.compile(model, ticket, device=cfg.device, example_inputs=(x,),
                                         backend=cfg.backend, budget_s=cfg.budget_s,
                                         e2e_budget_s=cfg.e2e_budget_s)
    compile_s = elapsed()
    masked = ticket.apply_to(copy.deepcopy(model))
    sparselth.prune.remove(masked)
    macs_dense, macs_ticket = model.macs(x), masked.macs(x)
    w_nnz = sum(int((masked.get_parameter(n) != 0).sum()) for n in masked.ugs_weight_names())
    w_total = sum(masked.get_parameter(n).numel() for n in masked.ugs_weight_names())
    info = {"dataset": dataset, "nodes": data.num_nodes, "features": data.num_features,
            "features_as": "CSR" if isinstance(x, CSR) else "dense", "hidden": hidden,
            "ticket": source, "edges": A.nnz, "edges_kept": masked.num_edges(),
            "graph_sparsity": 1 - masked.num_edges() / max(1, A.nnz),
            "weight_sparsity": 1 - w_nnz / max(1, w_total),
            "macs_dense_layers": macs_dense, "macs_ticket_layers": macs_ticket,
            "compile_s": compile_s, "load_warnings": load_warnings,
            **_compile_summary(report)}
    model = model.to(cfg.device)
    x = x.to(cfg.device)
    return Case(name, "gcn", lambda: model(x), {"compiled": lambda: compiled(x)},
                (macs_dense["total"], macs_ticket["total"]),
                (gcn_bytes(model, x), gcn_bytes(masked, x, compiled)),
                _routes_text(report.routes), target, info)


# --------------------------------------------------------------------------- tables


def lightgcn_setup(quick: bool) -> dict[str, Any]:
    """The graph of ``bench.lightgcn_propagation``'s published result (its ``--quick`` one
    in quick mode): users, items, interactions per user, dimension, seed."""
    from . import lightgcn_propagation as lg

    argv = "--quick" if quick else lg.PUBLISHED["lightgcn-propagation-cpu"]
    return lg.run_protocol(lg.build_parser().parse_args(shlex.split(argv)))


def lightgcn_case(cfg: Settings, *, name: str, sparsity: float, target) -> Case:
    """LightGCN's first propagation layer ``A_norm @ (W * M)`` with an element mask ``M``:
    the table stored dense (``spmm(A, W*M)``) against today's sparse route, the mask read on
    the fly (``spmm(A, W, x_mask=M)``). The promise is that of an element-sparse table:
    ``sum over stored A entries of the kept entries of the table row`` MACs."""
    from sparselth.data import synthetic_interactions
    from sparselth.ops import spmm

    p = lightgcn_setup(cfg.quick)
    data = synthetic_interactions(p["users"], p["items"], avg_interactions=p["avg"],
                                  seed=p["seed"])
    A = data.adjacency().to(cfg.device)
    n, d = A.shape[0], p["dim"]
    g = torch.Generator().manual_seed(cfg.seed)
    W = torch.randn(n, d, generator=g)
    M = torch.rand(n, d, generator=g) >= sparsity
    Wm = (W * M).to(cfg.device)
    W, M = W.to(cfg.device), M.to(cfg.device)
    ref = spmm(A, Wm)
    _check(f"{name} x_mask", spmm(A, W, x_mask=M), ref)
    routes = {"x_mask": lambda: spmm(A, W, x_mask=M)}
    skipped = _table_product_route(A, Wm, ref, routes)
    kept_per_row = M.sum(1)
    macs_sparse = int(kept_per_row[A.col.long()].sum())
    nnz_table = int(kept_per_row.sum())
    rp, col = A.rowptr.element_size(), A.col.element_size()
    adj = csr_bytes(n, A.nnz, rp, col)
    out = n * d * FLOAT
    del ref
    return Case(name, "lightgcn", lambda: spmm(A, Wm), routes,
                (A.nnz * d, macs_sparse),
                (adj + n * d * FLOAT + out, adj + csr_bytes(n, nnz_table) + out),
                "fastest of " + ", ".join(routes), target,
                {"users": p["users"], "items": p["items"], "avg": p["avg"], "dim": d,
                 "nnz_adjacency": A.nnz, "table_sparsity": 1 - nnz_table / (n * d),
                 "sparsity": sparsity, "routes_skipped": skipped})


def _table_product_route(A, Wm: Tensor, ref: Tensor, routes: dict) -> dict[str, str]:
    """Add ``spgemm``, ``A @ CSR(table)``, to ``routes`` where ``sparselth.ops`` has such an
    op and it gives ``ref``; returns why it was left out otherwise."""
    import sparselth.ops
    from sparselth import CSR

    op = getattr(sparselth.ops, "spgemm", None)
    if op is None:
        return {"spgemm": "sparselth.ops has no spgemm"}
    try:
        E = CSR.from_dense(Wm)
        got = op(A, E)
        _check("spgemm", got.to_dense() if isinstance(got, CSR) else got, ref)
    except (TypeError, ValueError, RuntimeError) as e:
        return {"spgemm": f"{type(e).__name__}: {e}"}
    routes["spgemm"] = lambda: op(A, E)
    return {}


def embedding_case(cfg: Settings, *, name: str, rows: int, dim: int, batch: int,
                   sparsity: float, target) -> Case:
    """``CompressedEmbedding`` (format picked by bytes) on a random element mask against
    ``F.embedding`` on the masked dense table, both cycling through pre-drawn random id
    batches (``bench.embedding``'s ``Batches``: a served table's cold rows)."""
    from sparselth.nn import CompressedEmbedding

    from .embedding import Batches, make_mask

    g = torch.Generator().manual_seed(cfg.seed)
    W = torch.randn(rows, dim, generator=g)
    M = make_mask("random", rows, dim, sparsity, g)
    Wm = W * M
    emb = CompressedEmbedding.from_masked(W, M, backend=cfg.backend)
    del W, M
    batches = Batches(rows, batch, 64, g)
    ids = batches.all[0]
    if not torch.equal(emb(ids), F.embedding(ids, Wm)):
        raise RuntimeError(f"{name}: compressed lookup differs from F.embedding")
    out = batch * dim * FLOAT
    per_row = emb.stored_bytes / rows
    return Case(name, "embedding", lambda: F.embedding(batches.next(), Wm),
                {emb.format: lambda: emb(batches.next())},
                (0, None),
                (batch * IDS + batch * dim * FLOAT + out,
                 batch * IDS + int(batch * per_row) + out),
                f"CompressedEmbedding ({emb.format})", target,
                {"rows": rows, "dim": dim, "batch": batch, "sparsity": sparsity,
                 "format": emb.format, "stored_bytes": emb.stored_bytes,
                 "dense_bytes": rows * dim * FLOAT})


# --------------------------------------------------------------------------- the plan


def _at(metric: str, op: str, value: float) -> tuple[str, str, float]:
    return (metric, op, value)


def plan(cfg: Settings, sparsities: list[float], pubmed: bool) -> list[Plan]:
    """Every case of a run, in order (cheap: nothing is built here)."""
    q = cfg.quick
    out: list[Plan] = []

    def add(name: str, group: str, fn: Callable[..., Case], **kw: Any) -> None:
        out.append(Plan(name, group, lambda s, fn=fn, kw=kw: fn(s, name=name, **kw)))

    # MLPs and the conv net, compiled
    big = [256, 512, 512, 10] if q else [1024, 2048, 2048, 10]
    add(f"mlp-{'-'.join(map(str, big))} b{16 if q else 64} 90% global", "mlp",
        compiled_layer_model, model="mlp", kwargs={"sizes": big},
        input_shape=[big[0]], batch=16 if q else 64, sparsity=0.9, scope="global",
        target=[_at("realised", ">=", 0.6)])
    small = [784, 256, 256, 10] if q else [784, 1024, 1024, 10]
    conv_kw = ({"in_channels": 1, "image_size": 16, "channels": [8, 16, 16], "hidden": 32}
               if q else {"in_channels": 1, "image_size": 28, "channels": [32, 64, 64],
                          "hidden": 256})
    for s in sparsities:
        tgt = [_at("realised", ">=", 0.6)] if math.isclose(s, 0.9) else None
        for b in ([32] if q else [64, 256]):
            add(f"mlp-{'-'.join(map(str, small))} b{b} {s:.0%} {cfg.scope}", "mlp",
                compiled_layer_model, model="mlp", kwargs={"sizes": small},
                input_shape=[784], batch=b, sparsity=s, scope=cfg.scope, target=tgt)
    for s in sparsities:
        px = conv_kw["image_size"]
        b = 8 if q else 64
        add(f"convnet-{px}x{px} b{b} {s:.0%} {cfg.scope}", "convnet", compiled_layer_model,
            model="convnet", kwargs=conv_kw, input_shape=[1, px, px],
            batch=b, sparsity=s, scope=cfg.scope,
            target=[_at("realised", ">=", 0.5)] if math.isclose(s, 0.9) else None)

    # SparseLinear against F.linear
    f = 256 if q else 1024
    add(f"SparseLinear {f}x{f} b1 90%", "linear", sparse_linear_case, features=f, batch=1,
        sparsity=0.9, target=[_at("speedup", ">=", 3.0)])
    for b in (16, 64):
        add(f"SparseLinear {f}x{f} b{b} 50%", "linear", sparse_linear_case, features=f,
            batch=b, sparsity=0.5, target=[_at("speedup", ">", 1.0)])

    # 3x3 conv and conv-transpose against oneDNN
    ch = 16 if q else 256
    shapes = [(8, 1), (8, 2)] if q else [(8, 1), (32, 1), (8, 16), (16, 16)]
    for transposed in (False, True):
        kind = "ConvTranspose 3x3/2" if transposed else "Conv 3x3"
        for px, b in shapes:
            for s in (0.6, 0.9):
                tgt = ([_at("speedup", ">", 1.0)] if s < 0.9 else
                       [_at("speedup", ">=", 5.0), _at("realised", ">=", 0.6)])
                add(f"{kind} {ch}ch {px}px b{b} {s:.0%}", "conv", sparse_conv_case,
                    transposed=transposed, channels=ch, px=px, batch=b, sparsity=s,
                    target=tgt)

    # graph lottery tickets, compiled
    cora = "csbm-300-100" if q else "cora"
    hid = 32 if q else 512
    add(f"GCN {cora} 37%/86.6%", "gcn", gcn_case, dataset=cora, graph_sparsity=0.37,
        weight_sparsity=0.866, hidden=hid, ugs_round=9, target=None)
    add(f"GCN {cora} 64%/98.8%", "gcn", gcn_case, dataset=cora, graph_sparsity=0.64,
        weight_sparsity=0.988, hidden=hid, ugs_round=20, target=[_at("realised", ">=", 0.6)])
    if pubmed:
        add("GCN pubmed 59%/82%", "gcn", gcn_case, dataset="pubmed", graph_sparsity=0.59,
            weight_sparsity=0.82, hidden=hid, ugs_round=4, target=[_at("realised", ">=", 0.6)])
    demo = "csbm-300-50" if q else "csbm-3000-500"
    add(f"GCN demo {demo} 59%/87%", "gcn", gcn_case, dataset=demo, graph_sparsity=0.59,
        weight_sparsity=0.87, hidden=32 if q else 256, ugs_round=None,
        target=[_at("realised", ">=", 0.6)])

    # tables
    for s, need in ((0.8, 2.0), (0.95, 5.0)):
        add(f"LightGCN propagation, table {s:.0%} pruned", "lightgcn", lightgcn_case,
            sparsity=s, target=[_at("speedup", ">=", need)])
    rows, dim, batch = (3000, 16, 256) if q else (300_000, 64, 4096)
    add(f"CompressedEmbedding {rows // 1000}k x {dim}, {batch} ids, 90%", "embedding",
        embedding_case, rows=rows, dim=dim, batch=batch, sparsity=0.9,
        target=[_at("speedup", ">=", 1.0)])
    return out


# cases of the table not measured yet (listed in the report)
NOT_BUILT: list[str] = []
