// Attention over fp16 and quantized KV storage: the fused kernels (scalar and AVX2, any thread count,
// split or not) equal a reference that dequantizes the whole cache and runs plain attention in double,
// up to f32 rounding, for every bits / group size, GQA ratio, query-tile height and awkward lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/attention.h"
#include "kernels/hadamard.h"
#include "quant/mlx_affine.h"
#include "util/cpu.h"
#include "util/half.h"

using namespace optiq;
using namespace optiq::kernels;

namespace {

// One layer's K/V storage for n tokens, filled with random rows stored the way the KV cache stores them.
struct Store {
  KvLayerView view;
  std::vector<uint8_t> k, v;
  std::vector<uint16_t> ks, kb, vs, vb;
};

Store make_store(int bits, int gs, int n_kv, int hd, int n, uint32_t seed) {
  Store s;
  KvLayerView& w = s.view;
  w.bits = bits;
  w.group_size = gs;
  w.n_kv_heads = n_kv;
  w.head_dim = hd;
  w.n_tokens = n;
  // Head-major with room for 3 more tokens per head than stored, as a growing cache has.
  const int cap = n + 3;
  w.head_stride = size_t(cap) * w.head_bytes();
  w.param_head_stride = size_t(cap) * size_t(w.head_groups());
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  s.k.resize(size_t(n_kv) * w.head_stride);
  s.v.resize(s.k.size());
  const size_t hg = size_t(w.head_groups());
  for (auto* p : {&s.ks, &s.kb, &s.vs, &s.vb}) p->resize(size_t(n_kv) * w.param_head_stride);
  std::vector<float> row(static_cast<size_t>(hd)), sc(hg), bi(hg);
  for (int t = 0; t < n; ++t)
    for (int g = 0; g < n_kv; ++g)
      for (int which = 0; which < 2; ++which) {
        for (int i = 0; i < hd; ++i) row[size_t(i)] = nd(rng) * (i % 17 == 3 ? 6.0f : 1.0f);  // a few outlier channels
        uint8_t* dst = (which ? s.v.data() : s.k.data()) + size_t(g) * w.head_stride + size_t(t) * w.head_bytes();
        if (bits == 16) {
          uint16_t* h = reinterpret_cast<uint16_t*>(dst);
          for (int i = 0; i < hd; ++i) h[i] = f32_to_f16(row[size_t(i)]);
          continue;
        }
        quant::quantize_row(row.data(), hd, bits, gs, dst, sc.data(), bi.data());
        const size_t p = size_t(g) * w.param_head_stride + size_t(t) * hg;
        for (size_t e = 0; e < hg; ++e) {
          (which ? s.vs : s.ks)[p + e] = f32_to_f16(sc[e]);
          (which ? s.vb : s.kb)[p + e] = f32_to_f16(bi[e]);
        }
      }
  w.k = s.k.data();
  w.v = s.v.data();
  if (bits != 16) {
    w.k_scales = s.ks.data();
    w.k_biases = s.kb.data();
    w.v_scales = s.vs.data();
    w.v_biases = s.vb.data();
  }
  return s;
}

struct Case {
  int bits, gs, hd, n_kv, rep, rows, n;
};

// Runs one case with the given ISA and thread count; returns the max abs difference to the reference, and
// the kernel's output in *got when given.
double run_case(const Case& c, Isa isa, int threads, std::vector<float>* got = nullptr) {
  Store st = make_store(c.bits, c.gs, c.n_kv, c.hd, c.n, uint32_t(c.bits * 7919 + c.gs * 131 + c.hd * 17 + c.n + c.rep * 3 + c.rows));
  const int nh = c.n_kv * c.rep;
  const size_t q_dim = size_t(nh) * c.hd;
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(size_t(c.rows) * q_dim);
  for (auto& x : q) x = nd(rng);
  std::vector<int> limits(size_t(c.rows));
  for (int i = 0; i < c.rows; ++i) limits[size_t(i)] = c.n - c.rows + 1 + i;  // consecutive positions, causal
  std::vector<float> out(q.size(), -1.0f), ref(q.size(), -2.0f);
  std::vector<AttentionTile> tiles;
  for (int g = 0; g < c.n_kv; ++g) {
    AttentionTile t;
    t.kv = &st.view;
    t.kv_head = g;
    t.rows = c.rows;
    t.rep = c.rep;
    t.q = q.data() + size_t(g) * c.rep * c.hd;
    t.q_stride = q_dim;
    t.out = out.data() + size_t(g) * c.rep * c.hd;
    t.out_stride = q_dim;
    t.limits = limits.data();
    t.scale = 1.0f / std::sqrt(float(c.hd));
    tiles.push_back(t);
  }
  set_active_isa(isa);
  attention(tiles, threads);
  set_active_isa(detected_isa());
  for (auto t : tiles) {
    t.out = ref.data() + (t.out - out.data());
    attention_reference(t);
  }
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(double(out[i]) - double(ref[i])));
  if (got) *got = out;
  return worst;
}

std::vector<Isa> isas() {
  std::vector<Isa> v{Isa::Scalar};
  if (detected_isa() == Isa::Avx2) v.push_back(Isa::Avx2);
  return v;
}

TEST(Attention, QuantizedEqualsDequantizedReference) {
  for (Isa isa : isas())
    for (int bits : {16, 8, 6, 5, 4, 3, 2})
      for (int gs : {8, 32, 64, 128}) {
        if (bits == 16 && gs != 64) continue;
        for (Case c : {Case{bits, gs, 128, 2, 2, 1, 300}, Case{bits, gs, 128, 1, 4, 1, 1}, Case{bits, gs, 64, 2, 1, 3, 257},
                       Case{bits, gs, 8, 4, 2, 2, 33}, Case{bits, gs, 128, 2, 8, 1, 1100}, Case{bits, gs, 96, 1, 2, 1, 70},
                       Case{bits, gs, 256, 1, 2, 2, 300}}) {
          if (c.bits != 16 && (c.gs > c.hd || c.hd % c.gs != 0)) continue;
          for (int threads : {1, 2, 3}) {
            double err = run_case(c, isa, threads);
            ASSERT_LT(err, 2e-5) << "isa=" << isa_name(isa) << " bits=" << bits << " gs=" << gs << " hd=" << c.hd
                                 << " n_kv=" << c.n_kv << " rep=" << c.rep << " rows=" << c.rows << " n=" << c.n
                                 << " threads=" << threads;
          }
        }
      }
}

// fp16 K/V on CPUs with AVX-512 run 512-bit loops (sixteen partial sums per K dot, not eight): both widths stay
// within the reference's bound, and they agree with each other to float rounding.
TEST(Attention, Fp16NarrowAndWideKernelsMatchTheReference) {
  if (detected_isa() != Isa::Avx2 || !avx512_detected()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (Case c : {Case{16, 64, 128, 2, 2, 1, 300}, Case{16, 64, 128, 1, 4, 1, 1}, Case{16, 64, 64, 2, 1, 3, 257},
                 Case{16, 64, 8, 4, 2, 2, 33}, Case{16, 64, 96, 1, 2, 1, 70}, Case{16, 64, 256, 1, 2, 2, 300},
                 Case{16, 64, 128, 1, 3, 2, 517}, Case{16, 64, 80, 2, 2, 1, 1030}})
    for (int threads : {1, 2}) {
      std::vector<float> wide, narrow;
      set_avx512_active(false);
      const double err_narrow = run_case(c, Isa::Avx2, threads, &narrow);
      set_avx512_active(true);
      const double err_wide = run_case(c, Isa::Avx2, threads, &wide);
      SCOPED_TRACE("hd=" + std::to_string(c.hd) + " rep=" + std::to_string(c.rep) + " rows=" + std::to_string(c.rows) +
                   " n=" + std::to_string(c.n) + " threads=" + std::to_string(threads));
      EXPECT_LT(err_narrow, 2e-5);
      EXPECT_LT(err_wide, 2e-5);
      double diff = 0;
      for (size_t i = 0; i < wide.size(); ++i) diff = std::max(diff, std::fabs(double(wide[i]) - double(narrow[i])));
      EXPECT_LT(diff, 2e-5);
    }
}

TEST(Attention, LongSequenceSplitAcrossThreadsEqualsOneThread) {
  // One tile, 5000 tokens: split into pieces over 2 threads and merged, the result is the reference's.
  for (Isa isa : isas()) {
    double err = run_case(Case{4, 64, 128, 1, 2, 1, 5000}, isa, 2);
    EXPECT_LT(err, 2e-5) << isa_name(isa);
  }
}

// The 512-bit variants for 4-bit K/V give the 256-bit kernels' numbers bit for bit, so the bounds above hold for both.
TEST(Attention, Avx512EqualsAvx2BitForBit) {
  if (detected_isa() != Isa::Avx2 || !avx512_detected()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int gs : {32, 64, 128})
    for (Case c : {Case{4, gs, 128, 2, 2, 1, 300}, Case{4, gs, 128, 1, 4, 1, 1}, Case{4, gs, 64, 2, 1, 3, 257},
                   Case{4, gs, 128, 2, 8, 1, 1100}, Case{4, gs, 96, 1, 2, 1, 70}, Case{4, gs, 256, 1, 2, 2, 300},
                   Case{4, gs, 128, 1, 3, 2, 517}}) {
      if (c.gs > c.hd || c.hd % c.gs != 0) continue;
      for (int threads : {1, 2}) {
        std::vector<float> wide, narrow;
        set_avx512_active(true);
        run_case(c, Isa::Avx2, threads, &wide);
        set_avx512_active(false);
        run_case(c, Isa::Avx2, threads, &narrow);
        set_avx512_active(true);
        ASSERT_EQ(wide, narrow) << "gs=" << gs << " hd=" << c.hd << " rep=" << c.rep << " rows=" << c.rows << " n=" << c.n
                                << " threads=" << threads;
      }
    }
}

TEST(Attention, ReferenceIsSoftmaxOfDots) {
  // A two-token cache with hand-checkable numbers: softmax([q·k0, q·k1]) weighting v0, v1.
  Store st = make_store(16, 64, 1, 8, 2, 5);
  std::vector<float> q(8, 0.0f), out(8);
  q[0] = 1.0f;
  int lim = 2;
  AttentionTile t;
  t.kv = &st.view;
  t.q = q.data();
  t.out = out.data();
  t.limits = &lim;
  attention_reference(t);
  const uint16_t* k0 = reinterpret_cast<const uint16_t*>(st.view.k_row(0, 0));
  const uint16_t* k1 = reinterpret_cast<const uint16_t*>(st.view.k_row(0, 1));
  const uint16_t* v0 = reinterpret_cast<const uint16_t*>(st.view.v_row(0, 0));
  const uint16_t* v1 = reinterpret_cast<const uint16_t*>(st.view.v_row(0, 1));
  double s0 = f16_to_f32(k0[0]), s1 = f16_to_f32(k1[0]);
  double w0 = 1.0 / (1.0 + std::exp(s1 - s0));
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(out[size_t(i)], w0 * f16_to_f32(v0[i]) + (1 - w0) * f16_to_f32(v1[i]), 1e-6);
}

TEST(Hadamard, OrthogonalAndSelfInverse) {
  for (int n : {2, 8, 64, 128, 256}) {
    std::vector<float> x(static_cast<size_t>(n)), y;
    std::mt19937 rng(static_cast<uint32_t>(n));
    std::normal_distribution<float> nd;
    for (auto& e : x) e = nd(rng);
    y = x;
    hadamard(y.data(), n);
    double nx = 0, ny = 0;
    for (int i = 0; i < n; ++i) nx += double(x[size_t(i)]) * x[size_t(i)], ny += double(y[size_t(i)]) * y[size_t(i)];
    EXPECT_NEAR(nx, ny, 1e-4 * nx) << n;
    hadamard(y.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)], 1e-5) << n;
  }
  // H/sqrt(2) on (1, 0) is (1, 1)/sqrt(2).
  float e[2] = {1.0f, 0.0f};
  hadamard(e, 2);
  EXPECT_FLOAT_EQ(e[0], 1.0f / std::sqrt(2.0f));
  EXPECT_FLOAT_EQ(e[1], 1.0f / std::sqrt(2.0f));
}

}  // namespace
