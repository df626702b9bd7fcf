// The Jinja engine: a template (the input up to a line "----") rendered with data (the JSON after it, or a
// conversation with tools when there is none).
#include <nlohmann/json.hpp>

#include "chat/template.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string src = optiq::fuzz::as_string(data, size), ctx_text;
  if (const size_t sep = src.find("\n----\n"); sep != std::string::npos) ctx_text = src.substr(sep + 6), src.resize(sep);
  OPTIQ_FUZZ_GUARD({
    optiq::chat::ChatTemplate t(src);
    nlohmann::ordered_json ctx = ctx_text.empty()
        ? nlohmann::ordered_json::parse(R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "tool", "content": "42"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})")
        : nlohmann::ordered_json::parse(ctx_text);
    if (ctx.is_object()) {
      optiq::chat::RenderOptions o;
      o.max_output_bytes = 1 << 20;
      o.max_steps = 200000;
      t.render(ctx, o);
    }
  });
  return 0;
}
