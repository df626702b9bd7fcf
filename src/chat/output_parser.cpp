#include "chat/output_parser.h"

#include <algorithm>
#include <random>

#include "chat/output_parser_impl.h"

namespace optiq::chat {

namespace detail {

size_t first_non_ws(const std::string& s, size_t from) { return s.find_first_not_of(" \t\r\n", from); }

bool starts_with(const std::string& s, std::string_view p, size_t at) {
  return s.size() >= at + p.size() && s.compare(at, p.size(), p) == 0;
}

// s[at:] is a proper prefix of tag: more input may complete it.
bool may_become(const std::string& s, std::string_view tag, size_t at) {
  size_t n = s.size() - at;
  return n < tag.size() && tag.compare(0, n, std::string_view(s).substr(at)) == 0;
}

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_suffix(const std::string& s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.compare(s.size() - k, k, tag, 0, k) == 0) return k;
  return 0;
}

// Earliest complete occurrence of any tag in s: {position, index of the tag}.
std::pair<size_t, size_t> find_first(const std::string& s, const std::vector<std::string_view>& tags) {
  std::pair<size_t, size_t> best{npos, 0};
  for (size_t i = 0; i < tags.size(); ++i) {
    size_t p = s.find(tags[i]);
    if (p < best.first) best = {p, i};
  }
  return best;
}

size_t hold_for(const std::string& s, const std::vector<std::string_view>& tags) {
  size_t h = 0;
  for (auto t : tags) h = std::max(h, partial_suffix(s, t));
  return h;
}

std::string trim(const std::string& s) {
  size_t b = first_non_ws(s);
  if (b == npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

// The inside of a JSON string literal holding s.
std::string escape_fragment(const std::string& s) {
  std::string d = dump(ojson(s));
  return d.substr(1, d.size() - 2);
}

}  // namespace detail

using namespace detail;

namespace {

// Bytes at the end of s that begin a UTF-8 character not yet complete.
size_t utf8_incomplete_tail(const std::string& s) {
  size_t n = s.size();
  for (size_t k = 1; k <= 4 && k <= n; ++k) {
    auto c = static_cast<unsigned char>(s[n - k]);
    if ((c & 0xC0) == 0x80) continue;
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return len > k ? k : 0;
  }
  return 0;
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rng() % 62];
  return id;
}

}  // namespace

OutputFormat detect_output_format(const std::string& t, const std::string& tail) {
  auto has = [&](const char* s) { return t.find(s) != npos; };
  OutputFormat f;
  if (has("<function=") && has("<parameter="))
    f.tools = ToolCallFormat::Qwen3Coder;
  else if (has("<tool_call>"))
    f.tools = ToolCallFormat::Hermes;
  else if (has("[TOOL_CALLS]"))
    f.tools = ToolCallFormat::Mistral;
  else if (has("<|python_tag|>") || (has("\"parameters\"") && has("\"name\"")))
    f.tools = ToolCallFormat::Llama3Json;
  f.thinking = has("<think>");
  size_t e = tail.find_last_not_of(" \t\r\n");
  std::string trimmed = e == npos ? "" : tail.substr(0, e + 1);
  if (trimmed.size() >= kThinkOpen.size() &&
      trimmed.compare(trimmed.size() - kThinkOpen.size(), kThinkOpen.size(), kThinkOpen) == 0)
    f.thinking = f.starts_in_thinking = true;
  return f;
}

OutputParser::Impl::Impl(OutputFormat f, bool tools_requested)
    : fmt(f), tools(tools_requested && f.tools != ToolCallFormat::None),
      state(f.starts_in_thinking ? State::Thinking : f.thinking ? State::Start : State::AnswerStart) {
  if (!tools) return;
  switch (fmt.tools) {
    case ToolCallFormat::Hermes: text_tags = {kToolCall}; break;
    case ToolCallFormat::Qwen3Coder: text_tags = {kToolCall, kFunction}; break;
    case ToolCallFormat::Llama3Json: text_tags = {kPythonTag}; break;
    case ToolCallFormat::Mistral: text_tags = {kMistralCalls}; break;
    case ToolCallFormat::None: break;
  }
}

void OutputParser::Impl::emit(Ev::Kind kind, const std::string& s) {
  if (s.empty()) return;
  if (!out->empty() && out->back().kind == kind && (kind != Ev::Kind::ToolCallArgs || out->back().tool_index == n_calls)) {
    out->back().text += s;
    return;
  }
  Ev ev;
  ev.kind = kind;
  ev.text = s;
  ev.tool_index = kind == Ev::Kind::ToolCallArgs ? n_calls : 0;
  out->push_back(std::move(ev));
}

void OutputParser::Impl::call_start(const std::string& name) {
  Ev ev;
  ev.kind = Ev::Kind::ToolCallStart;
  ev.tool_index = n_calls;
  ev.tool_name = name;
  ev.tool_id = call_id();
  out->push_back(std::move(ev));
  call_open = true;
  raw.clear();
  pending_ws.clear();
}

void OutputParser::Impl::call_end() {
  Ev ev;
  ev.kind = Ev::Kind::ToolCallEnd;
  ev.tool_index = n_calls++;
  out->push_back(std::move(ev));
  call_open = false;
}

void OutputParser::Impl::emit_text(std::string s) {
  if (trim_leading) {
    size_t p = first_non_ws(s);
    if (p == npos) return;
    s.erase(0, p);
    trim_leading = false;
  }
  if (s.empty()) return;
  if (tools) {  // hold trailing whitespace: it is dropped if a tool call follows
    s.insert(0, pending_ws);
    size_t e = s.find_last_not_of(" \t\r\n");
    if (e == npos) {
      pending_ws = s;
      return;
    }
    pending_ws = s.substr(e + 1);
    s.resize(e + 1);
  }
  emit(Ev::Kind::Text, s);
}

void OutputParser::Impl::emit_reasoning(std::string s) {
  if (!reasoning_started) {
    size_t p = first_non_ws(s);
    if (p == npos) return;
    s.erase(0, p);
    reasoning_started = true;
  }
  s.insert(0, reason_ws);
  size_t e = s.find_last_not_of(" \t\r\n");
  if (e == npos) {
    reason_ws = s;
    return;
  }
  reason_ws = s.substr(e + 1);
  s.resize(e + 1);
  emit(Ev::Kind::Reasoning, s);
}

bool OutputParser::Impl::step(bool final) {
  switch (state) {
    case State::Start: {  // a thinking model: <think> may open the answer
      size_t p = first_non_ws(buf);
      if (p == npos && !final) return false;
      if (p != npos && starts_with(buf, kThinkOpen, p)) {
        buf.erase(0, p + kThinkOpen.size());
        state = State::Thinking;
        return true;
      }
      if (p != npos && !final && may_become(buf, kThinkOpen, p)) return false;
      state = State::AnswerStart;
      trim_leading = true;
      return true;
    }
    case State::Thinking: {
      size_t c = buf.find(kThinkClose);
      if (c != npos) {
        emit_reasoning(buf.substr(0, c));
        buf.erase(0, c + kThinkClose.size());
        reason_ws.clear();
        state = State::AnswerStart;
        trim_leading = true;
        return true;
      }
      size_t n = buf.size() - (final ? 0 : partial_suffix(buf, kThinkClose));
      emit_reasoning(buf.substr(0, n));
      buf.erase(0, n);
      return false;
    }
    case State::AnswerStart: {  // Llama 3 writes a call as the whole answer
      if (!tools || fmt.tools != ToolCallFormat::Llama3Json) {
        state = State::Text;
        return true;
      }
      size_t p = first_non_ws(buf);
      if (p == npos && !final) return false;
      if (p != npos && buf[p] == '{') {
        raw = buf.substr(0, p);
        buf.erase(0, p);
        start_json(JsonKind::Llama);
        return true;
      }
      state = State::Text;
      return true;
    }
    case State::Text: return step_text(final);
    case State::JsonCall:
    case State::HermesTail:
    case State::LlamaTag:
    case State::LlamaNext: return step_json(final);
    case State::MistralStart:
    case State::MistralList:
    case State::MistralName:
    case State::MistralCallId:
    case State::MistralArgs: return step_mistral(final);
    default: return step_coder(final);
  }
}

bool OutputParser::Impl::step_text(bool final) {
  if (buf.empty()) return false;
  auto [pos, which] = find_first(buf, text_tags);
  if (pos != npos) {
    emit_text(buf.substr(0, pos));
    std::string_view tag = text_tags[which];
    raw = std::string(tag);
    buf.erase(0, pos + tag.size());
    if (tag == kToolCall && fmt.tools == ToolCallFormat::Hermes) start_json(JsonKind::Hermes);
    else if (tag == kToolCall) state = State::CoderOpen;
    else if (tag == kFunction) state = State::CoderName;
    else if (tag == kPythonTag) state = State::LlamaTag;
    else state = State::MistralStart;
    return true;
  }
  size_t n = buf.size() - (final ? 0 : hold_for(buf, text_tags));
  emit_text(buf.substr(0, n));
  buf.erase(0, n);
  return false;
}

// ---- JSON calls: Hermes <tool_call>{...}</tool_call>, Llama 3 {...}, Mistral objects ----

void OutputParser::Impl::json_done() {
  if (!json_call->finish_object(*this)) {
    raw += json_call->text();
    fallback();
    return;
  }
  raw.clear();
  switch (json_kind) {
    case JsonKind::Hermes:
      state = State::HermesTail;
      skip_to_close = false;
      break;
    case JsonKind::Llama: state = State::LlamaNext; break;
    case JsonKind::MistralObject: after_call(); break;
    case JsonKind::MistralInList: state = State::MistralList; break;
  }
}

void OutputParser::Impl::json_broken(bool at_end) {
  if (!json_call->announced()) {
    raw += json_call->text();
    fallback();
    return;
  }
  json_call->abort(*this);  // closes the arguments if they were still streaming
  raw.clear();
  if (json_kind == JsonKind::Hermes && !at_end) {
    state = State::HermesTail;
    skip_to_close = true;  // the rest of the broken object goes
  } else {
    after_call();
  }
}

bool OutputParser::Impl::step_json(bool final) {
  if (state == State::JsonCall) {
    for (size_t i = 0; i < buf.size(); ++i) {
      auto st = json_call->feed(buf[i], *this);
      if (st == detail::JsonCall::Status::More) continue;
      buf.erase(0, st == detail::JsonCall::Status::Done ? i + 1 : i);
      if (st == detail::JsonCall::Status::Done) json_done();
      else json_broken(false);
      return true;
    }
    buf.clear();
    if (!final) return false;
    json_broken(true);
    return true;
  }
  if (state == State::HermesTail) {  // after the object: </tool_call> (or a next <tool_call>)
    if (!skip_to_close) {  // a clean object: stray braces and whitespace are skipped, text is text
      size_t p = buf.find_first_not_of(" \t\r\n}");
      buf.erase(0, p == npos ? buf.size() : p);
      if (buf.empty()) return false;
      if (may_become(buf, kToolCallEnd) || may_become(buf, kToolCall)) {
        if (!final) return false;
        buf.clear();  // cut off inside the closing tag
        after_call();
        return false;
      }
      if (!starts_with(buf, kToolCallEnd) && !starts_with(buf, kToolCall)) {
        after_call();
        return true;
      }
    }
    auto [pos, which] = find_first(buf, {kToolCallEnd, kToolCall});
    if (pos != npos) {
      buf.erase(0, pos + (which == 0 ? kToolCallEnd.size() : kToolCall.size()));
      if (which == 0) {
        after_call();
      } else {
        raw = std::string(kToolCall);
        start_json(JsonKind::Hermes);
      }
      return true;
    }
    if (final) {
      buf.clear();
      after_call();
      return false;
    }
    buf.erase(0, buf.size() - hold_for(buf, {kToolCallEnd, kToolCall}));
    return false;
  }
  if (state == State::LlamaTag) {  // <|python_tag|> then a JSON call
    size_t p = first_non_ws(buf);
    if (p == npos && !final) return false;
    if (p != npos && buf[p] == '{') {
      raw += buf.substr(0, p);
      buf.erase(0, p);
      start_json(JsonKind::Llama);
      return true;
    }
    fallback();
    return true;
  }
  // LlamaNext: another call may follow (separated by whitespace or ';'), else text.
  size_t p = buf.find_first_not_of(" \t\r\n;");
  if (p == npos && !final) return false;
  buf.erase(0, p == npos ? buf.size() : p);
  if (!buf.empty() && buf[0] == '{') {
    raw.clear();
    start_json(JsonKind::Llama);
  } else {
    after_call();
  }
  return true;
}

// ---- OutputParser ----

OutputParser::OutputParser(OutputFormat fmt, bool tools_requested)
    : impl_(std::make_unique<Impl>(fmt, tools_requested)) {}
OutputParser::~OutputParser() = default;
OutputParser::OutputParser(OutputParser&&) noexcept = default;
OutputParser& OutputParser::operator=(OutputParser&&) noexcept = default;

bool OutputParser::saw_tool_call() const { return impl_->n_calls > 0 || impl_->call_open; }

std::vector<engine::GenerationEvent> OutputParser::push(const std::string& text) {
  std::vector<Ev> out;
  Impl& m = *impl_;
  m.out = &out;
  std::string s = m.utf8_hold + text;
  size_t k = utf8_incomplete_tail(s);
  m.utf8_hold = s.substr(s.size() - k);
  s.resize(s.size() - k);
  m.buf += s;
  m.run(false);
  m.out = nullptr;
  return out;
}

std::vector<engine::GenerationEvent> OutputParser::finish() {
  std::vector<Ev> out;
  Impl& m = *impl_;
  m.out = &out;
  m.buf += m.utf8_hold;
  m.utf8_hold.clear();
  m.run(true);
  if (!m.buf.empty()) m.emit_text(m.buf);  // not reached: every state consumes all input at the end
  m.buf.clear();
  if (m.call_open) {  // not reached either; never leave a call open
    m.call_args("{}");
    m.call_end();
  }
  m.emit(Ev::Kind::Text, m.pending_ws);  // the answer's own trailing whitespace
  m.pending_ws.clear();
  m.out = nullptr;
  return out;
}

}  // namespace optiq::chat
