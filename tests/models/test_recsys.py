"""MF and LightGCN: propagation against a dense reference in float64 (values and
gradients), masked entries get zero gradient, the BPR loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth import CSR, prune
from sparselth.data import synthetic_interactions
from sparselth.models import MF, LightGCN, build_recsys_model
from sparselth.testing import tolerances


def _tiny(seed=0, users=13, items=9):
    return synthetic_interactions(users, items, avg_interactions=4, min_interactions=2, seed=seed)


def _dense_reference(model: LightGCN, adj: CSR, mask=None):
    """E_0 = W * M, E_k = A E_{k-1}, mean over k = 0..K, with a dense A."""
    W = model.embedding.weight
    A = adj.to_dense(W.dtype)
    E = W if mask is None else W * mask.to(W.dtype)
    layers = [E]
    for _ in range(model.layers):
        layers.append(A @ layers[-1])
    return torch.stack(layers).mean(0)


def _random_mask(shape, keep=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < keep


@pytest.mark.parametrize("layers", [0, 1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_lightgcn_matches_dense_reference(layers, masked):
    d = _tiny()
    torch.manual_seed(0)
    model = LightGCN.from_interactions(d, dim=5, layers=layers).double()
    mask = None
    if masked:
        mask = _random_mask(model.embedding.weight.shape)
        prune.apply(model, {"embedding.weight": mask})
    U = d.num_users
    ref = _dense_reference(model, d.adjacency(), mask)
    ue, ie = model.all_embeddings()
    torch.testing.assert_close(torch.cat([ue, ie]), ref, **tolerances(torch.float64))
    # scores and loss gradients against the dense reference
    g = torch.Generator().manual_seed(1)
    users = torch.randint(U, (11,), generator=g)
    pos = torch.randint(d.num_items, (11,), generator=g)
    neg = torch.randint(d.num_items, (11,), generator=g)
    torch.testing.assert_close(model(users, pos), (ref[users] * ref[U + pos]).sum(-1))
    loss = model.bpr_loss(users, pos, neg, reg=1e-2)
    (grad,) = torch.autograd.grad(loss, model.embedding.weight)
    W = model.embedding.weight
    ref = _dense_reference(model, d.adjacency(), mask)
    s = (ref[users] * ref[U + pos]).sum(-1) - (ref[users] * ref[U + neg]).sum(-1)
    ego = W[users].pow(2).sum() + W[U + pos].pow(2).sum() + W[U + neg].pow(2).sum()
    ref_loss = F.softplus(-s).mean() + 1e-2 * 0.5 * ego / 11
    (ref_grad,) = torch.autograd.grad(ref_loss, W)
    if mask is not None:
        ref_grad = ref_grad * mask  # the mask's gradient hook
    torch.testing.assert_close(loss, ref_loss, **tolerances(torch.float64))
    torch.testing.assert_close(grad, ref_grad, **tolerances(torch.float64))
    if mask is not None:
        assert float(grad[~mask].abs().max()) == 0.0


def test_lightgcn_float32_and_layers0_is_mf():
    d = _tiny(seed=3)
    torch.manual_seed(1)
    lg = LightGCN.from_interactions(d, dim=7, layers=3)
    ref = _dense_reference(lg.double(), d.adjacency()).float()
    lg = lg.float()
    ue, ie = lg.all_embeddings()
    torch.testing.assert_close(torch.cat([ue, ie]), ref, **tolerances(torch.float32))
    torch.manual_seed(1)
    zero = LightGCN.from_interactions(d, dim=7, layers=0)
    torch.manual_seed(1)
    mf = MF.from_interactions(d, dim=7)
    u = torch.arange(d.num_users)
    i = torch.arange(d.num_users) % d.num_items
    torch.testing.assert_close(zero(u, i), mf(u, i))


@pytest.mark.parametrize("name", ["mf", "lightgcn"])
def test_mask_without_zeroed_weights(name):
    """``MaskedEmbedding.set_mask`` keeps the pruned values in W; the models still compute
    with W * M (the masked gather, spmm's x_mask, E_0), and pruned entries get no gradient."""
    d = _tiny(seed=4)
    torch.manual_seed(0)
    model = build_recsys_model(name, d, dim=4, layers=2).double()
    mask = _random_mask(model.embedding.weight.shape, seed=2)
    model.embedding.set_mask(mask)
    assert float(model.embedding.weight.detach()[~mask].abs().min()) > 0  # not zeroed
    assert prune.masks_of(model)["embedding.weight"].equal(mask)  # one buffer for both
    ref = _dense_reference(model, d.adjacency(), mask) if name == "lightgcn" else (
        model.embedding.weight * mask)
    ue, ie = model.all_embeddings()
    torch.testing.assert_close(torch.cat([ue, ie]), ref, **tolerances(torch.float64))
    users, items = torch.arange(5), torch.arange(5) % d.num_items
    model(users, items).sum().backward()
    assert float(model.embedding.weight.grad[~mask].abs().max()) == 0.0


def test_plain_table():
    d = _tiny(seed=4)
    torch.manual_seed(3)
    plain = LightGCN.from_interactions(d, dim=4, layers=2, table="plain").double()
    torch.manual_seed(3)
    masked = LightGCN.from_interactions(d, dim=4, layers=2).double()
    assert type(plain.embedding) is torch.nn.Embedding
    assert isinstance(masked.embedding, torch.nn.Embedding)  # MaskedEmbedding subclasses it
    assert plain.embedding_mask() is None
    torch.testing.assert_close(plain.embedding.weight, masked.embedding.weight)
    mask = _random_mask(plain.embedding.weight.shape, seed=5)
    for m in (plain, masked):
        prune.apply(m, {"embedding.weight": mask})
    u, i = torch.arange(7), torch.arange(7) % d.num_items
    torch.testing.assert_close(plain(u, i), masked(u, i))
    with pytest.raises(ValueError, match="MF: table must be"):
        MF(3, 4, table="sparse")


def _with_weight(model, W, fn):
    """Run ``fn`` with the table parameter temporarily replaced by ``W`` (so gradients flow
    to ``W``)."""
    old = model.embedding._parameters["weight"]
    model.embedding._parameters["weight"] = W
    try:
        return fn()
    finally:
        model.embedding._parameters["weight"] = old


@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_lightgcn_loss(masked):
    d = _tiny(seed=5, users=5, items=4)
    torch.manual_seed(0)
    model = LightGCN.from_interactions(d, dim=3, layers=2).double()
    mask = _random_mask((9, 3), seed=1) if masked else torch.ones(9, 3, dtype=torch.bool)
    model.embedding.set_mask(mask)  # non-destructive: pruned values stay in W
    users, pos, neg = torch.tensor([0, 1, 4]), torch.tensor([0, 2, 3]), torch.tensor([1, 1, 0])
    W0 = model.embedding.weight.detach().clone()
    kept = W0[mask].clone().requires_grad_(True)

    def loss(kept):
        # pruned entries get no gradient by design (the mask's gradient hook), so check the
        # gradient with respect to the kept entries (pruned ones held at their values)
        W = W0.masked_scatter(mask, kept)
        return _with_weight(model, W, lambda: model.bpr_loss(users, pos, neg, reg=1e-2))

    assert torch.autograd.gradcheck(loss, (kept,), eps=1e-6, atol=1e-8)


def test_bpr_loss_hand_computed():
    model = MF(2, 3, dim=2)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor(
            [[1.0, 0.0], [0.0, 2.0],          # users 0, 1
             [1.0, 1.0], [0.5, -1.0], [2.0, 0.0]]))  # items 0, 1, 2
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 0])
    # user 0: s_pos = 1, s_neg = 2;  user 1: s_pos = -2, s_neg = 2
    bpr = (math.log1p(math.exp(2 - 1)) + math.log1p(math.exp(2 + 2))) / 2
    ego = (1 + 2 + 4) + (4 + 1.25 + 2)  # |w_u|^2 + |w_pos|^2 + |w_neg|^2 per sample
    expect = bpr + 0.1 * 0.5 * ego / 2
    assert model.bpr_loss(users, pos, neg, reg=0.1).item() == pytest.approx(expect, rel=1e-6)
    assert model.bpr_loss(users, pos, neg, reg=0.0).item() == pytest.approx(bpr, rel=1e-6)
    torch.testing.assert_close(model(users, pos), torch.tensor([1.0, -2.0]))


@pytest.mark.parametrize("name", ["mf", "lightgcn"])
def test_masked_entries_get_zero_gradient_and_stay_zero(name):
    d = _tiny(seed=6)
    torch.manual_seed(0)
    model = build_recsys_model(name, d, dim=6, layers=2)
    mask = _random_mask(model.embedding.weight.shape, keep=0.5, seed=4)
    prune.apply(model, {"embedding.weight": mask})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        users = torch.randint(d.num_users, (16,), generator=g)
        items = torch.randint(d.num_items, (16,), generator=g)
        neg = torch.randint(d.num_items, (16,), generator=g)
        opt.zero_grad()
        model.bpr_loss(users, items, neg, reg=1e-3).backward()
        assert float(model.embedding.weight.grad[~mask].abs().max()) == 0.0
        opt.step()
    w = model.embedding.weight.detach()
    assert float(w[~mask].abs().max()) == 0.0
    assert float(w[mask].abs().min()) > 0.0


def test_init_and_shapes():
    torch.manual_seed(0)
    m = MF(100, 300, dim=32)
    bound = math.sqrt(6.0 / (400 + 32))  # Xavier uniform on the (U + I) x d table
    w = m.embedding.weight.detach()
    assert w.shape == (400, 32) and m.num_parameters == 400 * 32
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
    ue, ie = m.all_embeddings()
    assert ue.shape == (100, 32) and ie.shape == (300, 32)
    assert "embedding.weight" in dict(m.named_parameters())


def test_errors():
    d = _tiny()
    adj = d.adjacency()
    with pytest.raises(ValueError, match=r"LightGCN: adj must have shape"):
        LightGCN(adj, d.num_users + 1, d.num_items)
    with pytest.raises(TypeError, match="LightGCN: adj must be a sparselth.CSR"):
        LightGCN(adj.to_dense(), d.num_users, d.num_items)
    with pytest.raises(ValueError, match="LightGCN: layers"):
        LightGCN(adj, d.num_users, d.num_items, layers=-1)
    with pytest.raises(ValueError, match="MF: dim"):
        MF(3, 4, dim=0)
    m = MF(3, 4, dim=2)
    with pytest.raises(ValueError, match=r"MF: items ids must lie in \[0, 4\)"):
        m(torch.tensor([0]), torch.tensor([4]))
    with pytest.raises(TypeError, match="MF: users must be an int32/int64"):
        m(torch.tensor([0.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="build_recsys_model: unknown model"):
        build_recsys_model("ncf", d)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 4), st.integers(0, 3),
       st.integers(0, 1000))
def test_lightgcn_fuzz(U, I, dim, layers, seed):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(U, I, generator=g) < 0.4
    r, c = keep.nonzero(as_tuple=True)
    adj = CSR.from_coo(r, c, None, (U, I)).bipartite_adjacency(dtype=torch.float64)
    torch.manual_seed(seed)
    model = LightGCN(adj, U, I, dim=dim, layers=layers).double()
    mask = torch.rand(U + I, dim, generator=g) < 0.7
    prune.apply(model, {"embedding.weight": mask})
    ref = _dense_reference(model, adj, mask)
    ue, ie = model.all_embeddings()
    torch.testing.assert_close(torch.cat([ue, ie]), ref, **tolerances(torch.float64))


# ---------------------------------------------------------------- the spgemm route of layer 1
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("soft", [False, True])
def test_spgemm_route_matches_dense_reference_values_and_gradients(layers, soft):
    """``route="spgemm"`` (layer 1 as spgemm(A, CSR(W * M))) equals the dense reference in
    value and gradient; pruned entries of W get no gradient; bool and float 0/1 masks, and a
    mask that leaves pruned values in W (set_mask)."""
    d = _tiny(seed=5)
    torch.manual_seed(2)
    model = LightGCN.from_interactions(d, dim=6, layers=layers).double()
    mask = _random_mask(model.embedding.weight.shape, keep=0.3, seed=4)
    model.embedding.set_mask(mask.double() if soft else mask)
    model.route = "spgemm"
    assert model.propagation_route() == "spgemm"
    ref = _dense_reference(model, d.adjacency(), mask)
    ue, ie = model.all_embeddings()
    torch.testing.assert_close(torch.cat([ue, ie]), ref, **tolerances(torch.float64))
    U = d.num_users
    users, pos, neg = torch.arange(U), torch.arange(U) % d.num_items, (torch.arange(U) + 1) % d.num_items
    (grad,) = torch.autograd.grad(model.bpr_loss(users, pos, neg, reg=0.0), model.embedding.weight)
    model.route = "x_mask"
    (grad_x,) = torch.autograd.grad(model.bpr_loss(users, pos, neg, reg=0.0), model.embedding.weight)
    torch.testing.assert_close(grad, grad_x, **tolerances(torch.float64))
    assert float((grad * ~mask).abs().max()) == 0.0


def test_spgemm_route_caches_the_table_until_weights_or_mask_change():
    d = synthetic_interactions(900, 400, avg_interactions=5, seed=1)
    torch.manual_seed(0)
    model = LightGCN.from_interactions(d, dim=16, layers=2)
    mask = _random_mask(model.embedding.weight.shape, keep=0.08, seed=2)
    prune.apply(model, {"embedding.weight": mask})
    assert model.propagation_route() == "spgemm"   # 1300 rows, 8 % kept: reading kept entries pays
    with torch.no_grad():
        first = model.propagate()
        table = model._table_cache["table"]
        torch.testing.assert_close(model.propagate(), first)
        assert model._table_cache["table"] is table                 # cached
        model.embedding.weight.mul_(2.0)                             # an optimizer step, in place
        torch.testing.assert_close(model.propagate(), 2 * first)
        assert model._table_cache["table"] is not table
    denser = _random_mask(model.embedding.weight.shape, keep=0.9, seed=3)
    prune.apply(model, {"embedding.weight": denser})                 # a new mask
    assert model.propagation_route() == "x_mask"                     # 90 % kept: x_mask wins
    half = _random_mask(model.embedding.weight.shape, keep=0.5, seed=4)
    prune.apply(model, {"embedding.weight": half})
    assert model.propagation_route() == "x_mask"      # training at 50 %: the backward dominates
    with torch.no_grad():
        assert model.propagation_route() == "spgemm"  # evaluation at 50 %: spgemm pays
    prune.apply(model, {"embedding.weight": denser})
    ref = _dense_reference(model, d.adjacency(), model.embedding_mask())
    torch.testing.assert_close(torch.cat(model.all_embeddings()), ref, atol=1e-5, rtol=1e-4)
    model.route = "spgemm"
    torch.testing.assert_close(torch.cat(model.all_embeddings()), ref, atol=1e-5, rtol=1e-4)
    model.route = "mkl"
    with pytest.raises(ValueError, match="route"):
        model.propagate()


def test_spgemm_route_trains_the_kept_weights():
    d = _tiny(seed=7)
    torch.manual_seed(3)
    model = LightGCN.from_interactions(d, dim=4, layers=2).double()
    mask = _random_mask(model.embedding.weight.shape, keep=0.4, seed=1)
    prune.apply(model, {"embedding.weight": mask})
    model.route = "spgemm"
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    users = torch.arange(d.num_users)
    pos, neg = users % d.num_items, (users + 3) % d.num_items
    before = model.bpr_loss(users, pos, neg).item()
    for _ in range(5):
        opt.zero_grad()
        model.bpr_loss(users, pos, neg).backward()
        opt.step()
        ref = _dense_reference(model, d.adjacency(), mask)
        torch.testing.assert_close(torch.cat(model.all_embeddings()), ref)
    assert model.bpr_loss(users, pos, neg).item() < before
    assert float(model.embedding.weight.detach()[~mask].abs().max()) == 0.0
