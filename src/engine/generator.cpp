#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "engine/adapter_scope.h"
#include "util/error.h"

namespace optiq::engine {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

LoadedModel LoadedModel::load(const std::string& path) {
  LoadedModel lm;
  lm.model = model::Model::load(path);
  if (auto g = lm.model->gguf()) lm.tokenizer = tokenizer::Tokenizer::from_gguf(*g);
  else lm.tokenizer = tokenizer::Tokenizer::from_hf_dir(path);
  if (lm.tokenizer->vocab_size() > lm.model->config().vocab_size)
    throw Error(ErrorKind::BadModel, path + ": the tokenizer has " + std::to_string(lm.tokenizer->vocab_size()) +
                                         " tokens but the model's vocab_size is " + std::to_string(lm.model->config().vocab_size) +
                                         " (a tokenizer from another model?)");
  lm.eos_ids = lm.model->config().eos_token_ids;
  if (auto e = lm.tokenizer->info().eos_id)
    if (std::find(lm.eos_ids.begin(), lm.eos_ids.end(), *e) == lm.eos_ids.end()) lm.eos_ids.push_back(*e);
  return lm;
}

bool LoadedModel::is_eos(int32_t id) const { return std::find(eos_ids.begin(), eos_ids.end(), id) != eos_ids.end(); }

GenerationStats generate(const LoadedModel& lm, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                         const TokenCallback& on_token) {
  const model::Model& m = *lm.model;
  const int32_t vocab = m.config().vocab_size;
  if (prompt.empty()) throw Error(ErrorKind::InvalidArgument, "the prompt is empty");
  for (int32_t t : prompt)
    if (t < 0 || t >= vocab) throw Error(ErrorKind::InvalidArgument, "prompt token id " + std::to_string(t) + " is outside the vocabulary");
  GenerationStats st;
  st.prompt_tokens = int(prompt.size());
  const int32_t adapters = opts.adapter_set != 0 ? opts.adapter_set : AdapterScope::current();
  auto cache = m.make_cache(opts.kv_spec);
  int32_t seq = cache->create_sequence();
  std::vector<float> logits(static_cast<size_t>(vocab));
  Sampler sampler(opts.sampling);
  tokenizer::StreamingDetokenizer detok(*lm.tokenizer);

  auto t0 = std::chrono::steady_clock::now();
  model::Batch batch;
  const int chunk = std::max(1, opts.prefill_chunk);
  for (size_t start = 0; start < prompt.size(); start += size_t(chunk)) {
    batch.clear();
    size_t end = std::min(prompt.size(), start + size_t(chunk));
    for (size_t i = start; i < end; ++i) batch.add(prompt[i], int32_t(i), seq, i + 1 == prompt.size(), adapters);
    m.forward(batch, *cache, logits.data());
  }
  st.prefill_seconds = seconds_since(t0);

  std::vector<int32_t> context = prompt;
  auto t1 = std::chrono::steady_clock::now();
  st.finish_reason = "length";
  for (int n = 0; n < opts.max_tokens; ++n) {
    SampledToken tok = sampler.sample(logits.data(), vocab, context, size_t(n));
    context.push_back(tok.id);
    st.generated_tokens++;
    if (lm.is_eos(tok.id)) {
      st.finish_reason = "stop";
      on_token(tok, detok.flush());
      break;
    }
    std::string text = detok.push(tok.id);
    if (!on_token(tok, text)) {
      st.finish_reason = "stop";
      break;
    }
    if (n + 1 == opts.max_tokens) break;
    batch.clear();
    batch.add(tok.id, int32_t(context.size() - 1), seq, true, adapters);
    m.forward(batch, *cache, logits.data());
  }
  st.decode_seconds = seconds_since(t1);
  return st;
}

}  // namespace optiq::engine
