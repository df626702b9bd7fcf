#include "kernels/attention.h"

#include <cmath>

#include "kernels/ops.h"
#include "util/cpu.h"
#include "util/half.h"

namespace optiq::kernels {

void attention_f16_ref(const AttentionArgs& a) {
  const int d = a.head_dim;
  for (int r = 0; r < a.rep; ++r) {
    const float* q = a.q + int64_t(r) * d;
    float* s = a.scratch + int64_t(r) * a.n_tokens;
    for (int t = 0; t < a.n_tokens; ++t) {
      const uint16_t* k = a.k + size_t(t) * a.kv_stride;
      float dot = 0;
      for (int i = 0; i < d; ++i) dot += q[i] * f16_to_f32(k[i]);
      s[t] = dot * a.scale;
    }
    softmax(s, a.n_tokens);
    float* o = a.out + int64_t(r) * d;
    for (int i = 0; i < d; ++i) o[i] = 0;
    for (int t = 0; t < a.n_tokens; ++t) {
      const uint16_t* v = a.v + size_t(t) * a.kv_stride;
      for (int i = 0; i < d; ++i) o[i] += s[t] * f16_to_f32(v[i]);
    }
  }
}

void attention_f16(const AttentionArgs& a) {
  if (active_isa() == Isa::Avx2 && a.head_dim % 8 == 0) return attention_f16_avx2(a);
  attention_f16_ref(a);
}

}  // namespace optiq::kernels
