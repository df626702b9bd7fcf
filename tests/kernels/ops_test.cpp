#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "util/cpu.h"
#include "util/half.h"

using namespace optiq;

namespace {
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

// The KV cache stores fp16 rows through f32_to_f16_row: with F16C it must give the bits of the scalar
// conversion (round to nearest even, subnormals, overflow to inf) for every value, in rows of any length.
TEST(Ops, F32ToF16RowEqualsTheScalarConversion) {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, 6.09e-5f, 1e-10f, -3.0e-6f,
                          // halfway between two halves: 1 + 2^-11 (ties to even: 1) and 1 + 3 * 2^-11 (up)
                          from_bits(0x3f801000), from_bits(0x3f803000), std::nanf("")};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 20000; ++i) x.push_back(from_bits(any(rng)));  // every exponent, NaNs included
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int i = 0; i < 1003; ++i) x.push_back(nd(rng));                 // and a length that is not a multiple of 8
  for (Isa isa : {Isa::Avx2, Isa::Scalar}) {
    if (isa == Isa::Avx2 && detected_isa() != Isa::Avx2) continue;
    set_active_isa(isa);
    std::vector<uint16_t> y(x.size(), 0x1234);
    kernels::f32_to_f16_row(x.data(), y.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(x[i])) {
        EXPECT_TRUE(std::isnan(f16_to_f32(y[i]))) << i;
        continue;
      }
      ASSERT_EQ(y[i], f32_to_f16(x[i])) << "value " << x[i] << " (bits " << std::hex << bits(x[i]) << ") isa " << isa_name(isa);
    }
  }
  set_active_isa(detected_isa());
}

// rms_norm and silu_mul run vectorized on AVX2: rms_norm sums x² in double as the scalar code in another order,
// so it agrees to a relative 1e-6 (each y[i] the same product of w, x and the inverse); silu_mul's exp is a
// polynomial, within 1e-6 relative of x / (1 + exp(-x)), and saturates as it does: 0 (or -0) far below zero,
// x far above, for rows of any length (vector body and scalar tail), y aliasing x.
TEST(Ops, VectorRmsNormAndSiluAgreeWithTheScalarCode) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int64_t n : {1, 7, 16, 37, 128, 1024}) {
    std::vector<float> x(static_cast<size_t>(n)), w(x), up(x);
    for (int64_t i = 0; i < n; ++i) x[size_t(i)] = nd(rng), w[size_t(i)] = nd(rng), up[size_t(i)] = nd(rng);
    if (n >= 16) {  // saturating inputs of silu
      x[0] = -200.0f, x[1] = 200.0f, x[2] = 0.0f, x[3] = -0.0f, x[4] = -87.5f, x[5] = 1e30f, x[6] = -1e30f, x[7] = 88.0f;
    }
    std::vector<float> ys(static_cast<size_t>(n)), yv(ys), ya = x, ss = x, sv = x;
    set_active_isa(Isa::Scalar);
    kernels::rms_norm(x.data(), w.data(), n, 1e-6f, ys.data());
    kernels::silu_mul(ss.data(), up.data(), n);
    set_active_isa(Isa::Avx2);
    kernels::rms_norm(x.data(), w.data(), n, 1e-6f, yv.data());
    kernels::rms_norm(ya.data(), w.data(), n, 1e-6f, ya.data());  // in place
    kernels::silu_mul(sv.data(), up.data(), n);
    set_active_isa(detected_isa());
    for (int64_t i = 0; i < n; ++i) {
      SCOPED_TRACE("n=" + std::to_string(n) + " i=" + std::to_string(i) + " x=" + std::to_string(x[size_t(i)]));
      EXPECT_NEAR(yv[size_t(i)], ys[size_t(i)], 1e-6 * std::fabs(ys[size_t(i)]) + 1e-30);
      EXPECT_EQ(bits(ya[size_t(i)]), bits(yv[size_t(i)]));
      EXPECT_NEAR(sv[size_t(i)], ss[size_t(i)], 1e-6 * std::fabs(ss[size_t(i)]) + 1e-35);
    }
  }
}

// RoPE vectorized on AVX2 gives the scalar code's bits: rotate-half and interleaved pairs, a partial rotation
// (rot_dims < head_dim, the rest untouched), half sizes with a scalar tail, positions up to 1e5.
TEST(Ops, VectorRopeEqualsTheScalarCodeBitForBit) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  struct Shape { int heads, head_dim, rot; };
  for (const Shape& sh : {Shape{16, 128, 128}, Shape{3, 64, 32}, Shape{2, 80, 80}, Shape{4, 96, 24}, Shape{1, 12, 12}})
    for (bool traditional : {false, true})
      for (int32_t pos : {0, 1, 17, 4095, 100000}) {
        const int half = sh.rot / 2;
        std::vector<float> inv(static_cast<size_t>(half)), cs(inv), sn(inv);
        for (int i = 0; i < half; ++i) inv[size_t(i)] = std::pow(1e6f, -2.0f * float(i) / float(sh.rot));
        kernels::rope_angles(pos, inv.data(), half, cs.data(), sn.data());
        std::vector<float> x(size_t(sh.heads) * size_t(sh.head_dim));
        for (auto& e : x) e = nd(rng);
        std::vector<float> ys = x, yv = x;
        set_active_isa(Isa::Scalar);
        kernels::rope(ys.data(), sh.heads, sh.head_dim, sh.rot, cs.data(), sn.data(), traditional);
        set_active_isa(Isa::Avx2);
        kernels::rope(yv.data(), sh.heads, sh.head_dim, sh.rot, cs.data(), sn.data(), traditional);
        set_active_isa(detected_isa());
        SCOPED_TRACE("head_dim=" + std::to_string(sh.head_dim) + " rot=" + std::to_string(sh.rot) +
                     " traditional=" + std::to_string(traditional) + " pos=" + std::to_string(pos));
        if (pos != 0) EXPECT_NE(ys, x);  // (position 0: no rotation)
        for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits(yv[i]), bits(ys[i])) << i;
        for (int h = 0; h < sh.heads; ++h)  // past rot_dims: untouched
          for (int e = sh.rot; e < sh.head_dim; ++e) EXPECT_EQ(yv[size_t(h * sh.head_dim + e)], x[size_t(h * sh.head_dim + e)]);
      }
}
