#include "kernels/gated_delta.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/cpu.h"

namespace optiq::kernels {

// The per-row steps, vectorised in gated_delta_avx2.cpp.
namespace detail {
float delta_row_avx2(float* s, const float* k, const float* q, float alpha, float beta, float v, int n);
float dot_avx2(const float* a, const float* b, int n);
void axpy_avx2(float* y, float a, const float* x, int n);
void scale_axpy_avx2(float* y, float s, float a, const float* x, int n);
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

float dot(const float* a, const float* b, int n) {
  if (active_isa() == Isa::Avx2 && n % 8 == 0) return detail::dot_avx2(a, b, n);
  float r = 0;
  for (int j = 0; j < n; ++j) r += a[j] * b[j];
  return r;
}

void axpy(float* y, float a, const float* x, int n) {  // y += a x
  if (active_isa() == Isa::Avx2 && n % 8 == 0) return detail::axpy_avx2(y, a, x, n);
  for (int j = 0; j < n; ++j) y[j] += a * x[j];
}

void scale_axpy(float* y, float s, float a, const float* x, int n) {  // y = s y + a x
  if (active_isa() == Isa::Avx2 && n % 8 == 0) return detail::scale_axpy_avx2(y, s, a, x, n);
  for (int j = 0; j < n; ++j) y[j] = s * y[j] + a * x[j];
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
  const size_t cn = static_cast<size_t>(chunk);
  std::vector<float> G(cn), kk(cn * cn), qk(cn * cn);
  std::vector<float> u(cn * size_t(Dv)), o(cn * size_t(Dv));
  for (int t0 = 0; t0 < T; t0 += chunk) {
    const int C = std::min(chunk, T - t0);
    auto K = [&](int i) { return io.k + size_t(t0 + i) * io.qk_stride; };
    auto Q = [&](int i) { return io.q + size_t(t0 + i) * io.qk_stride; };
    double acc = 0;
    for (int i = 0; i < C; ++i) G[size_t(i)] = float(acc += io.g[size_t(t0 + i) * io.ab_stride]);
    for (int i = 0; i < C; ++i)
      for (int j = 0; j <= i; ++j) {
        const float w = std::exp(G[size_t(i)] - G[size_t(j)]);
        kk[size_t(i * C + j)] = w * dot(K(i), K(j), Dk);
        qk[size_t(i * C + j)] = w * dot(Q(i), K(j), Dk);
      }
    // S0 k_i and S0 q_i, one pass over S0.
    for (int d = 0; d < Dv; ++d) {
      const float* s = S + size_t(d) * size_t(Dk);
      for (int i = 0; i < C; ++i) {
        const float eg = std::exp(G[size_t(i)]);
        u[size_t(i * Dv + d)] = eg * dot(s, K(i), Dk);
        o[size_t(i * Dv + d)] = eg * dot(s, Q(i), Dk);
      }
    }
    for (int i = 0; i < C; ++i) {
      float* ui = u.data() + size_t(i) * size_t(Dv);
      const float beta = io.beta[size_t(t0 + i) * io.ab_stride];
      const float* v = io.v + size_t(t0 + i) * io.v_stride;
      for (int d = 0; d < Dv; ++d) ui[d] = v[d] - ui[d];
      for (int j = 0; j < i; ++j) axpy(ui, -kk[size_t(i * C + j)], u.data() + size_t(j) * size_t(Dv), Dv);
      for (int d = 0; d < Dv; ++d) ui[d] *= beta;
    }
    for (int i = 0; i < C; ++i) {
      float* oi = o.data() + size_t(i) * size_t(Dv);
      for (int j = 0; j <= i; ++j) axpy(oi, qk[size_t(i * C + j)], u.data() + size_t(j) * size_t(Dv), Dv);
      float* dst = io.out + size_t(t0 + i) * io.out_stride;
      for (int d = 0; d < Dv; ++d) dst[d] = oi[d];
    }
    // S = e^{G_last} S0 + sum_j e^{G_last - G_j} u_j k_j^T.
    const float last = G[size_t(C - 1)], decay = std::exp(last);
    for (int j = 0; j < C; ++j) G[size_t(j)] = std::exp(last - G[size_t(j)]);
    for (int d = 0; d < Dv; ++d) {
      float* s = S + size_t(d) * size_t(Dk);
      scale_axpy(s, decay, G[0] * u[size_t(d)], K(0), Dk);
      for (int j = 1; j < C; ++j) axpy(s, G[size_t(j)] * u[size_t(j * Dv + d)], K(j), Dk);
    }
  }
}

}  // namespace optiq::kernels
