#pragma once
// Token sampling with mlx-lm / OpenAI semantics:
//   logit_bias -> repetition penalty (last repetition_context_size tokens of prompt + output, mlx-lm:
//   divide positive logits, multiply negative ones) -> presence/frequency penalties (output tokens,
//   OpenAI) -> temperature (0 = greedy) -> top-k -> top-p -> min-p -> draw with a seeded RNG.
// Log-probabilities are those of the model's raw distribution (log-softmax of the unprocessed logits).
#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace optiq::engine {

struct SamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;      // 0: off
  float min_p = 0.0f; // 0: off
  float repetition_penalty = 1.0f;
  int repetition_context_size = 20;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::optional<uint64_t> seed;
  int top_logprobs = 0;  // how many alternatives to report (0: none)
  // Whether SampledToken::logprob is wanted: its log-softmax over the vocabulary is skipped when not (and
  // top_logprobs is 0); logprob is then 0.
  bool logprobs = true;
};

struct SampledToken {
  int32_t id = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs alternatives, best first
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: [vocab] (modified in place); context: prompt tokens then generated tokens;
  // n_generated: how many of the last context tokens were generated. allowed (optional, [vocab]): tokens
  // with allowed[t] == 0 are never chosen (constrained output); logprobs stay those of the raw model.
  SampledToken sample(float* logits, int32_t vocab, const std::vector<int32_t>& context, size_t n_generated,
                      const std::vector<uint8_t>* allowed = nullptr);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch
  std::vector<float> raw_;                        // the raw logits, when logprobs are reported
};

}  // namespace optiq::engine
