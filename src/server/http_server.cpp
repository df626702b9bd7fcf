#include "server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/anthropic_protocol.h"
#include "server/openai_protocol.h"
#include "util/error.h"
#include "util/log.h"

namespace optiq::server {

namespace {

enum class Api { OpenAi, Anthropic };

void send_error(httplib::Response& res, Api api, const ApiError& e) {
  if (api == Api::Anthropic) {
    res.status = anthropic_status(e);
    res.set_content(anthropic_error_body(e), "application/json");
  } else {
    res.status = openai_status(e);
    res.set_content(openai_error_body(e), "application/json");
  }
}

Api api_of(const std::string& path) { return path.rfind("/v1/messages", 0) == 0 ? Api::Anthropic : Api::OpenAi; }

// Constant-time comparison: how long a wrong key takes does not depend on how much of it matched.
bool keys_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

}  // namespace

struct HttpServer::Impl {
  engine::Engine& eng;
  const chat::PromptBuilder* prompts;
  ServerOptions opts;
  httplib::Server svr;
  int64_t created = unix_time_now();

  Impl(engine::Engine& e, const chat::PromptBuilder* p, ServerOptions o) : eng(e), prompts(p), opts(std::move(o)) {}

  // ---- request preparation ----

  std::string render_chat(const engine::GenerationRequest& gen) const {
    if (!prompts)
      throw ApiError(400, error_type::kInvalidRequest,
                     "this model has no chat template; start the server with --chat-template or use /v1/completions");
    return prompts->render(gen);
  }

  engine::EngineRequest prepare(const engine::GenerationRequest& gen) const {
    const auto& tok = *eng.model().tokenizer;
    engine::EngineRequest r;
    if (!gen.messages.empty()) {
      std::string text = render_chat(gen);
      r.prompt = tok.encode(text, /*add_special=*/false);
      r.output_format = chat::detect_output_format(prompts->source(), text.size() > 64 ? text.substr(text.size() - 64) : text);
      r.tools_requested = !gen.tools.empty() && gen.tool_choice != "none";
    } else if (gen.prompt_text) {
      r.prompt = tok.encode(*gen.prompt_text, /*add_special=*/true);
    } else {
      r.prompt = gen.prompt_tokens;
    }
    if (r.prompt.empty()) throw ApiError(400, error_type::kInvalidRequest, "the prompt is empty");
    r.max_tokens = gen.max_tokens > 0 ? gen.max_tokens : opts.default_max_tokens;
    r.sampling = gen.sampling;
    r.stop = gen.stop;
    r.logprobs = gen.logprobs;
    return r;
  }

  // ---- running a generation ----

  template <class Stream>
  void stream_response(httplib::Response& res, std::shared_ptr<engine::RequestHandle> handle, std::shared_ptr<Stream> st) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [handle, st](size_t, httplib::DataSink& sink) {
          std::string first = st->begin();
          if (!first.empty() && !sink.write(first.data(), first.size())) {
            handle->cancel();
            return false;
          }
          engine::GenerationEvent ev;
          while (!st->finished()) {
            if (!handle->next(ev, std::chrono::milliseconds(15000))) {
              static const std::string keepalive = ": keepalive\n\n";
              if (!sink.write(keepalive.data(), keepalive.size())) {
                handle->cancel();
                return false;
              }
              continue;
            }
            std::string frames = st->on_event(ev);
            if (!frames.empty() && !sink.write(frames.data(), frames.size())) {
              handle->cancel();  // the client went away: stop generating
              return false;
            }
          }
          sink.done();
          return true;
        },
        [handle](bool success) {
          if (!success) handle->cancel();
        });
  }

  std::vector<engine::GenerationEvent> collect(engine::RequestHandle& h) {
    std::vector<engine::GenerationEvent> evs;
    engine::GenerationEvent ev;
    for (;;) {
      if (!h.next(ev, std::chrono::milliseconds(1000))) continue;
      bool end = ev.kind == engine::GenerationEvent::Kind::Done || ev.kind == engine::GenerationEvent::Kind::Error;
      evs.push_back(std::move(ev));
      if (end) return evs;
    }
  }

  // ---- handlers ----

  // Chat and completions differ only in their request parser, id prefix and encoders.
  template <class Stream, class Request, class Respond>
  void openai_generate(Request r, const char* id_prefix, httplib::Response& res, Respond respond) {
    engine::EngineRequest er = prepare(r.gen);
    const auto& tok = *eng.model().tokenizer;
    auto handle = eng.submit(std::move(er));
    OpenAiEncodeOptions eo = encode_options(r, [&tok](int32_t id) { return tok.token_to_bytes(id); });
    ResponseMeta meta = make_response_meta(id_prefix, r.gen.model);
    if (r.gen.stream) return stream_response(res, handle, std::make_shared<Stream>(meta, eo));
    res.set_content(respond(meta, collect(*handle), eo), "application/json");
  }

  void openai_chat(const httplib::Request& req, httplib::Response& res) {
    openai_generate<OpenAiChatStream>(parse_openai_chat(req.body, opts.default_sampling), "chatcmpl-", res,
                                      openai_chat_response);
  }

  void openai_completion(const httplib::Request& req, httplib::Response& res) {
    openai_generate<OpenAiCompletionStream>(parse_openai_completion(req.body, opts.default_sampling), "cmpl-", res,
                                            openai_completion_response);
  }

  void anthropic_messages(const httplib::Request& req, httplib::Response& res) {
    AnthropicRequest r = parse_anthropic_messages(req.body, opts.default_sampling);
    engine::EngineRequest er = prepare(r.gen);
    int input_tokens = int(er.prompt.size());
    auto handle = eng.submit(std::move(er));
    ResponseMeta meta = make_response_meta("msg_", r.gen.model);
    if (r.gen.stream) return stream_response(res, handle, std::make_shared<AnthropicStream>(meta, input_tokens));
    res.set_content(anthropic_message_response(meta, collect(*handle)), "application/json");
  }

  void anthropic_count_tokens(const httplib::Request& req, httplib::Response& res) {
    AnthropicRequest r = parse_anthropic_count_tokens(req.body, opts.default_sampling);
    std::string text = render_chat(r.gen);
    int n = int(eng.model().tokenizer->encode(text, false).size());
    res.set_content(count_tokens_body(n), "application/json");
  }

  // Wraps a handler: every error a request can cause becomes the API's error shape; the server keeps serving.
  httplib::Server::Handler guarded(void (Impl::*fn)(const httplib::Request&, httplib::Response&)) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      Api api = api_of(req.path);
      try {
        (this->*fn)(req, res);
      } catch (const ApiError& e) {
        send_error(res, api, e);
      } catch (const std::exception& e) {
        send_error(res, api, api_error_from_exception(e));
      }
    };
  }

  void setup() {
    svr.new_task_queue = [] { return new httplib::ThreadPool(64); };
    svr.set_tcp_nodelay(true);
    svr.set_payload_max_length(opts.max_body_bytes);
    svr.set_read_timeout(60, 0);
    svr.set_write_timeout(60, 0);
    svr.set_keep_alive_timeout(5);

    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      add_cors(req, res);
      if (req.method == "OPTIONS") {
        res.status = 204;
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!opts.api_key.empty() && req.path.rfind("/v1/", 0) == 0 && !authorized(req)) {
        send_error(res, api_of(req.path),
                   ApiError(401, error_type::kAuthentication, "invalid API key (send Authorization: Bearer KEY or x-api-key: KEY)"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    svr.Post("/v1/chat/completions", guarded(&Impl::openai_chat));
    svr.Post("/chat/completions", guarded(&Impl::openai_chat));
    svr.Post("/v1/completions", guarded(&Impl::openai_completion));
    if (opts.anthropic) {
      svr.Post("/v1/messages", guarded(&Impl::anthropic_messages));
      svr.Post("/v1/messages/count_tokens", guarded(&Impl::anthropic_count_tokens));
    }
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(models_list_body({ModelInfo{opts.model_id, created, "optiq"}}), "application/json");
    });
    // Single-model server: any model name is a label for the served model (Claude Code asks for claude-*).
    svr.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      res.set_content(model_body(ModelInfo{req.matches[1], created, "optiq"}), "application/json");
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      Api api = api_of(req.path);
      if (res.status == 404)
        send_error(res, api, ApiError(404, error_type::kNotFound, "no route " + req.method + " " + req.path));
      else if (res.status == 413)
        send_error(res, api, ApiError(413, error_type::kRequestTooLarge, "request body is too large"));
      else if (res.status >= 400)
        send_error(res, api, api_error_from_status(res.status, "bad request"));
    });
    svr.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        send_error(res, api_of(req.path), api_error_from_exception(e));
      } catch (...) {
        send_error(res, api_of(req.path), ApiError(500, error_type::kApi, "internal error"));
      }
    });
  }

  bool authorized(const httplib::Request& req) const {
    std::string key = req.get_header_value("x-api-key");
    std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    return keys_equal(key, opts.api_key);
  }

  void add_cors(const httplib::Request& req, httplib::Response& res) const {
    std::string origin = req.get_header_value("Origin");
    bool any = false, listed = false;
    for (auto& o : opts.allowed_origins) {
      any |= o == "*";
      listed |= o == origin;
    }
    if (any) res.set_header("Access-Control-Allow-Origin", "*");
    else if (!origin.empty() && listed) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.set_header("Access-Control-Allow-Headers", "*");
  }
};

HttpServer::HttpServer(engine::Engine& engine, const chat::PromptBuilder* prompts, ServerOptions opts)
    : impl_(std::make_unique<Impl>(engine, prompts, std::move(opts))) {
  impl_->setup();
}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::listen() {
  if (impl_->opts.port == 0) {
    int port = bind_any_port();
    if (port < 0) return false;
    return listen_after_bind();
  }
  return impl_->svr.listen(impl_->opts.host, impl_->opts.port);
}

int HttpServer::bind_any_port() {
  int port = impl_->svr.bind_to_any_port(impl_->opts.host);
  if (port > 0) {
    impl_->opts.port = port;
    OPTIQ_LOG_INFO("listening on http://%s:%d", impl_->opts.host.c_str(), port);
  }
  return port;
}

bool HttpServer::listen_after_bind() { return impl_->svr.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_) impl_->svr.stop();
}

}  // namespace optiq::server
