"""``phase_interleave`` against its reference and against per-phase strided copies: odd shapes,
strides 1-3 per dimension, crops, float32/float64; bad arguments raise naming them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselth.ops.phase_interleave import phase_interleave, phase_interleave_reference
from sparselth.testing import requires_kernel


def _by_phase(z, stride, output_size):
    """The definition, one strided copy per phase."""
    (sy, sx), (Hy, Wy) = stride, output_size
    R = z.shape[1] // (sy * sx)
    y = z.new_full((z.shape[0], R, Hy, Wy), float("nan"))
    for py in range(sy):
        for px in range(sx):
            Hp, Wp = -(-(Hy - py) // sy), -(-(Wy - px) // sx)
            if Hp > 0 and Wp > 0:
                c0 = (py * sx + px) * R
                y[:, :, py::sy, px::sx] = z[:, c0:c0 + R, :Hp, :Wp]
    return y


def _z(N, R, stride, output_size, dtype, extra=(0, 0), seed=0):
    (sy, sx), (Hy, Wy) = stride, output_size
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, sy * sx * R, -(-Hy // sy) + extra[0], -(-Wy // sx) + extra[1],
                       generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride, output_size, extra", [
    ((2, 2), (8, 8), (0, 0)), ((2, 2), (7, 9), (0, 0)), ((2, 2), (5, 5), (2, 1)),
    ((1, 1), (3, 4), (0, 0)), ((1, 2), (4, 1), (0, 0)), ((3, 2), (10, 11), (1, 0)),
    ((2, 3), (1, 1), (0, 0)), ((3, 3), (0, 6), (0, 0))])
def test_matches_reference_and_definition(dtype, stride, output_size, extra):
    z = _z(2, 3, stride, output_size, dtype, extra)
    ref = phase_interleave_reference(z, stride, output_size)
    torch.testing.assert_close(ref, _by_phase(z, stride, output_size), rtol=0, atol=0)
    torch.testing.assert_close(phase_interleave(z, stride, output_size), ref, rtol=0, atol=0)


@requires_kernel("phase_interleave", "cpu")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_reference_on_a_non_contiguous_input(dtype):
    z = _z(3, 5, (2, 2), (9, 6), dtype).transpose(2, 3).contiguous().transpose(2, 3)
    assert not z.is_contiguous()
    out = torch.ops.sparselth.phase_interleave_kernel(z, [2, 2], [9, 6])
    torch.testing.assert_close(out, phase_interleave_reference(z, (2, 2), (9, 6)), rtol=0, atol=0)


@requires_kernel("phase_interleave", "cpu")
@settings(max_examples=40, deadline=None)
@given(N=st.integers(0, 3), R=st.integers(1, 5), sy=st.integers(1, 3), sx=st.integers(1, 3),
       Hy=st.integers(0, 13), Wy=st.integers(0, 13), ey=st.integers(0, 2), ex=st.integers(0, 2),
       f64=st.booleans())
def test_fuzz_kernel_against_reference(N, R, sy, sx, Hy, Wy, ey, ex, f64):
    dtype = torch.float64 if f64 else torch.float32
    z = _z(N, R, (sy, sx), (Hy, Wy), dtype, (ey, ex), seed=N + R)
    out = torch.ops.sparselth.phase_interleave_kernel(z, [sy, sx], [Hy, Wy])
    torch.testing.assert_close(out, phase_interleave_reference(z, (sy, sx), (Hy, Wy)),
                               rtol=0, atol=0)


def test_gradients_flow_through_the_reference_route():
    z = _z(1, 2, (2, 2), (5, 6), torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: phase_interleave(t, (2, 2), (5, 6)), (z,))


@pytest.mark.parametrize("fn", [phase_interleave, phase_interleave_reference])
def test_bad_arguments_name_themselves(fn):
    z = _z(1, 2, (2, 2), (4, 4), torch.float32)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        fn(z.numpy(), (2, 2), (4, 4))
    with pytest.raises(ValueError, match="z must be 4-D"):
        fn(z[0], (2, 2), (4, 4))
    with pytest.raises(ValueError, match="stride"):
        fn(z, (0, 2), (4, 4))
    with pytest.raises(ValueError, match="output_size"):
        fn(z, (2, 2), (-1, 4))
    with pytest.raises(ValueError, match="multiple of sy"):
        fn(z, (3, 1), (4, 4))
    with pytest.raises(ValueError, match="too small"):
        fn(z, (2, 2), (6, 4))


@requires_kernel("phase_interleave", "cpu")
def test_kernel_rejects_bad_arguments():
    z = _z(1, 2, (2, 2), (4, 4), torch.float32)
    with pytest.raises(ValueError, match="too small"):
        torch.ops.sparselth.phase_interleave_kernel(z, [2, 2], [6, 4])
    with pytest.raises(TypeError, match="float32 or float64"):
        torch.ops.sparselth.phase_interleave_kernel(z.half(), [2, 2], [4, 4])
