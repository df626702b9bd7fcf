// AdapterScope: the library's scoped adapter selection. Two threads in different scopes generate at the
// same time and each gets exactly its adapter's text; scopes nest and restore; unknown names are errors.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "engine/adapter_scope.h"
#include "engine/generator.h"
#include "formats/safetensors.h"
#include "model/lora.h"
#include "test_paths.h"
#include "util/error.h"

#include <fstream>

using namespace optiq;

namespace {

// A random mlx-lm adapter on q_proj and down_proj of every layer.
std::string write_adapter(const model::ModelConfig& c, const std::string& name, uint32_t seed) {
  const std::string dir = test::scratch_dir(name);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  auto randv = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
  };
  const int64_t q = int64_t(c.num_attention_heads) * c.head_dim, r = 4;
  formats::SafetensorsWriter w;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.add_f32(p + "self_attn.q_proj.lora_a", {c.hidden_size, r}, randv(size_t(c.hidden_size * r)));
    w.add_f32(p + "self_attn.q_proj.lora_b", {r, q}, randv(size_t(r * q)));
    w.add_f32(p + "mlp.down_proj.lora_a", {c.intermediate_size, r}, randv(size_t(c.intermediate_size * r)));
    w.add_f32(p + "mlp.down_proj.lora_b", {r, c.hidden_size}, randv(size_t(r * c.hidden_size)));
  }
  w.write(dir + "/adapters.safetensors");
  std::ofstream(dir + "/adapter_config.json") << R"({"fine_tune_type": "lora", "lora_parameters": {"rank": 4, "scale": 2.0}})";
  return dir;
}

std::string run(const engine::LoadedModel& lm, const std::vector<int32_t>& prompt, int32_t set = 0) {
  engine::GenerateOptions o;
  o.max_tokens = 24;
  o.adapter_set = set;
  std::string text;
  engine::generate(lm, prompt, o, [&](const engine::SampledToken&, const std::string& t) {
    text += t;
    return true;
  });
  return text;
}

}  // namespace

TEST(AdapterScope, ThreadsInDifferentScopesEachGetTheirAdapter) {
  OPTIQ_REQUIRE_SHARED(test::shared_path("models/stories260K-hf"));
  engine::LoadedModel lm = engine::LoadedModel::load(test::shared_path("models/stories260K-hf"));
  model::Model& m = *lm.model;
  const int a = m.mount_adapter(model::load_adapter(write_adapter(m.config(), "scope-a", 1), m.config(), "agent-A"));
  const int b = m.mount_adapter(model::load_adapter(write_adapter(m.config(), "scope-b", 2), m.config(), "agent-B"));
  const auto prompt = lm.tokenizer->encode("Once upon a time", true);
  const std::string base = run(lm, prompt), want_a = run(lm, prompt, m.adapter_set({a})), want_b = run(lm, prompt, m.adapter_set({b}));
  ASSERT_NE(want_a, base);
  ASSERT_NE(want_b, base);
  ASSERT_NE(want_a, want_b);
  std::string got[2][3];
  auto worker = [&](int i) {
    engine::AdapterScope scope(m, i == 0 ? "agent-A" : "agent-B");
    for (int k = 0; k < 3; ++k) got[i][k] = run(lm, prompt);
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(got[0][k], want_a) << k;
    EXPECT_EQ(got[1][k], want_b) << k;
  }
  // Nesting: the inner scope wins until it ends; then the outer one is back; then none.
  {
    engine::AdapterScope outer(m, "agent-A");
    EXPECT_EQ(engine::AdapterScope::current(), m.adapter_set({a}));
    {
      engine::AdapterScope inner(m, "agent-A+agent-B");
      EXPECT_EQ(engine::AdapterScope::current(), m.adapter_set({a, b}));
      engine::AdapterScope none(m, "base");
      EXPECT_EQ(engine::AdapterScope::current(), 0);
      EXPECT_EQ(run(lm, prompt), base);
    }
    EXPECT_EQ(engine::AdapterScope::current(), m.adapter_set({a}));
    EXPECT_EQ(run(lm, prompt), want_a);
  }
  EXPECT_EQ(engine::AdapterScope::current(), 0);
  try {
    engine::AdapterScope bad(m, "agent-C");
    ADD_FAILURE() << "an unknown adapter must throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "unknown adapter 'agent-C' (mounted: agent-A, agent-B)");
  }
  EXPECT_EQ(engine::AdapterScope::current(), 0);
}
