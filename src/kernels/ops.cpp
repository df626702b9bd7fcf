#include "kernels/ops.h"

#include <cmath>

#include "util/cpu.h"
#include "util/half.h"

namespace optiq::kernels {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  if (active_isa() == Isa::Avx2) return detail::rms_norm_avx2(x, w, n, eps, y);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

void silu_mul(float* x, const float* up, int64_t n) {
  if (active_isa() == Isa::Avx2) return detail::silu_mul_avx2(x, up, n);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i])) * up[i];
}

void rope_angles(int32_t pos, const float* inv_freq, int half, float* cs, float* sn) {
  for (int i = 0; i < half; ++i) {
    const double a = double(pos) * double(inv_freq[i]);
    cs[i] = float(std::cos(a));
    sn[i] = float(std::sin(a));
  }
}

void rope(float* x, int n_heads, int head_dim, int rot_dims, const float* cs, const float* sn, bool traditional) {
  if (active_isa() == Isa::Avx2) return detail::rope_avx2(x, n_heads, head_dim, rot_dims, cs, sn, traditional);
  const int half = rot_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      int a = traditional ? 2 * i : i;
      int b = traditional ? 2 * i + 1 : i + half;
      float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::fmax(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
  if (active_isa() == Isa::Avx2) return detail::f32_to_f16_row_avx2(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

}  // namespace optiq::kernels
