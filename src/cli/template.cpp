// optiq template: prints the prompt text the server would tokenize for a chat request, rendered by the same
// code (request parser -> PromptBuilder), so that a user can see what a chat template makes of a conversation.
// Only the tokenizer is loaded (for the model's template and BOS/EOS strings), never the weights.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "chat/prompt.h"
#include "chat/template_choice.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "engine/tokenizer_load.h"
#include "server/anthropic_protocol.h"
#include "server/openai_protocol.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::cli {

namespace {

using ojson = nlohmann::ordered_json;

ojson read_json_file(const std::string& path, const char* flag) {
  if (!file_exists(path)) throw Error(ErrorKind::InvalidArgument, std::string(flag) + ": no such file: " + path);
  try {
    return ojson::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::InvalidArgument, std::string(flag) + ": " + path + " is not valid JSON: " + e.what());
  }
}

// The request body the file stands for: an array is the messages; an object is a request body (its
// "messages", "tools", "chat_template_kwargs", ... are used as the server would use them).
ojson request_body(const std::string& messages_path, const std::string& tools_path) {
  ojson file = read_json_file(messages_path, "--messages");
  ojson body;
  if (file.is_array()) body = {{"messages", file}};
  else if (file.is_object() && file.contains("messages")) body = file;
  else
    throw Error(ErrorKind::InvalidArgument,
                "--messages: " + messages_path + " must hold an array of messages or an object with \"messages\"");
  if (!tools_path.empty()) {
    ojson tools = read_json_file(tools_path, "--tools");
    if (tools.is_object() && tools.contains("tools")) tools = tools["tools"];
    if (!tools.is_array())
      throw Error(ErrorKind::InvalidArgument, "--tools: " + tools_path + " must hold an array of tools or an object with \"tools\"");
    body["tools"] = tools;
  }
  return body;
}

engine::GenerationRequest parse_request(ojson body, bool anthropic) {
  if (!anthropic) return server::parse_openai_chat(body.dump()).gen;
  // The /v1/messages parser minus max_tokens; "model" (required there) does not change the prompt.
  if (!body.contains("model")) body["model"] = "optiq-template";
  return server::parse_anthropic_count_tokens(body.dump()).gen;
}

int run(int argc, char** argv) {
  std::string model, messages, tools, chat_template, chat_template_args;
  bool add_generation_prompt = false, use_default_template = false, anthropic = false;
  Flags f("optiq template MODEL --messages FILE.json [--tools FILE.json] [--add-generation-prompt] [options]");
  f.add("model", &model, "model folder or .gguf file (or give it as the first argument); only its tokenizer is read");
  f.add("messages", &messages,
        "JSON file: an array of OpenAI-style messages, or a request body with \"messages\" (and \"tools\", ...)");
  f.add("tools", &tools, "JSON file: an array of OpenAI-style tools (or an object with \"tools\"); overrides the body's");
  f.add_bool("add-generation-prompt", &add_generation_prompt,
             "end with the assistant turn's opening, as the server does for every request (default off)");
  f.add("chat-template", &chat_template, "chat template file or text (overrides the model's, as optiq serve)");
  f.add_bool("use-default-chat-template", &use_default_template, "use a plain ChatML template when the model has none");
  f.add("chat-template-args", &chat_template_args,
        "JSON object passed to the template, e.g. {\"enable_thinking\": false} (as optiq serve)");
  f.add_bool("anthropic", &anthropic, "read --messages as an Anthropic /v1/messages body (system, content blocks)");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  model = hub::resolve(f.model_arg(model, "optiq template MODEL --messages FILE.json"), hub::Kind::Model);
  if (messages.empty()) throw Error(ErrorKind::InvalidArgument, "no --messages FILE.json given");
  if (!chat_template_args.empty()) {
    ojson args;
    try {
      args = ojson::parse(chat_template_args);
    } catch (const nlohmann::json::exception&) {
    }
    if (!args.is_object()) throw Error(ErrorKind::InvalidArgument, "--chat-template-args must be a JSON object");
  }

  engine::GenerationRequest req = parse_request(request_body(messages, tools), anthropic);
  auto tok = engine::load_tokenizer(model);
  const auto& info = tok->info();
  std::string tmpl = chat::choose_chat_template(info.chat_template, chat_template, use_default_template);
  if (tmpl.empty())
    throw Error(ErrorKind::InvalidArgument,
                model + ": the model has no chat template (give one with --chat-template or --use-default-chat-template)");
  chat::PromptBuilder prompts(tmpl, chat::PromptOptions{info.bos_token, info.eos_token, chat_template_args});
  std::string text = prompts.render(req, add_generation_prompt);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int run_template(int argc, char** argv) {
  // Every failure (bad flag, missing or malformed file, request the server would reject, template error) is
  // one line on stderr and exit code 2.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "optiq template: error: %s\n", msg.c_str());
    return 2;
  }
}

}  // namespace optiq::cli
