// optiq kv-cache on stories260K (head_dim 8, so --group-size 8) with ../shared's TinyStories text: the
// files it writes, its table, determinism, its errors; and the config it chooses is at least as good,
// measured jointly, as uniform 4-bit and as every other config with the same mean bits.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <fstream>
#include <regex>

#include "engine/generator.h"
#include "engine/kv_calibration.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "run_optiq.h"
#include "test_paths.h"
#include "util/mapped_file.h"

namespace optiq {
namespace {

class KvCacheCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("models/stories260K/stories260K.gguf");
    text_ = test::shared_path("text/tinystories-valid-sample.txt");
    OPTIQ_REQUIRE_SHARED(model_);
    OPTIQ_REQUIRE_SHARED(text_);
  }
  CmdResult calibrate(const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"kv-cache", model_, "--group-size", "8", "--calib-file", text_, "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_optiq(args, "kv_cache_cmd_run");
  }
  std::string model_, text_;
};

TEST_F(KvCacheCommand, WritesTheSeedsConfigAndTheSensitivities) {
  const std::string a = test::scratch_dir("kv_cache_a"), b = test::scratch_dir("kv_cache_b");
  CmdResult r = calibrate(a);
  ASSERT_EQ(r.rc, 0) << r.err;
  // Five layers at a 5.0 budget: 25 bits, so one layer gets 8 bits.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("4 layers @ 4-bit, 1 layers @ 8-bit, achieved 4.80 average bits\n$"))) << r.out;
  EXPECT_NE(r.out.find("| layer |      KL @4 |      KL @8 |  top1 @min | bits |\n"), std::string::npos) << r.out;
  // The joint check on the calibration windows: the chosen config beats every layer at 4 bits.
  std::smatch chosen_m, all4_m;
  ASSERT_TRUE(std::regex_search(r.out, chosen_m, std::regex(R"(joint check, chosen: +ppl [0-9.]+ \(fp16 [0-9.]+, \+[0-9.]+%\), mean KL ([0-9.e+-]+))")))
      << r.out;
  ASSERT_TRUE(std::regex_search(r.out, all4_m, std::regex(R"(joint check, all 4-bit: +ppl [0-9.]+ \(fp16 [0-9.]+, \+[0-9.]+%\), mean KL ([0-9.e+-]+))")))
      << r.out;
  EXPECT_LT(std::stod(chosen_m[1]), std::stod(all4_m[1]));

  kv::KvSpec spec = kv::load_kv_config(a + "/kv_config.json");
  ASSERT_EQ(spec.layers.size(), 5u);
  int eights = 0;
  for (auto& [l, p] : spec.layers) {
    EXPECT_EQ(p.group_size, 8);
    EXPECT_TRUE(p.bits == 4 || p.bits == 8);
    eights += p.bits == 8;
  }
  EXPECT_EQ(eights, 1);
  const std::string cfg = read_text_file(a + "/kv_config.json");
  EXPECT_TRUE(std::regex_search(cfg, std::regex(R"(^\[\n  \{"layer_idx": 0, "bits": [48], "group_size": 8\},\n)"))) << cfg;

  auto sens = nlohmann::json::parse(read_text_file(a + "/kv_sensitivity.json"));
  ASSERT_EQ(sens.size(), 5u);
  for (int l = 0; l < 5; ++l) {
    const auto& e = sens[size_t(l)];
    EXPECT_EQ(e["layer_idx"], l);
    EXPECT_EQ(e["layer_name"], "model.layers." + std::to_string(l) + ".self_attn");
    EXPECT_EQ(e["n_kv_heads"], 4);
    EXPECT_EQ(e["head_dim"], 8);
    EXPECT_EQ(e["chosen_bits"], spec.layers.at(l).bits);
    EXPECT_GT(double(e["sensitivities"]["4"]), double(e["sensitivities"]["8"]));
    EXPECT_GT(double(e["sensitivities"]["8"]), 0.0);
    EXPECT_GT(double(e["top1_agreement"]["8"]), double(e["top1_agreement"]["4"]));
    EXPECT_GT(double(e["perplexity"]["4"]), double(e["perplexity_fp16"]));
    EXPECT_EQ(e["positions"], 5 * 511);
  }

  // Identical runs give identical files.
  ASSERT_EQ(calibrate(b).rc, 0);
  EXPECT_EQ(read_text_file(b + "/kv_config.json"), cfg);
  EXPECT_EQ(read_text_file(b + "/kv_sensitivity.json"), read_text_file(a + "/kv_sensitivity.json"));
}

TEST_F(KvCacheCommand, TheChosenConfigBeatsUniformFourAndEveryOtherSameBudgetConfig) {
  const std::string dir = test::scratch_dir("kv_cache_quality");
  ASSERT_EQ(calibrate(dir).rc, 0);
  kv::KvSpec chosen = kv::load_kv_config(dir + "/kv_config.json");

  // Joint runs (every layer at its precision at once) over windows of the same text.
  engine::LoadedModel lm = engine::LoadedModel::load(model_);
  const std::vector<int32_t> all = lm.tokenizer->encode(read_text_file(text_), true);
  std::vector<std::vector<int32_t>> samples;
  for (size_t s = 0; s + 512 <= all.size() && samples.size() < 4; s += 512) samples.emplace_back(all.begin() + long(s), all.begin() + long(s + 512));
  auto joint_kl = [&](const kv::KvSpec& spec) { return engine::compare_kv_spec(*lm.model, samples, spec).kl_mean(); };
  const double kl_chosen = joint_kl(chosen);
  kv::KvSpec uniform4;
  uniform4.default_precision = {4, 8};
  EXPECT_LT(kl_chosen, joint_kl(uniform4));
  int chosen_layer = -1;
  for (auto& [l, p] : chosen.layers)
    if (p.bits == 8) chosen_layer = l;
  for (int l = 0; l < 5; ++l) {  // every config with one 8-bit layer: the same 4.8 mean bits
    if (l == chosen_layer) continue;
    kv::KvSpec other = uniform4;
    other.layers[l] = {8, 8};
    EXPECT_LE(kl_chosen, joint_kl(other)) << "8 bits on layer " << l << " instead of " << chosen_layer;
  }
}

TEST_F(KvCacheCommand, BadRequestsAreClearErrors) {
  const std::string dir = test::scratch_dir("kv_cache_bad");
  CmdResult r = calibrate(dir, {"--target-bits", "3"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--target-bits 3 is below the smallest candidate (4 bits): no allocation can meet it"), std::string::npos) << r.err;
  r = calibrate(dir, {"--candidate-bits", "4,7"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--candidate-bits 7 / --group-size 8: entry 0 (layer_idx 0): bits 7 is not supported"), std::string::npos) << r.err;
  r = run_optiq({"kv-cache", model_, "-o", dir}, "kv_cache_cmd_run");  // group 64 > head_dim 8
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("group_size 64 does not divide head_dim 8"), std::string::npos) << r.err;
  r = calibrate(dir, {"--seq-len", "100000"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--seq-len 100000 is longer than the model's context ("), std::string::npos) << r.err;
  r = run_optiq({"kv-cache", model_}, "kv_cache_cmd_run");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("no output folder (-o DIR)"), std::string::npos) << r.err;
}

// A hybrid (Qwen3.5-shaped: DeltaNet layers 0 and 2, gated attention layers 1 and 3): only the attention
// layers are measured and listed, and serve accepts what it writes.
TEST_F(KvCacheCommand, HybridModelListsOnlyItsAttentionLayers) {
  const std::string dir = test::scratch_dir("kv_cache_hybrid"), model = dir + "/model", out = dir + "/kv";
  const std::string tok = test::shared_path("models/stories260K-hf/tokenizer.json");
  OPTIQ_REQUIRE_SHARED(tok);
  model::SyntheticSpec spec = model::synthetic_shape("tiny-qwen3_5");
  model::write_synthetic_model(spec, "bf16", model);  // 320 ids: fewer than the tokenizer's 512
  std::ofstream(model + "/tokenizer.json") << read_text_file(tok);
  CmdResult small = run_optiq({"kv-cache", model, "--calib-file", text_, "-o", out}, "kv_cache_cmd_hybrid_small");
  EXPECT_EQ(small.rc, 1) << small.err;
  EXPECT_NE(small.err.find("the tokenizer has 512 tokens but the model's vocab_size is 320"), std::string::npos) << small.err;
  spec.vocab_size = 512;
  model::write_synthetic_model(spec, "bf16", model);
  CmdResult r = run_optiq({"kv-cache", model, "--target-bits", "6", "--n-samples", "1", "--seq-len", "64", "--calib-file", text_, "-o", out},
                          "kv_cache_cmd_hybrid");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\|     1 \|.*\n\|     3 \|.*\n)"))) << r.out;
  EXPECT_EQ(r.out.find("|     0 |"), std::string::npos) << r.out;
  kv::KvSpec kv = kv::load_kv_config(out + "/kv_config.json");
  std::vector<int> layers;
  for (auto& [l, p] : kv.layers) layers.push_back(l);
  EXPECT_EQ(layers, (std::vector<int>{1, 3}));
  EXPECT_NO_THROW(model::Model::load(model)->make_cache(kv));
}

}  // namespace
}  // namespace optiq
