// optiq serve: mlx_lm.server's flags (unimplemented ones warn, never fail) plus optiq's own.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "chat/prompt.h"
#include "chat/template_choice.h"
#include "cli/commands.h"
#include "cli/adapters.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "server/http_server.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/log.h"

namespace optiq::cli {

namespace {
server::HttpServer* g_server = nullptr;
void on_signal(int) {
  if (g_server) g_server->stop();
}

}  // namespace

int run_serve(int argc, char** argv) {
  std::string model, host = "127.0.0.1", chat_template, chat_template_args, api_key, allowed_origins = "*",
              log_level = "info";
  int port = 8080, max_tokens = 512, max_concurrency = 4, prefill_step = 512, max_queue = 64, timeout_s = 60;
  engine::SamplingParams defaults;
  bool use_default_template = false, no_anthropic = false, anthropic = false;
  // Accepted for mlx_lm.server compatibility; not implemented yet.
  std::string adapter_path, draft_model, num_draft, pc_bytes, max_kv_size, kv_memory;
  std::vector<std::string> adapters;
  int pc_size = 10, prompt_concurrency = 8;
  bool trust_remote_code = false, pipeline = false;

  Flags f("optiq serve --model MODEL [--host H] [--port P] [options]");
  f.add("model", &model, "model folder or .gguf file");
  f.add("host", &host, "address to bind (default 127.0.0.1)");
  f.add("port", &port, "port (default 8080)");
  f.add("max-tokens", &max_tokens, "default max tokens for requests that give none (default 512)");
  f.add("temp", &defaults.temperature, "default temperature (default 0.0)");
  f.add("top-p", &defaults.top_p, "default top-p (default 1.0)");
  f.add("top-k", &defaults.top_k, "default top-k (default 0 = off)");
  f.add("min-p", &defaults.min_p, "default min-p (default 0.0)");
  f.add("chat-template", &chat_template, "chat template file or text (overrides the model's)");
  f.add_bool("use-default-chat-template", &use_default_template, "use a plain ChatML template when the model has none");
  f.add("chat-template-args", &chat_template_args, "JSON object passed to the template, e.g. {\"enable_thinking\": false}");
  f.add("max-concurrency", &max_concurrency, "sequences generated at once (default 4)");
  f.add("max-concurrent", &max_concurrency, "alias of --max-concurrency");
  f.add("decode-concurrency", &max_concurrency, "alias of --max-concurrency (mlx_lm.server's name)");
  f.add("prompt-concurrency", &prompt_concurrency, "sequences prefilling in one engine step (default 8)");
  f.add("max-queue", &max_queue, "requests waiting beyond those before the server answers 429/529 (default 64)");
  f.add("prefill-step-size", &prefill_step, "prompt tokens per engine step (default 512)");
  f.add("allowed-origins", &allowed_origins, "CORS allowed origins, comma-separated (default *)");
  f.add("timeout", &timeout_s, "seconds a client has to send a whole request, and the longest one read or write may stall (default 60)");
  f.add("api-key", &api_key, "require this key (Authorization: Bearer or x-api-key) on /v1 routes and /metrics");
  f.add_bool("anthropic", &anthropic, "serve the Anthropic Messages API (default on)");
  f.add_bool("no-anthropic", &no_anthropic, "do not serve /v1/messages");
  f.add("log-level", &log_level, "debug | info | warning | error (default info)");
  f.add("adapter", &adapters, "mount a LoRA adapter folder: PATH or NAME=PATH (repeat for several); requests pick one by name");
  f.add("adapter-path", &adapter_path, "mount one LoRA adapter folder (mlx_lm.server's flag)");
  f.add("draft-model", &draft_model, "(accepted; speculative decoding is not implemented)");
  f.add("num-draft-tokens", &num_draft, "(accepted; speculative decoding is not implemented)");
  f.add_bool("trust-remote-code", &trust_remote_code, "(accepted; no effect)");
  f.add_bool("pipeline", &pipeline, "(accepted; no effect)");
  f.add("prompt-cache-size", &pc_size, "finished requests whose KV is kept for prompts that share a prefix (default 10; 0: off)");
  f.add("prompt-cache-bytes", &pc_bytes, "byte limit of that cache, e.g. 2000000000 or 2GiB (default: no limit)");
  f.add("kv-cache-memory", &kv_memory, "KV cache budget, e.g. 4GiB or 4000000000 (default: half the free memory)");
  KvFlags kvf;
  kvf.add_to(f);
  f.add("max-kv-size", &max_kv_size, "(accepted; no effect)");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  const std::string model_ref = f.model_arg(model, "optiq serve --model MODEL");
  model = hub::resolve(model_ref, hub::Kind::Model);
  if (log_level == "debug" || log_level == "DEBUG") set_log_level(LogLevel::Debug);
  else if (log_level == "warning" || log_level == "WARNING" || log_level == "warn") set_log_level(LogLevel::Warn);
  else if (log_level == "error" || log_level == "ERROR") set_log_level(LogLevel::Error);
  const std::pair<const char*, const std::string*> unimplemented[] = {
      {"--draft-model", &draft_model},
      {"--num-draft-tokens", &num_draft}, {"--max-kv-size", &max_kv_size}};
  for (auto& [name, val] : unimplemented)
    if (!val->empty()) OPTIQ_LOG_WARN("%s is accepted but not implemented yet; ignoring it", name);
  if (port < 0 || port > 65535) throw Error(ErrorKind::InvalidArgument, "--port must be 0-65535");
  if (max_concurrency < 1) throw Error(ErrorKind::InvalidArgument, "--max-concurrency must be >= 1");
  if (prompt_concurrency < 1) throw Error(ErrorKind::InvalidArgument, "--prompt-concurrency must be >= 1");
  if (timeout_s < 1) throw Error(ErrorKind::InvalidArgument, "--timeout must be >= 1 second");
  if (max_queue < 0) throw Error(ErrorKind::InvalidArgument, "--max-queue must be >= 0");
  if (!chat_template_args.empty()) {
    try {
      if (!nlohmann::json::parse(chat_template_args).is_object()) throw std::runtime_error("not an object");
    } catch (const std::exception&) {
      throw Error(ErrorKind::InvalidArgument, "--chat-template-args must be a JSON object");
    }
  }

  const kv::KvSpec kv_spec = kvf.spec();
  OPTIQ_LOG_INFO("loading %s", model.c_str());
  engine::LoadedModel lm = engine::LoadedModel::load(model);
  kv_spec.validate(lm.model->kv_shape());
  OPTIQ_LOG_INFO("KV cache plan:\n%s", kv_spec.describe(lm.model->kv_shape()).c_str());
  const auto& info = lm.tokenizer->info();
  const std::string tmpl = chat::choose_chat_template(info.chat_template, chat_template, use_default_template);
  std::unique_ptr<chat::PromptBuilder> prompts;
  if (!tmpl.empty()) prompts = std::make_unique<chat::PromptBuilder>(tmpl, chat::PromptOptions{info.bos_token, info.eos_token, chat_template_args});
  else OPTIQ_LOG_WARN("the model has no chat template: /v1/chat/completions and /v1/messages will answer 400 (use --chat-template)");

  if (!adapter_path.empty()) adapters.insert(adapters.begin(), adapter_path);
  mount_adapters(*lm.model, adapters);

  engine::EngineOptions eo;
  eo.max_concurrency = max_concurrency;
  eo.max_queue = max_queue;
  eo.prefill_chunk = prefill_step;
  if (pc_size < 0) throw Error(ErrorKind::InvalidArgument, "--prompt-cache-size must be >= 0");
  eo.prompt_cache_size = pc_size;
  eo.prompt_cache_bytes = pc_bytes.empty() ? 0 : parse_bytes(pc_bytes, "--prompt-cache-bytes");
  eo.prompt_concurrency = prompt_concurrency;
  if (!kv_memory.empty()) {
    eo.kv_cache_bytes = parse_bytes(kv_memory, "--kv-cache-memory");
    if (eo.kv_cache_bytes <= 0) throw Error(ErrorKind::InvalidArgument, "--kv-cache-memory must be > 0");
  } else {
    eo.kv_cache_bytes = available_memory_bytes() / 2;  // 0 when unknown: no limit
  }
  const int64_t page_bytes = lm.model->make_cache(kv_spec)->page_bytes();
  if (eo.kv_cache_bytes > 0 && eo.kv_cache_bytes < page_bytes)
    throw Error(ErrorKind::InvalidArgument, "--kv-cache-memory " + kv_memory + " holds no KV page (" + std::to_string(page_bytes) +
                                                " bytes for " + std::to_string(kv::KvCache::kPageTokens) + " tokens at this precision)");
  if (eo.kv_cache_bytes > 0) {
    const int64_t tokens = eo.kv_cache_bytes / page_bytes * kv::KvCache::kPageTokens;
    OPTIQ_LOG_INFO("KV cache budget %.2f GiB%s: %lld tokens in pages of %d", double(eo.kv_cache_bytes) / double(1 << 30),
                   kv_memory.empty() ? " (half the free memory; --kv-cache-memory sets it)" : "", static_cast<long long>(tokens),
                   int(kv::KvCache::kPageTokens));
    const int ctx = lm.model->config().max_position_embeddings;
    if (tokens < ctx)
      OPTIQ_LOG_WARN("the KV budget holds fewer tokens (%lld) than the model's context (%d): longer requests get 400",
                     static_cast<long long>(tokens), ctx);
  }
  engine::Engine eng(lm, eo);
  eng.set_kv_spec(kv_spec, kv_spec.quantized_kv_start);

  server::ServerOptions so;
  so.resolve_adapter = [](const std::string& ref) { return hub::resolve(ref, hub::Kind::Adapter); };
  so.host = host;
  so.port = port;
  so.model_id = model_ref;  // what the user named (a repo id stays a repo id in /v1/models)
  so.api_key = api_key;
  so.request_timeout_s = timeout_s;
  so.allowed_origins.clear();
  for (size_t s = 0; s <= allowed_origins.size();) {
    size_t c = allowed_origins.find(',', s);
    if (c == std::string::npos) c = allowed_origins.size();
    if (c > s) so.allowed_origins.push_back(allowed_origins.substr(s, c - s));
    s = c + 1;
  }
  so.anthropic = !no_anthropic;
  so.default_max_tokens = max_tokens;
  so.default_sampling = defaults;
  if (host != "127.0.0.1" && host != "localhost" && host != "::1" && api_key.empty())
    OPTIQ_LOG_WARN("binding %s without --api-key: anyone who can reach this address can use the model", host.c_str());
  server::HttpServer srv(eng, prompts.get(), so);
  g_server = &srv;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  OPTIQ_LOG_INFO("serving %s on http://%s:%d (OpenAI /v1/chat/completions, /v1/completions%s)", model.c_str(), host.c_str(),
                 port, so.anthropic ? ", Anthropic /v1/messages" : "");
  bool ok = srv.listen();
  g_server = nullptr;
  if (!ok) throw Error(ErrorKind::InvalidArgument, "cannot listen on " + host + ":" + std::to_string(port));
  return 0;
}

}  // namespace optiq::cli
