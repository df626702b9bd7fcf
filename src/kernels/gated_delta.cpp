#include "kernels/gated_delta.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/matmul.h"
#include "util/cpu.h"

namespace optiq::kernels {

// The per-row steps, vectorised in gated_delta_avx2.cpp.
namespace detail {
float delta_row_avx2(float* s, const float* k, const float* q, float alpha, float beta, float v, int n);
void axpy_avx2(float* y, float a, const float* x, int n);
}  // namespace detail

namespace {

// One state row through one token: s = alpha s; s += beta (v - s.k) k; returns s.q.
float delta_row(float* s, const float* k, const float* q, float alpha, float beta, float v, int n) {
  float m = 0;
  for (int j = 0; j < n; ++j) m += (s[j] *= alpha) * k[j];
  const float delta = beta * (v - m);
  float o = 0;
  for (int j = 0; j < n; ++j) o += (s[j] += delta * k[j]) * q[j];
  return o;
}

void axpy(float* y, float a, const float* x, int n) {  // y += a x
  if (active_isa() == Isa::Avx2 && n % 8 == 0) return detail::axpy_avx2(y, a, x, n);
  for (int j = 0; j < n; ++j) y[j] += a * x[j];
}

}  // namespace

void gated_delta_recurrent(const DeltaHeadIo& io, int T, int Dk, int Dv, float* S) {
  const bool avx2 = active_isa() == Isa::Avx2 && Dk % 8 == 0;
  for (int t = 0; t < T; ++t) {
    const float* q = io.q + size_t(t) * io.qk_stride;
    const float* k = io.k + size_t(t) * io.qk_stride;
    const float* v = io.v + size_t(t) * io.v_stride;
    float* o = io.out + size_t(t) * io.out_stride;
    const float alpha = std::exp(io.g[size_t(t) * io.ab_stride]), beta = io.beta[size_t(t) * io.ab_stride];
    for (int d = 0; d < Dv; ++d) {
      float* s = S + size_t(d) * size_t(Dk);
      o[d] = avx2 ? detail::delta_row_avx2(s, k, q, alpha, beta, v[d], Dk) : delta_row(s, k, q, alpha, beta, v[d], Dk);
    }
  }
}

// Within a chunk of C tokens entering with state S0, let G_i = g_0 + ... + g_i. Unrolling the rule,
//   S_i = e^{G_i} S0 + sum_{j<=i} e^{G_i - G_j} u_j k_j^T,
// where u_i = beta_i (v_i - e^{g_i} S_{i-1} k_i) is what token i writes; substituting S_{i-1} gives the
// lower-triangular system
//   u_i + beta_i sum_{j<i} e^{G_i - G_j} (k_i.k_j) u_j = beta_i (v_i - e^{G_i} S0 k_i),
// solved by forward substitution; then o_i = e^{G_i} S0 q_i + sum_{j<=i} e^{G_i - G_j} (q_i.k_j) u_j and the
// state leaving the chunk is S_{C-1}. Exponents are of differences G_i - G_j <= 0: no overflow.
void gated_delta_chunked(const DeltaHeadIo& io, int T, int Dk, int Dv, float* S, int chunk) {
  const size_t cn = static_cast<size_t>(chunk), dk = size_t(Dk), dv = size_t(Dv);
  std::vector<float> G(cn), kc(cn * dk), qc(cn * dk), kk(cn * cn), qk(cn * cn), u(cn * dv), o(cn * dv);
  std::vector<float> wkt(dk * cn), ut(dv * cn), ds(dv * dk);
  auto f32 = [](const float* data, int64_t rows, int64_t cols) {  // a row-major f32 matrix as matmul weights
    WeightView w;
    w.format = WeightFormat::F32;
    w.rows = rows, w.cols = cols;
    w.data = reinterpret_cast<const uint8_t*>(data);
    w.row_bytes = size_t(cols) * sizeof(float);
    return w;
  };
  for (int t0 = 0; t0 < T; t0 += chunk) {
    const int C = std::min(chunk, T - t0);
    double acc = 0;
    for (int i = 0; i < C; ++i) {
      G[size_t(i)] = float(acc += io.g[size_t(t0 + i) * io.ab_stride]);
      std::memcpy(&kc[size_t(i) * dk], io.k + size_t(t0 + i) * io.qk_stride, dk * sizeof(float));
      std::memcpy(&qc[size_t(i) * dk], io.q + size_t(t0 + i) * io.qk_stride, dk * sizeof(float));
    }
    // The chunk's products as matmuls: S0 k_i, S0 q_i [C, Dv]; k_i.k_j, q_i.k_j [C, C].
    const WeightView s0 = f32(S, Dv, Dk), kw = f32(kc.data(), C, Dk);
    matmul(s0, kc.data(), C, u.data());
    matmul(s0, qc.data(), C, o.data());
    matmul(kw, kc.data(), C, kk.data());
    matmul(kw, qc.data(), C, qk.data());
    for (int i = 0; i < C; ++i) {
      float* ui = u.data() + size_t(i) * dv;
      const float eg = std::exp(G[size_t(i)]), beta = io.beta[size_t(t0 + i) * io.ab_stride];
      const float* v = io.v + size_t(t0 + i) * io.v_stride;
      for (int d = 0; d < Dv; ++d) ui[d] = v[d] - eg * ui[d];
      for (int j = 0; j < i; ++j)
        axpy(ui, -std::exp(G[size_t(i)] - G[size_t(j)]) * kk[size_t(i * C + j)], u.data() + size_t(j) * dv, Dv);
      for (int d = 0; d < Dv; ++d) ui[d] *= beta;
    }
    for (int i = 0; i < C; ++i) {
      float* oi = o.data() + size_t(i) * dv;
      const float eg = std::exp(G[size_t(i)]);
      for (int d = 0; d < Dv; ++d) oi[d] *= eg;
      for (int j = 0; j <= i; ++j)
        axpy(oi, std::exp(G[size_t(i)] - G[size_t(j)]) * qk[size_t(i * C + j)], u.data() + size_t(j) * dv, Dv);
      std::memcpy(io.out + size_t(t0 + i) * io.out_stride, oi, dv * sizeof(float));
    }
    // S = e^{G_last} S0 + sum_j e^{G_last - G_j} u_j k_j^T, the sum as one matmul over the chunk.
    const float last = G[size_t(C - 1)], decay = std::exp(last);
    for (int j = 0; j < C; ++j) {
      const float w = std::exp(last - G[size_t(j)]);
      for (int e = 0; e < Dk; ++e) wkt[size_t(e) * size_t(C) + size_t(j)] = w * kc[size_t(j) * dk + size_t(e)];
      for (int d = 0; d < Dv; ++d) ut[size_t(d) * size_t(C) + size_t(j)] = u[size_t(j) * dv + size_t(d)];
    }
    matmul(f32(wkt.data(), Dk, C), ut.data(), Dv, ds.data());
    for (size_t e = 0; e < dv * dk; ++e) S[e] = decay * S[e] + ds[e];
  }
}

}  // namespace optiq::kernels
