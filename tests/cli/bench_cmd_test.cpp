// optiq bench --adapter as a user meets it: a second row per depth decoded under the adapter, whose bytes per
// token are the base's plus exactly the adapter's A and B in 16 bits, with the median step overhead; a bad
// adapter stops start-up with exit code 1 (as in generate) and the path. optiq bench --interleave: the KV
// variants decode in turn at each depth, each row after the first with its median speed against the first.
// optiq bench --streams N: a second row per depth, N sequences decoded in one batch, with the batch's median
// tokens/s against one sequence and the weights' bytes shared by the N tokens of a step.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "formats/safetensors.h"
#include "run_optiq.h"
#include "test_paths.h"

namespace optiq {
namespace {

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST(BenchCommand, AdapterRowsAlternateWithTheBase) {
  const std::string model = test::shared_path("models/stories260K-hf");
  OPTIQ_REQUIRE_SHARED(model);
  // stories260K-hf: hidden 64, intermediate 172, 5 layers, 8 heads and 4 KV heads of 8. A rank-4 mlx-lm adapter
  // on q_proj (64 -> 64) and down_proj (172 -> 64) of every layer.
  const int64_t H = 64, I = 172, L = 5, r = 4;
  const std::string dir = test::scratch_dir("bench_cmd_adapter");
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  auto randv = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = nd(rng);
    return v;
  };
  formats::SafetensorsWriter w;
  for (int l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.add_f32(p + "self_attn.q_proj.lora_a", {H, r}, randv(H * r));
    w.add_f32(p + "self_attn.q_proj.lora_b", {r, H}, randv(r * H));
    w.add_f32(p + "mlp.down_proj.lora_a", {I, r}, randv(I * r));
    w.add_f32(p + "mlp.down_proj.lora_b", {r, H}, randv(r * H));
  }
  w.write(dir + "/adapters.safetensors");
  std::ofstream(dir + "/adapter_config.json") << R"({"fine_tune_type": "lora", "lora_parameters": {"rank": 4, "scale": 2.0}})";

  CmdResult b = run_optiq({"bench", model, "--depth", "0,16", "--gen", "8", "--prompt-len", "0", "--no-bandwidth", "--adapter", dir},
                          "bench_cmd");
  ASSERT_EQ(b.rc, 0) << b.err;
  const std::vector<nlohmann::json> rows = json_lines(b.out);
  ASSERT_EQ(rows.size(), 4u) << b.out;
  const int64_t adapter_bytes = L * r * ((H + H) + (I + H)) * 2;
  for (int d = 0; d < 2; ++d) {
    const nlohmann::json &base = rows[size_t(2 * d)], &ad = rows[size_t(2 * d + 1)];
    EXPECT_EQ(base["depth"], d == 0 ? 0 : 16);
    EXPECT_EQ(ad["depth"], base["depth"]);
    EXPECT_FALSE(base.contains("adapters"));
    EXPECT_EQ(ad["adapters"], nlohmann::json::array({dir}));
    EXPECT_EQ(ad["bytes_per_token"].get<int64_t>(), base["bytes_per_token"].get<int64_t>() + adapter_bytes);
    EXPECT_GT(ad["decode_tok_s"].get<double>(), 0.0);
    const double ov = ad["adapter_overhead"].get<double>();
    EXPECT_TRUE(std::isfinite(ov) && ov > -1.0) << ov;
  }
  EXPECT_NE(b.out.find("| fp16 +lora     |"), std::string::npos) << b.out;
  EXPECT_NE(b.err.find("fp16, depth 16: a decode step with the adapters takes "), std::string::npos) << b.err;

  CmdResult bad = run_optiq({"bench", model, "--gen", "4", "--prompt-len", "0", "--no-bandwidth", "--adapter", dir + "/missing"},
                            "bench_cmd");
  EXPECT_EQ(bad.rc, 1) << bad.err;
  EXPECT_NE(bad.err.find(dir + "/missing"), std::string::npos) << bad.err;
}

TEST(BenchCommand, InterleavedKvVariantsCompareWithTheFirst) {
  const std::string model = test::shared_path("models/stories260K-hf");
  OPTIQ_REQUIRE_SHARED(model);
  CmdResult b = run_optiq({"bench", model, "--depth", "0,16", "--gen", "8", "--prompt-len", "0", "--no-bandwidth",
                           "--kv-bits", "16,8,4", "--kv-group-size", "8", "--interleave"},
                          "bench_cmd");
  ASSERT_EQ(b.rc, 0) << b.err;
  const std::vector<nlohmann::json> rows = json_lines(b.out);
  ASSERT_EQ(rows.size(), 6u) << b.out;
  const char* kv[3] = {"fp16", "q8 g8", "q4 g8"};
  for (int d = 0; d < 2; ++d)
    for (int k = 0; k < 3; ++k) {
      const nlohmann::json& r = rows[size_t(3 * d + k)];
      EXPECT_EQ(r["depth"], d == 0 ? 0 : 16);
      EXPECT_EQ(r["kv"], kv[k]);
      EXPECT_GT(r["decode_tok_s"].get<double>(), 0.0);
      EXPECT_EQ(r.contains("speedup_vs_first"), k > 0);
      if (k == 0) continue;
      EXPECT_EQ(r["first_kv"], "fp16");
      const double s = r["speedup_vs_first"].get<double>();
      EXPECT_TRUE(std::isfinite(s) && s > 0.0) << s;
      EXPECT_LT(r["kv_bytes_per_token"].get<int64_t>(), rows[size_t(3 * d)]["kv_bytes_per_token"].get<int64_t>());
    }
  EXPECT_NE(b.err.find("depth 16: q4 g8 decodes "), std::string::npos) << b.err;
  EXPECT_NE(b.err.find(" as fast as fp16 (median of 8 rounds"), std::string::npos) << b.err;

  CmdResult one = run_optiq({"bench", model, "--gen", "4", "--prompt-len", "0", "--no-bandwidth", "--interleave"}, "bench_cmd");
  EXPECT_NE(one.rc, 0);
  EXPECT_NE(one.err.find("--interleave needs two or more KV variants"), std::string::npos) << one.err;
}

TEST(BenchCommand, StreamsRowsDecodeABatchAgainstOneSequence) {
  const std::string model = test::shared_path("models/stories260K-hf");
  OPTIQ_REQUIRE_SHARED(model);
  CmdResult b = run_optiq({"bench", model, "--depth", "0,16", "--gen", "8", "--prompt-len", "0", "--no-bandwidth", "--streams", "4"},
                          "bench_cmd");
  ASSERT_EQ(b.rc, 0) << b.err;
  const std::vector<nlohmann::json> rows = json_lines(b.out);
  ASSERT_EQ(rows.size(), 4u) << b.out;
  for (int d = 0; d < 2; ++d) {
    const nlohmann::json &one = rows[size_t(2 * d)], &four = rows[size_t(2 * d + 1)];
    EXPECT_EQ(one["depth"], d == 0 ? 0 : 16);
    EXPECT_EQ(four["depth"], one["depth"]);
    EXPECT_EQ(one["streams"], 1);
    EXPECT_EQ(four["streams"], 4);
    EXPECT_FALSE(one.contains("streams_vs_one"));
    const double s = four["streams_vs_one"].get<double>();
    EXPECT_TRUE(std::isfinite(s) && s > 0.0) << s;
    // Per token: a quarter of the weights, the same KV.
    const int64_t kv = one["kv_bytes_per_token"].get<int64_t>();
    const int64_t kv_read = kv * (int64_t(one["depth"].get<int>()) + 1 + 8 / 2);
    EXPECT_EQ(four["bytes_per_token"].get<int64_t>() - kv_read, (one["bytes_per_token"].get<int64_t>() - kv_read) / 4);
  }
  EXPECT_NE(b.out.find("| fp16 x4        |"), std::string::npos) << b.out;
  EXPECT_NE(b.err.find("fp16, depth 16: 4 streams in one batch decode "), std::string::npos) << b.err;

  CmdResult bad = run_optiq({"bench", model, "--gen", "4", "--prompt-len", "0", "--no-bandwidth", "--streams", "0"}, "bench_cmd");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("--streams must be between 1 and 256"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace optiq
