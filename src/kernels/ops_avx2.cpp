// F16C versions of the small row operations in ops.h.
#include <immintrin.h>

#include <cmath>

#include "kernels/ops.h"
#include "kernels/simd_avx2.h"
#include "util/half.h"

namespace optiq::kernels::detail {

// Σx² in double as the scalar code, in 4 lanes of 4 partial sums (the scalar loop is one chain of dependent
// double adds: about 4 cycles an element); each y[i] is then the same f32 product as the scalar code's.
void rms_norm_avx2(const float* x, const float* w, int64_t n, float eps, float* y) {
  __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 4; ++k) {
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * k));
      a[k] = _mm256_fmadd_pd(v, v, a[k]);
    }
  const __m256d s = _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3]));
  double lanes[4];
  _mm256_storeu_pd(lanes, s);
  double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  const __m256 vi = _mm256_set1_ps(inv);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_mul_ps(_mm256_loadu_ps(x + j), vi)));
  for (; j < n; ++j) y[j] = w[j] * (x[j] * inv);
}

// silu(x) = x·sigmoid(x) with e = exp(-|x|) (never overflows): sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e)
// below. Within a few ulp of the scalar x / (1 + exp(-x)).
void silu_mul_avx2(float* x, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = exp_neg(_mm256_or_ps(v, sign));  // exp(-|v|)
    const __m256 num = _mm256_blendv_ps(one, e, v);    // sign bit of v set: e
    const __m256 sig = _mm256_div_ps(num, _mm256_add_ps(one, e));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(v, sig), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i])) * up[i];
}

void f32_to_f16_row_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

// Products rounded to f32 on their own: the empty asm keeps the compiler from fusing a product into the
// following add or subtract (-mfma), so every value is the scalar code's round(round(a·b) ± round(c·d)).
inline __m256 rounded(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}
inline float rounded(float v) {
  __asm__("" : "+x"(v));
  return v;
}

// rope() 8 values at a time. Rotate-half pairs (i, i + half): 8 pairs per step. Interleaved pairs (2i, 2i+1):
// 4 pairs per step, each angle's cos and sin duplicated over its pair; with P = v·cos and Q = swapped(v)·sin,
// addsub gives P - Q in the even lanes (x0·cos - x1·sin) and P + Q in the odd ones (x1·cos + x0·sin, the scalar
// sum x0·sin + x1·cos in the other order: the same f32 value).
void rope_avx2(float* x, int n_heads, int head_dim, int rot_dims, const float* cs, const float* sn, bool traditional) {
  const int half = rot_dims / 2;
  const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    int i = 0;
    if (!traditional) {
      for (; i + 8 <= half; i += 8) {
        const __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + half + i);
        const __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
        const __m256 ac = rounded(_mm256_mul_ps(a, c)), bs = rounded(_mm256_mul_ps(b, s));
        const __m256 as = rounded(_mm256_mul_ps(a, s)), bc = rounded(_mm256_mul_ps(b, c));
        _mm256_storeu_ps(v + i, _mm256_sub_ps(ac, bs));
        _mm256_storeu_ps(v + half + i, _mm256_add_ps(as, bc));
      }
    } else {
      for (; i + 4 <= half; i += 4) {
        const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cs + i)), dup);
        const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sn + i)), dup);
        const __m256 w = _mm256_loadu_ps(v + 2 * i);
        const __m256 p = rounded(_mm256_mul_ps(w, c)), q = rounded(_mm256_mul_ps(_mm256_permute_ps(w, 0xB1), s));
        _mm256_storeu_ps(v + 2 * i, _mm256_addsub_ps(p, q));
      }
    }
    for (; i < half; ++i) {
      const int a = traditional ? 2 * i : i, b = traditional ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = rounded(x0 * cs[i]) - rounded(x1 * sn[i]);
      v[b] = rounded(x0 * sn[i]) + rounded(x1 * cs[i]);
    }
  }
}

}  // namespace optiq::kernels::detail
