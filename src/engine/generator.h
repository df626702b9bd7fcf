#pragma once
// One generation at a time over a loaded model: prefill the prompt in chunks, then decode token by
// token until EOS, a stop, or max_tokens. (The continuous-batching scheduler builds on the same
// Model::forward; this is what `optiq generate` and `optiq bench` use.)
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace optiq::engine {

// A model with its tokenizer and the tokens that end generation.
struct LoadedModel {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::vector<int32_t> eos_ids;
  static LoadedModel load(const std::string& path);
  bool is_eos(int32_t id) const;
};

struct GenerateOptions {
  int max_tokens = 256;
  int prefill_chunk = 512;
  SamplingParams sampling;
  kv::KvSpec kv_spec;  // KV cache precision per layer (fp16 by default)
  int32_t adapter_set = 0;  // mounted LoRA adapters to apply (model::Model::adapter_set); 0: the
                            // calling thread's AdapterScope, if any
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  std::string finish_reason;  // "stop" (EOS or callback) | "length"
};

// Called for every generated token with the text it completes (possibly empty while a UTF-8
// character is still incomplete). Return false to stop.
using TokenCallback = std::function<bool(const SampledToken& tok, const std::string& text)>;

GenerationStats generate(const LoadedModel& lm, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                         const TokenCallback& on_token);

}  // namespace optiq::engine
