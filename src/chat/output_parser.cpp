#include "chat/output_parser.h"

#include <nlohmann/json.hpp>
#include <random>

namespace optiq::chat {

namespace {

using Ev = engine::GenerationEvent;
const std::string kThinkOpen = "<think>", kThinkClose = "</think>";

std::string open_tag(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::Hermes:
    case ToolCallFormat::Qwen3Coder: return "<tool_call>";
    case ToolCallFormat::Mistral: return "[TOOL_CALLS]";
    case ToolCallFormat::Llama3Json: return "<|python_tag|>";
    case ToolCallFormat::None: return "";
  }
  return "";
}

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_suffix(const std::string& s, const std::string& tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.compare(s.size() - k, k, tag, 0, k) == 0) return k;
  return 0;
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += alnum[rng() % 62];
  return id;
}

bool is_space(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

OutputFormat detect_output_format(const std::string& t, const std::string& tail) {
  OutputFormat f;
  if (t.find("<function=") != std::string::npos && t.find("<parameter=") != std::string::npos)
    f.tools = ToolCallFormat::Qwen3Coder;
  else if (t.find("<tool_call>") != std::string::npos)
    f.tools = ToolCallFormat::Hermes;
  else if (t.find("[TOOL_CALLS]") != std::string::npos)
    f.tools = ToolCallFormat::Mistral;
  else if (t.find("<|python_tag|>") != std::string::npos || t.find("\"parameters\"") != std::string::npos)
    f.tools = ToolCallFormat::Llama3Json;
  f.thinking = t.find("<think>") != std::string::npos || t.find("</think>") != std::string::npos;
  size_t e = tail.find_last_not_of(" \t\r\n");
  std::string trimmed = e == std::string::npos ? "" : tail.substr(0, e + 1);
  f.starts_in_thinking = f.thinking && trimmed.size() >= kThinkOpen.size() &&
                         trimmed.compare(trimmed.size() - kThinkOpen.size(), kThinkOpen.size(), kThinkOpen) == 0;
  return f;
}

OutputParser::OutputParser(OutputFormat fmt, bool tools_requested)
    : fmt_(fmt), tools_(tools_requested && fmt.tools != ToolCallFormat::None),
      state_(fmt.starts_in_thinking ? State::Thinking : State::Start) {}

void OutputParser::emit_text(std::vector<Ev>& out, const std::string& s0, bool reasoning) {
  std::string s = s0;
  if (!reasoning && trim_leading_) {
    size_t p = s.find_first_not_of(" \t\r\n");
    if (p == std::string::npos) return;
    s = s.substr(p);
    trim_leading_ = false;
  }
  if (s.empty()) return;
  if (!reasoning && !is_space(s)) seen_content_ = true;
  Ev::Kind k = reasoning ? Ev::Kind::Reasoning : Ev::Kind::Text;
  if (!out.empty() && out.back().kind == k) {
    out.back().text += s;
    return;
  }
  Ev ev;
  ev.kind = k;
  ev.text = s;
  out.push_back(std::move(ev));
}

bool OutputParser::emit_tool_call(std::vector<Ev>& out, const std::string& body) {
  using nlohmann::ordered_json;
  std::vector<std::pair<std::string, ordered_json>> calls;
  if (fmt_.tools == ToolCallFormat::Qwen3Coder) {
    size_t f = body.find("<function=");
    if (f == std::string::npos) return false;
    size_t fe = body.find('>', f);
    if (fe == std::string::npos) return false;
    std::string name = body.substr(f + 10, fe - f - 10);
    ordered_json args = ordered_json::object();
    size_t p = fe;
    while ((p = body.find("<parameter=", p)) != std::string::npos) {
      size_t ne = body.find('>', p);
      size_t ve = body.find("</parameter>", ne);
      if (ne == std::string::npos || ve == std::string::npos) return false;
      std::string key = body.substr(p + 11, ne - p - 11);
      std::string val = body.substr(ne + 1, ve - ne - 1);
      if (!val.empty() && val.front() == '\n') val.erase(0, 1);
      if (!val.empty() && val.back() == '\n') val.pop_back();
      ordered_json v = ordered_json::parse(val, nullptr, false);
      args[key] = v.is_discarded() || v.is_string() ? ordered_json(val) : v;
      p = ve;
    }
    calls.push_back({name, args});
  } else {
    ordered_json j = ordered_json::parse(body, nullptr, false);
    if (j.is_discarded()) return false;
    std::vector<ordered_json> items = j.is_array() ? std::vector<ordered_json>(j.begin(), j.end()) : std::vector<ordered_json>{j};
    for (auto& it : items) {
      if (!it.is_object() || !it.contains("name") || !it["name"].is_string()) return false;
      ordered_json args = it.contains("arguments") ? it["arguments"] : it.contains("parameters") ? it["parameters"] : ordered_json::object();
      if (args.is_string()) {
        ordered_json inner = ordered_json::parse(args.get<std::string>(), nullptr, false);
        if (!inner.is_discarded()) args = inner;
      }
      calls.push_back({it["name"].get<std::string>(), args});
    }
  }
  for (auto& [name, args] : calls) {
    Ev start;
    start.kind = Ev::Kind::ToolCallStart;
    start.tool_index = n_tool_calls_;
    start.tool_name = name;
    start.tool_id = call_id();
    out.push_back(start);
    Ev a;
    a.kind = Ev::Kind::ToolCallArgs;
    a.tool_index = n_tool_calls_;
    a.text = args.dump();
    out.push_back(a);
    Ev end;
    end.kind = Ev::Kind::ToolCallEnd;
    end.tool_index = n_tool_calls_;
    out.push_back(end);
    ++n_tool_calls_;
  }
  return true;
}

void OutputParser::process(std::vector<Ev>& out, bool final) {
  const std::string tool_open = tools_ ? open_tag(fmt_.tools) : "";
  for (;;) {
    if (state_ == State::Start) {
      // Thinking opens only before any content; otherwise this is text.
      size_t p = buf_.find_first_not_of(" \t\r\n");
      if (fmt_.thinking && p != std::string::npos && buf_.compare(p, kThinkOpen.size(), kThinkOpen) == 0) {
        buf_.erase(0, p + kThinkOpen.size());
        state_ = State::Thinking;
        continue;
      }
      if (fmt_.thinking && !final && p != std::string::npos && kThinkOpen.compare(0, buf_.size() - p, buf_, p) == 0) return;
      if (fmt_.thinking && !final && p == std::string::npos) return;  // only whitespace so far
      if (tools_ && fmt_.tools == ToolCallFormat::Llama3Json && p != std::string::npos && buf_[p] == '{') {
        state_ = State::ToolCall;  // Llama 3: a JSON object as the whole answer
        continue;
      }
      state_ = State::Text;
      continue;
    }
    if (state_ == State::Thinking) {
      size_t c = buf_.find(kThinkClose);
      if (c != std::string::npos) {
        emit_text(out, buf_.substr(0, c), true);
        buf_.erase(0, c + kThinkClose.size());
        state_ = State::Text;
        trim_leading_ = true;
        continue;
      }
      size_t hold = final ? 0 : partial_suffix(buf_, kThinkClose);
      emit_text(out, buf_.substr(0, buf_.size() - hold), true);
      buf_.erase(0, buf_.size() - hold);
      return;
    }
    if (state_ == State::Text) {
      if (!tool_open.empty()) {
        size_t t = buf_.find(tool_open);
        if (t != std::string::npos) {
          emit_text(out, buf_.substr(0, t), false);
          buf_.erase(0, t + tool_open.size());
          state_ = State::ToolCall;
          continue;
        }
      }
      size_t hold = final || tool_open.empty() ? 0 : partial_suffix(buf_, tool_open);
      emit_text(out, buf_.substr(0, buf_.size() - hold), false);
      buf_.erase(0, buf_.size() - hold);
      return;
    }
    // ToolCall: wait for the closing tag (or the end of output for formats without one).
    std::string close = fmt_.tools == ToolCallFormat::Hermes || fmt_.tools == ToolCallFormat::Qwen3Coder ? "</tool_call>" : "";
    size_t c = close.empty() ? std::string::npos : buf_.find(close);
    if (c == std::string::npos && !final) return;
    std::string body = c == std::string::npos ? buf_ : buf_.substr(0, c);
    if (!emit_tool_call(out, body)) {
      // Not a tool call after all: give the raw text back.
      emit_text(out, (fmt_.tools == ToolCallFormat::Llama3Json ? "" : tool_open) + body + (c == std::string::npos ? "" : close), false);
    }
    buf_.erase(0, c == std::string::npos ? buf_.size() : c + close.size());
    trim_leading_ = true;
    state_ = State::Text;
    if (buf_.empty()) return;
  }
}

std::vector<Ev> OutputParser::push(const std::string& text) {
  std::vector<Ev> out;
  buf_ += text;
  process(out, false);
  return out;
}

std::vector<Ev> OutputParser::finish() {
  std::vector<Ev> out;
  process(out, true);
  if (!buf_.empty()) {
    emit_text(out, buf_, state_ == State::Thinking);
    buf_.clear();
  }
  return out;
}

}  // namespace optiq::chat
