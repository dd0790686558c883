// Portable SIMD vectors for the CPU kernels (GCC/Clang vector extensions): one AVX-512 register
// of up to 64 bytes with -march=native, split into narrower instructions on machines without it.
#pragma once
#include <cstring>

namespace sparselth {

template <typename scalar_t, int BYTES>
struct Simd { typedef scalar_t type __attribute__((vector_size(BYTES))); };

// Unaligned vector load through memcpy (compiles to one vector move).
template <typename vec_t, typename scalar_t>
inline vec_t load_vec(const scalar_t* p) {
  vec_t v;
  std::memcpy(&v, p, sizeof(vec_t));
  return v;
}

}  // namespace sparselth
