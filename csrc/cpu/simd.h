// Portable SIMD vectors for the CPU kernels (GCC/Clang vector extensions): one AVX-512 register
// of up to 64 bytes with -march=native, split into narrower instructions on machines without it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

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

// Every lane set to s (one broadcast instruction; `vec_t{} + s` would add a zero first).
// (Filled through an array: lane-by-lane insertion can compile to one masked broadcast a lane.)
template <typename vec_t, typename scalar_t>
inline vec_t broadcast_vec(scalar_t s) {
  constexpr int n = static_cast<int>(sizeof(vec_t) / sizeof(scalar_t));
  scalar_t a[n];
  for (int i = 0; i < n; ++i) a[i] = s;
  vec_t v;
  std::memcpy(&v, a, sizeof(vec_t));
  return v;
}

}  // namespace sparselth

namespace sparselth {

// Lanes [lo, hi) loaded from p[lo, hi), the others zero; memory outside p[lo, hi) is not read
// (masked loads do not fault on masked-off lanes). 0 <= lo <= hi <= lanes.
template <typename vec_t, typename scalar_t>
inline vec_t load_vec_range(const scalar_t* p, int64_t lo, int64_t hi) {
  constexpr int n = static_cast<int>(sizeof(vec_t) / sizeof(scalar_t));
  if (lo == 0 && hi == n) return load_vec<vec_t>(p);
#if defined(__AVX512F__)
  if constexpr (sizeof(vec_t) == 64 && std::is_same_v<scalar_t, float>) {
    const __mmask16 k = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
    return reinterpret_cast<vec_t>(_mm512_maskz_loadu_ps(k, p));
  }
  if constexpr (sizeof(vec_t) == 64 && std::is_same_v<scalar_t, double>) {
    const __mmask8 k = static_cast<__mmask8>(((1u << hi) - 1) & ~((1u << lo) - 1));
    return reinterpret_cast<vec_t>(_mm512_maskz_loadu_pd(k, p));
  }
#endif
  scalar_t a[n] = {};
  for (int64_t i = lo; i < hi; ++i) a[i] = p[i];
  vec_t v;
  std::memcpy(&v, a, sizeof(vec_t));
  return v;
}

}  // namespace sparselth
