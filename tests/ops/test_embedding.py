"""Embedding ops on every backend against the pure-PyTorch references (and torch's own
F.embedding / F.embedding_bag as independent oracles): lookups from every format, bags,
the masked training lookup and its dense and sparse gradients, argument checks, torch.compile,
and the CUDA kernels on a GPU."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from sparselth.ops import embedding as E
from sparselth.ops import embedding_bag, embedding_lookup, masked_embedding
from sparselth.sparse.embedding_formats import FORMATS, compress_embedding
from sparselth.testing import (DTYPES, INDEX_DTYPES, requires_kernel, skip_if_slow,
                               test_backends, tolerances)

BACKENDS = test_backends()
DIMS = [1, 7, 8, 16, 17, 33, 64]  # lane widths 16 (float) / 8 (double) and their remainders


def make(R, d, density=0.4, dtype=torch.float32, seed=0):
    """A table with all-pruned rows (2, 5), an all-kept row (1) and random rows."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(R, d, generator=g, dtype=torch.float64).to(dtype)
    M = torch.rand(R, d, generator=g) < density
    M[1::7] = True
    M[2::5] = False
    return W, M


def ids_for(R, n, dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, R, (n,), generator=g)
    ids[:4] = torch.tensor([2, 1, 2, 5]) % R  # repeated, all-pruned and all-kept rows
    return ids.to(dtype)


def tables(W, M, quantize=None):
    out = {fmt: compress_embedding(W, M, fmt, quantize) for fmt in FORMATS}
    out["dense"] = W * M
    return out


# --------------------------------------------------------------------------- lookups


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_golden(backend):
    W = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    M = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    ids = torch.tensor([[2, 0], [1, 2]])
    want = [[[7.0, 8.0, 9.0], [1.0, 0.0, 3.0]], [[0.0, 0.0, 0.0], [7.0, 8.0, 9.0]]]
    for t in tables(W, M).values():
        assert embedding_lookup(t, ids, backend=backend).tolist() == want
    assert masked_embedding(W, M, ids, backend=backend).tolist() == want
    bag = embedding_bag(compress_embedding(W, M, "bitmask"), ids.reshape(-1),
                        torch.tensor([0, 2, 2]), mode="sum", backend=backend)
    assert bag.tolist() == [[8.0, 8.0, 12.0], [0.0, 0.0, 0.0], [7.0, 8.0, 9.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("id_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", DIMS)
def test_lookup_every_format_and_backend(d, dtype, id_dtype, quantize, backend):
    R = 23
    W, M = make(R, d, dtype=dtype, seed=d)
    ids = ids_for(R, 19, id_dtype, seed=d).reshape(-1)
    skip_if_slow(backend, ids.numel() * d)
    for name, t in tables(W, M, quantize).items():
        dense = t if name == "dense" else t.to_dense()
        if quantize is None:
            assert torch.equal(dense, W * M)
        got = embedding_lookup(t, ids, backend=backend)
        assert got.dtype == dtype
        assert torch.equal(got, dense[ids.long()]), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_lookup_id_shapes_and_empty(backend):
    W, M = make(10, 6)
    for t in tables(W, M).values():
        for shape in [(0,), (3, 0), (4,), (2, 3), (1, 2, 2)]:
            ids = torch.randint(0, 10, shape)
            out = embedding_lookup(t, ids, backend=backend)
            assert out.shape == shape + (6,)
            assert torch.equal(out, (W * M)[ids])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_lookup_matches_torch_embedding_on_a_big_batch(backend):
    W, M = make(300, 40, density=0.2, seed=4)
    ids = torch.randint(0, 300, (5000,))
    want = F.embedding(ids, W * M)
    for t in tables(W, M).values():
        assert torch.equal(embedding_lookup(t, ids, backend=backend), want)


def test_noncontiguous_ids_and_int8_ids_rejected():
    W, M = make(12, 5)
    ids = torch.randint(0, 12, (6, 4)).t()
    for t in tables(W, M).values():
        assert torch.equal(embedding_lookup(t, ids), (W * M)[ids])
        with pytest.raises(TypeError, match="embedding_lookup: ids must be int32 or int64"):
            embedding_lookup(t, ids.to(torch.int16))
        with pytest.raises(TypeError, match="embedding_lookup: ids must be a torch.Tensor"):
            embedding_lookup(t, [1, 2])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [-1, 12, 1000])
def test_out_of_range_ids_raise_value_error(bad, backend):
    W, M = make(12, 5)
    ids = torch.tensor([0, bad, 3])
    for t in tables(W, M).values():
        with pytest.raises(ValueError, match="embedding_lookup: ids must be in \\[0, 12\\)"):
            embedding_lookup(t, ids, backend=backend)
    with pytest.raises(ValueError, match="masked_embedding: ids"):
        masked_embedding(W, M, ids, backend=backend)
    with pytest.raises(ValueError, match="embedding_bag: ids"):
        embedding_bag(compress_embedding(W, M), ids, torch.tensor([0]), backend=backend)


@requires_kernel("embedding_csr", "cpu")
def test_cpp_kernels_check_ids_themselves():
    W, M = make(12, 5)
    t = compress_embedding(W, M, "csr")
    with pytest.raises(ValueError, match="ids must be in"):
        torch.ops.sparselth.embedding_csr_kernel(t.rowptr, t.col, t.values, None,
                                                  torch.tensor([12]), None, 0, 5)
    with pytest.raises(ValueError, match="ids must be in"):
        torch.ops.sparselth.embedding_rows_kernel(W, None, None, None, torch.tensor([-1]), None, 0)
    with pytest.raises(ValueError, match="bag_ptr"):
        torch.ops.sparselth.embedding_rows_kernel(W, None, None, None, torch.tensor([1, 2]),
                                                  torch.tensor([0, 3]), 0)


@requires_kernel("embedding_backward", "cpu")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_kernels_against_references(dtype):
    W, M = make(30, 17, dtype=dtype)
    ids = ids_for(30, 40)
    g = torch.randn(40, 17, dtype=dtype)
    for mask in (M, M.to(dtype)):
        for i in (ids, ids.int()):
            want = E.embedding_sparse_grad_reference(g, mask, i)
            assert torch.equal(want, g * M[ids])
            assert torch.equal(torch.ops.sparselth.embedding_sparse_grad_kernel(g, mask, i), want)
            torch.testing.assert_close(
                torch.ops.sparselth.embedding_backward_kernel(g, mask, i, 30),
                E.embedding_backward_reference(g, mask, i, 30), **tolerances(dtype))
    with pytest.raises(ValueError, match="ids must be in"):
        torch.ops.sparselth.embedding_sparse_grad_kernel(g[:1], M, torch.tensor([30]))


def test_backend_errors():
    W, M = make(6, 4)
    t = compress_embedding(W, M)
    with pytest.raises(ValueError, match="backend"):
        embedding_lookup(t, torch.tensor([1]), backend="nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            embedding_lookup(t, torch.tensor([1]), backend="cuda")
    with pytest.raises(TypeError, match="embedding_lookup: weight"):
        embedding_lookup("table", torch.tensor([1]))


# --------------------------------------------------------------------------- bags


def bags_oracle(W, M, ids, offsets, mode, include_last=False):
    return F.embedding_bag(ids.long(), (W * M).double(), offsets.long(), mode=mode,
                           include_last_offset=include_last)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 9, 33])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_bags_every_format_and_backend(d, dtype, mode, quantize, backend):
    R = 17
    W, M = make(R, d, dtype=dtype, seed=2 * d)
    ids = ids_for(R, 21, seed=d)
    skip_if_slow(backend, ids.numel() * d)
    offsets = torch.tensor([0, 0, 1, 5, 5, 12, 21])  # empty bags first, middle and last
    for name, t in tables(W, M, quantize).items():
        dense = t if name == "dense" else t.to_dense()
        want = F.embedding_bag(ids, dense.double(), offsets, mode=mode).to(dtype)
        got = embedding_bag(t, ids, offsets, mode=mode, backend=backend)
        assert got.shape == (7, d) and got.dtype == dtype
        torch.testing.assert_close(got, want, **tolerances(dtype))
        assert (got[[0, 3, 6]] == 0).all()  # empty bags
        # include_last_offset and 2-D ids agree with offsets
        t_ids = ids[:20].reshape(4, 5)
        a = embedding_bag(t, t_ids, mode=mode, backend=backend)
        c = embedding_bag(t, t_ids.reshape(-1), torch.arange(0, 21, 5), mode=mode,
                          include_last_offset=True, backend=backend)
        torch.testing.assert_close(a, c, **tolerances(dtype))


def test_bag_argument_errors():
    W, M = make(8, 3)
    t = compress_embedding(W, M)
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="embedding_bag: mode"):
        embedding_bag(t, ids, torch.tensor([0]), mode="max")
    with pytest.raises(ValueError, match="embedding_bag: offsets is required"):
        embedding_bag(t, ids)
    with pytest.raises(ValueError, match="embedding_bag: offsets must start at 0"):
        embedding_bag(t, ids, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="embedding_bag: offsets must start at 0"):
        embedding_bag(t, ids, torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="embedding_bag: offsets must start at 0"):
        embedding_bag(t, ids, torch.tensor([0, 2]), include_last_offset=True)
    with pytest.raises(ValueError, match="embedding_bag: offsets must be None"):
        embedding_bag(t, ids.reshape(1, 3), torch.tensor([0]))
    with pytest.raises(TypeError, match="embedding_bag: offsets must be int32"):
        embedding_bag(t, ids, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="embedding_bag: mask applies to a dense weight"):
        embedding_bag(t, ids, torch.tensor([0]), mask=M)


# --------------------------------------------------------------------------- training lookup


def _grad_oracle(W, M, ids, g):
    return torch.zeros_like(W).index_add_(0, ids.long().reshape(-1), g.reshape(-1, W.shape[1])) * M


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("mask_kind", ["bool", "float", None])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 33])
def test_masked_embedding_forward_backward(d, dtype, mask_kind, sparse, backend):
    R = 15
    W, Mb = make(R, d, dtype=dtype, seed=d)
    M = {"bool": Mb, "float": Mb.to(dtype), None: None}[mask_kind]
    Mref = Mb if mask_kind is not None else torch.ones_like(Mb)
    ids = ids_for(R, 12, seed=d).reshape(3, 4)  # repeated ids accumulate
    skip_if_slow(backend, ids.numel() * d)
    g = torch.randn(3, 4, d, dtype=dtype)
    w = W.clone().requires_grad_()
    out = masked_embedding(w, M, ids, sparse_grad=sparse, backend=backend)
    assert torch.equal(out.detach(), (W * Mref)[ids])
    out.backward(g)
    assert w.grad.is_sparse == sparse
    got = w.grad.to_dense() if sparse else w.grad
    torch.testing.assert_close(got, _grad_oracle(W, Mref, ids, g), **tolerances(dtype))
    if sparse:
        assert w.grad._nnz() == ids.numel()  # O(batch): one row per looked-up id


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_embedding_padding_idx_and_no_grad_path(backend):
    W, M = make(9, 4)
    ids = torch.tensor([0, 3, 3, 8, 0])
    w = W.clone().requires_grad_()
    masked_embedding(w, M, ids, padding_idx=3, backend=backend).sum().backward()
    assert (w.grad[3] == 0).all()
    assert torch.equal(w.grad[0], 2 * M[0].float())
    with torch.no_grad():
        out = masked_embedding(w, M, ids, backend=backend)
    assert not out.requires_grad and torch.equal(out, (W * M)[ids])
    with pytest.raises(ValueError, match="padding_idx"):
        masked_embedding(W, M, ids, padding_idx=9)


def test_masked_embedding_argument_errors():
    W, M = make(9, 4)
    ids = torch.tensor([1])
    with pytest.raises(ValueError, match="masked_embedding: mask must have weight's shape"):
        masked_embedding(W, M[:, :2], ids)
    with pytest.raises(TypeError, match="masked_embedding: mask must be bool or weight's dtype"):
        masked_embedding(W, M.double(), ids)
    with pytest.raises(ValueError, match="masked_embedding: weight must be 2-D"):
        masked_embedding(W[0], None, ids)
    with pytest.raises(TypeError, match="masked_embedding: weight must be float"):
        masked_embedding(W.long(), None, ids)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bag_gradient_of_a_masked_weight(mode, sparse, backend):
    W, M = make(11, 6, dtype=torch.float64, seed=5)
    ids = ids_for(11, 14)
    offsets = torch.tensor([0, 3, 3, 10])
    g = torch.randn(4, 6, dtype=torch.float64)
    ref_w = W.clone().requires_grad_()
    F.embedding_bag(ids, ref_w * M, offsets, mode=mode).backward(g)
    w = W.clone().requires_grad_()
    out = embedding_bag(w, ids, offsets, mode=mode, mask=M, sparse_grad=sparse, backend=backend)
    torch.testing.assert_close(out.detach(), F.embedding_bag(ids, W * M, offsets, mode=mode))
    out.backward(g)
    got = w.grad.to_dense() if sparse else w.grad
    torch.testing.assert_close(got, ref_w.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    W, M = make(6, 3, dtype=torch.float64, seed=7)
    ids = torch.tensor([[0, 5, 1], [5, 5, 4]])
    offsets = torch.tensor([0, 2, 2, 5])
    w = W.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: masked_embedding(x, M, ids, backend=backend), (w,))
    assert torch.autograd.gradcheck(
        lambda x: embedding_bag(x, ids.reshape(-1), offsets, mode="mean", mask=M, backend=backend),
        (w,))
    assert torch.autograd.gradcheck(lambda x: embedding_lookup(x, ids, backend=backend), (w,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sparse", [False, True])
def test_repeated_ids_accumulate_in_a_training_step(sparse, backend):
    w = torch.zeros(4, 2, requires_grad=True)
    M = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 0]], dtype=torch.bool)
    opt = torch.optim.SGD([w], lr=1.0)
    masked_embedding(w, M, torch.tensor([1, 1, 1, 3]), sparse_grad=sparse,
                     backend=backend).sum().backward()
    opt.step()
    assert w.detach().tolist() == [[0, 0], [-3, 0], [0, 0], [0, 0]]


# --------------------------------------------------------------------------- custom ops, compile


def test_torch_compile_fullgraph_matches_eager():
    W, M = make(14, 9)
    ids = ids_for(14, 10)
    t = compress_embedding(W, M, "bitmask")
    torch._dynamo.reset()
    f = torch.compile(lambda i: embedding_lookup(t, i), fullgraph=True)
    assert torch.equal(f(ids), (W * M)[ids])
    w = W.clone().requires_grad_()
    step = torch.compile(lambda x, i: masked_embedding(x, M, i).square().sum(), fullgraph=True)
    step(w, ids).backward()
    ref = W.clone().requires_grad_()
    masked_embedding(ref, M, ids, backend="reference").square().sum().backward()
    torch.testing.assert_close(w.grad, ref.grad)


# --------------------------------------------------------------------------- fuzz


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@given(R=st.integers(1, 30), d=st.integers(1, 40), density=st.floats(0, 1),
       n=st.integers(0, 40), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from(DTYPES), id_dtype=st.sampled_from(INDEX_DTYPES),
       fmt=st.sampled_from(list(FORMATS)), quantize=st.sampled_from([None, "int8"]),
       mode=st.sampled_from(["sum", "mean"]))
def test_fuzz_against_reference(backend, R, d, density, n, seed, dtype, id_dtype, fmt, quantize,
                                mode):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(R, d, generator=g, dtype=torch.float64).to(dtype)
    M = torch.rand(R, d, generator=g) < density
    M &= torch.rand(R, 1, generator=g) < 0.8
    ids = torch.randint(0, R, (n,), generator=g).to(id_dtype)
    cuts = torch.randint(0, n + 1, (4,), generator=g).sort().values
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), cuts])
    t = compress_embedding(W, M, fmt, quantize)
    dense = t.to_dense()
    want_bag = F.embedding_bag(ids.long(), dense.double(), offsets, mode=mode).to(dtype)
    assert torch.equal(embedding_lookup(t, ids, backend=backend), dense[ids.long()])
    torch.testing.assert_close(embedding_bag(t, ids, offsets, mode=mode, backend=backend),
                               want_bag, **tolerances(dtype))
    assert torch.equal(masked_embedding(W, M, ids, backend=backend), (W * M)[ids.long()])


# --------------------------------------------------------------------------- CUDA kernels


@requires_kernel("embedding_rows", "cuda")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 31, 32, 33, 64, 130])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_cuda_kernels_against_reference(d, dtype, quantize):
    R = 300
    W, M = make(R, d, dtype=dtype, seed=d)
    ids = ids_for(R, 257, seed=d)
    offsets = torch.tensor([0, 0, 3, 100, 100, 257])
    for name, t in tables(W, M, quantize).items():
        dense = t if name == "dense" else t.to_dense()
        tc = t.to("cuda")
        for id_dtype in INDEX_DTYPES:
            ic = ids.to(id_dtype).cuda()
            got = embedding_lookup(tc, ic, backend="cuda")
            assert torch.equal(got.cpu(), dense[ids])
            for mode in ("sum", "mean"):
                got = embedding_bag(tc, ic, offsets.cuda(), mode=mode, backend="cuda")
                want = F.embedding_bag(ids, dense.double(), offsets, mode=mode).to(dtype)
                torch.testing.assert_close(got.cpu(), want, **tolerances(dtype))
    w = W.cuda().requires_grad_()
    for mask in (M.cuda(), M.to(dtype).cuda(), None):
        w.grad = None
        g = torch.randn(ids.numel(), d, dtype=dtype, device="cuda")
        masked_embedding(w, mask, ids.cuda(), backend="cuda").backward(g)
        Mref = M if mask is not None else torch.ones_like(M)
        torch.testing.assert_close(w.grad.cpu(), _grad_oracle(W, Mref, ids, g.cpu()),
                                   **tolerances(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_row_pruned(backend):
    W = torch.randn(5, 3)
    M = torch.zeros(5, 3, dtype=torch.bool)
    ids = torch.tensor([4, 0, 4])
    for t in tables(W, M).values():
        assert torch.equal(embedding_lookup(t, ids, backend=backend), torch.zeros(3, 3))
        assert torch.equal(embedding_bag(t, ids, torch.tensor([0, 1]), backend=backend),
                           torch.zeros(2, 3))


@pytest.mark.parametrize("fmt", ["row_compact", "csr", "bitmask"])
def test_a_format_edited_in_place_is_checked_again_before_a_lookup(fmt):
    from sparselth.sparse.embedding_formats import compress_embedding
    g = torch.Generator().manual_seed(0)
    W, M = torch.randn(6, 5, generator=g), torch.rand(6, 5, generator=g) < 0.5
    table = compress_embedding(W, M, format=fmt)
    ids = torch.tensor([0, 5, 2])
    assert torch.equal(embedding_lookup(table, ids), (W * M)[ids])
    index = table.remap if fmt == "row_compact" else table.rowptr
    index[-1] = 10**6
    with pytest.raises(ValueError):
        embedding_lookup(table, ids)
