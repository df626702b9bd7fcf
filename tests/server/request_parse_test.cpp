// Request parsing for both APIs: field mapping, and a table of bad requests with their exact status,
// error type (in both shapes) and message.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/anthropic_protocol.h"
#include "server/openai_protocol.h"

namespace optiq::server {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------- OpenAI chat

TEST(OpenAiChatParse, FullRequest) {
  auto r = parse_openai_chat(R"({
    "model": "m", "max_completion_tokens": 77, "max_tokens": 5,
    "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
    "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"42": -100, "7": 2.5}, "seed": 1234,
    "stop": ["END", "", "STOP"], "logprobs": true, "top_logprobs": 3, "n": 1,
    "stream": true, "stream_options": {"include_usage": true},
    "response_format": {"type": "json_object"},
    "chat_template_kwargs": {"enable_thinking": false},
    "user": "ignored", "store": false, "some_future_field": {"x": 1},
    "messages": [
      {"role": "developer", "content": "dev"},
      {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
      {"role": "assistant", "content": null, "refusal": null, "reasoning_content": "hmm",
       "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
  })");
  const auto& g = r.gen;
  EXPECT_EQ(g.model, "m");
  EXPECT_EQ(g.max_tokens, 77);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(g.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, -0.5f);
  ASSERT_EQ(g.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(g.sampling.logit_bias[0], (std::pair<int32_t, float>{42, -100.0f}));  // nlohmann sorts keys
  EXPECT_EQ(g.sampling.logit_bias[1], (std::pair<int32_t, float>{7, 2.5f}));
  EXPECT_EQ(g.sampling.seed, std::optional<uint64_t>(1234));
  EXPECT_EQ(g.stop, (std::vector<std::string>{"END", "STOP"}));
  EXPECT_TRUE(g.logprobs);
  EXPECT_EQ(g.sampling.top_logprobs, 3);
  EXPECT_TRUE(g.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(g.json_mode);
  EXPECT_EQ(r.response_format, "json_object");
  EXPECT_EQ(g.template_args_json, R"({"enable_thinking":false})");
  ASSERT_EQ(g.messages.size(), 4u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[0].content, "dev");
  EXPECT_EQ(g.messages[1].role, "user");
  EXPECT_EQ(g.messages[1].content, "Hello");
  EXPECT_EQ(g.messages[2].role, "assistant");
  EXPECT_EQ(g.messages[2].content, "");
  EXPECT_EQ(g.messages[2].reasoning, "hmm");
  ASSERT_EQ(g.messages[2].tool_calls.size(), 1u);
  EXPECT_EQ(g.messages[2].tool_calls[0].id, "call_1");
  EXPECT_EQ(g.messages[2].tool_calls[0].name, "get_weather");
  EXPECT_EQ(g.messages[2].tool_calls[0].arguments_json, R"({"city":"Paris"})");
  EXPECT_EQ(g.messages[3].role, "tool");
  EXPECT_EQ(g.messages[3].tool_call_id, "call_1");
  EXPECT_EQ(g.messages[3].name, "get_weather");  // resolved from the assistant's call
  EXPECT_EQ(g.messages[3].content, R"({"temp_c": 21})");
  ASSERT_EQ(g.tools.size(), 1u);
  EXPECT_EQ(g.tools[0].name, "get_weather");
  EXPECT_EQ(g.tools[0].description, "d");
  // Keys keep the client's order (as transformers and mlx_lm.server render them), not sorted order: the schema
  // text reaches the chat template unchanged, so repeated requests give the same prompt prefix.
  EXPECT_EQ(g.tools[0].parameters_json, R"({"type":"object","properties":{"city":{"type":"string"}}})");
  EXPECT_EQ(g.tool_choice, "get_weather");
}

TEST(OpenAiChatParse, Defaults) {
  auto r = parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(r.gen.model, "");
  EXPECT_EQ(r.gen.max_tokens, 0);
  EXPECT_FALSE(r.gen.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_FALSE(r.gen.logprobs);
  EXPECT_EQ(r.gen.tool_choice, "auto");
  EXPECT_TRUE(r.gen.stop.empty());
  EXPECT_FALSE(r.gen.sampling.seed.has_value());
  EXPECT_FLOAT_EQ(r.gen.sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(r.gen.template_args_json, "");
}

TEST(OpenAiChatParse, StopStringAndOddButValidValues) {
  auto r = parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}], "max_tokens": 10.0,
                                 "top_k": -1, "repetition_penalty": 0, "n": null, "temperature": null,
                                 "stop": ["a","b","c","d","e"]})");
  EXPECT_EQ(r.gen.stop.size(), 5u);  // more than OpenAI's 4 is fine here
  EXPECT_EQ(r.gen.max_tokens, 10);
  EXPECT_EQ(r.gen.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.gen.sampling.repetition_penalty, 1.0f);  // mlx-lm: 0 = off
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.0f);        // null = absent
  auto s = parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}], "stop":"\n\n"})");
  EXPECT_EQ(s.gen.stop, (std::vector<std::string>{"\n\n"}));
}

TEST(OpenAiChatParse, JsonSchemaAndParallelToolCalls) {
  auto r = parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}], "parallel_tool_calls": false,
    "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"},"strict":true}}})");
  EXPECT_TRUE(r.gen.json_mode);
  EXPECT_EQ(r.response_format, "json_schema");
  EXPECT_EQ(r.json_schema, R"({"type":"object"})");
  EXPECT_FALSE(r.parallel_tool_calls);
}

TEST(OpenAiChatParse, ToolWithoutParametersGetsEmptySchema) {
  auto r = parse_openai_chat(
      R"({"messages":[{"role":"user","content":"hi"}], "tools":[{"type":"function","function":{"name":"now"}}]})");
  ASSERT_EQ(r.gen.tools.size(), 1u);
  EXPECT_EQ(r.gen.tools[0].parameters_json, R"({"type":"object","properties":{}})");
}

TEST(OpenAiChatParse, ServerSamplingDefaultsApplyToOmittedFields) {
  engine::SamplingParams d;
  d.temperature = 0.7f;
  d.top_p = 0.8f;
  d.top_k = 20;
  d.min_p = 0.05f;
  auto r = parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}],"temperature":0,"top_k":null})", d);
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.0f);  // given
  EXPECT_FLOAT_EQ(r.gen.sampling.top_p, 0.8f);        // server default
  EXPECT_EQ(r.gen.sampling.top_k, 20);                // null = omitted
  EXPECT_FLOAT_EQ(r.gen.sampling.min_p, 0.05f);
  auto a = parse_anthropic_messages(R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"top_p":0.5})", d);
  EXPECT_FLOAT_EQ(a.gen.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(a.gen.sampling.top_p, 0.5f);
  auto c = parse_openai_completion(R"({"prompt":"x"})", d);
  EXPECT_EQ(c.gen.sampling.top_k, 20);
}

// ---------------------------------------------------------------- OpenAI completions

TEST(OpenAiCompletionParse, PromptForms) {
  auto a = parse_openai_completion(R"({"model":"m","prompt":"Once upon","max_tokens":16,"stream":true,"suffix":"x"})");
  EXPECT_EQ(a.gen.prompt_text, std::optional<std::string>("Once upon"));
  EXPECT_TRUE(a.gen.messages.empty());
  EXPECT_EQ(a.gen.max_tokens, 16);
  EXPECT_TRUE(a.gen.stream);
  auto b = parse_openai_completion(R"({"prompt":[1,2,3]})");
  EXPECT_FALSE(b.gen.prompt_text.has_value());
  EXPECT_EQ(b.gen.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  auto c = parse_openai_completion(R"({"prompt":["only one"]})");
  EXPECT_EQ(c.gen.prompt_text, std::optional<std::string>("only one"));
  auto d = parse_openai_completion(R"({"prompt":[[5,6]], "logprobs": 2, "echo": false})");
  EXPECT_EQ(d.gen.prompt_tokens, (std::vector<int32_t>{5, 6}));
  EXPECT_TRUE(d.gen.logprobs);
  EXPECT_EQ(d.gen.sampling.top_logprobs, 2);
}

// ---------------------------------------------------------------- Anthropic

TEST(AnthropicParse, FullRequest) {
  auto r = parse_anthropic_messages(R"({
    "model": "claude-x", "max_tokens": 1024, "stream": true,
    "system": [{"type":"text","text":"x-anthropic-billing-header: cc_version=1.2.3; cc_entrypoint=cli;"},
               {"type":"text","text":"A","cache_control":{"type":"ephemeral"}},
               {"type":"text","text":"B"}],
    "messages": [
      {"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},{"type":"text","text":"there"}]},
      {"role":"system","content":"env info"},
      {"role":"assistant","content":[
         {"type":"thinking","thinking":"let me see","signature":"sig"},
         {"type":"redacted_thinking","data":"xxx"},
         {"type":"text","text":"Let me run that."},
         {"type":"tool_use","id":"toolu_1","name":"Read","input":{"offset":1,"file_path":"/a","limit":5}}]},
      {"role":"user","content":[
         {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"line1"},{"type":"text","text":"line2"}],"is_error":true},
         {"type":"text","text":"and then?"}]}
    ],
    "tools": [{"name":"Read","description":"reads","input_schema":{"type":"object"}},
              {"name":"Later","description":"d","input_schema":{},"defer_loading":true},
              {"type":"web_search_20250305","name":"web_search","max_uses":5}],
    "tool_choice": {"type":"any","disable_parallel_tool_use":true},
    "thinking": {"type":"enabled","budget_tokens":2048},
    "stop_sequences": ["###"], "temperature": 0.7, "top_p": 0.9, "top_k": 20,
    "metadata": {"user_id":"u"}, "context_management": {"edits":[]}, "output_config": {"effort":"high"},
    "service_tier": "auto", "container": null, "mcp_servers": []
  })");
  const auto& g = r.gen;
  EXPECT_EQ(g.model, "claude-x");
  EXPECT_EQ(g.max_tokens, 1024);
  EXPECT_TRUE(g.stream);
  ASSERT_EQ(g.messages.size(), 6u);
  EXPECT_EQ(g.messages[0].role, "system");
  EXPECT_EQ(g.messages[0].content, "A\nB");  // billing header dropped
  EXPECT_EQ(g.messages[1].role, "user");
  EXPECT_EQ(g.messages[1].content, "hi\nthere");
  EXPECT_EQ(g.messages[2].role, "system");
  EXPECT_EQ(g.messages[2].content, "env info");
  EXPECT_EQ(g.messages[3].role, "assistant");
  EXPECT_EQ(g.messages[3].content, "Let me run that.");
  EXPECT_EQ(g.messages[3].reasoning, "let me see");
  ASSERT_EQ(g.messages[3].tool_calls.size(), 1u);
  EXPECT_EQ(g.messages[3].tool_calls[0].id, "toolu_1");
  EXPECT_EQ(g.messages[3].tool_calls[0].name, "Read");
  EXPECT_EQ(g.messages[3].tool_calls[0].arguments_json, R"({"offset":1,"file_path":"/a","limit":5})");
  EXPECT_EQ(g.messages[4].role, "tool");
  EXPECT_EQ(g.messages[4].tool_call_id, "toolu_1");
  EXPECT_EQ(g.messages[4].name, "Read");
  EXPECT_EQ(g.messages[4].content, "line1\nline2");
  EXPECT_TRUE(g.messages[4].is_error);
  EXPECT_EQ(g.messages[5].role, "user");
  EXPECT_EQ(g.messages[5].content, "and then?");
  ASSERT_EQ(g.tools.size(), 1u);
  EXPECT_EQ(g.tools[0].name, "Read");
  EXPECT_EQ(g.tools[0].parameters_json, R"({"type":"object"})");
  ASSERT_EQ(r.deferred_tools.size(), 1u);
  EXPECT_EQ(r.deferred_tools[0].name, "Later");
  EXPECT_EQ(r.skipped_server_tools, 1);
  EXPECT_EQ(g.tool_choice, "required");
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_EQ(r.thinking, "enabled");
  EXPECT_EQ(r.thinking_budget, 2048);
  EXPECT_EQ(g.template_args_json, R"({"enable_thinking":true})");
  EXPECT_EQ(g.stop, (std::vector<std::string>{"###"}));
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.sampling.top_k, 20);
}

TEST(AnthropicParse, ThinkingModes) {
  auto base = [](const std::string& thinking) {
    return R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}])" + thinking + "}";
  };
  EXPECT_EQ(parse_anthropic_messages(base(R"(,"thinking":{"type":"disabled"})")).gen.template_args_json,
            R"({"enable_thinking":false})");
  auto adaptive = parse_anthropic_messages(base(R"(,"thinking":{"type":"adaptive","display":"omitted"})"));
  EXPECT_EQ(adaptive.thinking, "adaptive");
  EXPECT_EQ(adaptive.gen.template_args_json, "");
  EXPECT_EQ(parse_anthropic_messages(base("")).gen.template_args_json, "");
}

TEST(AnthropicParse, ToolReferenceLoadsDeferredTool) {
  auto r = parse_anthropic_messages(R"({"model":"m","max_tokens":5,
    "tools":[{"name":"ToolSearch","input_schema":{"type":"object"}},
             {"name":"WebFetch","input_schema":{"type":"object"},"defer_loading":true},
             {"name":"Placeholder","input_schema":{},"defer_loading":true}],
    "messages":[{"role":"user","content":"fetch"},
      {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"ToolSearch","input":{"query":"select:WebFetch"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"tool_reference","tool_name":"WebFetch"}]}]}]})");
  ASSERT_EQ(r.gen.tools.size(), 2u);
  EXPECT_EQ(r.gen.tools[1].name, "WebFetch");
  ASSERT_EQ(r.deferred_tools.size(), 1u);
  EXPECT_EQ(r.deferred_tools[0].name, "Placeholder");
  ASSERT_EQ(r.gen.messages.size(), 3u);
  EXPECT_EQ(r.gen.messages[2].role, "tool");
  EXPECT_EQ(r.gen.messages[2].content, "Loaded tool: WebFetch");
}

TEST(AnthropicParse, CountTokensWithoutMaxTokens) {
  auto r = parse_anthropic_count_tokens(R"({"model":"m","system":"sys","messages":[{"role":"user","content":"Say hi"}],"tools":[]})");
  EXPECT_EQ(r.gen.max_tokens, 0);
  ASSERT_EQ(r.gen.messages.size(), 2u);
  EXPECT_EQ(r.gen.messages[0].content, "sys");
}

TEST(AnthropicParse, ToolChoiceForms) {
  auto base = [](const std::string& tc) {
    return R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],
               "tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":)" + tc + "}";
  };
  EXPECT_EQ(parse_anthropic_messages(base(R"({"type":"auto"})")).gen.tool_choice, "auto");
  EXPECT_EQ(parse_anthropic_messages(base(R"({"type":"none"})")).gen.tool_choice, "none");
  EXPECT_EQ(parse_anthropic_messages(base(R"({"type":"tool","name":"t"})")).gen.tool_choice, "t");
}

// ---------------------------------------------------------------- bad requests

enum class Api { Chat, Completion, Messages, CountTokens };

struct BadCase {
  Api api;
  const char* body;
  int status;
  const char* openai_type;     // in the OpenAI body
  const char* anthropic_type;  // in the Anthropic body
  const char* message_part;
};

ApiError parse_expecting_error(const BadCase& c) {
  try {
    switch (c.api) {
      case Api::Chat: (void)parse_openai_chat(c.body); break;
      case Api::Completion: (void)parse_openai_completion(c.body); break;
      case Api::Messages: (void)parse_anthropic_messages(c.body); break;
      case Api::CountTokens: (void)parse_anthropic_count_tokens(c.body); break;
    }
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for: " << c.body;
  return ApiError();
}

#define U R"("messages":[{"role":"user","content":"hi"}])"
#define AM R"("model":"m","max_tokens":10,)"

const BadCase kBadCases[] = {
    // Body
    {Api::Chat, "{not json", 400, "invalid_request_error", "invalid_request_error", "Invalid JSON in request body"},
    {Api::Messages, "", 400, "invalid_request_error", "invalid_request_error", "Invalid JSON in request body"},
    {Api::Chat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, "invalid_request_error", "invalid_request_error", "Invalid JSON in request body: parse error"},
    {Api::Chat, "[1,2]", 400, "invalid_request_error", "invalid_request_error", "must be a JSON object, got an array"},
    {Api::Messages, "\"str\"", 400, "invalid_request_error", "invalid_request_error", "must be a JSON object, got a string"},
    // OpenAI chat
    {Api::Chat, "{}", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages'"},
    {Api::Chat, R"({"messages":[]})", 400, "invalid_request_error", "invalid_request_error", "'messages' must be a non-empty array"},
    {Api::Chat, R"({"messages":"hi"})", 400, "invalid_request_error", "invalid_request_error", "'messages' must be an array, got a string"},
    {Api::Chat, R"({"messages":[{"content":"hi"}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].role'"},
    {Api::Chat, R"({"messages":[{"role":"robot","content":"hi"}]})", 400, "invalid_request_error", "invalid_request_error", "Invalid role 'robot' at 'messages[0].role'"},
    {Api::Chat, R"({"messages":[{"role":"user","content":42}]})", 400, "invalid_request_error", "invalid_request_error", "'messages[0].content' must be a string, an array of content parts or null, got an integer"},
    {Api::Chat, R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}]})", 400, "invalid_request_error", "invalid_request_error", "This model does not support images ('messages[0].content[0].type' is 'image_url')"},
    {Api::Chat, R"({"messages":[{"role":"user","content":[{"type":"input_audio"}]}]})", 400, "invalid_request_error", "invalid_request_error", "does not support audio"},
    {Api::Chat, R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].content[0].text'"},
    {Api::Chat, R"({"messages":[{"role":"tool","content":"x"}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].tool_call_id'"},
    {Api::Chat, R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function"}]}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].tool_calls[0].function'"},
    {Api::Chat, R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":3}}]}]})", 400, "invalid_request_error", "invalid_request_error", "'messages[0].tool_calls[0].function.arguments' must be a string, got an integer"},
    {Api::Chat, "{" U R"(,"max_tokens":0})", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be >= 1, got 0"},
    {Api::Chat, "{" U R"(,"max_tokens":-5})", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be >= 1, got -5"},
    {Api::Chat, "{" U R"(,"max_completion_tokens":"100"})", 400, "invalid_request_error", "invalid_request_error", "'max_completion_tokens' must be an integer, got a string"},
    {Api::Chat, "{" U R"(,"max_tokens":1.5})", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be an integer, got a number"},
    {Api::Chat, "{" U R"(,"temperature":3})", 400, "invalid_request_error", "invalid_request_error", "'temperature' must be between 0 and 2, got 3"},
    {Api::Chat, "{" U R"(,"temperature":"hot"})", 400, "invalid_request_error", "invalid_request_error", "'temperature' must be a number, got a string"},
    {Api::Chat, "{" U R"(,"top_p":1.5})", 400, "invalid_request_error", "invalid_request_error", "'top_p' must be between 0 and 1, got 1.5"},
    {Api::Chat, "{" U R"(,"top_k":-2})", 400, "invalid_request_error", "invalid_request_error", "'top_k' must be >= -1, got -2"},
    {Api::Chat, "{" U R"(,"min_p":2})", 400, "invalid_request_error", "invalid_request_error", "'min_p' must be between 0 and 1"},
    {Api::Chat, "{" U R"(,"repetition_penalty":-1})", 400, "invalid_request_error", "invalid_request_error", "'repetition_penalty' must be >= 0, got -1"},
    {Api::Chat, "{" U R"(,"presence_penalty":2.5})", 400, "invalid_request_error", "invalid_request_error", "'presence_penalty' must be between -2 and 2, got 2.5"},
    {Api::Chat, "{" U R"(,"logit_bias":{"abc":1}})", 400, "invalid_request_error", "invalid_request_error", "'logit_bias' keys must be token ids"},
    {Api::Chat, "{" U R"(,"logit_bias":{"5":500}})", 400, "invalid_request_error", "invalid_request_error", "'logit_bias.5' must be between -100 and 100"},
    {Api::Chat, "{" U R"(,"seed":"x"})", 400, "invalid_request_error", "invalid_request_error", "'seed' must be an integer, got a string"},
    {Api::Chat, "{" U R"(,"stop":5})", 400, "invalid_request_error", "invalid_request_error", "'stop' must be a string or an array of strings, got an integer"},
    {Api::Chat, "{" U R"(,"stop":["a",1]})", 400, "invalid_request_error", "invalid_request_error", "'stop[1]' must be a string, got an integer"},
    {Api::Chat, "{" U R"(,"n":2})", 400, "invalid_request_error", "invalid_request_error", "'n' must be 1"},
    {Api::Chat, "{" U R"(,"stream":"yes"})", 400, "invalid_request_error", "invalid_request_error", "'stream' must be a boolean, got a string"},
    {Api::Chat, "{" U R"(,"logprobs":true,"top_logprobs":21})", 400, "invalid_request_error", "invalid_request_error", "'top_logprobs' must be between 0 and 20, got 21"},
    {Api::Chat, "{" U R"(,"top_logprobs":2})", 400, "invalid_request_error", "invalid_request_error", "'top_logprobs' requires 'logprobs' to be true"},
    {Api::Chat, "{" U R"(,"tools":[{"type":"code_interpreter"}]})", 400, "invalid_request_error", "invalid_request_error", "Unsupported tool type 'code_interpreter' at 'tools[0].type'"},
    {Api::Chat, "{" U R"(,"tools":[{"type":"function","function":{"description":"x"}}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'tools[0].function.name'"},
    {Api::Chat, "{" U R"(,"tool_choice":"maybe"})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice' must be 'auto', 'none', 'required' or a function object"},
    {Api::Chat, "{" U R"(,"tool_choice":"required"})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice' is 'required' but no 'tools' were given"},
    {Api::Chat, "{" U R"(,"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice' names function 'b', which is not in 'tools'"},
    {Api::Chat, "{" U R"(,"response_format":{"type":"xml"}})", 400, "invalid_request_error", "invalid_request_error", "'response_format.type' must be 'text', 'json_object' or 'json_schema', got 'xml'"},
    {Api::Chat, "{" U R"(,"chat_template_kwargs":"enable_thinking"})", 400, "invalid_request_error", "invalid_request_error", "'chat_template_kwargs' must be an object, got a string"},
    {Api::Chat, "{" U R"(,"model":7})", 400, "invalid_request_error", "invalid_request_error", "'model' must be a string, got an integer"},
    // OpenAI completions
    {Api::Completion, R"({"model":"m"})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'prompt'"},
    {Api::Completion, R"({"prompt":["a","b"]})", 400, "invalid_request_error", "invalid_request_error", "'prompt' holds 2 prompts; this server takes one prompt per request"},
    {Api::Completion, R"({"prompt":[]})", 400, "invalid_request_error", "invalid_request_error", "'prompt' must not be empty"},
    {Api::Completion, R"({"prompt":[1,-2]})", 400, "invalid_request_error", "invalid_request_error", "'prompt[1]' must be a token id"},
    {Api::Completion, R"({"prompt":{"a":1}})", 400, "invalid_request_error", "invalid_request_error", "'prompt' must be a string or an array of token ids, got an object"},
    {Api::Completion, R"({"prompt":"x","echo":true})", 400, "invalid_request_error", "invalid_request_error", "'echo' is not supported"},
    {Api::Completion, R"({"prompt":"x","n":3})", 400, "invalid_request_error", "invalid_request_error", "'n' must be 1"},
    {Api::Completion, R"({"prompt":"x","best_of":2})", 400, "invalid_request_error", "invalid_request_error", "'best_of' must be 1"},
    // Anthropic messages
    {Api::Messages, R"({"max_tokens":10,)" U "}", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'model'"},
    {Api::Messages, R"({"model":"m",)" U "}", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'max_tokens'"},
    {Api::Messages, R"({"model":"m","max_tokens":0,)" U "}", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be >= 1, got 0"},
    {Api::Messages, R"({"model":"m","max_tokens":3000000000,)" U "}", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be <= 2147483647, got 3000000000"},
    {Api::Messages, R"({"model":"m","max_tokens":"10",)" U "}", 400, "invalid_request_error", "invalid_request_error", "'max_tokens' must be an integer, got a string"},
    {Api::Messages, "{" AM R"("messages":[]})", 400, "invalid_request_error", "invalid_request_error", "'messages' must be a non-empty array"},
    {Api::Messages, "{" AM R"("messages":[{"role":"tool","content":"x"}]})", 400, "invalid_request_error", "invalid_request_error", "Invalid role 'tool' at 'messages[0].role' (expected user, assistant or system)"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user"}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].content'"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}]}]})", 400, "invalid_request_error", "invalid_request_error", "This model does not support images ('messages[0].content[0].type' is 'image')"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"document","source":{}}]}]})", 400, "invalid_request_error", "invalid_request_error", "Document blocks are not supported"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{}}]}]}]})", 400, "invalid_request_error", "invalid_request_error", "This model does not support images ('messages[0].content[0].content[0].type' is 'image')"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages[0].content[0].tool_use_id'"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]})", 400, "invalid_request_error", "invalid_request_error", "Unsupported content block type 'tool_use' at 'messages[0].content[0].type'"},
    {Api::Messages, "{" AM R"("messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":"{}"}]}]})", 400, "invalid_request_error", "invalid_request_error", "'messages[0].content[0].input' must be an object, got a string"},
    {Api::Messages, "{" AM R"("messages":[{"role":"user","content":[{"type":"text","text":5}]}]})", 400, "invalid_request_error", "invalid_request_error", "'messages[0].content[0].text' must be a string, got an integer"},
    {Api::Messages, "{" AM U R"(,"system":7})", 400, "invalid_request_error", "invalid_request_error", "'system' must be a string or an array of text blocks, got an integer"},
    {Api::Messages, "{" AM U R"(,"temperature":1.5})", 400, "invalid_request_error", "invalid_request_error", "'temperature' must be between 0 and 1, got 1.5"},
    {Api::Messages, "{" AM U R"(,"top_k":-1})", 400, "invalid_request_error", "invalid_request_error", "'top_k' must be >= 0, got -1"},
    {Api::Messages, "{" AM U R"(,"stop_sequences":"END"})", 400, "invalid_request_error", "invalid_request_error", "'stop_sequences' must be an array of strings, got a string"},
    // Tool schemas that are not objects.
    {Api::Chat, "{" U R"(,"tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}]})", 400, "invalid_request_error", "invalid_request_error", "'tools[0].function.parameters' must be an object, got a string"},
    {Api::Messages, "{" AM U R"(,"tools":[{"name":"x","input_schema":[1]}]})", 400, "invalid_request_error", "invalid_request_error", "'tools[0].input_schema' must be an object, got an array"},
    {Api::Messages, "{" AM U R"(,"tools":[{"name":"x"}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'tools[0].input_schema'"},
    {Api::Messages, "{" AM U R"(,"tools":[{"input_schema":{}}]})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'tools[0].name'"},
    {Api::Messages, "{" AM U R"(,"tool_choice":{"type":"sometimes"}})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none', got 'sometimes'"},
    {Api::Messages, "{" AM U R"(,"tool_choice":{"type":"any"}})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice' requires 'tools'"},
    {Api::Messages, "{" AM U R"(,"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"tool","name":"b"}})", 400, "invalid_request_error", "invalid_request_error", "'tool_choice.name' names tool 'b', which is not in 'tools'"},
    {Api::Messages, "{" AM U R"(,"thinking":{"type":"maybe"}})", 400, "invalid_request_error", "invalid_request_error", "'thinking.type' must be 'enabled', 'disabled' or 'adaptive', got 'maybe'"},
    {Api::Messages, "{" AM U R"(,"thinking":{"type":"enabled","budget_tokens":0}})", 400, "invalid_request_error", "invalid_request_error", "'thinking.budget_tokens' must be >= 1, got 0"},
    {Api::Messages, "{" AM U R"(,"stream":1})", 400, "invalid_request_error", "invalid_request_error", "'stream' must be a boolean, got an integer"},
    {Api::CountTokens, R"({"model":"m"})", 400, "invalid_request_error", "invalid_request_error", "Missing required field 'messages'"},
    {Api::CountTokens, R"({"model":"m","max_tokens":-3,)" U "}", -1, nullptr, nullptr, nullptr},  // ignored: OK
};

#undef U
#undef AM

TEST(BadRequests, StatusTypeAndMessageInBothShapes) {
  for (const auto& c : kBadCases) {
    if (c.status < 0) {
      EXPECT_NO_THROW((void)parse_anthropic_count_tokens(c.body)) << c.body;
      continue;
    }
    SCOPED_TRACE(c.body);
    ApiError e = parse_expecting_error(c);
    EXPECT_EQ(e.status, c.status);
    json o = json::parse(openai_error_body(e));
    EXPECT_EQ(o["error"]["type"], c.openai_type);
    std::string om = o["error"]["message"].get<std::string>();
    EXPECT_NE(om.find(c.message_part), std::string::npos) << "message: " << om;
    EXPECT_EQ(openai_status(e), c.status);
    json a = json::parse(anthropic_error_body(e));
    EXPECT_EQ(a["type"], "error");
    EXPECT_EQ(a["error"]["type"], c.anthropic_type);
    EXPECT_EQ(a["error"]["message"], om);
    EXPECT_EQ(anthropic_status(e), c.status);
  }
}

TEST(BadRequests, ParamNamesTheField) {
  try {
    (void)parse_openai_chat(R"({"messages":[{"role":"user","content":"hi"}],"temperature":-1})");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(json::parse(openai_error_body(e))["error"]["param"], "temperature");
  }
}

}  // namespace
}  // namespace optiq::server
