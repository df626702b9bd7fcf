#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/sampler.h"

using namespace optiq::engine;

namespace {

std::vector<float> logits_of(std::vector<float> v) { return v; }

TEST(Sampler, GreedyPicksArgmaxAndReportsRawLogprob) {
  SamplingParams p;
  Sampler s(p);
  auto l = logits_of({1.0f, 3.0f, 2.0f, -1.0f});
  auto t = s.sample(l.data(), 4, {}, 0);
  EXPECT_EQ(t.id, 1);
  double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(-1.0);
  EXPECT_NEAR(t.logprob, 3.0 - std::log(z), 1e-5);
}

TEST(Sampler, GreedyTakesTheFirstOfTiedMaximaAcrossAVocabulary) {
  SamplingParams p;
  Sampler s(p);
  std::vector<float> l(32003);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float(int(i * 7919 % 1000)) / 100.0f - 5.0f;  // below 5
  l[20001] = 9.5f, l[30000] = 9.5f, l[32002] = 9.25f;
  EXPECT_EQ(s.sample(l.data(), int32_t(l.size()), {}, 0).id, 20001);
  l[17] = 9.5f;  // an earlier tie wins
  EXPECT_EQ(s.sample(l.data(), int32_t(l.size()), {}, 0).id, 17);
  l[32002] = 9.75f;  // the maximum in the tail past the last 16
  EXPECT_EQ(s.sample(l.data(), int32_t(l.size()), {}, 0).id, 32002);
  std::vector<float> none(40, -INFINITY);  // nothing allowed: the first token, as before
  EXPECT_EQ(s.sample(none.data(), 40, {}, 0).id, 0);
}

TEST(Sampler, TopLogprobsAreSortedBestFirst) {
  SamplingParams p;
  p.top_logprobs = 2;
  Sampler s(p);
  auto l = logits_of({1.0f, 3.0f, 2.0f, -1.0f});
  auto t = s.sample(l.data(), 4, {}, 0);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].first, 1);
  EXPECT_EQ(t.top[1].first, 2);
  EXPECT_GT(t.top[0].second, t.top[1].second);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  std::vector<int> a, b;
  for (auto* out : {&a, &b}) {
    Sampler s(p);
    for (int i = 0; i < 50; ++i) {
      auto l = logits_of({0.1f, 0.2f, 0.3f, 0.4f, 0.5f});
      out->push_back(s.sample(l.data(), 5, {}, 0).id);
    }
  }
  EXPECT_EQ(a, b);
  std::map<int, int> counts;
  for (int x : a) counts[x]++;
  EXPECT_GT(counts.size(), 2u);  // it really samples
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  p.seed = 1;
  Sampler s(p);
  for (int i = 0; i < 20; ++i) {
    auto l = logits_of({0.0f, 0.1f, 0.05f});
    EXPECT_EQ(s.sample(l.data(), 3, {}, 0).id, 1);
  }
}

TEST(Sampler, TopPKeepsSmallestSetReachingMass) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.5f;
  p.seed = 3;
  Sampler s(p);
  // probabilities ~ [0.6, 0.3, 0.1]: top_p 0.5 keeps only the first
  for (int i = 0; i < 30; ++i) {
    auto l = logits_of({std::log(0.6f), std::log(0.3f), std::log(0.1f)});
    EXPECT_EQ(s.sample(l.data(), 3, {}, 0).id, 0);
  }
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.4f;
  p.seed = 5;
  Sampler s(p);
  // [0.5, 0.3, 0.2]: min_p 0.4 keeps tokens with p >= 0.2 -> {0, 1}
  std::map<int, int> c;
  for (int i = 0; i < 200; ++i) {
    auto l = logits_of({std::log(0.5f), std::log(0.3f), std::log(0.2f) - 0.01f});
    c[s.sample(l.data(), 3, {}, 0).id]++;
  }
  EXPECT_EQ(c.count(2), 0u);
  EXPECT_GT(c[1], 0);
}

TEST(Sampler, RepetitionPenaltyFollowsMlxLm) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.repetition_context_size = 2;
  Sampler s(p);
  // token 0 (logit 4, in context) -> 2; token 1 (3, not in context) stays 3 -> greedy picks 1
  auto l = logits_of({4.0f, 3.0f, -1.0f});
  EXPECT_EQ(s.sample(l.data(), 3, {0, 2}, 0).id, 1);
  EXPECT_FLOAT_EQ(l[0], 2.0f);
  EXPECT_FLOAT_EQ(l[2], -2.0f);  // negative logits are multiplied
  // Outside the context window: no penalty.
  auto l2 = logits_of({4.0f, 3.0f, -1.0f});
  EXPECT_EQ(s.sample(l2.data(), 3, {0, 2, 2}, 0).id, 0);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesApplyToGeneratedTokens) {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 1.0f;
  Sampler s(p);
  auto l = logits_of({5.0f, 4.0f, 0.0f});
  // context: prompt [0] then generated [0, 0]: token 0 -> 5 - 0.5 - 2 = 2.5
  EXPECT_EQ(s.sample(l.data(), 3, {0, 0, 0}, 2).id, 1);
  EXPECT_FLOAT_EQ(l[0], 2.5f);
}

TEST(Sampler, LogitBiasCanForceAToken) {
  SamplingParams p;
  p.logit_bias = {{2, 100.0f}};
  Sampler s(p);
  auto l = logits_of({5.0f, 4.0f, 0.0f});
  EXPECT_EQ(s.sample(l.data(), 3, {}, 0).id, 2);
}

}  // namespace
