"""Masks, criteria (exact counts per granularity), apply/remove, optimizer interplay,
torch.nn.utils.prune interchange and MAC accounting."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparselth import prune
from sparselth.prune import Masks

# --------------------------------------------------------------------------- fixtures


class Crafted(nn.Module):
    """fc1: |w| = 1..12 (3x4), fc2: |w| = 101..106 (2x3), alternating signs."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.fc2 = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)
        with torch.no_grad():
            sign = torch.tensor([1.0, -1.0]).repeat(6)
            self.fc1.weight.copy_((torch.arange(1, 13.0) * sign).view(3, 4))
            self.fc2.weight.copy_((torch.arange(101, 107.0) * sign[:6]).view(2, 3))

    def forward(self, x):
        return self.norm(self.fc2(torch.relu(self.fc1(x))))


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.head = nn.Linear(4, 5)


def _abs_order_mask(w, n_zero):
    """Mask that prunes the n_zero smallest |w| (values distinct)."""
    flat = w.abs().reshape(-1)
    idx = torch.argsort(flat)[:n_zero]
    m = torch.ones_like(flat, dtype=torch.bool)
    m[idx] = False
    return m.view(w.shape)


# --------------------------------------------------------------------------- selection


def test_select_default_skips_bias_and_norms():
    assert prune.select(Zoo()) == ["emb.weight", "conv.weight", "up.weight", "head.weight"]
    assert prune.select(Crafted()) == ["fc1.weight", "fc2.weight"]


def test_include_exclude_patterns_types_positions():
    z = Zoo()
    assert prune.select(z, exclude=["@first", "@last"]) == ["conv.weight", "up.weight"]
    assert prune.select(z, exclude="emb") == ["conv.weight", "up.weight", "head.weight"]
    assert prune.select(z, exclude=nn.Embedding) == ["conv.weight", "up.weight", "head.weight"]
    assert prune.select(z, include=[nn.Conv2d]) == ["conv.weight"]
    assert prune.select(z, include="type:ConvTranspose2d") == ["up.weight"]
    assert prune.select(z, include="*.bias") == ["conv.bias", "bn.bias", "up.bias", "head.bias"]
    assert prune.select(z, include="re:(conv|head)\\.weight") == ["conv.weight", "head.weight"]
    assert prune.select(z, include="re:c.*", exclude="*.bias") == ["conv.weight"]
    assert prune.select(z, include=lambda n, m, p: p.dim() == 4) == ["conv.weight", "up.weight"]
    assert prune.select(z, include="@last") == ["head.weight"]
    with pytest.raises(ValueError, match="position"):
        prune.select(z, exclude="@middle")
    with pytest.raises(ValueError, match="no parameters selected"):
        prune.magnitude(z, 0.5, include="nothing*")


# --------------------------------------------------------------------------- element criteria


def test_magnitude_element_global_vs_layer_exact():
    net = Crafted()
    g = prune.magnitude(net, 0.5)  # 9 of 18 zeros: all in fc1 (|w| 1..9)
    assert list(g) == ["fc1.weight", "fc2.weight"]
    assert torch.equal(g["fc1.weight"], (torch.arange(1, 13) > 9).view(3, 4))
    assert bool(g["fc2.weight"].all())
    per = prune.magnitude(net, 0.5, scope="layer")  # 6 of fc1, 3 of fc2
    assert torch.equal(per["fc1.weight"], (torch.arange(1, 13) > 6).view(3, 4))
    assert torch.equal(per["fc2.weight"], (torch.arange(101, 107) > 103).view(2, 3))
    s = per.sparsity()
    assert (
        s["zeros"] == 9
        and s["total"] == 18
        and s["layers"] == {"fc1.weight": 0.5, "fc2.weight": 0.5}
    )


@pytest.mark.parametrize("fn", ["magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sp", [0.0, 0.13, 0.5, 0.91, 1.0])
def test_element_counts_exact(fn, scope, sp):
    torch.manual_seed(0)
    z = Zoo()
    kw = {"seed": 3} if fn == "random" else {}
    masks = getattr(prune, fn)(z, sp, scope=scope, **kw)
    counts = masks.counts()
    if scope == "global":
        total = sum(t for _, t in counts.values())
        assert sum(zr for zr, _ in counts.values()) == int(sp * total + 0.5)
    else:
        for zr, t in counts.values():
            assert zr == int(sp * t + 0.5)
    if fn == "magnitude" and scope == "layer":
        for name, m in masks.items():
            w = dict(z.named_parameters())[name]
            assert torch.equal(m, _abs_order_mask(w, counts[name][0]))


def test_random_seeded_and_global_rng():
    z = Zoo()
    a = prune.random(z, 0.6, seed=1)
    b = prune.random(z, 0.6, seed=1)
    c = prune.random(z, 0.6, seed=2)
    assert a == b and a != c
    torch.manual_seed(5)
    d = prune.random(z, 0.6)
    torch.manual_seed(5)
    e = prune.random(z, 0.6)
    assert d == e


def test_existing_masks_prune_only_survivors_and_count_them():
    net = Crafted()
    first = Masks(model=net)
    first["fc1.weight"] = torch.ones(3, 4, dtype=torch.bool)
    first["fc2.weight"] = torch.tensor([[False, True, True], [True, True, True]])  # |w|=101 gone
    m = prune.magnitude(net, 5 / 18, masks=first)  # 1 already + 4 smallest of fc1
    assert m.sparsity()["zeros"] == 5
    assert not m["fc2.weight"][0, 0]
    assert torch.equal(m["fc1.weight"], (torch.arange(1, 13) > 4).view(3, 4))
    # asking for less than is already pruned never revives
    assert prune.magnitude(net, 0.0, masks=m) == m
    # masks installed on the model are the default starting point
    prune.apply(net, first)
    m2 = prune.magnitude(net, 5 / 18)
    assert m2 == m


def test_fraction_of_survivors():
    net = Crafted()
    m = prune.magnitude(net, fraction=0.5, scope="layer")
    assert m.sparsity()["zeros"] == 6 + 3
    # survivors kept = round(alive * (1 - fraction)): 6 -> 3, 3 -> round(1.5) = 2
    m = prune.magnitude(net, fraction=0.5, scope="layer", masks=m)
    c = m.counts()
    assert c["fc1.weight"][0] == 9 and c["fc2.weight"][0] == 4
    with pytest.raises(ValueError, match="exactly one"):
        prune.magnitude(net, 0.5, fraction=0.2)


# --------------------------------------------------------------------------- structured


def test_row_granularity_whole_rows():
    torch.manual_seed(0)
    lin = nn.Linear(7, 10)
    emb = nn.Embedding(12, 5)
    model = nn.ModuleDict({"lin": lin, "emb": emb})
    m = prune.magnitude(model, 0.5, scope="layer", granularity="row")
    for name, rows in (("lin.weight", 10), ("emb.weight", 12)):
        mk = m[name]
        assert torch.equal(mk.all(1), mk.any(1))  # each row all-kept or all-pruned
        assert int((~mk.any(1)).sum()) == rows // 2
    w = lin.weight.detach().abs().mean(1)
    pruned = ~m["lin.weight"].any(1)
    assert w[pruned].max() < w[~pruned].min()


def test_channel_granularity_conv_out_in_and_transposed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 8, 3), nn.ConvTranspose2d(8, 10, 3))
    out = prune.magnitude(model, 0.25, scope="layer", granularity="channel")
    c = out["0.weight"]  # (8, 6, 3, 3): out channel = dim 0
    per = c.reshape(8, -1)
    assert torch.equal(per.all(1), per.any(1)) and int((~per.any(1)).sum()) == 2
    t = out["1.weight"]  # (8, 10, 3, 3): out channel = dim 1 for ConvTranspose
    per = t.transpose(0, 1).reshape(10, -1)
    assert torch.equal(per.all(1), per.any(1))
    assert int((~per.any(1)).sum()) == 2  # round(0.25*10 = 2.5) groups by closest count -> 2
    inn = prune.magnitude(model, 0.5, scope="layer", granularity="channel", channel="in")
    per = inn["0.weight"].transpose(0, 1).reshape(6, -1)
    assert torch.equal(per.all(1), per.any(1)) and int((~per.any(1)).sum()) == 3
    # zero whole channels after apply: the output channel is constant (bias only)
    prune.apply(model, out)
    y = model[0](torch.randn(2, 6, 5, 5))
    dead = (~out["0.weight"].reshape(8, -1).any(1)).nonzero().reshape(-1)
    for ch in dead:
        assert torch.allclose(y[:, ch], model[0].bias[ch].expand_as(y[:, ch]))


@pytest.mark.parametrize("fn", ["magnitude", "random"])
def test_n_m_exact(fn):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(6, 3), nn.Conv2d(2, 4, 3))
    kw = {"seed": 0} if fn == "random" else {}
    m = getattr(prune, fn)(model, None, granularity="2:4", **kw)
    g = m["0.weight"].view(8, 4, 4)
    assert bool((g.sum(-1) == 2).all())
    if fn == "magnitude":
        w = model[0].weight.detach().abs().view(8, 4, 4)
        kept_min = torch.where(g, w, torch.inf).min(-1).values
        pruned_max = torch.where(~g, w, -torch.inf).max(-1).values
        assert bool((kept_min > pruned_max).all())
    # 6 columns = one full group + a tail of 2 (keeps min(2, 2))
    t = m["1.weight"]
    assert bool((t[:, :4].sum(1) == 2).all()) and bool(t[:, 4:].all())
    conv = m["2.weight"].reshape(4, 18)  # 18 = 4 groups + tail 2
    assert bool((conv[:, :16].view(4, 4, 4).sum(-1) == 2).all())
    m14 = prune.magnitude(model, 0.75, granularity="1:4", include="0.weight")
    assert bool((m14["0.weight"].view(8, 4, 4).sum(-1) == 1).all())
    with pytest.raises(ValueError, match="fixes sparsity"):
        prune.magnitude(model, 0.3, granularity="2:4")


def test_n_m_respects_existing_masks():
    lin = nn.Linear(8, 2)
    first = prune.magnitude(lin, 0.75)
    m = prune.magnitude(lin, None, granularity="2:4", masks=first)
    assert not bool((m["weight"] & ~first["weight"]).any())
    assert bool((m["weight"].view(2, 2, 4).sum(-1) <= 2).all())


@pytest.mark.parametrize("block,shape", [((4, 4), (16, 12)), ((16, 1), (32, 8)), ((3, 5), (7, 11))])
def test_block_granularity_whole_blocks(block, shape):
    torch.manual_seed(0)
    lin = nn.Linear(shape[1], shape[0])
    m = prune.magnitude(lin, 0.5, granularity="block", block=block)["weight"]
    bh, bw = block
    n_pruned_blocks = 0
    for i in range(0, shape[0], bh):
        for j in range(0, shape[1], bw):
            b = m[i : i + bh, j : j + bw]
            assert bool(b.all()) or not bool(b.any())
            n_pruned_blocks += not bool(b.any())
    if shape[0] % bh == 0 and shape[1] % bw == 0:
        nblocks = (shape[0] // bh) * (shape[1] // bw)
        assert n_pruned_blocks == nblocks // 2
    with pytest.raises(ValueError, match="block="):
        prune.magnitude(lin, 0.5, granularity="block")


def test_bad_arguments():
    net = Crafted()
    with pytest.raises(ValueError, match="granularity"):
        prune.magnitude(net, 0.5, granularity="diagonal")
    with pytest.raises(ValueError, match="scope"):
        prune.magnitude(net, 0.5, scope="everywhere")
    with pytest.raises(ValueError, match="sparsity"):
        prune.magnitude(net, 1.5)


@pytest.mark.parametrize("fn", [prune.magnitude, prune.random])
def test_meta_parameters_are_refused_by_name(fn):
    """A meta tensor is a shape without values: nothing to rank, a clear error."""
    net = Crafted().to("meta")
    with pytest.raises(ValueError, match="parameter 'fc1.weight' is a meta tensor"):
        fn(net, 0.5)


# --------------------------------------------------------------------------- Masks type


def test_masks_validation_and_export():
    net = Crafted()
    m = Masks(model=net)
    with pytest.raises(TypeError, match="bool"):
        m["fc1.weight"] = torch.ones(3, 4)
    with pytest.raises(ValueError, match="shape"):
        m["fc1.weight"] = torch.ones(4, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="no parameter"):
        m["fc9.weight"] = torch.ones(3, 4, dtype=torch.bool)
    m["fc1.weight"] = torch.ones(3, 4, dtype=torch.bool)
    sd = m.state_dict()
    assert type(sd) is dict and sd["fc1.weight"].dtype == torch.bool
    sd["fc1.weight"][0, 0] = False  # a copy
    assert bool(m["fc1.weight"].all())
    f = Masks.from_state_dict({"fc1.weight": torch.tensor([[0.0, 1, 1, 1]] * 3)}, model=net)
    assert f.sparsity()["zeros"] == 3
    with pytest.raises(ValueError, match="0 and 1"):
        Masks.from_state_dict({"fc1.weight": torch.full((3, 4), 0.5)})
    assert Masks.ones(net).numel() == 18 and Masks.ones(net).nnz() == 18


# --------------------------------------------------------------------------- apply / remove


def _masked_crafted(sparsity, **kwargs):
    """A seeded ``Crafted`` net with magnitude masks installed."""
    torch.manual_seed(0)
    net = Crafted()
    masks = prune.magnitude(net, sparsity, **kwargs)
    prune.apply(net, masks)
    return net, masks


def test_apply_buffers_zero_forward_and_grads():
    net, masks = _masked_crafted(0.5, scope="layer")
    assert torch.equal(net.fc1.weight_mask, masks["fc1.weight"])
    assert "fc1.weight_mask" in net.state_dict()
    assert "fc1.weight_mask" not in prune.state_without_masks(net)
    assert bool((net.fc1.weight[~masks["fc1.weight"]] == 0).all())
    net(torch.randn(5, 4)).pow(2).sum().backward()
    for name in masks:
        p = dict(net.named_parameters())[name]
        assert bool((p.grad[~masks[name]] == 0).all())
        assert bool((p.grad[masks[name]] != 0).any())
    assert prune.sparsity(net)["layers"] == {"fc1.weight": 0.5, "fc2.weight": 0.5}
    assert prune.masks_of(net) == masks
    assert prune.is_masked(net)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_masked_weights_stay_zero_with_momentum_and_weight_decay(opt_name):
    net, masks = _masked_crafted(0.6)
    if opt_name == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        for name in masks:
            assert bool((dict(net.named_parameters())[name].grad[~masks[name]] == 0).all())
        opt.step()
    for name, m in masks.items():
        p = dict(net.named_parameters())[name]
        assert bool((p[~m] == 0).all())
        assert bool((p[m] != 0).all())


def test_stale_optimizer_state_reapply_and_hook():
    torch.manual_seed(0)
    net = Crafted()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(3):  # dense steps: Adam moments for every entry
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    masks = prune.magnitude(net, 0.5)
    prune.apply(net, masks)
    opt.zero_grad()
    net(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()  # stale moments revive pruned weights
    assert bool((net.fc1.weight[~masks["fc1.weight"]] != 0).any())
    prune.reapply(net, opt)  # zero weights and moments
    assert bool((net.fc1.weight[~masks["fc1.weight"]] == 0).all())
    assert bool((opt.state[net.fc1.weight]["exp_avg"][~masks["fc1.weight"]] == 0).all())
    handle = prune.hook_optimizer(opt, net)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
        assert bool((net.fc1.weight[~masks["fc1.weight"]] == 0).all())
    handle.remove()
    masks.reapply(net)


def test_deepcopy_and_reapply_masks():
    net, masks = _masked_crafted(0.5)
    twin = copy.deepcopy(net)
    twin(torch.randn(3, 4)).pow(2).sum().backward()
    assert bool((twin.fc1.weight.grad[~masks["fc1.weight"]] == 0).all())
    # a second apply with new masks updates in place
    more = prune.magnitude(net, 0.8)
    prune.apply(net, more)
    assert torch.equal(net.fc1.weight_mask, more["fc1.weight"])
    assert prune.sparsity(net)["zeros"] == int(0.8 * 18 + 0.5)


def test_remove_bakes_zeros():
    net, masks = _masked_crafted(0.5)
    removed = prune.remove(net)
    assert removed == masks
    assert not hasattr(net.fc1, "weight_mask") and not prune.is_masked(net)
    assert bool((net.fc1.weight[~masks["fc1.weight"]] == 0).all())
    (net.fc1.weight + 1).pow(2).sum().backward()  # gradients no longer masked: 2 * (0 + 1)
    assert bool((net.fc1.weight.grad[~masks["fc1.weight"]] == 2).all())
    assert prune.sparsity(net)["zeros"] == 9  # from weight zeros


def test_apply_rejects_wrong_masks():
    net = Crafted()
    with pytest.raises(ValueError, match="shape"):
        prune.apply(net, {"fc1.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no parameter"):
        prune.apply(net, {"fc3.weight": torch.ones(2, 2, dtype=torch.bool)})


# --------------------------------------------------------------------------- torch.nn.utils.prune


def test_from_torch_prune_and_back():
    torch.manual_seed(0)
    net = Crafted()
    torch_prune.l1_unstructured(net.fc1, "weight", amount=5)
    torch_prune.random_unstructured(net.fc2, "weight", amount=2)
    masks = prune.from_torch_prune(net)
    assert list(masks) == ["fc1.weight", "fc2.weight"]
    assert torch.equal(masks["fc1.weight"], net.fc1.weight_mask.bool())
    assert torch.equal(masks["fc1.weight"], (torch.arange(1, 13) > 5).view(3, 4))
    assert prune.sparsity(net)["zeros"] == 7
    with pytest.raises(ValueError, match="torch.nn.utils.prune"):
        prune.apply(net, masks)
    masks2 = prune.from_torch_prune(net, remove=True)
    assert masks2 == masks and "weight" in net.fc1._parameters
    prune.apply(net, masks2)
    assert prune.masks_of(net) == masks
    prune.remove(net)
    prune.to_torch_prune(net, masks)
    assert torch.equal(net.fc2.weight_mask.bool(), masks["fc2.weight"])


# --------------------------------------------------------------------------- accounting


def test_count_macs_exact():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
            self.up = nn.ConvTranspose2d(8, 2, 2, stride=2)
            self.fc = nn.Linear(4, 6)
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x, idx):
            y = self.up(self.bn(self.conv(x)))  # (2, 2, 10, 10)
            return y.sum(), self.fc(self.emb(idx))

    net = Net()
    x, idx = torch.randn(2, 3, 5, 5), torch.randint(0, 10, (3, 7))
    dense = prune.count_macs(net, (x, idx))
    L = dense["layers"]
    assert L["conv"]["macs_dense"] == 2 * 5 * 5 * 8 * 3 * 9
    assert L["up"]["macs_dense"] == 2 * 5 * 5 * 8 * 2 * 4
    assert L["fc"]["macs_dense"] == 21 * 4 * 6
    assert L["emb"]["macs"] == 0 and L["emb"]["lookups"] == 21
    assert dense["total"]["macs"] == dense["total"]["macs_dense"]
    masks = prune.magnitude(net, 0.75, scope="layer")
    prune.apply(net, masks)
    bn_running = net.bn.running_mean.clone()
    sp = prune.count_macs(net, {"x": x, "idx": idx})
    assert torch.equal(net.bn.running_mean, bn_running) and net.training
    nnz = {k.rsplit(".", 1)[0]: int(v.sum()) for k, v in masks.items()}
    assert sp["layers"]["conv"]["macs"] == 2 * 5 * 5 * nnz["conv"]
    assert sp["layers"]["up"]["macs"] == 2 * 5 * 5 * nnz["up"]
    assert sp["layers"]["fc"]["macs"] == 21 * nnz["fc"]
    assert sp["layers"]["fc"]["params"] == nnz["fc"] + 6
    assert sp["layers"]["fc"]["params_dense"] == 30
    assert sp["model_params"] == sp["model_params_dense"] - masks.sparsity()["zeros"]


def test_sparse_embedding_gradients_are_masked():
    torch.manual_seed(0)
    emb = nn.Embedding(10, 4, sparse=True)
    masks = prune.magnitude(emb, 0.5)
    prune.apply(emb, masks)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    (emb(torch.tensor([1, 2, 2, 5])) + 1).pow(2).sum().backward()
    assert emb.weight.grad.is_sparse
    assert bool((emb.weight.grad.to_dense()[~masks["weight"]] == 0).all())
    opt.step()
    assert bool((emb.weight[~masks["weight"]] == 0).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_apply_on_cuda():
    torch.manual_seed(0)
    net = Crafted().cuda()
    masks = prune.magnitude(net, 0.5, granularity="row")
    assert masks["fc1.weight"].device.type == "cuda"
    prune.apply(net, masks)
    net(torch.randn(4, 4, device="cuda")).pow(2).sum().backward()
    assert bool((net.fc1.weight.grad[~masks["fc1.weight"]] == 0).all())
    net.cpu()
    assert net.fc1.weight_mask.device.type == "cpu"
    net(torch.randn(4, 4)).pow(2).sum().backward()


def test_apply_installs_into_the_own_mask_of_masked_layers():
    """IMP on sparselth.nn Masked* layers: ``apply`` reuses the layer's ``weight_mask``."""
    from sparselth.nn import MaskedEmbedding, MaskedLinear

    torch.manual_seed(0)
    m = nn.Sequential(MaskedLinear(6, 4), nn.ReLU(), MaskedLinear(4, 3))
    masks = prune.magnitude(m, 0.5)
    prune.apply(m, masks)
    x = torch.randn(5, 6)
    m(x).sum().backward()
    assert (m[0].weight.grad[~masks["0.weight"]] == 0).all()
    assert torch.equal(prune.masks_of(m)["0.weight"], masks["0.weight"])
    ref = x @ (m[0].weight * masks["0.weight"]).t() + m[0].bias
    torch.testing.assert_close(m[0](x), ref)
    prune.remove(m)                     # the layer keeps its mask
    torch.testing.assert_close(m[0](x), ref)
    e = MaskedEmbedding(10, 4)
    keep = torch.rand(10, 4) > 0.5
    prune.apply(e, {"weight": keep})
    torch.testing.assert_close(e(torch.tensor([1, 2])), (e.weight * keep)[[1, 2]])
