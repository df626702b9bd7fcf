// The per-layer KV cache: each layer stores what its precision says, rows come back (dequantized and
// rotated back) within the quantization step, quantized_kv_start converts once, and bad kv configs are
// rejected with a message that names the entry.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "kernels/hadamard.h"
#include "kv/kv_cache.h"
#include "quant/mlx_affine.h"
#include "util/error.h"
#include "util/half.h"

using namespace optiq;
using namespace optiq::kv;

namespace {

KvShape shape(int layers = 4, int heads = 2, int hd = 64) {
  KvShape s;
  s.n_layers = layers;
  s.n_kv_heads = heads;
  s.head_dim = hd;
  return s;
}

// Dequantizes token t of a layer view back to the model's basis (undoing the rotation).
std::vector<float> read_row(const kernels::KvLayerView& v, bool key, int t) {
  const int d = v.head_dim;
  std::vector<float> out(size_t(v.n_kv_heads) * size_t(d));
  for (int g = 0; g < v.n_kv_heads; ++g) {
    const uint8_t* base = key ? v.k_row(g, t) : v.v_row(g, t);
    float* o = out.data() + size_t(g) * d;
    if (!v.quantized()) {
      for (int i = 0; i < d; ++i) o[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(base)[i]);
    } else {
      quant::dequantize_row(base, reinterpret_cast<const uint8_t*>(key ? v.k_scale(g, t) : v.v_scale(g, t)),
                            reinterpret_cast<const uint8_t*>(key ? v.k_bias(g, t) : v.v_bias(g, t)), DType::F16, d, v.bits,
                            v.group_size, o);
    }
    if (v.rotated) kernels::hadamard(o, d);
  }
  return out;
}

std::vector<float> random_row(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> r(n);
  for (auto& x : r) x = nd(rng);
  return r;
}

// A bound on the error of one group of `bits` over values spanning `range`: one quantization step
// (MLX's affine scheme makes 0 exact, which can leave the far end of a group up to a step away), plus
// f16 rounding of the scale and bias.
double step_bound(const std::vector<float>& x, int bits, bool rotated) {
  float lo = 1e30f, hi = -1e30f;
  for (float e : x) lo = std::min(lo, e), hi = std::max(hi, e);
  double range = double(hi - lo) * (rotated ? 3.0 : 1.0);  // rotation can widen a group's range
  return range / ((1 << bits) - 1) + 2e-3 * std::max(std::fabs(lo), std::fabs(hi)) + 1e-6;
}

TEST(KvCache, MixedConfigIsHonouredPerLayer) {
  KvSpec spec = parse_kv_config(R"([{"layer_idx": 0, "bits": 8, "group_size": 32},
                                    {"layer_idx": 2, "bits": 16},
                                    {"layer_idx": 3, "bits": 2, "group_size": 16}])", "test.json");
  spec.default_precision = {4, 64};
  KvCache cache(shape(), spec);
  int32_t s = cache.create_sequence();
  cache.extend(s, 3);
  const std::vector<std::pair<int, int>> expect = {{8, 32}, {4, 64}, {16, 0}, {2, 16}};
  const size_t elems = 2 * 64;
  for (int l = 0; l < 4; ++l) {
    for (int t = 0; t < 3; ++t) {
      auto k = random_row(elems, uint32_t(l * 10 + t)), v = random_row(elems, uint32_t(100 + l * 10 + t));
      cache.store(s, l, t, k.data(), v.data());
    }
    auto view = cache.view(s, l);
    EXPECT_EQ(view.bits, expect[size_t(l)].first) << l;
    if (expect[size_t(l)].first != 16) {
      EXPECT_EQ(view.group_size, expect[size_t(l)].second) << l;
    }
    EXPECT_EQ(cache.precision(s, l).bits, expect[size_t(l)].first);
    EXPECT_EQ(view.rotated, expect[size_t(l)].first != 16);
    for (int t = 0; t < 3; ++t) {
      auto k = random_row(elems, uint32_t(l * 10 + t));
      auto got = read_row(view, true, t);
      const double tol = l == 2 ? 2e-3 * 8 : step_bound(k, expect[size_t(l)].first, true);
      for (size_t i = 0; i < elems; ++i) ASSERT_NEAR(got[i], k[i], tol) << "layer " << l << " t " << t << " i " << i;
    }
  }
  // Bytes: per token, K and V of 128 elements: 8-bit g32 = 128 + 4*4, 4-bit g64 = 64 + 2*4, fp16 = 256,
  // 2-bit g16 = 32 + 8*4.
  // The cache holds one page of 256 positions.
  EXPECT_EQ(cache.bytes_used(), 256 * 2 * ((128 + 16) + (64 + 8) + 256 + (32 + 32)));
  EXPECT_EQ(cache.page_bytes(), 256 * spec.bytes_per_token(shape()));
  EXPECT_EQ(spec.bytes_per_token(shape()), 2 * ((128 + 16) + (64 + 8) + 256 + (32 + 32)));
  EXPECT_EQ(KvSpec::fp16_bytes_per_token(shape()), 2 * 4 * 256);
}

TEST(KvCache, RowsRoundTripAtEveryPrecision) {
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {8, 32, 64})
      for (bool rotate : {false, true}) {
        KvSpec spec = kv_spec_from_flags("", bits, gs, 0);
        spec.rotation = rotate ? kv::KvSpec::Rotation::On : kv::KvSpec::Rotation::Off;
        KvCache cache(shape(1, 3, 64), spec);
        int32_t s = cache.create_sequence();
        cache.extend(s, 5);
        std::vector<std::vector<float>> ks;
        for (int t = 0; t < 5; ++t) {
          ks.push_back(random_row(3 * 64, uint32_t(t + bits * 100)));
          cache.store(s, 0, t, ks.back().data(), ks.back().data());
        }
        auto view = cache.view(s, 0);
        for (int t = 0; t < 5; ++t) {
          auto got = read_row(view, true, t), gotv = read_row(view, false, t);
          const double tol = step_bound(ks[size_t(t)], bits, rotate);
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], ks[size_t(t)][i], tol) << bits << " " << gs << " " << rotate;
            ASSERT_EQ(got[i], gotv[i]);
          }
        }
      }
}

TEST(KvCache, QuantizedKvStartConvertsOnce) {
  KvSpec spec = kv_spec_from_flags("", 8, 32, 4);
  KvCache cache(shape(2, 1, 32), spec);
  int32_t s = cache.create_sequence();
  std::vector<std::vector<float>> rows;
  for (int t = 0; t < 6; ++t) {
    cache.extend(s, t + 1);
    rows.push_back(random_row(32, uint32_t(7 + t)));
    for (int l = 0; l < 2; ++l) cache.store(s, l, t, rows.back().data(), rows.back().data());
    // fp16 while the sequence held fewer than 4 tokens when this position was added.
    EXPECT_EQ(cache.precision(s, 0).bits, t < 4 ? 16 : 8) << t;
  }
  auto view = cache.view(s, 1);
  EXPECT_EQ(view.bits, 8);
  for (int t = 0; t < 6; ++t) {
    auto got = read_row(view, true, t);
    for (size_t i = 0; i < 32; ++i) ASSERT_NEAR(got[i], rows[size_t(t)][i], step_bound(rows[size_t(t)], 8, true) + 4e-3) << t;
  }
  // A new sequence starts in fp16 again.
  int32_t s2 = cache.create_sequence();
  cache.extend(s2, 1);
  EXPECT_EQ(cache.precision(s2, 0).bits, 16);
}

// Fills positions [from, to) of every layer of seq with rows random_row(seed = salt + t).
void fill(KvCache& cache, int32_t s, int from, int to, uint32_t salt) {
  const size_t elems = size_t(cache.shape().n_kv_heads) * size_t(cache.shape().head_dim);
  cache.extend(s, to);
  for (int t = from; t < to; ++t) {
    auto r = random_row(elems, salt + uint32_t(t));
    for (int l = 0; l < cache.shape().n_layers; ++l) cache.store(s, l, t, r.data(), r.data());
  }
}

// Positions [from, to) of seq read back as filled with `salt` (fp16 tolerance).
void expect_rows(const KvCache& cache, int32_t s, int from, int to, uint32_t salt) {
  const size_t elems = size_t(cache.shape().n_kv_heads) * size_t(cache.shape().head_dim);
  for (int l = 0; l < cache.shape().n_layers; ++l) {
    auto view = cache.view(s, l);
    for (int t = from; t < to; ++t) {
      auto want = random_row(elems, salt + uint32_t(t));
      auto got = read_row(view, true, t);
      for (size_t i = 0; i < elems; ++i) {
        const double tol = view.quantized() ? step_bound(want, view.bits, view.rotated) : 4e-3 * std::fabs(want[i]) + 1e-6;
        ASSERT_NEAR(got[i], want[i], tol) << "layer " << l << " t " << t;
      }
    }
  }
}

TEST(KvCache, SequencesSpanPages) {
  KvCache cache(shape(2, 2, 32));
  const int32_t a = cache.create_sequence(), b = cache.create_sequence();
  fill(cache, a, 0, 600, 1000);  // three pages: 256 + 256 + 88
  fill(cache, b, 0, 10, 5000);
  EXPECT_EQ(cache.pages_used(), 4);
  EXPECT_EQ(cache.bytes_used(), 4 * cache.page_bytes());
  EXPECT_EQ(cache.page_bytes(), 256 * KvSpec{}.bytes_per_token(cache.shape()));
  expect_rows(cache, a, 0, 600, 1000);
  expect_rows(cache, b, 0, 10, 5000);
  cache.release_sequence(a);
  EXPECT_EQ(cache.pages_used(), 1);
  cache.release_sequence(b);
  EXPECT_EQ(cache.pages_used(), 0);
  EXPECT_EQ(cache.bytes_used(), 0);
}

TEST(KvCache, CopyPrefixSharesWholePagesAndCopiesThePartialOne) {
  KvCache cache(shape(2, 2, 32), kv_spec_from_flags("", 4, 32, 0));
  const int32_t a = cache.create_sequence();
  fill(cache, a, 0, 700, 1);
  ASSERT_EQ(cache.pages_used(), 3);
  // 600 positions: pages 0 and 1 shared, 88 rows of page 2 copied into a page of its own.
  const int32_t b = cache.copy_prefix(a, 600);
  EXPECT_EQ(cache.length(b), 600);
  EXPECT_EQ(cache.pages_used(), 4);
  EXPECT_EQ(cache.distinct_bytes({a, b}), 4 * cache.page_bytes());
  EXPECT_EQ(cache.sequence_bytes(b), 3 * cache.page_bytes());
  // Both go on with different rows; neither disturbs the other.
  fill(cache, b, 600, 800, 9000);
  fill(cache, a, 700, 900, 1);
  expect_rows(cache, a, 0, 900, 1);
  expect_rows(cache, b, 0, 600, 1);
  expect_rows(cache, b, 600, 800, 9000);
  // A prefix on a page boundary shares everything; truncating into a shared page copies it first.
  const int32_t c = cache.copy_prefix(a, 512);
  const int before = cache.pages_used();
  cache.truncate(c, 300);
  EXPECT_EQ(cache.pages_used(), before + 1);
  fill(cache, c, 300, 320, 777);
  expect_rows(cache, a, 0, 900, 1);
  expect_rows(cache, c, 0, 300, 1);
  expect_rows(cache, c, 300, 320, 777);
  for (int32_t s : {a, b, c}) cache.release_sequence(s);
  EXPECT_EQ(cache.pages_used(), 0);
}

TEST(KvCache, BudgetCapsPagesAndQuantizedPagesAreSmaller) {
  const KvShape sh = shape(2, 2, 64);
  const int64_t fp16_page = 256 * KvSpec{}.bytes_per_token(sh);
  KvCache fp16(sh, {}, 3 * fp16_page);
  EXPECT_EQ(fp16.capacity_tokens(), 3 * 256);
  const int32_t a = fp16.create_sequence(), b = fp16.create_sequence();
  fill(fp16, a, 0, 512, 1);
  EXPECT_EQ(fp16.pages_free(), 1);
  EXPECT_EQ(fp16.pages_needed(b, 300), 2);
  EXPECT_FALSE(fp16.reserve(b, 300));  // nothing allocated when it cannot all fit
  EXPECT_EQ(fp16.pages_used(), 2);
  EXPECT_TRUE(fp16.reserve(b, 256));
  try {
    fp16.extend(b, 257);
    ADD_FAILURE() << "extend past the budget must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Overloaded);
  }
  EXPECT_EQ(fp16.copy_prefix(a, 100), -1);  // the partial page has nowhere to go
  EXPECT_GE(fp16.copy_prefix(a, 256), 0);   // a whole page is shared, not copied
  fp16.release_sequence(a);
  EXPECT_EQ(fp16.pages_free(), 1);  // the shared page lives on in the copy
  // 4-bit g64 K/V takes 4.5 of 16 bits: the same budget holds three times the tokens.
  KvCache q4(sh, kv_spec_from_flags("", 4, 64, 0), 3 * fp16_page);
  EXPECT_EQ(q4.capacity_tokens(), 3 * fp16_page / (256 * kv_spec_from_flags("", 4, 64, 0).bytes_per_token(sh)) * 256);
  EXPECT_GE(q4.capacity_tokens(), 10 * 256);
  EXPECT_THROW(KvCache(sh, {}, fp16_page - 1), Error);
}

TEST(KvCache, ReleasedPagesAreReusedWithinTheBudget) {
  const KvShape sh = shape(2, 2, 64);
  const int64_t page = 256 * KvSpec{}.bytes_per_token(sh);
  KvCache c(sh, {}, 3 * page);
  const int32_t a = c.create_sequence();
  fill(c, a, 0, 512, 1);
  const std::set<const uint8_t*> first = {c.view(a, 0).k_row(0, 0), c.view(a, 0).k_row(0, 256)};
  c.release_sequence(a);
  EXPECT_EQ(c.pages_used(), 0);
  EXPECT_EQ(c.bytes_used(), 0);
  EXPECT_EQ(c.pages_free(), 3);  // kept memory is not counted as used
  const int32_t b = c.create_sequence();
  fill(c, b, 0, 600, 7);  // two pages from the released memory and a new one
  const std::set<const uint8_t*> again = {c.view(b, 0).k_row(0, 0), c.view(b, 0).k_row(0, 256)};
  EXPECT_EQ(again, first);
  EXPECT_EQ(first.count(c.view(b, 0).k_row(0, 512)), 0u);
  expect_rows(c, b, 0, 600, 7);  // nothing of the old sequence shows through
  EXPECT_EQ(c.pages_free(), 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    return e.what();
  }
  return "(no error)";
}

TEST(KvConfig, BadConfigsNameTheEntry) {
  auto parse = [](const std::string& t) { return error_of([&] { parse_kv_config(t, "kv.json"); }); };
  EXPECT_NE(parse("[{").find("kv.json: not valid JSON"), std::string::npos);
  EXPECT_NE(parse(R"({"layer_idx": 1})").find("kv.json: expected a JSON list"), std::string::npos);
  EXPECT_EQ(parse(R"([{"bits": 8}])"), "kv.json: entry 0: missing \"layer_idx\"");
  EXPECT_EQ(parse(R"([{"layer_idx": "3", "bits": 8}])"), "kv.json: entry 0: \"layer_idx\" must be an integer");
  EXPECT_EQ(parse(R"([{"layer_idx": 0, "bits": 8}, {"layer_idx": 3, "bits": 7}])"),
            "kv.json: entry 1 (layer_idx 3): bits 7 is not supported (use 2, 3, 4, 5, 6, 8, or 16 for fp16)");
  EXPECT_EQ(parse(R"([{"layer_idx": 3, "bits": 4, "group_size": 48}])"),
            "kv.json: entry 0 (layer_idx 3): group_size 48 is not supported (a power of two from 8 to 1024)");
  EXPECT_EQ(parse(R"([{"layer_idx": 3, "bits": 4}, {"layer_idx": 3, "bits": 8}])"),
            "kv.json: entry 1 (layer_idx 3): layer 3 is listed twice");
  EXPECT_EQ(parse(R"([{"layer_idx": -1, "bits": 4}])"), "kv.json: entry 0: layer_idx must be >= 0");

  auto validate = [](const std::string& t, const KvShape& sh) {
    return error_of([&] { parse_kv_config(t, "kv.json").validate(sh); });
  };
  EXPECT_EQ(validate(R"([{"layer_idx": 4, "bits": 8}])", shape()), "kv.json: entry 0 (layer_idx 4): the model has 4 layers (0-3)");
  EXPECT_EQ(validate(R"([{"layer_idx": 1, "bits": 8, "group_size": 128}])", shape()),
            "kv.json: entry 0 (layer_idx 1): group_size 128 does not divide head_dim 64 (groups run along one head; use a "
            "power of two from 8 to 64)");
  KvShape hybrid = shape();
  hybrid.has_kv = {false, false, false, true};
  EXPECT_EQ(validate(R"([{"layer_idx": 3, "bits": 8}, {"layer_idx": 0, "bits": 4}])", hybrid),
            "kv.json: entry 0 (layer_idx 0): layer 0 has no KV cache (it is a linear-attention layer)");
  EXPECT_EQ(error_of([] { kv_spec_from_flags("", 8, 64, 0).validate(shape(2, 4, 8)); }),
            "--kv-bits 8 --kv-group-size 64: group_size 64 does not divide head_dim 8 (groups run along one head; use 8)");
  EXPECT_EQ(error_of([] { kv_spec_from_flags("", 7, 0, 0); }), "--kv-bits: 7 is not supported (use 2, 3, 4, 5, 6, 8, or 16 for fp16)");
  EXPECT_EQ(error_of([] { KvCache c(shape(), parse_kv_config(R"([{"layer_idx": 9, "bits": 8}])", "x.json")); }),
            "x.json: entry 0 (layer_idx 9): the model has 4 layers (0-3)");
}

TEST(KvConfig, SeedFormatRoundTripsAndDescribes) {
  KvSpec spec = parse_kv_config(R"([{"layer_idx": 0, "bits": 8, "group_size": 64}, {"layer_idx": 1, "bits": 4, "group_size": 64}])", "a");
  EXPECT_EQ(kv_config_json(spec.layers),
            "[\n  {\"layer_idx\": 0, \"bits\": 8, \"group_size\": 64},\n  {\"layer_idx\": 1, \"bits\": 4, \"group_size\": 64}\n]\n");
  EXPECT_EQ(kv_config_json({}), "[]\n");
  spec.default_precision = {4, 64};
  std::string d = spec.describe(shape());
  EXPECT_NE(d.find("layers 0: 8-bit g64\n  layers 1-3: 4-bit g64\n"), std::string::npos) << d;
  // 8-bit g64: 128+8 bytes per K row, 4-bit g64: 64+8; against fp16 256.
  EXPECT_NE(d.find("KV bytes per token: 704 (fp16: 2048, 2.91x smaller); mean bits 5.00 nominal, 5.50 effective"), std::string::npos) << d;
}

}  // namespace
