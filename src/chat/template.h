#pragma once
// A Hugging Face chat template (jinja2 syntax), rendered as transformers renders it: jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]) with the
// `tojson` filter, `raise_exception` and `strftime_now` globals and the `{% generation %}` tag.
//
// Parse once, render many times: render() is const and thread-safe.
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace optiq::chat {

struct Body;

struct RenderOptions {
  std::optional<std::tm> now;           // what strftime_now() formats; default: the local time at render
  size_t max_output_bytes = 64u << 20;  // limit on the output (and on any string built on the way)
  int max_call_depth = 64;              // nested macro calls
  uint64_t max_steps = 20'000'000;      // loop iterations + macro calls + filter elements
};

class ChatTemplate {
 public:
  // Throws optiq::Error(BadModel, "chat template: line N: ...") on a syntax error.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // context: a JSON object, e.g. {"messages": [...], "tools": [...], "add_generation_prompt": true,
  // "bos_token": "<s>", "eos_token": "</s>", ...extra kwargs such as enable_thinking}.
  // Errors are optiq::Error(InvalidArgument): raise_exception(msg) throws with exactly `msg`; other template
  // errors (undefined values used, type errors, limits) start with "chat template: ".
  std::string render(const nlohmann::ordered_json& context, const RenderOptions& opts = {}) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<Body> root_;
};

}  // namespace optiq::chat
