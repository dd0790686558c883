"""``sparselth.compile`` on GNN tickets: graph layers compiled and reported as a whole."""

from __future__ import annotations

import copy

import pytest
import torch

import sparselth
from sparselth import CSR, Ticket
from sparselth.data import contextual_sbm
from sparselth.models import GAT, GCN, GIN
from sparselth.nn import SparseLinear
from sparselth.utils.records import format_number, format_si

from ._tickets import FAST


def _graph_ticket(model_cls, sparse_x: bool, seed=0, **kw):
    data = contextual_sbm(num_nodes=60, num_features=24, num_classes=3, avg_degree=4.0,
                          homophily=0.7, feature_snr=0.5, seed=seed)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    x = data.x.double()
    if sparse_x:
        x = x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) < 0.1)
        x = CSR.from_dense(x)
    torch.manual_seed(seed)
    model = model_cls(A, data.num_features, data.num_classes, hidden=16, **kw).double().eval()
    masks = sparselth.prune.random(model, 0.8, include=model.ugs_weight_names(), seed=seed)
    g = torch.Generator().manual_seed(seed)
    masks["edge_mask"] = torch.rand(model.edge_mask.numel(), generator=g) >= 0.5
    return model, Ticket.from_model(model, masks), x


def _masked(model, ticket):
    m = copy.deepcopy(model)
    ticket.apply_to(m)
    return m.eval()


@pytest.mark.parametrize("sparse_x", [False, True])
@pytest.mark.parametrize("model_cls, kw", [(GCN, {}), (GCN, {"degree": "receiver"}), (GIN, {}),
                                          (GAT, {"heads": 2})])
def test_graph_model_compiled_equals_masked_dense(model_cls, kw, sparse_x):
    model, ticket, x = _graph_ticket(model_cls, sparse_x, **kw)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _masked(model, ticket)(x))
    rows = {r.name: r for r in report.layers}
    for conv in ("conv1", "conv2"):
        rec = rows[conv]
        assert rec.type == type(model.get_submodule(conv)).__name__
        assert rec.route.split()[0] in ("A(XW)", "(AX)W")
        assert rec.macs_ticket < rec.macs_dense
        assert rec.promised_speedup == pytest.approx(rec.macs_dense / rec.macs_ticket)
        assert "dense" in rec.latency_ms and rec.speedup is not None
        assert rows[f"{conv}.lin"].part_of == conv
    # the promise of the whole model: the graph layers' exact MACs (pred: counted alone)
    masked = _masked(model, ticket)
    with torch.no_grad():
        ticket_macs = masked.macs(x)["total"]
        dense_macs = model.macs(x)["total"]
    if model_cls is GCN:   # GCN.macs covers every layer; GIN adds pred, GAT counts the same
        assert report.end_to_end["promised_speedup"] == pytest.approx(dense_macs / ticket_macs)
    totals = report.totals
    assert totals["macs_ticket"] == sum(r.macs_ticket for r in report.layers if not r.part_of)
    assert "conv1" in str(report) and "(in conv1)" in str(report)


def test_sparse_features_get_a_sparse_transform_candidate():
    model, ticket, x = _graph_ticket(GCN, True)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    rec = report.layer("conv1")
    assert any("SparseLinear" in r for r in rec.latency_ms), rec.latency_ms
    assert not rec.rejected, rec.rejected
    # the first layer's MACs count the sparse x sparse product, not zero
    assert rec.macs_ticket > 0 and report.layer("conv1.lin").part_of == "conv1"
    if "SparseLinear" in rec.route:
        assert isinstance(compiled.conv1.lin, SparseLinear)
        assert report.layer("conv1.lin").route == "csr"


def test_forced_order_is_timed_and_verified():
    model, ticket, x = _graph_ticket(GCN, False)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    for conv in ("conv1", "conv2"):
        rec = report.layer(conv)
        assert {"A(XW)", "(AX)W"} <= {r.split()[0] for r in rec.latency_ms if r != "dense"}
        assert compiled.get_submodule(conv).order in ("transform_first", "aggregate_first")


def test_report_round_trip_keeps_part_of(tmp_path):
    model, ticket, x = _graph_ticket(GCN, True)
    _, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    path = report.save(tmp_path / "r.json")
    back = sparselth.deploy.CompileReport.load(path)
    assert back.layer("conv1.lin").part_of == "conv1"
    assert back.totals == report.totals


def test_fused_gcn_layers_are_verified_timed_and_noted():
    model, ticket, x = _graph_ticket(GCN, True)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    rows = [report.layer("conv1"), report.layer("conv2")]   # both still reported
    assert all("fused" in r.note for r in rows), [r.note for r in rows]
    assert isinstance(compiled.fuse, bool)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _masked(model, ticket)(x))
        compiled.fuse = not compiled.fuse
        torch.testing.assert_close(compiled(x), _masked(model, ticket)(x))


def test_dead_hidden_channels_are_reported_beside_the_counted_promise():
    model, ticket, x = _graph_ticket(GCN, False)
    # conv2 reads 3 of the 16 hidden channels
    keep = torch.zeros(3, 16, dtype=torch.bool)
    keep[:, :3] = True
    ticket.masks["conv2.lin.weight"] = keep
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _masked(model, ticket)(x))
    rec = report.layer("conv1")
    e = report.end_to_end
    if compiled.fuse and compiled.live_channels() == 3:
        assert rec.macs_executed < rec.macs_ticket and "3 of 16" in rec.note
        assert e["macs_skipped"] == rec.macs_ticket - rec.macs_executed
        assert e["promised_speedup_executed"] > e["promised_speedup"]
        assert "executed MACs" in str(report)
    else:
        assert rec.macs_executed is None and "macs_skipped" not in e


@pytest.mark.parametrize("sparse_x", [True, False])
def test_first_layer_lin_row_counts_its_transform_and_is_timed(sparse_x):
    """The ``lin`` inside the first graph layer (never called as a module: CSR features go
    through ``spmm(x, W^T)``) reports its transform's MACs and time, not 0 and none, and the
    totals hold the graph layers' exact counts with that transform in them."""
    model, ticket, x = _graph_ticket(GCN, sparse_x)
    compiled, report = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    rec = report.layer("conv1.lin")
    order = compiled.conv1.order
    kept = ticket.masks["conv1.lin.weight"]
    hidden, in_dim = kept.shape
    if order == "transform_first":
        if sparse_x:
            stored = torch.bincount(x.col.long(), minlength=in_dim)   # stored features per column
            assert rec.macs_dense == x.nnz * hidden
            assert rec.macs_ticket == int((stored * kept.sum(0)).sum())
        else:
            assert rec.macs_dense == x.shape[0] * kept.numel()
            assert rec.macs_ticket == x.shape[0] * int(kept.sum())
    assert 0 < rec.macs_ticket < rec.macs_dense
    assert rec.promised_speedup == pytest.approx(rec.macs_dense / rec.macs_ticket)
    assert "dense" in rec.latency_ms and rec.route in rec.latency_ms
    assert rec.speedup is not None and "timed inside conv1" in rec.note
    assert rec.part_of == "conv1"
    conv1 = report.layer("conv1")
    assert conv1.macs_dense >= rec.macs_dense and conv1.macs_ticket >= rec.macs_ticket
    counted = [r for r in report.layers if not r.part_of]
    assert report.totals["macs_dense"] == sum(r.macs_dense for r in counted)
    assert report.totals["latency_dense_ms"] == pytest.approx(
        sum(r.latency_ms["dense"] for r in counted))
    line = next(ln for ln in str(report).splitlines() if ln.startswith("conv1.lin"))
    assert format_si(rec.macs_dense) in line and format_number(rec.latency_ms["dense"]) in line


@pytest.mark.parametrize("model_cls, kw", [(GCN, {}), (GIN, {}), (GAT, {"heads": 2})])
def test_compiled_graph_model_exports(model_cls, kw):
    """``torch.export`` traces a compiled ticket (sparse ``lin`` layers included); the
    exported program gives the compiled model's output."""
    model, ticket, x = _graph_ticket(model_cls, False, **kw)
    compiled, _ = sparselth.compile(model, ticket, example_inputs=(x,), **FAST)
    program = torch.export.export(compiled, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), compiled(x))


def test_compile_refuses_meta_tensors():
    model, ticket, x = _graph_ticket(GCN, False)
    with pytest.raises(ValueError, match="^compile: device is meta"):
        sparselth.compile(model, ticket, device="meta", example_inputs=(x,), **FAST)
    with pytest.raises(ValueError, match="^compile: model holds meta tensors"):
        sparselth.compile(copy.deepcopy(model).to("meta"), ticket, device="cpu",
                          example_inputs=(x,), **FAST)
    with pytest.raises(ValueError, match="^compile: example_inputs holds meta tensors"):
        sparselth.compile(model, ticket, example_inputs=(x.to("meta"),), **FAST)
