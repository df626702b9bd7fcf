#pragma once
// Turns a neutral chat request into the prompt text a model expects, through its chat template.
#include <memory>
#include <string>

#include "engine/request.h"

namespace optiq::chat {

class ChatTemplate;

struct PromptOptions {
  std::string bos_token, eos_token;
  std::string default_template_args_json;  // server-wide (--chat-template-args), request args override
};

class PromptBuilder {
 public:
  PromptBuilder(std::string template_source, PromptOptions opts);  // throws Error on a template syntax error
  ~PromptBuilder();
  // The rendered prompt. Template errors (raise_exception) are Error(InvalidArgument).
  std::string render(const engine::GenerationRequest& req, bool add_generation_prompt = true) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  PromptOptions opts_;
  std::unique_ptr<ChatTemplate> tmpl_;
};

}  // namespace optiq::chat
