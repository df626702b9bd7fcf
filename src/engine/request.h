#pragma once
// The neutral request and event types both HTTP APIs translate to and from. Nothing here knows
// about HTTP or JSON wire shapes; nothing in server/ knows about tensors.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace optiq::engine {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments_json;  // a JSON object, serialized
};

// One conversation turn, normalized from either API.
struct Message {
  std::string role;       // system | user | assistant | tool
  std::string content;    // text (content parts / text blocks joined)
  std::string reasoning;  // assistant thinking (OpenAI reasoning_content, Anthropic thinking blocks)
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool result: which call it answers
  std::string name;                  // tool result: the tool's name, when known
  bool is_error = false;             // tool result reported as an error
};

struct ToolSpec {
  std::string name;
  std::string description;
  std::string parameters_json;  // JSON Schema object, serialized
};

struct GenerationRequest {
  std::string model;  // what the client asked for, echoed back (may name a mounted adapter)
  // The seed's body field "adapters" / "adapter": mounted adapter names joined by '+'; "", none, base or
  // off for the base. Absent: the adapter `model` names, else the only mounted adapter, else the base.
  std::optional<std::string> adapters;
  // Either a chat (messages rendered with the chat template) or a raw prompt (text or token ids).
  std::vector<Message> messages;
  std::vector<ToolSpec> tools;
  std::string tool_choice = "auto";  // auto | none | required | a tool name
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_tokens;
  std::string template_args_json;     // extra template variables, e.g. {"enable_thinking": false}
  size_t cache_messages = 0;          // Anthropic cache_control: the leading messages to keep cached
  bool json_mode = false;             // response_format json_object

  int max_tokens = 0;                 // 0: the server's default
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool logprobs = false;
};

// What the engine streams back for one request. Text has stop strings removed and never ends in half a
// UTF-8 character.
struct GenerationEvent {
  enum class Kind { Text, Reasoning, ToolCallStart, ToolCallArgs, ToolCallEnd, Progress, Done, Error };
  Kind kind = Kind::Text;
  std::string text;           // Text / Reasoning delta, ToolCallArgs JSON fragment
  int tool_index = 0;         // ToolCall*: which call (0, 1, ...)
  std::string tool_name;      // ToolCallStart
  std::string tool_id;        // ToolCallStart
  std::vector<SampledToken> tokens;  // Text: the tokens behind this delta (logprobs)
  // Progress (prefill of a long prompt): prompt_tokens processed so far of prompt_total.
  int prompt_total = 0;
  // Done:
  std::string finish_reason;  // stop | length | tool_calls
  std::optional<std::string> stop_sequence;  // the stop string that ended generation
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
  int cache_creation_tokens = 0;  // of the prefix the client asked to cache, tokens computed (not read)
  // Error:
  int http_status = 0;
  std::string error;
};

}  // namespace optiq::engine
