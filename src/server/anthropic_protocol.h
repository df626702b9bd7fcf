#pragma once
// The Anthropic Messages wire format: /v1/messages and /v1/messages/count_tokens requests ->
// engine::GenerationRequest, engine::GenerationEvent sequences -> Message JSON and the SSE event stream.
// Pure functions and small state machines; no HTTP. Parsers throw ApiError (400) naming the field.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/api_error.h"
#include "server/protocol_util.h"

namespace optiq::server {

// ---- requests ----

struct AnthropicRequest {
  engine::GenerationRequest gen;
  // thinking.type: "" (absent), enabled, disabled or adaptive. enabled/disabled set the template variable
  // enable_thinking (in gen.template_args_json); absent/adaptive leave the model's (or server's) default.
  std::string thinking;
  int thinking_budget = 0;            // thinking.budget_tokens (0: not given). Not enforced by the engine.
  bool parallel_tool_calls = true;    // !tool_choice.disable_parallel_tool_use
  // Tools with defer_loading: true that no tool_result has loaded (tool_reference) yet. They stay out of
  // gen.tools, as the real API keeps them out of the prompt until tool search loads them.
  std::vector<engine::ToolSpec> deferred_tools;
  int skipped_server_tools = 0;       // Anthropic-hosted tools (web_search_..., no input_schema): not rendered
};

// POST /v1/messages: model and max_tokens (integer >= 1) are required, as Anthropic does.
// `defaults`: the server's sampling settings (--temp, --top-p, ...); fields the body gives override them.
AnthropicRequest parse_anthropic_messages(const std::string& body, const engine::SamplingParams& defaults = {});
// POST /v1/messages/count_tokens: the same body without max_tokens (ignored if present).
AnthropicRequest parse_anthropic_count_tokens(const std::string& body,
                                             const engine::SamplingParams& defaults = {});

// Prefix of Claude Code's per-session first system block; dropped so the prompt prefix stays cacheable.
inline constexpr const char* kBillingHeaderPrefix = "x-anthropic-billing-header:";

// ---- responses ----

// stop_reason for a Done event: end_turn | max_tokens | stop_sequence | tool_use.
std::string anthropic_stop_reason(const engine::GenerationEvent& done, bool saw_tool_use);
// The signature given to a thinking block: a stable opaque string derived from its text (Claude Code echoes
// it back; we never verify it).
std::string thinking_signature(const std::string& thinking);

// Non-stream Message body from a finished generation's events. content is never empty (an empty text block
// when nothing was generated). usage.input_tokens excludes cached tokens, reported as cache_read_input_tokens
// (Anthropic's accounting). An Error event throws the ApiError to answer with.
std::string anthropic_message_response(const ResponseMeta& meta,
                                       const std::vector<engine::GenerationEvent>& events);

// The SSE event stream ("event: NAME\ndata: {...}\n\n" frames). begin() returns message_start (usage with
// the prompt's tokens split into input_tokens and cache_read_input_tokens as the first engine event reports
// them, output_tokens 1) and a ping; on_event() calls it first if needed. Blocks are opened and closed as events switch between text,
// thinking and tool calls (a thinking block gets a signature_delta before its content_block_stop). Progress
// -> ping. Done -> closes the open block (an empty text block if there was none), message_delta with
// stop_reason and cumulative usage, message_stop. Error -> "event: error". Then finished().
class AnthropicStream {
 public:
  AnthropicStream(ResponseMeta meta, int input_tokens);
  std::string begin();
  std::string on_event(const engine::GenerationEvent& ev);
  bool finished() const { return finished_; }

 private:
  enum class Block { None, Text, Thinking, ToolUse };
  std::string open_block(Block kind, const nlohmann::ordered_json& content_block);
  std::string close_block();
  std::string delta(const nlohmann::ordered_json& d) const;

  ResponseMeta meta_;
  int input_tokens_ = 0;
  int cached_ = 0;    // prompt tokens read from the prompt cache
  int creation_ = 0;  // prompt tokens computed for a cache_control breakpoint
  bool started_ = false;
  bool finished_ = false;
  bool saw_tool_use_ = false;
  Block open_ = Block::None;
  int index_ = -1;  // index of the open (or last) content block
  std::string thinking_;  // text of the open thinking block (for its signature)
};

// {"input_tokens": N}
std::string count_tokens_body(int input_tokens);

}  // namespace optiq::server
