// F16C versions of the small row operations in ops.h.
#include <immintrin.h>

#include "kernels/ops.h"
#include "util/half.h"

namespace optiq::kernels::detail {

void f32_to_f16_row_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

}  // namespace optiq::kernels::detail
