// `optiq template` as a user runs it: the built binary on a real model folder (stories260K from ../shared),
// its stdout compared byte for byte with tests/data/cli/template_goldens.json, which Python jinja2 rendered
// (tools/gen_template_cli_goldens.py). Errors: exit code 2 and one line on stderr.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "text_diff.h"
#include "util/mapped_file.h"
#include "run_optiq.h"

namespace optiq {
namespace {

using ojson = nlohmann::ordered_json;
using test::first_diff;

// Runs `optiq template MODEL ARGS...` with stdout and stderr captured.
CmdResult run_template(const std::string& model, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"template", model};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_optiq(argv, "template_cmd");
}

std::string substitute(std::string s) {
  for (auto [key, value] : {std::pair<std::string, std::string>{"{data}", test::source_dir() + "/tests/data/cli"},
                            {"{shared}", test::shared_dir()}}) {
    for (size_t at; (at = s.find(key)) != std::string::npos;) s.replace(at, key.size(), value);
  }
  return s;
}

std::string write_scratch(const std::string& name, const std::string& text) {
  static const std::string dir = test::scratch_dir("template_cmd_inputs");
  std::ofstream(dir + "/" + name, std::ios::binary) << text;
  return dir + "/" + name;
}

class TemplateCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("models/stories260K-hf");
    OPTIQ_REQUIRE_SHARED(model_);
    ASSERT_TRUE(file_exists(optiq_bin())) << "build the optiq binary first: " << optiq_bin();
  }
  // A failure: exit code 2, nothing on stdout, exactly one line on stderr that says `what`.
  void expect_error(const CmdResult& r, const std::string& what) {
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("optiq template: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << "stderr: " << r.err << "\nexpected to contain: " << what;
  }
  std::string model_;
};

TEST_F(TemplateCommand, OutputMatchesPythonJinja2) {
  ojson doc = ojson::parse(read_text_file(test::source_dir() + "/tests/data/cli/template_goldens.json"));
  ASSERT_EQ(doc["model"], "models/stories260K-hf");
  ASSERT_GE(doc["cases"].size(), 5u);
  for (auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::vector<std::string> args;
    for (auto& a : c["args"]) args.push_back(substitute(a.get<std::string>()));
    CmdResult r = run_template(model_, args);
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const std::string want = c["output"].get<std::string>();
    EXPECT_TRUE(r.out == want) << first_diff(want, r.out);
  }
}

TEST_F(TemplateCommand, ReadsOnlyTheTokenizer) {
  // A folder with the tokenizer files and no weights (nor config.json) renders the same as the full model.
  namespace fs = std::filesystem;
  std::string dir = test::scratch_dir("template_cmd_no_weights");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"})
    fs::copy_file(model_ + "/" + f, dir + "/" + f);
  std::string msgs = test::source_dir() + "/tests/data/cli/template_messages.json";
  std::vector<std::string> args = {"--messages", msgs, "--chat-template", "{{ bos_token }}|{{ eos_token }}|{{ messages|length }}"};
  CmdResult full = run_template(model_, args), bare = run_template(dir, args);
  EXPECT_EQ(full.rc, 0) << full.err;
  EXPECT_EQ(full.out, "<s>|</s>|6");
  EXPECT_EQ(bare.rc, 0) << bare.err;
  EXPECT_EQ(bare.out, full.out);
  // A GGUF file: the tokenizer from its metadata.
  std::string gguf = test::shared_path("models/stories260K/stories260K.gguf");
  if (file_exists(gguf)) {
    CmdResult g = run_template(gguf, args);
    EXPECT_EQ(g.rc, 0) << g.err;
    EXPECT_EQ(g.out, full.out);
  }
}

TEST_F(TemplateCommand, DefaultTemplateWhenAsked) {
  std::string msgs = write_scratch("short.json", R"([{"role":"user","content":"Hi"}])");
  CmdResult r = run_template(model_, {"--messages", msgs, "--use-default-chat-template", "--add-generation-prompt"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_F(TemplateCommand, AnthropicBodyRendersLikeTheOpenAiForm) {
  std::string tmpl = test::shared_path("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja");
  OPTIQ_REQUIRE_SHARED(tmpl);
  std::string anthropic = write_scratch("anthropic.json", R"({
    "model": "claude-sonnet-4-5", "max_tokens": 64,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
               {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                 {"role": "assistant", "content": "Hello."},
                 {"role": "user", "content": "Bye"}]})");
  std::string openai = write_scratch("openai.json", R"([{"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}])");
  CmdResult a = run_template(model_, {"--anthropic", "--messages", anthropic, "--chat-template", tmpl, "--add-generation-prompt"});
  CmdResult o = run_template(model_, {"--messages", openai, "--chat-template", tmpl, "--add-generation-prompt"});
  EXPECT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(a.out == o.out) << first_diff(o.out, a.out);
  EXPECT_EQ(a.out.find("billing-header"), std::string::npos);
}

TEST_F(TemplateCommand, ErrorsAreOneLineAndExitCode2) {
  std::string msgs = test::source_dir() + "/tests/data/cli/template_messages.json";
  expect_error(run_template(model_, {"--messages", "/nonexistent/m.json", "--use-default-chat-template"}),
               "--messages: no such file: /nonexistent/m.json");
  expect_error(run_template(model_, {"--messages", write_scratch("bad.json", "[{\"role\": \"user\",\n"),
                                     "--use-default-chat-template"}),
               "is not valid JSON");
  expect_error(run_template(model_, {"--messages", write_scratch("num.json", "42"), "--use-default-chat-template"}),
               "must hold an array of messages or an object with \"messages\"");
  expect_error(run_template(model_, {"--messages", msgs, "--tools", write_scratch("tools.json", "{\"a\": 1}"),
                                     "--use-default-chat-template"}),
               "--tools:");
  expect_error(run_template(model_, {"--messages", write_scratch("role.json", R"([{"role": "wizard", "content": "x"}])"),
                                     "--use-default-chat-template"}),
               "wizard");
  expect_error(run_template(model_, {"--messages", msgs}), "has no chat template");
  expect_error(run_template(model_, {"--messages", msgs, "--chat-template", "{{ raise_exception('no tools, please') }}"}),
               "no tools, please");
  expect_error(run_template(model_, {"--messages", msgs, "--chat-template", "{% if %}"}), "chat template: line 1");
  expect_error(run_template(model_, {"--messages", msgs, "--use-default-chat-template", "--chat-template-args", "[1]"}),
               "--chat-template-args must be a JSON object");
  expect_error(run_template(model_ + "/nope", {"--messages", msgs, "--use-default-chat-template"}),
               "no such model folder or file");
  expect_error(run_template(model_, {"--use-default-chat-template"}), "no --messages");
  expect_error(run_template(model_, {"--messages", msgs, "--frobnicate"}), "frobnicate");
}

}  // namespace
}  // namespace optiq
