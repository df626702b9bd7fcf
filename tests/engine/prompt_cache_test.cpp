// The prompt cache: a request whose prompt shares a prefix with a finished one prefills only the rest,
// reports the reused tokens, and generates exactly what it would have without the cache (fp16 and
// quantized KV); least recently used entries go first.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_run.h"
#include "test_paths.h"

using namespace optiq;

namespace {

class PromptCache : public ::testing::Test {
 protected:
  void SetUp() override {
    OPTIQ_REQUIRE_SHARED(test::shared_path("models/stories260K-hf"));
    lm_ = std::make_unique<engine::LoadedModel>(engine::LoadedModel::load(test::shared_path("models/stories260K-hf")));
  }
  engine::EngineRequest req(const std::string& prompt, int max_tokens = 24) {
    engine::EngineRequest r;
    r.prompt = lm_->tokenizer->encode(prompt, true);
    r.max_tokens = max_tokens;
    return r;
  }
  std::unique_ptr<engine::LoadedModel> lm_;
};

const char* kLily = "Once upon a time, there was a little girl named Lily. She loved to play";
const char* kBoy = "Once upon a time, there was a little boy named Tom. He";

}  // namespace

TEST_F(PromptCache, ReusedPrefixesGiveTheSameTokens) {
  for (int bits : {16, 8}) {
    engine::EngineOptions on, off;
    off.prompt_cache_size = 0;
    engine::Engine cached(*lm_, on), fresh(*lm_, off);
    kv::KvSpec spec;
    spec.default_precision = {bits, 8};
    cached.set_kv_spec(spec);
    fresh.set_kv_spec(spec);

    const auto lily = req(kLily), boy = req(kBoy);
    size_t shared = 0;
    while (lily.prompt[shared] == boy.prompt[shared]) ++shared;
    ASSERT_GT(shared, 5u);

    auto first = test::run_request(cached, lily);
    EXPECT_EQ(first.cached, 0);
    EXPECT_EQ(first.text, test::run_request(fresh, lily).text);
    // The same prompt again: all but its last token come from the cache.
    auto again = test::run_request(cached, lily);
    EXPECT_EQ(again.cached, int(lily.prompt.size()) - 1) << bits;
    EXPECT_EQ(again.text, first.text) << bits;
    // A prompt that shares a prefix: that prefix is reused, the rest prefilled, the text unchanged.
    auto b = test::run_request(cached, boy);
    EXPECT_EQ(b.cached, int(shared)) << bits;
    const auto b_fresh = test::run_request(fresh, boy);
    EXPECT_EQ(b.text, b_fresh.text) << bits;
    EXPECT_EQ(b_fresh.cached, 0);
    // The prompt continues a previous answer (a multi-turn chat): prompt + answer tokens are reused.
    // (The answer's text starts without the space its first token carries; SentencePiece decoding drops it.)
    auto turn2 = req(std::string(kBoy) + " " + b.text + " Then");
    auto t2 = test::run_request(cached, turn2);
    EXPECT_GT(t2.cached, int(boy.prompt.size())) << bits;
    EXPECT_EQ(t2.text, test::run_request(fresh, turn2).text) << bits;
  }
}

TEST_F(PromptCache, LeastRecentlyUsedEntriesAreEvicted) {
  const auto lily = req(kLily), other = req("The sun was hot and the dog wanted water.");
  for (int size : {1, 2}) {
    engine::EngineOptions o;
    o.prompt_cache_size = size;
    engine::Engine eng(*lm_, o);
    test::run_request(eng, lily);
    test::run_request(eng, other);
    // With one entry, `other` evicted Lily's KV: only BOS is shared with what is left.
    EXPECT_EQ(test::run_request(eng, lily).cached, size == 1 ? 1 : int(lily.prompt.size()) - 1) << size;
  }
  engine::EngineOptions tiny;
  tiny.prompt_cache_bytes = 1;  // nothing fits
  engine::Engine eng(*lm_, tiny);
  test::run_request(eng, lily);
  EXPECT_EQ(test::run_request(eng, lily).cached, 0);
}
