"""The route registry: built-in routes are exact on their own, a registered route class is
considered by compile, registration errors are clear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparselth
from sparselth.deploy import ROUTES, Route, register_route, route_names, unregister_route
from sparselth.deploy.routes import layer_types, parse_routes
from sparselth.sparse.weights import semi_structured_available
from sparselth.testing import tolerances

from ._tickets import FAST, MLP, assert_matches_ticket, make_masks, make_ticket

TOL32 = tolerances(torch.float32)


def test_builtin_routes_in_order():
    assert route_names() == ("dense", "csr", "channel", "block", "2:4")
    assert all(isinstance(r, Route) for r in ROUTES.values())
    assert set(layer_types()) >= {nn.Linear, nn.Conv2d, nn.ConvTranspose2d}


def _channel_mask(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) < 0.7
    m[::2] = False
    m[:, ::3] = False
    return m


LAYERS = {
    "linear": (lambda: nn.Linear(12, 10), (5, 12)),
    "conv": (lambda: nn.Conv2d(6, 9, 3, stride=2, padding=1), (2, 6, 7, 8)),
    "deconv": (lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
               (2, 6, 5, 4)),
}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("route", ["dense", "csr", "channel"])
def test_each_route_equals_the_masked_layer(route, layer):
    torch.manual_seed(0)
    make, shape = LAYERS[layer]
    module = make()
    mask = _channel_mask(module.weight.shape)
    with torch.no_grad():
        module.weight.mul_(mask)  # routes get the layer with its mask folded in
    x = torch.randn(*shape)
    r = ROUTES[route]
    assert r.applies(module, mask)
    for options in r.variants(module, mask):
        built = r.build(module, mask, "auto", **options)
        torch.testing.assert_close(built(x), module(x), **TOL32)
        assert r.describe(built, options).startswith("sparselth.nn." if route != "dense" else "")


def test_routes_say_why_they_do_not_apply():
    lin = nn.Linear(16, 8)
    full = torch.ones(8, 16, dtype=torch.bool)
    assert ROUTES["channel"].unfit(lin, full, torch.device("cpu")) == "no whole channel is pruned"
    grouped = nn.Conv2d(4, 4, 3, groups=2)
    assert "groups" in ROUTES["channel"].unfit(grouped, _channel_mask(grouped.weight.shape),
                                               torch.device("cpu"))
    assert "half" in ROUTES["block"].unfit(lin, full, torch.device("cpu"))
    assert not ROUTES["block"].applies(nn.Conv2d(4, 4, 3), torch.ones(4, 4, 3, 3), "cpu")
    two_four = torch.tensor([1, 1, 0, 0], dtype=torch.bool).repeat(8, 4)
    assert "CUDA" in ROUTES["2:4"].unfit(lin, two_four, torch.device("cpu"))


def test_parse_routes():
    assert parse_routes(None) == (set(route_names()), {})
    assert parse_routes("csr") == ({"csr", "dense"}, {})
    assert parse_routes({"fc*": "channel"}) == (set(route_names()), {"fc*": "channel"})
    with pytest.raises(ValueError, match="routes"):
        parse_routes(["fast"])


class Negated(nn.Module):
    """``-(-layer)``: exact, and recognisable in the compiled model."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return -(-self.layer(x))


@pytest.fixture
def negated_route():
    @register_route
    class NegatedRoute(Route):
        name = "negated"
        layer_types = (nn.Linear,)

        def build(self, module, mask, backend="auto", **options):
            return Negated(module)

    yield NegatedRoute
    unregister_route("negated")


def test_a_registered_route_is_considered_by_compile(negated_route):
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, {}))
    x = torch.randn(6, 37)
    _, report = sparselth.compile(model, ticket, example_inputs=x, **FAST)
    assert all("negated" in rec.latency_ms for rec in report.layers)  # verified and timed
    compiled, report = sparselth.compile(model, ticket, example_inputs=x,
                                         routes={"*": "negated"}, **FAST)
    assert report.routes == {n: "negated" for n in ("fc1", "fc2", "fc3", "fc4")}
    assert isinstance(compiled.fc2, Negated)
    assert "Negated" in report.layer("fc2").impl and "negated" in str(report)
    assert_matches_ticket(compiled, model, ticket, x)
    compiled, report = sparselth.compile(model, ticket, example_inputs=x,
                                         routes=["dense", "negated"], **FAST)
    assert set(report.routes.values()) <= {"dense", "negated"}


def test_an_inexact_registered_route_is_rejected(negated_route):
    class Off(Route):
        name = "off"

        def build(self, module, mask, backend="auto", **options):
            return nn.Sequential(module, nn.Hardtanh(-1e-3, 1e-3))

    register_route(Off)
    try:
        torch.manual_seed(0)
        model = MLP()
        ticket = make_ticket(model, make_masks(model, {}))
        compiled, report = sparselth.compile(model, ticket, example_inputs=torch.randn(4, 37),
                                             routes=["off"], **FAST)
        assert all(r.route == "dense" for r in report.layers)
        assert "not exact" in report.layer("fc1").rejected["off"]
    finally:
        unregister_route("off")


def test_registration_errors(negated_route):
    with pytest.raises(ValueError, match="already registered"):
        register_route(negated_route)
    register_route(negated_route, replace=True)

    class Nameless(Route):
        pass

    with pytest.raises(ValueError, match="name"):
        register_route(Nameless)
    with pytest.raises(TypeError, match="Route subclass"):
        register_route(int)
    with pytest.raises(ValueError, match="baseline"):
        unregister_route("dense")


@pytest.mark.skipif(not semi_structured_available(),
                    reason="2:4 semi-structured sparsity needs an NVIDIA GPU with compute "
                           "capability >= 8.0")
def test_two_four_route_on_a_supported_gpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)).half()
    masks = {f"{name}.weight": torch.tensor([True, False, True, False]).repeat(
        model.get_submodule(name).weight.shape[0], model.get_submodule(name).in_features // 4)
        for name in ("0", "2")}
    ticket = make_ticket(model, masks)
    x = torch.randn(64, 64, dtype=torch.half, device="cuda")
    compiled, report = sparselth.compile(model, ticket, device="cuda", example_inputs=x,
                                         routes={"*": "2:4"}, **FAST)
    assert report.routes == {"0": "2:4", "2": "2:4"}
    assert report.meta["clock"] == "wall"  # GPU work: CPU time says nothing
    assert isinstance(compiled.get_submodule("0"), sparselth.nn.SemiStructuredLinear)
