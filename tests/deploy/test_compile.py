"""sparselth.compile: exactness of every route, report contents, argument errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import sparselth
from sparselth import Ticket
from sparselth.compile import ROUTES, CompileError, CompileReport, LayerReport
from sparselth.compile import compile as sl_compile

FAST = {"budget_s": 0.005, "e2e_budget_s": 0.01}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # timings are not asserted; one thread keeps the tests fast on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(37, 64)
        self.fc2 = nn.Linear(64, 48)
        self.fc3 = nn.Linear(48, 48, bias=False)
        self.fc4 = nn.Linear(48, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = torch.tanh(self.fc3(x))
        return self.fc4(x)


class ConvNet(nn.Module):
    """Convs with stride, padding, dilation, groups, a non-square kernel, no bias; conv
    transposes with stride, output_padding, groups, dilation."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.c2 = nn.Conv2d(12, 16, (3, 2), stride=2, padding=(1, 0), bias=False)
        self.c3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4)
        self.t1 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        self.t2 = nn.ConvTranspose2d(8, 4, 3, padding=2, dilation=2, groups=2)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        x = torch.relu(self.t1(x))
        x = self.t2(x)
        return self.fc(x.mean((2, 3)))


def _masks(model, sparsities, seed=0, channel_layers=()):
    """Element masks with the given per-layer sparsity (1.0: all pruned); layers named in
    ``channel_layers`` also lose whole output channels (rows)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            continue
        s = sparsities.get(name, 0.5)
        w = mod.weight
        m = torch.rand(w.shape, generator=g) >= s
        if s >= 1.0:
            m[:] = False
        if name in channel_layers:
            m[::2] = False  # half of dim 0 (outputs; for conv-transpose: inputs)
            m[:, ::3] = False
        out[f"{name}.weight"] = m
    return out


def _ticket(model, masks, seed=1):
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    sparselth.prune.apply(m, masks)
    return Ticket.from_model(m, sparselth.prune.masks_of(m))


def _reference(model, ticket, x):
    ref = copy.deepcopy(model)
    ticket.apply_to(ref)
    ref.eval()
    with torch.no_grad():
        return ref(x)


MLP_SPARSITIES = [
    {"fc1": 0.0, "fc2": 0.5, "fc3": 0.9, "fc4": 0.95},
    {"fc1": 1.0, "fc2": 0.97, "fc3": 0.0, "fc4": 1.0},
]


@pytest.mark.parametrize("sparsities", MLP_SPARSITIES)
@pytest.mark.parametrize("routes", [None, {"*": "csr"}, {"*": "channel"}, ["dense", "csr"]])
def test_mlp_compiled_equals_masked_dense(sparsities, routes):
    torch.manual_seed(0)
    model = MLP()
    ticket = _ticket(model, _masks(model, sparsities, channel_layers=("fc2", "fc3")))
    x = torch.randn(7, 37)
    compiled, report = sl_compile(model, ticket, example_inputs=x, routes=routes, **FAST)
    ref = _reference(model, ticket, x)
    with torch.no_grad():
        got = compiled(x)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        # other inputs (other batch size) too: the routes do not depend on the example
        x2 = torch.randn(3, 37)
        torch.testing.assert_close(compiled(x2), _reference(model, ticket, x2), rtol=1e-4,
                                   atol=1e-5)
    if isinstance(routes, dict):
        for rec in report.layers:
            if rec.forced:
                assert rec.route == routes["*"]
                assert isinstance(compiled.get_submodule(rec.name), nn.Module)
        if routes["*"] == "csr":
            assert all(r.route == "csr" for r in report.layers)


@pytest.mark.parametrize("sparsities", [
    {"c1": 0.0, "c2": 0.8, "c3": 0.5, "t1": 0.9, "t2": 1.0, "fc": 0.3},
    {"c1": 1.0, "c2": 0.0, "c3": 0.95, "t1": 0.0, "t2": 0.6, "fc": 0.0},
])
@pytest.mark.parametrize("routes", [None, {"*": "csr"}, {"*": "channel"}])
def test_convnet_compiled_equals_masked_dense(sparsities, routes):
    torch.manual_seed(0)
    model = ConvNet()
    masks = _masks(model, sparsities, channel_layers=("c2", "t1", "fc"))
    ticket = _ticket(model, masks)
    x = torch.randn(2, 3, 11, 9)
    compiled, report = sl_compile(model, ticket, example_inputs=x, routes=routes, **FAST)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x), rtol=1e-4,
                                   atol=1e-5)
    assert [r.name for r in report.layers] == ["c1", "c2", "c3", "t1", "t2", "fc"]
    if routes == {"*": "csr"}:
        assert all(r.route == "csr" for r in report.layers), report.routes
    if routes == {"*": "channel"}:
        # channel-structured layers and all-pruned layers take the channel route
        assert report.layer("c2").route == "channel"
        assert report.layer("t1").route == "channel"
        assert report.layer("c3").route != "channel"  # groups > 1: not applicable
        assert "channel" in report.layer("c3").rejected


@pytest.mark.parametrize("backend", [b for b in ("reference", "cpp")
                                     if b in sparselth.backends()])
def test_csr_route_on_each_cpu_backend(backend):
    torch.manual_seed(0)
    model = ConvNet()
    ticket = _ticket(model, _masks(model, {}))
    x = torch.randn(2, 3, 8, 8)
    compiled, report = sl_compile(model, ticket, example_inputs=x, routes={"*": "csr"},
                                  backend=backend, **FAST)
    assert report.meta["backend"] == backend
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x), rtol=1e-4,
                                   atol=1e-5)


def test_float64_model():
    torch.manual_seed(0)
    model = MLP().double()
    ticket = _ticket(model, _masks(model, {"fc2": 0.9}))
    x = torch.randn(5, 37, dtype=torch.float64)
    compiled, report = sl_compile(model, ticket, example_inputs=x, routes={"*": "csr"}, **FAST)
    assert report.meta["dtype"] == "float64" and report.meta["tolerance"] <= 1e-9
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x))


def test_chosen_route_never_slower_than_dense_and_model_untouched():
    torch.manual_seed(0)
    model = MLP()
    before = copy.deepcopy(model.state_dict())
    ticket = _ticket(model, _masks(model, {"fc1": 0.0, "fc2": 0.99, "fc3": 0.6, "fc4": 1.0},
                                   channel_layers=("fc3",)))
    _, report = sl_compile(model, ticket, example_inputs=torch.randn(16, 37), **FAST)
    for rec in report.layers:
        assert rec.latency_ms[rec.route] <= rec.latency_ms["dense"], rec
        assert rec.speedup >= 1.0
        assert set(rec.latency_ms) <= set(ROUTES)
        assert "dense" in rec.latency_ms
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not sparselth.prune.is_masked(model)


def test_report_fields_and_json_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MLP()
    masks = _masks(model, {"fc1": 0.0, "fc2": 0.9, "fc3": 0.5, "fc4": 1.0})
    ticket = _ticket(model, masks)
    x = torch.randn(8, 37)
    _, report = sl_compile(model, ticket, example_inputs=x, **FAST)
    fc2 = report.layer("fc2")
    assert isinstance(fc2, LayerReport)
    assert fc2.type == "Linear" and fc2.shape == [48, 64]
    nnz = int(masks["fc2.weight"].sum())
    assert fc2.sparsity == pytest.approx(1 - nnz / (48 * 64))
    assert fc2.macs_dense == 8 * 48 * 64 and fc2.macs_ticket == 8 * nnz
    assert fc2.bytes_dense == (48 * 64 + 48) * 4
    assert fc2.promised_speedup == pytest.approx(48 * 64 / nnz)
    assert report.layer("fc1").promised_speedup == pytest.approx(1.0)
    assert report.layer("fc4").macs_ticket == 0 and report.layer("fc4").promised_speedup is None
    t = report.totals
    assert t["macs_dense"] == sum(r.macs_dense for r in report.layers)
    assert t["macs_ticket"] == sum(r.macs_ticket for r in report.layers)
    e = report.end_to_end
    for k in ("dense_ms", "compiled_ms", "speedup", "promised_speedup", "realised_savings",
              "max_rel_error"):
        assert e[k] is not None, k
    assert e["realised_savings"] == pytest.approx(e["speedup"] / e["promised_speedup"])
    assert e["max_rel_error"] <= report.meta["tolerance"]
    assert report.memory["method"] and report.memory["dense_bytes"] > 0
    assert report.memory["compiled_bytes"] > 0
    assert report.meta["device"] == "cpu" and report.meta["ticket_sparsity"] > 0

    d = report.to_dict()
    text = json.dumps(d)  # JSON-serialisable as is (no NaN/inf, no tensors)
    back = CompileReport.from_dict(json.loads(text))
    assert back.to_dict() == d
    path = report.save(tmp_path / "r.json")
    assert CompileReport.load(path).to_dict() == d
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file

    s = str(report)
    lines = s.splitlines()
    for name in ("fc1", "fc2", "fc3", "fc4", "total", "realised savings"):
        assert name in s
    header = lines[0]
    assert "sparsity" in header and "route" in header and "speed-up" in header
    assert len(lines[0]) == len(lines[1]) == len(lines[2])  # aligned columns
    with pytest.raises(ValueError, match="not a compile report"):
        CompileReport.from_dict({"format": "something else"})


def test_ticket_path_and_save_load(tmp_path):
    torch.manual_seed(0)
    model = MLP()
    ticket = _ticket(model, _masks(model, {}))
    ticket.save(tmp_path / "t")
    x = torch.randn(4, 37)
    compiled, _ = sl_compile(model, str(tmp_path / "t"), example_inputs=(x,), **FAST)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x), rtol=1e-4,
                                   atol=1e-5)


def test_bad_arguments_name_the_argument():
    torch.manual_seed(0)
    model = MLP()
    ticket = _ticket(model, _masks(model, {}))
    other = nn.Sequential(nn.Linear(37, 10))
    x = torch.randn(4, 37)
    with pytest.raises(ValueError, match="ticket"):
        sl_compile(other, ticket, example_inputs=x, **FAST)
    with pytest.raises(ValueError, match="example_inputs"):
        sl_compile(model, ticket, **FAST)
    with pytest.raises(TypeError, match="example_inputs"):
        sl_compile(model, ticket, example_inputs=[1, 2], **FAST)
    with pytest.raises(TypeError, match="example_inputs"):
        sl_compile(model, ticket, example_inputs="x", **FAST)
    with pytest.raises(ValueError, match="example_inputs"):
        sl_compile(model, ticket, example_inputs=torch.randn(4, 5), **FAST)
    with pytest.raises(TypeError, match="model"):
        sl_compile("model", ticket, example_inputs=x)
    with pytest.raises(TypeError, match="ticket"):
        sl_compile(model, {"fc1.weight": torch.ones(64, 37, dtype=torch.bool)},
                   example_inputs=x)
    with pytest.raises(ValueError, match="routes"):
        sl_compile(model, ticket, example_inputs=x, routes=["fast"])
    with pytest.raises(ValueError, match="routes"):
        sl_compile(model, ticket, example_inputs=x, routes={"fc1": "fast"})
    with pytest.raises(TypeError, match="routes"):
        sl_compile(model, ticket, example_inputs=x, routes=3)
    with pytest.raises(ValueError, match="backend"):
        sl_compile(model, ticket, example_inputs=x, backend="gpu")
    with pytest.raises(ValueError, match="device"):
        sl_compile(model, ticket, example_inputs=x, device="nodevice")
    # forcing a route that does not apply to a named layer is an error, not a silent no-op
    dense_ticket = _ticket(model, _masks(model, {"fc1": 0.0}))
    with pytest.raises(ValueError, match="fc1"):
        sl_compile(model, dense_ticket, example_inputs=x, routes={"fc1": "channel"}, **FAST)
    with pytest.raises(ValueError, match="fc1"):
        sl_compile(model, dense_ticket, example_inputs=x, routes={"fc1": "2:4"}, **FAST)


def test_inexact_route_is_rejected_and_compile_error(monkeypatch):
    """A route whose output is wrong is rejected per layer; a wrong compiled model raises."""
    import importlib

    # the module, even once ``sparselth.compile`` names the function
    C = importlib.import_module("sparselth.compile")

    torch.manual_seed(0)
    model = MLP()
    ticket = _ticket(model, _masks(model, {"fc2": 0.95}))
    x = torch.randn(4, 37)
    real = C._CSRLinear.forward

    def wrong(self, inp):
        return real(self, inp) * 1.01

    monkeypatch.setattr(C, "_nn_sparse", lambda: None)
    monkeypatch.setattr(C._CSRLinear, "forward", wrong)
    _, report = sl_compile(model, ticket, example_inputs=x, **FAST)
    assert all(r.route != "csr" for r in report.layers)
    assert "not exact" in report.layer("fc2").rejected["csr"]

    # a compiled model that differs end to end (here: a mutating example input) raises
    class Flaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.fc(x) + self.calls

    flaky = Flaky()
    t = Ticket.from_model(flaky, {"fc.weight": torch.ones(4, 4, dtype=torch.bool)})
    with pytest.raises(CompileError):
        sl_compile(flaky, t, example_inputs=torch.randn(2, 4), **FAST)


def test_layer_not_called_is_left_dense():
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.unused = nn.Linear(8, 8)

        def forward(self, x):
            return self.used(x)

    model = Partial()
    ticket = _ticket(model, _masks(model, {"used": 0.9, "unused": 0.9}))
    x = torch.randn(4, 8)
    compiled, report = sl_compile(model, ticket, example_inputs={"x": x}, **FAST)
    assert report.layer("unused").route == "dense"
    assert "not called" in report.layer("unused").note
    assert isinstance(compiled.unused, nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x), rtol=1e-4,
                                   atol=1e-5)


def test_block_route_on_block_structured_masks():
    pytest.importorskip("sparselth.nn.sparse")
    from sparselth.nn import sparse as nn_sparse

    if not hasattr(nn_sparse, "BlockSparseLinear"):
        pytest.skip("sparselth.nn.sparse has no BlockSparseLinear")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    masks = {}
    for name in ("0", "2"):
        w = model.get_submodule(name).weight
        tiles = torch.rand(w.shape[0] // 4, w.shape[1] // 4) < 0.25
        m = tiles.repeat_interleave(4, 0).repeat_interleave(4, 1)
        m &= torch.rand(w.shape) < 0.9  # not every entry of a kept block survives
        masks[f"{name}.weight"] = m
    ticket = _ticket(model, masks)
    x = torch.randn(6, 32)
    compiled, report = sl_compile(model, ticket, example_inputs=x, routes={"*": "block"}, **FAST)
    assert [r.route for r in report.layers] == ["block", "block"]
    assert "BlockSparseLinear" in report.layers[0].impl
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _reference(model, ticket, x), rtol=1e-4,
                                   atol=1e-5)
