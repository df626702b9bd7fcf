#include "server/openai_protocol.h"

#include <charconv>
#include <cmath>
#include <map>
#include <unordered_map>

namespace optiq::server {

using engine::GenerationEvent;
using json = nlohmann::ordered_json;
using nlohmann::ordered_json;
using Kind = engine::GenerationEvent::Kind;
namespace f = fields;

namespace {

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

int32_t parse_token_id_key(const std::string& key, const std::string& path) {
  int64_t v = -1;
  auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), v);
  if (key.empty() || ec != std::errc() || p != key.data() + key.size() || v < 0 || v > INT32_MAX)
    throw invalid_request("'" + path + "' keys must be token ids (non-negative integers as strings), got '" + key + "'",
                          path);
  return static_cast<int32_t>(v);
}

// Fields shared by chat and completions: length, sampling, stop, seed, n, stream.
void parse_common(const json& b, engine::GenerationRequest& g, bool& include_usage,
                  const engine::SamplingParams& defaults) {
  g.sampling = defaults;
  g.model = f::opt_string(b, "model", "model").value_or("");
  g.adapters = f::opt_string(b, "adapters", "adapters");
  if (!g.adapters) g.adapters = f::opt_string(b, "adapter", "adapter");

  auto mct = f::opt_int(b, "max_completion_tokens", "max_completion_tokens", 1, INT32_MAX);
  auto mt = f::opt_int(b, "max_tokens", "max_tokens", 1, INT32_MAX);
  g.max_tokens = static_cast<int>(mct ? *mct : mt ? *mt : 0);

  auto& s = g.sampling;
  if (auto v = f::opt_number(b, "temperature", "temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = f::opt_number(b, "top_p", "top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*v);
  if (auto v = f::opt_int(b, "top_k", "top_k", -1, INT32_MAX)) s.top_k = *v < 0 ? 0 : static_cast<int>(*v);
  if (auto v = f::opt_number(b, "min_p", "min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = f::opt_number(b, "repetition_penalty", "repetition_penalty", 0.0, 1e300))
    s.repetition_penalty = *v == 0.0 ? 1.0f : static_cast<float>(*v);  // mlx-lm: 0 = off
  if (auto v = f::opt_int(b, "repetition_context_size", "repetition_context_size", 1, 1 << 20))
    s.repetition_context_size = static_cast<int>(*v);
  if (auto v = f::opt_number(b, "presence_penalty", "presence_penalty", -2.0, 2.0))
    s.presence_penalty = static_cast<float>(*v);
  if (auto v = f::opt_number(b, "frequency_penalty", "frequency_penalty", -2.0, 2.0))
    s.frequency_penalty = static_cast<float>(*v);
  if (const json* lb = f::opt_object(b, "logit_bias", "logit_bias")) {
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      std::string path = "logit_bias." + it.key();
      int32_t id = parse_token_id_key(it.key(), "logit_bias");
      if (!it.value().is_number()) f::throw_type(path, "a number", it.value());
      double bias = it.value().get<double>();
      if (bias < -100.0 || bias > 100.0)
        throw invalid_request("'" + path + "' must be between -100 and 100", path);
      s.logit_bias.emplace_back(id, static_cast<float>(bias));
    }
  }
  if (auto v = f::opt_int(b, "seed", "seed")) s.seed = static_cast<uint64_t>(*v);

  g.stop = f::opt_string_list(b, "stop", "stop", /*allow_single_string=*/true);

  if (auto n = f::opt_int(b, "n", "n"); n && *n != 1)
    throw invalid_request("'n' must be 1: this server returns one choice per request, got " + std::to_string(*n), "n");

  g.stream = f::opt_bool(b, "stream", "stream").value_or(false);
  if (const json* so = f::opt_object(b, "stream_options", "stream_options"))
    include_usage = f::opt_bool(*so, "include_usage", "stream_options.include_usage").value_or(false);
}

// A message's content: a string, null, or an array of content parts (text only).
std::string parse_content(const json& msg, const std::string& path, bool assistant) {
  const json* c = f::get(msg, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) f::throw_type(path, "a string, an array of content parts or null", *c);
  std::string out;
  for (size_t i = 0; i < c->size(); ++i) {
    const json& part = (*c)[i];
    std::string ppath = f::index_path(path, i);
    if (!part.is_object()) f::throw_type(ppath, "an object", part);
    std::string type = f::req_string(part, "type", ppath + ".type");
    if (type == "text") {
      out += f::req_string(part, "text", ppath + ".text");
    } else if (type == "refusal" && assistant) {
      out += f::req_string(part, "refusal", ppath + ".refusal");
    } else if (type == "image_url" || type == "image" || type == "input_image") {
      throw invalid_request("This model does not support images ('" + ppath + ".type' is '" + type +
                                "'); send text content only",
                            ppath + ".type");
    } else if (type == "input_audio" || type == "audio") {
      throw invalid_request("This model does not support audio ('" + ppath + ".type' is '" + type + "')",
                            ppath + ".type");
    } else if (type == "file") {
      throw invalid_request("File inputs are not supported ('" + ppath + ".type' is 'file')", ppath + ".type");
    } else {
      throw invalid_request("Unsupported content part type '" + type + "' at '" + ppath +
                                ".type' (expected 'text')",
                            ppath + ".type");
    }
  }
  return out;
}

engine::ToolCall parse_assistant_tool_call(const json& tc, const std::string& path) {
  if (!tc.is_object()) f::throw_type(path, "an object", tc);
  engine::ToolCall call;
  call.id = f::opt_string(tc, "id", path + ".id").value_or("");
  if (auto type = f::opt_string(tc, "type", path + ".type"); type && *type != "function")
    throw invalid_request("'" + path + ".type' must be 'function', got '" + *type + "'", path + ".type");
  const json* fn = f::opt_object(tc, "function", path + ".function");
  if (!fn) f::throw_missing(path + ".function");
  call.name = f::req_string(*fn, "name", path + ".function.name");
  const json* args = f::get(*fn, "arguments");
  if (!args)
    call.arguments_json = "{}";
  else if (args->is_string())
    call.arguments_json = args->get<std::string>().empty() ? "{}" : args->get<std::string>();
  else if (args->is_object())
    call.arguments_json = dump_json(*args);  // lenient: some clients send the object itself
  else
    f::throw_type(path + ".function.arguments", "a string", *args);
  return call;
}

std::vector<engine::Message> parse_chat_messages(const json& b) {
  const json* msgs = f::opt_array(b, "messages", "messages");
  if (!msgs) f::throw_missing("messages");
  if (msgs->empty()) throw invalid_request("'messages' must be a non-empty array", "messages");
  std::vector<engine::Message> out;
  out.reserve(msgs->size());
  std::unordered_map<std::string, std::string> call_names;  // tool_call_id -> function name
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    std::string path = f::index_path("messages", i);
    if (!m.is_object()) f::throw_type(path, "an object", m);
    std::string role = f::req_string(m, "role", path + ".role");
    engine::Message msg;
    if (role == "system" || role == "developer") {
      msg.role = "system";
      msg.content = parse_content(m, path + ".content", false);
    } else if (role == "user") {
      msg.role = "user";
      msg.content = parse_content(m, path + ".content", false);
    } else if (role == "assistant") {
      msg.role = "assistant";
      msg.content = parse_content(m, path + ".content", true);
      if (auto r = f::opt_string(m, "reasoning_content", path + ".reasoning_content"))
        msg.reasoning = *r;
      else if (auto r2 = f::opt_string(m, "reasoning", path + ".reasoning"))
        msg.reasoning = *r2;
      if (const json* tcs = f::opt_array(m, "tool_calls", path + ".tool_calls")) {
        for (size_t k = 0; k < tcs->size(); ++k) {
          msg.tool_calls.push_back(parse_assistant_tool_call((*tcs)[k], f::index_path(path + ".tool_calls", k)));
          const auto& c = msg.tool_calls.back();
          if (!c.id.empty()) call_names[c.id] = c.name;
        }
      }
    } else if (role == "tool" || role == "function") {
      msg.role = "tool";
      msg.content = parse_content(m, path + ".content", false);
      if (role == "tool") {
        msg.tool_call_id = f::req_string(m, "tool_call_id", path + ".tool_call_id");
        if (auto it = call_names.find(msg.tool_call_id); it != call_names.end()) msg.name = it->second;
      }
      if (auto n = f::opt_string(m, "name", path + ".name")) msg.name = *n;
    } else {
      throw invalid_request("Invalid role '" + role + "' at '" + path +
                                ".role' (expected system, developer, user, assistant or tool)",
                            path + ".role");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<engine::ToolSpec> parse_tools(const json& b) {
  std::vector<engine::ToolSpec> out;
  const json* tools = f::opt_array(b, "tools", "tools");
  if (!tools) return out;
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    std::string path = f::index_path("tools", i);
    if (!t.is_object()) f::throw_type(path, "an object", t);
    std::string type = f::opt_string(t, "type", path + ".type").value_or("function");
    if (type != "function")
      throw invalid_request("Unsupported tool type '" + type + "' at '" + path + ".type' (only 'function' tools)",
                            path + ".type");
    const json* fn = f::opt_object(t, "function", path + ".function");
    if (!fn) f::throw_missing(path + ".function");
    engine::ToolSpec spec;
    spec.name = f::req_string(*fn, "name", path + ".function.name");
    if (spec.name.empty()) throw invalid_request("'" + path + ".function.name' must not be empty", path + ".function.name");
    spec.description = f::opt_string(*fn, "description", path + ".function.description").value_or("");
    if (const json* params = f::opt_object(*fn, "parameters", path + ".function.parameters"))
      spec.parameters_json = dump_json(*params);
    else
      spec.parameters_json = R"({"type":"object","properties":{}})";
    out.push_back(std::move(spec));
  }
  return out;
}

std::string parse_tool_choice(const json& b, const std::vector<engine::ToolSpec>& tools) {
  const json* tc = f::get(b, "tool_choice");
  if (!tc) return "auto";
  std::string choice;
  if (tc->is_string()) {
    choice = tc->get<std::string>();
    if (choice != "auto" && choice != "none" && choice != "required")
      throw invalid_request("'tool_choice' must be 'auto', 'none', 'required' or a function object, got '" + choice + "'",
                            "tool_choice");
  } else if (tc->is_object()) {
    std::string type = f::req_string(*tc, "type", "tool_choice.type");
    if (type != "function")
      throw invalid_request("'tool_choice.type' must be 'function', got '" + type + "'", "tool_choice.type");
    const json* fn = f::opt_object(*tc, "function", "tool_choice.function");
    if (!fn) f::throw_missing("tool_choice.function");
    choice = f::req_string(*fn, "name", "tool_choice.function.name");
    bool found = false;
    for (const auto& t : tools) found = found || t.name == choice;
    if (!found)
      throw invalid_request("'tool_choice' names function '" + choice + "', which is not in 'tools'",
                            "tool_choice.function.name");
  } else {
    f::throw_type("tool_choice", "a string or an object", *tc);
  }
  if (choice == "required" && tools.empty())
    throw invalid_request("'tool_choice' is 'required' but no 'tools' were given", "tool_choice");
  return choice;
}

void parse_response_format(const json& b, OpenAiChatRequest& r) {
  const json* rf = f::opt_object(b, "response_format", "response_format");
  if (!rf) return;
  std::string type = f::req_string(*rf, "type", "response_format.type");
  if (type == "text") return;
  if (type != "json_object" && type != "json_schema")
    throw invalid_request("'response_format.type' must be 'text', 'json_object' or 'json_schema', got '" + type + "'",
                          "response_format.type");
  r.response_format = type;
  r.gen.json_mode = true;
  if (type == "json_schema") {
    const json* js = f::opt_object(*rf, "json_schema", "response_format.json_schema");
    if (!js) f::throw_missing("response_format.json_schema");
    if (const json* schema = f::opt_object(*js, "schema", "response_format.json_schema.schema"))
      r.json_schema = dump_json(*schema);
  }
}

void parse_logprobs(const json& b, engine::GenerationRequest& g, bool completions) {
  const json* lp = f::get(b, "logprobs");
  if (lp && completions && lp->is_number()) {
    // Legacy completions: logprobs is the number of alternatives (0-5 in OpenAI; up to 20 here).
    auto n = f::opt_int(b, "logprobs", "logprobs", 0, 20);
    g.logprobs = true;
    g.sampling.top_logprobs = static_cast<int>(*n);
  } else if (lp) {
    if (!lp->is_boolean()) f::throw_type("logprobs", completions ? "an integer or a boolean" : "a boolean", *lp);
    g.logprobs = lp->get<bool>();
  }
  if (auto top = f::opt_int(b, "top_logprobs", "top_logprobs", 0, 20)) {
    if (*top > 0 && !g.logprobs)
      throw invalid_request("'top_logprobs' requires 'logprobs' to be true", "top_logprobs");
    g.sampling.top_logprobs = static_cast<int>(*top);
  }
}

}  // namespace

OpenAiChatRequest parse_openai_chat(const std::string& body, const engine::SamplingParams& defaults) {
  json b = f::parse_body_object(body);
  OpenAiChatRequest r;
  parse_common(b, r.gen, r.include_usage, defaults);
  parse_logprobs(b, r.gen, /*completions=*/false);
  r.gen.messages = parse_chat_messages(b);
  r.gen.tools = parse_tools(b);
  r.gen.tool_choice = parse_tool_choice(b, r.gen.tools);
  r.parallel_tool_calls = f::opt_bool(b, "parallel_tool_calls", "parallel_tool_calls").value_or(true);
  parse_response_format(b, r);
  if (const json* kw = f::opt_object(b, "chat_template_kwargs", "chat_template_kwargs"))
    r.gen.template_args_json = dump_json(*kw);
  return r;
}

OpenAiCompletionRequest parse_openai_completion(const std::string& body, const engine::SamplingParams& defaults) {
  json b = f::parse_body_object(body);
  OpenAiCompletionRequest r;
  parse_common(b, r.gen, r.include_usage, defaults);
  parse_logprobs(b, r.gen, /*completions=*/true);
  if (f::opt_bool(b, "echo", "echo").value_or(false))
    throw invalid_request("'echo' is not supported by this server", "echo");
  if (auto bo = f::opt_int(b, "best_of", "best_of"); bo && *bo != 1)
    throw invalid_request("'best_of' must be 1: this server returns one choice per request", "best_of");

  const json* p = f::get(b, "prompt");
  if (!p) f::throw_missing("prompt");
  auto take_tokens = [&](const json& arr, const std::string& path) {
    for (size_t i = 0; i < arr.size(); ++i) {
      const json& t = arr[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
        f::throw_type(f::index_path(path, i), "a token id (a non-negative integer)", t);
      r.gen.prompt_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
  };
  if (p->is_string()) {
    r.gen.prompt_text = p->get<std::string>();
  } else if (p->is_array()) {
    if (p->empty()) throw invalid_request("'prompt' must not be empty", "prompt");
    const json& first = (*p)[0];
    if (first.is_number()) {
      take_tokens(*p, "prompt");
    } else if (first.is_string() || first.is_array()) {
      if (p->size() > 1)
        throw invalid_request("'prompt' holds " + std::to_string(p->size()) +
                                  " prompts; this server takes one prompt per request",
                              "prompt");
      if (first.is_string()) {
        r.gen.prompt_text = first.get<std::string>();
      } else {
        if (first.empty()) throw invalid_request("'prompt[0]' must not be empty", "prompt");
        take_tokens(first, "prompt[0]");
      }
    } else {
      f::throw_type("prompt[0]", "a string, a token id or an array of token ids", first);
    }
  } else {
    f::throw_type("prompt", "a string or an array of token ids", *p);
  }
  return r;
}

OpenAiEncodeOptions encode_options(const OpenAiChatRequest& req, TokenTextFn token_text) {
  return OpenAiEncodeOptions{req.gen.logprobs, req.include_usage, std::move(token_text)};
}
OpenAiEncodeOptions encode_options(const OpenAiCompletionRequest& req, TokenTextFn token_text) {
  return OpenAiEncodeOptions{req.gen.logprobs, req.include_usage, std::move(token_text)};
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------
namespace {

std::string token_str(const TokenTextFn& fn, int32_t id) { return fn ? fn(id) : std::string(); }

// Chat: [{token, logprob, bytes, top_logprobs:[{token, logprob, bytes}]}]
void append_chat_logprobs(ordered_json& content, const std::vector<engine::SampledToken>& toks,
                          const TokenTextFn& fn) {
  for (const auto& t : toks) {
    std::string text = token_str(fn, t.id);
    ordered_json e;
    e["token"] = text;
    e["logprob"] = clean_logprob(t.logprob);
    e["bytes"] = byte_list(text);
    ordered_json top = ordered_json::array();
    for (const auto& [id, lp] : t.top) {
      std::string tt = token_str(fn, id);
      ordered_json a;
      a["token"] = tt;
      a["logprob"] = clean_logprob(lp);
      a["bytes"] = byte_list(tt);
      top.push_back(std::move(a));
    }
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
}

// Legacy completions: {tokens, token_logprobs, top_logprobs, text_offset}.
struct LegacyLogprobs {
  ordered_json tokens = ordered_json::array(), token_logprobs = ordered_json::array(),
               top_logprobs = ordered_json::array(), text_offset = ordered_json::array();
  bool any_top = false;
  void add(const std::vector<engine::SampledToken>& toks, const TokenTextFn& fn, size_t& offset) {
    for (const auto& t : toks) {
      std::string text = token_str(fn, t.id);
      tokens.push_back(text);
      token_logprobs.push_back(clean_logprob(t.logprob));
      ordered_json top = ordered_json::object();
      for (const auto& [id, lp] : t.top) top[token_str(fn, id)] = clean_logprob(lp);
      any_top = any_top || !t.top.empty();
      top_logprobs.push_back(std::move(top));
      text_offset.push_back(offset);
      offset += text.size();
    }
  }
  ordered_json to_json() const {
    ordered_json j;
    j["tokens"] = tokens;
    j["token_logprobs"] = token_logprobs;
    j["top_logprobs"] = any_top ? top_logprobs : ordered_json(nullptr);
    j["text_offset"] = text_offset;
    return j;
  }
};

ordered_json usage_json(const GenerationEvent* done) {
  int p = done ? done->prompt_tokens : 0, c = done ? done->completion_tokens : 0;
  ordered_json u;
  u["prompt_tokens"] = p;
  u["completion_tokens"] = c;
  u["total_tokens"] = p + c;
  u["prompt_tokens_details"] = {{"cached_tokens", done ? done->cached_tokens : 0}};
  return u;
}

ordered_json envelope(const ResponseMeta& meta, const char* object) {
  ordered_json j;
  j["id"] = meta.id;
  j["object"] = object;
  j["created"] = meta.created;
  j["model"] = meta.model;
  return j;
}

struct CallAcc {
  std::string id, name, args;
};

}  // namespace

std::string openai_finish_reason(const GenerationEvent& done, bool saw_tool_call) {
  const std::string& r = done.finish_reason;
  if (r == "length") return "length";
  if (r == "tool_calls" || saw_tool_call) return "tool_calls";
  return "stop";
}

std::string openai_chat_response(const ResponseMeta& meta, const std::vector<GenerationEvent>& events,
                                 const OpenAiEncodeOptions& opts) {
  const GenerationEvent* done = find_done(events);
  std::string text, reasoning;
  std::map<int, CallAcc> calls;
  ordered_json lp_content = ordered_json::array();
  for (const auto& ev : events) {
    if (opts.logprobs && !ev.tokens.empty()) append_chat_logprobs(lp_content, ev.tokens, opts.token_text);
    switch (ev.kind) {
      case Kind::Text: text += ev.text; break;
      case Kind::Reasoning: reasoning += ev.text; break;
      case Kind::ToolCallStart: {
        auto& c = calls[ev.tool_index];
        c.id = ev.tool_id.empty() ? random_id("call_") : ev.tool_id;
        c.name = ev.tool_name;
        break;
      }
      case Kind::ToolCallArgs: calls[ev.tool_index].args += ev.text; break;
      default: break;
    }
  }
  ordered_json msg;
  msg["role"] = "assistant";
  msg["content"] = !text.empty() ? ordered_json(text) : calls.empty() ? ordered_json("") : ordered_json(nullptr);
  msg["refusal"] = nullptr;
  if (!reasoning.empty()) {
    msg["reasoning_content"] = reasoning;
    msg["reasoning"] = reasoning;
  }
  if (!calls.empty()) {
    ordered_json arr = ordered_json::array();
    for (auto& [idx, c] : calls) {
      ordered_json tc;
      tc["id"] = c.id.empty() ? random_id("call_") : c.id;
      tc["type"] = "function";
      tc["function"] = {{"name", c.name}, {"arguments", c.args.empty() ? std::string("{}") : c.args}};
      arr.push_back(std::move(tc));
    }
    msg["tool_calls"] = std::move(arr);
  }
  ordered_json choice;
  choice["index"] = 0;
  choice["message"] = std::move(msg);
  choice["logprobs"] = opts.logprobs ? ordered_json{{"content", std::move(lp_content)}} : ordered_json(nullptr);
  choice["finish_reason"] = done ? openai_finish_reason(*done, !calls.empty()) : std::string("stop");
  ordered_json j = envelope(meta, "chat.completion");
  j["choices"] = ordered_json::array({std::move(choice)});
  j["usage"] = usage_json(done);
  return dump_json(j);
}

std::string openai_completion_response(const ResponseMeta& meta, const std::vector<GenerationEvent>& events,
                                       const OpenAiEncodeOptions& opts) {
  const GenerationEvent* done = find_done(events);
  std::string text;
  LegacyLogprobs lp;
  size_t offset = 0;
  for (const auto& ev : events) {
    if (ev.kind != Kind::Text && ev.kind != Kind::Reasoning) continue;
    text += ev.text;
    if (opts.logprobs) lp.add(ev.tokens, opts.token_text, offset);
  }
  ordered_json choice;
  choice["text"] = text;
  choice["index"] = 0;
  choice["logprobs"] = opts.logprobs ? lp.to_json() : ordered_json(nullptr);
  choice["finish_reason"] = done && done->finish_reason == "length" ? "length" : "stop";
  ordered_json j = envelope(meta, "text_completion");
  j["choices"] = ordered_json::array({std::move(choice)});
  j["usage"] = usage_json(done);
  return dump_json(j);
}

// ---- chat stream ----

OpenAiChatStream::OpenAiChatStream(ResponseMeta meta, OpenAiEncodeOptions opts)
    : meta_(std::move(meta)), opts_(std::move(opts)) {}

std::string OpenAiChatStream::chunk(const ordered_json& delta, const ordered_json& logprobs,
                                    const char* finish_reason) const {
  ordered_json choice;
  choice["index"] = 0;
  choice["delta"] = delta;
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_reason ? ordered_json(finish_reason) : ordered_json(nullptr);
  ordered_json j = envelope(meta_, "chat.completion.chunk");
  j["choices"] = ordered_json::array({std::move(choice)});
  if (opts_.include_usage) j["usage"] = nullptr;
  return sse_data(dump_json(j));
}

std::string OpenAiChatStream::begin() {
  if (started_ || finished_) return {};
  started_ = true;
  return chunk(ordered_json{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr);
}

std::string OpenAiChatStream::on_event(const GenerationEvent& ev) {
  if (finished_) return {};
  if (ev.kind == Kind::Progress)  // the role chunk goes out before a long prefill
    return begin() + ": keepalive " + std::to_string(ev.prompt_tokens) + "/" + std::to_string(ev.prompt_total) + "\n\n";
  if (ev.kind == Kind::Error) {
    finished_ = true;
    return openai_error_frame(api_error_from_status(ev.http_status ? ev.http_status : 500, ev.error));
  }
  std::string out = begin();
  ordered_json lp = nullptr;
  if (opts_.logprobs && !ev.tokens.empty()) {
    ordered_json content = ordered_json::array();
    append_chat_logprobs(content, ev.tokens, opts_.token_text);
    lp = ordered_json{{"content", std::move(content)}};
  }
  switch (ev.kind) {
    case Kind::Text:
      if (!ev.text.empty() || !lp.is_null()) out += chunk(ordered_json{{"content", ev.text}}, lp, nullptr);
      break;
    case Kind::Reasoning:
      if (!ev.text.empty() || !lp.is_null())
        out += chunk(ordered_json{{"reasoning_content", ev.text}, {"reasoning", ev.text}}, lp, nullptr);
      break;
    case Kind::ToolCallStart: {
      saw_tool_call_ = true;
      ordered_json tc;
      tc["index"] = ev.tool_index;
      tc["id"] = ev.tool_id.empty() ? random_id("call_") : ev.tool_id;
      tc["type"] = "function";
      tc["function"] = {{"name", ev.tool_name}, {"arguments", ""}};
      out += chunk(ordered_json{{"tool_calls", ordered_json::array({std::move(tc)})}}, lp, nullptr);
      break;
    }
    case Kind::ToolCallArgs: {
      if (ev.text.empty()) break;
      ordered_json tc;
      tc["index"] = ev.tool_index;
      tc["function"] = {{"arguments", ev.text}};
      out += chunk(ordered_json{{"tool_calls", ordered_json::array({std::move(tc)})}}, lp, nullptr);
      break;
    }
    case Kind::Done: {
      finished_ = true;
      std::string reason = openai_finish_reason(ev, saw_tool_call_);
      out += chunk(ordered_json::object(), lp, reason.c_str());
      if (opts_.include_usage) {
        ordered_json j = envelope(meta_, "chat.completion.chunk");
        j["choices"] = ordered_json::array();
        j["usage"] = usage_json(&ev);
        out += sse_data(dump_json(j));
      }
      out += "data: [DONE]\n\n";
      break;
    }
    default: break;
  }
  return out;
}

// ---- completions stream ----

OpenAiCompletionStream::OpenAiCompletionStream(ResponseMeta meta, OpenAiEncodeOptions opts)
    : meta_(std::move(meta)), opts_(std::move(opts)) {}

std::string OpenAiCompletionStream::chunk(const std::string& text, const ordered_json& logprobs,
                                          const char* finish_reason) const {
  ordered_json choice;
  choice["text"] = text;
  choice["index"] = 0;
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_reason ? ordered_json(finish_reason) : ordered_json(nullptr);
  ordered_json j = envelope(meta_, "text_completion");
  j["choices"] = ordered_json::array({std::move(choice)});
  if (opts_.include_usage) j["usage"] = nullptr;
  return sse_data(dump_json(j));
}

std::string OpenAiCompletionStream::on_event(const GenerationEvent& ev) {
  if (finished_) return {};
  switch (ev.kind) {
    case Kind::Progress:
      return ": keepalive " + std::to_string(ev.prompt_tokens) + "/" + std::to_string(ev.prompt_total) + "\n\n";
    case Kind::Error:
      finished_ = true;
      return openai_error_frame(api_error_from_status(ev.http_status ? ev.http_status : 500, ev.error));
    case Kind::Text:
    case Kind::Reasoning: {
      if (ev.text.empty() && ev.tokens.empty()) return {};
      ordered_json lp = nullptr;
      if (opts_.logprobs) {
        LegacyLogprobs l;
        l.add(ev.tokens, opts_.token_text, text_offset_);
        lp = l.to_json();
      }
      return chunk(ev.text, lp, nullptr);
    }
    case Kind::Done: {
      finished_ = true;
      std::string out = chunk("", nullptr, ev.finish_reason == "length" ? "length" : "stop");
      if (opts_.include_usage) {
        ordered_json j = envelope(meta_, "text_completion");
        j["choices"] = ordered_json::array();
        j["usage"] = usage_json(&ev);
        out += sse_data(dump_json(j));
      }
      return out + "data: [DONE]\n\n";
    }
    default: return {};
  }
}

}  // namespace optiq::server
