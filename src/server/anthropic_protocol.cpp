#include "server/anthropic_protocol.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>

namespace optiq::server {

using engine::GenerationEvent;
using json = nlohmann::ordered_json;
using nlohmann::ordered_json;
using Kind = engine::GenerationEvent::Kind;
namespace f = fields;

namespace {

engine::Message make_message(std::string role, std::string content = {}) {
  engine::Message m;
  m.role = std::move(role);
  m.content = std::move(content);
  return m;
}

// Text blocks of one message / system prompt / tool result are joined with a newline.
constexpr const char* kBlockJoin = "\n";

void append_text(std::string& out, const std::string& text, bool& first) {
  if (!first) out += kBlockJoin;
  out += text;
  first = false;
}

[[noreturn]] void throw_unsupported_block(const std::string& type, const std::string& path) {
  if (type == "image")
    throw invalid_request("This model does not support images ('" + path + ".type' is 'image'); send text only",
                          path + ".type");
  if (type == "document")
    throw invalid_request("Document blocks are not supported ('" + path + ".type' is 'document'); send text only",
                          path + ".type");
  throw invalid_request("Unsupported content block type '" + type + "' at '" + path + ".type'", path + ".type");
}

// System prompt / role:system content: a string or text blocks. With drop_billing, a leading block that
// starts with Claude Code's billing header is left out.
std::string parse_system_content(const json& v, const std::string& path, bool drop_billing) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) f::throw_type(path, "a string or an array of text blocks", v);
  std::string out;
  bool first = true;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& blk = v[i];
    std::string bpath = f::index_path(path, i);
    if (!blk.is_object()) f::throw_type(bpath, "an object", blk);
    std::string type = f::req_string(blk, "type", bpath + ".type");
    if (type != "text") throw_unsupported_block(type, bpath);
    std::string text = f::req_string(blk, "text", bpath + ".text");
    if (drop_billing && i == 0 && text.rfind(kBillingHeaderPrefix, 0) == 0) continue;
    append_text(out, text, first);
  }
  return out;
}

// tool_result.content: a string, or blocks of text / tool_reference.
std::string parse_tool_result_content(const json& blk, const std::string& path, std::set<std::string>& loaded) {
  const json* c = f::get(blk, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) f::throw_type(path, "a string or an array of content blocks", *c);
  std::string out;
  bool first = true;
  for (size_t i = 0; i < c->size(); ++i) {
    const json& b = (*c)[i];
    std::string bpath = f::index_path(path, i);
    if (!b.is_object()) f::throw_type(bpath, "an object", b);
    std::string type = f::req_string(b, "type", bpath + ".type");
    if (type == "text") {
      append_text(out, f::req_string(b, "text", bpath + ".text"), first);
    } else if (type == "tool_reference") {
      std::string name = f::req_string(b, "tool_name", bpath + ".tool_name");
      loaded.insert(name);
      append_text(out, "Loaded tool: " + name, first);
    } else {
      throw_unsupported_block(type, bpath);
    }
  }
  return out;
}

struct MessagesParse {
  std::vector<engine::Message> messages;
  size_t cache_messages = 0;  // messages up to the last cache_control breakpoint
  std::set<std::string> loaded_tools;  // named by tool_reference blocks
};

bool has_cache_control(const json& v) {
  if (v.is_object()) {
    if (v.contains("cache_control") && !v["cache_control"].is_null()) return true;
    if (const json* c = f::get(v, "content"); c && c->is_array())
      for (const json& blk : *c)
        if (blk.is_object() && blk.contains("cache_control") && !blk["cache_control"].is_null()) return true;
    return false;
  }
  if (v.is_array())
    for (const json& blk : v)
      if (blk.is_object() && blk.contains("cache_control") && !blk["cache_control"].is_null()) return true;
  return false;
}

MessagesParse parse_messages(const json& b) {
  const json* msgs = f::opt_array(b, "messages", "messages");
  if (!msgs) f::throw_missing("messages");
  if (msgs->empty()) throw invalid_request("'messages' must be a non-empty array", "messages");
  MessagesParse out;
  std::unordered_map<std::string, std::string> call_names;  // tool_use id -> tool name
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    std::string path = f::index_path("messages", i);
    if (!m.is_object()) f::throw_type(path, "an object", m);
    std::string role = f::req_string(m, "role", path + ".role");
    std::string cpath = path + ".content";
    const json* c = f::get(m, "content");
    if (!c) f::throw_missing(cpath);
    if (!c->is_string() && !c->is_array()) f::throw_type(cpath, "a string or an array of content blocks", *c);
    // A cache_control breakpoint in this message: the prefix through it is what the client wants cached.
    struct MarkBreakpoint {
      MessagesParse& out;
      bool hit;
      ~MarkBreakpoint() {
        if (hit) out.cache_messages = out.messages.size();
      }
    } mark{out, has_cache_control(m)};

    if (role == "system") {
      out.messages.push_back(make_message("system", parse_system_content(*c, cpath, false)));
      continue;
    }
    if (role != "user" && role != "assistant")
      throw invalid_request("Invalid role '" + role + "' at '" + path + ".role' (expected user, assistant or system)",
                            path + ".role");
    if (c->is_string()) {
      out.messages.push_back(make_message(role, c->get<std::string>()));
      continue;
    }

    engine::Message cur = make_message(role);
    bool first_text = true, have_cur = false;
    auto flush_user = [&] {
      if (have_cur) out.messages.push_back(std::move(cur));
      cur = make_message(role);
      first_text = true;
      have_cur = false;
    };
    for (size_t k = 0; k < c->size(); ++k) {
      const json& blk = (*c)[k];
      std::string bpath = f::index_path(cpath, k);
      if (!blk.is_object()) f::throw_type(bpath, "an object", blk);
      std::string type = f::req_string(blk, "type", bpath + ".type");
      if (type == "text") {
        append_text(cur.content, f::req_string(blk, "text", bpath + ".text"), first_text);
        have_cur = true;
      } else if (role == "user" && type == "tool_result") {
        flush_user();
        engine::Message tool = make_message("tool");
        tool.tool_call_id = f::req_string(blk, "tool_use_id", bpath + ".tool_use_id");
        if (auto it = call_names.find(tool.tool_call_id); it != call_names.end()) tool.name = it->second;
        tool.content = parse_tool_result_content(blk, bpath + ".content", out.loaded_tools);
        tool.is_error = f::opt_bool(blk, "is_error", bpath + ".is_error").value_or(false);
        out.messages.push_back(std::move(tool));
      } else if (role == "assistant" && type == "tool_use") {
        engine::ToolCall call;
        call.id = f::req_string(blk, "id", bpath + ".id");
        call.name = f::req_string(blk, "name", bpath + ".name");
        const json* input = f::opt_object(blk, "input", bpath + ".input");
        call.arguments_json = input ? dump_json(*input) : "{}";
        call_names[call.id] = call.name;
        cur.tool_calls.push_back(std::move(call));
        have_cur = true;
      } else if (role == "assistant" && type == "thinking") {
        std::string t = f::opt_string(blk, "thinking", bpath + ".thinking").value_or("");
        if (!cur.reasoning.empty() && !t.empty()) cur.reasoning += kBlockJoin;
        cur.reasoning += t;
        have_cur = true;
      } else if (role == "assistant" && type == "redacted_thinking") {
        have_cur = true;  // opaque to us: dropped
      } else {
        throw_unsupported_block(type, bpath);
      }
    }
    // A user turn made only of tool results adds no user message; an empty block list is an empty turn.
    if (have_cur || c->empty()) out.messages.push_back(std::move(cur));
  }
  return out;
}

void parse_tools(const json& b, AnthropicRequest& r, const std::set<std::string>& loaded) {
  const json* tools = f::opt_array(b, "tools", "tools");
  if (!tools) return;
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    std::string path = f::index_path("tools", i);
    if (!t.is_object()) f::throw_type(path, "an object", t);
    auto type = f::opt_string(t, "type", path + ".type");
    const json* schema = f::opt_object(t, "input_schema", path + ".input_schema");
    if (!schema) {
      if (type && *type != "custom") {  // web_search_20250305, bash_20250124, ...: hosted by Anthropic
        ++r.skipped_server_tools;
        continue;
      }
      f::throw_missing(path + ".input_schema");
    }
    engine::ToolSpec spec;
    spec.name = f::req_string(t, "name", path + ".name");
    if (spec.name.empty()) throw invalid_request("'" + path + ".name' must not be empty", path + ".name");
    spec.description = f::opt_string(t, "description", path + ".description").value_or("");
    spec.parameters_json = dump_json(*schema);
    bool deferred = f::opt_bool(t, "defer_loading", path + ".defer_loading").value_or(false);
    if (deferred && !loaded.count(spec.name))
      r.deferred_tools.push_back(std::move(spec));
    else
      r.gen.tools.push_back(std::move(spec));
  }
}

bool has_tool(const AnthropicRequest& r, const std::string& name) {
  for (const auto& t : r.gen.tools)
    if (t.name == name) return true;
  for (const auto& t : r.deferred_tools)
    if (t.name == name) return true;
  return false;
}

void parse_tool_choice(const json& b, AnthropicRequest& r) {
  const json* tc = f::opt_object(b, "tool_choice", "tool_choice");
  if (!tc) return;
  std::string type = f::req_string(*tc, "type", "tool_choice.type");
  if (type == "auto") {
    r.gen.tool_choice = "auto";
  } else if (type == "any") {
    r.gen.tool_choice = "required";
  } else if (type == "none") {
    r.gen.tool_choice = "none";
  } else if (type == "tool") {
    r.gen.tool_choice = f::req_string(*tc, "name", "tool_choice.name");
    if (!has_tool(r, r.gen.tool_choice))
      throw invalid_request("'tool_choice.name' names tool '" + r.gen.tool_choice + "', which is not in 'tools'",
                            "tool_choice.name");
  } else {
    throw invalid_request("'tool_choice.type' must be 'auto', 'any', 'tool' or 'none', got '" + type + "'",
                          "tool_choice.type");
  }
  if ((type == "any" || type == "tool") && r.gen.tools.empty() && r.deferred_tools.empty())
    throw invalid_request("'tool_choice' requires 'tools'", "tool_choice");
  if (auto d = f::opt_bool(*tc, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use"))
    r.parallel_tool_calls = !*d;
}

void parse_thinking(const json& b, AnthropicRequest& r) {
  json args = json::object();
  if (const json* kw = f::opt_object(b, "chat_template_kwargs", "chat_template_kwargs")) args = *kw;  // extension
  if (const json* th = f::opt_object(b, "thinking", "thinking")) {
    r.thinking = f::req_string(*th, "type", "thinking.type");
    if (r.thinking != "enabled" && r.thinking != "disabled" && r.thinking != "adaptive")
      throw invalid_request("'thinking.type' must be 'enabled', 'disabled' or 'adaptive', got '" + r.thinking + "'",
                            "thinking.type");
    if (auto bt = f::opt_int(*th, "budget_tokens", "thinking.budget_tokens", 1, INT32_MAX))
      r.thinking_budget = static_cast<int>(*bt);
    if (r.thinking != "adaptive" && !args.contains("enable_thinking"))
      args["enable_thinking"] = r.thinking == "enabled";
  }
  if (!args.empty()) r.gen.template_args_json = dump_json(args);
}

AnthropicRequest parse_request(const std::string& body, bool count_tokens, const engine::SamplingParams& defaults) {
  json b = f::parse_body_object(body);
  AnthropicRequest r;
  r.gen.sampling = defaults;
  r.gen.model = f::req_string(b, "model", "model");
  r.gen.adapters = f::opt_string(b, "adapters", "adapters");
  if (!r.gen.adapters) r.gen.adapters = f::opt_string(b, "adapter", "adapter");
  if (!count_tokens) {
    auto mt = f::opt_int(b, "max_tokens", "max_tokens", 1, INT32_MAX);
    if (!mt) f::throw_missing("max_tokens");
    r.gen.max_tokens = static_cast<int>(*mt);
  }

  MessagesParse mp = parse_messages(b);
  if (const json* sys = f::get(b, "system")) {
    std::string s = parse_system_content(*sys, "system", /*drop_billing=*/true);
    if (!s.empty()) {
      r.gen.messages.push_back(make_message("system", std::move(s)));
      if (has_cache_control(*sys)) r.gen.cache_messages = 1;
    }
  }
  if (mp.cache_messages > 0) r.gen.cache_messages = mp.cache_messages + r.gen.messages.size();
  // Top-level cache_control (automatic caching): the whole conversation.
  if (b.contains("cache_control") && !b["cache_control"].is_null()) r.gen.cache_messages = mp.messages.size() + r.gen.messages.size();
  for (auto& m : mp.messages) r.gen.messages.push_back(std::move(m));

  parse_tools(b, r, mp.loaded_tools);
  parse_tool_choice(b, r);
  parse_thinking(b, r);

  auto& s = r.gen.sampling;
  if (auto v = f::opt_number(b, "temperature", "temperature", 0.0, 1.0)) s.temperature = static_cast<float>(*v);
  if (auto v = f::opt_number(b, "top_p", "top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*v);
  if (auto v = f::opt_int(b, "top_k", "top_k", 0, INT32_MAX)) s.top_k = static_cast<int>(*v);
  r.gen.stop = f::opt_string_list(b, "stop_sequences", "stop_sequences", /*allow_single_string=*/false);
  if (!count_tokens) r.gen.stream = f::opt_bool(b, "stream", "stream").value_or(false);
  // metadata, context_management, output_config, service_tier, container, mcp_servers, cache_control:
  // accepted and ignored.
  return r;
}

}  // namespace

AnthropicRequest parse_anthropic_messages(const std::string& body, const engine::SamplingParams& defaults) {
  return parse_request(body, false, defaults);
}
AnthropicRequest parse_anthropic_count_tokens(const std::string& body, const engine::SamplingParams& defaults) {
  return parse_request(body, true, defaults);
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

std::string anthropic_stop_reason(const GenerationEvent& done, bool saw_tool_use) {
  if (done.finish_reason == "length") return "max_tokens";
  if (done.finish_reason == "tool_calls" || saw_tool_use) return "tool_use";
  if (done.stop_sequence && !done.stop_sequence->empty()) return "stop_sequence";
  return "end_turn";
}

std::string thinking_signature(const std::string& thinking) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char c : thinking) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "optiq-sig-%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {

// input_tokens counts what was neither read from the cache nor written to it for a cache_control
// breakpoint, as Anthropic's usage does.
ordered_json usage_json(int prompt_tokens, int output_tokens, int cached_tokens, int creation_tokens) {
  cached_tokens = std::clamp(cached_tokens, 0, prompt_tokens);
  creation_tokens = std::clamp(creation_tokens, 0, prompt_tokens - cached_tokens);
  ordered_json u;
  u["input_tokens"] = prompt_tokens - cached_tokens - creation_tokens;
  u["output_tokens"] = output_tokens;
  u["cache_creation_input_tokens"] = creation_tokens;
  u["cache_read_input_tokens"] = cached_tokens;
  return u;
}

ordered_json stop_sequence_json(const GenerationEvent* done, const std::string& stop_reason) {
  if (done && stop_reason == "stop_sequence") return *done->stop_sequence;
  return nullptr;
}

ordered_json tool_input(const std::string& args) {
  if (args.empty()) return ordered_json::object();
  ordered_json v = ordered_json::parse(args, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded() || !v.is_object()) return ordered_json::object();  // unusable arguments
  return v;
}

}  // namespace

std::string anthropic_message_response(const ResponseMeta& meta, const std::vector<GenerationEvent>& events) {
  const GenerationEvent* done = find_done(events);
  struct Block {
    std::string type, text, id, name;
  };
  std::vector<Block> blocks;
  std::map<int, size_t> tool_block;  // tool_index -> block
  for (const auto& ev : events) {
    switch (ev.kind) {
      case Kind::Text:
      case Kind::Reasoning: {
        if (ev.text.empty()) break;
        const char* type = ev.kind == Kind::Text ? "text" : "thinking";
        if (blocks.empty() || blocks.back().type != type) blocks.push_back(Block{type, {}, {}, {}});
        blocks.back().text += ev.text;
        break;
      }
      case Kind::ToolCallStart:
        tool_block[ev.tool_index] = blocks.size();
        blocks.push_back(Block{"tool_use", {}, ev.tool_id.empty() ? random_id("toolu_") : ev.tool_id, ev.tool_name});
        break;
      case Kind::ToolCallArgs:
        if (auto it = tool_block.find(ev.tool_index); it != tool_block.end()) blocks[it->second].text += ev.text;
        break;
      default: break;
    }
  }
  ordered_json content = ordered_json::array();
  for (const auto& b : blocks) {
    ordered_json j;
    j["type"] = b.type;
    if (b.type == "text") {
      j["text"] = b.text;
    } else if (b.type == "thinking") {
      j["thinking"] = b.text;
      j["signature"] = thinking_signature(b.text);
    } else {
      j["id"] = b.id;
      j["name"] = b.name;
      j["input"] = tool_input(b.text);
    }
    content.push_back(std::move(j));
  }
  if (content.empty()) content.push_back(ordered_json{{"type", "text"}, {"text", ""}});

  std::string stop_reason = done ? anthropic_stop_reason(*done, !tool_block.empty()) : "end_turn";
  ordered_json j;
  j["id"] = meta.id;
  j["type"] = "message";
  j["role"] = "assistant";
  j["model"] = meta.model;
  j["content"] = std::move(content);
  j["stop_reason"] = stop_reason;
  j["stop_sequence"] = stop_sequence_json(done, stop_reason);
  j["usage"] = usage_json(done ? done->prompt_tokens : 0, done ? done->completion_tokens : 0,
                          done ? done->cached_tokens : 0, done ? done->cache_creation_tokens : 0);
  return dump_json(j);
}

// ---- stream ----

AnthropicStream::AnthropicStream(ResponseMeta meta, int input_tokens)
    : meta_(std::move(meta)), input_tokens_(input_tokens) {}

std::string AnthropicStream::begin() {
  if (started_ || finished_) return {};
  started_ = true;
  ordered_json msg;
  msg["id"] = meta_.id;
  msg["type"] = "message";
  msg["role"] = "assistant";
  msg["model"] = meta_.model;
  msg["content"] = ordered_json::array();
  msg["stop_reason"] = nullptr;
  msg["stop_sequence"] = nullptr;
  msg["usage"] = usage_json(input_tokens_, 1, cached_, creation_);
  ordered_json start{{"type", "message_start"}, {"message", std::move(msg)}};
  return sse_event("message_start", dump_json(start)) + sse_event("ping", R"({"type":"ping"})");
}

std::string AnthropicStream::open_block(Block kind, const ordered_json& content_block) {
  std::string out = close_block();
  open_ = kind;
  ++index_;
  ordered_json j{{"type", "content_block_start"}, {"index", index_}, {"content_block", content_block}};
  return out + sse_event("content_block_start", dump_json(j));
}

std::string AnthropicStream::close_block() {
  if (open_ == Block::None) return {};
  std::string out;
  if (open_ == Block::Thinking) {
    out += delta(ordered_json{{"type", "signature_delta"}, {"signature", thinking_signature(thinking_)}});
    thinking_.clear();
  }
  open_ = Block::None;
  ordered_json j{{"type", "content_block_stop"}, {"index", index_}};
  return out + sse_event("content_block_stop", dump_json(j));
}

std::string AnthropicStream::delta(const ordered_json& d) const {
  ordered_json j{{"type", "content_block_delta"}, {"index", index_}, {"delta", d}};
  return sse_event("content_block_delta", dump_json(j));
}

std::string AnthropicStream::on_event(const GenerationEvent& ev) {
  if (finished_) return {};
  if (ev.kind == Kind::Error) {
    finished_ = true;
    return anthropic_error_frame(api_error_from_status(ev.http_status ? ev.http_status : 500, ev.error));
  }
  // The engine's first event says how much of the prompt came from its prompt cache: message_start
  // reports it (cache_read_input_tokens), as message_delta will.
  if (!started_ && (ev.kind == Kind::Progress || ev.kind == Kind::Done))
    cached_ = ev.cached_tokens, creation_ = ev.cache_creation_tokens;
  std::string out = begin();
  switch (ev.kind) {
    case Kind::Progress: out += sse_event("ping", R"({"type":"ping"})"); break;
    case Kind::Text:
      if (ev.text.empty()) break;
      if (open_ != Block::Text) out += open_block(Block::Text, ordered_json{{"type", "text"}, {"text", ""}});
      out += delta(ordered_json{{"type", "text_delta"}, {"text", ev.text}});
      break;
    case Kind::Reasoning:
      if (ev.text.empty()) break;
      if (open_ != Block::Thinking)
        out += open_block(Block::Thinking, ordered_json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      thinking_ += ev.text;
      out += delta(ordered_json{{"type", "thinking_delta"}, {"thinking", ev.text}});
      break;
    case Kind::ToolCallStart: {
      saw_tool_use_ = true;
      ordered_json cb;
      cb["type"] = "tool_use";
      cb["id"] = ev.tool_id.empty() ? random_id("toolu_") : ev.tool_id;
      cb["name"] = ev.tool_name;
      cb["input"] = ordered_json::object();
      out += open_block(Block::ToolUse, cb);
      break;
    }
    case Kind::ToolCallArgs:
      if (open_ == Block::ToolUse && !ev.text.empty())
        out += delta(ordered_json{{"type", "input_json_delta"}, {"partial_json", ev.text}});
      break;
    case Kind::ToolCallEnd:
      if (open_ == Block::ToolUse) out += close_block();
      break;
    case Kind::Done: {
      finished_ = true;
      if (index_ < 0 && open_ == Block::None) out += open_block(Block::Text, ordered_json{{"type", "text"}, {"text", ""}});
      out += close_block();
      std::string stop_reason = anthropic_stop_reason(ev, saw_tool_use_);
      ordered_json d;
      d["stop_reason"] = stop_reason;
      d["stop_sequence"] = stop_sequence_json(&ev, stop_reason);
      ordered_json j{{"type", "message_delta"}, {"delta", std::move(d)},
                     {"usage", usage_json(ev.prompt_tokens, ev.completion_tokens, ev.cached_tokens, ev.cache_creation_tokens)}};
      out += sse_event("message_delta", dump_json(j));
      out += sse_event("message_stop", R"({"type":"message_stop"})");
      break;
    }
    default: break;
  }
  return out;
}

std::string count_tokens_body(int input_tokens) {
  ordered_json j{{"input_tokens", input_tokens}};
  return dump_json(j);
}

}  // namespace optiq::server
