"""The register-tiled sparse convolution (``sparselth::sparse_conv2d_kernel``): the kernel against
its reference on every tile kind (whole rows, strips, several images, partial tiles), channel
block and geometry, and the public convolutions' inference path against dense PyTorch."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth.ops import sparse_conv_tiles as tiles
from sparselth.ops.sparse_conv import ConvPlan, sparse_conv2d, sparse_conv_transpose2d
from sparselth.sparse.weights import csr_from_weight
from sparselth.testing import DTYPES, INDEX_DTYPES, requires_kernel, tolerances

pytestmark = requires_kernel("sparse_conv2d", "cpu")


def _weight(shape, sparsity, seed, dtype=torch.float64, empty_rows=True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(*shape, generator=g) >= sparsity
    if empty_rows and shape[0] > 1:
        mask[0] = False                               # an all-pruned output channel
    if shape[1] > 2:
        mask[:, 1] = False                            # an all-pruned input channel
    return W, mask


def _tiled(W, mask, stride, dilation, groups=1, index_dtype=torch.int64):
    R, Cg, KH, KW = W.shape
    r, c, ky, kx = mask.nonzero(as_tuple=True)
    cin = (r // (R // groups)) * Cg + c
    conv = tiles.TiledConv(r, cin, ky, kx, R, Cg * groups, (KH, KW), stride, dilation, Cg,
                           index_dtype)
    return conv, W[r, c, ky, kx]


def _out_size(H, W, k, s, p, d):
    return ((H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1,
            (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1)


def run_kernel(Cin, Cout, k, s, p, d, g, H, W_, N, dtype, index_dtype, *, tile=None, CB=None,
               sparsity=0.6, seed=0, bias=True):
    """The kernel with a given tile and channel block against the reference and F.conv2d."""
    W, mask = _weight((Cout, Cin // g) + k, sparsity, seed, dtype)
    conv, val = _tiled(W, mask, s, d, g, index_dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, Cin, H, W_, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(Cout, generator=gen, dtype=torch.float64).to(dtype) if bias else None
    Ho, Wo = _out_size(H, W_, k, s, p, d)
    t, cb, perm, blkptr, lo = conv.layout(Ho, Wo, N, x.element_size(), tile, CB)
    args = (x, blkptr, lo, val[perm].contiguous(), b, Cout, cb, list(k), list(s), list(d),
            list(p), [Ho, Wo], list(t))
    out = torch.ops.sparselth.sparse_conv2d_kernel(*args)
    ref = tiles.sparse_conv2d_tiles_reference(*args)
    dense = F.conv2d(x.double(), (W * mask).double(), None if b is None else b.double(), s, p,
                     d, g)
    torch.testing.assert_close(out, ref, **tolerances(dtype))
    torch.testing.assert_close(out.double(), dense, **tolerances(dtype))


# (Cin, Cout, k, s, p, d, g, H, W, N, tile, CB): whole rows, partial last row tile, several
# images (and a partial last group), strips with a ragged last strip, 1 channel, wide kernels
KERNEL_CASES = [
    (4, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 9, 8, 1, None, None),
    (4, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 9, 8, 1, (3, 8, 1), 3),     # TH off the height
    (5, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, 8, 8, 5, (8, 8, 2), 2),     # 3 groups of 2 images
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 5, 5, 7, (5, 5, 4), None),
    (4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 6, 40, 2, (4, 16, 1), 2),   # strips, ragged last
    (4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 7, 33, 1, (7, 32, 1), 4),
    (1, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 17, 15, 2, None, 1),        # one input channel
    (4, 1, (1, 1), (1, 1), (0, 0), (1, 1), 1, 17, 17, 3, None, None),     # one output, 1x1
    (6, 6, (1, 1), (2, 2), (0, 0), (1, 1), 2, 9, 7, 3, None, None),       # strided 1x1, groups
    (4, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1, 15, 13, 2, None, None),     # stride 2: 2 phases
    (3, 5, (3, 3), (3, 3), (2, 2), (1, 1), 1, 13, 11, 1, None, None),
    (4, 4, (3, 3), (1, 1), (0, 0), (2, 2), 2, 10, 11, 3, None, None),     # dilation, no padding
    (4, 6, (5, 5), (2, 2), (2, 2), (2, 2), 2, 13, 9, 3, (2, 3, 1), 1),    # phases with shifts
    (2, 3, (3, 1), (2, 1), (1, 0), (1, 2), 1, 7, 6, 1, None, None),
    (2, 3, (2, 17), (1, 1), (0, 8), (1, 1), 1, 5, 20, 1, None, None),     # 17 columns: refused
    (3, 4, (4, 4), (1, 1), (-1, 2), (1, 1), 1, 9, 6, 2, None, None),      # negative padding
]


@pytest.mark.parametrize("case", KERNEL_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_kernel_matches_reference_and_dense(case, dtype, index_dtype):
    *geo, N, tile, CB = case
    Cin, Cout, k, s, p, d, g, H, W_ = geo
    if k[1] > tiles.MAX_KW:
        with pytest.raises(ValueError, match="16 columns"):
            run_kernel(*geo, N, dtype, index_dtype, tile=tile, CB=CB)
        return
    if p[0] < 0:           # F.conv2d has no negative padding: compare with the reference only
        return _negative_padding(dtype, index_dtype)
    run_kernel(*geo, N, dtype, index_dtype, tile=tile, CB=CB)
    run_kernel(*geo, N, dtype, index_dtype, tile=tile, CB=CB, sparsity=1.0, seed=3, bias=False)
    run_kernel(*geo, N, dtype, index_dtype, tile=tile, CB=CB, sparsity=0.0, seed=4)


def _negative_padding(dtype, index_dtype):
    W, mask = _weight((4, 3, 4, 4), 0.5, 7, dtype)
    conv, val = _tiled(W, mask, (1, 1), (1, 1), 1, index_dtype)
    x = torch.randn(2, 3, 9, 6, dtype=dtype)
    t, cb, perm, blkptr, lo = conv.layout(5, 5, 2, x.element_size())
    args = (x, blkptr, lo, val[perm].contiguous(), None, 4, cb, [4, 4], [1, 1], [1, 1],
            [-1, 2], [5, 5], list(t))
    out = torch.ops.sparselth.sparse_conv2d_kernel(*args)
    # rows y + ky + 1 of x, columns x + kx - 2 (zeros left of the input)
    ref = F.conv2d(F.pad(x, (2, 0))[:, :, 1:, :], W * mask)[:, :, :5, :5]
    torch.testing.assert_close(out, ref, **tolerances(dtype))
    torch.testing.assert_close(out, tiles.sparse_conv2d_tiles_reference(*args), **tolerances(dtype))


@settings(max_examples=60, deadline=None)
@given(Cin=st.integers(1, 5), Cout=st.integers(1, 5), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), g=st.sampled_from([1, 2]),
       H=st.integers(1, 20), W=st.integers(1, 40), N=st.integers(1, 9),
       sparsity=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), CB=st.integers(1, 6),
       f64=st.booleans(), wide=st.booleans())
def test_fuzz_kernel_tiles(Cin, Cout, kh, kw, s, p, d, g, H, W, N, sparsity, seed, CB, f64, wide):
    Cin, Cout = Cin * g, Cout * g
    k = (kh, kw)
    Ho, Wo = _out_size(H, W, k, (s, s), (p, p), (d, d))
    if Ho < 1 or Wo < 1:
        return
    dtype = torch.float64 if f64 else torch.float32
    tile = None
    if wide and Wo > 16:                      # strips 16 wide, a random height
        tile = (1 + seed % Ho, 16, 1)
    run_kernel(Cin, Cout, k, (s, s), (p, p), (d, d), g, H, W, N, dtype,
               torch.int32 if seed % 2 else torch.int64, tile=tile, CB=CB, sparsity=sparsity,
               seed=seed)


class TestKernelBadInput:
    def _args(self):
        W, mask = _weight((4, 3, 3, 3), 0.5, 1, torch.float32)
        conv, val = _tiled(W, mask, (1, 1), (1, 1))
        x = torch.randn(2, 3, 8, 8)
        t, cb, perm, blkptr, lo = conv.layout(8, 8, 2, 4)
        return [x, blkptr, lo, val[perm].contiguous(), None, 4, cb, [3, 3], [1, 1], [1, 1],
                [1, 1], [8, 8], list(t)]

    @pytest.mark.parametrize("edit, exc, word", [
        (lambda a: a.__setitem__(2, a[2] + 10**6), ValueError, "lo must lie in"),
        (lambda a: a.__setitem__(2, a[2] - 10**6), ValueError, "lo must lie in"),
        (lambda a: a.__setitem__(2, a[2].long()), TypeError, "lo must be int32"),
        (lambda a: a.__setitem__(1, a[1][:-1]), ValueError, "blkptr must have shape"),
        (lambda a: a.__setitem__(1, a[1].flip(0)), ValueError, "blkptr must"),
        (lambda a: a.__setitem__(3, a[3].double()), TypeError, "val dtype"),
        (lambda a: a.__setitem__(3, a[3][:-1]), ValueError, "val must be contiguous"),
        (lambda a: a.__setitem__(0, a[0].half()), TypeError, "float32 or float64"),
        (lambda a: a.__setitem__(0, a[0][0]), ValueError, "4-D"),
        (lambda a: a.__setitem__(4, torch.ones(3)), ValueError, "bias must have shape"),
        (lambda a: a.__setitem__(12, [16, 8, 1]), ValueError, "taller than the output"),
        (lambda a: a.__setitem__(12, [2, 4, 1]), ValueError, "multiple of 16"),
        (lambda a: a.__setitem__(12, [8, 8, 4]), ValueError, "more images per tile"),
        (lambda a: a.__setitem__(12, [8]), ValueError, "tile must be"),
        (lambda a: a.__setitem__(7, [0, 3]), ValueError, "kernel_size must be >= 1"),
        (lambda a: a.__setitem__(6, 0), ValueError, "channel_block"),
    ])
    def test_raises(self, edit, exc, word):
        a = self._args()
        edit(a)
        with pytest.raises(exc, match=word):
            torch.ops.sparselth.sparse_conv2d_kernel(*a)


# --------------------------------------------------------------------------- public ops
CONV_CASES = [   # (Cin, Cout, k, stride, padding, dilation, groups, H, W, N)
    (3, 4, 1, 1, 0, 1, 1, 5, 7, 1),
    (4, 6, 3, 1, 1, 1, 1, 7, 9, 3),
    (4, 6, 3, 2, 1, 1, 1, 9, 8, 1),
    (4, 4, 3, 1, 0, 2, 2, 10, 11, 3),
    (8, 8, 5, 2, 2, 1, 4, 11, 13, 1),
    (6, 4, 1, 2, 0, 1, 2, 9, 7, 3),
    (3, 5, 3, 3, 2, 1, 1, 13, 11, 1),
    (4, 8, 4, 2, 1, 1, 1, 8, 8, 3),
    (5, 7, 3, 1, 1, 1, 1, 20, 150, 2),     # wider than a tile: strips
    (3, 4, 3, 1, 1, 1, 1, 8, 8, 16),       # several images per tile
    (1, 8, 3, 1, 1, 1, 1, 28, 28, 3),      # one input channel, 28 wide
]
CONVT_CASES = [  # (Cin, Cout, k, stride, padding, output_padding, dilation, groups, H, W, N)
    (4, 6, 4, 2, 1, 0, 1, 1, 5, 6, 3),
    (4, 6, 3, 2, 1, 1, 1, 1, 5, 7, 1),
    (6, 4, 3, 2, 0, 1, 2, 2, 4, 5, 3),
    (4, 4, 5, 1, 2, 0, 1, 4, 6, 6, 1),
    (4, 2, 1, 2, 0, 1, 1, 2, 5, 4, 3),     # phases without taps: the bias alone
    (3, 5, 3, 3, 1, 2, 1, 1, 4, 3, 1),
    (8, 6, 4, 2, 1, 0, 1, 1, 8, 8, 4),
]


def _count_tiled():
    return mock.patch.object(tiles.TiledConv, "__call__", autospec=True,
                             side_effect=tiles.TiledConv.__call__)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_conv2d_runs_the_tiled_kernel(case, dtype):
    Cin, Cout, k, s, p, d, g, H, W_, N = case
    W, mask = _weight((Cout, Cin // g, k, k), 0.6, 2, dtype)
    A = csr_from_weight(W, mask)
    x = torch.randn(N, Cin, H, W_, dtype=dtype)
    b = torch.randn(Cout, dtype=dtype)
    with _count_tiled() as spy, torch.no_grad():
        out = sparse_conv2d(x, A, b, s, p, d, g, kernel_size=k, backend="cpp")
    assert spy.call_count == 1
    torch.testing.assert_close(out, F.conv2d(x, W * mask, b, s, p, d, g), **tolerances(dtype))


@pytest.mark.parametrize("case", CONVT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_conv_transpose2d_runs_the_tiled_kernel(case, dtype):
    Cin, Cout, k, s, p, op, d, g, H, W_, N = case
    W, mask = _weight((Cin, Cout // g, k, k), 0.6, 3, dtype)
    A = csr_from_weight(W, mask)
    x = torch.randn(N, Cin, H, W_, dtype=dtype)
    b = torch.randn(Cout, dtype=dtype)
    with _count_tiled() as spy, torch.no_grad():
        out = sparse_conv_transpose2d(x, A, b, s, p, op, g, d, kernel_size=k, backend="cpp")
    assert spy.call_count >= 1
    torch.testing.assert_close(out, F.conv_transpose2d(x, W * mask, b, s, p, op, g, d),
                               **tolerances(dtype))


@settings(max_examples=60, deadline=None)
@given(Cin=st.integers(1, 4), Cout=st.integers(1, 4), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), g=st.sampled_from([1, 2]), H=st.integers(1, 12),
       W=st.integers(1, 40), N=st.integers(1, 9), sparsity=st.floats(0.0, 1.0),
       seed=st.integers(0, 10**6), transposed=st.booleans(), f64=st.booleans())
def test_fuzz_inference_against_dense(Cin, Cout, k, s, p, d, g, H, W, N, sparsity, seed,
                                      transposed, f64):
    Cin, Cout = Cin * g, Cout * g
    dtype = torch.float64 if f64 else torch.float32
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, Cin, H, W, generator=gen, dtype=dtype)
    b = torch.randn(Cout, generator=gen, dtype=dtype) if seed % 3 else None
    if transposed:
        op = (s - 1) if seed % 2 else 0
        if min((H - 1) * s - 2 * p + d * (k - 1) + op + 1, (W - 1) * s - 2 * p + d * (k - 1) + op + 1) < 1:
            return
        Wt, mask = _weight((Cin, Cout // g, k, k), sparsity, seed, dtype)
        with torch.no_grad():
            out = sparse_conv_transpose2d(x, csr_from_weight(Wt, mask), b, s, p, op, g, d,
                                          kernel_size=k, backend="cpp")
        ref = F.conv_transpose2d(x, Wt * mask, b, s, p, op, g, d)
    else:
        if min(H, W) + 2 * p < d * (k - 1) + 1:
            return
        Wt, mask = _weight((Cout, Cin // g, k, k), sparsity, seed, dtype)
        with torch.no_grad():
            out = sparse_conv2d(x, csr_from_weight(Wt, mask), b, s, p, d, g, kernel_size=k,
                                backend="cpp")
        ref = F.conv2d(x, Wt * mask, b, s, p, d, g)
    torch.testing.assert_close(out, ref, **tolerances(dtype))


def test_training_keeps_the_shifted_kernels():
    W, mask = _weight((6, 4, 3, 3), 0.5, 4, torch.float32)
    A = csr_from_weight(W, mask)
    val = A.val.clone().requires_grad_(True)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with _count_tiled() as spy:
        out = sparse_conv2d(x, A.with_values(val), None, 1, 1, kernel_size=3, backend="cpp")
        out.sum().backward()
    assert spy.call_count == 0 and val.grad is not None and x.grad is not None
    with _count_tiled() as spy:          # no gradient wanted: inference even with grad mode on
        sparse_conv2d(x.detach(), A, None, 1, 1, kernel_size=3, backend="cpp")
    assert spy.call_count == 1


def test_cached_values_follow_in_place_updates_and_plan_reuse():
    W, mask = _weight((6, 4, 3, 3), 0.5, 5, torch.float32)
    A = csr_from_weight(W, mask)
    plan = ConvPlan(A, 4, 3, 1, 1)
    x = torch.randn(3, 4, 10, 10)
    val = A.val.clone()
    with torch.no_grad():
        a = sparse_conv2d(x, A.with_values(val), plan=plan)
        val.mul_(2)                                   # same tensor, new version
        b = sparse_conv2d(x, A.with_values(val), plan=plan)
        sparse_conv2d(x[..., :7, :7], A.with_values(val), plan=plan)
        sparse_conv2d(x[:1], A.with_values(val), plan=plan)
    torch.testing.assert_close(b, 2 * a, **tolerances(torch.float32))
    assert len(plan.tiled()._layouts) == 2             # one layout per output size


def test_torch_compile_inference_matches_eager():
    W, mask = _weight((6, 4, 3, 3), 0.6, 6, torch.float32)
    A = csr_from_weight(W, mask)
    plan = ConvPlan(A, 4, 3, 2, 1)

    def f(x):
        return torch.relu(sparse_conv2d(x, A, plan=plan)).sum((2, 3))

    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        eager = f(x)                                   # (builds the layout, as plans are)
        torch.testing.assert_close(torch.compile(f, backend="aot_eager", fullgraph=True)(x),
                                   eager)


def test_channel_block_and_tile_choice():
    W, mask = _weight((64, 64, 3, 3), 0.9, 7, torch.float32, empty_rows=False)
    conv, _ = _tiled(W, mask, (1, 1), (1, 1))
    assert tiles.auto_tile(32, 32, 1, 4) == (4, 32, 1)
    assert tiles.auto_tile(8, 8, 16, 4) == (8, 8, 2)
    assert tiles.auto_tile(7, 7, 3, 4) == (7, 7, 2)
    assert tiles.auto_tile(4, 300, 1, 4) == (4, 32, 1)
    cb = conv.channel_block((4, 32, 1), 4)
    assert 16 <= cb <= 64
    IS, BS = tiles.scratch_sizes(4, 32, 1, 2)
    assert cb * 3 * BS * 4 <= tiles.SCRATCH_BYTES or cb == 16
