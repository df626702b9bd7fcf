// Bad tokenizer files give optiq::Error (BadModel / Unsupported), never a crash.
#include <gtest/gtest.h>

#include "tok_test_util.h"
#include "util/error.h"

using namespace optiq;
using tokenizer::Tokenizer;

namespace {
ErrorKind kind_of(const std::string& json_text, const std::string& config = "") {
  try {
    Tokenizer::from_tokenizer_json(json_text, config);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error for: " << json_text;
  return ErrorKind::Internal;
}

const char* kTiny = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x41>": 3},
  "merges": ["a b"], "byte_fallback": true}, "decoder": {"type": "ByteFallback"}})";
}  // namespace

TEST(TokenizerErrors, MalformedFilesThrowBadModel) {
  EXPECT_EQ(kind_of(""), ErrorKind::BadModel);
  EXPECT_EQ(kind_of("{"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of("[1,2]"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of("{}"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}})"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})"), ErrorKind::BadModel);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})"),
            ErrorKind::BadModel);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 5}]})"),
            ErrorKind::BadModel);
  EXPECT_EQ(kind_of(kTiny, "{not json"), ErrorKind::BadModel);
}

TEST(TokenizerErrors, UnsupportedComponents) {
  EXPECT_EQ(kind_of(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})"), ErrorKind::Unsupported);
  EXPECT_EQ(kind_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
    "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AA=="}})"),
            ErrorKind::Unsupported);
}

TEST(TokenizerErrors, MissingDirectory) {
  try {
    Tokenizer::from_hf_dir("/nonexistent/dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
  }
}

TEST(TokenizerBasics, TinyBpeWithByteFallback) {
  auto tok = Tokenizer::from_tokenizer_json(kTiny);
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("aAb"), (std::vector<int32_t>{0, 3, 1}));
  EXPECT_EQ(tok->decode({0, 3, 1}), "aAb");
  EXPECT_EQ(tok->token_id("ab"), 2);
  EXPECT_EQ(tok->token_id("zz"), std::nullopt);
  EXPECT_EQ(tok->decode({99, -1}), "");  // out-of-range ids decode to nothing
}

TEST(TokenizerBasics, AddedTokenFlagsAndMetaspace) {
  const char* j = R"({
    "added_tokens": [
      {"id": 10, "content": "<x>", "special": true, "lstrip": true, "rstrip": false, "single_word": false, "normalized": false},
      {"id": 11, "content": "<y>", "special": false, "lstrip": false, "rstrip": true, "single_word": false, "normalized": false},
      {"id": 12, "content": "cat", "special": false, "lstrip": false, "rstrip": false, "single_word": true, "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true},
    "model": {"type": "BPE", "vocab": {"\u2581": 0, "a": 1, "b": 2, "\u2581a": 3, "c": 4, "t": 5}, "merges": ["\u2581 a"], "unk_token": null},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"},
    "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<x>", "type_id": 0}}],
      "special_tokens": {"<x>": {"id": "<x>", "ids": [10], "tokens": ["<x>"]}}}})";
  auto tok = Tokenizer::from_tokenizer_json(j);
  // prepend_scheme "first": only the first segment gets the "▁"; lstrip eats the space before <x>
  EXPECT_EQ(tok->encode("a b <x>a", false), (std::vector<int32_t>{3, 0, 2, 10, 1}));
  // rstrip eats the spaces after <y>
  EXPECT_EQ(tok->encode("<y>   a", false), (std::vector<int32_t>{11, 1}));
  // single_word: "cat" inside a word is not the added token
  EXPECT_EQ(tok->encode("a cat", false), (std::vector<int32_t>{3, 0, 12}));
  EXPECT_EQ(tok->encode("acat", false), (std::vector<int32_t>{3, 4, 1, 5}));
  EXPECT_EQ(tok->encode("a"), (std::vector<int32_t>{3, 10}));  // EOS-style suffix
  EXPECT_TRUE(tok->info().add_eos);
  EXPECT_EQ(tok->decode({3, 0, 2, 10}), "a b");
  EXPECT_EQ(tok->decode({3, 0, 2, 10}, false), "a b<x>");
  EXPECT_TRUE(tok->is_special(10));
  EXPECT_FALSE(tok->is_special(11));
}

TEST(TokenizerBasics, ChatTemplateListAndConfig) {
  const char* cfg = R"({"bos_token": {"__type": "AddedToken", "content": "a"}, "eos_token": "b", "add_bos_token": true,
    "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]})";
  auto tok = Tokenizer::from_tokenizer_json(kTiny, cfg);
  EXPECT_EQ(tok->info().chat_template, "D");
  EXPECT_EQ(tok->info().chat_templates.at("tool_use"), "T");
  EXPECT_EQ(tok->info().bos_id, 0);
  EXPECT_EQ(tok->info().eos_id, 1);
  EXPECT_EQ(tok->encode("b"), (std::vector<int32_t>{0, 1}));
}
