// Qwen2/3 and Llama-3 tokenizer.json built from vocab + merges files, checked against llama.cpp's
// ggml-vocab-qwen2 / ggml-vocab-llama-bpe vectors (whose GGUFs are too big to ship).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tok_test_util.h"
#include "util/error.h"

using namespace optiq;
using json = nlohmann::json;

namespace {

const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A byte-level BPE tokenizer.json from GPT-2 style vocab/merges files.
std::string build_tokenizer_json(const std::string& vocab_path, const std::string& merges_path,
                                 const std::string& config_path, const char* regex, bool nfc, bool ignore_merges) {
  json vocab = json::parse(read_text_file(vocab_path));
  json merges = json::array();
  std::string m = read_text_file(merges_path);
  size_t pos = 0;
  while (pos < m.size()) {
    size_t e = m.find('\n', pos);
    if (e == std::string::npos) e = m.size();
    std::string line = m.substr(pos, e - pos);
    pos = e + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(line);
  }
  json added = json::array();
  json config = json::parse(read_text_file(config_path));
  for (auto it = config["added_tokens_decoder"].begin(); it != config["added_tokens_decoder"].end(); ++it) {
    json a = it.value();
    a["id"] = std::stoi(it.key());
    added.push_back(a);
  }
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  j["normalizer"] = nfc ? json{{"type", "NFC"}} : json(nullptr);
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", merges}};
  return j.dump();
}

}  // namespace

TEST(HfVectors, Qwen2FromVocabAndMerges) {
  const std::string dir = test::shared_path("tokenizers/qwen3");
  const std::string base = test::shared_path("tokenizers/ggml-vocab/ggml-vocab-qwen2.gguf");
  OPTIQ_REQUIRE_SHARED(dir + "/vocab.json");
  OPTIQ_REQUIRE_SHARED(base + ".out");
  std::string j = build_tokenizer_json(dir + "/vocab.json", dir + "/merges.txt", dir + "/tokenizer_config.json",
                                       kQwen2Regex, true, false);
  auto tok = tokenizer::Tokenizer::from_tokenizer_json(j, read_text_file(dir + "/tokenizer_config.json"));
  auto vecs = test::read_vocab_vectors(base);
  int ok = test::check_vectors(*tok, vecs, "qwen2");
  std::printf("[ggml-vocab] %-16s %d/%zu\n", "qwen2", ok, vecs.size());
  for (const auto& [text, want] : vecs) EXPECT_EQ(tok->decode(want), text);
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_EQ(tok->info().eos_token, "<|im_end|>");
  EXPECT_EQ(tok->info().eos_id, 151645);
  EXPECT_FALSE(tok->info().add_bos);
  EXPECT_NE(tok->info().chat_template.find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(tok->encode("<|im_start|>user\nhi<|im_end|>"),
            (std::vector<int32_t>{151644, 872, 198, 6023, 151645}));
  EXPECT_TRUE(tok->is_special(151645));
  EXPECT_FALSE(tok->is_special(151667));  // <think> is an added token but not special
  EXPECT_EQ(tok->encode("<think>"), (std::vector<int32_t>{151667}));
}

TEST(HfVectors, Llama3FromEncoderAndVocabBpe) {
  const std::string dir = test::shared_path("tokenizers/llama3");
  const std::string base = test::shared_path("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf");
  OPTIQ_REQUIRE_SHARED(dir + "/encoder.json");
  OPTIQ_REQUIRE_SHARED(base + ".out");
  std::string j = build_tokenizer_json(dir + "/encoder.json", dir + "/vocab.bpe", dir + "/tokenizer_config.json",
                                       kLlama3Regex, false, true);
  auto tok = tokenizer::Tokenizer::from_tokenizer_json(j, read_text_file(dir + "/tokenizer_config.json"));
  auto vecs = test::read_vocab_vectors(base);
  int ok = test::check_vectors(*tok, vecs, "llama-bpe");
  std::printf("[ggml-vocab] %-16s %d/%zu\n", "llama-bpe", ok, vecs.size());
  for (const auto& [text, want] : vecs) EXPECT_EQ(tok->decode(want), text);
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->info().bos_id, 128000);
  EXPECT_EQ(tok->token_id("<|eot_id|>"), 128009);
}
