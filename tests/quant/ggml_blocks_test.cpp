#include "quant/ggml_blocks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"
#include "util/half.h"

namespace optiq::quant {
namespace {

struct GCase {
  std::string type;
  int64_t n = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> y;
};

std::vector<GCase> load_cases() {
  const std::string path = std::string(OPTIQ_SOURCE_DIR) + "/tests/data/quant/ggml_blocks_golden.txt";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<GCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string tag, tok;
    ss >> tag;
    if (tag == "case") {
      GCase c;
      ss >> c.type >> c.n;
      cases.push_back(c);
    } else if (tag == "bytes") {
      while (ss >> tok) cases.back().bytes.push_back(uint8_t(std::stoul(tok, nullptr, 16)));
    } else if (tag == "y") {
      while (ss >> tok) cases.back().y.push_back(f32_from_bits(uint32_t(std::stoul(tok, nullptr, 16))));
    }
  }
  return cases;
}

TEST(GgmlBlocks, DequantizeMatchesNumpyGolden) {
  const auto cases = load_cases();
  ASSERT_EQ(cases.size(), 5u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.type);
    ASSERT_EQ(int64_t(c.y.size()), c.n);
    std::vector<float> out(static_cast<size_t>(c.n), -1.0f);
    const uint8_t* p = c.bytes.data();
    if (c.type == "q4_0") {
      ASSERT_EQ(c.bytes.size(), size_t(c.n / 32 * 18));
      dequantize_row_q4_0(reinterpret_cast<const BlockQ4_0*>(p), out.data(), c.n);
    } else if (c.type == "q4_1") {
      ASSERT_EQ(c.bytes.size(), size_t(c.n / 32 * 20));
      dequantize_row_q4_1(reinterpret_cast<const BlockQ4_1*>(p), out.data(), c.n);
    } else if (c.type == "q8_0") {
      ASSERT_EQ(c.bytes.size(), size_t(c.n / 32 * 34));
      dequantize_row_q8_0(reinterpret_cast<const BlockQ8_0*>(p), out.data(), c.n);
    } else if (c.type == "q4_k") {
      ASSERT_EQ(c.bytes.size(), size_t(c.n / 256 * 144));
      dequantize_row_q4_k(reinterpret_cast<const BlockQ4_K*>(p), out.data(), c.n);
    } else if (c.type == "q6_k") {
      ASSERT_EQ(c.bytes.size(), size_t(c.n / 256 * 210));
      dequantize_row_q6_k(reinterpret_cast<const BlockQ6_K*>(p), out.data(), c.n);
    } else {
      FAIL() << "unknown type";
    }
    for (int64_t i = 0; i < c.n; ++i)
      EXPECT_EQ(bits_from_f32(out[size_t(i)]), bits_from_f32(c.y[size_t(i)])) << "i=" << i;
  }
}

TEST(GgmlBlocks, HandComputedQ4_0AndQ8_0) {
  BlockQ4_0 b{};
  b.d = f32_to_f16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  dequantize_row_q4_0(&b, y, 32);
  EXPECT_EQ(y[0], -4.0f);    // (0-8)*0.5
  EXPECT_EQ(y[15], 3.5f);    // (15-8)*0.5
  EXPECT_EQ(y[16], 3.5f);    // high nibble of qs[0] = 15
  EXPECT_EQ(y[31], -4.0f);
  BlockQ8_0 c{};
  c.d = f32_to_f16(0.25f);
  for (int j = 0; j < 32; ++j) c.qs[j] = int8_t(j - 16);
  dequantize_row_q8_0(&c, y, 32);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[31], 3.75f);
}

TEST(GgmlBlocks, QuantizeQ8_0ReferenceRounding) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = float(j - 16) * 0.1f;
  BlockQ8_0 b;
  quantize_row_q8_0(x, &b, 32);
  const float d = 1.6f / 127.0f;
  EXPECT_EQ(b.d, f32_to_f16(d));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], int8_t(std::round(x[j] * (1.0f / d)))) << j;
  EXPECT_EQ(b.qs[0], -127);
}

TEST(GgmlBlocks, QuantizeQ4_0ReferenceRounding) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = float(j) * 0.25f - 3.0f;  // max magnitude = 4.75 (positive)
  BlockQ4_0 b;
  quantize_row_q4_0(x, &b, 32);
  const float d = 4.75f / -8.0f;
  EXPECT_EQ(b.d, f32_to_f16(d));
  const float id = 1.0f / d;
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(b.qs[j] & 15, std::min(15, int(int8_t(x[j] * id + 8.5f)))) << j;
    EXPECT_EQ(b.qs[j] >> 4, std::min(15, int(int8_t(x[j + 16] * id + 8.5f)))) << j;
  }
  EXPECT_EQ(b.qs[15] >> 4, 0);  // x[31] = 4.75 maps to q = 0 (d is negative)
}

template <class Block, class Q, class D>
double max_err_ratio(Q quant, D dequant, int64_t n, int qk, float (*bound)(const float*, int)) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  x[5] = 0.0f;
  for (int i = 0; i < qk; ++i) x[size_t(qk + i)] = 0.0f;  // an all-zero block
  std::vector<Block> blocks(size_t(n / qk));
  quant(x.data(), blocks.data(), n);
  dequant(blocks.data(), y.data(), n);
  double worst = 0.0;
  for (int64_t b = 0; b < n / qk; ++b) {
    const float lim = bound(x.data() + b * qk, qk);
    for (int i = 0; i < qk; ++i) {
      const double e = std::fabs(double(x[size_t(b * qk + i)]) - y[size_t(b * qk + i)]);
      if (lim == 0.0f) {
        EXPECT_EQ(e, 0.0);
      } else {
        worst = std::max(worst, e / lim);
      }
    }
  }
  return worst;
}

float amax_of(const float* x, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

TEST(GgmlBlocks, QuantizeErrorBounds) {
  // Q8_0: |err| <= d/2 (+ the f16 rounding of d, <= 127 * d * 2^-11)
  auto q8 = [](const float* x, int n) { return amax_of(x, n) / 127.0f * (0.5f + 127.0f / 2048.0f); };
  EXPECT_LE((max_err_ratio<BlockQ8_0>(quantize_row_q8_0, dequantize_row_q8_0, 4096, 32, q8)), 1.0);
  // Q4_0: |err| <= |d| (q clamps at 15 on the side opposite the max) + f16 rounding of d
  auto q4 = [](const float* x, int n) { return amax_of(x, n) / 8.0f * (1.0f + 8.0f / 2048.0f); };
  EXPECT_LE((max_err_ratio<BlockQ4_0>(quantize_row_q4_0, dequantize_row_q4_0, 4096, 32, q4)), 1.0);
  // Q4_1: |err| <= d/2 + rounding of d and m
  auto q41 = [](const float* x, int n) {
    float mn = x[0], mx = x[0];
    for (int i = 0; i < n; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
    return (mx - mn) / 15.0f * 0.6f + std::fabs(mn) / 1024.0f;
  };
  EXPECT_LE((max_err_ratio<BlockQ4_1>(quantize_row_q4_1, dequantize_row_q4_1, 4096, 32, q41)), 1.0);
  // K-quants (simple quantizer): loose bounds relative to the block's max magnitude
  auto q4k = [](const float* x, int n) { return amax_of(x, n) * 2.0f / 15.0f; };
  EXPECT_LE((max_err_ratio<BlockQ4_K>(quantize_row_q4_k, dequantize_row_q4_k, 4096, 256, q4k)), 1.0);
  auto q6k = [](const float* x, int n) { return amax_of(x, n) / 32.0f; };
  EXPECT_LE((max_err_ratio<BlockQ6_K>(quantize_row_q6_k, dequantize_row_q6_k, 4096, 256, q6k)), 1.0);
}

TEST(GgmlBlocks, Q4_KScalePacking) {
  uint8_t s[12];
  for (int i = 0; i < 12; ++i) s[i] = uint8_t(37 * i + 11);
  // unpack, then check against the formats.md formulas
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    q4_k_scale_min(s, j, &sc, &m);
    if (j < 4) {
      EXPECT_EQ(sc, s[j] & 63);
      EXPECT_EQ(m, s[j + 4] & 63);
    } else {
      EXPECT_EQ(sc, (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
      EXPECT_EQ(m, (s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
  }
}

}  // namespace
}  // namespace optiq::quant
