// Response encoders: exact JSON of non-stream bodies, exact SSE frame sequences, and every field the SDKs
// read (clients.md §4). Streams are also accumulated the way the SDK helpers do and compared with the
// non-stream body for the same events.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>

#include "server/anthropic_protocol.h"
#include "server/openai_protocol.h"

namespace optiq::server {
namespace {

using engine::GenerationEvent;
using nlohmann::json;
using Kind = GenerationEvent::Kind;

GenerationEvent text(std::string t, std::vector<engine::SampledToken> toks = {}) {
  GenerationEvent e;
  e.kind = Kind::Text;
  e.text = std::move(t);
  e.tokens = std::move(toks);
  return e;
}
GenerationEvent reasoning(std::string t) {
  GenerationEvent e;
  e.kind = Kind::Reasoning;
  e.text = std::move(t);
  return e;
}
GenerationEvent tool_start(int idx, std::string id, std::string name) {
  GenerationEvent e;
  e.kind = Kind::ToolCallStart;
  e.tool_index = idx;
  e.tool_id = std::move(id);
  e.tool_name = std::move(name);
  return e;
}
GenerationEvent tool_args(int idx, std::string frag) {
  GenerationEvent e;
  e.kind = Kind::ToolCallArgs;
  e.tool_index = idx;
  e.text = std::move(frag);
  return e;
}
GenerationEvent tool_end(int idx) {
  GenerationEvent e;
  e.kind = Kind::ToolCallEnd;
  e.tool_index = idx;
  return e;
}
GenerationEvent done(std::string reason, int prompt, int completion, int cached = 0,
                     std::optional<std::string> stop_seq = std::nullopt) {
  GenerationEvent e;
  e.kind = Kind::Done;
  e.finish_reason = std::move(reason);
  e.prompt_tokens = prompt;
  e.completion_tokens = completion;
  e.cached_tokens = cached;
  e.stop_sequence = std::move(stop_seq);
  return e;
}
GenerationEvent progress(int n, int total) {
  GenerationEvent e;
  e.kind = Kind::Progress;
  e.prompt_tokens = n;
  e.prompt_total = total;
  return e;
}
GenerationEvent error(int status, std::string msg) {
  GenerationEvent e;
  e.kind = Kind::Error;
  e.http_status = status;
  e.error = std::move(msg);
  return e;
}

struct Frame {
  std::string event;    // "" when there is no event: line
  std::string data;     // raw data payload
  std::string comment;  // ": ..." lines
};

std::vector<Frame> parse_sse(const std::string& s) {
  std::vector<Frame> frames;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated frame: " << s.substr(pos);
    if (end == std::string::npos) break;
    std::string block = s.substr(pos, end - pos);
    pos = end + 2;
    Frame f;
    size_t lp = 0;
    while (lp <= block.size()) {
      size_t le = block.find('\n', lp);
      if (le == std::string::npos) le = block.size();
      std::string line = block.substr(lp, le - lp);
      if (line.rfind("event: ", 0) == 0) f.event = line.substr(7);
      else if (line.rfind("data: ", 0) == 0) f.data = line.substr(6);
      else if (line.rfind(":", 0) == 0) f.comment = line;
      else ADD_FAILURE() << "unexpected SSE line: " << line;
      lp = le + 1;
    }
    frames.push_back(f);
  }
  return frames;
}

const ResponseMeta kChatMeta{"chatcmpl-test", 1700000000, "local-model"};
const ResponseMeta kMsgMeta{"msg_test", 1700000000, "claude-local"};

std::vector<GenerationEvent> think_text_tool_events() {
  return {progress(512, 1000),
          reasoning("I should "),
          reasoning("check."),
          text("Let me check."),
          tool_start(0, "call_1", "get_weather"),
          tool_args(0, R"({"city":)"),
          tool_args(0, R"("Paris"})"),
          tool_end(0),
          done("tool_calls", 20, 15, 8)};
}

// ================================================================ OpenAI chat

TEST(OpenAiChatEncode, NonStreamTextExact) {
  std::vector<GenerationEvent> ev = {text("Hel"), text("lo"), done("stop", 9, 2, 4)};
  EXPECT_EQ(openai_chat_response(kChatMeta, ev, {}),
            R"({"id":"chatcmpl-test","object":"chat.completion","created":1700000000,"model":"local-model",)"
            R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello","refusal":null},)"
            R"("logprobs":null,"finish_reason":"stop"}],)"
            R"("usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}})");
}

TEST(OpenAiChatEncode, NonStreamThinkingAndToolCallsExact) {
  EXPECT_EQ(openai_chat_response(kChatMeta, think_text_tool_events(), {}),
            R"({"id":"chatcmpl-test","object":"chat.completion","created":1700000000,"model":"local-model",)"
            R"("choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,)"
            R"("reasoning_content":"I should check.","reasoning":"I should check.",)"
            R"("tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},)"
            R"("logprobs":null,"finish_reason":"tool_calls"}],)"
            R"("usage":{"prompt_tokens":20,"completion_tokens":15,"total_tokens":35,"prompt_tokens_details":{"cached_tokens":8}}})");
}

TEST(OpenAiChatEncode, NonStreamEdgeCases) {
  // Only a tool call: content null, "stop" from the engine still reports tool_calls.
  json j = json::parse(openai_chat_response(
      kChatMeta, {tool_start(0, "", "f"), tool_end(0), done("stop", 1, 1)}, {}));
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  auto& tc = j["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(tc["id"].get<std::string>().rfind("call_", 0), 0u);  // generated id
  EXPECT_EQ(tc["function"]["arguments"], "{}");
  // Nothing at all: content "", length.
  json k = json::parse(openai_chat_response(kChatMeta, {done("length", 3, 0)}, {}));
  EXPECT_EQ(k["choices"][0]["message"]["content"], "");
  EXPECT_EQ(k["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(k["choices"][0]["message"].contains("reasoning_content"));
  // Invalid UTF-8 never throws.
  EXPECT_NO_THROW((void)openai_chat_response(kChatMeta, {text("\xe4\xbd"), done("stop", 1, 1)}, {}));
}

TEST(OpenAiChatEncode, NonStreamErrorEventThrows) {
  try {
    (void)openai_chat_response(kChatMeta, {text("a"), error(400, "prompt is too long: 9 tokens > 8 maximum")}, {});
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.message, "prompt is too long: 9 tokens > 8 maximum");
  }
}

std::string token_text(int32_t id) {
  static const std::map<int32_t, std::string> vocab = {{1, "Hel"}, {2, "lo"}, {3, "Hi"}, {4, "\xe4"}};
  auto it = vocab.find(id);
  return it == vocab.end() ? "?" : it->second;
}

TEST(OpenAiChatEncode, LogprobsShape) {
  OpenAiEncodeOptions opts{true, false, token_text};
  std::vector<GenerationEvent> ev = {text("Hel", {{1, -0.5f, {{1, -0.5f}, {3, -1.25f}}}}),
                                     text("lo", {{2, -0.1f, {}}}), done("stop", 1, 2)};
  json j = json::parse(openai_chat_response(kChatMeta, ev, opts));
  EXPECT_EQ(j["choices"][0]["logprobs"].dump(),
            R"({"content":[{"bytes":[72,101,108],"logprob":-0.5,"token":"Hel","top_logprobs":[{"bytes":[72,101,108],"logprob":-0.5,"token":"Hel"},{"bytes":[72,105],"logprob":-1.25,"token":"Hi"}]},)"
            R"({"bytes":[108,111],"logprob":-0.1,"token":"lo","top_logprobs":[]}]})");
  // Field order as OpenAI sends it.
  std::string raw = openai_chat_response(kChatMeta, ev, opts);
  EXPECT_NE(raw.find(R"({"token":"Hel","logprob":-0.5,"bytes":[72,101,108],"top_logprobs":[)"), std::string::npos);
  // Half a UTF-8 character: the token text is replaced, the bytes are exact.
  json k = json::parse(openai_chat_response(kChatMeta, {text("", {{4, -2.0f, {}}}), done("stop", 1, 1)}, opts));
  EXPECT_EQ(k["choices"][0]["logprobs"]["content"][0]["bytes"], json::array({228}));
}

TEST(OpenAiChatStream, TextExactFrames) {
  OpenAiChatStream s(kChatMeta, OpenAiEncodeOptions{false, true, {}});
  std::string out = s.begin();
  out += s.on_event(progress(512, 1000));
  out += s.on_event(text("Hel"));
  out += s.on_event(text(""));  // nothing
  out += s.on_event(text("lo"));
  out += s.on_event(done("stop", 9, 2, 0));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.on_event(text("late")), "");
  const std::string head = R"(data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"local-model",)";
  EXPECT_EQ(out,
            head + R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n"
            ": keepalive 512/1000\n\n" +
            head + R"("choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n" +
            head + R"("choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n" +
            head + R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})" "\n\n" +
            head + R"("choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}})" "\n\n"
            "data: [DONE]\n\n");
}

// What the openai SDK's stream helper checks, then its accumulation (choices[0] merged like
// ChatCompletionStream does) compared with the non-stream body.
json accumulate_openai(const std::vector<Frame>& frames, bool expect_usage) {
  json msg = {{"role", nullptr}, {"content", nullptr}};
  std::string finish;
  json usage;
  bool saw_done = false;
  for (size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    if (!f.comment.empty()) continue;
    EXPECT_EQ(f.event, "");  // OpenAI streams have no event: lines
    if (f.data == "[DONE]") {
      saw_done = true;
      EXPECT_EQ(i, frames.size() - 1);
      continue;
    }
    json c = json::parse(f.data);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_TRUE(c["choices"].is_array());
    if (c["choices"].empty()) {
      usage = c["usage"];
      continue;
    }
    if (expect_usage) {
      EXPECT_TRUE(c.contains("usage") && c["usage"].is_null());
    }
    const json& ch = c["choices"][0];
    EXPECT_EQ(ch["index"], 0);
    EXPECT_TRUE(ch.contains("logprobs"));
    const json& d = ch["delta"];
    if (d.contains("role")) msg["role"] = d["role"];
    if (d.contains("content")) msg["content"] = (msg["content"].is_null() ? "" : msg["content"].get<std::string>()) + d["content"].get<std::string>();
    if (d.contains("reasoning_content")) msg["reasoning_content"] = msg.value("reasoning_content", "") + d["reasoning_content"].get<std::string>();
    if (d.contains("tool_calls")) {
      for (const auto& tc : d["tool_calls"]) {
        size_t idx = tc["index"].get<size_t>();
        if (!msg.contains("tool_calls")) msg["tool_calls"] = json::array();
        if (msg["tool_calls"].size() <= idx) {
          EXPECT_TRUE(tc.contains("id"));
          EXPECT_EQ(tc["type"], "function");
          msg["tool_calls"].push_back({{"id", tc["id"]}, {"type", "function"},
                                        {"function", {{"name", tc["function"]["name"]}, {"arguments", ""}}}});
        }
        msg["tool_calls"][idx]["function"]["arguments"] =
            msg["tool_calls"][idx]["function"]["arguments"].get<std::string>() + tc["function"].value("arguments", "");
      }
    }
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_TRUE(saw_done);
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_FALSE(finish.empty());
  return {{"message", msg}, {"finish_reason", finish}, {"usage", usage}};
}

TEST(OpenAiChatStream, ThinkingAndToolCallsMatchNonStream) {
  auto events = think_text_tool_events();
  OpenAiChatStream s(kChatMeta, OpenAiEncodeOptions{false, true, {}});
  std::string out;
  for (const auto& e : events) out += s.on_event(e);
  auto frames = parse_sse(out);
  // The tool call's first delta: index, id, type, name and empty arguments.
  bool saw_first_tool_delta = false;
  for (const auto& f : frames) {
    if (f.data.find("tool_calls") == std::string::npos || f.data.find("\"id\":\"call_1\"") == std::string::npos) continue;
    json d = json::parse(f.data)["choices"][0]["delta"];
    EXPECT_EQ(d.dump(), R"({"tool_calls":[{"function":{"arguments":"","name":"get_weather"},"id":"call_1","index":0,"type":"function"}]})");
    saw_first_tool_delta = true;
  }
  EXPECT_TRUE(saw_first_tool_delta);
  json acc = accumulate_openai(frames, true);
  json ns = json::parse(openai_chat_response(kChatMeta, events, {}));
  const json& m = ns["choices"][0]["message"];
  EXPECT_EQ(acc["message"]["content"], m["content"]);
  EXPECT_EQ(acc["message"]["reasoning_content"], m["reasoning_content"]);
  EXPECT_EQ(acc["message"]["tool_calls"], m["tool_calls"]);
  EXPECT_EQ(acc["finish_reason"], "tool_calls");
  EXPECT_EQ(acc["usage"], ns["usage"]);
}

TEST(OpenAiChatStream, ReasoningDeltaCarriesBothNames) {
  OpenAiChatStream s(kChatMeta, {});
  auto frames = parse_sse(s.on_event(reasoning("hmm")));
  ASSERT_EQ(frames.size(), 2u);  // role chunk + reasoning
  json d = json::parse(frames[1].data)["choices"][0]["delta"];
  EXPECT_EQ(d, (json{{"reasoning_content", "hmm"}, {"reasoning", "hmm"}}));
  EXPECT_FALSE(json::parse(frames[1].data).contains("usage"));  // only with include_usage
}

TEST(OpenAiChatStream, LogprobsPerChunk) {
  OpenAiChatStream s(kChatMeta, OpenAiEncodeOptions{true, false, token_text});
  auto frames = parse_sse(s.on_event(text("Hel", {{1, -0.5f, {}}})));
  ASSERT_EQ(frames.size(), 2u);
  json lp = json::parse(frames[1].data)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["content"][0]["token"], "Hel");
  EXPECT_EQ(lp["content"][0]["logprob"], -0.5);
}

TEST(OpenAiChatStream, ErrorMidStream) {
  OpenAiChatStream s(kChatMeta, {});
  std::string out = s.on_event(text("a"));
  out += s.on_event(error(500, "model crashed"));
  auto frames = parse_sse(out);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(json::parse(frames[2].data), json::parse(R"({"error":{"message":"model crashed","type":"server_error","param":null,"code":null}})"));
  EXPECT_TRUE(s.finished());
}

// ================================================================ OpenAI completions

TEST(OpenAiCompletionEncode, NonStreamExact) {
  EXPECT_EQ(openai_completion_response({"cmpl-test", 1700000000, "local-model"}, {text(" there"), text(" was"), done("length", 3, 2)}, {}),
            R"({"id":"cmpl-test","object":"text_completion","created":1700000000,"model":"local-model",)"
            R"("choices":[{"text":" there was","index":0,"logprobs":null,"finish_reason":"length"}],)"
            R"("usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}}})");
}

TEST(OpenAiCompletionEncode, LegacyLogprobs) {
  OpenAiEncodeOptions opts{true, false, token_text};
  json j = json::parse(openai_completion_response(
      {"cmpl-test", 1, "m"}, {text("Hello", {{1, -0.5f, {{1, -0.5f}, {3, -1.25f}}}, {2, -0.25f, {{2, -0.25f}}}}), done("stop", 1, 2)}, opts));
  EXPECT_EQ(j["choices"][0]["logprobs"].dump(),
            R"({"text_offset":[0,3],"token_logprobs":[-0.5,-0.25],"tokens":["Hel","lo"],"top_logprobs":[{"Hel":-0.5,"Hi":-1.25},{"lo":-0.25}]})");
}

TEST(OpenAiCompletionStream, Frames) {
  OpenAiCompletionStream s({"cmpl-test", 1700000000, "local-model"}, OpenAiEncodeOptions{false, true, {}});
  std::string out = s.begin();
  out += s.on_event(text("Once"));
  out += s.on_event(done("stop", 3, 1));
  auto frames = parse_sse(out);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].data,
            R"({"id":"cmpl-test","object":"text_completion","created":1700000000,"model":"local-model","choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}],"usage":null})");
  EXPECT_EQ(json::parse(frames[1].data)["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(json::parse(frames[1].data)["choices"][0]["text"], "");
  EXPECT_EQ(json::parse(frames[2].data)["choices"], json::array());
  EXPECT_EQ(json::parse(frames[2].data)["usage"]["total_tokens"], 4);
  EXPECT_EQ(frames[3].data, "[DONE]");
}

// ================================================================ Anthropic

TEST(AnthropicEncode, NonStreamTextExact) {
  EXPECT_EQ(anthropic_message_response(kMsgMeta, {text("Hello"), done("stop", 11, 8)}),
            R"({"id":"msg_test","type":"message","role":"assistant","model":"claude-local",)"
            R"("content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,)"
            R"("usage":{"input_tokens":11,"output_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}})");
}

TEST(AnthropicEncode, NonStreamThinkingTextToolExact) {
  std::string sig = thinking_signature("I should check.");
  EXPECT_EQ(anthropic_message_response(kMsgMeta, think_text_tool_events()),
            R"({"id":"msg_test","type":"message","role":"assistant","model":"claude-local","content":[)"
            R"({"type":"thinking","thinking":"I should check.","signature":")" + sig + R"("},)"
            R"({"type":"text","text":"Let me check."},)"
            R"({"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}],)"
            R"("stop_reason":"tool_use","stop_sequence":null,)"
            R"("usage":{"input_tokens":12,"output_tokens":15,"cache_creation_input_tokens":0,"cache_read_input_tokens":8}})");
}

TEST(AnthropicEncode, StopReasons) {
  auto reason = [](std::vector<GenerationEvent> ev) {
    return json::parse(anthropic_message_response(kMsgMeta, ev));
  };
  json ss = reason({text("a"), done("stop", 1, 1, 0, std::string("###"))});
  EXPECT_EQ(ss["stop_reason"], "stop_sequence");
  EXPECT_EQ(ss["stop_sequence"], "###");
  EXPECT_EQ(reason({text("a"), done("length", 1, 1)})["stop_reason"], "max_tokens");
  EXPECT_EQ(reason({text("a"), done("stop", 1, 1)})["stop_reason"], "end_turn");
  EXPECT_EQ(reason({tool_start(0, "t", "f"), done("stop", 1, 1)})["stop_reason"], "tool_use");
}

TEST(AnthropicEncode, NonStreamNeverEmptyAndBadToolInput) {
  json j = json::parse(anthropic_message_response(kMsgMeta, {done("stop", 5, 0)}));
  EXPECT_EQ(j["content"], json::parse(R"([{"type":"text","text":""}])"));
  EXPECT_TRUE(j.contains("model") && j.contains("usage"));
  json k = json::parse(anthropic_message_response(kMsgMeta, {tool_start(0, "", "f"), tool_args(0, "{broken"), done("stop", 1, 1)}));
  EXPECT_EQ(k["content"][0]["input"], json::object());
  EXPECT_EQ(k["content"][0]["id"].get<std::string>().rfind("toolu_", 0), 0u);
}

TEST(AnthropicEncode, SignatureIsStable) {
  EXPECT_EQ(thinking_signature("abc"), thinking_signature("abc"));
  EXPECT_NE(thinking_signature("abc"), thinking_signature("abd"));
  EXPECT_FALSE(thinking_signature("").empty());
}

TEST(AnthropicStream, TextExactFrames) {
  AnthropicStream s(kMsgMeta, 12046);
  std::string out = s.begin();
  out += s.on_event(text("Hello"));
  out += s.on_event(text(" world"));
  out += s.on_event(done("stop", 12046, 9));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(out,
            "event: message_start\ndata: "
            R"({"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","model":"claude-local","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12046,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}})"
            "\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"
            "event: content_block_start\ndata: "
            R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
            "\n\nevent: content_block_delta\ndata: "
            R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"
            "\n\nevent: content_block_delta\ndata: "
            R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}})"
            "\n\nevent: content_block_stop\ndata: "
            R"({"type":"content_block_stop","index":0})"
            "\n\nevent: message_delta\ndata: "
            R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12046,"output_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}})"
            "\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

// The Anthropic SDK's MessageStream accumulation (from its source), with the checks that make it or Claude
// Code fail: event: lines, usage in message_start and message_delta, every block started and stopped.
json accumulate_anthropic(const std::vector<Frame>& frames, std::vector<std::string>* names = nullptr) {
  json msg;
  std::map<size_t, std::string> json_buf;
  int open = -1;
  bool stopped = false;
  for (const auto& f : frames) {
    EXPECT_FALSE(f.event.empty()) << f.data;
    json e = json::parse(f.data);
    EXPECT_EQ(e["type"], f.event);
    if (names) names->push_back(f.event);
    const std::string& t = f.event;
    if (t == "message_start") {
      msg = e["message"];
      EXPECT_TRUE(msg["usage"].is_object());
      EXPECT_TRUE(msg["usage"]["input_tokens"].is_number());
      EXPECT_TRUE(msg["usage"]["output_tokens"].is_number());
      EXPECT_EQ(msg["content"], json::array());
    } else if (t == "content_block_start") {
      EXPECT_EQ(open, -1) << "block opened while another is open";
      size_t idx = e["index"];
      EXPECT_EQ(idx, msg["content"].size());
      open = static_cast<int>(idx);
      msg["content"].push_back(e["content_block"]);
    } else if (t == "content_block_delta") {
      size_t idx = e["index"];
      EXPECT_EQ(static_cast<int>(idx), open);
      json& blk = msg["content"][idx];
      const json& d = e["delta"];
      if (d["type"] == "text_delta") blk["text"] = blk["text"].get<std::string>() + d["text"].get<std::string>();
      else if (d["type"] == "thinking_delta") blk["thinking"] = blk["thinking"].get<std::string>() + d["thinking"].get<std::string>();
      else if (d["type"] == "signature_delta") blk["signature"] = d["signature"];
      else if (d["type"] == "input_json_delta") json_buf[idx] += d["partial_json"].get<std::string>();
      else ADD_FAILURE() << "unknown delta " << d;
    } else if (t == "content_block_stop") {
      size_t idx = e["index"];
      EXPECT_EQ(static_cast<int>(idx), open);
      json& blk = msg["content"][idx];
      if (blk["type"] == "tool_use" && !json_buf[idx].empty()) blk["input"] = json::parse(json_buf[idx]);
      if (blk["type"] == "thinking") {
        EXPECT_FALSE(blk["signature"].get<std::string>().empty());
      }
      open = -1;
    } else if (t == "message_delta") {
      EXPECT_EQ(open, -1) << "message_delta with a block still open";
      EXPECT_TRUE(e["usage"].is_object());
      EXPECT_TRUE(e["usage"]["output_tokens"].is_number());
      msg["stop_reason"] = e["delta"]["stop_reason"];
      msg["stop_sequence"] = e["delta"]["stop_sequence"];
      for (auto& [k, v] : e["usage"].items()) msg["usage"][k] = v;
    } else if (t == "message_stop") {
      stopped = true;
    } else if (t != "ping") {
      ADD_FAILURE() << "unexpected event " << t;
    }
  }
  EXPECT_TRUE(stopped);
  return msg;
}

TEST(AnthropicStream, ThinkingTextToolSequenceMatchesNonStream) {
  auto events = think_text_tool_events();
  AnthropicStream s(kMsgMeta, 20);
  std::string out = s.begin();
  for (const auto& e : events) out += s.on_event(e);
  auto frames = parse_sse(out);
  std::vector<std::string> names;
  json acc = accumulate_anthropic(frames, &names);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "message_start", "ping", "ping",                                  // start, then Progress
                       "content_block_start", "content_block_delta", "content_block_delta",  // thinking x2
                       "content_block_delta", "content_block_stop",                      // signature, stop
                       "content_block_start", "content_block_delta", "content_block_stop",  // text
                       "content_block_start", "content_block_delta", "content_block_delta",  // tool_use
                       "content_block_stop", "message_delta", "message_stop"}));
  // The signature_delta comes right before the thinking block's stop.
  EXPECT_EQ(json::parse(frames[6].data)["delta"]["type"], "signature_delta");
  EXPECT_EQ(json::parse(frames[3].data)["content_block"], json::parse(R"({"type":"thinking","thinking":"","signature":""})"));
  EXPECT_EQ(json::parse(frames[11].data)["content_block"],
            json::parse(R"({"type":"tool_use","id":"call_1","name":"get_weather","input":{}})"));
  EXPECT_EQ(json::parse(frames[12].data)["delta"], json::parse(R"({"type":"input_json_delta","partial_json":"{\"city\":"})"));
  json ns = json::parse(anthropic_message_response(kMsgMeta, events));
  EXPECT_EQ(acc, ns);
}

TEST(AnthropicStream, EmptyGenerationStillHasABlock) {
  AnthropicStream s(kMsgMeta, 3);
  auto frames = parse_sse(s.on_event(done("stop", 3, 0)));
  json acc = accumulate_anthropic(frames);
  EXPECT_EQ(acc["content"], json::parse(R"([{"type":"text","text":""}])"));
  EXPECT_EQ(acc, json::parse(anthropic_message_response(kMsgMeta, {done("stop", 3, 0)})));
}

TEST(AnthropicStream, TextAfterToolAndSecondTool) {
  std::vector<GenerationEvent> ev = {tool_start(0, "a", "f"), tool_args(0, "{}"), text("x"),  // no ToolCallEnd
                                     tool_start(1, "b", "g"), tool_end(1), done("tool_calls", 1, 1)};
  AnthropicStream s(kMsgMeta, 1);
  std::string out;
  for (const auto& e : ev) out += s.on_event(e);
  json acc = accumulate_anthropic(parse_sse(out));
  ASSERT_EQ(acc["content"].size(), 3u);
  EXPECT_EQ(acc["content"][2]["id"], "b");
  EXPECT_EQ(acc["stop_reason"], "tool_use");
  EXPECT_EQ(acc, json::parse(anthropic_message_response(kMsgMeta, ev)));
}

TEST(AnthropicStream, ErrorEventAndStopSequence) {
  AnthropicStream s(kMsgMeta, 1);
  std::string out = s.on_event(text("a"));
  out += s.on_event(error(529, "overloaded"));
  auto frames = parse_sse(out);
  EXPECT_EQ(frames.back().event, "error");
  EXPECT_EQ(json::parse(frames.back().data),
            json::parse(R"({"type":"error","error":{"type":"overloaded_error","message":"overloaded"}})"));
  EXPECT_EQ(s.on_event(done("stop", 1, 1)), "");

  AnthropicStream t(kMsgMeta, 1);
  std::string o2 = t.on_event(text("a"));
  o2 += t.on_event(done("stop", 1, 1, 0, std::string("END")));
  json acc = accumulate_anthropic(parse_sse(o2));
  EXPECT_EQ(acc["stop_reason"], "stop_sequence");
  EXPECT_EQ(acc["stop_sequence"], "END");
}

// ================================================================ other bodies

TEST(OtherBodies, CountTokensAndModels) {
  EXPECT_EQ(count_tokens_body(13), R"({"input_tokens":13})");
  std::vector<ModelInfo> models = {{"local-model", 1700000000, "optiq"}};
  EXPECT_EQ(models_list_body(models),
            R"({"object":"list","data":[{"id":"local-model","object":"model","created":1700000000,"owned_by":"optiq",)"
            R"("type":"model","display_name":"local-model","created_at":"2023-11-14T22:13:20Z"}],)"
            R"("has_more":false,"first_id":"local-model","last_id":"local-model"})");
  EXPECT_EQ(model_body(models[0]),
            R"({"id":"local-model","object":"model","created":1700000000,"owned_by":"optiq",)"
            R"("type":"model","display_name":"local-model","created_at":"2023-11-14T22:13:20Z"})");
  ApiError nf = model_not_found("nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(json::parse(anthropic_error_body(nf))["error"]["type"], "not_found_error");
  EXPECT_EQ(json::parse(openai_error_body(nf))["error"]["code"], "model_not_found");
}

TEST(OtherBodies, ResponseMeta) {
  ResponseMeta m = make_response_meta("msg_", "x");
  EXPECT_EQ(m.id.rfind("msg_", 0), 0u);
  EXPECT_EQ(m.id.size(), 4u + 24u);
  EXPECT_GT(m.created, 1700000000);
  EXPECT_NE(make_response_meta("msg_", "x").id, m.id);
}

}  // namespace
}  // namespace optiq::server
