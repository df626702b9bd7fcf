// The AVX2 attention kernel agrees with the scalar reference, and the reference agrees with a
// double-precision softmax(q·k) v computed here, for GQA groups and awkward token counts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/attention.h"
#include "util/cpu.h"
#include "util/half.h"

using namespace optiq;
using namespace optiq::kernels;

namespace {

struct Data {
  std::vector<float> q;
  std::vector<uint16_t> kv_k, kv_v;
};

Data make(int rep, int n_tokens, int n_kv, int hd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Data d;
  d.q.resize(size_t(rep * hd));
  for (auto& x : d.q) x = nd(rng);
  d.kv_k.resize(size_t(n_tokens) * n_kv * hd);
  d.kv_v.resize(d.kv_k.size());
  for (auto& x : d.kv_k) x = f32_to_f16(nd(rng));
  for (auto& x : d.kv_v) x = f32_to_f16(nd(rng));
  return d;
}

TEST(Attention, ReferenceMatchesDoublePrecision) {
  const int rep = 3, n_tokens = 37, n_kv = 2, hd = 16, g = 1;
  Data d = make(rep, n_tokens, n_kv, hd, 1);
  std::vector<float> out(size_t(rep * hd)), scratch(size_t(rep * n_tokens));
  AttentionArgs a{d.q.data(), rep, d.kv_k.data() + g * hd, d.kv_v.data() + g * hd, size_t(n_kv * hd),
                  n_tokens, hd, 0.25f, out.data(), scratch.data()};
  attention_f16_ref(a);
  for (int r = 0; r < rep; ++r) {
    std::vector<double> s(static_cast<size_t>(n_tokens));
    double mx = -1e300;
    for (int t = 0; t < n_tokens; ++t) {
      double dot = 0;
      for (int i = 0; i < hd; ++i) dot += double(d.q[size_t(r * hd + i)]) * f16_to_f32(d.kv_k[size_t(t * n_kv * hd + g * hd + i)]);
      s[size_t(t)] = dot * 0.25;
      mx = std::max(mx, s[size_t(t)]);
    }
    double z = 0;
    for (auto& x : s) z += x = std::exp(x - mx);
    for (int i = 0; i < hd; ++i) {
      double o = 0;
      for (int t = 0; t < n_tokens; ++t) o += s[size_t(t)] / z * f16_to_f32(d.kv_v[size_t(t * n_kv * hd + g * hd + i)]);
      EXPECT_NEAR(out[size_t(r * hd + i)], o, 1e-5) << r << " " << i;
    }
  }
}

TEST(Attention, Avx2MatchesReference) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  for (int hd : {8, 64, 128})
    for (int rep : {1, 2, 4})
      for (int n_tokens : {1, 7, 33, 300}) {
        const int n_kv = 2;
        Data d = make(rep, n_tokens, n_kv, hd, uint32_t(hd * 1000 + rep * 100 + n_tokens));
        std::vector<float> o1(size_t(rep * hd)), o2(o1.size()), s(size_t(rep * n_tokens));
        AttentionArgs a{d.q.data(), rep, d.kv_k.data() + hd, d.kv_v.data() + hd, size_t(n_kv * hd),
                        n_tokens, hd, 1.0f / std::sqrt(float(hd)), o1.data(), s.data()};
        attention_f16_ref(a);
        a.out = o2.data();
        attention_f16_avx2(a);
        for (size_t i = 0; i < o1.size(); ++i) ASSERT_NEAR(o1[i], o2[i], 1e-5f) << hd << " " << rep << " " << n_tokens;
      }
}

}  // namespace
