"""sparselth.compile end to end: the compiled model equals the masked dense one for every
route on linear, conv and transposed-conv layers; arguments are checked."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sparselth
from sparselth import Ticket
from sparselth.deploy import ROUTES, CompileError

from ._tickets import FAST, MLP, ConvNet, assert_matches_ticket, make_masks, make_ticket

MLP_SPARSITIES = [
    {"fc1": 0.0, "fc2": 0.5, "fc3": 0.9, "fc4": 0.95},
    {"fc1": 1.0, "fc2": 0.97, "fc3": 0.0, "fc4": 1.0},
]


@pytest.mark.parametrize("sparsities", MLP_SPARSITIES)
@pytest.mark.parametrize("routes", [None, {"*": "csr"}, {"*": "channel"}, ["dense", "csr"]])
def test_mlp_compiled_equals_masked_dense(sparsities, routes):
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, sparsities, channel_layers=("fc2", "fc3")))
    x = torch.randn(7, 37)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes=routes, **FAST)
    assert_matches_ticket(compiled, model, ticket, x)
    # other inputs (another batch size) too: the routes do not depend on the example
    assert_matches_ticket(compiled, model, ticket, torch.randn(3, 37))
    if isinstance(routes, dict):
        for rec in report.layers:
            if rec.forced:
                assert rec.route == routes["*"]
        if routes["*"] == "csr":
            assert all(r.route == "csr" for r in report.layers)
    if isinstance(routes, list):
        assert {r.route for r in report.layers} <= set(routes)


@pytest.mark.parametrize("sparsities", [
    {"c1": 0.0, "c2": 0.8, "c3": 0.5, "t1": 0.9, "t2": 1.0, "fc": 0.3},
    {"c1": 1.0, "c2": 0.0, "c3": 0.95, "t1": 0.0, "t2": 0.6, "fc": 0.0},
])
@pytest.mark.parametrize("routes", [None, {"*": "csr"}, {"*": "channel"}])
def test_convnet_compiled_equals_masked_dense(sparsities, routes):
    torch.manual_seed(0)
    model = ConvNet()
    ticket = make_ticket(model, make_masks(model, sparsities, channel_layers=("c2", "t1", "fc")))
    x = torch.randn(2, 3, 11, 9)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes=routes, **FAST)
    assert_matches_ticket(compiled, model, ticket, x)
    assert [r.name for r in report.layers] == ["c1", "c2", "c3", "t1", "t2", "fc"]
    if routes == {"*": "csr"}:
        assert all(r.route == "csr" for r in report.layers), report.routes
    if routes == {"*": "channel"}:
        # channel-structured layers (convolutions and transposed ones) take the channel route
        assert report.layer("c2").route == "channel"
        assert report.layer("t1").route == "channel"
        assert type(compiled.t1) is sparselth.nn.ChannelPrunedConvTranspose2d
        assert report.layer("c3").route != "channel"  # groups > 1: not applicable
        assert "groups" in report.layer("c3").rejected["channel"]


@pytest.mark.parametrize("backend", [b for b in ("reference", "cpp") if b in sparselth.backends()])
def test_csr_route_on_each_cpu_backend(backend):
    torch.manual_seed(0)
    model = ConvNet()
    ticket = make_ticket(model, make_masks(model, {}))
    x = torch.randn(2, 3, 8, 8)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes={"*": "csr"},
                                         backend=backend, **FAST)
    assert report.meta["backend"] == backend
    assert all(compiled.get_submodule(r.name).backend == backend for r in report.layers)
    assert_matches_ticket(compiled, model, ticket, x)


def test_float64_model():
    torch.manual_seed(0)
    model = MLP().double()
    ticket = make_ticket(model, make_masks(model, {"fc2": 0.9}))
    x = torch.randn(5, 37, dtype=torch.float64)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes={"*": "csr"},
                                         **FAST)
    assert report.meta["dtype"] == "float64" and report.meta["tolerance"] <= 1e-9
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), copy.deepcopy(compiled)(x))
    assert_matches_ticket(compiled, model, ticket, x)


def test_model_is_left_untouched():
    torch.manual_seed(0)
    model = MLP()
    before = copy.deepcopy(model.state_dict())
    ticket = make_ticket(model, make_masks(model, {"fc2": 0.99, "fc4": 1.0}))
    sparselth.compile(model, ticket, example_inputs=torch.randn(16, 37), **FAST)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not sparselth.prune.is_masked(model)


def test_ticket_path_and_tuple_inputs(tmp_path):
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, {}))
    ticket.save(tmp_path / "t")
    x = torch.randn(4, 37)
    compiled, _ = sparselth.compile(model, str(tmp_path / "t"), example_inputs=(x,), **FAST)
    assert_matches_ticket(compiled, model, ticket, x)


def test_bad_arguments_name_the_argument():
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, {}))
    x = torch.randn(4, 37)
    cases = [
        (ValueError, "ticket", dict(model=nn.Sequential(nn.Linear(37, 10)))),
        (ValueError, "example_inputs", dict(example_inputs=None)),
        (TypeError, "example_inputs", dict(example_inputs=[1, 2])),
        (TypeError, "example_inputs", dict(example_inputs="x")),
        (ValueError, "example_inputs", dict(example_inputs=torch.randn(4, 5))),
        (TypeError, "model", dict(model="model")),
        (TypeError, "ticket", dict(ticket={"fc1.weight": torch.ones(64, 37, dtype=torch.bool)})),
        (ValueError, "routes", dict(routes=["fast"])),
        (ValueError, "routes", dict(routes={"fc1": "fast"})),
        (TypeError, "routes", dict(routes=3)),
        (ValueError, "backend", dict(backend="gpu")),
        (ValueError, "device", dict(device="nodevice")),
    ]
    for exc, word, change in cases:
        args = {"model": model, "ticket": ticket, "example_inputs": x, **change}
        with pytest.raises(exc, match=word):
            sparselth.compile(args.pop("model"), args.pop("ticket"), **args, **FAST)


@pytest.mark.parametrize("route", ["channel", "2:4"])
def test_forcing_an_inapplicable_route_on_a_named_layer_is_an_error(route):
    torch.manual_seed(0)
    model = MLP()
    dense_ticket = make_ticket(model, make_masks(model, {"fc1": 0.0}))
    with pytest.raises(ValueError, match="fc1"):
        sparselth.compile(model, dense_ticket, example_inputs=torch.randn(4, 37),
                          routes={"fc1": route}, **FAST)


def test_a_compiled_model_that_differs_raises_compile_error():
    class Flaky(nn.Module):  # a different output on every call
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.fc(x) + self.calls

    flaky = Flaky()
    t = Ticket.from_model(flaky, {"fc.weight": torch.ones(4, 4, dtype=torch.bool)})
    with pytest.raises(CompileError, match="relative error"):
        sparselth.compile(flaky, t, example_inputs=torch.randn(2, 4), **FAST)


def test_layer_not_called_is_left_dense():
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.unused = nn.Linear(8, 8)

        def forward(self, x):
            return self.used(x)

    model = Partial()
    ticket = make_ticket(model, make_masks(model, {"used": 0.9, "unused": 0.9}))
    x = torch.randn(4, 8)
    compiled, report = sparselth.compile(model, ticket, example_inputs={"x": x}, **FAST)
    assert report.layer("unused").route == "dense"
    assert "not called" in report.layer("unused").note
    assert isinstance(compiled.unused, nn.Linear)
    assert_matches_ticket(compiled, model, ticket, x)


def test_block_route_on_block_structured_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    masks = {}
    for name in ("0", "2"):
        w = model.get_submodule(name).weight
        tiles = torch.rand(w.shape[0] // 4, w.shape[1] // 4) < 0.25
        m = tiles.repeat_interleave(4, 0).repeat_interleave(4, 1)
        m &= torch.rand(w.shape) < 0.9  # not every entry of a kept block survives
        masks[f"{name}.weight"] = m
    ticket = make_ticket(model, masks)
    x = torch.randn(6, 32)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes={"*": "block"},
                                         **FAST)
    assert [r.route for r in report.layers] == ["block", "block"]
    assert "BlockSparseLinear" in report.layers[0].impl
    assert_matches_ticket(compiled, model, ticket, x)
    assert set(report.layers[0].latency_ms) <= set(ROUTES)


def test_relu_after_a_sparse_linear_is_fused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(37, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(inplace=True),
                          nn.Linear(48, 10), nn.ReLU())
    masks = {f"{i}.weight": torch.rand_like(model[i].weight) < 0.2 for i in (0, 2, 4)}
    ticket = make_ticket(model, masks)
    x = torch.randn(7, 37)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes={"*": "csr"},
                                         **FAST)
    assert report.meta["fused_relu"] == ["0", "2", "4"]
    assert all(isinstance(compiled[i], nn.Identity) for i in (1, 3, 5))
    assert all(compiled[i].relu for i in (0, 2, 4))
    assert_matches_ticket(compiled, model, ticket, x)
    assert_matches_ticket(compiled, model, ticket, torch.randn(1, 37))
    # a dense layer keeps its ReLU module
    compiled, report = sparselth.compile(model, ticket, example_inputs=x, routes={"*": "dense"},
                                         **FAST)
    assert report.meta["fused_relu"] == [] and isinstance(compiled[1], nn.ReLU)
