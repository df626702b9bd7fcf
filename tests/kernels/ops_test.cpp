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
