// Hybrid (Gated DeltaNet + gated attention) and MoE architectures: logits of small random models in the raw
// HF and MLX layouts agree with the independent NumPy reference (tools/ref_hybrid.py, goldens made by
// tools/gen_model_goldens.py ... hybrid) for prefills of 1, 8, 63, 150 and 200 tokens and for decode after
// a prefill; batched sequences keep separate states; prefixes are shared through state snapshots.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "kv/kv_spec.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "model_files.h"
#include "test_paths.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

using namespace optiq;

namespace {

const nlohmann::json& goldens() {
  static const nlohmann::json g =
      nlohmann::json::parse(std::ifstream(test::source_dir() + "/tests/data/model/goldens_hybrid.json"));
  return g;
}

// Runs tokens[0, n) through one prefill (logits at `want`), then decodes tokens[n, end) one at a time.
std::map<int, std::vector<float>> run(const model::Model& m, kv::KvCache& cache, int32_t seq, const std::vector<int32_t>& tokens,
                                      int n, int end, const std::vector<int>& want) {
  const int V = m.config().vocab_size;
  std::map<int, std::vector<float>> got;
  model::Batch b;
  for (int i = 0; i < n; ++i) b.add(tokens[size_t(i)], i, seq, std::count(want.begin(), want.end(), i) > 0);
  std::vector<float> out(b.n_logits() * size_t(V));
  m.forward(b, cache, out.data());
  int k = 0;
  for (int i = 0; i < n; ++i)
    if (b.want_logits[size_t(i)]) got[i] = std::vector<float>(out.begin() + k * V, out.begin() + (k + 1) * V), ++k;
  for (int i = n; i < end; ++i) {
    b.clear();
    b.add(tokens[size_t(i)], i, seq, true);
    std::vector<float> l(static_cast<size_t>(V));
    m.forward(b, cache, l.data());
    got[i] = l;
  }
  return got;
}

struct Case {
  std::string shape, format;
};

class HybridModel : public ::testing::TestWithParam<Case> {};

TEST_P(HybridModel, LogitsMatchNumpyReference) {
  const Case& cs = GetParam();
  const nlohmann::json* golden = nullptr;
  for (auto& c : goldens()["cases"])
    if (c["shape"] == cs.shape && c["format"] == cs.format) golden = &c;
  ASSERT_NE(golden, nullptr);
  auto tokens = goldens()["tokens"].get<std::vector<int32_t>>();
  auto positions = goldens()["positions"].get<std::vector<int>>();
  auto m = model::Model::load(test::write_test_model(cs.shape, cs.format));
  const int V = m->config().vocab_size;
  const bool exact_format = cs.format == "f32" || cs.format == "f16" || cs.format == "bf16" || cs.format == "gguf-f32";

  for (Isa isa : {Isa::Avx2, Isa::Scalar}) {
    set_active_isa(isa);
    // Tolerances relative to the largest |logit|: the exact paths (f32 arithmetic on dequantized weights:
    // every format on the scalar ISA) agree to accumulation order. MLX weights on AVX2 round activations to
    // int8 per block (kernels/matmul.h, as llama.cpp does); over 200 recurrent steps, and with a router
    // whose top-k choice can flip on a near tie, that moves logits by up to a fifth of their range: there
    // the bound only catches gross errors.
    const bool exact = exact_format || isa == Isa::Scalar;
    const float worst_tol = exact ? 1e-4f : 0.25f, mean_tol = exact ? 1e-4f : 0.06f;
    auto check = [&](int pos, const std::vector<float>& l, const std::string& how) {
      size_t pi = size_t(std::find(positions.begin(), positions.end(), pos) - positions.begin());
      ASSERT_LT(pi, positions.size());
      auto expect = (*golden)["logits"][pi].get<std::vector<float>>();
      float max_abs = 0, worst = 0;
      double sum = 0;
      for (float x : expect) max_abs = std::max(max_abs, std::fabs(x));
      for (int j = 0; j < V; ++j) {
        const float d = std::fabs(l[size_t(j)] - expect[size_t(j)]);
        worst = std::max(worst, d);
        sum += d;
      }
      const std::string where = cs.shape + " " + cs.format + " " + how + " position " + std::to_string(pos) + " isa " +
                                isa_name(isa) + " (if the model generator changed, rerun tools/gen_model_goldens.py build/optiq hybrid)";
      EXPECT_LE(worst, worst_tol * max_abs) << where;
      EXPECT_LE(sum / V, mean_tol * max_abs) << where;
    };
    for (int n : {1, 8, 63, 200}) {  // one prefill of n tokens
      auto cache = m->make_cache();
      auto got = run(*m, *cache, cache->create_sequence(), tokens, n, n, {n - 1});
      check(n - 1, got[n - 1], "prefill " + std::to_string(n));
    }
    auto cache = m->make_cache();  // prefill 150 (chunked DeltaNet), decode 50 (recurrent)
    auto got = run(*m, *cache, cache->create_sequence(), tokens, 150, 200, {0, 7, 62, 149});
    for (int p : positions) check(p, got[p], "prefill 150 + decode");
  }
  set_active_isa(detected_isa());
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (auto& c : goldens()["cases"]) v.push_back({c["shape"], c["format"]});
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, HybridModel, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.shape + "_" + info.param.format;
  for (auto& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

std::vector<float> last_logits(const model::Model& m, kv::KvCache& cache, int32_t seq, const std::vector<int32_t>& t, int from) {
  model::Batch b;
  for (int i = from; i < int(t.size()); ++i) b.add(t[size_t(i)], i, seq, i + 1 == int(t.size()));
  std::vector<float> l(static_cast<size_t>(m.config().vocab_size));
  m.forward(b, cache, l.data());
  return l;
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, float tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, tol) << what;
}

TEST(HybridModel, BatchedSequencesKeepSeparateStates) {
  auto m = model::Model::load(test::write_test_model("tiny-qwen3_next", "bf16"));
  const int V = m->config().vocab_size;
  std::vector<int32_t> a = {1, 5, 9, 200, 33, 4, 17, 18, 19}, c = {1, 77, 8};
  auto alone = [&](const std::vector<int32_t>& t) {
    auto cache = m->make_cache();
    return last_logits(*m, *cache, cache->create_sequence(), t, 0);
  };
  auto la = alone(a), lc = alone(c);
  auto cache = m->make_cache();
  int32_t sa = cache->create_sequence(), sc = cache->create_sequence();
  model::Batch b;
  for (size_t i = 0; i < std::max(a.size(), c.size()); ++i) {  // rows of the two sequences interleaved
    if (i < a.size()) b.add(a[i], int32_t(i), sa, i + 1 == a.size());
    if (i < c.size()) b.add(c[i], int32_t(i), sc, i + 1 == c.size());
  }
  std::vector<float> out(2 * size_t(V));
  m->forward(b, *cache, out.data());
  expect_near(std::vector<float>(out.begin(), out.begin() + V), lc, 1e-4f, "sequence c in a batch");
  expect_near(std::vector<float>(out.begin() + V, out.end()), la, 1e-4f, "sequence a in a batch");
}

// A prefix is shared through the exact state snapshot at a page boundary or a marked position, never
// by rewinding; the continuation equals a fresh run of the whole sequence.
TEST(HybridModel, PrefixesResumeFromStateSnapshots) {
  auto m = model::Model::load(test::write_test_model("tiny-qwen3_5", "f32"));
  std::vector<int32_t> t;
  for (int i = 0; i < 300; ++i) t.push_back((i * 31 + 7) % 300 + 3);
  auto fresh = m->make_cache();
  auto want = last_logits(*m, *fresh, fresh->create_sequence(), t, 0);

  auto cache = m->make_cache();
  const int32_t s = cache->create_sequence();
  cache->mark_snapshot(s, 280);
  (void)last_logits(*m, *cache, s, t, 0);
  EXPECT_TRUE(cache->has_state());
  EXPECT_EQ(cache->restorable(s, 300), 300);
  EXPECT_EQ(cache->restorable(s, 290), 280);
  EXPECT_EQ(cache->restorable(s, 279), 256);
  EXPECT_EQ(cache->restorable(s, 200), 0);
  for (int32_t at : {256, 280, 300}) {
    const int32_t c = cache->copy_prefix(s, at);
    ASSERT_GE(c, 0);
    EXPECT_EQ(cache->length(c), at);
    if (at < 300) expect_near(last_logits(*m, *cache, c, t, at), want, 1e-4f, "resumed at " + std::to_string(at));
    cache->release_sequence(c);
  }
  cache->truncate(s, 256);  // back to the boundary snapshot, then forward again
  expect_near(last_logits(*m, *cache, s, t, 256), want, 1e-4f, "truncated to 256");
}

TEST(HybridModel, KvConfigForALinearAttentionLayerIsRejected) {
  auto m = model::Model::load(test::write_test_model("tiny-qwen3_5", "bf16"));
  EXPECT_FALSE(m->kv_shape().layer_has_kv(0));
  EXPECT_TRUE(m->kv_shape().layer_has_kv(1));
  auto spec = kv::parse_kv_config(R"([{"layer_idx": 0, "bits": 8, "group_size": 32}])", "kv_config.json");
  try {
    m->make_cache(spec);
    FAIL() << "accepted a kv_config entry for a DeltaNet layer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0 has no KV cache (it is a linear-attention layer)"), std::string::npos) << e.what();
  }
  auto ok = kv::parse_kv_config(R"([{"layer_idx": 1, "bits": 4, "group_size": 32}, {"layer_idx": 3, "bits": 8, "group_size": 64}])", "kv_config.json");
  EXPECT_NO_THROW(m->make_cache(ok));
  // Only the two attention layers hold KV: 2 layers x 2 heads x 64 dims x (K, V) x 2 bytes.
  EXPECT_EQ(m->config().kv_bytes_per_token_f16(), 2 * 2 * 64 * 2 * 2);
}

TEST(HybridModel, MissingDeltaNetTensorNamesTheTensor) {
  std::string dir = test::write_test_model("tiny-qwen3_5", "f32");
  std::ifstream in(dir + "/config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["text_config"]["linear_num_value_heads"] = 8;  // the tensors hold 4 value heads
  std::ofstream(dir + "/config.json") << cfg.dump();
  try {
    model::Model::load(dir);
    FAIL() << "loaded a model whose DeltaNet tensors do not fit its config";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear_attn"), std::string::npos) << e.what();
  }
}

// A PEFT adapter over a Qwen3.5 VLM's attention layers (its names under model.language_model) gives the
// logits of the base with the deltas merged, gate rows of q_proj included; one on a DeltaNet layer's
// q_proj, which does not exist, is a clear error.
TEST(HybridModel, AdapterOnGatedAttentionEqualsMergedWeights) {
  const std::string base = test::write_test_model("tiny-qwen3_5", "f32");
  const auto spec = model::synthetic_shape("tiny-qwen3_5");
  const int64_t H = spec.hidden_size, q = int64_t(spec.num_attention_heads) * spec.head_dim, r = 2;
  struct D {
    std::string module;
    int64_t out, in;
    std::vector<float> a, b;
  };
  std::vector<D> ds = {{"model.language_model.layers.1.self_attn.q_proj", 2 * q, H, {}, {}},
                       {"model.language_model.layers.3.self_attn.o_proj", H, q, {}, {}}};
  uint32_t seed = 5;
  for (auto& d : ds) {
    std::mt19937 rng{seed++};
    std::normal_distribution<float> n(0.0f, 0.2f);
    d.a.resize(size_t(r * d.in));
    d.b.resize(size_t(d.out * r));
    // f16 values: an F32 adapter is applied in f16 (LoraDelta::packed), so these are applied exactly.
    for (auto& x : d.a) x = f16_to_f32(f32_to_f16(n(rng)));
    for (auto& x : d.b) x = f16_to_f32(f32_to_f16(n(rng)));
  }
  const float alpha = 4.0f, scale = alpha / float(r);
  auto write_peft = [&](const std::string& name, const std::vector<D>& v) {
    const std::string dir = test::scratch_dir(name);
    formats::SafetensorsWriter w;
    for (auto& d : v) {
      w.add_f32("base_model.model." + d.module + ".lora_A.weight", {r, d.in}, d.a);
      w.add_f32("base_model.model." + d.module + ".lora_B.weight", {d.out, r}, d.b);
    }
    w.write(dir + "/adapter_model.safetensors");
    std::ofstream(dir + "/adapter_config.json") << R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4})";
    return dir;
  };
  // The merged base: W + scale * B A on the two projections.
  const std::string merged = test::scratch_dir("hybrid-lora-merged");
  {
    formats::SafetensorsFile st(base + "/model.safetensors");
    formats::SafetensorsWriter w;
    for (auto& [name, t] : st.tensors()) {
      std::vector<float> v;
      ASSERT_TRUE(t.to_f32(v));
      for (auto& d : ds)
        if (name == d.module + ".weight")
          for (int64_t o = 0; o < d.out; ++o)
            for (int64_t i = 0; i < d.in; ++i) {
              double acc = 0;
              for (int64_t k = 0; k < r; ++k) acc += double(d.b[size_t(o * r + k)]) * d.a[size_t(k * d.in + i)];
              v[size_t(o * d.in + i)] += float(scale * acc);
            }
      if (t.dtype == DType::F32) w.add_f32(name, t.shape, v);
    }
    w.write(merged + "/model.safetensors");
    std::filesystem::copy_file(base + "/config.json", merged + "/config.json");
  }
  auto m = model::Model::load(base);
  auto mm = model::Model::load(merged);
  const int idx = m->mount_adapter(model::load_adapter(write_peft("hybrid-lora", ds), m->config(), "agent"));
  std::vector<int32_t> t = {1, 40, 41, 42, 7, 99, 100, 250, 3, 17};
  auto with_adapter = [&](const model::Model& model, int32_t set) {
    auto cache = model.make_cache();
    model::Batch b;
    const int32_t s = cache->create_sequence();
    for (size_t i = 0; i < t.size(); ++i) b.add(t[i], int32_t(i), s, i + 1 == t.size(), set);
    std::vector<float> l(static_cast<size_t>(model.config().vocab_size));
    model.forward(b, *cache, l.data());
    return l;
  };
  const auto want = with_adapter(*mm, 0), got = with_adapter(*m, m->adapter_set({idx})), plain = with_adapter(*m, 0);
  expect_near(got, want, 1e-4f, "adapter over gated attention");
  float moved = 0;
  for (size_t i = 0; i < want.size(); ++i) moved = std::max(moved, std::fabs(plain[i] - want[i]));
  EXPECT_GT(moved, 1e-2f) << "the adapter should change the logits";

  std::vector<D> on_delta = {{"model.language_model.layers.0.self_attn.q_proj", 2 * q, H, ds[0].a, ds[0].b}};
  try {
    model::load_adapter(write_peft("hybrid-lora-bad", on_delta), m->config(), "bad");
    FAIL() << "accepted an adapter for a DeltaNet layer's q_proj";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0 is a linear-attention (Gated DeltaNet) layer"), std::string::npos) << e.what();
  }
}

}  // namespace
