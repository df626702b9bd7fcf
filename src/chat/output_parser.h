#pragma once
// Splits streamed model output into text, reasoning (<think>...</think>) and tool calls, as events.
// Text flows out as soon as it cannot be the start of a tag; a tool call is announced as soon as its name is
// known and its arguments stream as they arrive. Malformed markup never throws: it comes back as text.
#include <memory>
#include <string>
#include <vector>

#include "engine/request.h"

namespace optiq::chat {

enum class ToolCallFormat {
  None,
  Hermes,      // Qwen2.5 / Qwen3 / Hermes: <tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>
  Qwen3Coder,  // <tool_call>\n<function=NAME>\n<parameter=P>\nvalue\n</parameter>\n</function>\n</tool_call>
  Llama3Json,  // {"name": "...", "parameters": {...}} as the whole answer (optionally after <|python_tag|>)
  Mistral,     // [TOOL_CALLS][{"name": .., "arguments": {..}}] and the newer [TOOL_CALLS]name[ARGS]{..}
};

struct OutputFormat {
  ToolCallFormat tools = ToolCallFormat::None;
  bool thinking = false;            // the model writes <think>...</think>
  bool starts_in_thinking = false;  // the prompt already opened the think block
};

// Chooses the format from the chat template source and the end of the rendered prompt.
OutputFormat detect_output_format(const std::string& chat_template, const std::string& rendered_prompt_tail);

// Events: Text, Reasoning, ToolCallStart (tool_index, tool_name, tool_id "call_" + 24 alphanumerics),
// ToolCallArgs (fragments that concatenate to the arguments' JSON object), ToolCallEnd. Never Done/Error.
class OutputParser {
 public:
  OutputParser(OutputFormat fmt, bool tools_requested);  // without tools requested, tool markup is text
  ~OutputParser();
  OutputParser(OutputParser&&) noexcept;
  OutputParser& operator=(OutputParser&&) noexcept;

  std::vector<engine::GenerationEvent> push(const std::string& text);  // any split, even mid-tag
  std::vector<engine::GenerationEvent> finish();                       // end of generation
  bool saw_tool_call() const;  // a call was announced (finish_reason "tool_calls")

 private:
  struct Impl;  // output_parser_impl.h
  std::unique_ptr<Impl> impl_;
};

}  // namespace optiq::chat
