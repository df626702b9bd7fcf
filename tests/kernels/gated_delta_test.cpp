// The chunked (WY) and recurrent forms of the gated delta rule give the same outputs and final state, on
// both ISAs, for lengths that do and do not fill whole chunks; and both equal a direct float64 evaluation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/gated_delta.h"
#include "util/cpu.h"

using namespace optiq;

namespace {

TEST(GatedDelta, ChunkedEqualsRecurrent) {
  const int Dk = 32, Dv = 16;
  for (int T : {1, 7, 64, 150}) {
    std::mt19937 rng{static_cast<uint32_t>(T)};
    std::uniform_real_distribution<float> u(-1, 1), decay(-0.5f, -0.001f), b(0.1f, 0.9f);
    std::vector<float> q(size_t(T) * Dk), k(size_t(T) * Dk), v(size_t(T) * Dv), g(static_cast<size_t>(T)), beta(static_cast<size_t>(T)), S0(size_t(Dv) * Dk);
    auto unit = [&](float* x) {
      double n = 0;
      for (int i = 0; i < Dk; ++i) n += double(x[i]) * x[i];
      for (int i = 0; i < Dk; ++i) x[i] = float(x[i] / std::sqrt(n));
    };
    for (auto& x : q) x = u(rng);
    for (auto& x : k) x = u(rng);
    for (int t = 0; t < T; ++t) unit(&k[size_t(t) * Dk]), unit(&q[size_t(t) * Dk]);
    for (auto& x : v) x = u(rng);
    for (auto& x : g) x = decay(rng);
    for (auto& x : beta) x = b(rng);
    for (auto& x : S0) x = 0.3f * u(rng);

    // float64 reference, straight from the rule.
    std::vector<double> S(S0.begin(), S0.end()), ref_o(size_t(T) * Dv);
    for (int t = 0; t < T; ++t) {
      const double a = std::exp(double(g[size_t(t)]));
      for (int d = 0; d < Dv; ++d) {
        double* s = &S[size_t(d) * Dk];
        double m = 0;
        for (int j = 0; j < Dk; ++j) m += (s[j] *= a) * k[size_t(t) * Dk + j];
        const double delta = beta[size_t(t)] * (v[size_t(t) * Dv + d] - m);
        double o = 0;
        for (int j = 0; j < Dk; ++j) o += (s[j] += delta * k[size_t(t) * Dk + j]) * q[size_t(t) * Dk + j];
        ref_o[size_t(t) * Dv + d] = o;
      }
    }
    for (Isa isa : {Isa::Avx2, Isa::Scalar}) {
      set_active_isa(isa);
      for (bool chunked : {false, true}) {
        std::vector<float> St = S0, out(size_t(T) * Dv);
        kernels::DeltaHeadIo io;
        io.q = q.data(), io.k = k.data(), io.qk_stride = Dk;
        io.v = v.data(), io.v_stride = Dv;
        io.g = g.data(), io.beta = beta.data(), io.ab_stride = 1;
        io.out = out.data(), io.out_stride = Dv;
        if (chunked) kernels::gated_delta_chunked(io, T, Dk, Dv, St.data(), 16);
        else kernels::gated_delta_recurrent(io, T, Dk, Dv, St.data());
        const std::string where = std::string(chunked ? "chunked" : "recurrent") + " T=" + std::to_string(T) + " " + isa_name(isa);
        for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref_o[i], 2e-5) << where << " output " << i;
        for (size_t i = 0; i < St.size(); ++i) ASSERT_NEAR(St[i], S[i], 2e-5) << where << " state " << i;
      }
    }
  }
  set_active_isa(detected_isa());
}

}  // namespace
