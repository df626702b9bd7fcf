// Renders every chat template under ../shared/chat-templates against the conversations in
// tests/data/chat/goldens.json (made by tools/gen_chat_goldens.py with Python jinja2) and compares bytes.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "chat/template.h"
#include "test_paths.h"
#include "text_diff.h"
#include "util/error.h"

namespace optiq::chat {
namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "chat-templates/x.jinja", "chat-templates/ollama/templates.jsonl#3", "…/tokenizer_config/y.json#chat_template"
std::string load_template(const std::string& ref) {
  size_t hash = ref.find('#');
  std::string path = test::shared_path(ref.substr(0, hash));
  std::string text = read_file(path);
  if (hash == std::string::npos) return text;
  std::string frag = ref.substr(hash + 1);
  if (frag == "chat_template") return ojson::parse(text)["chat_template"].get<std::string>();
  size_t line_no = std::stoul(frag);
  std::istringstream lines(text);
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i)
    if (i == line_no) return ojson::parse(line).begin().value().get<std::string>();
  return {};
}

using test::first_diff;

TEST(ChatGolden, AllTemplatesMatchPythonJinja2) {
  std::string dir = test::shared_path("chat-templates");
  OPTIQ_REQUIRE_SHARED(dir);
  ojson doc = ojson::parse(read_file(test::source_dir() + "/tests/data/chat/goldens.json"));
  std::map<std::string, ojson> contexts;
  for (auto& c : doc["cases"]) {
    ojson ctx = c["context"];
    ctx["bos_token"] = doc["bos_token"];
    ctx["eos_token"] = doc["eos_token"];
    contexts[c["name"].get<std::string>()] = ctx;
  }
  RenderOptions opts;
  std::tm now{};
  now.tm_year = 2025 - 1900;
  now.tm_mon = 0;
  now.tm_mday = 15;
  now.tm_hour = 10;
  now.tm_min = 30;
  now.tm_sec = 45;
  now.tm_wday = 3;  // Wednesday
  now.tm_yday = 14;
  opts.now = now;

  int total = 0, passed = 0, templates_ok = 0;
  for (auto& t : doc["templates"]) {
    std::string ref = t["template"].get<std::string>();
    std::string src = load_template(ref);
    std::unique_ptr<ChatTemplate> tmpl;
    try {
      tmpl = std::make_unique<ChatTemplate>(src);
    } catch (const Error& e) {
      total += static_cast<int>(t["cases"].size());
      ADD_FAILURE() << ref << ": parse failed: " << e.what();
      continue;
    }
    bool all_ok = true;
    for (auto& c : t["cases"]) {
      ++total;
      std::string name = c["case"].get<std::string>();
      const ojson& ctx = contexts.at(name);
      std::string where = ref + " [" + name + "]";
      try {
        std::string out = tmpl->render(ctx, opts);
        if (c.contains("output") && out == c["output"].get<std::string>()) {
          ++passed;
          continue;
        }
        all_ok = false;
        if (c.contains("output")) ADD_FAILURE() << where << ": output differs " << first_diff(c["output"], out);
        else ADD_FAILURE() << where << ": rendered, but Python failed with " << (c.contains("raise") ? c["raise"] : c["error"]);
      } catch (const Error& e) {
        if (c.contains("raise") && e.kind() == ErrorKind::InvalidArgument && c["raise"].get<std::string>() == e.what()) {
          ++passed;
          continue;
        }
        if (c.contains("error") && e.kind() == ErrorKind::InvalidArgument) {  // Python failed too (message may differ)
          ++passed;
          continue;
        }
        all_ok = false;
        ADD_FAILURE() << where << ": threw \"" << e.what() << "\", Python: "
                      << (c.contains("output") ? "rendered" : c.contains("raise") ? c["raise"].dump() : c["error"].dump());
      }
    }
    templates_ok += all_ok;
  }
  std::printf("chat goldens: %d/%d cases pass, %d/%zu templates fully\n", passed, total, templates_ok,
              doc["templates"].size());
  EXPECT_EQ(passed, total);
}

}  // namespace
}  // namespace optiq::chat

namespace optiq::chat {
namespace {

// Small feature snippets (tools/gen_chat_goldens.py SNIPPETS), rendered by Python jinja2 with one context.
TEST(ChatGolden, SnippetsMatchPythonJinja2) {
  ojson doc = ojson::parse(read_file(test::source_dir() + "/tests/data/chat/goldens.json"));
  RenderOptions opts;
  std::tm now{};
  now.tm_year = 125;
  now.tm_mday = 15;
  now.tm_hour = 10;
  now.tm_min = 30;
  now.tm_sec = 45;
  now.tm_wday = 3;
  now.tm_yday = 14;
  opts.now = now;
  const ojson& ctx = doc["snippet_context"];
  int passed = 0;
  for (auto& s : doc["snippets"]) {
    std::string src = s["template"].get<std::string>();
    try {
      std::string out = ChatTemplate(src).render(ctx, opts);
      if (s.contains("output")) {
        EXPECT_EQ(out, s["output"].get<std::string>()) << "template: " << src;
        passed += out == s["output"].get<std::string>();
      } else {
        ADD_FAILURE() << "template: " << src << "\nrendered " << ojson(out).dump() << " but Python failed: "
                      << (s.contains("raise") ? s["raise"] : s["error"]);
      }
    } catch (const Error& e) {
      if (s.contains("raise")) {
        EXPECT_EQ(std::string(e.what()), s["raise"].get<std::string>()) << "template: " << src;
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        ++passed;
      } else if (s.contains("error")) {
        ++passed;
      } else {
        ADD_FAILURE() << "template: " << src << "\nthrew: " << e.what();
      }
    }
  }
  std::printf("chat snippets: %d/%zu pass\n", passed, doc["snippets"].size());
}

}  // namespace
}  // namespace optiq::chat
