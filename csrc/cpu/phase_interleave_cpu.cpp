// Phase interleave on CPU (schema in csrc/ops.cpp, the Python side in
// sparselth/ops/phase_interleave.py): the last step of a strided transposed convolution run as
// one stride-1 convolution whose output rows are (phase, channel) pairs.
//
// out[n, r, i * sy + py, j * sx + px] = z[n, (py * sx + px) * R + r, i, j]
// for out of shape (N, R, Hy, Wy), z of shape (N, sy * sx * R, Hm, Wm) with Hm >= ceil(Hy / sy)
// and Wm >= ceil(Wy / sx) (z's extra rows and columns are not read). Each output plane is
// written once, row by row; the stride-2 columns (the common case) run as a two-way zip the
// compiler vectorises.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "alloc.h"

namespace sparselth {
namespace {

template <typename scalar_t>
void interleave_plane(const scalar_t* z, int64_t phase_stride, int64_t Hm, int64_t Wm,
                      int64_t sy, int64_t sx, int64_t Hy, int64_t Wy, scalar_t* out) {
  for (int64_t yy = 0; yy < Hy; ++yy) {
    const int64_t py = yy % sy, i = yy / sy;
    const scalar_t* row0 = z + (py * sx) * phase_stride + i * Wm;  // phase (py, 0)
    scalar_t* o = out + yy * Wy;
    if (sx == 1) {
      std::copy(row0, row0 + Wy, o);
    } else if (sx == 2) {
      const scalar_t* a = row0;
      const scalar_t* b = row0 + phase_stride;
      const int64_t pairs = Wy / 2;
      for (int64_t j = 0; j < pairs; ++j) {
        o[2 * j] = a[j];
        o[2 * j + 1] = b[j];
      }
      if (Wy % 2) o[Wy - 1] = a[pairs];
    } else {
      for (int64_t x = 0; x < Wy; ++x) o[x] = row0[(x % sx) * phase_stride + x / sx];
    }
  }
  (void)Hm;
}

at::Tensor phase_interleave_cpu(const at::Tensor& z, at::IntArrayRef stride,
                                at::IntArrayRef output_size) {
  constexpr const char* op = "phase_interleave";
  TORCH_CHECK_VALUE(z.dim() == 4, op, ": z must be 4-D (N, sy * sx * R, Hm, Wm), got ",
                    z.sizes());
  TORCH_CHECK_TYPE(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble, op,
                   ": z must be float32 or float64, got ", z.scalar_type());
  TORCH_CHECK_VALUE(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1, op,
                    ": stride must be two positive ints, got ", stride);
  TORCH_CHECK_VALUE(output_size.size() == 2 && output_size[0] >= 0 && output_size[1] >= 0, op,
                    ": output_size must be two non-negative ints, got ", output_size);
  const int64_t sy = stride[0], sx = stride[1], Hy = output_size[0], Wy = output_size[1];
  const int64_t N = z.size(0), RP = z.size(1), Hm = z.size(2), Wm = z.size(3);
  TORCH_CHECK_VALUE(RP % (sy * sx) == 0, op, ": z's channels (", RP,
                    ") must be a multiple of sy * sx = ", sy * sx);
  TORCH_CHECK_VALUE(Hm >= (Hy + sy - 1) / sy && Wm >= (Wy + sx - 1) / sx, op, ": z's ", Hm, "x",
                    Wm, " planes are too small for a ", Hy, "x", Wy, " output at stride ", stride);
  const int64_t R = RP / (sy * sx);
  const at::Tensor zc = z.contiguous();
  at::Tensor out = empty_large({N, R, Hy, Wy}, z.scalar_type());
  if (out.numel() == 0) return out;
  const int64_t plane = Hm * Wm, phase_stride = R * plane;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, Hy * Wy));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "phase_interleave_cpu", [&] {
    const scalar_t* zp = zc.data_ptr<scalar_t>();
    scalar_t* op_ = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * R, grain, [&](int64_t b, int64_t e) {
      for (int64_t nr = b; nr < e; ++nr) {
        const int64_t n = nr / R, r = nr % R;
        interleave_plane<scalar_t>(zp + n * RP * plane + r * plane, phase_stride, Hm, Wm, sy, sx,
                                   Hy, Wy, op_ + nr * Hy * Wy);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparselth, CPU, m) { m.impl("phase_interleave_kernel", &phase_interleave_cpu); }

}  // namespace sparselth
