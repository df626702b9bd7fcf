#include <cctype>

#include "chat/output_parser_impl.h"

namespace optiq::chat {

using namespace detail;

// ---- Mistral: [TOOL_CALLS][{...}, ...] and [TOOL_CALLS]name[CALL_ID]id[ARGS]{...} ----

bool OutputParser::Impl::step_mistral(bool final) {
  if (state == State::MistralStart || state == State::MistralList) {
    size_t p = first_non_ws(buf);
    if (p == npos) {
      if (!final) return false;
      raw += buf;
      buf.clear();
      fallback();
      return true;
    }
    raw += buf.substr(0, p);
    buf.erase(0, p);
    char c = buf[0];
    if (c == '{') {
      start_json(state == State::MistralList ? JsonKind::MistralInList : JsonKind::MistralObject);
    } else if (state == State::MistralStart && c == '[') {
      raw += c;
      buf.erase(0, 1);
      state = State::MistralList;
    } else if (state == State::MistralStart) {
      state = State::MistralName;
    } else if (c == ',' || c == ']') {
      raw += c;
      buf.erase(0, 1);
      if (c == ']') {
        raw.clear();
        after_call();
      }
    } else {
      fallback();
    }
    return true;
  }
  if (state == State::MistralName) {
    auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; };
    size_t i = 0;
    while (i < buf.size() && name_char(buf[i])) ++i;
    bool args = starts_with(buf, kMistralArgs, i), id = starts_with(buf, kMistralId, i);
    if (i > 0 && i < kMaxName && (args || id)) {
      std::string name = buf.substr(0, i);
      buf.erase(0, i + (args ? kMistralArgs.size() : kMistralId.size()));
      call_start(name);
      if (args) args_stream.emplace();
      state = args ? State::MistralArgs : State::MistralCallId;
      return true;
    }
    bool maybe = i == buf.size() || may_become(buf, kMistralArgs, i) || may_become(buf, kMistralId, i);
    if (maybe && !final && i < kMaxName) return false;
    fallback();
    return true;
  }
  if (state == State::MistralCallId) {  // the model's own id: we give ours
    size_t a = buf.find(kMistralArgs);
    if (a != npos) {
      buf.erase(0, a + kMistralArgs.size());
      args_stream.emplace();
      state = State::MistralArgs;
      return true;
    }
    if (!final) {
      buf.erase(0, buf.size() - partial_suffix(buf, kMistralArgs));
      return false;
    }
    buf.clear();
    call_args("{}");
    call_end();
    after_call();
    return false;
  }
  // MistralArgs
  for (size_t i = 0; i < buf.size(); ++i) {
    auto st = args_stream->feed(buf[i], *this);
    if (st == detail::ArgsStream::Status::More) continue;
    buf.erase(0, st == detail::ArgsStream::Status::Done ? i + 1 : i);
    if (st == detail::ArgsStream::Status::Error) args_stream->abort(*this);
    after_call();
    return true;
  }
  buf.clear();
  if (!final) return false;
  args_stream->abort(*this);
  after_call();
  return false;
}

// ---- Qwen3-Coder / Qwen3.5: <tool_call>\n<function=NAME>\n<parameter=P>\nvalue\n</parameter>\n</function>\n</tool_call>

void OutputParser::Impl::coder_value_done(std::string v) {
  if (!v.empty() && v.back() == '\n') v.pop_back();
  if (!value_json) {
    call_args(escape_fragment(v) + "\"");
    return;
  }
  std::string prefix = (args_open ? ", " : "{") + dump(ojson(param_key)) + ": ";
  args_open = true;
  ojson j = ojson::parse(v, nullptr, false);
  call_args(prefix + (!j.is_discarded() && !j.is_string() ? trim(v) : dump(ojson(v))));
}

bool OutputParser::Impl::step_coder(bool final) {
  static const std::vector<std::string_view> kValueEnds = {kParamEnd, kParam, kFunctionEnd, kToolCallEnd};
  switch (state) {
    case State::CoderOpen: {  // after <tool_call>: <function=...> (or a Hermes JSON object)
      size_t p = first_non_ws(buf);
      if (p == npos && !final) return false;
      if (p != npos && starts_with(buf, kFunction, p)) {
        raw += buf.substr(0, p + kFunction.size());
        buf.erase(0, p + kFunction.size());
        state = State::CoderName;
        return true;
      }
      if (p != npos && buf[p] == '{') {
        raw += buf.substr(0, p);
        buf.erase(0, p);
        start_json(JsonKind::Hermes);
        return true;
      }
      if (p != npos && !final && may_become(buf, kFunction, p)) return false;
      fallback();
      return true;
    }
    case State::CoderName: {
      size_t g = buf.find('>'), bad = buf.find_first_of("<\n");
      if (g != npos && g < bad && g < kMaxName && !trim(buf.substr(0, g)).empty()) {
        std::string name = trim(buf.substr(0, g));
        buf.erase(0, g + 1);
        call_start(name);
        args_open = false;
        state = State::CoderBody;
        return true;
      }
      if (g == npos && bad == npos && !final && buf.size() < kMaxName) return false;
      fallback();
      return true;
    }
    case State::CoderBody: {  // between parameters
      size_t p = first_non_ws(buf);
      if (p == npos) {
        buf.clear();
        if (!final) return false;
        coder_close();
        after_call();
        return false;
      }
      buf.erase(0, p);
      if (starts_with(buf, kParam)) {
        buf.erase(0, kParam.size());
        state = State::CoderParamName;
      } else if (starts_with(buf, kFunctionEnd)) {
        buf.erase(0, kFunctionEnd.size());
        coder_close();
        state = State::CoderAfter;
      } else if (starts_with(buf, kToolCallEnd)) {
        buf.erase(0, kToolCallEnd.size());
        coder_close();
        after_call();
      } else if (!final && (may_become(buf, kParam) || may_become(buf, kFunctionEnd) || may_become(buf, kToolCallEnd))) {
        return false;
      } else {  // stray text inside the call: skipped
        size_t n = buf.find('<', 1);
        buf.erase(0, n == npos ? buf.size() : n);
      }
      return true;
    }
    case State::CoderParamName: {
      size_t g = buf.find('>'), bad = buf.find_first_of("<\n");
      if (g != npos && g < bad && g < kMaxName) {
        param_key = trim(buf.substr(0, g));
        buf.erase(0, g + 1);
        value_nl_checked = false;
        state = State::CoderValueStart;
        return true;
      }
      if (g == npos && bad == npos && !final && buf.size() < kMaxName) return false;
      state = State::CoderBody;  // a broken parameter tag: skipped
      if (final) buf.clear();
      return true;
    }
    case State::CoderValueStart: {  // the value's first character decides: JSON-looking or a string
      if (!value_nl_checked && !buf.empty()) {
        if (buf[0] == '\n') buf.erase(0, 1);
        value_nl_checked = true;
      }
      if (buf.empty() && !final) return false;
      value_json = !buf.empty() && std::string_view("{[-0123456789tfn").find(buf[0]) != std::string_view::npos;
      if (!value_json) {
        call_args((args_open ? ", " : "{") + dump(ojson(param_key)) + ": \"");
        args_open = true;
      }
      state = State::CoderValue;
      return true;
    }
    case State::CoderValue: {
      auto [pos, which] = find_first(buf, kValueEnds);
      if (pos != npos || final) {
        coder_value_done(buf.substr(0, pos));
        buf.erase(0, pos == npos ? buf.size() : pos + (which == 0 ? kParamEnd.size() : 0));
        state = State::CoderBody;
        return true;
      }
      if (value_json) return false;  // decided when complete
      size_t n = buf.size() - hold_for(buf, kValueEnds);
      if (n > 0 && buf[n - 1] == '\n') --n;  // the newline before </parameter> is not part of the value
      if (n > 0) {
        call_args(escape_fragment(buf.substr(0, n)));
        buf.erase(0, n);
      }
      return false;
    }
    default: {  // CoderAfter: </function> seen, </tool_call> expected
      size_t p = first_non_ws(buf);
      if (p == npos && !final) return false;
      if (p != npos && starts_with(buf, kToolCallEnd, p)) {
        buf.erase(0, p + kToolCallEnd.size());
      } else if (p != npos && !final && may_become(buf, kToolCallEnd, p)) {
        return false;
      }
      after_call();
      return true;
    }
  }
}

}  // namespace optiq::chat
