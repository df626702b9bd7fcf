// SentencePiece-style tokenizers: stories260K (tokenizer.json BPE + byte_fallback, and GGUF "llama"),
// Llama 2's tokenizer.model through libsentencepiece, and the streaming detokenizer.
#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "tok_test_util.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

using namespace optiq;
using tokenizer::StreamingDetokenizer;
using tokenizer::Tokenizer;

namespace {

const std::vector<int32_t> kOnce = {1, 403, 407, 261, 378};
const std::vector<int32_t> kLily = {1, 317, 269, 368, 302, 263, 377, 267, 265, 282, 295, 433, 426};

// Feeds ids one at a time; every chunk must be valid UTF-8 and the total must equal decode().
void expect_streaming_matches(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = true) {
  StreamingDetokenizer sd(tok, skip_special);
  std::string all;
  for (int32_t id : ids) {
    std::string chunk = sd.push(id);
    EXPECT_TRUE(tokenizer::utf8_valid(chunk)) << "invalid UTF-8 chunk after id " << id;
    all += chunk;
  }
  all += sd.flush();
  EXPECT_EQ(all, tok.decode(ids, skip_special));
}

}  // namespace

TEST(Stories260K, TokenizerJson) {
  const std::string dir = test::shared_path("models/stories260K-hf");
  OPTIQ_REQUIRE_SHARED(dir + "/tokenizer.json");
  auto tok = Tokenizer::from_hf_dir(dir);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->encode("Once upon a time"), kOnce);
  EXPECT_EQ(tok->encode("Lily and Ben went to the park."), kLily);
  EXPECT_TRUE(tok->info().add_bos);
  EXPECT_EQ(tok->info().bos_id, 1);
  EXPECT_EQ(tok->info().eos_id, 2);
  EXPECT_EQ(tok->decode(kLily), "Lily and Ben went to the park.");
  EXPECT_EQ(tok->decode(kLily, false), "<s> Lily and Ben went to the park.");
  EXPECT_EQ(tok->encode(""), (std::vector<int32_t>{1}));
  EXPECT_TRUE(tok->encode("", false).empty());
  // byte fallback: characters outside the 512-token vocab become <0xHH> tokens and decode back
  const std::string odd = "Zoë saw 🦙 and 中文\n\ttabs";
  auto ids = tok->encode(odd, false);
  EXPECT_EQ(tok->decode(ids), odd);
  expect_streaming_matches(*tok, ids);
  expect_streaming_matches(*tok, tok->encode(odd, true), false);
  // "</s>" in the text is one token
  EXPECT_EQ(tok->encode("a</s>", false).back(), 2);
}

TEST(Stories260K, GgufVocab) {
  const std::string path = test::shared_path("models/stories260K/stories260K.gguf");
  OPTIQ_REQUIRE_SHARED(path);
  formats::GgufFile f(path);
  auto tok = Tokenizer::from_gguf(f);
  EXPECT_EQ(tok->encode("Once upon a time"), kOnce);
  EXPECT_EQ(tok->encode("Lily and Ben went to the park."), kLily);
  EXPECT_EQ(tok->decode(kLily), "Lily and Ben went to the park.");
  const std::string odd = "Zoë saw 🦙 and 中文\n\ttabs";
  auto ids = tok->encode(odd, false);
  EXPECT_EQ(tok->decode(ids), odd);
  expect_streaming_matches(*tok, ids);
  EXPECT_TRUE(tok->is_control(1));
  EXPECT_TRUE(tok->is_special(0));  // <unk>
  EXPECT_FALSE(tok->is_special(300));
  EXPECT_EQ(tok->token_to_bytes(3 + 0x0A), "\n");  // <0x0A>
}

TEST(SentencePiece, Llama2ModelMatchesLlamaSpmVectors) {
  const std::string model = test::shared_path("tokenizers/llama2/tokenizer.model");
  const std::string base = test::shared_path("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  OPTIQ_REQUIRE_SHARED(model);
  OPTIQ_REQUIRE_SHARED(base + ".out");
  auto tok = Tokenizer::from_sentencepiece(model);
  auto vecs = test::read_vocab_vectors(base);
  int ok = test::check_vectors(*tok, vecs, "llama2 tokenizer.model");
  std::printf("[sentencepiece] llama2 tokenizer.model vs llama-spm vectors %d/%zu\n", ok, vecs.size());
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->info().bos_id, 1);
  EXPECT_EQ(tok->encode("Hello").front(), 1);
  EXPECT_EQ(tok->encode("<s>Hello", false).front(), 1);
  for (const auto& [text, ids] : vecs) {
    EXPECT_EQ(tok->decode(ids), text);
    expect_streaming_matches(*tok, ids);
  }
  // The GGUF vocabulary of the same model agrees on the same inputs, also with BOS.
  formats::GgufFile f(base);
  auto g = Tokenizer::from_gguf(f);
  for (const auto& [text, ids] : vecs) {
    EXPECT_EQ(g->encode(text), tok->encode(text)) << text;
    EXPECT_EQ(g->decode(ids), text);
    expect_streaming_matches(*g, ids);
  }
}

TEST(Streaming, ByteLevelEmojiSplitAcrossTokens) {
  const std::string base = test::shared_path("tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf");
  OPTIQ_REQUIRE_SHARED(base);
  formats::GgufFile f(base);
  auto tok = Tokenizer::from_gguf(f);
  const std::string text = "family 👩‍👩‍👧‍👦, flag 🇯🇵, skin 👍🏽, llama 🦙 and 中文 ok";
  auto ids = tok->encode(text, false);
  int partial = 0;  // tokens whose bytes are not a whole character
  for (int32_t id : ids) partial += !tokenizer::utf8_valid(tok->token_to_bytes(id));
  EXPECT_GT(partial, 3);
  EXPECT_EQ(tok->decode(ids), text);
  expect_streaming_matches(*tok, ids);
  // A dangling half character at the end comes out as U+FFFD, like decode().
  std::vector<int32_t> cut;
  std::string bytes;
  for (int32_t id : ids) {
    cut.push_back(id);
    bytes += tok->token_to_bytes(id);
    if (tokenizer::utf8_incomplete_tail(bytes) > 0) break;
  }
  ASSERT_GT(tokenizer::utf8_incomplete_tail(bytes), 0u);
  expect_streaming_matches(*tok, cut);
  EXPECT_NE(tok->decode(cut).find("\xEF\xBF\xBD"), std::string::npos);
}
