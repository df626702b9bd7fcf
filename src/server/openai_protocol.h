#pragma once
// The OpenAI wire format: /v1/chat/completions and /v1/completions requests -> engine::GenerationRequest,
// engine::GenerationEvent sequences -> responses (JSON and SSE), and the /v1/models bodies.
// Pure functions and small state machines; no HTTP. Parsers throw ApiError (400) naming the field.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/api_error.h"
#include "server/protocol_util.h"

namespace optiq::server {

// ---- requests ----

struct OpenAiChatRequest {
  engine::GenerationRequest gen;
  bool include_usage = false;          // stream_options.include_usage
  std::string response_format = "text";  // text | json_object | json_schema (gen.json_mode for the last two)
  std::string json_schema;             // response_format.json_schema.schema, serialized; "" if none
  bool parallel_tool_calls = true;
};
// `defaults`: the server's sampling settings (--temp, --top-p, ...); fields the body gives override them.
OpenAiChatRequest parse_openai_chat(const std::string& body, const engine::SamplingParams& defaults = {});

struct OpenAiCompletionRequest {
  engine::GenerationRequest gen;  // prompt_text, or prompt_tokens; no messages
  bool include_usage = false;
};
OpenAiCompletionRequest parse_openai_completion(const std::string& body,
                                                const engine::SamplingParams& defaults = {});

// ---- responses ----

struct OpenAiEncodeOptions {
  bool logprobs = false;      // report choices[].logprobs (from GenerationEvent::tokens)
  bool include_usage = false; // stream: a final `choices: []` chunk with usage (other chunks carry usage:null)
  TokenTextFn token_text;     // token id -> text, for logprobs; may be empty when logprobs is off
};
OpenAiEncodeOptions encode_options(const OpenAiChatRequest& req, TokenTextFn token_text = {});
OpenAiEncodeOptions encode_options(const OpenAiCompletionRequest& req, TokenTextFn token_text = {});

// Non-stream bodies from a finished generation's events (Text, Reasoning, ToolCall*, Done; Progress
// ignored). An Error event throws the ApiError to answer with. meta.model: the request's model.
std::string openai_chat_response(const ResponseMeta& meta, const std::vector<engine::GenerationEvent>& events,
                                 const OpenAiEncodeOptions& opts);
std::string openai_completion_response(const ResponseMeta& meta,
                                       const std::vector<engine::GenerationEvent>& events,
                                       const OpenAiEncodeOptions& opts);

// SSE streams. on_event returns zero or more complete frames ("data: {...}\n\n"); the first call also
// emits the role chunk (begin() sends it early, e.g. before a long prefill). Progress events become
// ": keepalive N/M" comments. Done -> final chunk with finish_reason, the usage chunk if requested,
// "data: [DONE]". Error -> "data: {"error":{...}}". After either, finished() is true and calls return "".
class OpenAiChatStream {
 public:
  OpenAiChatStream(ResponseMeta meta, OpenAiEncodeOptions opts);
  std::string begin();
  std::string on_event(const engine::GenerationEvent& ev);
  bool finished() const { return finished_; }

 private:
  std::string chunk(const nlohmann::ordered_json& delta, const nlohmann::ordered_json& logprobs,
                    const char* finish_reason) const;
  ResponseMeta meta_;
  OpenAiEncodeOptions opts_;
  bool started_ = false;
  bool finished_ = false;
  bool saw_tool_call_ = false;
};

class OpenAiCompletionStream {
 public:
  OpenAiCompletionStream(ResponseMeta meta, OpenAiEncodeOptions opts);
  std::string begin() { return {}; }  // completions have no role chunk; for symmetry
  std::string on_event(const engine::GenerationEvent& ev);
  bool finished() const { return finished_; }

 private:
  std::string chunk(const std::string& text, const nlohmann::ordered_json& logprobs,
                    const char* finish_reason) const;
  ResponseMeta meta_;
  OpenAiEncodeOptions opts_;
  size_t text_offset_ = 0;
  bool finished_ = false;
};

// OpenAI finish_reason for a Done event: stop | length | tool_calls (tool calls seen + "stop" -> tool_calls).
std::string openai_finish_reason(const engine::GenerationEvent& done, bool saw_tool_call);

}  // namespace optiq::server
