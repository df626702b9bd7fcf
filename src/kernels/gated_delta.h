#pragma once
// The gated delta rule of Gated DeltaNet linear attention, for one value head over T consecutive tokens of
// one sequence. The state S [Dv, Dk] (row d: the key-space vector of value dimension d, f32) is updated in
// place; per token t, with alpha_t = exp(g_t):
//   S = alpha_t S;   S += beta_t (v_t - S k_t) k_t^T;   o_t = S q_t
// Two forms that give the same result: the recurrent one (one pass over S per token) and the chunked one
// (the WY form: within a chunk of C tokens the writes u solve a lower-triangular system, the products are
// matmuls, and S is read and written once per chunk). On CPUs the recurrent form is the faster one at every
// length (bench/delta_bench), so the model runs it for prefill and decode; the chunked form is the prefill
// form of GPU implementations, kept equal to it by tests. Work is split by the caller over heads and
// sequences.
#include <cstddef>

namespace optiq::kernels {

struct DeltaHeadIo {
  const float* q = nullptr;  // [T, qk_stride] rows of Dk (l2-normalised and scaled by the caller)
  const float* k = nullptr;
  size_t qk_stride = 0;
  const float* v = nullptr;  // [T, v_stride] rows of Dv
  size_t v_stride = 0;
  const float* g = nullptr;  // log decay per token (<= 0), at ab_stride
  const float* beta = nullptr;
  size_t ab_stride = 0;
  float* out = nullptr;      // [T, out_stride] rows of Dv
  size_t out_stride = 0;
};

void gated_delta_recurrent(const DeltaHeadIo& io, int T, int Dk, int Dv, float* S);
void gated_delta_chunked(const DeltaHeadIo& io, int T, int Dk, int Dv, float* S, int chunk = 64);

}  // namespace optiq::kernels
