#include <cstdio>
#include <nlohmann/json.hpp>

#include "chat/template.h"
#include "cli/commands.h"
#include "cli/adapters.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "engine/generator.h"
#include "util/error.h"

namespace optiq::cli {

int run_generate(int argc, char** argv) {
  std::string model, prompt, system;
  bool chat = false, quiet = false;
  engine::GenerateOptions opts;
  engine::SamplingParams& s = opts.sampling;
  Flags f("optiq generate MODEL --prompt TEXT [options]");
  f.add("model", &model, "model folder or .gguf file (or give it as the first argument)");
  f.add("prompt", &prompt, "the prompt text");
  f.add_bool("chat", &chat, "wrap the prompt as a user message with the model's chat template");
  f.add("system", &system, "system message (with --chat)");
  f.add("max-tokens", &opts.max_tokens, "most tokens to generate (default 256)");
  f.add("temp", &s.temperature, "sampling temperature; 0 = greedy (default 0)");
  f.add("top-p", &s.top_p, "nucleus sampling mass (default 1.0 = off)");
  f.add("top-k", &s.top_k, "sample among the k most likely tokens (default 0 = off)");
  f.add("min-p", &s.min_p, "drop tokens below min-p x the top probability (default 0 = off)");
  f.add("repetition-penalty", &s.repetition_penalty, "penalty for recent tokens (default 1.0 = off)");
  f.add("repetition-context-size", &s.repetition_context_size, "tokens the repetition penalty looks at (default 20)");
  f.add("seed", &s.seed, "random seed (same seed, same text)");
  f.add("prefill-step-size", &opts.prefill_chunk, "prompt tokens per prefill step (default 512)");
  f.add_bool("quiet", &quiet, "print only the generated text");
  std::vector<std::string> adapters;
  f.add("adapter", &adapters, "apply a LoRA adapter folder (PATH or NAME=PATH; repeat to stack several)");
  KvFlags kvf;
  kvf.add_to(f);
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  model = hub::resolve(f.model_arg(model, "optiq generate MODEL --prompt TEXT"), hub::Kind::Model);
  if (opts.max_tokens < 0) throw Error(ErrorKind::InvalidArgument, "--max-tokens must be >= 0");
  if (s.temperature < 0) throw Error(ErrorKind::InvalidArgument, "--temp must be >= 0");

  opts.kv_spec = kvf.spec();
  engine::LoadedModel lm = engine::LoadedModel::load(model);
  opts.kv_spec.validate(lm.model->kv_shape());
  if (!adapters.empty()) opts.adapter_set = lm.model->adapter_set(mount_adapters(*lm.model, adapters));
  if (!quiet) std::fprintf(stderr, "KV cache:\n%s\n", opts.kv_spec.describe(lm.model->kv_shape()).c_str());
  std::vector<int32_t> ids;
  if (chat) {
    const auto& info = lm.tokenizer->info();
    if (info.chat_template.empty()) throw Error(ErrorKind::InvalidArgument, model + ": the model has no chat template; run without --chat");
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    if (!system.empty()) msgs.push_back({{"role", "system"}, {"content", system}});
    msgs.push_back({{"role", "user"}, {"content", prompt}});
    nlohmann::ordered_json ctx = {{"messages", msgs}, {"add_generation_prompt", true},
                                  {"bos_token", info.bos_token}, {"eos_token", info.eos_token}};
    std::string text = chat::ChatTemplate(info.chat_template).render(ctx);
    ids = lm.tokenizer->encode(text, /*add_special=*/false);
  } else {
    ids = lm.tokenizer->encode(prompt, /*add_special=*/true);
  }
  if (ids.empty()) throw Error(ErrorKind::InvalidArgument, "the prompt encodes to no tokens");

  engine::GenerationStats st = engine::generate(lm, ids, opts, [](const engine::SampledToken&, const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!quiet) {
    std::fprintf(stderr, "prompt: %d tokens, %.2f tokens/s\n", st.prompt_tokens,
                 st.prefill_seconds > 0 ? st.prompt_tokens / st.prefill_seconds : 0.0);
    std::fprintf(stderr, "generation: %d tokens, %.2f tokens/s (finish: %s)\n", st.generated_tokens,
                 st.decode_seconds > 0 ? st.generated_tokens / st.decode_seconds : 0.0, st.finish_reason.c_str());
  }
  return 0;
}

}  // namespace optiq::cli
