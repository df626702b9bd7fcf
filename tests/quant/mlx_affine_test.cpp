#include "quant/mlx_affine.h"

#include <gtest/gtest.h>

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

const int kAllBits[] = {2, 3, 4, 5, 6, 8};

TEST(MlxPack, RoundTripAllBits) {
  std::mt19937 rng(1);
  for (int bits : kAllBits) {
    for (int64_t n : {8, 16, 24, 64, 200, 1024}) {
      std::vector<uint8_t> q(static_cast<size_t>(n)), back(static_cast<size_t>(n));
      for (auto& v : q) v = uint8_t(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(mlx_packed_bytes(n, bits) + 1, 0xAB);
      pack_bits(q.data(), n, bits, packed.data());
      EXPECT_EQ(packed.back(), 0xAB) << "wrote past the end, bits=" << bits;
      unpack_bits(packed.data(), n, bits, back.data());
      EXPECT_EQ(q, back) << "bits=" << bits << " n=" << n;
    }
  }
}

TEST(MlxPack, BitStreamLayout) {
  // 3-bit: value k at stream bits [3k, 3k+3): v2 = (b0 >> 6) | ((b1 & 1) << 2)
  uint8_t q3[8] = {1, 2, 5, 7, 0, 3, 6, 4};
  uint8_t p3[3];
  pack_bits(q3, 8, 3, p3);
  uint32_t stream = 0;
  for (int k = 0; k < 8; ++k) stream |= uint32_t(q3[k]) << (3 * k);
  EXPECT_EQ(p3[0], stream & 0xFF);
  EXPECT_EQ(p3[1], (stream >> 8) & 0xFF);
  EXPECT_EQ(p3[2], (stream >> 16) & 0xFF);
  EXPECT_EQ(((p3[0] >> 6) | ((p3[1] & 1) << 2)), q3[2]);
  // 4-bit in a u32 word: element j at bits [4j, 4j+4)
  uint8_t q4[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint32_t word;
  pack_bits(q4, 8, 4, reinterpret_cast<uint8_t*>(&word));
  EXPECT_EQ(word, 0x87654321u);
  // 6-bit: 4 values per 3 bytes, straddling
  uint8_t q6[4] = {63, 1, 32, 17};
  uint8_t p6[3];
  pack_bits(q6, 4, 6, p6);
  const uint32_t s6 = 63u | (1u << 6) | (32u << 12) | (17u << 18);
  EXPECT_EQ(p6[0] | (p6[1] << 8) | (p6[2] << 16), int(s6));
  // 5-bit: 8 values per 5 bytes
  uint8_t q5[8] = {31, 0, 17, 9, 30, 1, 16, 5};
  uint8_t p5[5];
  pack_bits(q5, 8, 5, p5);
  uint64_t s5 = 0;
  for (int k = 0; k < 8; ++k) s5 |= uint64_t(q5[k]) << (5 * k);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p5[i], (s5 >> (8 * i)) & 0xFF);
}

TEST(MlxQuantize, GroupBasics) {
  // |min| > |max|: positive scale, bias = min
  float w[8] = {-3.0f, 0.0f, 1.5f, -0.75f, 0.75f, -1.5f, 0.5f, 1.0f};
  uint8_t q[8];
  AffineParams p = quantize_group(w, 8, 2, q);
  EXPECT_FLOAT_EQ(p.scale, 1.5f);
  EXPECT_FLOAT_EQ(p.bias, -3.0f);
  // (w+3)/1.5: 0, 2, 3, 1.5->2 (tie to even), 2.5->2 (tie to even), 1, 2.33->2, 2.67->3
  const uint8_t expect[8] = {0, 2, 3, 2, 2, 1, 2, 3};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q[i], expect[i]) << i;
  // |max| >= |min|: negative scale, bias = max; zero stays exact
  float w2[8] = {2.0f, 0.0f, -1.0f, 1.0f, 0.5f, 0.25f, -0.5f, 0.0f};
  p = quantize_group(w2, 8, 4, q);
  EXPECT_LT(p.scale, 0.0f);
  EXPECT_FLOAT_EQ(p.bias, 2.0f);
  EXPECT_EQ(p.scale * float(q[1]) + p.bias, 0.0f);
  // all zero: q0 == 0 -> bias 0, scale = -eps
  float z[8] = {};
  p = quantize_group(z, 8, 4, q);
  EXPECT_EQ(p.bias, 0.0f);
  EXPECT_FLOAT_EQ(p.scale, -1e-7f);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q[i], 0);
}

std::vector<uint32_t> parse_hex_words(std::istringstream& ss) {
  std::vector<uint32_t> v;
  std::string tok;
  while (ss >> tok) v.push_back(uint32_t(std::stoul(tok, nullptr, 16)));
  return v;
}

struct GoldenCase {
  std::string name;
  int bits = 0, gs = 0;
  int64_t n = 0;
  std::vector<float> w, scales, biases;
  std::vector<uint8_t> packed;
};

std::vector<float> as_floats(const std::vector<uint32_t>& u) {
  std::vector<float> f(u.size());
  for (size_t i = 0; i < u.size(); ++i) f[i] = f32_from_bits(u[i]);
  return f;
}

std::vector<GoldenCase> load_golden() {
  const std::string path = std::string(OPTIQ_SOURCE_DIR) + "/tests/data/quant/mlx_affine_golden.txt";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<GoldenCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string tag;
    ss >> tag;
    if (tag == "case") {
      GoldenCase c;
      ss >> c.name >> c.bits >> c.gs >> c.n;
      cases.push_back(c);
    } else if (tag == "w") {
      cases.back().w = as_floats(parse_hex_words(ss));
    } else if (tag == "packed") {
      for (uint32_t b : parse_hex_words(ss)) cases.back().packed.push_back(uint8_t(b));
    } else if (tag == "scales") {
      cases.back().scales = as_floats(parse_hex_words(ss));
    } else if (tag == "biases") {
      cases.back().biases = as_floats(parse_hex_words(ss));
    }
  }
  return cases;
}

TEST(MlxQuantize, BitExactVsNumpyGolden) {
  const auto cases = load_golden();
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name + " bits=" + std::to_string(c.bits) + " gs=" + std::to_string(c.gs));
    ASSERT_EQ(int64_t(c.w.size()), c.n);
    const int64_t groups = c.n / c.gs;
    std::vector<uint8_t> packed(mlx_packed_bytes(c.n, c.bits));
    std::vector<float> s(static_cast<size_t>(groups)), b(static_cast<size_t>(groups));
    quantize_row(c.w.data(), c.n, c.bits, c.gs, packed.data(), s.data(), b.data());
    EXPECT_EQ(packed, c.packed);
    for (int64_t g = 0; g < groups; ++g) {
      EXPECT_EQ(bits_from_f32(s[size_t(g)]), bits_from_f32(c.scales[size_t(g)])) << "group " << g;
      EXPECT_EQ(bits_from_f32(b[size_t(g)]), bits_from_f32(c.biases[size_t(g)])) << "group " << g;
    }
    // dequantization = s*q + b; values that were not clamped lie within half a step of the input
    // (MLX's edge adjustment can push the far end of the range past 2^bits-1, so clamped values may
    // be further off)
    std::vector<float> out(static_cast<size_t>(c.n));
    std::vector<uint8_t> q(static_cast<size_t>(c.n));
    dequantize_row(packed.data(), s.data(), b.data(), c.n, c.bits, c.gs, out.data());
    unpack_bits(packed.data(), c.n, c.bits, q.data());
    const int n_bins = (1 << c.bits) - 1;
    for (int64_t i = 0; i < c.n; ++i) {
      const size_t g = size_t(i / c.gs);
      EXPECT_EQ(out[size_t(i)], s[g] * float(q[size_t(i)]) + b[g]);
      if (q[size_t(i)] == 0 || q[size_t(i)] == n_bins) continue;
      EXPECT_LE(std::fabs(out[size_t(i)] - c.w[size_t(i)]), 0.5f * std::fabs(s[g]) * 1.01f + 1e-6f)
          << "i=" << i;
    }
  }
}

TEST(MlxQuantize, ParamsDtypesAndMatrix) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  const int64_t rows = 3, cols = 128;
  const int bits = 4, gs = 32;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = nd(rng);
  std::vector<uint8_t> packed(static_cast<size_t>(rows) * mlx_packed_bytes(cols, bits));
  std::vector<float> s(static_cast<size_t>(rows * cols / gs)), b(s.size());
  quantize_matrix(w.data(), rows, cols, bits, gs, packed.data(), s.data(), b.data());
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint8_t> sb(s.size() * param_bytes(dt)), bb(sb.size());
    store_params(s.data(), int64_t(s.size()), dt, sb.data());
    store_params(b.data(), int64_t(b.size()), dt, bb.data());
    std::vector<float> back(s.size());
    load_params(sb.data(), int64_t(s.size()), dt, back.data());
    for (size_t i = 0; i < s.size(); ++i) {
      const float expect = dt == DType::F32   ? s[i]
                           : dt == DType::F16 ? f16_to_f32(f32_to_f16(s[i]))
                                              : bf16_to_f32(f32_to_bf16(s[i]));
      EXPECT_EQ(back[i], expect);
    }
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> a(static_cast<size_t>(cols)), c(static_cast<size_t>(cols));
      const int64_t g0 = r * cols / gs;
      const size_t pb = param_bytes(dt);
      dequantize_row(packed.data() + r * mlx_packed_bytes(cols, bits), sb.data() + g0 * pb,
                     bb.data() + g0 * pb, dt, cols, bits, gs, a.data());
      if (dt == DType::F32) {
        dequantize_row(packed.data() + r * mlx_packed_bytes(cols, bits), s.data() + g0, b.data() + g0,
                       cols, bits, gs, c.data());
        EXPECT_EQ(a, c);
      }
      for (int64_t i = 0; i < cols; ++i) EXPECT_NEAR(a[size_t(i)], w[size_t(r * cols + i)], 0.06f);
    }
  }
}

}  // namespace
}  // namespace optiq::quant
