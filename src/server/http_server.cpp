#include "server/http_server.h"

#include <httplib.h>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "server/anthropic_protocol.h"
#include "server/connection.h"
#include "server/metrics.h"
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

// ---- noticing a client that went away ----
//
// A write into a socket whose peer has closed succeeds once (the peer answers it with a reset; only the next
// write fails). Waiting for write errors would let a request generate two or three tokens nobody reads. So a
// handler polls its own connection's socket (current_connection) for the peer's FIN (POLLRDHUP) before every
// write and while it waits for tokens.

// True once the client has closed (or reset) its side of the connection.
bool peer_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// How long a handler waits for the next token before it looks at the connection again: well under one
// token's time on real models, so a generation is cancelled while the token after the disconnect is still
// being computed.
constexpr std::chrono::milliseconds kPeerPoll{10};

// Connections that may wait to be accepted: a burst of clients (Claude Code's parallel requests, a load test)
// connects at once instead of retrying after dropped SYNs.
constexpr int kListenBacklog = 1024;

}  // namespace

struct HttpServer::Impl {
  engine::Engine& eng;
  const chat::PromptBuilder* prompts;
  ServerOptions opts;
  GuardedServer svr{ConnectionLimits{opts.request_timeout_s, opts.max_header_bytes}};
  int64_t created = unix_time_now();

  Impl(engine::Engine& e, const chat::PromptBuilder* p, ServerOptions o) : eng(e), prompts(p), opts(std::move(o)) {}

  // ---- request preparation ----

  // The model name a response echoes: the request's, or the served model's when it names none.
  const std::string& label(const engine::GenerationRequest& gen) const { return gen.model.empty() ? opts.model_id : gen.model; }

  std::string render_chat(const engine::GenerationRequest& gen) const {
    if (!prompts)
      throw ApiError(400, error_type::kInvalidRequest,
                     "this model has no chat template; start the server with --chat-template or use /v1/completions");
    return prompts->render(gen);
  }

  // Tokens of the prompt through its last cache_control breakpoint: the conversation cut after that
  // message, rendered without a generation prompt (the template's closing tokens of that message count).
  int cached_prefix_tokens(const engine::GenerationRequest& gen, int prompt_tokens) const {
    if (gen.cache_messages >= gen.messages.size()) return prompt_tokens;
    engine::GenerationRequest cut = gen;
    cut.messages.resize(gen.cache_messages);
    try {
      return std::min(prompt_tokens, int(eng.model().tokenizer->encode(prompts->render(cut, false), false).size()));
    } catch (const std::exception&) {
      return prompt_tokens;  // a template that cannot end there: count the whole prompt
    }
  }

  // The mounted adapters a request runs with, as the model's adapter set id (0: the base). The body's
  // adapters/adapter field wins; else the adapter the model field names; else the only mounted one.
  int32_t resolve_adapters(const engine::GenerationRequest& gen) const {
    model::Model& m = *eng.model().model;
    const auto mounted = m.adapters();
    std::string spec;
    if (gen.adapters) spec = *gen.adapters;
    else if (!gen.model.empty() && m.find_adapter(gen.model) >= 0) spec = gen.model;
    else if (mounted.size() == 1) spec = mounted[0]->name;
    return m.resolve_adapters(spec);  // unknown names: InvalidArgument, a 400 in the API's shape
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
    if (gen.cache_messages > 0 && !gen.messages.empty()) r.cache_prefix_tokens = cached_prefix_tokens(gen, int(r.prompt.size()));
    r.max_tokens = gen.max_tokens > 0 ? gen.max_tokens : opts.default_max_tokens;
    r.sampling = gen.sampling;
    r.stop = gen.stop;
    r.logprobs = gen.logprobs;
    r.json_object = gen.json_mode;
    r.adapter_set = resolve_adapters(gen);
    return r;
  }

  // ---- running a generation ----

  template <class Stream>
  void stream_response(const httplib::Request& req, httplib::Response& res, std::shared_ptr<engine::RequestHandle> handle,
                       std::shared_ptr<Stream> st) {
    res.set_header("Cache-Control", "no-cache");
    const int fd = current_connection().fd;
    res.set_chunked_content_provider(
        "text/event-stream",
        [handle, st, fd](size_t, httplib::DataSink& sink) {
          // Every exit before the end cancels the generation: the client is gone.
          auto send = [&](const std::string& data) {
            if (data.empty()) return true;
            if (peer_gone(fd) || !sink.write(data.data(), data.size())) {
              handle->cancel();
              return false;
            }
            return true;
          };
          // The first frames go out with the engine's first event, which says how much of the prompt the
          // prompt cache held (Anthropic's message_start reports it).
          engine::GenerationEvent ev;
          auto last_write = std::chrono::steady_clock::now();
          while (!st->finished()) {
            if (!handle->next(ev, kPeerPoll)) {
              if (peer_gone(fd)) {
                handle->cancel();
                return false;
              }
              if (std::chrono::steady_clock::now() - last_write >= std::chrono::seconds(15)) {
                last_write = std::chrono::steady_clock::now();
                if (!send(": keepalive\n\n")) return false;
              }
              continue;
            }
            last_write = std::chrono::steady_clock::now();
            if (!send(st->on_event(ev))) return false;
          }
          sink.done();
          return true;
        },
        [handle](bool success) {
          if (!success) handle->cancel();
        });
  }

  // A non-streamed answer: all events, or none when the client went away (the generation is cancelled).
  std::optional<std::vector<engine::GenerationEvent>> collect(const httplib::Request& req, engine::RequestHandle& h) {
    std::vector<engine::GenerationEvent> evs;
    engine::GenerationEvent ev;
    const int fd = current_connection().fd;
    for (;;) {
      bool got = h.next(ev, kPeerPoll);
      if (peer_gone(fd)) {
        h.cancel();
        return std::nullopt;
      }
      if (!got) continue;
      bool end = ev.kind == engine::GenerationEvent::Kind::Done || ev.kind == engine::GenerationEvent::Kind::Error;
      evs.push_back(std::move(ev));
      if (end) return evs;
    }
  }

  // ---- handlers ----

  // Chat and completions differ only in their request parser, id prefix and encoders.
  template <class Stream, class Request, class Respond>
  void openai_generate(Request r, const char* id_prefix, const httplib::Request& req, httplib::Response& res,
                       Respond respond) {
    engine::EngineRequest er = prepare(r.gen);
    const auto& tok = *eng.model().tokenizer;
    auto handle = eng.submit(std::move(er));
    OpenAiEncodeOptions eo = encode_options(r, [&tok](int32_t id) { return tok.token_to_bytes(id); });
    ResponseMeta meta = make_response_meta(id_prefix, label(r.gen));
    if (r.gen.stream) return stream_response(req, res, handle, std::make_shared<Stream>(meta, eo));
    if (auto evs = collect(req, *handle)) res.set_content(respond(meta, *evs, eo), "application/json");
  }

  void openai_chat(const httplib::Request& req, httplib::Response& res) {
    openai_generate<OpenAiChatStream>(parse_openai_chat(req.body, opts.default_sampling), "chatcmpl-", req, res,
                                      openai_chat_response);
  }

  void openai_completion(const httplib::Request& req, httplib::Response& res) {
    openai_generate<OpenAiCompletionStream>(parse_openai_completion(req.body, opts.default_sampling), "cmpl-", req, res,
                                            openai_completion_response);
  }

  void anthropic_messages(const httplib::Request& req, httplib::Response& res) {
    AnthropicRequest r = parse_anthropic_messages(req.body, opts.default_sampling);
    engine::EngineRequest er = prepare(r.gen);
    int input_tokens = int(er.prompt.size());
    auto handle = eng.submit(std::move(er));
    ResponseMeta meta = make_response_meta("msg_", label(r.gen));
    if (r.gen.stream) return stream_response(req, res, handle, std::make_shared<AnthropicStream>(meta, input_tokens));
    if (auto evs = collect(req, *handle)) res.set_content(anthropic_message_response(meta, *evs), "application/json");
  }

  // POST /v1/adapters {"name": "agent-a", "path": "/adapters/agent-a"}: mounts an adapter at run time.
  // Loading reads the files on this request's thread; the engine keeps stepping meanwhile.
  void adapters_mount(const httplib::Request& req, httplib::Response& res) {
    const nlohmann::ordered_json b = fields::parse_body_object(req.body);
    const std::string name = fields::req_string(b, "name", "name"), path = fields::req_string(b, "path", "path");
    model::Model& m = *eng.model().model;
    OPTIQ_LOG_INFO("mounting adapter '%s' from %s (running requests continue)", name.c_str(), path.c_str());
    int idx;
    try {
      model::check_adapter_name(name);
      const std::string local = opts.resolve_adapter ? opts.resolve_adapter(path) : path;
      idx = m.mount_adapter(model::load_adapter(local, m.config(), name));
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::NotFound) throw ApiError(404, error_type::kNotFound, e.what());
      throw ApiError(400, error_type::kInvalidRequest, e.what());
    }
    const auto a = m.adapter(idx);
    OPTIQ_LOG_INFO("adapter '%s' mounted: %s", name.c_str(), a->summary().c_str());
    res.set_content(adapter_json(*a).dump(), "application/json");
  }

  // DELETE /v1/adapters/NAME: 404 unknown, 409 while a request uses it.
  void adapters_unmount(const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    eng.unmount_adapter(name);
    OPTIQ_LOG_INFO("adapter '%s' unmounted", name.c_str());
    res.set_content(nlohmann::ordered_json{{"id", name}, {"object", "adapter"}, {"deleted", true}}.dump(), "application/json");
  }

  static nlohmann::ordered_json adapter_json(const model::Adapter& a) {
    return {{"id", a.name}, {"object", "adapter"}, {"path", a.path}, {"format", a.format}, {"summary", a.summary()}};
  }

  void anthropic_count_tokens(const httplib::Request& req, httplib::Response& res) {
    AnthropicRequest r = parse_anthropic_count_tokens(req.body, opts.default_sampling);
    std::string text = render_chat(r.gen);
    int n = int(eng.model().tokenizer->encode(text, false).size());
    res.set_content(count_tokens_body(n), "application/json");
  }

  // Wraps a handler: every error a request can cause becomes the API's error shape; the server keeps serving.
  // The handler reads the body itself, whatever its Content-Type: `curl -d` sends JSON as a form, and
  // httplib's own reading refuses form bodies over 8 KB. (The body size limit still applies: 413.)
  httplib::Server::HandlerWithContentReader guarded(void (Impl::*fn)(const httplib::Request&, httplib::Response&)) {
    return [this, fn](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
      Api api = api_of(req.path);
      std::string body;
      bool too_large = false;  // httplib checks Content-Length against the limit, not chunked or unsized bodies
      if (!read([&](const char* data, size_t n) {
            if (body.size() + n > opts.max_body_bytes) return !(too_large = true);
            body.append(data, n);
            return true;
          })) {
        if (too_large) {
          send_error(res, api, ApiError(413, error_type::kRequestTooLarge, "request body is too large"));
          close_after_answer(res);
        }
        return;  // else httplib set the status (413, 400); the error handler writes the body
      }
      // httplib hands handlers a const Request it owns; the body belongs in it like any other.
      const_cast<httplib::Request&>(req).body = std::move(body);
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
    svr.set_read_timeout(opts.request_timeout_s, 0);
    svr.set_write_timeout(opts.request_timeout_s, 0);
    svr.set_keep_alive_timeout(5);

    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      add_cors(req, res);
      // Answers given here leave the request's body unread: the connection ends with them.
      if (req.method == "OPTIONS") {
        res.status = 204;
        if (request_has_body(req)) close_after_answer(res);
        return httplib::Server::HandlerResponse::Handled;
      }
      // The key guards the APIs, the admin routes under /v1 (adapter mount / unmount) and the metrics.
      if (!opts.api_key.empty() && (req.path.rfind("/v1/", 0) == 0 || req.path == "/metrics") && !authorized(req)) {
        send_error(res, api_of(req.path),
                   ApiError(401, error_type::kAuthentication, "invalid API key (send Authorization: Bearer KEY or x-api-key: KEY)"));
        if (request_has_body(req)) close_after_answer(res);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    svr.Post("/v1/chat/completions", guarded(&Impl::openai_chat));
    svr.Post("/chat/completions", guarded(&Impl::openai_chat));
    svr.Post("/v1/completions", guarded(&Impl::openai_completion));
    svr.Post("/v1/adapters", guarded(&Impl::adapters_mount));
    svr.Delete(R"(/v1/adapters/(.+))", guarded(&Impl::adapters_unmount));
    if (opts.anthropic) {
      svr.Post("/v1/messages", guarded(&Impl::anthropic_messages));
      svr.Post("/v1/messages/count_tokens", guarded(&Impl::anthropic_count_tokens));
    }
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      std::vector<ModelInfo> list = {ModelInfo{opts.model_id, created, "optiq"}};
      for (auto& a : eng.model().model->adapters()) list.push_back(ModelInfo{a->name, created, "optiq"});
      res.set_content(models_list_body(list), "application/json");
    });
    svr.Get("/v1/adapters", [this](const httplib::Request&, httplib::Response& res) {
      nlohmann::ordered_json data = nlohmann::ordered_json::array();
      for (auto& a : eng.model().model->adapters()) data.push_back(adapter_json(*a));
      res.set_content(nlohmann::ordered_json{{"object", "list"}, {"data", data}}.dump(), "application/json");
    });
    // Single-model server: any model name is a label for the served model (Claude Code asks for claude-*).
    svr.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      res.set_content(model_body(ModelInfo{req.matches[1], created, "optiq"}), "application/json");
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(prometheus_text(eng.stats()), "text/plain; version=0.0.4; charset=utf-8");
    });
    svr.set_limit_answer([this](ReadLimit limit, httplib::Response& res) { answer_limit(limit, Api::OpenAi, res); });
    svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      // httplib's own errors (bad framing, limits, unknown routes) may leave the body unread.
      if (request_has_body(req)) close_after_answer(res);
      Api api = api_of(req.path);
      if (ReadLimit limit = current_connection().limit; limit != ReadLimit::None)
        answer_limit(limit, api, res);
      else if (res.status == 404)
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

  // The answer to a request a connection limit stopped (the connection ends with it).
  void answer_limit(ReadLimit limit, Api api, httplib::Response& res) const {
    close_after_answer(res);
    if (limit == ReadLimit::Timeout)
      send_error(res, api, ApiError(408, error_type::kInvalidRequest,
                                    "the request did not arrive within " + std::to_string(opts.request_timeout_s) + " s (--timeout)"));
    else
      send_error(res, api, ApiError(431, error_type::kInvalidRequest,
                                    "request headers are larger than " + std::to_string(opts.max_header_bytes >> 10) + " KiB"));
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
  if (!impl_->svr.bind_to_port(impl_->opts.host, impl_->opts.port)) return false;
  impl_->svr.raise_backlog(kListenBacklog);
  return listen_after_bind();
}

int HttpServer::bind_any_port() {
  int port = impl_->svr.bind_to_any_port(impl_->opts.host);
  if (port > 0) {
    impl_->svr.raise_backlog(kListenBacklog);
    impl_->opts.port = port;
    OPTIQ_LOG_INFO("listening on http://%s:%d", impl_->opts.host.c_str(), port);
  }
  return port;
}

bool HttpServer::listen_after_bind() {
  if (impl_->svr.stop_requested()) impl_->svr.stop_listening();  // a stop() that came before the socket was bound
  return impl_->svr.listen_after_bind();
}

void HttpServer::stop() {
  if (impl_) impl_->svr.stop_listening();
}

}  // namespace optiq::server
