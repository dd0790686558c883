import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune

import sparselth
import sparselth.nn as snn
from sparselth.sparse import weights as sw
from sparselth.testing import tolerances

TOL32 = tolerances(torch.float32)
BACKENDS = [b for b in ("cpp", "reference") if b in sparselth.backends()]


def _mask(shape, sparsity, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) >= sparsity


def _channel_mask(shape, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.ones(shape, dtype=torch.bool)
    m[torch.rand(shape[0], generator=g) < 0.4] = False
    m[:, torch.rand(shape[1], generator=g) < 0.4] = False
    return m


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("cls", [snn.SparseLinear, snn.ChannelPrunedLinear, snn.BlockSparseLinear,
                                 snn.MaskedLinear])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_layers_equal_masked_dense(cls, bias):
    lin = nn.Linear(19, 11, bias=bias)
    for mask in (_mask(lin.weight.shape, 0.7, 1), _channel_mask(lin.weight.shape, 2)):
        ref_layer = snn.MaskedLinear.from_dense(lin, mask)
        layer = cls.from_dense(lin, mask)
        for x in (torch.randn(5, 19), torch.randn(1, 19), torch.randn(2, 3, 19)):
            torch.testing.assert_close(layer(x), ref_layer(x), **TOL32)
        if hasattr(layer, "dense_weight"):
            torch.testing.assert_close(layer.dense_weight(), lin.weight.detach() * mask)


CONVS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=5, padding=2, dilation=2, groups=2),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 1), padding="same"),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same"),        # asymmetric
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="valid"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=(1, 2), padding_mode="circular"),
    dict(in_channels=4, out_channels=6, kernel_size=1),
]


@pytest.mark.parametrize("kw", CONVS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("route", ["direct", "im2col"])
def test_sparse_conv_equals_masked_dense(kw, backend, route):
    conv = nn.Conv2d(**kw)
    x = torch.randn(2, 4, 9, 10)
    for mask in (_mask(conv.weight.shape, 0.7, 3), _channel_mask(conv.weight.shape, 4)):
        ref = snn.MaskedConv2d.from_dense(conv, mask)(x)
        torch.testing.assert_close(ref, conv._conv_forward(x, conv.weight * mask, conv.bias))
        layer = snn.SparseConv2d.from_dense(conv, mask, route=route, backend=backend)
        torch.testing.assert_close(layer(x), ref, **TOL32)


@pytest.mark.parametrize("kw", CONVS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_conv_inference_equals_masked_dense(kw, backend):
    # no gradient wanted: the direct route's inference kernel (tiled on cpp)
    conv = nn.Conv2d(**kw)
    for x in (torch.randn(2, 4, 9, 10), torch.randn(16, 4, 8, 8), torch.randn(1, 4, 5, 33)):
        for mask in (_mask(conv.weight.shape, 0.9, 3), _channel_mask(conv.weight.shape, 4)):
            layer = snn.SparseConv2d.from_dense(conv, mask, backend=backend).eval()
            with torch.no_grad():
                ref = conv._conv_forward(x, conv.weight * mask, conv.bias)
                torch.testing.assert_close(layer(x), ref, **TOL32)
                torch.testing.assert_close(layer.double()(x.double()), ref.double(), **TOL32)


@pytest.mark.parametrize("kw", [kw for kw in CONVS if kw.get("groups", 1) == 1])
def test_channel_pruned_conv_equals_masked_dense(kw):
    conv = nn.Conv2d(**kw)
    x = torch.randn(2, 4, 9, 10)
    for mask in (_mask(conv.weight.shape, 0.7, 3), _channel_mask(conv.weight.shape, 4)):
        ref = snn.MaskedConv2d.from_dense(conv, mask)(x)
        torch.testing.assert_close(snn.ChannelPrunedConv2d.from_dense(conv, mask)(x), ref, **TOL32)


DECONVS = [
    dict(in_channels=6, out_channels=4, kernel_size=4, stride=2, padding=1),
    dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, groups=2, bias=False),
]


def _deconv_case(kw):
    deconv = nn.ConvTranspose2d(**kw)
    (k, _), (s, _), (p, _) = deconv.kernel_size, deconv.stride, deconv.padding
    osz = ((5 - 1) * s - 2 * p + k, (7 - 1) * s - 2 * p + k)    # output_padding 1 via output_size
    return deconv, torch.randn(2, 6, 5, 7), osz


@pytest.mark.parametrize("kw", DECONVS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("route", ["direct", "im2col"])
def test_sparse_conv_transpose_equals_masked_dense(kw, backend, route):
    deconv, x, osz = _deconv_case(kw)
    mask = _mask(deconv.weight.shape, 0.6, 5)
    masked = snn.MaskedConvTranspose2d.from_dense(deconv, mask)
    layer = snn.SparseConvTranspose2d.from_dense(deconv, mask, route=route, backend=backend)
    torch.testing.assert_close(layer(x), masked(x), **TOL32)
    torch.testing.assert_close(layer(x, output_size=osz), masked(x, output_size=osz), **TOL32)
    torch.testing.assert_close(masked.to_sparse().dense_weight(), deconv.weight.detach() * mask)


@pytest.mark.parametrize("kw", DECONVS + [dict(in_channels=6, out_channels=4, kernel_size=3,
                                                padding=1)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_conv_transpose_inference_equals_masked_dense(kw, backend):
    deconv, x, osz = _deconv_case(kw)
    for mask in (_mask(deconv.weight.shape, 0.9, 5), _channel_mask(deconv.weight.shape, 6)):
        layer = snn.SparseConvTranspose2d.from_dense(deconv, mask, backend=backend).eval()
        masked = snn.MaskedConvTranspose2d.from_dense(deconv, mask)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), masked(x), **TOL32)
            if deconv.stride != (1, 1):
                torch.testing.assert_close(layer(x, output_size=osz), masked(x, output_size=osz),
                                           **TOL32)


@pytest.mark.parametrize("kw", [kw for kw in DECONVS if kw.get("groups", 1) == 1])
def test_channel_pruned_conv_transpose_equals_masked_dense(kw):
    deconv, x, osz = _deconv_case(kw)
    for mask in (_mask(deconv.weight.shape, 0.6, 5), _channel_mask(deconv.weight.shape, 6)):
        masked = snn.MaskedConvTranspose2d.from_dense(deconv, mask)
        layer = snn.ChannelPrunedConvTranspose2d.from_dense(deconv, mask)
        torch.testing.assert_close(layer(x), masked(x), **TOL32)
        torch.testing.assert_close(layer(x, output_size=osz), masked(x, output_size=osz), **TOL32)
        torch.testing.assert_close(layer.dense_weight(), deconv.weight.detach() * mask)
    assert layer.in_index.numel() < 6 and layer.out_index.numel() < 4   # channels dropped
    with pytest.raises(ValueError, match="groups must be 1"):
        snn.ChannelPrunedConvTranspose2d.from_dense(nn.ConvTranspose2d(4, 4, 3, groups=2))


@pytest.mark.parametrize("layer, shape", [
    (nn.Linear(5, 3), (2, 5)),
    (nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6)),
    (nn.ConvTranspose2d(3, 4, 3, stride=2), (2, 3, 4, 4)),
])
def test_channel_pruned_layer_with_everything_pruned_gives_the_bias(layer, shape):
    cls = {nn.Linear: snn.ChannelPrunedLinear, nn.Conv2d: snn.ChannelPrunedConv2d,
           nn.ConvTranspose2d: snn.ChannelPrunedConvTranspose2d}[type(layer)]
    mask = torch.zeros_like(layer.weight, dtype=torch.bool)
    x = torch.randn(*shape)
    masked = {nn.Linear: snn.MaskedLinear, nn.Conv2d: snn.MaskedConv2d,
              nn.ConvTranspose2d: snn.MaskedConvTranspose2d}[type(layer)].from_dense(layer, mask)
    torch.testing.assert_close(cls.from_dense(layer, mask)(x), masked(x))


# ----------------------------------------------------------------------------- training
def test_masked_layers_block_gradient_and_bake():
    lin = snn.MaskedLinear(10, 7, mask=_mask((7, 10), 0.5, 6))
    lin(torch.randn(4, 10)).sum().backward()
    assert (lin.weight.grad[lin.weight_mask == 0] == 0).all()
    assert (lin.weight.grad[lin.weight_mask == 1] != 0).any()
    w_before = lin.weight.detach().clone()
    lin.apply_mask_()
    torch.testing.assert_close(lin.weight, w_before * lin.weight_mask)
    assert lin.sparsity == pytest.approx(1 - lin.weight_mask.mean().item())
    conv = snn.MaskedConv2d(3, 5, 3, padding=1)
    conv.set_mask(_mask(conv.weight.shape, 0.5, 7))
    conv(torch.randn(1, 3, 6, 6)).sum().backward()
    assert (conv.weight.grad[conv.weight_mask == 0] == 0).all()
    deconv = snn.MaskedConvTranspose2d(3, 5, 4, 2, 1, mask=_mask((3, 5, 4, 4), 0.5, 8))
    deconv(torch.randn(1, 3, 4, 4)).sum().backward()
    assert (deconv.weight.grad[deconv.weight_mask == 0] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        conv.set_mask(torch.ones(3, 3))


def test_fine_tuning_a_sparse_layer_keeps_it_equal_to_the_masked_dense_one():
    lin = nn.Linear(12, 9)
    mask = _mask(lin.weight.shape, 0.6, 9)
    sparse = snn.SparseLinear.from_dense(lin, mask)
    masked = snn.MaskedLinear.from_dense(lin, mask)
    opt_s = torch.optim.SGD(sparse.parameters(), lr=0.1)
    opt_m = torch.optim.SGD(masked.parameters(), lr=0.1)
    for step in range(3):
        x = torch.randn(8, 12)
        for layer, opt in ((sparse, opt_s), (masked, opt_m)):
            opt.zero_grad()
            (layer(x) ** 2).mean().backward()
            opt.step()
    torch.testing.assert_close(sparse.dense_weight(), masked.weight.detach() * mask, **TOL32)
    torch.testing.assert_close(sparse.bias, masked.bias, **TOL32)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    cmask = _mask(conv.weight.shape, 0.5, 10)
    sconv = snn.SparseConv2d.from_dense(conv, cmask)
    mconv = snn.MaskedConv2d.from_dense(conv, cmask)
    x = torch.randn(2, 3, 6, 6)
    (sconv(x) ** 2).sum().backward()
    (mconv(x) ** 2).sum().backward()
    torch.testing.assert_close(sconv.values.grad, mconv.weight.grad.reshape(4, -1)[cmask.reshape(4, -1)],
                               **TOL32)
    torch.testing.assert_close(sconv.bias.grad, mconv.bias.grad, **TOL32)


def test_kept_zero_weights_stay_trainable():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.zero_()
    mask = torch.ones(3, 4, dtype=torch.bool)
    layer = snn.SparseLinear.from_dense(lin, mask)
    assert layer.nnz == 12                      # stored although their values are 0
    assert snn.SparseLinear.from_dense(lin).nnz == 0   # no mask: the non-zeros


# ----------------------------------------------------------------------------- state & devices
def test_state_dict_round_trip_across_sparsities():
    lin = nn.Linear(16, 8)
    a = snn.SparseLinear.from_dense(lin, _mask(lin.weight.shape, 0.9, 11))
    b = snn.SparseLinear.from_dense(lin, _mask(lin.weight.shape, 0.3, 12))
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    a.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(3, 16)
    torch.testing.assert_close(a(x), b(x))
    conv = nn.ConvTranspose2d(4, 3, 3, 2, 1)
    c = snn.SparseConvTranspose2d.from_dense(conv, _mask(conv.weight.shape, 0.8, 13))
    d = snn.SparseConvTranspose2d.from_dense(conv, _mask(conv.weight.shape, 0.2, 14))
    c.load_state_dict(d.state_dict())
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(c(x), d(x))
    e = copy.deepcopy(c)
    torch.testing.assert_close(e(x), d(x))


def test_tampered_structure_is_refused():
    lin = nn.Linear(6, 5)
    layer = snn.SparseLinear.from_dense(lin, _mask(lin.weight.shape, 0.5, 15))
    sd = layer.state_dict()
    sd["col"] = sd["col"].clone()
    sd["col"][0] = 99
    x = torch.randn(2, 6)
    before = layer(x)
    with pytest.raises(ValueError, match="col"):   # refused at load, before anything is copied
        layer.load_state_dict(sd)
    torch.testing.assert_close(layer(x), before)
    layer.col[0] = 99                               # changed in place: checked before the kernel
    with pytest.raises(ValueError, match="col"):
        layer(x)


def _edited(sd, name, index, value):
    sd = dict(sd)
    sd[name] = sd[name].clone()
    sd[name][index] = value
    return sd


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_layer_with_index_buffers_checks_a_loaded_state_dict(backend):
    """Each layer holding index buffers refuses a state dict whose indices are out of range
    (ValueError naming the entry) and keeps its own weights."""
    torch.manual_seed(7)
    lin, conv = nn.Linear(8, 6), nn.Conv2d(3, 4, 3, padding=1)
    deconv = nn.ConvTranspose2d(3, 4, 3)
    layers = [
        (snn.SparseLinear.from_dense(lin, _mask((6, 8), 0.5, 1), backend=backend),
         torch.randn(2, 8), [("col", 0, 8), ("rowptr", 2, 999)]),
        (snn.SparseConv2d.from_dense(conv, _mask(conv.weight.shape, 0.5, 2), backend=backend),
         torch.randn(1, 3, 5, 5), [("col", 1, 27), ("rowptr", 1, -3)]),
        (snn.SparseConvTranspose2d.from_dense(deconv, _mask(deconv.weight.shape, 0.5, 3),
                                              backend=backend),
         torch.randn(1, 3, 5, 5), [("col", 0, 10**6)]),
        (snn.ChannelPrunedLinear.from_dense(lin, _channel_mask((6, 8), 4)), torch.randn(2, 8),
         [("out_index", 0, 6), ("in_index", 0, -1)]),
        (snn.ChannelPrunedConv2d.from_dense(conv, _channel_mask(conv.weight.shape, 5)),
         torch.randn(1, 3, 5, 5), [("in_index", 0, 3)]),
        (snn.ChannelPrunedConvTranspose2d.from_dense(deconv, _channel_mask(deconv.weight.shape,
                                                                           6)),
         torch.randn(1, 3, 5, 5), [("out_index", 0, 4)]),
        (snn.BlockSparseLinear.from_dense(lin, _mask((6, 8), 0.5, 7), block=(2, 4)),
         torch.randn(2, 8), [("col", 0, 2), ("rowptr", 1, 99)]),
    ]
    for layer, x, edits in layers:
        with torch.no_grad():
            before = layer(x)
        for name, index, value in edits:
            bad = _edited(layer.state_dict(), name, index, value)
            with pytest.raises(ValueError, match=name):
                layer.load_state_dict(bad)
            with torch.no_grad():
                torch.testing.assert_close(layer(x), before)
    with pytest.raises(ValueError, match="blocks"):
        lin_b = layers[-1][0]
        sd = dict(lin_b.state_dict())
        sd["blocks"] = sd["blocks"][1:]
        lin_b.load_state_dict(sd)
    with pytest.raises(ValueError, match="col"):
        sw.BlockSparse(torch.zeros(1, 2, 2), torch.tensor([0, 1]), torch.tensor([5]), (2, 4),
                       (2, 2))


def test_dtype_conversion_and_backends():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    mask = _mask(conv.weight.shape, 0.6, 16)
    layer = snn.SparseConv2d.from_dense(conv, mask).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    ref = F.conv2d(x, (conv.weight * mask).double(), conv.bias.double(), padding=1)
    torch.testing.assert_close(layer(x), ref)
    with sparselth.use_backend("reference"):
        torch.testing.assert_close(layer(x), ref)
    lin = snn.SparseLinear.from_dense(nn.Linear(5, 4), _mask((4, 5), 0.5, 17)).double()
    assert lin(torch.randn(2, 5, dtype=torch.float64)).dtype == torch.float64


def test_from_dense_uses_weight_mask_buffer_and_rejects_wrong_modules():
    lin = nn.Linear(8, 6)
    mask = _mask(lin.weight.shape, 0.5, 18)
    torch.nn.utils.prune.custom_from_mask(lin, "weight", mask)
    layer = snn.SparseLinear.from_dense(lin)
    assert layer.nnz == int(mask.sum())
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), lin(x), **TOL32)
    with pytest.raises(TypeError, match="nn.Linear"):
        snn.SparseLinear.from_dense(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        snn.SparseConv2d.from_dense(nn.Linear(1, 1))
    with pytest.raises(ValueError, match="mask must have"):
        snn.SparseLinear.from_dense(nn.Linear(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="0 and 1"):
        snn.SparseLinear.from_dense(nn.Linear(3, 2), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="groups must be 1"):
        snn.ChannelPrunedConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="weight must have shape"):
        snn.SparseLinear(3, 4, sparselth.CSR.from_dense(torch.ones(3, 3)))


def test_sparse_layers_in_a_model_and_repr():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    masks = {n: _mask(m.weight.shape, 0.8, i) for i, (n, m) in enumerate(model.named_modules())
             if isinstance(m, (nn.Conv2d, nn.Linear))}
    sparse = nn.Sequential(*[
        snn.SparseConv2d.from_dense(m, masks[str(i)]) if isinstance(m, nn.Conv2d) else
        snn.SparseLinear.from_dense(m, masks[str(i)]) if isinstance(m, nn.Linear) else m
        for i, m in enumerate(model)])
    masked = nn.Sequential(*[
        snn.MaskedConv2d.from_dense(m, masks[str(i)]) if isinstance(m, nn.Conv2d) else
        snn.MaskedLinear.from_dense(m, masks[str(i)]) if isinstance(m, nn.Linear) else m
        for i, m in enumerate(model)])
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(sparse(x), masked(x), **TOL32)
    assert "sparsity=0.8" in repr(sparse[0]) or "sparsity=0.7" in repr(sparse[0])


# ----------------------------------------------------------------------------- weight formats
def test_weight_formats():
    W = torch.randn(6, 9)
    mask = _mask(W.shape, 0.5, 19)
    A = sw.csr_from_weight(W, mask)
    torch.testing.assert_close(A.to_dense(), W * mask)
    torch.testing.assert_close(sw.csr_to_weight(A, (6, 9)), W * mask)
    conv = torch.randn(4, 2, 3, 3)
    cm = _mask(conv.shape, 0.5, 20)
    torch.testing.assert_close(sw.csr_to_weight(sw.csr_from_weight(conv, cm), conv.shape), conv * cm)
    cp = sw.ChannelPruned(W, _channel_mask(W.shape, 21))
    torch.testing.assert_close(cp.to_dense(), W * _channel_mask(W.shape, 21))
    assert cp.block_mask is None
    cp2 = sw.ChannelPruned(conv, cm)
    torch.testing.assert_close(cp2.to_dense(), conv * cm)
    for block in ((2, 2), (4, 4), (1, 3)):
        B = sw.BlockSparse.from_dense(W, mask, block)
        torch.testing.assert_close(B.to_dense(), W * mask)
        x = torch.randn(5, 9)
        torch.testing.assert_close(B.linear(x), x @ (W * mask).t(), **TOL32)
    nm = torch.tensor([[1, 1, 0, 0, 0, 1, 0, 1]])
    assert sw.is_n_m(nm) and not sw.is_n_m(torch.ones(1, 8)) and not sw.is_n_m(torch.ones(1, 6))
    with pytest.raises(ValueError, match="block"):
        sw.BlockSparse.from_dense(W, mask, (0, 2))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        sw.csr_from_weight([[1.0]])
    with pytest.raises(ValueError, match="at least 2"):
        sw.csr_from_weight(torch.ones(3))


def test_semi_structured_needs_a_supported_gpu():
    lin = nn.Linear(64, 32)
    mask = torch.tensor([1, 1, 0, 0], dtype=torch.bool).repeat(32, 16)
    if not sw.semi_structured_available():
        with pytest.raises(RuntimeError, match="compute capability"):
            snn.SemiStructuredLinear.from_dense(lin, mask)
        pytest.skip("2:4 semi-structured sparsity needs an NVIDIA GPU with compute capability >= 8.0")
    lin = lin.half().cuda()
    layer = snn.SemiStructuredLinear.from_dense(lin, mask.cuda())
    x = torch.randn(64, 64, dtype=torch.half, device="cuda")
    torch.testing.assert_close(layer(x), F.linear(x, lin.weight * mask.cuda(), lin.bias),
                               atol=1e-2, rtol=1e-2)


@pytest.mark.slow
def test_benchmark_runs_end_to_end(tmp_path):
    """``python -m bench.sparse_weights`` on tiny sizes writes its JSON and Markdown (no timing
    is asserted)."""
    import json
    import sys
    from pathlib import Path
    if "cpp" not in sparselth.backends():
        pytest.skip("the benchmark times the C++ kernels")
    repo = Path(__file__).resolve().parents[2]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from bench import sparse_weights
    report = sparse_weights.main(["--sizes", "48", "--batches", "1", "8", "--sparsities", "0.5", "0.9",
                                  "--conv-cases", "3x3 8ch 6x6 b2", "--budget", "0.002", "--min-reps",
                                  "2", "--max-reps", "2", "--repeat", "1", "--out", str(tmp_path),
                                  "--tag", "smoke", "--no-progress"])
    data = json.loads((tmp_path / "sparse-weights-smoke.json").read_text())
    assert len(data["results"]) == 6 and data["targets"]
    assert all("sparselth" in r["ms"] or "sparselth direct" in r["ms"] for r in data["results"])
    assert (tmp_path / "sparse-weights-smoke.md").read_text().startswith("# Sparse-weight benchmark")
    assert report["files"]
