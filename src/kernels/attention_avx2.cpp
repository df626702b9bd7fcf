#include <immintrin.h>

#include <cmath>

#include "kernels/attention.h"
#include "kernels/ops.h"

namespace optiq::kernels {

namespace {
inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}
inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
}  // namespace

// head_dim is a multiple of 8 (checked by the dispatcher).
void attention_f16_avx2(const AttentionArgs& a) {
  const int d = a.head_dim;
  const int rep = a.rep;
  // Scores: each K row is converted once and dotted with every query head of the group.
  for (int t = 0; t < a.n_tokens; ++t) {
    const uint16_t* k = a.k + size_t(t) * a.kv_stride;
    for (int r = 0; r < rep; ++r) {
      const float* q = a.q + int64_t(r) * d;
      __m256 acc = _mm256_setzero_ps();
      for (int i = 0; i < d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16(k + i), acc);
      a.scratch[int64_t(r) * a.n_tokens + t] = hsum(acc) * a.scale;
    }
  }
  for (int r = 0; r < rep; ++r) softmax(a.scratch + int64_t(r) * a.n_tokens, a.n_tokens);
  for (int r = 0; r < rep; ++r)
    for (int i = 0; i < d; ++i) a.out[int64_t(r) * d + i] = 0;
  for (int t = 0; t < a.n_tokens; ++t) {
    const uint16_t* v = a.v + size_t(t) * a.kv_stride;
    for (int i = 0; i < d; i += 8) {
      __m256 vv = load_f16(v + i);
      for (int r = 0; r < rep; ++r) {
        float* o = a.out + int64_t(r) * d + i;
        __m256 p = _mm256_set1_ps(a.scratch[int64_t(r) * a.n_tokens + t]);
        _mm256_storeu_ps(o, _mm256_fmadd_ps(p, vv, _mm256_loadu_ps(o)));
      }
    }
  }
}

}  // namespace optiq::kernels
