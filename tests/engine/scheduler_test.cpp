// The scheduler under load: concurrent requests generate exactly what each generates alone; prompt
// prefixes are shared (pages and reported cache hits); the KV budget refuses what can never fit,
// preempts and resumes what does not fit now, and every page comes back.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "engine/engine.h"
#include "engine_run.h"
#include "model/synthetic.h"
#include "test_paths.h"
#include "util/error.h"

using namespace optiq;

namespace {

// A small random-weight Qwen3 with GPT-2's tokenizer: long contexts (40960) and real text.
class Scheduler : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string tok = test::shared_path("tokenizers/gpt2");
    if (!std::filesystem::exists(tok + "/tokenizer.json")) return;
    const std::string dir = test::scratch_dir("scheduler-model");
    model::SyntheticSpec spec = model::synthetic_shape("tiny-qwen3");
    spec.hidden_size = 64, spec.intermediate_size = 128, spec.num_attention_heads = 4, spec.num_key_value_heads = 2;
    spec.head_dim = 16, spec.vocab_size = 50257;
    model::write_synthetic_model(spec, "f16", dir);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      std::filesystem::copy_file(tok + "/" + f, dir + "/" + f, std::filesystem::copy_options::overwrite_existing);
    lm_ = new engine::LoadedModel(engine::LoadedModel::load(dir));
  }
  void SetUp() override { OPTIQ_REQUIRE_SHARED(test::shared_path("tokenizers/gpt2/tokenizer.json")); }

  static engine::EngineRequest req(std::vector<int32_t> prompt, int max_tokens) {
    engine::EngineRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    return r;
  }
  static std::vector<int32_t> tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % 50000);
    return t;
  }
  static int64_t page_bytes() { return lm_->model->make_cache()->page_bytes(); }
  // Submits all at once, then collects each.
  static std::vector<test::EngineResult> run_together(engine::Engine& eng, const std::vector<engine::EngineRequest>& rs) {
    std::vector<std::shared_ptr<engine::RequestHandle>> hs;
    for (auto& r : rs) hs.push_back(eng.submit(r));
    std::vector<test::EngineResult> out;
    for (auto& h : hs) out.push_back(test::collect(*h));
    return out;
  }
  static inline engine::LoadedModel* lm_ = nullptr;
};

}  // namespace

TEST_F(Scheduler, BatchedRequestsGenerateWhatEachGeneratesAlone) {
  // Different prompt lengths, budgets, stop strings and sampling settings.
  std::vector<engine::EngineRequest> rs;
  for (int i = 0; i < 8; ++i) {
    auto r = req(tokens(3 + 37 * i, uint32_t(i + 1)), 6 + 5 * i);
    if (i % 3 == 1) r.sampling.temperature = 0.9f, r.sampling.seed = uint64_t(100 + i), r.sampling.top_k = 40;
    if (i % 4 == 3) r.sampling.repetition_penalty = 1.3f;
    rs.push_back(r);
  }
  engine::EngineOptions one;
  one.max_concurrency = 1;
  one.prompt_cache_size = 0;
  engine::Engine solo(*lm_, one);
  std::vector<test::EngineResult> alone;
  for (auto& r : rs) alone.push_back(test::run_request(solo, r));
  // A stop string taken from the middle of request 2's text ends it early, alone and batched alike.
  ASSERT_GT(alone[2].text.size(), 12u);
  rs[2].stop = {alone[2].text.substr(6, 3)};
  alone[2] = test::run_request(solo, rs[2]);
  EXPECT_EQ(alone[2].finish, "stop");

  for (int n : {1, 2, 8}) {
    engine::EngineOptions o;
    o.max_concurrency = n;
    o.prompt_cache_size = 0;
    o.prefill_chunk = 64;  // prompts arrive in chunks between other requests' decode steps
    engine::Engine eng(*lm_, o);
    auto got = run_together(eng, rs);
    for (size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(got[i].text, alone[i].text) << "request " << i << " with " << n << " at once";
      EXPECT_EQ(got[i].finish, alone[i].finish) << i;
      EXPECT_EQ(got[i].tokens, alone[i].tokens) << i;
    }
    const auto st = eng.stats();
    EXPECT_EQ(st.time_to_first_token.count, rs.size());
    EXPECT_EQ(st.requests_finished, rs.size());
    EXPECT_EQ(st.kv_pages_used, 0);  // no prompt cache: every page is back
  }
}

TEST_F(Scheduler, SharedPrefixIsReadFromTheCacheAndSharesPages) {
  const auto prefix = tokens(1000, 7);
  auto a = prefix, b = prefix;
  for (int32_t t : tokens(40, 8)) a.push_back(t);
  for (int32_t t : tokens(60, 9)) b.push_back(t);
  engine::EngineOptions off;
  off.prompt_cache_size = 0;
  engine::Engine fresh(*lm_, off), eng(*lm_, {});
  const auto first = test::run_request(eng, req(a, 12));
  EXPECT_EQ(first.cached, 0);
  const auto second = test::run_request(eng, req(b, 12));
  EXPECT_EQ(second.cached, 1000);
  EXPECT_EQ(second.text, test::run_request(fresh, req(b, 12)).text);
  // Both stay cached and share the prefix's three whole pages: 5 + 5 - 3 pages.
  EXPECT_EQ(eng.stats().kv_pages_used, 7);
  EXPECT_EQ(eng.stats().prefix_cache_hit_tokens, 1000u);
  // The same conversation one turn later reads everything it shares.
  auto c = b;
  for (int32_t t : tokens(30, 10)) c.push_back(t);
  EXPECT_EQ(test::run_request(eng, req(c, 4)).cached, int(b.size()));
}

TEST_F(Scheduler, RequestsThatCanNeverFitAreRefused) {
  engine::EngineOptions o;
  o.kv_cache_bytes = 2 * page_bytes();  // 512 tokens
  engine::Engine eng(*lm_, o);
  try {
    eng.submit(req(tokens(300, 1), 300));
    ADD_FAILURE() << "600 tokens cannot fit a 512-token budget";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("more than the server's budget holds (512 tokens)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::run_request(eng, req(tokens(300, 1), 200)).tokens, 200);  // 499 tokens fit
}

TEST_F(Scheduler, PreemptedRequestsResumeAndGenerateTheSameText) {
  // Four requests of 200 + 150 tokens need 8 pages together; the budget holds 5. Some wait, some are
  // preempted when they cross into their second page, and all finish with the text they have alone.
  std::vector<engine::EngineRequest> rs;
  for (int i = 0; i < 4; ++i) rs.push_back(req(tokens(200, uint32_t(20 + i)), 150));
  engine::EngineOptions solo_o;
  solo_o.max_concurrency = 1;
  solo_o.prompt_cache_size = 0;
  engine::Engine solo(*lm_, solo_o);
  engine::EngineOptions o;
  o.max_concurrency = 4;
  o.prompt_cache_size = 0;
  o.kv_cache_bytes = 5 * page_bytes();
  engine::Engine eng(*lm_, o);
  auto got = run_together(eng, rs);
  for (size_t i = 0; i < rs.size(); ++i) {
    const auto alone = test::run_request(solo, rs[i]);
    EXPECT_EQ(got[i].text, alone.text) << i;
    EXPECT_EQ(got[i].tokens, 150) << i;
  }
  const auto st = eng.stats();
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_EQ(st.kv_pages_used, 0);
  EXPECT_EQ(st.kv_pages_free, 5);
}
