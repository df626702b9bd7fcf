#pragma once
// Internals of the output parser, shared by output_parser.cpp (text, thinking, JSON calls) and
// output_parser_formats.cpp (Mistral, Qwen3-Coder). Not part of the public API.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/output_parser.h"
#include "chat/output_parser_json.h"

namespace optiq::chat {

namespace detail {

using Ev = engine::GenerationEvent;
using ojson = nlohmann::ordered_json;
inline constexpr size_t npos = std::string::npos;

inline constexpr std::string_view kThinkOpen = "<think>", kThinkClose = "</think>";
inline constexpr std::string_view kToolCall = "<tool_call>", kToolCallEnd = "</tool_call>";
inline constexpr std::string_view kFunction = "<function=", kFunctionEnd = "</function>";
inline constexpr std::string_view kParam = "<parameter=", kParamEnd = "</parameter>";
inline constexpr std::string_view kPythonTag = "<|python_tag|>";
inline constexpr std::string_view kMistralCalls = "[TOOL_CALLS]", kMistralArgs = "[ARGS]", kMistralId = "[CALL_ID]";
inline constexpr size_t kMaxName = 256;  // a tool or parameter name longer than this is not markup

size_t first_non_ws(const std::string& s, size_t from = 0);
bool starts_with(const std::string& s, std::string_view p, size_t at = 0);
bool may_become(const std::string& s, std::string_view tag, size_t at = 0);  // s[at:] is a proper prefix of tag
size_t partial_suffix(const std::string& s, std::string_view tag);  // longest suffix of s that begins tag
std::pair<size_t, size_t> find_first(const std::string& s, const std::vector<std::string_view>& tags);
size_t hold_for(const std::string& s, const std::vector<std::string_view>& tags);  // max partial_suffix
std::string trim(const std::string& s);
std::string dump(const ojson& j);
std::string escape_fragment(const std::string& s);  // the inside of a JSON string literal holding s
}  // namespace detail

struct OutputParser::Impl : detail::CallSink {
  enum class State {
    Start, Thinking, AnswerStart, Text,
    JsonCall, HermesTail, LlamaTag, LlamaNext,                                 // JSON calls
    MistralStart, MistralList, MistralName, MistralCallId, MistralArgs,        // Mistral
    CoderOpen, CoderName, CoderBody, CoderParamName, CoderValueStart, CoderValue, CoderAfter,  // Qwen3-Coder
  };
  enum class JsonKind { Hermes, Llama, MistralObject, MistralInList };

  OutputFormat fmt;
  bool tools;
  State state;
  std::vector<std::string_view> text_tags;  // what ends plain text

  std::string buf;         // input not consumed yet
  std::string utf8_hold;   // the start of a character split across pushes
  std::string raw;         // markup consumed since a tool-call tag, given back as text if it is no call
  std::string pending_ws;  // trailing whitespace of the text (dropped before a tool call)
  std::string reason_ws;   // trailing whitespace of the reasoning (dropped at </think>)
  bool trim_leading = false, reasoning_started = false;
  std::vector<detail::Ev>* out = nullptr;
  int n_calls = 0;
  bool call_open = false;

  std::optional<detail::JsonCall> json_call;
  JsonKind json_kind = JsonKind::Hermes;
  bool skip_to_close = false;  // HermesTail after a broken object: everything up to </tool_call> goes
  std::optional<detail::ArgsStream> args_stream;
  std::string param_key;
  bool args_open = false, value_json = false, value_nl_checked = false;

  Impl(OutputFormat f, bool tools_requested);

  // ---- events ----
  void emit(detail::Ev::Kind kind, const std::string& s);  // merges with the previous event of the same kind
  void call_start(const std::string& name) override;
  void call_args(const std::string& s) override { emit(detail::Ev::Kind::ToolCallArgs, s); }
  void call_end() override;
  void emit_text(std::string s);       // trims / holds whitespace as described in the header
  void emit_reasoning(std::string s);
  // Not a tool call after all: what was consumed goes out as text; the rest of buf is parsed as text.
  void fallback() {
    std::string r;
    r.swap(raw);
    state = State::Text;
    emit_text(r);
  }
  void after_call() {
    state = State::Text;
    trim_leading = true;
  }
  void start_json(JsonKind kind) {
    json_call.emplace();
    json_kind = kind;
    state = State::JsonCall;
  }

  // ---- the state machine: each step returns false when it needs more input ----
  void run(bool final) {
    while (step(final)) {
    }
  }
  bool step(bool final);
  bool step_text(bool final);
  bool step_json(bool final);
  bool step_mistral(bool final);
  bool step_coder(bool final);
  void json_done();
  void json_broken(bool at_end);
  void coder_value_done(std::string v);
  void coder_close() {
    call_args(args_open ? "}" : "{}");
    call_end();
  }
};

}  // namespace optiq::chat
