import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from sparselth import CSR
from sparselth.nn import SparseLinear
from sparselth.ops.shifted import ShiftedStructure
from sparselth.ops.sparse_linear import sparse_linear
from sparselth.sparse.weights import csr_from_weight
from sparselth.testing import test_backends, tolerances

def masked_weight(out_f, in_f, sparsity, seed, dtype=torch.float64, zero_rows=()):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_f, in_f, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(out_f, in_f, generator=g) >= sparsity
    for r in zero_rows:
        mask[r] = False
    return W, mask


def check_against_dense(W, mask, B, backend, dtype, lead=None, bias=True, seed=0):
    """Output and the gradients wrt x, the stored values and the bias equal the masked dense layer."""
    g = torch.Generator().manual_seed(seed + 1)
    shape = (B, W.shape[1]) if lead is None else (*lead, W.shape[1])
    x = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(W.shape[0], generator=g, dtype=torch.float64).to(dtype).requires_grad_(True) if bias else None
    A = csr_from_weight(W, mask)
    val = A.val.clone().requires_grad_(True)
    out = sparse_linear(x, A.with_values(val), b, backend=backend)
    # float64 oracle with a dense weight that has the same free values
    Wd = torch.zeros(W.shape, dtype=torch.float64)
    vd = val.detach().double().requires_grad_(True)
    xd = x.detach().double().requires_grad_(True)
    bd = None if b is None else b.detach().double().requires_grad_(True)
    Wd = Wd.index_put((A.row(), A.col.long()), vd)
    ref = F.linear(xd, Wd, bd)
    tol = tolerances(dtype)
    torch.testing.assert_close(out.double(), ref, **tol)
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out, [x, val] + ([b] if bias else []), go.to(dtype))
    refs = torch.autograd.grad(ref, [xd, vd] + ([bd] if bias else []), go)
    for got, want in zip(grads, refs):
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("backend", test_backends())
def test_golden_hand_computed(backend):
    # W = [[0, 2, 0], [0, 0, 0], [1, 0, 3]], b = [1, -1, 0.5]; x = [[1, 2, 3], [4, 5, 6]]
    A = CSR(torch.tensor([0, 1, 1, 3]), torch.tensor([1, 0, 2]), torch.tensor([2.0, 1.0, 3.0]), (3, 3))
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b = torch.tensor([1.0, -1.0, 0.5])
    y = sparse_linear(x, A, b, backend=backend)
    assert y.tolist() == [[5.0, -1.0, 10.5], [11.0, -1.0, 22.5]]
    assert sparse_linear(x[:1], A, backend=backend).tolist() == [[4.0, 0.0, 10.0]]


@pytest.mark.parametrize("backend", test_backends())
@pytest.mark.parametrize("B", [1, 7, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_masked_dense_with_gradients(backend, B, dtype):
    if backend == "triton" and B == 64:
        pytest.skip("the Triton interpreter runs tiny sizes only")
    W, mask = masked_weight(13, 17, 0.6, seed=B, dtype=dtype, zero_rows=(0, 5))
    check_against_dense(W, mask, B, backend, dtype)


@pytest.mark.parametrize("backend", test_backends(max_work=1))
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_sparsity_extremes_and_odd_sizes(backend, sparsity):
    W, mask = masked_weight(33, 29, sparsity, seed=3)
    check_against_dense(W, mask, 5, backend, torch.float64)
    check_against_dense(W, mask, 1, backend, torch.float64, bias=False)


@pytest.mark.parametrize("backend", test_backends(max_work=1))
def test_leading_dims_and_layouts(backend):
    W, mask = masked_weight(11, 6, 0.5, seed=4)
    check_against_dense(W, mask, None, backend, torch.float64, lead=(2, 3))
    A = csr_from_weight(W, mask)
    x = torch.randn(6, 9, dtype=torch.float64)
    # a transposed view (what a previous sparse layer returns) and a strided slice
    for xin in (x.t(), torch.randn(9, 12, dtype=torch.float64)[:, ::2]):
        torch.testing.assert_close(sparse_linear(xin, A, backend=backend), F.linear(xin, W * mask))
    # 1-D input
    torch.testing.assert_close(sparse_linear(x[:, 0], A, backend=backend), F.linear(x[:, 0], W * mask))
    # a binary pattern (no values) multiplies by ones
    P = A.with_values(None)
    torch.testing.assert_close(sparse_linear(x.t(), P, backend=backend), F.linear(x.t(), mask.double()))


@pytest.mark.parametrize("backend", [b for b in test_backends() if b != "triton"])
def test_gradcheck(backend):
    W, mask = masked_weight(6, 5, 0.4, seed=5)
    A = csr_from_weight(W, mask)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    val = A.val.clone().requires_grad_(True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    f = lambda v, x, b: sparse_linear(x, A.with_values(v), b, backend=backend)
    assert torch.autograd.gradcheck(f, (val, x, b))
    assert torch.autograd.gradgradcheck(f, (val, x, b))


@pytest.mark.parametrize("backend", test_backends(max_work=1))
def test_structure_is_reused_and_float32_batches_match(backend):
    W, mask = masked_weight(40, 50, 0.8, seed=6, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    S = ShiftedStructure.from_csr(A)
    for B in (1, 2, 3, 8, 9, 16, 63, 65):
        x = torch.randn(B, 50)
        torch.testing.assert_close(sparse_linear(x, A, structure=S, backend=backend),
                                   F.linear(x, W * mask), **tolerances(torch.float32))


@pytest.mark.parametrize("backend", [b for b in test_backends() if b != "triton"])
@given(out_f=st.integers(1, 30), in_f=st.integers(1, 30), B=st.integers(0, 20),
       sparsity=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), f64=st.booleans(),
       bias=st.booleans())
def test_fuzz_against_dense(backend, out_f, in_f, B, sparsity, seed, f64, bias):
    dtype = torch.float64 if f64 else torch.float32
    W, mask = masked_weight(out_f, in_f, sparsity, seed, dtype)
    x = torch.randn(B, in_f, dtype=torch.float64).to(dtype)
    b = torch.randn(out_f, dtype=torch.float64).to(dtype) if bias else None
    A = csr_from_weight(W, mask)
    torch.testing.assert_close(sparse_linear(x, A, b, backend=backend), F.linear(x, W * mask, b),
                               **tolerances(dtype))


class TestBadInput:
    W, mask = masked_weight(4, 5, 0.5, seed=7, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    x = torch.randn(3, 5)

    @pytest.mark.parametrize("call, exc, word", [
        (lambda A, x: sparse_linear(x, A.to_dense()), TypeError, "weight must be a sparselth.CSR"),
        (lambda A, x: sparse_linear(x.numpy(), A), TypeError, "input must be a torch.Tensor"),
        (lambda A, x: sparse_linear(torch.randn(3, 4), A), ValueError, "in_features = 5"),
        (lambda A, x: sparse_linear(x.double(), A), TypeError, "weight values have dtype"),
        (lambda A, x: sparse_linear(x.long(), A), TypeError, "floating point"),
        (lambda A, x: sparse_linear(x, A, torch.ones(5)), ValueError, "bias must have shape"),
        (lambda A, x: sparse_linear(x, A, torch.ones(4, dtype=torch.float64)), TypeError, "bias has dtype"),
        (lambda A, x: sparse_linear(x, A, [1.0] * 4), TypeError, "bias must be a tensor"),
        (lambda A, x: sparse_linear(x, A, backend="mkl"), ValueError, "backend"),
    ])
    def test_raises(self, call, exc, word):
        with pytest.raises(exc, match=word):
            call(self.A, self.x)


def test_torch_compile_matches_eager():
    W, mask = masked_weight(20, 12, 0.7, seed=10, dtype=torch.float32)
    A = csr_from_weight(W, mask)
    S = ShiftedStructure.from_csr(A)
    val = A.val.clone().requires_grad_(True)
    x = torch.randn(6, 12, requires_grad=True)

    def f(x, val):
        return torch.relu(sparse_linear(x, A.with_values(val), structure=S)).sum(1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x, val)
    torch.testing.assert_close(out, f(x, val))
    gx, gv = torch.autograd.grad(out.sum(), (x, val))
    ex, ev = torch.autograd.grad(f(x, val).sum(), (x, val))
    torch.testing.assert_close(gx, ex)
    torch.testing.assert_close(gv, ev)


# ------------------------------------------------------------------ SparseLinear's inference path
def _layer(in_f, out_f, sparsity, seed, dtype=torch.float32):
    from sparselth.nn.sparse import SparseLinear
    torch.manual_seed(seed)
    lin = torch.nn.Linear(in_f, out_f).to(dtype)
    mask = torch.rand(out_f, in_f) >= sparsity
    return SparseLinear.from_dense(lin, mask).eval(), lin, mask


@pytest.mark.parametrize("B", [1, 7, 16, 64, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_linear_inference_matches_training_path(B, dtype):
    """Without gradients SparseLinear runs the kernel with its cached plan (panels from batch 2
    on): the same result as the masked dense layer and as its autograd path."""
    layer, lin, mask = _layer(300, 45, 0.8, seed=B, dtype=dtype)
    x = torch.randn(B, 300, dtype=dtype)
    want = F.linear(x, lin.weight * mask, lin.bias).detach()
    tol = tolerances(dtype)
    with torch.no_grad():
        got = layer(x)
    assert layer._plan is not None and got.is_contiguous()
    torch.testing.assert_close(got, want, **tol)
    trained = layer(x)                                  # grad enabled: the autograd route
    assert trained.grad_fn is not None
    torch.testing.assert_close(trained.detach(), want, **tol)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), want, **tol)
        torch.testing.assert_close(layer(x[0]), want[0], **tol)            # 1-D input
        torch.testing.assert_close(layer(x.reshape(1, B, 300)), want.reshape(1, B, 45), **tol)


def test_sparse_linear_inference_follows_changes():
    """The plan's permuted values follow in-place updates, a new pattern and a dtype change."""
    layer, lin, mask = _layer(200, 30, 0.7, seed=1)
    x = torch.randn(64, 200)
    with torch.no_grad():
        layer(x)
        layer.values.mul_(-1.5)
        torch.testing.assert_close(layer(x), F.linear(x, -1.5 * lin.weight * mask, lin.bias),
                                   **tolerances(torch.float32))
        other, lin2, mask2 = _layer(200, 30, 0.4, seed=2)
        layer.load_state_dict(other.state_dict())
        torch.testing.assert_close(layer(x), F.linear(x, lin2.weight * mask2, lin2.bias),
                                   **tolerances(torch.float32))
        layer.double()
        torch.testing.assert_close(layer(x.double()),
                                   F.linear(x.double(), (lin2.weight * mask2).double(),
                                            lin2.bias.double()), **tolerances(torch.float64))


def test_sparse_linear_inference_under_torch_compile():
    layer, lin, mask = _layer(40, 12, 0.6, seed=3)
    x = torch.randn(20, 40)
    compiled = torch.compile(layer, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), F.linear(x, lin.weight * mask, lin.bias),
                                   **tolerances(torch.float32))


def test_sparse_linear_inference_without_bias():
    from sparselth.nn.sparse import SparseLinear
    lin = torch.nn.Linear(33, 17, bias=False)
    mask = torch.rand(17, 33) >= 0.5
    layer = SparseLinear.from_dense(lin, mask).eval()
    for B in (1, 5, 50):
        x = torch.randn(B, 33)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), F.linear(x, lin.weight * mask),
                                       **tolerances(torch.float32))


@pytest.mark.parametrize("grad", [False, True])
def test_relu_flag_on_both_routes(grad):
    torch.manual_seed(3)
    lin = torch.nn.Linear(30, 17)
    mask = torch.rand(17, 30) < 0.4
    layer = SparseLinear.from_dense(lin, mask)
    layer.relu = True
    x = torch.randn(9, 30, requires_grad=grad)
    want = torch.relu(torch.nn.functional.linear(x, lin.weight * mask, lin.bias))
    with torch.set_grad_enabled(grad):
        got = layer(x)
    torch.testing.assert_close(got, want)
    if grad:
        got.sum().backward()
        assert layer.values.grad is not None
    assert "relu=True" in repr(layer)
    with pytest.raises(TypeError, match="relu must be a bool"):
        SparseLinear(30, 17, layer.weight_csr(), relu=1)


@pytest.mark.parametrize("backend", test_backends(max_work=1))
@pytest.mark.parametrize("grad", [False, True])
def test_pruned_weights_are_absent_not_zero(backend, grad):
    """A NaN in an input feature reaches only the outputs that keep a weight on it (the
    documented semantics): a feature whose weights are all pruned is never read, where
    ``F.linear(x, W * mask, b)`` spreads the NaN everywhere (0 * nan = nan)."""
    W, mask = masked_weight(5, 7, 0.5, seed=11, dtype=torch.float32)
    mask[:, 2] = False                            # feature 2: every weight pruned
    mask[:, 4] = torch.tensor([True, False, True, False, False])
    lin = torch.nn.Linear(7, 5)
    with torch.no_grad():
        lin.weight.copy_(W)
    layer = SparseLinear.from_dense(lin, mask, backend=backend)
    x = torch.randn(3, 7)
    x[0, 2] = float("nan")
    x[1, 4] = float("nan")
    x[2, 2] = float("inf")
    with torch.set_grad_enabled(grad):
        y = layer(x)
    want = F.linear(torch.where(torch.isfinite(x), x, 0.0), W * mask, lin.bias)
    hit = torch.zeros(3, 5, dtype=torch.bool)
    hit[1] = mask[:, 4]                           # the outputs keeping a weight on feature 4
    assert torch.equal(torch.isnan(y), hit)
    torch.testing.assert_close(y[~hit], want.detach()[~hit])
    assert bool(torch.isnan(F.linear(x, W * mask, lin.bias)).all(1)[:2].all())
