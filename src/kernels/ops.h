#pragma once
// Small per-row operations of the decoder (cheap next to matmul and attention): f32 in, f32 out.
#include <cstdint>

namespace optiq::kernels {

// y = w * x / sqrt(mean(x²) + eps); y may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);
// In place: x[i] = silu(x[i]) * up[i].
void silu_mul(float* x, const float* up, int64_t n);
// RoPE's rotation at position pos: cs[i] = cos(pos · inv_freq[i]) and sn[i] = sin(...) for i < half, the angles
// taken in double (positions reach 1e5+, where f32 angle products lose digits) and the results rounded to f32.
void rope_angles(int32_t pos, const float* inv_freq, int half, float* cs, float* sn);
// RoPE on n_heads heads of size head_dim, rotating the first rot_dims dims of each head by the angles of
// rope_angles (rot_dims / 2 of them). traditional=false: rotate-half pairs (i, i + rot/2); true: interleaved
// pairs (2i, 2i+1). Vectorized on AVX2 with the same f32 products and sums, so the same bits.
void rope(float* x, int n_heads, int head_dim, int rot_dims, const float* cs, const float* sn, bool traditional);
// In place softmax over n values (f32, max-subtracted).
void softmax(float* x, int64_t n);
// y[i] = x[i] as IEEE half, rounded to nearest even (inf past the range; a NaN stays a NaN). F16C where the CPU
// has it: the same bits as util/half.h's f32_to_f16 for every value but NaN payloads.
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);
namespace detail {
void f32_to_f16_row_avx2(const float* x, uint16_t* y, int64_t n);
void rms_norm_avx2(const float* x, const float* w, int64_t n, float eps, float* y);
void silu_mul_avx2(float* x, const float* up, int64_t n);
void rope_avx2(float* x, int n_heads, int head_dim, int rot_dims, const float* cs, const float* sn, bool traditional);
}

}  // namespace optiq::kernels
