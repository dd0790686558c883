"""Embedding layers: MaskedEmbedding (training, mask conventions of sparselth.nn.masked),
CompressedEmbedding / CompressedEmbeddingBag (deployment), plain nn.Embedding pruned by
sparselth.prune (sparse gradients stay sparse), and sparselth.compile on embedding tickets."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sparselth
from sparselth import prune
from sparselth.nn import CompressedEmbedding, CompressedEmbeddingBag, MaskedEmbedding
from sparselth.sparse.embedding_formats import FORMATS, predict_bytes
from sparselth.testing import test_backends


def _mask(shape, keep, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) < keep
    m[0] = False  # an all-pruned row
    return m


# --------------------------------------------------------------------------- MaskedEmbedding


@pytest.mark.parametrize("sparse_grad", [False, True])
def test_masked_embedding_layer_trains_only_kept_entries(sparse_grad):
    torch.manual_seed(0)
    emb = MaskedEmbedding(20, 6, mask=_mask((20, 6), 0.5, 1), sparse_grad=sparse_grad)
    assert emb.weight_mask.dtype == torch.bool and emb.sparse_grad == sparse_grad
    ids = torch.tensor([[0, 3, 3], [7, 19, 3]])
    out = emb(ids)
    assert torch.equal(out, emb.masked_weight()[ids])
    out.square().sum().backward()
    grad = emb.weight.grad
    assert grad.is_sparse == sparse_grad
    grad = grad.to_dense()
    assert (grad[~emb.weight_mask] == 0).all() and (grad[emb.weight_mask] != 0).any()
    assert (grad[[1, 2, 4]] == 0).all()  # rows not looked up
    before = emb.weight.detach().clone()
    torch.optim.SGD(emb.parameters(), lr=0.1).step()
    changed = emb.weight.detach() != before
    assert not changed[~emb.weight_mask].any()


def test_masked_embedding_mask_api():
    emb = MaskedEmbedding(8, 4)
    assert emb.sparsity == 0.0
    m = _mask((8, 4), 0.25, 2)
    emb.set_mask(m.float())
    assert torch.equal(emb.weight_mask, m)
    assert emb.sparsity == pytest.approx(1 - m.float().mean().item())
    assert torch.equal(emb.masked_weight(), emb.weight * m)
    w = emb.weight.detach().clone()
    emb.apply_mask_()
    assert torch.equal(emb.weight.detach(), w * m)
    assert "sparsity=" in repr(emb)
    with pytest.raises(ValueError, match="MaskedEmbedding"):
        MaskedEmbedding(8, 4, mask=torch.ones(8, 5))
    sd = emb.state_dict()
    emb2 = MaskedEmbedding(8, 4)
    emb2.load_state_dict(sd)
    assert torch.equal(emb2.weight_mask, m)


def test_masked_embedding_from_dense_padding_and_compression():
    base = nn.Embedding(12, 5, padding_idx=2)
    m = _mask((12, 5), 0.6, 3)
    emb = MaskedEmbedding.from_dense(base, m)
    assert emb.padding_idx == 2 and torch.equal(emb.weight, base.weight)
    ids = torch.tensor([2, 2, 5, 0])
    emb(ids).sum().backward()
    assert (emb.weight.grad[2] == 0).all()  # padding row gets no gradient
    deploy = emb.to_compressed()
    assert isinstance(deploy, CompressedEmbedding)
    assert torch.equal(deploy(ids), emb(ids).detach())
    with pytest.raises(TypeError, match="nn.Embedding"):
        MaskedEmbedding.from_dense(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="max_norm"):
        MaskedEmbedding.from_dense(nn.Embedding(3, 4, max_norm=1.0))


def test_prune_selects_masked_embedding_and_set_mask_installs_it():
    model = nn.Sequential(MaskedEmbedding(30, 8), nn.Linear(8, 2))
    names = prune.select(model)
    assert "0.weight" in names
    masks = prune.magnitude(model, 0.7, include=[nn.Embedding])
    model[0].set_mask(masks["0.weight"])
    assert model[0].sparsity == pytest.approx(0.7, abs=0.01)


# --------------------------------------------------------------------------- plain nn.Embedding


@pytest.mark.parametrize("sparse", [True, False])
def test_plain_embedding_pruned_by_sparselth_prune(sparse):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Embedding(50, 8, sparse=sparse))
    masks = prune.magnitude(model, 0.8)
    prune.apply(model, masks)
    assert prune.sparsity(model)["overall"] == pytest.approx(0.8, abs=0.01)
    m = masks["0.weight"]
    ids = torch.tensor([3, 3, 7, 49, 0])
    model(ids).sum().backward()
    grad = model[0].weight.grad
    # the gradient hook keeps a sparse gradient sparse: masked per looked-up row, O(batch)
    assert grad.is_sparse == sparse
    if sparse:
        assert grad._nnz() <= ids.numel()
    dense = grad.to_dense()
    want = torch.zeros(50, 8).index_add_(0, ids, torch.ones(5, 8)) * m
    assert torch.equal(dense, want)
    # the pruned table compresses and looks up exactly
    comp = CompressedEmbedding.from_module(model[0])
    assert torch.equal(comp(ids), model[0].weight.detach()[ids])
    assert comp.stored_bytes == min(predict_bytes(model[0].weight, m).values())


# --------------------------------------------------------------------------- CompressedEmbedding


@pytest.mark.parametrize("fmt", ["auto"] + list(FORMATS))
def test_compressed_embedding_module(fmt):
    torch.manual_seed(2)
    W = torch.randn(40, 10)
    M = _mask((40, 10), 0.3, 4)
    comp = CompressedEmbedding.from_masked(W, M, format=fmt)
    if fmt == "auto":
        sizes = predict_bytes(W, M)
        assert comp.stored_bytes == min(sizes.values()) and comp.format in FORMATS
    else:
        assert comp.format == fmt
    buffer_bytes = sum(b.numel() * b.element_size() for b in comp.buffers())
    assert comp.stored_bytes == buffer_bytes and comp.dense_bytes == W.numel() * 4
    if fmt == "auto":
        assert comp.stored_bytes < comp.dense_bytes
    ids = torch.randint(0, 40, (3, 7))
    assert torch.equal(comp(ids), (W * M)[ids])
    assert torch.equal(comp.to_dense(), W * M)
    comp2 = CompressedEmbedding.from_masked(torch.zeros_like(W), M, format=comp.format)
    comp2.load_state_dict(comp.state_dict())
    assert torch.equal(comp2(ids), comp(ids))
    moved = comp.to("cpu")
    assert torch.equal(moved(ids), (W * M)[ids])
    assert "format=" in repr(comp)


def test_compressed_embedding_quantised_error_and_bytes():
    torch.manual_seed(3)
    W = torch.randn(64, 32)
    M = _mask((64, 32), 0.3, 5)
    exact = CompressedEmbedding.from_masked(W, M)
    q = CompressedEmbedding.from_masked(W, M, quantize="int8")
    assert q.quantized and q.stored_bytes < exact.stored_bytes
    err = (q.to_dense() - W * M).abs().max().item()
    assert err <= (W * M).abs().max().item() / 127 / 2 + 1e-6
    ids = torch.arange(64)
    assert torch.equal(q(ids), q.to_dense())


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_compressed_embedding_bag(mode):
    torch.manual_seed(4)
    bag = nn.EmbeddingBag(25, 6, mode=mode)
    m = _mask((25, 6), 0.4, 6)
    comp = CompressedEmbedding.from_module(bag, m)
    assert isinstance(comp, CompressedEmbeddingBag) and comp.mode == mode
    ids = torch.randint(0, 25, (13,))
    offsets = torch.tensor([0, 0, 4, 13])
    want = F.embedding_bag(ids, bag.weight.detach() * m, offsets, mode=mode)
    torch.testing.assert_close(comp(ids, offsets), want)
    comp2 = CompressedEmbeddingBag.from_masked(bag.weight, m, mode=mode)
    torch.testing.assert_close(comp2(ids.reshape(-1)[:12].reshape(3, 4)),
                               F.embedding_bag(ids[:12].reshape(3, 4), bag.weight.detach() * m,
                                               mode=mode))
    with pytest.raises(ValueError, match="mode"):
        CompressedEmbedding.from_module(nn.EmbeddingBag(5, 2, mode="max"))


def test_compressed_embedding_rejects_bad_inputs():
    with pytest.raises(TypeError, match="EmbeddingFormat"):
        CompressedEmbedding(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="nn.Embedding"):
        CompressedEmbedding.from_module(nn.Linear(2, 2))
    comp = CompressedEmbedding.from_masked(torch.randn(5, 3), torch.ones(5, 3))
    with pytest.raises(ValueError, match="ids"):
        comp(torch.tensor([5]))


def _corruptions(fmt, d):
    """(what, edit of a state dict, word the error must name) for ``fmt``: each edit makes
    the lookup kernels read or write out of bounds if trusted."""
    def setter(name, index, value):
        def edit(sd):
            sd[name] = sd[name].clone()
            sd[name][index] = value
        return edit
    if fmt == "row_compact":
        return [("remap 10**8", setter("remap", 1, 10**8), "remap"),
                ("remap -5", setter("remap", 2, -5), "remap")]
    cases = [("rowptr past the end", setter("rowptr", 3, 10**6), "rowptr"),
             ("rowptr decreasing", setter("rowptr", 2, -1), "rowptr")]
    if fmt == "csr":
        cases += [("col past the row width", setter("col", 0, d + 3), "col"),
                  ("col negative", setter("col", 1, -2), "col")]
    else:
        cases += [("a set bit past the row's values", setter("bits", (1, 0), 255), "bits")]
    return cases


@pytest.mark.parametrize("backend", test_backends())
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("bag", [False, True])
def test_bad_state_dict_is_refused_naming_the_buffer(fmt, backend, bag):
    """A loaded state dict is checked before anything is copied: a ValueError names the
    buffer, the module keeps its table; in-place edits are checked before the next lookup."""
    torch.manual_seed(5)
    W, M = torch.randn(12, 6), _mask((12, 6), 0.5, 9)
    cls = CompressedEmbeddingBag if bag else CompressedEmbedding
    emb = cls.from_masked(W, M, format=fmt, backend=backend)
    ids = torch.arange(12)
    before = emb(ids.view(3, 4)) if bag else emb(ids)
    for what, edit, word in _corruptions(fmt, 6):
        sd = dict(emb.state_dict())
        edit(sd)
        with pytest.raises(ValueError, match=word):
            emb.load_state_dict(sd)
        after = emb(ids.view(3, 4)) if bag else emb(ids)
        assert torch.equal(after, before), what
    # an in-place edit of a buffer is caught before the kernel reads it
    _, edit, word = _corruptions(fmt, 6)[0]
    sd = {k: v for k, v in emb.named_buffers()}
    broken = {k: v.clone() for k, v in sd.items()}
    edit(broken)
    for k, v in broken.items():
        sd[k].copy_(v)
    with pytest.raises(ValueError, match=word):
        emb(ids.view(3, 4)) if bag else emb(ids)


@pytest.mark.parametrize("backend", test_backends())
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_state_dict_of_another_ticket_loads(fmt, backend):
    """Another ticket of the same table stores another number of entries: it loads, and the
    lookups are those of the loaded ticket."""
    torch.manual_seed(6)
    W = torch.randn(15, 7)
    sparse, dense = _mask((15, 7), 0.2, 10), _mask((15, 7), 0.7, 11)
    emb = CompressedEmbedding.from_masked(W, sparse, format=fmt, backend=backend)
    other = CompressedEmbedding.from_masked(2 * W, dense, format=fmt)
    emb.load_state_dict(other.state_dict())
    ids = torch.randint(0, 15, (20,))
    assert torch.equal(emb(ids), (2 * W * dense)[ids])
    assert emb.stored_bytes == other.stored_bytes
    with pytest.raises(ValueError, match="table"):   # another table shape: refused
        emb.load_state_dict(CompressedEmbedding.from_masked(W[:9], dense[:9],
                                                           format=fmt).state_dict())


# --------------------------------------------------------------------------- sparselth.compile


class _Recommender(nn.Module):
    def __init__(self):
        super().__init__()
        self.users = nn.Embedding(200, 16)
        self.items = MaskedEmbedding(300, 16, mask=_mask((300, 16), 0.15, 7))
        self.history = nn.EmbeddingBag(50, 16, mode="mean")
        self.dense_ids = nn.Embedding(20, 16)  # not pruned: stays as it is
        self.fc = nn.Linear(16, 1)

    def forward(self, u, i, h, offsets):
        x = self.users(u) * self.items(i) + self.history(h, offsets) + self.dense_ids(u % 20)
        return self.fc(x)


def test_compile_turns_masked_tables_into_compressed_embeddings():
    torch.manual_seed(5)
    model = _Recommender()
    masks = prune.magnitude(model, 0.9, include=[nn.Embedding, nn.EmbeddingBag],
                            exclude=["items.*", "dense_ids.*"])
    assert set(masks) == {"users.weight", "history.weight"}
    prune.apply(model, masks)
    ticket = sparselth.Ticket.from_model(model)
    u, i = torch.randint(0, 200, (32,)), torch.randint(0, 300, (32,))
    h, offsets = torch.randint(0, 50, (70,)), torch.sort(torch.randint(0, 70, (32,))).values
    offsets[0] = 0
    inputs = (u, i, h, offsets)
    compiled, report = sparselth.compile(model, ticket, example_inputs=inputs, budget_s=0.02,
                                         e2e_budget_s=0.05)
    assert isinstance(compiled.users, CompressedEmbedding)
    assert isinstance(compiled.items, CompressedEmbedding)
    assert isinstance(compiled.history, CompressedEmbeddingBag)
    assert type(compiled.dense_ids) is nn.Embedding
    for name in ("users", "items", "history"):
        rec = report.layer(name)
        assert rec.route == "compressed" and "verified exact" in rec.note
        assert rec.bytes_stored < rec.bytes_dense == 16 * 4 * rec.shape[0]
        assert rec.bytes_stored == getattr(compiled, name).stored_bytes
        assert set(rec.latency_ms) == {"dense", "compressed"}
    assert report.layer("users").sparsity == pytest.approx(0.9, abs=0.01)
    with torch.no_grad():
        ref = model(*inputs)
        torch.testing.assert_close(compiled(*inputs), ref)
        assert torch.equal(compiled.users(u), model.users(u))
        assert torch.equal(compiled.items(i), model.items(i))
    assert "compressed" in str(report)
    assert report.totals["bytes_stored"] < report.totals["bytes_dense"]


def test_compile_keeps_a_table_dense_when_no_format_is_smaller():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Embedding(40, 8))
    masks = prune.Masks({"0.weight": torch.ones(40, 8, dtype=torch.bool)}, model=model)
    prune.apply(model, masks)
    ticket = sparselth.Ticket.from_model(model)
    ids = torch.randint(0, 40, (10,))
    compiled, report = sparselth.compile(model, ticket, example_inputs=ids, budget_s=0.02,
                                         e2e_budget_s=0.05)
    assert type(compiled[0]) is nn.Embedding
    rec = report.layer("0")
    assert rec.route == "dense" and "left dense" in rec.note
    assert torch.equal(compiled(ids), model(ids))
