// AVX2 + FMA rows of the gated delta rule (kernels/gated_delta.cpp); n is a multiple of 8.
#include <immintrin.h>

namespace optiq::kernels::detail {

namespace {
float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace

float delta_row_avx2(float* s, const float* k, const float* q, float alpha, float beta, float v, int n) {
  const __m256 a = _mm256_set1_ps(alpha);
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) {
    __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + j), a);
    _mm256_storeu_ps(s + j, x);
    m = _mm256_fmadd_ps(x, _mm256_loadu_ps(k + j), m);
  }
  const __m256 delta = _mm256_set1_ps(beta * (v - hsum(m)));
  __m256 o = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) {
    __m256 x = _mm256_fmadd_ps(delta, _mm256_loadu_ps(k + j), _mm256_loadu_ps(s + j));
    _mm256_storeu_ps(s + j, x);
    o = _mm256_fmadd_ps(x, _mm256_loadu_ps(q + j), o);
  }
  return hsum(o);
}

void axpy_avx2(float* y, float a, const float* x, int n) {
  const __m256 av = _mm256_set1_ps(a);
  for (int j = 0; j < n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
}

}  // namespace optiq::kernels::detail
