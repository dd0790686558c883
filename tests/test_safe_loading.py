"""``torch.load(..., weights_only=True)`` rebuilds saved sparselth objects without pickle's
arbitrary code: a CSR alone, inside containers, with its cached transpose."""

from __future__ import annotations

import io

import torch

import sparselth
from sparselth import CSR


def _round_trip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_csr_loads_with_weights_only():
    A = CSR.from_dense(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    B = _round_trip(A)
    assert isinstance(B, CSR) and B.shape == (2, 3)
    assert torch.equal(B.to_dense(), A.to_dense())
    P = CSR.from_edge_index(torch.tensor([[0, 1, 1], [1, 0, 2]]), num_nodes=3)  # binary
    P.t()  # a cached transpose travels along
    got = _round_trip({"adj": P, "list": [A, P], "w": torch.ones(2)})
    assert torch.equal(got["adj"].to_dense(), P.to_dense())
    assert torch.equal(got["adj"].t().to_dense(), P.to_dense().T)
    assert torch.equal(got["list"][0].to_dense(), A.to_dense())
    assert CSR in torch.serialization.get_safe_globals()
    assert sparselth.CSR is CSR
