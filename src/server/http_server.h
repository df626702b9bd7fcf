#pragma once
// optiq serve: the OpenAI and Anthropic HTTP APIs over one Engine. HTTP threads parse, enqueue and
// stream; the engine's worker thread generates. This file knows routes, auth, CORS and streaming —
// the wire shapes live in openai_protocol / anthropic_protocol.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/prompt.h"
#include "engine/engine.h"

namespace optiq::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string model_id;                 // served model name (/v1/models)
  std::string api_key;                  // empty: no auth
  std::vector<std::string> allowed_origins = {"*"};
  bool anthropic = true;
  int default_max_tokens = 512;         // for requests that give none (OpenAI)
  engine::SamplingParams default_sampling;  // --temp/--top-p/--top-k/--min-p
  size_t max_body_bytes = 32u << 20;
  size_t max_header_bytes = 64u << 10;  // request line and headers together: 431 past it
  // A request must arrive whole (line, headers, body) within this many seconds, or it gets a 408; no single
  // read or write may stall longer either. Bounds how long a slow client holds a worker.
  int request_timeout_s = 60;
  // Turns a POST /v1/adapters path into a loadable one (optiq serve resolves Hugging Face repo ids).
  std::function<std::string(const std::string&)> resolve_adapter;
};

class HttpServer {
 public:
  HttpServer(engine::Engine& engine, const chat::PromptBuilder* prompts, ServerOptions opts);
  ~HttpServer();
  // Binds and serves until stop(); returns false if the address could not be bound.
  bool listen();
  // Binds to an ephemeral port (tests) and returns it; serve with listen_after_bind().
  int bind_any_port();
  bool listen_after_bind();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace optiq::server
