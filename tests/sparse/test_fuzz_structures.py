"""Fuzzed structures at the trust boundary: random CSRs, compressed embedding tables and state
dicts, valid or with one index changed to an arbitrary value. Every one is either refused with a
``ValueError``/``TypeError`` or accepted and then equal to the dense matrix its raw parts
describe, on every CPU kernel backend; none may crash the process (the kernels read the
structure unchecked, so this holds only because every way in checks it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.nn import CompressedEmbedding, SparseLinear
from sparselth.ops import embedding_lookup, spmm
from sparselth.sparse.embedding_formats import FORMATS, compress_embedding, unpack_bits
from sparselth.testing import test_backends

BACKENDS = [b for b in test_backends() if b != "triton"]   # the interpreter is too slow here
FUZZ = settings(max_examples=50, deadline=None)
REFUSED = (ValueError, TypeError)


def _mask(data, rows: int, cols: int) -> torch.Tensor:
    bits = data.draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    return torch.tensor(bits, dtype=torch.bool).reshape(rows, cols)


def _corrupt(data, parts: dict, names, low: int, high: int) -> dict:
    """``parts`` with, maybe, one entry of one of the tensors ``names`` set to a value drawn
    from ``[low, high]`` (clamped to the tensor's dtype)."""
    names = [n for n in names if n in parts and parts[n].numel()]
    if not names or not data.draw(st.booleans(), label="corrupt"):
        return parts
    name = data.draw(st.sampled_from(names), label="tensor")
    t = parts[name].clone()
    flat = t.view(-1)
    pos = data.draw(st.integers(0, flat.numel() - 1), label="position")
    info = torch.iinfo(t.dtype)
    flat[pos] = max(info.min, min(info.max, data.draw(st.integers(low, high), label="value")))
    return {**parts, name: t}


def _dense_from_csr_parts(rowptr, col, val, shape) -> torch.Tensor:
    """The matrix an accepted ``(rowptr, col, val)`` describes, entry by entry in Python."""
    out = torch.zeros(shape, dtype=torch.float64)
    rp, c = rowptr.tolist(), col.tolist()
    v = [1.0] * len(c) if val is None else val.double().tolist()
    for i in range(shape[0]):
        for e in range(rp[i], rp[i + 1]):
            out[i, c[e]] += v[e]
    return out


# --------------------------------------------------------------------------- CSR


@FUZZ
@given(data=st.data(), rows=st.integers(0, 6), cols=st.integers(0, 6),
       i64=st.booleans(), values=st.booleans())
def test_random_csr_is_refused_or_equals_its_parts(data, rows, cols, i64, values):
    idx = torch.int64 if i64 else torch.int32
    A0 = CSR.from_dense(_mask(data, rows, cols).double(), keep_values=values)
    parts = {"rowptr": A0.rowptr.to(idx), "col": A0.col.to(idx)}
    if values:
        parts["val"] = torch.arange(1, A0.nnz + 1, dtype=torch.float64)
    parts = _corrupt(data, parts, ("rowptr", "col"), -3, max(rows, cols, A0.nnz) + 3)
    try:
        A = CSR(parts["rowptr"], parts["col"], parts.get("val"), (rows, cols))
    except REFUSED:
        event("refused")
        return
    dense = _dense_from_csr_parts(A.rowptr, A.col, A.val, (rows, cols))
    torch.testing.assert_close(A.to_dense(torch.float64), dense)
    torch.testing.assert_close(A.t().to_dense(torch.float64), dense.t())
    X = torch.randn(cols, 3, dtype=torch.float64)
    for backend in BACKENDS:
        torch.testing.assert_close(spmm(A.to(dtype=torch.float64) if values else
                                        A.with_values(torch.ones(A.nnz, dtype=torch.float64)),
                                        X, backend=backend), dense @ X)


@FUZZ
@given(data=st.data(), rows=st.integers(1, 5), cols=st.integers(1, 5), e=st.integers(0, 12))
def test_from_edge_index_refuses_out_of_range_indices(data, rows, cols, e):
    r = data.draw(st.lists(st.integers(-2, rows + 2), min_size=e, max_size=e))
    c = data.draw(st.lists(st.integers(-2, cols + 2), min_size=e, max_size=e))
    ei = torch.tensor([r, c], dtype=torch.long).reshape(2, e)
    try:
        A = CSR.from_edge_index(ei, num_nodes=rows, num_cols=cols)
    except REFUSED:
        assert e and (min(r + c) < 0 or max(r) >= rows or max(c) >= cols)
        return
    dense = torch.zeros(rows, cols, dtype=torch.float64)
    for i, j in zip(r, c):
        dense[i, j] += 1
    torch.testing.assert_close(A.to_dense(torch.float64), dense)


# --------------------------------------------------------------------------- embeddings


def _dense_from_format_parts(kind: str, parts: dict, shape) -> torch.Tensor:
    """The table an accepted format's raw parts describe (unquantised), in Python."""
    R, d = shape
    out = torch.zeros(R, d, dtype=torch.float64)
    if kind == "row_compact":
        for i, r in enumerate(parts["remap"].tolist()):
            if r >= 0:
                out[i] = parts["table"][r].double()
        return out
    rp, vals = parts["rowptr"].tolist(), parts["values"].double().tolist()
    if kind == "csr":
        cols = parts["col"].tolist()
    else:
        keep = unpack_bits(parts["bits"], d)
        cols = [f for i in range(R) for f in keep[i].nonzero().view(-1).tolist()]
    for i in range(R):
        for e in range(rp[i], rp[i + 1]):
            out[i, cols[e]] = vals[e]
    return out


_INDEX_NAMES = ("remap", "rowptr", "col", "bits")


@FUZZ
@given(data=st.data(), kind=st.sampled_from(list(FORMATS)), R=st.integers(1, 6),
       d=st.integers(1, 10))
def test_random_embedding_table_is_refused_or_equals_its_parts(data, kind, R, d):
    W = torch.randn(R, d, generator=torch.Generator().manual_seed(R * 16 + d))
    fmt = compress_embedding(W, _mask(data, R, d), kind)
    parts = _corrupt(data, fmt.tensors(), _INDEX_NAMES, -4, max(d, R, fmt.nnz) + 300)
    try:
        table = FORMATS[kind]._from_parts((R, d), parts)
    except REFUSED:
        event("refused")
        return
    dense = _dense_from_format_parts(kind, parts, (R, d))
    torch.testing.assert_close(table.to_dense().double(), dense)
    ids = torch.randint(0, R, (9,), generator=torch.Generator().manual_seed(d))
    for backend in BACKENDS:
        torch.testing.assert_close(embedding_lookup(table, ids, backend=backend).double(),
                                   dense[ids])


# --------------------------------------------------------------------------- state dicts


@FUZZ
@given(data=st.data(), kind=st.sampled_from(list(FORMATS)), R=st.integers(1, 6),
       d=st.integers(1, 10), backend=st.sampled_from(BACKENDS))
def test_random_embedding_state_dict_is_refused_or_loaded_exactly(data, kind, R, d, backend):
    g = torch.Generator().manual_seed(R * 16 + d)
    W = torch.randn(R, d, generator=g)
    emb = CompressedEmbedding.from_masked(W, torch.rand(R, d, generator=g) < 0.5, kind,
                                          backend=backend)
    other = CompressedEmbedding.from_masked(2 * W, _mask(data, R, d), kind)
    sd = _corrupt(data, dict(other.state_dict()), _INDEX_NAMES, -4,
                  max(d, R, other.storage.nnz) + 300)
    ids = torch.arange(R)
    before = emb(ids)
    try:
        emb.load_state_dict(sd)
    except REFUSED:
        event("refused")
        assert torch.equal(emb(ids), before)      # nothing was copied
        return
    dense = _dense_from_format_parts(kind, sd, (R, d))
    torch.testing.assert_close(emb(ids).double(), dense)


@FUZZ
@given(data=st.data(), out_f=st.integers(1, 5), in_f=st.integers(1, 6),
       backend=st.sampled_from(BACKENDS), grad=st.booleans())
def test_random_sparse_linear_state_dict_is_refused_or_loaded_exactly(data, out_f, in_f,
                                                                      backend, grad):
    lin = torch.nn.Linear(in_f, out_f)
    layer = SparseLinear.from_dense(lin, torch.ones(out_f, in_f, dtype=torch.bool),
                                    backend=backend)
    other = SparseLinear.from_dense(lin, _mask(data, out_f, in_f))
    sd = _corrupt(data, dict(other.state_dict()), ("rowptr", "col"), -3,
                  max(in_f, out_f, other.nnz) + 3)
    x = torch.randn(2, in_f)
    with torch.no_grad():
        before = layer(x)
    try:
        layer.load_state_dict(sd)
    except REFUSED:
        event("refused")
        with torch.no_grad():
            assert torch.equal(layer(x), before)
        return
    W = _dense_from_csr_parts(sd["rowptr"], sd["col"], sd["values"], (out_f, in_f))
    with torch.set_grad_enabled(grad):
        y = layer(x)
    torch.testing.assert_close(y.double(), F.linear(x.double(), W, sd["bias"].double()),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rowptr", "col"])
def test_structure_changed_in_place_is_checked_before_the_kernel(name):
    """Buffers edited in place (not through load_state_dict) are checked again too."""
    layer = SparseLinear.from_dense(torch.nn.Linear(4, 3), torch.ones(3, 4, dtype=torch.bool),
                                    backend=BACKENDS[-1])
    layer(torch.randn(1, 4))
    with torch.no_grad():
        getattr(layer, name)[1] = 10**6
    with torch.no_grad(), pytest.raises(ValueError, match=name):
        layer(torch.randn(1, 4))
