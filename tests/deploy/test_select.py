"""Route selection: the chooser never takes a route slower than dense beyond the measured
noise, inexact candidates are rejected, layers see their real inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sparselth
from sparselth.deploy.select import (capture_calls, choose_route, default_tolerance, noise_ms,
                                     rel_error)

from ._tickets import FAST, MLP, make_masks, make_ticket


def test_choose_route_needs_a_gain_beyond_the_noise():
    iqr = {"dense": [0.9, 1.1], "csr": [0.5, 0.7], "channel": [0.2, 1.2]}
    # csr is 0.4 ms faster with boxes 0.2 wide: beyond the noise
    assert choose_route({"dense": 1.0, "csr": 0.6}, iqr, 0.05) == "csr"
    # channel is faster still, but its spread (1.0) swallows the gain
    assert noise_ms(iqr, "dense", "channel") == pytest.approx(0.6)
    assert choose_route({"dense": 1.0, "csr": 0.6, "channel": 0.5}, iqr, 0.05) == "csr"
    # a gain within the noise, or under min_gain, or a slower route: dense stays
    assert choose_route({"dense": 1.0, "csr": 0.85}, iqr, 0.05) == "dense"
    assert choose_route({"dense": 1.0, "csr": 0.97}, {}, 0.05) == "dense"
    assert choose_route({"dense": 1.0, "csr": 1.5}, {}, 0.0) == "dense"
    assert choose_route({"dense": 1.0}, {}, 0.05) == "dense"


def test_route_chosen_on_a_dense_layer_is_never_slower_than_dense_beyond_the_noise():
    """0% sparsity: no sparse route can do less work than dense, so dense must win unless a
    route measures faster beyond the noise the report states."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64))
    ticket = make_ticket(model, make_masks(model, {"0": 0.0, "2": 0.0}))
    _, report = sparselth.compile(model, ticket, example_inputs=torch.randn(32, 256),
                                  budget_s=0.05, e2e_budget_s=0.02)
    for rec in report.layers:
        assert "csr" in rec.latency_ms  # csr was a candidate and was timed
        assert rec.noise_ms is not None and rec.noise_ms >= 0
        dense = rec.latency_ms["dense"]
        assert rec.latency_ms[rec.route] <= dense
        if rec.route != "dense":
            assert rec.latency_ms[rec.route] < dense - rec.noise_ms
        assert rec.speedup >= 1.0


def test_chosen_routes_of_a_pruned_model_are_not_slower_than_dense():
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, {"fc1": 0.0, "fc2": 0.99, "fc3": 0.6,
                                                   "fc4": 1.0}, channel_layers=("fc3",)))
    _, report = sparselth.compile(model, ticket, example_inputs=torch.randn(16, 37), **FAST)
    for rec in report.layers:
        assert rec.latency_ms[rec.route] <= rec.latency_ms["dense"], rec
        assert rec.route == "dense" or rec.latency_ms[rec.route] < (
            rec.latency_ms["dense"] - rec.noise_ms)
        assert set(rec.latency_ms) == set(rec.latency_wall_ms) == set(rec.latency_cpu_ms)
    assert report.meta["clock"] == "cpu"  # one thread: CPU time is the headline clock


def test_an_inexact_candidate_is_rejected(monkeypatch):
    torch.manual_seed(0)
    model = MLP()
    ticket = make_ticket(model, make_masks(model, {"fc2": 0.95}))
    real = sparselth.nn.SparseLinear.forward
    monkeypatch.setattr(sparselth.nn.SparseLinear, "forward",
                        lambda self, x: real(self, x) * 1.01)
    _, report = sparselth.compile(model, ticket, example_inputs=torch.randn(4, 37), **FAST)
    assert all(r.route != "csr" for r in report.layers)
    assert "not exact" in report.layer("fc2").rejected["csr"]


def test_capture_calls_records_each_layers_first_input():
    model = MLP().eval()
    x = torch.randn(3, 37)
    captured = capture_calls(model, x, ["fc3", "fc1"])
    assert captured.order == ["fc1", "fc3"]
    (arg,), kwargs = captured.calls["fc1"]
    assert torch.equal(arg, x) and kwargs == {}
    with torch.no_grad():
        torch.testing.assert_close(captured.output, model(x))
    with pytest.raises(ValueError, match="example_inputs"):
        capture_calls(model, torch.randn(3, 5), ["fc1"])


def test_rel_error_and_tolerance():
    a = torch.tensor([1.0, -2.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(a + 0.02, a) == pytest.approx(0.01)
    assert rel_error((a,), (a, a)) == math.inf
    assert rel_error(torch.ones(3), torch.ones(2)) == math.inf
    assert rel_error(torch.tensor([math.nan]), torch.tensor([1.0])) == math.inf
    assert default_tolerance(torch.float64) < default_tolerance(torch.float32) <= 1e-4
    assert default_tolerance(torch.int64) == default_tolerance(torch.float32)
