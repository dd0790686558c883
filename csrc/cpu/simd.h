// Portable SIMD vectors for the CPU kernels (GCC/Clang vector extensions): one AVX-512 register
// of up to 64 bytes with -march=native, split into narrower instructions on machines without it.
#pragma once
#include <algorithm>
#include <cstdint>
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

namespace sparselth {

// Unaligned vector store through memcpy (one vector move; no array of vectors on the stack).
template <typename vec_t, typename scalar_t>
inline void store_vec(scalar_t* p, const vec_t& v) {
  std::memcpy(p, &v, sizeof(vec_t));
}

// Smallest and largest of p[0, n) (both 0 when n == 0), 64 bytes of lanes at a time: the
// index-range checks that run on every call must cost little next to the product.
template <typename T>
inline void min_max_vec(const T* p, int64_t n, T* lo, T* hi) {
  using vec_t = typename Simd<T, 64>::type;
  constexpr int64_t L = 64 / static_cast<int64_t>(sizeof(T));
  T a = n > 0 ? p[0] : T(0), b = a;
  if (n >= L) {
    vec_t va = load_vec<vec_t>(p), vb = va;
    for (int64_t i = L; i < n; i += L) {
      const vec_t v = load_vec<vec_t>(p + std::min(i, n - L));  // the last one overlaps
      va = v < va ? v : va;
      vb = v > vb ? v : vb;
    }
    for (int64_t l = 0; l < L; ++l) {
      a = std::min<T>(a, va[l]);
      b = std::max<T>(b, vb[l]);
    }
  } else {
    for (int64_t i = 1; i < n; ++i) {
      a = std::min(a, p[i]);
      b = std::max(b, p[i]);
    }
  }
  *lo = a;
  *hi = b;
}

}  // namespace sparselth
