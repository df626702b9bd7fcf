#pragma once
// Splits streamed model output into text, reasoning (<think>...</think>) and tool calls, as events.
// Text flows out as soon as it cannot be the start of a tag; a tool call is announced once complete.
#include <string>
#include <vector>

#include "engine/request.h"

namespace optiq::chat {

enum class ToolCallFormat {
  None,
  Hermes,      // Qwen2.5 / Qwen3 / Hermes: <tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>
  Qwen3Coder,  // <tool_call><function=NAME><parameter=P>value</parameter></function></tool_call>
  Llama3Json,  // {"name": "...", "parameters": {...}} as the whole answer (optionally after <|python_tag|>)
  Mistral,     // [TOOL_CALLS][{"name": .., "arguments": {..}}]
};

struct OutputFormat {
  ToolCallFormat tools = ToolCallFormat::None;
  bool thinking = false;            // the model writes <think>...</think>
  bool starts_in_thinking = false;  // the prompt already opened the think block
};

// Chooses the format from the chat template source and the end of the rendered prompt.
OutputFormat detect_output_format(const std::string& chat_template, const std::string& rendered_prompt_tail);

class OutputParser {
 public:
  OutputParser(OutputFormat fmt, bool tools_requested);
  std::vector<engine::GenerationEvent> push(const std::string& text);
  std::vector<engine::GenerationEvent> finish();
  bool saw_tool_call() const { return n_tool_calls_ > 0; }

 private:
  void emit_text(std::vector<engine::GenerationEvent>& out, const std::string& s, bool reasoning);
  bool emit_tool_call(std::vector<engine::GenerationEvent>& out, const std::string& body);
  void process(std::vector<engine::GenerationEvent>& out, bool final);

  OutputFormat fmt_;
  bool tools_;
  enum class State { Start, Thinking, Text, ToolCall } state_;
  std::string buf_;
  bool seen_content_ = false;  // some non-whitespace text was emitted (thinking only opens at the start)
  bool trim_leading_ = false;  // drop whitespace right after </think>
  int n_tool_calls_ = 0;
};

}  // namespace optiq::chat
