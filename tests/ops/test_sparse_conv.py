import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from sparselth.ops import has_kernel
from sparselth.ops.sparse_conv import ConvPlan, sparse_conv2d, sparse_conv_transpose2d
from sparselth.sparse.weights import csr_from_weight
from sparselth.testing import requires_kernel, requires_triton, test_backends, tolerances

DIRECT = ["reference"] + (["cpp"] if has_kernel("shifted_spmm", "cpu") else [])
ROUTES = [("direct", b) for b in DIRECT] + [("im2col", b) for b in test_backends() if b != "triton"]

# (Cin, Cout, k, stride, padding, dilation, groups, H, W, N): every option the issue lists
CONV_CASES = [
    (3, 4, 1, 1, 0, 1, 1, 5, 7, 1),
    (4, 6, 3, 1, 1, 1, 1, 7, 9, 3),
    (4, 6, 3, 2, 1, 1, 1, 9, 8, 1),
    (4, 4, 3, 1, 0, 2, 2, 10, 11, 3),
    (8, 8, 5, 2, 2, 1, 4, 11, 13, 1),
    (4, 6, 5, 1, 2, 2, 2, 13, 9, 3),
    (6, 4, 1, 2, 0, 1, 2, 9, 7, 3),
    (3, 5, 3, 3, 2, 1, 1, 13, 11, 1),
    (4, 8, 4, 2, 1, 1, 1, 8, 8, 3),
    (2, 3, (3, 1), (2, 1), (1, 0), (1, 2), 1, 7, 6, 1),
]

# (Cin, Cout, k, stride, padding, output_padding, dilation, groups, H, W, N)
CONVT_CASES = [
    (4, 6, 4, 2, 1, 0, 1, 1, 5, 6, 3),
    (4, 6, 3, 2, 1, 1, 1, 1, 5, 7, 1),
    (6, 4, 3, 2, 0, 1, 2, 2, 4, 5, 3),
    (4, 4, 5, 1, 2, 0, 1, 4, 6, 6, 1),
    (4, 2, 1, 2, 0, 1, 1, 2, 5, 4, 3),
    (3, 5, 3, 3, 1, 2, 1, 1, 4, 3, 1),
]


def _weight(shape, sparsity, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(*shape, generator=g) >= sparsity
    mask[0] = False                                   # an all-zero row (output channel)
    return W, mask


def _grads_match(out, ref, inputs, ref_inputs, dtype, seed=0):
    tol = tolerances(dtype)
    torch.testing.assert_close(out.double(), ref, **tol)
    go = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = torch.autograd.grad(out, inputs, go.to(dtype))
    want = torch.autograd.grad(ref, ref_inputs, go)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, **tol)


def _dense_from(A, val, shape):
    """The dense weight whose stored entries are ``val`` (differentiable wrt ``val``)."""
    flat = torch.zeros(A.shape, dtype=torch.float64).index_put((A.row(), A.col.long()), val)
    return flat.reshape(shape)


def run_conv(case, route, backend, dtype=torch.float64, sparsity=0.6, seed=0):
    Cin, Cout, k, s, p, d, g, H, W_, N = case
    k2 = (k, k) if isinstance(k, int) else k
    W, mask = _weight((Cout, Cin // g) + k2, sparsity, seed, dtype)
    A = csr_from_weight(W, mask)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, Cin, H, W_, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(Cout, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    val = A.val.clone().requires_grad_(True)
    out = sparse_conv2d(x, A.with_values(val), b, s, p, d, g, kernel_size=k2, route=route, backend=backend)
    xd, vd, bd = (t.detach().double().requires_grad_(True) for t in (x, val, b))
    ref = F.conv2d(xd, _dense_from(A, vd, W.shape), bd, s, p, d, g)
    _grads_match(out, ref, (x, val, b), (xd, vd, bd), dtype, seed)


def run_conv_t(case, route, backend, dtype=torch.float64, sparsity=0.6, seed=0, output_size=None):
    Cin, Cout, k, s, p, op, d, g, H, W_, N = case
    W, mask = _weight((Cin, Cout // g, k, k), sparsity, seed, dtype)
    A = csr_from_weight(W, mask)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, Cin, H, W_, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(Cout, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    val = A.val.clone().requires_grad_(True)
    out = sparse_conv_transpose2d(x, A.with_values(val), b, s, p, op, g, d, kernel_size=k,
                                  route=route, backend=backend, output_size=output_size)
    xd, vd, bd = (t.detach().double().requires_grad_(True) for t in (x, val, b))
    ref = F.conv_transpose2d(xd, _dense_from(A, vd, W.shape), bd, s, p, op, g, d)
    assert out.shape == ref.shape
    _grads_match(out, ref, (x, val, b), (xd, vd, bd), dtype, seed)


@pytest.mark.parametrize("route, backend", ROUTES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_masked_dense(case, route, backend):
    run_conv(case, route, backend)


@pytest.mark.parametrize("route, backend", ROUTES)
@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_matches_masked_dense(case, route, backend):
    run_conv_t(case, route, backend)


@pytest.mark.parametrize("route, backend", ROUTES)
def test_float32_and_sparsity_extremes(route, backend):
    case = (4, 6, 3, 2, 1, 1, 2, 9, 10, 3)
    run_conv(case, route, backend, torch.float32, sparsity=0.7)
    for sparsity in (0.0, 1.0):
        run_conv(case, route, backend, torch.float64, sparsity=sparsity)
    run_conv_t(CONVT_CASES[1], route, backend, torch.float32)


@requires_triton
def test_triton_interpreter_on_a_tiny_conv():
    run_conv((2, 3, 3, 1, 1, 1, 1, 4, 5, 1), "im2col", "triton")
    run_conv_t((2, 2, 3, 2, 1, 1, 1, 1, 3, 2, 1), "im2col", "triton")


@pytest.mark.parametrize("route, backend", ROUTES)
def test_conv_transpose_output_size(route, backend):
    case = (4, 6, 3, 2, 1, 1, 1, 1, 5, 6, 2)      # the reference's output_padding (1, 1) ...
    run_conv_t(case, route, backend, output_size=(2, 6, 10, 12))   # ... chosen by output_size
    W, mask = _weight((4, 6, 3, 3), 0.5, 0)
    A = csr_from_weight(W, mask)
    with pytest.raises(ValueError, match="output_size"):
        sparse_conv_transpose2d(torch.randn(1, 4, 5, 6, dtype=torch.float64), A, stride=2, padding=1,
                                kernel_size=3, output_size=(20, 20), route=route, backend=backend)


@pytest.mark.parametrize("backend", DIRECT)
@given(Cin=st.integers(1, 4), Cout=st.integers(1, 4), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), g=st.sampled_from([1, 2]), H=st.integers(1, 9),
       W=st.integers(1, 9), N=st.integers(1, 2), sparsity=st.floats(0.0, 1.0),
       seed=st.integers(0, 10**6), transposed=st.booleans())
def test_fuzz_direct_against_dense(backend, Cin, Cout, k, s, p, d, g, H, W, N, sparsity, seed,
                                   transposed):
    Cin, Cout = Cin * g, Cout * g
    if transposed:
        op = (s - 1) if seed % 2 else 0
        if (H - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1 or (W - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1:
            return
        run_conv_t((Cin, Cout, k, s, p, op, d, g, H, W, N), "direct", backend, sparsity=sparsity,
                   seed=seed)
    elif H + 2 * p >= d * (k - 1) + 1 and W + 2 * p >= d * (k - 1) + 1:
        run_conv((Cin, Cout, k, s, p, d, g, H, W, N), "direct", backend, sparsity=sparsity,
                 seed=seed)


@pytest.mark.parametrize("route, backend", ROUTES)
def test_routes_agree_and_plan_is_reused(route, backend):
    W, mask = _weight((8, 4, 3, 3), 0.7, 2, torch.float32)
    A = csr_from_weight(W, mask)
    plan = ConvPlan(A, 4, 3, 1, 1)
    x = torch.randn(2, 4, 12, 12)
    for size in (12, 7, 12):
        xs = x[..., :size, :size]
        torch.testing.assert_close(sparse_conv2d(xs, A, plan=plan, route=route, backend=backend),
                                   F.conv2d(xs, W * mask, None, 1, 1), **tolerances(torch.float32))
    if route == "direct":               # one layout per input size, reused
        tiled = backend == "cpp" and has_kernel("sparse_conv2d", "cpu")
        assert len(plan.tiled()._layouts if tiled else plan._geometry) == 2
    torch.testing.assert_close(sparse_conv2d(x, A, plan=plan), F.conv2d(x, W * mask, None, 1, 1),
                               **tolerances(torch.float32))


@pytest.mark.parametrize("route, backend", ROUTES)
def test_non_contiguous_input_and_pattern_weight(route, backend):
    W, mask = _weight((5, 3, 3, 3), 0.5, 3)
    A = csr_from_weight(W, mask).with_values(None)
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)[:, ::2].transpose(2, 3)
    torch.testing.assert_close(sparse_conv2d(x, A, None, 1, 1, kernel_size=3, route=route,
                                             backend=backend),
                               F.conv2d(x, mask.double(), None, 1, 1))


class TestBadInput:
    W, mask = _weight((4, 3, 3, 3), 0.5, 4, torch.float32)
    A = csr_from_weight(W, mask)
    x = torch.randn(2, 3, 8, 8)

    @pytest.mark.parametrize("call, exc, word", [
        (lambda A, x: sparse_conv2d(x, A.to_dense(), kernel_size=3), TypeError, "weight must be a sparselth.CSR"),
        (lambda A, x: sparse_conv2d(x.numpy(), A, kernel_size=3), TypeError, "input must be a torch.Tensor"),
        (lambda A, x: sparse_conv2d(x[0], A, kernel_size=3), ValueError, "input must be 4-D"),
        (lambda A, x: sparse_conv2d(x, A), ValueError, "kernel_size is required"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=5), ValueError, "weight must have shape"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, groups=2), ValueError, "groups"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, stride=0), ValueError, "stride must be >= 1"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, padding=-1), ValueError, "padding must be >= 0"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, dilation=1.5), TypeError, "dilation"),
        (lambda A, x: sparse_conv2d(x.double(), A, kernel_size=3), TypeError, "weight values have dtype"),
        (lambda A, x: sparse_conv2d(x, A, torch.ones(3), kernel_size=3), ValueError, "bias must have shape"),
        (lambda A, x: sparse_conv2d(x[..., :1, :1], A, kernel_size=3), ValueError, "too small"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, route="fft"), ValueError, "route"),
        (lambda A, x: sparse_conv2d(x, A, kernel_size=3, backend="mkl"), ValueError, "backend"),
        (lambda A, x: sparse_conv2d(torch.randn(2, 4, 8, 8), A, plan=ConvPlan(A, 3, 3)), ValueError,
            "3 channels"),
        (lambda A, x: sparse_conv_transpose2d(torch.randn(2, 4, 5, 5), A, kernel_size=3, stride=2,
                                              output_padding=2), ValueError, "output_padding"),
        (lambda A, x: sparse_conv_transpose2d(x, A, kernel_size=3), ValueError, "4 channels"),
    ])
    def test_raises(self, call, exc, word):
        with pytest.raises(exc, match=word):
            call(self.A, self.x)

    @requires_triton
    def test_direct_route_rejects_spmm_only_backends(self):
        with pytest.raises(ValueError, match="route 'direct'"):
            sparse_conv2d(self.x, self.A, kernel_size=3, route="direct", backend="triton")


@requires_kernel("shifted_spmm", "cpu")
def test_torch_compile_matches_eager():
    W, mask = _weight((6, 4, 3, 3), 0.6, 5, torch.float32)
    A = csr_from_weight(W, mask)
    plan = ConvPlan(A, 4, 3, 2, 1)
    plan.geometry(9, 9)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)

    def f(x):
        return torch.relu(sparse_conv2d(x, A, plan=plan)).sum((2, 3))

    out = torch.compile(f, backend="aot_eager")(x)
    torch.testing.assert_close(out, f(x))
    g1, = torch.autograd.grad(out.sum(), x)
    g2, = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_plan_and_arguments_must_agree():
    W, mask = _weight((4, 3, 3, 3), 0.5, 6, torch.float32)
    A = csr_from_weight(W, mask)
    plan = ConvPlan(A, 3, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 8, 8)
    ref = F.conv2d(x, W * mask, None, 2, 1)
    torch.testing.assert_close(sparse_conv2d(x, A, plan=plan), ref, **tolerances(torch.float32))
    torch.testing.assert_close(sparse_conv2d(x, A, None, 2, 1, plan=plan), ref, **tolerances(torch.float32))
    with pytest.raises(ValueError, match="stride"):
        sparse_conv2d(x, A, None, 3, plan=plan)
    with pytest.raises(ValueError, match="stored entries"):
        sparse_conv2d(x, csr_from_weight(W, torch.ones_like(mask)), plan=plan)
