#include <atomic>
#include "kernels/matmul.h"

#include <gtest/gtest.h>
#include "util/omp.h"

#include <cmath>
#include <memory>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/ggml_blocks.h"
#include "quant/mlx_affine.h"
#include "util/cpu.h"
#include "util/half.h"

namespace optiq::kernels {
namespace {

// A weight matrix of any format built from random floats, owning its bytes.
struct TestWeight {
  std::vector<uint8_t> data, scales, biases;
  std::shared_ptr<const LargeBuffer> packed;  // pack_weight's bytes, when packed
  WeightView view;
};

struct Spec {
  WeightFormat format;
  int bits = 0;
  int group_size = 0;
  DType scale_dtype = DType::F32;
  std::string name() const {
    std::string s = weight_format_name(format);
    if (format == WeightFormat::MlxAffine)
      s += "/b" + std::to_string(bits) + "/g" + std::to_string(group_size) + "/" +
           dtype_name(scale_dtype);
    return s;
  }
};

TestWeight make_weight(const Spec& sp, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = nd(rng);
  TestWeight t;
  WeightView& v = t.view;
  v.format = sp.format;
  v.rows = rows;
  v.cols = cols;
  auto blocks = [&](size_t bytes_per_block, int qk, auto quant) {
    v.row_bytes = size_t(cols / qk) * bytes_per_block;
    t.data.resize(v.row_bytes * size_t(rows));
    for (int64_t r = 0; r < rows; ++r) quant(w.data() + r * cols, t.data.data() + r * v.row_bytes);
  };
  switch (sp.format) {
    case WeightFormat::F32:
      v.row_bytes = size_t(cols) * 4;
      t.data.resize(v.row_bytes * size_t(rows));
      std::memcpy(t.data.data(), w.data(), t.data.size());
      break;
    case WeightFormat::F16:
    case WeightFormat::BF16: {
      v.row_bytes = size_t(cols) * 2;
      t.data.resize(v.row_bytes * size_t(rows));
      for (size_t i = 0; i < w.size(); ++i) {
        const uint16_t h = sp.format == WeightFormat::F16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
        std::memcpy(t.data.data() + 2 * i, &h, 2);
      }
      break;
    }
    case WeightFormat::MlxAffine: {
      v.bits = sp.bits;
      v.group_size = sp.group_size;
      v.scale_dtype = sp.scale_dtype;
      v.row_bytes = quant::mlx_packed_bytes(cols, sp.bits);
      t.data.resize(v.row_bytes * size_t(rows));
      std::vector<float> s(static_cast<size_t>(rows * cols / sp.group_size)), b(s.size());
      quant::quantize_matrix(w.data(), rows, cols, sp.bits, sp.group_size, t.data.data(), s.data(),
                             b.data());
      t.scales.resize(s.size() * quant::param_bytes(sp.scale_dtype));
      t.biases.resize(t.scales.size());
      quant::store_params(s.data(), int64_t(s.size()), sp.scale_dtype, t.scales.data());
      quant::store_params(b.data(), int64_t(b.size()), sp.scale_dtype, t.biases.data());
      v.scales = t.scales.data();
      v.biases = t.biases.data();
      break;
    }
    case WeightFormat::Q4_0:
      blocks(18, 32, [&](const float* x, uint8_t* o) {
        quant::quantize_row_q4_0(x, reinterpret_cast<quant::BlockQ4_0*>(o), cols);
      });
      break;
    case WeightFormat::Q4_1:
      blocks(20, 32, [&](const float* x, uint8_t* o) {
        quant::quantize_row_q4_1(x, reinterpret_cast<quant::BlockQ4_1*>(o), cols);
      });
      break;
    case WeightFormat::Q8_0:
      blocks(34, 32, [&](const float* x, uint8_t* o) {
        quant::quantize_row_q8_0(x, reinterpret_cast<quant::BlockQ8_0*>(o), cols);
      });
      break;
    case WeightFormat::Q4_K:
      blocks(144, 256, [&](const float* x, uint8_t* o) {
        quant::quantize_row_q4_k(x, reinterpret_cast<quant::BlockQ4_K*>(o), cols);
      });
      break;
    case WeightFormat::Q6_K:
      blocks(210, 256, [&](const float* x, uint8_t* o) {
        quant::quantize_row_q6_k(x, reinterpret_cast<quant::BlockQ6_K*>(o), cols);
      });
      break;
  }
  v.data = t.data.data();
  return t;
}

bool is_float_format(WeightFormat f) {
  return f == WeightFormat::F32 || f == WeightFormat::F16 || f == WeightFormat::BF16;
}

// The int8 path computes w_i = ws_b*q_i + wb_b per 32-block b as ws_b*Σ q_i*x̂_i + wb_b*Σ x_i, where
// wb_b is the format's per-block offset (below) and x̂ is x rounded to int8 with step
// dx_b = amax_b/127. Offsets per format (must match qmatmul_avx2.cpp).
std::vector<float> block_offsets(const Spec& sp, const WeightView& v, int64_t r) {
  const int64_t nb = v.cols / 32;
  std::vector<float> wb(static_cast<size_t>(nb), 0.0f);
  const uint8_t* row = v.data + size_t(r) * v.row_bytes;
  auto h = [](const uint8_t* p) {
    uint16_t u;
    std::memcpy(&u, p, 2);
    return f16_to_f32(u);
  };
  for (int64_t b = 0; b < nb; ++b) {
    switch (sp.format) {
      case WeightFormat::Q4_0: wb[size_t(b)] = -8.0f * h(row + 18 * b); break;
      case WeightFormat::Q4_1: wb[size_t(b)] = h(row + 20 * b + 2); break;
      case WeightFormat::Q4_K: {
        const uint8_t* blk = row + 144 * (b / 8);
        uint8_t sc, m;
        quant::q4_k_scale_min(blk + 4, int(b % 8), &sc, &m);
        wb[size_t(b)] = -h(blk + 2) * float(m);
        break;
      }
      case WeightFormat::MlxAffine: {
        const int64_t groups = v.cols / v.group_size, g = r * groups + b * 32 / v.group_size;
        wb[size_t(b)] = quant::load_param(v.biases, g, v.scale_dtype);
        if (v.bits == 8) wb[size_t(b)] += 128.0f * quant::load_param(v.scales, g, v.scale_dtype);
        break;
      }
      default: break;  // Q8_0, Q6_K: signed q, no offset
    }
  }
  return wb;
}

// Bound on |matmul - matmul_ref| for one output:
//  float path (F32/F16/BF16, and MLX with group_size < 32): summation order only,
//    kFloatRelTol * Σ|w x|.
//  int8 path (all other quantized layouts): |err| <= Σ_b (dx_b / 2) Σ_{i in b} |w_i - wb_b|
//    (plus the float part above).
constexpr double kFloatRelTol = 1e-5;

double bound(const Spec& sp, const std::vector<float>& wrow, const std::vector<float>& wb,
             const float* x, int64_t cols) {
  double absdot = 0.0, qerr = 0.0;
  for (int64_t i = 0; i < cols; ++i) absdot += std::fabs(double(wrow[size_t(i)]) * x[i]);
  const bool int8_path =
      !is_float_format(sp.format) && !(sp.format == WeightFormat::MlxAffine && sp.group_size < 32);
  if (int8_path) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      double amax = 0.0, wsum = 0.0;
      for (int i = 0; i < 32; ++i) {
        amax = std::max(amax, std::fabs(double(x[b * 32 + i])));
        wsum += std::fabs(double(wrow[size_t(b * 32 + i)]) - wb[size_t(b)]);
      }
      qerr += amax / 127.0 / 2.0 * wsum;
    }
  }
  return 1.001 * qerr + kFloatRelTol * absdot + 1e-6;
}

// Repacks t for the packed 4-bit kernel (as a model's loading does); false where this CPU or the format
// does not take it.
bool pack(TestWeight& t) {
  t.packed = pack_weight(t.view);
  return t.packed != nullptr && t.view.packed == t.packed->data();
}

// Packs where the machine can (all 4-bit tests below skip otherwise).
bool packed_kernel_here() { return active_isa() == Isa::Avx2; }

void check_format(const Spec& sp, int64_t rows, int64_t cols, int64_t n, uint32_t seed, bool packed = false) {
  SCOPED_TRACE(sp.name() + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
               " n=" + std::to_string(n) + (packed ? " packed" : ""));
  TestWeight tw = make_weight(sp, rows, cols, seed);
  if (packed) {
    ASSERT_TRUE(pack(tw));
  }
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (auto& v : x) v = nd(rng);
  if (cols >= 64) {  // an all-zero block and an outlier
    for (int i = 0; i < 32; ++i) x[size_t(i)] = 0.0f;
    x[size_t(cols / 2)] = 20.0f;
  }
  std::vector<float> yref(static_cast<size_t>(n * rows), -1.0f), yfast(static_cast<size_t>(n * rows), -2.0f);
  matmul_ref(tw.view, x.data(), n, yref.data());
  set_active_isa(Isa::Scalar);
  std::vector<float> yscalar(static_cast<size_t>(n * rows));
  matmul(tw.view, x.data(), n, yscalar.data());
  EXPECT_EQ(yscalar, yref) << "scalar dispatch must be the reference";
  set_active_isa(Isa::Avx2);
  matmul(tw.view, x.data(), n, yfast.data());
  set_active_isa(detected_isa());
  std::vector<float> wrow(static_cast<size_t>(cols));
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(tw.view, r, wrow.data());
    const std::vector<float> wb = block_offsets(sp, tw.view, r);
    for (int64_t c = 0; c < n; ++c) {
      const double tol = bound(sp, wrow, wb, x.data() + c * cols, cols);
      const double diff = std::fabs(double(yfast[size_t(c * rows + r)]) - yref[size_t(c * rows + r)]);
      if (!(diff <= tol) && bad++ < 5)
        ADD_FAILURE() << "r=" << r << " c=" << c << " fast=" << yfast[size_t(c * rows + r)]
                      << " ref=" << yref[size_t(c * rows + r)] << " tol=" << tol;
    }
  }
}

std::vector<Spec> all_specs() {
  std::vector<Spec> s = {{WeightFormat::F32}, {WeightFormat::F16},  {WeightFormat::BF16},
                         {WeightFormat::Q4_0}, {WeightFormat::Q4_1}, {WeightFormat::Q8_0},
                         {WeightFormat::Q4_K}, {WeightFormat::Q6_K}};
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64})
      s.push_back({WeightFormat::MlxAffine, bits, gs, bits == 4 ? DType::BF16 : DType::F16});
  s.push_back({WeightFormat::MlxAffine, 4, 128, DType::F32});
  s.push_back({WeightFormat::MlxAffine, 3, 8, DType::F32});
  s.push_back({WeightFormat::MlxAffine, 4, 16, DType::BF16});
  return s;
}

int64_t cols_for(const Spec& sp, int variant) {
  if (is_float_format(sp.format)) return variant == 0 ? 37 : 200;  // any length, with tails
  if (sp.format == WeightFormat::Q4_K || sp.format == WeightFormat::Q6_K) return variant == 0 ? 256 : 512;
  if (sp.format == WeightFormat::MlxAffine) return variant == 0 ? std::max(sp.group_size, 64) : 384;
  return variant == 0 ? 32 : 96;
}

TEST(Matmul, Avx2MatchesReferenceAllFormats) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  uint32_t seed = 100;
  for (const Spec& sp : all_specs()) {
    for (int64_t rows : {1, 7, 33, 257}) {
      for (int64_t n : {1, 3, 17, 64}) {
        if (rows == 257 && n == 64) continue;  // keep the suite fast
        check_format(sp, rows, cols_for(sp, int(rows + n) % 2), n, seed++);
      }
    }
  }
}

TEST(Matmul, LargerShapesThreaded) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  for (const Spec& sp : {Spec{WeightFormat::BF16}, Spec{WeightFormat::Q4_0}, Spec{WeightFormat::Q8_0},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 6, 64, DType::F16}}) {
    check_format(sp, 300, 1024, 1, 7);
    check_format(sp, 130, 768, 9, 8);
  }
}

// Decode (n = 1) kernels for 4-bit formats: row tiles of 4 with 1-3 leftover rows, pairs of blocks
// with an odd trailing block, contiguous per-thread row ranges.
TEST(Matmul, DecodeFourBitTails) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  uint32_t seed = 500;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::F16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F32},
                         Spec{WeightFormat::MlxAffine, 4, 256, DType::BF16}})
    for (int64_t rows : {1, 2, 3, 5, 6, 11, 64})
      for (int64_t cols : {int64_t(96), int64_t(160), int64_t(512), int64_t(768)}) {
        if (sp.format == WeightFormat::MlxAffine && cols % sp.group_size != 0) continue;
        check_format(sp, rows, cols, 1, seed++);
      }
}

TEST(Matmul, InsideParallelRegion) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  Spec sp{WeightFormat::Q4_0};
  TestWeight tw = make_weight(sp, 64, 256, 5);
  std::vector<float> x(256 * 4), y0(64 * 4), y1(64 * 4), y2(64 * 4);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.1f;
  matmul(tw.view, x.data(), 4, y0.data());
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == 0) matmul(tw.view, x.data(), 4, y1.data());
    if (omp_get_thread_num() == 1 || omp_get_num_threads() == 1) matmul(tw.view, x.data(), 4, y2.data());
  }
  EXPECT_EQ(y0, y1);
  EXPECT_EQ(y0, y2);
}

// Three weights of `sp` over one x[n, cols] (normal), and their outputs: want = one matmul each, got
// (for the caller's call) filled with -1.
struct SharedX {
  std::vector<TestWeight> tw;
  std::vector<float> x;
  std::vector<std::vector<float>> want, got;
  WeightView ws[3];
  float* ys[3];
};
SharedX shared_x_case(const Spec& sp, int64_t n, int64_t cols, std::initializer_list<int64_t> rows, uint32_t& seed,
                      bool packed = false) {
  SharedX c;
  for (int64_t r : rows) {
    c.tw.push_back(make_weight(sp, r, cols, seed++));
    if (packed) {
      EXPECT_TRUE(pack(c.tw.back()));
    }
  }
  c.x.resize(size_t(n * cols));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& e : c.x) e = nd(rng);
  for (size_t i = 0; i < c.tw.size(); ++i) {
    c.want.emplace_back(size_t(n * c.tw[i].view.rows));
    c.got.emplace_back(size_t(n * c.tw[i].view.rows), -1.0f);
    matmul(c.tw[i].view, c.x.data(), n, c.want[i].data());
  }
  for (size_t i = 0; i < c.tw.size(); ++i) c.ws[i] = c.tw[i].view, c.ys[i] = c.got[i].data();
  return c;
}

// matmul_shared_x: the same numbers as one matmul per weight, bit for bit, on the shared one-row 4-bit
// path (rows that are not multiples of the 4-row tile, ranges split across weights) and on the fallback.
TEST(MatmulSharedX, EqualsOneMatmulEach) {
  uint32_t seed = 700;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::MlxAffine, 4, 128, DType::F32},
                         Spec{WeightFormat::Q8_0}, Spec{WeightFormat::F16}})
    for (int64_t n : {1, 3})
      for (bool packed : {false, true}) {
        const bool four_bit = sp.format == WeightFormat::Q4_0 || sp.bits == 4;
        if (packed && (!four_bit || !packed_kernel_here())) continue;
        SCOPED_TRACE(sp.name() + " n=" + std::to_string(n) + (packed ? " packed" : ""));
        // packed: rows in whole groups of 16 (one parallel region) and not (a matmul each)
        for (auto rows : {std::initializer_list<int64_t>{7, 64, 33}, std::initializer_list<int64_t>{16, 64, 32}}) {
          SharedX c = shared_x_case(sp, n, 256, rows, seed, packed);
          matmul_shared_x(c.ws, c.ys, 3, c.x.data(), n);
          for (size_t i = 0; i < c.tw.size(); ++i) EXPECT_EQ(c.got[i], c.want[i]) << "weight " << i;
        }
      }
}

// matmul_shared_x with a RowPrep: x's rows are made inside the call (here x = 2·x0 + 1 from a copy x0, each row
// once), and the outputs, low-rank terms included, are bit for bit those of the same x made beforehand. On the
// packed kernel's region (one or two threads, 1 to 17 rows), the one-row path, and the fallback formats.
TEST(MatmulSharedX, RowPrepMakesXBeforeAnyReadOfIt) {
  uint32_t seed = 2700;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::Q8_0},
                         Spec{WeightFormat::F16}})
    for (int64_t n : {1, 3, 8, 17})
      for (bool packed : {false, true}) {
        const bool four_bit = sp.format == WeightFormat::Q4_0 || sp.bits == 4;
        if (packed && (!four_bit || !packed_kernel_here())) continue;
        SCOPED_TRACE(sp.name() + " n=" + std::to_string(n) + (packed ? " packed" : ""));
        const int64_t cols = 512;
        SharedX c = shared_x_case(sp, n, cols, {48, 256, 32}, seed, packed);
        TestWeight a = make_weight(Spec{WeightFormat::F16}, cols, 8, seed++), b = make_weight(Spec{WeightFormat::F16}, 8, 256, seed++);
        LowRank l;
        l.a = a.view, l.b = b.view, l.alpha = 0.75f, l.out = 1;
        for (size_t i = 0; i < 3; ++i) {  // want: the same x made first
          std::fill(c.want[i].begin(), c.want[i].end(), 0.0f);
          std::vector<float> made(c.x.size());
          for (size_t e = 0; e < made.size(); ++e) made[e] = 2.0f * c.x[e] + 1.0f;
          matmul(c.tw[i].view, made.data(), n, c.want[i].data());
          if (i == 1) lowrank_add(l.a, l.b, made.data(), n, l.alpha, c.want[i].data());
        }
        const std::vector<float> x0 = c.x;
        std::vector<float> x(c.x.size(), std::nanf(""));  // read before it is made: NaN outputs
        std::vector<std::atomic<int>> made(static_cast<size_t>(n));
        const RowPrep prep = [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            made[size_t(r)]++;
            for (int64_t e = 0; e < cols; ++e) x[size_t(r * cols + e)] = 2.0f * x0[size_t(r * cols + e)] + 1.0f;
          }
        };
        matmul_shared_x(c.ws, c.ys, 3, x.data(), n, &l, 1, &prep);
        for (size_t i = 0; i < 3; ++i) EXPECT_EQ(c.got[i], c.want[i]) << "weight " << i;
        for (int64_t r = 0; r < n; ++r) EXPECT_EQ(made[size_t(r)].load(), 1) << "row " << r;
      }
}

// matmul_shared_x with low-rank terms (LoRA deltas, fused into the weights' parallel region at one row):
// bit for bit what matmul per weight and then lowrank_add per term, in order, over the term's rows give.
// Terms stack on one output, cover some rows only, and come in every float format.
TEST(MatmulSharedX, LowRankTermsEqualLowrankAddAfterTheMatmuls) {
  uint32_t seed = 1700;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::F16}})
    for (int64_t n : {1, 3})
    for (bool packed : {false, true}) {
      if (packed && (sp.format == WeightFormat::F16 || !packed_kernel_here())) continue;
      SCOPED_TRACE(sp.name() + " n=" + std::to_string(n) + (packed ? " packed" : ""));
      const int64_t cols = 1024;
      // packed: rows in whole groups of 16, so the terms share the weights' region
      SharedX c = packed ? shared_x_case(sp, n, cols, {80, 256, 48}, seed, true) : shared_x_case(sp, n, cols, {70, 256, 33}, seed);
      const std::vector<TestWeight>& tw = c.tw;
      const std::vector<float>& x = c.x;
      std::vector<std::vector<float>>& want = c.want;
      // (output, format, rank, rows): all rows of 0 in f16, some rows of 2 in bf16, all rows of 0 again in f32.
      const std::vector<int64_t> some = n == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2};
      struct T { int out; Spec sp; int64_t rank; bool some; };
      const std::vector<T> ts = {{0, Spec{WeightFormat::F16}, 16, false}, {2, Spec{WeightFormat::BF16}, 8, true},
                                 {0, Spec{WeightFormat::F32}, 4, false}};
      std::vector<TestWeight> ab;
      std::vector<LowRank> terms;
      for (const T& t : ts) {
        ab.push_back(make_weight(t.sp, cols, t.rank, seed++));  // Aᵀ
        ab.push_back(make_weight(t.sp, t.rank, tw[size_t(t.out)].view.rows, seed++));
      }
      for (size_t i = 0; i < ts.size(); ++i) {
        LowRank l;
        l.a = ab[2 * i].view, l.b = ab[2 * i + 1].view, l.alpha = 0.5f + float(i), l.out = ts[i].out;
        if (ts[i].some) l.rows = some.data(), l.n_rows = int64_t(some.size());
        terms.push_back(l);
      }
      for (const LowRank& l : terms) {
        const int64_t out = l.b.cols;
        std::vector<float>& y = want[size_t(l.out)];
        if (!l.rows) {
          lowrank_add(l.a, l.b, x.data(), n, l.alpha, y.data());
          continue;
        }
        std::vector<float> xs, ys_;  // the term's rows, gathered, then scattered back
        for (int64_t j = 0; j < l.n_rows; ++j) {
          xs.insert(xs.end(), x.begin() + l.rows[j] * cols, x.begin() + (l.rows[j] + 1) * cols);
          ys_.insert(ys_.end(), y.begin() + l.rows[j] * out, y.begin() + (l.rows[j] + 1) * out);
        }
        lowrank_add(l.a, l.b, xs.data(), l.n_rows, l.alpha, ys_.data());
        for (int64_t j = 0; j < l.n_rows; ++j) std::copy_n(ys_.begin() + j * out, out, y.begin() + l.rows[j] * out);
      }
      matmul_shared_x(c.ws, c.ys, 3, x.data(), n, terms.data(), int(terms.size()));
      for (size_t i = 0; i < tw.size(); ++i) EXPECT_EQ(c.got[i], want[i]) << "weight " << i;
      // The rows no term lists keep the weights' product alone.
      if (n == 3) {
        std::vector<float> plain(size_t(n * tw[2].view.rows));
        matmul(tw[2].view, x.data(), n, plain.data());
        const int64_t r2 = tw[2].view.rows;
        EXPECT_TRUE(std::equal(plain.begin() + r2, plain.begin() + 2 * r2, c.got[2].begin() + r2));
        EXPECT_FALSE(std::equal(plain.begin(), plain.begin() + r2, c.got[2].begin()));
      }
    }
}

// nmax rows of normal x (from seed) and what each gives alone through w: {x [nmax][cols], y [nmax][rows]}.
std::pair<std::vector<float>, std::vector<float>> rows_alone(const WeightView& w, int64_t nmax, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(size_t(nmax * w.cols));
  for (auto& e : x) e = nd(rng);
  std::vector<float> alone(size_t(nmax * w.rows));
  for (int64_t i = 0; i < nmax; ++i) matmul(w, x.data() + i * w.cols, 1, alone.data() + i * w.rows);
  return {std::move(x), std::move(alone)};
}

// The 4-bit formats: each row of a batch of x rows gets bit for bit what it gets alone (the batched kernel and
// the one-row kernel round alike), so a sequence decoded among others continues exactly as it would alone.
// Odd block counts (MLX group 32; one block alone), tail rows of the register tiles, row ranges split over
// threads; with AVX-512, the 512-bit and 256-bit batch kernels agree too.
TEST(Matmul, FourBitBatchRowsEqualRowsAlone) {
  uint32_t seed = 900;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::MlxAffine, 4, 128, DType::F32}})
    for (int64_t cols : {int64_t(32), int64_t(224), int64_t(256), int64_t(640)}) {
      if (sp.group_size > 0 && cols % sp.group_size != 0) continue;
      for (int64_t rows : {1, 5, 37, 300}) {
        const TestWeight tw = make_weight(sp, rows, cols, seed++);
        const auto [x, alone] = rows_alone(tw.view, 9, seed);
        for (int64_t n : {2, 3, 4, 5, 8, 9}) {
          SCOPED_TRACE(sp.name() + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                       " n=" + std::to_string(n));
          std::vector<float> got(size_t(n * rows), -1.0f);
          matmul(tw.view, x.data(), n, got.data());
          EXPECT_EQ(got, std::vector<float>(alone.begin(), alone.begin() + n * rows));
          if (avx512_detected()) {  // the 512-bit batch tile (two weight rows per register) against the 256-bit one
            set_avx512_active(false);
            std::vector<float> narrow(size_t(n * rows), -1.0f);
            matmul(tw.view, x.data(), n, narrow.data());
            set_avx512_active(true);
            EXPECT_EQ(got, narrow);
          }
        }
      }
    }
}

// lowrank_add sums x · a in fixed blocks of a's rows: a row alone, the same row in a batch, one thread and all
// threads, 256-bit and 512-bit vectors all give the same numbers bit for bit (so a sequence on an adapter
// decodes the same alone and among others). Ranks with 32-, 16- and 8-column vectors and a scalar tail; a
// number of a's rows that leaves a short last block.
TEST(LowrankAdd, RowsAloneInBatchesThreadsAndVectorWidthsAgreeBitForBit) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  uint32_t seed = 500;
  for (const Spec sp : {Spec{WeightFormat::F32}, Spec{WeightFormat::F16}, Spec{WeightFormat::BF16}})
    for (int64_t r : {16, 61, 64})
      for (int64_t in : {100, 1000, 3072}) {
        SCOPED_TRACE(sp.name() + " r=" + std::to_string(r) + " in=" + std::to_string(in));
        const int64_t n = 5, out = 300;
        TestWeight ta = make_weight(sp, in, r, seed++), tb = make_weight(sp, r, out, seed++);
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> xs(size_t(n * in));
        for (auto& e : xs) e = nd(rng);
        std::vector<float> batch(size_t(n * out), 0.5f);
        lowrank_add(ta.view, tb.view, xs.data(), n, 0.75f, batch.data());
        for (bool wide : {true, false}) {
          if (!wide && !avx512_detected()) continue;
          set_avx512_active(!wide);  // the other width than the batch's where both exist
          for (int64_t j = 0; j < n; ++j) {
            std::vector<float> alone(size_t(out), 0.5f), single(size_t(out), 0.5f);
            lowrank_add(ta.view, tb.view, xs.data() + j * in, 1, 0.75f, alone.data());
#pragma omp parallel num_threads(2)
            if (omp_get_thread_num() == 1 || omp_get_num_threads() == 1)  // nested: one thread
              lowrank_add(ta.view, tb.view, xs.data() + j * in, 1, 0.75f, single.data());
            EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batch.begin() + j * out)) << "row " << j;
            EXPECT_EQ(alone, single) << "row " << j;
          }
          set_avx512_active(true);
        }
      }
}

// lowrank_add (a LoRA delta): a hand-computed case, then AVX2 against the reference for every float format
// over ranks 1-64, outputs with tails and outputs split over threads, and n = 1, 3, 8 rows.
TEST(LowrankAdd, AgreesWithTheDefinitionAndTheReference) {
  const std::vector<float> aw = {1, 0, 0, 1}, bw = {1, 2, 3, 4, 5, 6}, x = {1, 10, -1, 0.5f};
  WeightView a, b;
  a.format = b.format = WeightFormat::F32;
  a.rows = 2, a.cols = 2, a.row_bytes = 8, a.data = reinterpret_cast<const uint8_t*>(aw.data());
  b.rows = 2, b.cols = 3, b.row_bytes = 12, b.data = reinterpret_cast<const uint8_t*>(bw.data());
  const std::vector<float> want = {182, 104, 126, 3, 1, -1};  // y0 + 2 · x · a · b
  for (bool ref : {false, true}) {
    std::vector<float> y = {100, 0, 0, 1, 0, -1};
    (ref ? lowrank_add_ref : lowrank_add)(a, b, x.data(), 2, 2.0f, y.data());
    EXPECT_EQ(y, want) << (ref ? "reference" : "dispatch");
  }
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  uint32_t seed = 300;
  for (const Spec sp : {Spec{WeightFormat::F32}, Spec{WeightFormat::F16}, Spec{WeightFormat::BF16}})
    for (int64_t r : {1, 16, 64})
      for (int64_t out : {5, 37, 2053})
        for (int64_t n : {1, 3, 8}) {
          const int64_t in = 1000;
          SCOPED_TRACE(sp.name() + " r=" + std::to_string(r) + " out=" + std::to_string(out) + " n=" + std::to_string(n));
          TestWeight ta = make_weight(sp, in, r, seed++), tb = make_weight(sp, r, out, seed++);  // Aᵀ, Bᵀ
          std::mt19937 rng(seed);
          std::normal_distribution<float> nd(0.0f, 1.0f);
          std::vector<float> xs(size_t(n * in)), y0(size_t(n * out));
          for (auto& e : xs) e = nd(rng);
          for (auto& e : y0) e = nd(rng);
          std::vector<float> yref = y0, yfast = y0;
          lowrank_add_ref(ta.view, tb.view, xs.data(), n, 0.75f, yref.data());
          lowrank_add(ta.view, tb.view, xs.data(), n, 0.75f, yfast.data());
          // Tolerance: f32 rounding of Σ_k |t_k b_kc| with t = x a (summation order and FMA differ).
          std::vector<float> arow(static_cast<size_t>(r)), brow(static_cast<size_t>(out));
          std::vector<double> t(size_t(n * r), 0.0), asum(size_t(r), 0.0);
          for (int64_t i = 0; i < in; ++i) {
            dequantize_row(ta.view, i, arow.data());
            for (int64_t k = 0; k < r; ++k) {
              asum[size_t(k)] += std::fabs(arow[size_t(k)]);
              for (int64_t j = 0; j < n; ++j) t[size_t(j * r + k)] += double(xs[size_t(j * in + i)]) * arow[size_t(k)];
            }
          }
          std::vector<double> mag(size_t(n * out), 0.0);
          for (int64_t k = 0; k < r; ++k) {
            dequantize_row(tb.view, k, brow.data());
            for (int64_t i = 0; i < n; ++i)
              for (int64_t c = 0; c < out; ++c)
                mag[size_t(i * out + c)] += (std::fabs(t[size_t(i * r + k)]) + 4.0 * asum[size_t(k)]) * std::fabs(brow[size_t(c)]);
          }
          int bad = 0;
          for (size_t j = 0; j < yref.size(); ++j)
            if (!(std::fabs(yfast[j] - yref[j]) <= 1e-6 * mag[j] + 1e-6 * std::fabs(y0[j])) && bad++ < 3)
              ADD_FAILURE() << "at " << j << ": " << yfast[j] << " vs " << yref[j];
        }
}

TEST(Matmul, DequantizeRowMatchesQuantModule) {
  Spec sp{WeightFormat::MlxAffine, 5, 32, DType::F16};
  TestWeight tw = make_weight(sp, 3, 64, 9);
  std::vector<float> a(64), b(64);
  dequantize_row(tw.view, 2, a.data());
  quant::dequantize_row(tw.data.data() + 2 * tw.view.row_bytes, tw.scales.data() + 2 * 2 * 2,
                        tw.biases.data() + 2 * 2 * 2, DType::F16, 64, 5, 32, b.data());
  EXPECT_EQ(a, b);
  Spec sq{WeightFormat::Q6_K};
  TestWeight tq = make_weight(sq, 2, 256, 10);
  std::vector<float> c(256), d(256);
  dequantize_row(tq.view, 1, c.data());
  quant::dequantize_row_q6_k(reinterpret_cast<const quant::BlockQ6_K*>(tq.data.data() + 210), d.data(),
                             256);
  EXPECT_EQ(c, d);
}

// ---- 4-bit weights repacked for the packed kernel (pack_weight; AVX2, or AVX-512 VNNI) ----

// The packed kernel keeps matmul's error bound against the reference for every 4-bit layout it takes: Q4_0, MLX
// 4-bit with groups of 32 to 256 and f16 / bf16 / f32 parameters; rows that leave a partial last group of 16,
// an all-zero block and an outlier in x, one to many rows of x (the kernels' tiles: 8, 4, 2, 1 rows of x with
// VNNI; 4, 3, 2, 1 on AVX2).
TEST(PackedMatmul, MatchesReferenceWithinTheBound) {
  if (!packed_kernel_here()) GTEST_SKIP() << "no AVX2 on this CPU: the packed kernel does not run here";
  uint32_t seed = 3100;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::MlxAffine, 4, 128, DType::F32},
                         Spec{WeightFormat::MlxAffine, 4, 256, DType::BF16}})
    for (int64_t rows : {1, 16, 37, 300})
      for (int64_t n : {1, 3, 8, 17}) {
        const int64_t cols = sp.group_size == 256 ? 512 : (rows + n) % 2 ? 256 : 640;
        check_format(sp, rows, cols, n, seed++, true);
      }
}

// What the packed kernel computes comes from the packed bytes (not the weight as stored): with its codes and
// scales all zero every output is zero, and packing again gives the first results back.
TEST(PackedMatmul, ReadsThePackedBytes) {
  if (!packed_kernel_here()) GTEST_SKIP() << "no AVX2 on this CPU: the packed kernel does not run here";
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}}) {
    TestWeight tw = make_weight(sp, 40, 256, 77);
    ASSERT_TRUE(pack(tw));
    std::vector<float> x(256 * 3), y(40 * 3), y2(40 * 3);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(float(i));
    matmul(tw.view, x.data(), 3, y.data());
    EXPECT_NE(y, std::vector<float>(y.size(), 0.0f));
    const std::vector<uint8_t> zeros(256 * 48, 0);  // at least the bytes of 3 row groups
    WeightView z = tw.view;
    z.packed = zeros.data();
    matmul(z, x.data(), 3, y2.data());
    EXPECT_EQ(y2, std::vector<float>(y2.size(), 0.0f)) << sp.name();
    matmul(tw.view, x.data(), 3, y2.data());
    EXPECT_EQ(y2, y);
  }
}

// A row of x gets bit for bit the same numbers alone and in a batch of any size (every tile size of either
// kernel, row ranges split over threads, a partial last row group), so a sequence decodes the same among others;
// and a slice of a packed matrix runs on its rows as stored.
TEST(PackedMatmul, BatchRowsEqualRowsAlone) {
  if (!packed_kernel_here()) GTEST_SKIP() << "no AVX2 on this CPU: the packed kernel does not run here";
  uint32_t seed = 3300;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::MlxAffine, 4, 128, DType::F32}})
    for (int64_t rows : {5, 48, 300}) {
      const int64_t cols = 256;
      TestWeight tw = make_weight(sp, rows, cols, seed++);
      ASSERT_TRUE(pack(tw));
      const auto [x, alone] = rows_alone(tw.view, 23, seed);
      for (int64_t n : {2, 3, 4, 7, 8, 9, 15, 16, 23}) {
        SCOPED_TRACE(sp.name() + " rows=" + std::to_string(rows) + " n=" + std::to_string(n));
        std::vector<float> got(size_t(n * rows), -1.0f);
        matmul(tw.view, x.data(), n, got.data());
        EXPECT_EQ(got, std::vector<float>(alone.begin(), alone.begin() + n * rows));
      }
      const WeightView slice = tw.view.row_slice(1, rows - 1);
      EXPECT_EQ(slice.packed, nullptr);
    }
}

// On a CPU with AVX-512 VNNI, the AVX2 kernel on the same packed bytes gives the VNNI kernel's numbers bit for
// bit (the same integer dots, the same float operations per row), for every tile of x rows and a partial last
// row group; so a model decodes alike with OPTIQ_FORCE_ISA=avx2.
TEST(PackedMatmul, Avx2EqualsVnniBitForBit) {
  if (!packed_kernel_here() || !vnni_active()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  struct Restore {  // AVX-512 back on for the tests after this one, whatever happens here
    ~Restore() { set_avx512_active(true); }
  } restore;
  uint32_t seed = 3500;
  for (const Spec& sp : {Spec{WeightFormat::Q4_0}, Spec{WeightFormat::MlxAffine, 4, 32, DType::BF16},
                         Spec{WeightFormat::MlxAffine, 4, 64, DType::F16}, Spec{WeightFormat::MlxAffine, 4, 128, DType::F32}})
    for (int64_t rows : {5, 48, 300}) {
      TestWeight tw = make_weight(sp, rows, 256, seed++);
      ASSERT_TRUE(pack(tw));
      const auto [x, alone] = rows_alone(tw.view, 17, seed);
      for (int64_t n : {1, 2, 3, 4, 6, 7, 8, 9, 17}) {
        SCOPED_TRACE(sp.name() + " rows=" + std::to_string(rows) + " n=" + std::to_string(n));
        std::vector<float> vnni(size_t(n * rows)), avx2(size_t(n * rows), -1.0f);
        matmul(tw.view, x.data(), n, vnni.data());
        set_avx512_active(false);
        EXPECT_FALSE(vnni_active());
        matmul(tw.view, x.data(), n, avx2.data());
        set_avx512_active(true);
        EXPECT_EQ(avx2, vnni);
      }
    }
}

TEST(Matmul, Deterministic) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  Spec sp{WeightFormat::MlxAffine, 4, 64, DType::BF16};
  TestWeight tw = make_weight(sp, 200, 512, 12);
  std::vector<float> x(512 * 5, 0.25f), y0(200 * 5), y1(200 * 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i));
  matmul(tw.view, x.data(), 5, y0.data());
  matmul(tw.view, x.data(), 5, y1.data());
  EXPECT_EQ(y0, y1);
}

}  // namespace
}  // namespace optiq::kernels
