#include "chat/prompt.h"

#include <nlohmann/json.hpp>

#include "chat/template.h"
#include "util/error.h"

namespace optiq::chat {

using ojson = nlohmann::ordered_json;

namespace {

ojson parse_object_or_string(const std::string& s) {
  if (s.empty()) return ojson::object();
  try {
    return ojson::parse(s);
  } catch (const std::exception&) {
    return s;  // not JSON: templates then see the raw string
  }
}

ojson message_json(const engine::Message& m) {
  ojson j = {{"role", m.role}, {"content", m.content}};
  if (!m.reasoning.empty()) j["reasoning_content"] = m.reasoning;
  if (!m.tool_calls.empty()) {
    ojson calls = ojson::array();
    for (auto& c : m.tool_calls)
      calls.push_back({{"id", c.id},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", parse_object_or_string(c.arguments_json)}}}});
    j["tool_calls"] = calls;
  }
  if (m.role == "tool") {
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) j["name"] = m.name;
  }
  return j;
}

}  // namespace

PromptBuilder::PromptBuilder(std::string template_source, PromptOptions opts)
    : source_(std::move(template_source)), opts_(std::move(opts)), tmpl_(std::make_unique<ChatTemplate>(source_)) {}

PromptBuilder::~PromptBuilder() = default;

std::string PromptBuilder::render(const engine::GenerationRequest& req, bool add_generation_prompt) const {
  // Templates accept a system message only first: gather every system turn (Claude Code sends one after
  // the user's) into one leading system message, in order.
  std::string system;
  ojson msgs = ojson::array();
  for (auto& m : req.messages)
    if (m.role == "system") system += (system.empty() ? "" : "\n\n") + m.content;
  if (!system.empty()) msgs.push_back({{"role", "system"}, {"content", system}});
  for (auto& m : req.messages)
    if (m.role != "system") msgs.push_back(message_json(m));

  ojson ctx = {{"messages", msgs}, {"add_generation_prompt", add_generation_prompt},
               {"bos_token", opts_.bos_token}, {"eos_token", opts_.eos_token}};
  if (!req.tools.empty() && req.tool_choice != "none") {
    ojson tools = ojson::array();
    for (auto& t : req.tools)
      tools.push_back({{"type", "function"},
                       {"function", {{"name", t.name}, {"description", t.description},
                                     {"parameters", parse_object_or_string(t.parameters_json)}}}});
    ctx["tools"] = tools;
  }
  for (const std::string* args : {&opts_.default_template_args_json, &req.template_args_json}) {
    if (args->empty()) continue;
    ojson a = parse_object_or_string(*args);
    if (!a.is_object()) throw Error(ErrorKind::InvalidArgument, "chat template arguments must be a JSON object");
    for (auto& [k, v] : a.items()) ctx[k] = v;
  }
  return tmpl_->render(ctx);
}

}  // namespace optiq::chat
