// Every architecture x weight format: logits of small random models agree with the independent NumPy
// reference (tools/ref_forward.py, goldens made by tools/gen_model_goldens.py), and the batched forward
// pass is consistent (chunked prefill = one prefill; two sequences in one batch = each alone).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/synthetic.h"
#include "model_files.h"
#include "test_paths.h"
#include "util/cpu.h"

using namespace optiq;

namespace {

const nlohmann::json& goldens() {
  static const nlohmann::json g =
      nlohmann::json::parse(std::ifstream(test::source_dir() + "/tests/data/model/goldens.json"));
  return g;
}

// Tolerances relative to the largest |logit|. The reference rounds K/V to fp16 as our cache does and
// dequantizes the very same stored weights, so the exact (scalar) path agrees to accumulation order for
// every format. The AVX2 path for quantized formats rounds activations to int8 per 32-element block
// (as llama.cpp does; bound in kernels/matmul.h), which moves logits by a few percent of their range on
// these random models: there we bound the worst and the mean deviation.
struct Tolerance {
  float worst, mean;
};
Tolerance tolerance(const std::string& format, Isa isa) {
  bool exact = isa == Isa::Scalar || format == "f32" || format == "gguf-f32" || format == "f16" ||
               format == "gguf-f16" || format == "bf16";
  if (exact) return {1e-4f, 1e-4f};
  return {8e-2f, 1.5e-2f};
}

struct Case {
  std::string shape, format;
};

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (auto& c : goldens()["cases"]) v.push_back({c["shape"], c["format"]});
  return v;
}

class SyntheticModel : public ::testing::TestWithParam<Case> {};

TEST_P(SyntheticModel, LogitsMatchNumpyReference) {
  const Case& cs = GetParam();
  const nlohmann::json* golden = nullptr;
  for (auto& c : goldens()["cases"])
    if (c["shape"] == cs.shape && c["format"] == cs.format) golden = &c;
  ASSERT_NE(golden, nullptr);
  auto tokens = goldens()["tokens"].get<std::vector<int32_t>>();
  auto positions = goldens()["positions"].get<std::vector<int>>();
  auto m = model::Model::load(test::write_test_model(cs.shape, cs.format));
  const int V = m->config().vocab_size;

  for (Isa isa : {Isa::Avx2, Isa::Scalar}) {
    set_active_isa(isa);
    // Prefill the first 8 tokens in one step (logits at the golden positions inside it), then decode
    // the rest one token at a time over the cache.
    auto cache = m->make_cache();
    int32_t seq = cache->create_sequence();
    std::map<int, std::vector<float>> got;
    model::Batch b;
    for (int i = 0; i < 8; ++i) b.add(tokens[size_t(i)], i, seq, std::count(positions.begin(), positions.end(), i) > 0);
    std::vector<float> out(b.n_logits() * size_t(V));
    m->forward(b, *cache, out.data());
    int k = 0;
    for (int i = 0; i < 8; ++i)
      if (b.want_logits[size_t(i)]) got[i] = std::vector<float>(out.begin() + k * V, out.begin() + (k + 1) * V), ++k;
    for (int i = 8; i < int(tokens.size()); ++i) {
      b.clear();
      b.add(tokens[size_t(i)], i, seq, true);
      std::vector<float> l(static_cast<size_t>(V));
      m->forward(b, *cache, l.data());
      got[i] = l;
    }
    for (size_t pi = 0; pi < positions.size(); ++pi) {
      auto expect = (*golden)["logits"][pi].get<std::vector<float>>();
      float max_abs = 0;
      for (float x : expect) max_abs = std::max(max_abs, std::fabs(x));
      const auto& l = got[positions[pi]];
      float worst = 0;
      double sum = 0;
      for (int j = 0; j < V; ++j) {
        float d = std::fabs(l[size_t(j)] - expect[size_t(j)]);
        worst = std::max(worst, d);
        sum += d;
      }
      const Tolerance tol = tolerance(cs.format, isa);
      const std::string where = cs.shape + " " + cs.format + " position " + std::to_string(positions[pi]) + " isa " +
                                isa_name(isa) + " (if the model generator changed, rerun tools/gen_model_goldens.py)";
      EXPECT_LE(worst, tol.worst * max_abs) << where;
      EXPECT_LE(sum / V, tol.mean * max_abs) << where;
    }
  }
  set_active_isa(detected_isa());
}

INSTANTIATE_TEST_SUITE_P(AllFormats, SyntheticModel, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.shape + "_" + info.param.format;
  for (auto& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

TEST(SyntheticModel, BatchOfTwoSequencesEqualsEachAlone) {
  auto m = model::Model::load(test::write_test_model("tiny-qwen3", "bf16"));
  const int V = m->config().vocab_size;
  std::vector<int32_t> a = {1, 5, 9, 200, 33, 4}, c = {1, 77, 8};
  auto run_alone = [&](const std::vector<int32_t>& t) {
    auto cache = m->make_cache();
    int32_t s = cache->create_sequence();
    model::Batch b;
    for (size_t i = 0; i < t.size(); ++i) b.add(t[i], int32_t(i), s, i + 1 == t.size());
    std::vector<float> l(static_cast<size_t>(V));
    m->forward(b, *cache, l.data());
    return l;
  };
  auto la = run_alone(a), lc = run_alone(c);
  auto cache = m->make_cache();
  int32_t sa = cache->create_sequence(), sc = cache->create_sequence();
  model::Batch b;
  // Interleave rows of the two sequences in one batch.
  for (size_t i = 0; i < std::max(a.size(), c.size()); ++i) {
    if (i < a.size()) b.add(a[i], int32_t(i), sa, i + 1 == a.size());
    if (i < c.size()) b.add(c[i], int32_t(i), sc, i + 1 == c.size());
  }
  std::vector<float> out(2 * size_t(V));
  m->forward(b, *cache, out.data());
  // Rows with logits come out in batch order: c's last row (i=2) precedes a's (i=5).
  for (int j = 0; j < V; ++j) {
    EXPECT_NEAR(out[size_t(j)], lc[size_t(j)], 1e-4f);
    EXPECT_NEAR(out[size_t(V + j)], la[size_t(j)], 1e-4f);
  }
}

// With 4-bit weights, decode rows batched together get bit for bit the logits each gets in a step of its
// own (the batched matmul rounds each row as the one-row kernel does), step after step: a stream's text
// cannot depend on who else is being served.
TEST(SyntheticModel, FourBitDecodeStepsInABatchEqualEachAlone) {
  for (const char* format : {"mlx4", "gguf-q4_0"}) {
    SCOPED_TRACE(format);
    auto m = model::Model::load(test::write_test_model("tiny-qwen3", format));
    const int V = m->config().vocab_size;
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 200, 33, 4}, {1, 77, 8}, {1, 300, 12, 40}};
    const int S = int(prompts.size());
    // Two caches holding the same prefilled sequences.
    auto prefilled = [&](std::vector<int32_t>& seqs) {
      auto cache = m->make_cache();
      std::vector<float> l(static_cast<size_t>(V));
      for (const auto& p : prompts) {
        seqs.push_back(cache->create_sequence());
        model::Batch b;
        for (size_t i = 0; i < p.size(); ++i) b.add(p[i], int32_t(i), seqs.back(), i + 1 == p.size());
        m->forward(b, *cache, l.data());
      }
      return cache;
    };
    std::vector<int32_t> sa, sb;
    auto ca = prefilled(sa), cb = prefilled(sb);
    for (int step = 0; step < 3; ++step) {
      std::vector<float> alone(size_t(S) * V), together(size_t(S) * V);
      model::Batch all;
      for (int s = 0; s < S; ++s) {
        const int32_t tok = 10 + 7 * s + step, pos = int32_t(prompts[size_t(s)].size()) + step;
        model::Batch one;
        one.add(tok, pos, sa[size_t(s)], true);
        m->forward(one, *ca, alone.data() + size_t(s) * V);
        all.add(tok, pos, sb[size_t(s)], true);
      }
      m->forward(all, *cb, together.data());
      EXPECT_EQ(together, alone) << "step " << step;
    }
  }
}

TEST(SyntheticModel, GeneratorIsDeterministic) {
  std::string d1 = test::scratch_dir("det1"), d2 = test::scratch_dir("det2");
  auto spec = model::synthetic_shape("tiny-llama");
  model::write_synthetic_model(spec, "mlx4", d1);
  model::write_synthetic_model(spec, "mlx4", d2);
  std::ifstream f1(d1 + "/model.safetensors", std::ios::binary), f2(d2 + "/model.safetensors", std::ios::binary);
  std::string s1((std::istreambuf_iterator<char>(f1)), {}), s2((std::istreambuf_iterator<char>(f2)), {});
  EXPECT_FALSE(s1.empty());
  EXPECT_EQ(s1, s2);
}

}  // namespace
