// Every request that a real client sent (../shared/clients/*.json, see clients.md §9) parses; a few are
// checked field by field (Claude Code's billing header, its role:system message, tools, tool results).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/anthropic_protocol.h"
#include "server/openai_protocol.h"
#include "test_paths.h"

namespace optiq::server {
namespace {

using nlohmann::json;

std::string clients_dir() { return test::shared_path("clients"); }

json load_capture(const std::string& name) {
  std::ifstream in(clients_dir() + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string body_of(const json& cap) { return cap["request"]["body"].dump(); }

TEST(ClientCaptures, EveryRequestParses) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(clients_dir())) {
    if (entry.path().extension() != ".json") continue;
    std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    json cap = load_capture(name);
    const json& req = cap["request"];
    if (req["method"] != "POST") continue;  // GET /v1/models, HEAD /api/hello
    std::string path = req["path"];
    std::string body = body_of(cap);
    try {
      if (path == "/v1/chat/completions") {
        auto r = parse_openai_chat(body);
        EXPECT_FALSE(r.gen.messages.empty());
      } else if (path == "/v1/completions") {
        auto r = parse_openai_completion(body);
        EXPECT_TRUE(r.gen.prompt_text.has_value() || !r.gen.prompt_tokens.empty());
      } else if (path == "/v1/messages") {
        auto r = parse_anthropic_messages(body);
        EXPECT_GT(r.gen.max_tokens, 0);
        EXPECT_EQ(r.gen.model, req["body"]["model"]);
        for (const auto& m : r.gen.messages) EXPECT_EQ(m.content.find("x-anthropic-billing-header"), std::string::npos);
      } else if (path == "/v1/messages/count_tokens") {
        (void)parse_anthropic_count_tokens(body);
      } else {
        ADD_FAILURE() << "unknown POST path " << path;
        continue;
      }
      ++parsed;
    } catch (const ApiError& e) {
      ADD_FAILURE() << name << ": " << e.status << " " << e.message;
    }
  }
  EXPECT_GE(parsed, 29);
}

TEST(ClientCaptures, ClaudeCodeFirstRequest) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  json cap = load_capture("claude-code-1.json");
  const json& b = cap["request"]["body"];
  auto r = parse_anthropic_messages(body_of(cap));
  const auto& g = r.gen;
  EXPECT_EQ(g.model, "some-local-model");
  EXPECT_EQ(g.max_tokens, 32000);
  EXPECT_TRUE(g.stream);
  // system: billing block dropped, blocks 2 and 3 joined; then the user turn and the trailing role:system.
  ASSERT_EQ(g.messages.size(), 3u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[0].content, b["system"][1]["text"].get<std::string>() + "\n" + b["system"][2]["text"].get<std::string>());
  EXPECT_EQ(g.messages[0].content.rfind("You are a Claude agent", 0), 0u);
  EXPECT_EQ(g.messages[1].role, "user");
  EXPECT_EQ(g.messages[1].content, b["messages"][0]["content"][0]["text"].get<std::string>() + "\nsay hi");
  EXPECT_EQ(g.messages[2].role, "system");
  EXPECT_EQ(g.messages[2].content.rfind("# Environment", 0), 0u);
  // 12 tools, DeferredToolPlaceholder (defer_loading, nothing loaded it) kept out of the prompt.
  EXPECT_EQ(b["tools"].size(), 12u);
  EXPECT_EQ(g.tools.size(), 11u);
  ASSERT_EQ(r.deferred_tools.size(), 1u);
  EXPECT_EQ(r.deferred_tools[0].name, "DeferredToolPlaceholder");
  EXPECT_EQ(g.tools[0].name, "Agent");
  EXPECT_EQ(json::parse(g.tools[1].parameters_json), b["tools"][1]["input_schema"]);
  EXPECT_EQ(g.tools[1].description, b["tools"][1]["description"]);
  // thinking adaptive: the template's default is kept.
  EXPECT_EQ(r.thinking, "adaptive");
  EXPECT_EQ(g.template_args_json, "");
  EXPECT_EQ(g.tool_choice, "auto");
  EXPECT_TRUE(g.stop.empty());
}

TEST(ClaudeCode, ThinkingAndToolResultFollowup) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_anthropic_messages(body_of(load_capture("claude-code-thinking-followup.json")));
  const auto& m = r.gen.messages;
  ASSERT_EQ(m.size(), 5u);  // system, user, system, assistant, tool
  EXPECT_EQ(m[2].role, "system");
  EXPECT_EQ(m[3].role, "assistant");
  EXPECT_EQ(m[3].reasoning, "Thinking about it.");
  EXPECT_EQ(m[3].content, "Let me run that.");
  ASSERT_EQ(m[3].tool_calls.size(), 1u);
  EXPECT_EQ(m[3].tool_calls[0].name, "Read");
  EXPECT_EQ(json::parse(m[3].tool_calls[0].arguments_json), json::parse(R"({"file_path":"/home/user/project/README.md"})"));
  EXPECT_EQ(m[4].role, "tool");
  EXPECT_EQ(m[4].tool_call_id, m[3].tool_calls[0].id);
  EXPECT_EQ(m[4].name, "Read");
  EXPECT_EQ(m[4].content, "1\t# demo project\n2\t");
  EXPECT_FALSE(m[4].is_error);
}

TEST(ClaudeCode, DeniedToolIsError) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_anthropic_messages(body_of(load_capture("claude-code-tool-denied-followup.json")));
  const auto& last = r.gen.messages.back();
  EXPECT_EQ(last.role, "tool");
  EXPECT_TRUE(last.is_error);
  EXPECT_EQ(last.name, "Bash");
  EXPECT_EQ(last.content.rfind("This Bash command contains multiple operations.", 0), 0u);
}

TEST(ClaudeCode, ToolSearchLoadsWebFetch) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_anthropic_messages(body_of(load_capture("claude-code-toolsearch-followup.json")));
  EXPECT_EQ(r.gen.tools.size(), 12u);  // 13 sent; the placeholder stays deferred
  bool has_webfetch = std::any_of(r.gen.tools.begin(), r.gen.tools.end(), [](const auto& t) { return t.name == "WebFetch"; });
  EXPECT_TRUE(has_webfetch);
  ASSERT_EQ(r.deferred_tools.size(), 1u);
  EXPECT_EQ(r.deferred_tools[0].name, "DeferredToolPlaceholder");
  EXPECT_EQ(r.gen.messages.back().role, "tool");
  EXPECT_EQ(r.gen.messages.back().content, "Loaded tool: WebFetch");
}

TEST(ClaudeCode, MinimalEnvAndContinuation) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_anthropic_messages(body_of(load_capture("claude-code-minimal-env.json")));
  EXPECT_EQ(r.gen.max_tokens, 4096);
  EXPECT_EQ(r.gen.tools.size(), 21u);
  EXPECT_TRUE(r.deferred_tools.empty());
  EXPECT_EQ(r.thinking, "");
  auto c = parse_anthropic_messages(body_of(load_capture("claude-code-max-tokens-continuation.json")));
  EXPECT_EQ(c.gen.max_tokens, 128000);  // the server clamps; parsing keeps what was asked
  ASSERT_EQ(c.gen.messages.size(), 5u);
  EXPECT_EQ(c.gen.messages[3].role, "assistant");
  EXPECT_EQ(c.gen.messages[4].role, "user");
  EXPECT_NE(c.gen.messages[4].content.find("Output token limit hit"), std::string::npos);
}

TEST(ClaudeCode, CountTokensAndSubagent) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto ct = parse_anthropic_count_tokens(body_of(load_capture("claude-code-count-tokens-tools.json")));
  EXPECT_EQ(ct.gen.messages.size(), 1u);
  EXPECT_EQ(ct.gen.tools.size() + ct.deferred_tools.size(), 11u);
  auto sa = parse_anthropic_messages(body_of(load_capture("claude-code-subagent-small-model.json")));
  EXPECT_EQ(sa.gen.model, "local-small-model");
  EXPECT_EQ(sa.gen.tools.size(), 6u);  // 7 sent, one placeholder deferred
  EXPECT_EQ(sa.gen.messages[0].content.find("x-anthropic-billing-header"), std::string::npos);
}

TEST(OpenAiCaptures, ToolRoundTrip) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_openai_chat(body_of(load_capture("openai-chat-tool-result.json")));
  ASSERT_EQ(r.gen.messages.size(), 3u);
  EXPECT_EQ(r.gen.messages[1].role, "assistant");
  EXPECT_EQ(r.gen.messages[1].content, "");
  ASSERT_EQ(r.gen.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.gen.messages[1].tool_calls[0].arguments_json, R"({"city":"Paris"})");
  EXPECT_EQ(r.gen.messages[2].role, "tool");
  EXPECT_EQ(r.gen.messages[2].name, "get_weather");
  EXPECT_EQ(r.gen.messages[2].content, R"({"temp_c": 21})");
  ASSERT_EQ(r.gen.tools.size(), 1u);

  auto s = parse_openai_chat(body_of(load_capture("openai-chat-stream.json")));
  EXPECT_TRUE(s.gen.stream);
  EXPECT_TRUE(s.include_usage);
  auto n = parse_openai_chat(body_of(load_capture("openai-chat-nonstream.json")));
  EXPECT_EQ(n.gen.max_tokens, 32);
  EXPECT_FLOAT_EQ(n.gen.sampling.temperature, 0.2f);
  EXPECT_EQ(n.gen.messages[0].role, "system");
}

TEST(AnthropicCaptures, SdkRequests) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto r = parse_anthropic_messages(body_of(load_capture("anthropic-messages-tool-result.json")));
  ASSERT_EQ(r.gen.messages.size(), 3u);
  EXPECT_EQ(r.gen.messages[1].content, "Let me run that.");
  EXPECT_EQ(r.gen.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.gen.messages[2].role, "tool");
  EXPECT_EQ(r.gen.messages[2].name, "get_weather");
  auto t = parse_anthropic_messages(body_of(load_capture("anthropic-messages-tool-use.json")));
  EXPECT_EQ(t.gen.tool_choice, "auto");
  EXPECT_EQ(t.gen.max_tokens, 256);
  auto n = parse_anthropic_messages(body_of(load_capture("anthropic-messages-nonstream.json")));
  ASSERT_EQ(n.gen.messages.size(), 2u);
  EXPECT_EQ(n.gen.messages[0].content, "Be brief.");
  EXPECT_FALSE(n.gen.stream);
}

// The responses the real clients accepted (captured) have the same shape as ours.
TEST(ClientCaptures, OurBodiesHaveTheAcceptedKeys) {
  OPTIQ_REQUIRE_SHARED(clients_dir());
  auto keys = [](const json& j) {
    std::vector<std::string> k;
    for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
    std::sort(k.begin(), k.end());
    return k;
  };
  engine::GenerationEvent t;
  t.text = "Hello";
  engine::GenerationEvent d;
  d.kind = engine::GenerationEvent::Kind::Done;
  d.finish_reason = "stop";
  json ours_msg = json::parse(anthropic_message_response({"msg_x", 1, "m"}, {t, d}));
  json theirs_msg = load_capture("claude-code-nonstream-fallback.json")["response_that_client_accepted"]["body"];
  EXPECT_EQ(keys(ours_msg), keys(theirs_msg));
  EXPECT_EQ(keys(ours_msg["usage"]), keys(theirs_msg["usage"]));
  json ours_chat = json::parse(openai_chat_response({"c", 1, "m"}, {t, d}, {}));
  json theirs_chat = load_capture("openai-chat-nonstream.json")["response_that_client_accepted"]["body"];
  auto ck = keys(theirs_chat);
  ck.erase(std::remove(ck.begin(), ck.end(), "system_fingerprint"), ck.end());
  EXPECT_EQ(keys(ours_chat), ck);
  EXPECT_EQ(keys(ours_chat["choices"][0]), keys(theirs_chat["choices"][0]));
  json models = json::parse(models_list_body({{"local-model", 1700000000, "local"}}));
  json theirs_models = load_capture("anthropic-models-list.json")["response_that_client_accepted"]["body"];
  EXPECT_EQ(keys(models), keys(theirs_models));
  EXPECT_EQ(models["data"][0], theirs_models["data"][0]);
}

}  // namespace
}  // namespace optiq::server
