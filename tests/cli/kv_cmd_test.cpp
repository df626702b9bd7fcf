// The KV cache flags as a user meets them: generate / eval / serve / bench on stories260K with a
// quantized KV cache print the per-layer plan, eval's numbers are sane (fp16 against itself is exact),
// and a bad kv config stops start-up with exit code 2 and a message naming the entry.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "run_optiq.h"
#include "test_paths.h"

namespace optiq {
namespace {

class KvCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("models/stories260K/stories260K.gguf");
    text_ = test::shared_path("text/tinystories-valid-sample.txt");
    OPTIQ_REQUIRE_SHARED(model_);
    OPTIQ_REQUIRE_SHARED(text_);
  }
  std::string write(const std::string& name, const std::string& body) {
    static const std::string dir = test::scratch_dir("kv_cmd_inputs");
    std::string p = dir + "/" + name;
    std::ofstream(p) << body;
    return p;
  }
  static nlohmann::json last_json_line(const std::string& out) {
    size_t end = out.find_last_not_of('\n');
    size_t start = out.rfind('\n', end);
    return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1)));
  }
  std::string model_, text_;
};

TEST_F(KvCommand, GeneratePrintsThePerLayerPlan) {
  std::string cfg = write("mixed.json", R"([{"layer_idx": 0, "bits": 8, "group_size": 8}, {"layer_idx": 4, "bits": 16}])");
  CmdResult r = run_optiq({"generate", model_, "--prompt", "Once upon a time", "--max-tokens", "16", "--kv-config", cfg,
                           "--kv-bits", "4", "--kv-group-size", "8"},
                          "kv_cmd");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("  layers 0: 8-bit g8\n  layers 1-3: 4-bit g8\n  layers 4: fp16\n"), std::string::npos) << r.err;
  // 4 heads x 8 per layer, K and V: fp16 2*64 bytes; 8-bit g8 2*(32 + 4 groups*4); 4-bit g8 2*(16 + 16).
  // 96 + 3*64 + 128 = 416 against 5*128 = 640.
  EXPECT_NE(r.err.find("KV bytes per token: 416 (fp16: 640, 1.54x smaller)"), std::string::npos) << r.err;
  EXPECT_GT(r.out.size(), 16u);
}

TEST_F(KvCommand, EvalFp16AgainstItselfIsExactAnd8BitIsClose) {
  CmdResult same = run_optiq({"eval", model_, "--text", text_, "--seq-len", "256", "--max-windows", "2"}, "kv_cmd");
  ASSERT_EQ(same.rc, 0) << same.err;
  auto j = last_json_line(same.out);
  EXPECT_EQ(j["kl_mean"].get<double>(), 0.0);
  EXPECT_EQ(j["same_top1"].get<double>(), 1.0);
  EXPECT_EQ(j["positions"].get<int>(), 2 * 255);
  EXPECT_EQ(j["ppl_fp16"].get<double>(), j["ppl_kv"].get<double>());
  EXPECT_GT(j["ppl_fp16"].get<double>(), 1.5);
  EXPECT_LT(j["ppl_fp16"].get<double>(), 20.0);

  CmdResult q8 = run_optiq({"eval", model_, "--text", text_, "--seq-len", "256", "--max-windows", "2", "--kv-bits", "8",
                            "--kv-group-size", "8"},
                           "kv_cmd");
  ASSERT_EQ(q8.rc, 0) << q8.err;
  auto k = last_json_line(q8.out);
  EXPECT_EQ(k["ppl_fp16"].get<double>(), j["ppl_fp16"].get<double>());
  EXPECT_GT(k["kl_mean"].get<double>(), 0.0);
  EXPECT_LT(k["kl_mean"].get<double>(), 3e-3);
  EXPECT_GE(k["same_top1"].get<double>(), 0.95);
  EXPECT_NEAR(k["ppl_kv"].get<double>() / k["ppl_fp16"].get<double>(), 1.0, 0.01);
  EXPECT_DOUBLE_EQ(k["kv_effective_bits"].get<double>(), 12.0);  // 8 bits + f16 scale and bias per 8
}

TEST_F(KvCommand, BadConfigsStopStartUpWithTheEntry) {
  std::string cfg = write("bad_layer.json", R"([{"layer_idx": 2, "bits": 8, "group_size": 8}, {"layer_idx": 9, "bits": 4, "group_size": 8}])");
  for (const char* cmd : {"generate", "serve", "eval", "bench"}) {
    std::vector<std::string> args = {cmd, model_, "--kv-config", cfg};
    if (std::string(cmd) == "generate") args.insert(args.end(), {"--prompt", "hi"});
    if (std::string(cmd) == "eval") args.insert(args.end(), {"--text", text_});
    if (std::string(cmd) == "serve") args = {"serve", "--model", model_, "--port", "0", "--kv-config", cfg};
    CmdResult r = run_optiq(args, "kv_cmd");
    EXPECT_EQ(r.rc, 2) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find(cfg + ": entry 1 (layer_idx 9): the model has 5 layers (0-4)"), std::string::npos) << cmd << ": " << r.err;
  }
  CmdResult g = run_optiq({"generate", model_, "--prompt", "hi", "--kv-bits", "8"}, "kv_cmd");
  EXPECT_EQ(g.rc, 2);
  EXPECT_NE(g.err.find("--kv-bits 8 --kv-group-size 64: group_size 64 does not divide head_dim 8"), std::string::npos) << g.err;
  CmdResult rot = run_optiq({"generate", model_, "--prompt", "hi", "--kv-rotation", "maybe"}, "kv_cmd");
  EXPECT_EQ(rot.rc, 2);
  EXPECT_NE(rot.err.find("--kv-rotation: 'maybe' is not auto, on or off"), std::string::npos) << rot.err;
}

}  // namespace
}  // namespace optiq
