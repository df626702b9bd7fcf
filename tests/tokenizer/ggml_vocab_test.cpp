// llama.cpp's tokenizer test vectors against the vocab-only GGUFs in shared/tokenizers/ggml-vocab.
#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "tok_test_util.h"

using namespace optiq;

class GgmlVocab : public ::testing::TestWithParam<const char*> {};

TEST_P(GgmlVocab, MatchesReferenceIds) {
  const std::string base = test::shared_path(std::string("tokenizers/ggml-vocab/ggml-vocab-") + GetParam() + ".gguf");
  OPTIQ_REQUIRE_SHARED(base);
  OPTIQ_REQUIRE_SHARED(base + ".out");
  formats::GgufFile f(base);
  auto tok = tokenizer::Tokenizer::from_gguf(f);
  auto vecs = test::read_vocab_vectors(base);
  ASSERT_GE(vecs.size(), 40u);
  int ok = test::check_vectors(*tok, vecs, GetParam());
  std::printf("[ggml-vocab] %-16s %d/%zu\n", GetParam(), ok, vecs.size());
  // decode gives the text back for these vocabularies (no normalization, no unknown characters)
  for (const auto& [text, want] : vecs) EXPECT_EQ(tok->decode(want), text) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, GgmlVocab,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-coder", "deepseek-llm", "falcon",
                                           "mpt", "starcoder", "refact"));
