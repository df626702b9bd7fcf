// The output parser: model output (as each model family's chat template expects the model to write it) into
// text, reasoning and tool-call events. Every case is fed whole, a character at a time and in random splits;
// the events, merged, must be the same in all three feeds.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "chat/output_parser.h"
#include "test_paths.h"
#include "util/mapped_file.h"

namespace optiq::chat {
namespace {

using Ev = engine::GenerationEvent;
using json = nlohmann::json;

struct Call {
  std::string name, id, args;
};
struct Result {
  std::string text, reasoning;
  std::vector<Call> calls;
  std::string shape;  // kinds in order, merged: e.g. "R T C T"
};

const OutputFormat kHermes{ToolCallFormat::Hermes, false, false};
const OutputFormat kQwen3{ToolCallFormat::Hermes, true, false};
const OutputFormat kQwq{ToolCallFormat::Hermes, true, true};
const OutputFormat kCoder{ToolCallFormat::Qwen3Coder, false, false};
const OutputFormat kQwen35{ToolCallFormat::Qwen3Coder, true, true};
const OutputFormat kLlama{ToolCallFormat::Llama3Json, false, false};
const OutputFormat kMistral{ToolCallFormat::Mistral, false, false};

enum class Feed { Whole, Chars, Random };

std::vector<Ev> run(OutputFormat fmt, bool tools, const std::string& s, Feed feed, unsigned seed = 7) {
  OutputParser p(fmt, tools);
  std::vector<Ev> evs;
  auto add = [&](std::vector<Ev> v) { evs.insert(evs.end(), v.begin(), v.end()); };
  if (feed == Feed::Whole) {
    add(p.push(s));
  } else if (feed == Feed::Chars) {
    for (char c : s) add(p.push(std::string(1, c)));
  } else {
    std::mt19937 rng(seed);
    for (size_t i = 0; i < s.size();) {
      size_t n = std::min(s.size() - i, static_cast<size_t>(rng() % 9));  // 0-length pieces too
      add(p.push(s.substr(i, n)));
      i += n;
    }
  }
  add(p.finish());
  return evs;
}

// Merges adjacent pieces of the same kind; checks the call events' order, indices and ids.
std::vector<Ev> merged(const std::vector<Ev>& evs) {
  static const std::regex id_re("call_[A-Za-z0-9]{24}");
  std::vector<Ev> m;
  int open = -1, next = 0;
  for (const Ev& e : evs) {
    EXPECT_NE(e.kind, Ev::Kind::Done);
    EXPECT_NE(e.kind, Ev::Kind::Error);
    if (e.kind == Ev::Kind::ToolCallStart) {
      EXPECT_EQ(open, -1) << "a call started inside another";
      EXPECT_EQ(e.tool_index, next);
      EXPECT_TRUE(std::regex_match(e.tool_id, id_re)) << e.tool_id;
      EXPECT_FALSE(e.tool_name.empty());
      open = e.tool_index;
    } else if (e.kind == Ev::Kind::ToolCallArgs) {
      EXPECT_EQ(e.tool_index, open);
    } else if (e.kind == Ev::Kind::ToolCallEnd) {
      EXPECT_EQ(e.tool_index, open);
      open = -1;
      ++next;
    } else {
      EXPECT_EQ(open, -1) << "text inside a call";
      EXPECT_FALSE(e.text.empty());
    }
    bool mergeable = e.kind == Ev::Kind::Text || e.kind == Ev::Kind::Reasoning || e.kind == Ev::Kind::ToolCallArgs;
    if (mergeable && !m.empty() && m.back().kind == e.kind) m.back().text += e.text;
    else m.push_back(e);
  }
  EXPECT_EQ(open, -1) << "a call left open";
  return m;
}

std::string describe(const std::vector<Ev>& m) {
  std::string s;
  for (const Ev& e : m) {
    switch (e.kind) {
      case Ev::Kind::Text: s += "T[" + e.text + "]"; break;
      case Ev::Kind::Reasoning: s += "R[" + e.text + "]"; break;
      case Ev::Kind::ToolCallStart: s += "S" + std::to_string(e.tool_index) + "[" + e.tool_name + "]"; break;
      case Ev::Kind::ToolCallArgs: s += "A[" + e.text + "]"; break;
      case Ev::Kind::ToolCallEnd: s += "E"; break;
      default: s += "?"; break;
    }
  }
  return s;
}

// Feeds s three ways, checks they agree, and returns what the output says.
Result parse(OutputFormat fmt, bool tools, const std::string& s) {
  std::vector<Ev> whole = merged(run(fmt, tools, s, Feed::Whole));
  std::string d = describe(whole);
  EXPECT_EQ(describe(merged(run(fmt, tools, s, Feed::Chars))), d) << "char by char: " << s;
  for (unsigned seed : {1u, 2u, 3u}) EXPECT_EQ(describe(merged(run(fmt, tools, s, Feed::Random, seed))), d) << s;
  Result r;
  for (const Ev& e : whole) {
    switch (e.kind) {
      case Ev::Kind::Text: r.text += e.text; r.shape += "T"; break;
      case Ev::Kind::Reasoning: r.reasoning += e.text; r.shape += "R"; break;
      case Ev::Kind::ToolCallStart: r.calls.push_back({e.tool_name, e.tool_id, ""}); r.shape += "C"; break;
      case Ev::Kind::ToolCallArgs: r.calls.back().args += e.text; break;
      default: break;
    }
  }
  for (const Call& c : r.calls) EXPECT_TRUE(json::accept(c.args)) << "arguments not JSON: " << c.args;
  return r;
}

json args(const Call& c) { return json::parse(c.args, nullptr, false); }

// ---------------- Hermes (Qwen2.5, Qwen3, QwQ, Hermes) ----------------

TEST(OutputParserHermes, Qwen3ThinkingThenToolCall) {
  Result r = parse(kQwen3, true,
                   "<think>\nThe user wants the weather in Paris. I should call get_weather.\n</think>\n\n"
                   "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", "
                   "\"unit\": \"celsius\"}}\n</tool_call>");
  EXPECT_EQ(r.reasoning, "The user wants the weather in Paris. I should call get_weather.");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.shape, "RC");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(args(r.calls[0]), json::parse(R"({"location": "Paris, France", "unit": "celsius"})"));
  EXPECT_EQ(r.calls[0].args, R"({"location": "Paris, France", "unit": "celsius"})");  // as the model wrote it
}

TEST(OutputParserHermes, EmptyThinkBlockProducesNothing) {
  Result r = parse(kQwen3, true, "<think>\n\n</think>\n\nHello! How can I help you today?");
  EXPECT_EQ(r.shape, "T");
  EXPECT_EQ(r.text, "Hello! How can I help you today?");
  r = parse(kQwen3, false, "\n<think>\n\n</think>\n\nHi.\n");
  EXPECT_EQ(r.shape, "T");
  EXPECT_EQ(r.text, "Hi.\n");
}

TEST(OutputParserHermes, ReasoningKeepsInnerWhitespaceAndMultilineText) {
  Result r = parse(kQwen3, false, "<think>\nStep 1.\n\nStep 2.\n</think>\n\nLine one.\n\nLine two.");
  EXPECT_EQ(r.reasoning, "Step 1.\n\nStep 2.");
  EXPECT_EQ(r.text, "Line one.\n\nLine two.");
  // No <think> at the start: all text, even a later <think>.
  r = parse(kQwen3, false, "Plain answer, <think> is just text here.");
  EXPECT_EQ(r.shape, "T");
  EXPECT_EQ(r.text, "Plain answer, <think> is just text here.");
}

TEST(OutputParserHermes, ReasoningTextAndCalls) {
  Result r = parse(kQwen3, true,
                   "<think>\nI need two lookups.\n</think>\n\nLet me look both up.\n\n<tool_call>\n{\"name\": \"a\", "
                   "\"arguments\": {\"q\": \"1\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": "
                   "{\"q\": [\"2\"]}}\n</tool_call>");
  EXPECT_EQ(r.shape, "RTCC");
  EXPECT_EQ(r.reasoning, "I need two lookups.");
  EXPECT_EQ(r.text, "Let me look both up.");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[1].args, R"({"q": ["2"]})");
}

TEST(OutputParserHermes, StartsInThinking) {
  Result r = parse(kQwq, true, "Okay, 6 times 7.\nThat is 42.\n</think>\n\nThe answer is **42**.");
  EXPECT_EQ(r.reasoning, "Okay, 6 times 7.\nThat is 42.");
  EXPECT_EQ(r.text, "The answer is **42**.");
  // Cut off while thinking: all reasoning.
  r = parse(kQwq, true, "Still thinking about <tool_call> and");
  EXPECT_EQ(r.shape, "R");
  EXPECT_EQ(r.reasoning, "Still thinking about <tool_call> and");
}

TEST(OutputParserHermes, TextBeforeAndAfterAndSeveralCalls) {
  Result r = parse(kHermes, true,
                   "I'll check both cities.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                   "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                   "\"London\"}}\n</tool_call>\nDone.");
  EXPECT_EQ(r.shape, "TCCT");
  EXPECT_EQ(r.text, "I'll check both cities.Done.");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(args(r.calls[0]), json({{"city", "Paris"}}));
  EXPECT_EQ(args(r.calls[1]), json({{"city", "London"}}));
  EXPECT_NE(r.calls[0].id, r.calls[1].id);
}

TEST(OutputParserHermes, NestedArgumentsEscapesAndUnicode) {
  Result r = parse(kHermes, true,
                   "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"C++ \\\"streams\\\" \\u00e9 caf\xc3\xa9 "
                   "\xe4\xb8\x96\xe7\x95\x8c {}[]\", \"limit\": 5, \"filters\": {\"lang\": [\"en\", \"fr\"], \"safe\": "
                   "true, \"min\": -1.5e3, \"x\": null, \"deep\": [[{}], []]}}}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  json want = {{"query", "C++ \"streams\" \xc3\xa9 caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c {}[]"},
               {"limit", 5},
               {"filters",
                {{"lang", {"en", "fr"}}, {"safe", true}, {"min", -1500.0}, {"x", nullptr}, {"deep", json::parse("[[{}], []]")}}}};
  EXPECT_EQ(args(r.calls[0]), want);
}

TEST(OutputParserHermes, ArgumentsAsStringOrBeforeNameOrEmpty) {
  Result r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
  r = parse(kHermes, true, "<tool_call>\n{\"arguments\": {\"a\": [1, 2]}, \"name\": \"g\"}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "g");
  EXPECT_EQ(args(r.calls[0]), json::parse(R"({"a": [1, 2]})"));
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"list_files\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json::object());
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"now\"}\n</tool_call>");  // no arguments at all
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json::object());
}

TEST(OutputParserHermes, MissingClosingBraceStillACall) {
  Result r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>\nok");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
  EXPECT_EQ(r.text, "ok");
}

TEST(OutputParserHermes, TextAfterAnObjectWithoutClosingTag) {
  Result r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}}\nAnd then text.");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.text, "And then text.");
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_");  // cut off in the tag
  EXPECT_EQ(r.shape, "C");
  // The arguments broke: the rest of the call up to </tool_call> goes, text after it stays.
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1</tool_call>more");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
  EXPECT_EQ(r.text, "more");
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1} junk }\n</tool_call>\nok");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.text, "ok");
}

TEST(OutputParserHermes, NoToolsRequestedMeansText) {
  std::string out = "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
  Result r = parse(kQwen3, false, "<think>\nhm\n</think>\n\n" + out);
  EXPECT_EQ(r.shape, "RT");
  EXPECT_EQ(r.text, out);
  r = parse(OutputFormat{}, true, out);  // a template without tools
  EXPECT_EQ(r.text, out);
}

TEST(OutputParserHermes, MalformedComesBackAsText) {
  for (std::string s : {"Sure.\n<tool_call>\n{\"name\": \"f\"",                   // unterminated at finish
                        "<tool_call>\n{name: f}\n</tool_call> after",              // not JSON
                        "<tool_call>\n[1, 2]\n</tool_call>",                       // not an object
                        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",          // no name
                        "<tool_call>\n{\"name\": 3, \"arguments\": {}}\n</tool_call>",
                        "<tool_call>\n{\"name\": \"f\", \"arguments\": \"not json\"}\n</tool_call>",
                        "<tool_call>\n<function=f>\n</function>\n</tool_call>",   // another format
                        "<tool_call>", "<tool_cal", "x <tool_call></tool_call> y", "<tool_calls>{}</tool_calls>"}) {
    Result r = parse(kHermes, true, s);
    EXPECT_EQ(r.shape, "T") << s;
    EXPECT_EQ(r.text, s);
  }
}

TEST(OutputParserHermes, BrokenArgumentsAfterAnnouncementAreClosed) {
  // The call was already announced when the arguments broke: what was valid so far is closed.
  Result r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": }}\n</tool_call>\nok");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
  EXPECT_EQ(r.text, "ok");
  // Cut off by max_tokens mid-string: closed at the last safe point.
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"write\", \"arguments\": {\"path\": \"a.txt\", \"text\": \"hel\\");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"path", "a.txt"}, {"text", "hel"}}));
  r = parse(kHermes, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": [1, 2, 3");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json::parse(R"({"n": [1, 2]})"));
}

// ---------------- Qwen3-Coder / Qwen3.5 ----------------

TEST(OutputParserCoder, Qwen35ThinkingAndCall) {
  Result r = parse(kQwen35, true,
                   "The user wants the weather.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=location>\n"
                   "Paris, France\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>");
  EXPECT_EQ(r.reasoning, "The user wants the weather.");
  EXPECT_EQ(r.shape, "RC");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].args, R"({"location": "Paris, France", "days": 3})");
}

TEST(OutputParserCoder, ValueTypes) {
  Result r = parse(kCoder, true,
                   "<tool_call>\n<function=f>\n<parameter=obj>\n{\"a\": [1, 2]}\n</parameter>\n<parameter=arr>\n[1, \"x\"]\n"
                   "</parameter>\n<parameter=t>\ntrue\n</parameter>\n<parameter=n>\nnull\n</parameter>\n<parameter=neg>\n"
                   "-2.5\n</parameter>\n<parameter=s1>\ntrue story\n</parameter>\n<parameter=s2>\n123abc\n</parameter>\n"
                   "<parameter=s3>\n[1, 2\n</parameter>\n<parameter=s4>\n\"quoted\"\n</parameter>\n<parameter=empty>\n\n"
                   "</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  json want = {{"obj", {{"a", {1, 2}}}}, {"arr", {1, "x"}}, {"t", true}, {"n", nullptr}, {"neg", -2.5},
               {"s1", "true story"}, {"s2", "123abc"}, {"s3", "[1, 2"}, {"s4", "\"quoted\""}, {"empty", ""}};
  EXPECT_EQ(args(r.calls[0]), want);
}

TEST(OutputParserCoder, MultilineCodeValue) {
  std::string code = "def f(x):\n    return \"a\\\\b\" < 3 and x <= 2\n\n# </param> <tool\n\tdone";
  Result r = parse(kCoder, true,
                   "Let me write the file.\n\n<tool_call>\n<function=write_file>\n<parameter=path>\nsrc/a.py\n</parameter>\n"
                   "<parameter=content>\n" + code + "\n</parameter>\n</function>\n</tool_call>");
  EXPECT_EQ(r.text, "Let me write the file.");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"path", "src/a.py"}, {"content", code}}));
}

TEST(OutputParserCoder, SeveralCallsNoParamsAndBareFunction) {
  Result r = parse(kCoder, true,
                   "<tool_call>\n<function=list_files>\n</function>\n</tool_call>\n<tool_call>\n<function=read>\n"
                   "<parameter=path>\na.txt\n</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].args, "{}");
  EXPECT_EQ(r.calls[1].name, "read");
  EXPECT_EQ(args(r.calls[1]), json({{"path", "a.txt"}}));
  EXPECT_EQ(r.shape, "CC");
  r = parse(kCoder, true, "<function=read>\n<parameter=path>\nb.txt\n</parameter>\n</function>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"path", "b.txt"}}));
  // A Hermes JSON object inside <tool_call> is understood too.
  r = parse(kCoder, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
}

TEST(OutputParserCoder, MalformedAndUnterminated) {
  for (std::string s : {"<tool_call>\nnot a call\n</tool_call>", "<tool_call>\n<function=bad name\n",
                        "<tool_call>\n<function=>\n</function>", "<tool_call>\n<func"}) {
    Result r = parse(kCoder, true, s);
    EXPECT_EQ(r.shape, "T") << s;
    EXPECT_EQ(r.text, s);
  }
  // Cut off inside a value: the call is closed with what came.
  Result r = parse(kCoder, true, "<tool_call>\n<function=f>\n<parameter=a>\nhello\nwor");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", "hello\nwor"}}));
  r = parse(kCoder, true, "<tool_call>\n<function=f>\n<parameter=n>\n12");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"n", 12}}));
  // A missing </parameter> ends the value at the next tag.
  r = parse(kCoder, true, "<tool_call>\n<function=f>\n<parameter=a>\nx\n<parameter=b>\ny\n</function>\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", "x"}, {"b", "y"}}));
}

// ---------------- Llama 3.x ----------------

TEST(OutputParserLlama, JsonAnswerIsACall) {
  Result r = parse(kLlama, true, "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"days\": 2}}");
  EXPECT_EQ(r.shape, "C");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(args(r.calls[0]), json({{"location", "Paris"}, {"days", 2}}));
  r = parse(kLlama, true, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].args, "{}");
  r = parse(kLlama, true,
            "\n{\"type\": \"function\", \"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[1].name, "b");
}

TEST(OutputParserLlama, TextAndNonCallJsonStayText) {
  for (std::string s : {"The weather in Paris is sunny.", "{\"answer\": 42}", "{name} is a placeholder.",
                        "Use {\"name\": \"x\", \"parameters\": {}} like this.", "{\"name\": \"f\", \"parameters\": "}) {
    Result r = parse(kLlama, true, s);
    if (s == "{\"name\": \"f\", \"parameters\": ") {
      EXPECT_EQ(r.shape, "T") << s;  // unterminated before the arguments began
    }
    EXPECT_EQ(r.text, s);
    EXPECT_TRUE(r.calls.empty()) << s;
  }
  Result r = parse(kLlama, false, "{\"name\": \"f\", \"parameters\": {}}");
  EXPECT_EQ(r.shape, "T");
}

// ---------------- Mistral ----------------

TEST(OutputParserMistral, ListFormat) {
  Result r = parse(kMistral, true,
                   "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}, \"id\": \"abc123def\"}, "
                   "{\"name\": \"get_time\", \"arguments\": {}, \"id\": \"xyz987uvw\"}]");
  EXPECT_EQ(r.shape, "CC");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(args(r.calls[0]), json({{"location", "Paris"}}));
  EXPECT_EQ(r.calls[1].name, "get_time");
  EXPECT_EQ(args(r.calls[1]), json::object());
  r = parse(kMistral, true, "Let me look.[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}]");
  EXPECT_EQ(r.text, "Let me look.");
  ASSERT_EQ(r.calls.size(), 1u);
}

TEST(OutputParserMistral, NameArgsFormat) {
  Result r = parse(kMistral, true,
                   "[TOOL_CALLS]get_weather[ARGS]{\"location\": \"Paris\", \"unit\": \"c\"}[TOOL_CALLS]get_time[ARGS]{}");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].args, R"({"location": "Paris", "unit": "c"})");
  EXPECT_EQ(r.calls[1].args, "{}");
  r = parse(kMistral, true, "Checking.[TOOL_CALLS]get_weather[CALL_ID]abc123def[ARGS]{\"location\": \"Nice\"}");
  EXPECT_EQ(r.text, "Checking.");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"location", "Nice"}}));
  r = parse(kMistral, true, "[TOOL_CALLS]f[ARGS]\"{\\\"a\\\": 1}\"");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", 1}}));
}

TEST(OutputParserMistral, Malformed) {
  for (std::string s : {"[TOOL_CALLS] nonsense here", "[TOOL_CALLS]", "[TOOL_CALLS][oops]", "[TOOL_CALLS]f(x)"}) {
    Result r = parse(kMistral, true, s);
    EXPECT_EQ(r.shape, "T") << s;
    EXPECT_EQ(r.text, s);
  }
  Result r = parse(kMistral, true, "[TOOL_CALLS]f[ARGS]{\"a\": \"b");  // cut off
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(args(r.calls[0]), json({{"a", "b"}}));
  r = parse(kMistral, false, "[TOOL_CALLS]f[ARGS]{}");
  EXPECT_EQ(r.text, "[TOOL_CALLS]f[ARGS]{}");
}

// ---------------- Streaming: what comes out before the output is complete ----------------

std::string concat(const std::vector<Ev>& evs, Ev::Kind k) {
  std::string s;
  for (const Ev& e : evs)
    if (e.kind == k) s += e.text;
  return s;
}

TEST(OutputParserStreaming, TextFlowsHoldingOnlyTagPrefixes) {
  OutputParser p(kHermes, true);
  EXPECT_EQ(concat(p.push("Hello"), Ev::Kind::Text), "Hello");
  EXPECT_EQ(concat(p.push(" wor"), Ev::Kind::Text), " wor");
  EXPECT_EQ(concat(p.push("ld <tool_"), Ev::Kind::Text), "ld");  // " <tool_" may open a call
  EXPECT_EQ(concat(p.push("box> x"), Ev::Kind::Text), " <tool_box> x");
  EXPECT_EQ(concat(p.finish(), Ev::Kind::Text), "");
  OutputParser q(OutputFormat{}, false);
  EXPECT_EQ(concat(q.push("a <tool_"), Ev::Kind::Text), "a <tool_");  // nothing to hold without tools
}

TEST(OutputParserStreaming, ReasoningStreams) {
  OutputParser p(kQwen3, false);
  EXPECT_TRUE(p.push("<thi").empty());
  EXPECT_EQ(concat(p.push("nk>\nLet me"), Ev::Kind::Reasoning), "Let me");
  EXPECT_EQ(concat(p.push(" see.</th"), Ev::Kind::Reasoning), " see.");
  auto evs = p.push("ink>\n\nAnswer");
  EXPECT_EQ(concat(evs, Ev::Kind::Reasoning), "");
  EXPECT_EQ(concat(evs, Ev::Kind::Text), "Answer");
}

TEST(OutputParserStreaming, HermesCallAnnouncedAndArgumentsStreamed) {
  OutputParser p(kHermes, true);
  auto evs = p.push("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Par");
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs[0].kind, Ev::Kind::ToolCallStart);
  EXPECT_EQ(evs[0].tool_name, "get_weather");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), "{\"location\": \"Par");
  EXPECT_TRUE(p.saw_tool_call());
  evs = p.push("is\", \"days\": 1");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), "is\"");  // the number is not complete yet
  evs = p.push("0}}");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), ", \"days\": 10}");
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back().kind, Ev::Kind::ToolCallEnd);
  EXPECT_TRUE(p.push("\n</tool_call>").empty());
  EXPECT_TRUE(p.finish().empty());
}

TEST(OutputParserStreaming, CoderCallAnnouncedAndStringValuesStreamed) {
  OutputParser p(kCoder, true);
  auto evs = p.push("<tool_call>\n<function=write_file>\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].kind, Ev::Kind::ToolCallStart);
  EXPECT_EQ(evs[0].tool_name, "write_file");
  EXPECT_EQ(concat(p.push("<parameter=content>\nline 1\nli"), Ev::Kind::ToolCallArgs), "{\"content\": \"line 1\\nli");
  EXPECT_EQ(concat(p.push("ne 2\n</para"), Ev::Kind::ToolCallArgs), "ne 2");
  EXPECT_EQ(concat(p.push("meter>\n<parameter=mode>\n6"), Ev::Kind::ToolCallArgs), "\"");
  EXPECT_EQ(concat(p.push("44\n</parameter>\n"), Ev::Kind::ToolCallArgs), ", \"mode\": 644");
  evs = p.push("</function>\n</tool_call>");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), "}");
  EXPECT_EQ(evs.back().kind, Ev::Kind::ToolCallEnd);
}

TEST(OutputParserStreaming, MistralAndLlamaAnnouncedEarly) {
  OutputParser m(kMistral, true);
  auto evs = m.push("[TOOL_CALLS]get_weather[ARGS]{\"loc");
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs[0].tool_name, "get_weather");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), "{");
  OutputParser l(kLlama, true);
  evs = l.push("{\"name\": \"f\", \"parameters\": {\"q\": \"abc");
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs[0].tool_name, "f");
  EXPECT_EQ(concat(evs, Ev::Kind::ToolCallArgs), "{\"q\": \"abc");
}

TEST(OutputParserStreaming, LlamaTextIsNotHeld) {
  OutputParser p(kLlama, true);
  EXPECT_TRUE(p.push("\n").empty());  // leading whitespace: a JSON call may still come
  EXPECT_EQ(concat(p.push("The"), Ev::Kind::Text), "\nThe");
  EXPECT_EQ(concat(p.push(" answer {is}"), Ev::Kind::Text), " answer {is}");
  EXPECT_FALSE(p.saw_tool_call());
  EXPECT_TRUE(p.finish().empty());
}

TEST(OutputParserStreaming, SawToolCall) {
  OutputParser p(kQwen3, true);
  p.push("<think>\nx\n</think>\n\nSure.");
  EXPECT_FALSE(p.saw_tool_call());
  p.push("\n<tool_call>\n{\"name\": \"f\", \"arguments\": {");
  EXPECT_TRUE(p.saw_tool_call());
  auto evs = p.finish();  // cut off: the call is closed
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].text, "}");
  EXPECT_EQ(evs[1].kind, Ev::Kind::ToolCallEnd);
  OutputParser q(kQwen3, true);
  q.push("<tool_call>\n{\"name\": \"f\"");
  q.finish();  // came back as text
  EXPECT_FALSE(q.saw_tool_call());
}

TEST(OutputParserStreaming, Utf8NeverSplitAcrossEvents) {
  OutputParser p(kHermes, true);
  std::string s = "caf\xc3\xa9 \xe4\xb8\x96";
  std::string got;
  for (char c : s)
    for (const Ev& e : p.push(std::string(1, c))) {
      EXPECT_TRUE(json::accept(json(e.text).dump())) << "split character";
      got += e.text;
    }
  for (const Ev& e : p.finish()) got += e.text;
  EXPECT_EQ(got, s);
}

// Random mixtures of markup pieces: never throws, feeds agree, arguments are always JSON.
TEST(OutputParserStreaming, FuzzedMarkupIsHandled) {
  const std::vector<std::string> pieces = {
      "<think>", "</think>", "\n", " ", "text", "<tool_call>", "</tool_call>", "{\"name\": \"f\"", ", ",
      "\"arguments\": ", "{\"a\": ", "\"x\\\"", "1", "}", "]", "[", "<function=g>", "<parameter=p>", "</parameter>",
      "</function>", "[TOOL_CALLS]", "h[ARGS]", "[CALL_ID]", "<|python_tag|>", "\xc3\xa9", "<", "\"", "\\"};
  const OutputFormat fmts[] = {kHermes, kQwen3, kQwq, kCoder, kQwen35, kLlama, kMistral};
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    for (int n = static_cast<int>(rng() % 25); n > 0; --n) s += pieces[rng() % pieces.size()];
    for (const OutputFormat& f : fmts) parse(f, true, s);
  }
}

// ---------------- detect_output_format on real templates ----------------

struct Detect {
  const char* file;
  ToolCallFormat tools;
  bool thinking;
};

TEST(OutputParserDetect, RealTemplates) {
  const std::string dir = test::shared_path("chat-templates");
  OPTIQ_REQUIRE_SHARED(dir);
  const Detect cases[] = {
      {"llama.cpp/Qwen-Qwen3-0.6B.jinja", ToolCallFormat::Hermes, true},
      {"llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat::Hermes, false},
      {"llama.cpp/Qwen-QwQ-32B.jinja", ToolCallFormat::Hermes, true},
      {"llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallFormat::Hermes, false},
      {"llama.cpp/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", ToolCallFormat::Hermes, false},
      {"llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat::Llama3Json, false},
      {"llama.cpp/meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallFormat::Llama3Json, false},
      {"llama.cpp/meta-llama-Llama-3.3-70B-Instruct.jinja", ToolCallFormat::Llama3Json, false},
      {"llama.cpp/Qwen3.5-4B.jinja", ToolCallFormat::Qwen3Coder, true},
      {"llama.cpp/Qwen3-Coder.jinja", ToolCallFormat::Qwen3Coder, false},
      {"llama.cpp/mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat::Mistral, false},
      {"llama.cpp/Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallFormat::Mistral, false},
      {"mistral-common/v7.jinja", ToolCallFormat::Mistral, false},
      {"mistral-common/v13.jinja", ToolCallFormat::Mistral, false},
      {"llama.cpp/google-gemma-2-2b-it.jinja", ToolCallFormat::None, false},
      {"llama.cpp/microsoft-Phi-3.5-mini-instruct.jinja", ToolCallFormat::None, false},
  };
  for (const Detect& c : cases) {
    std::string path = dir + "/" + c.file;
    OPTIQ_REQUIRE_SHARED(path);
    OutputFormat f = detect_output_format(read_text_file(path), "<|im_start|>assistant\n");
    EXPECT_EQ(f.tools, c.tools) << c.file;
    EXPECT_EQ(f.thinking, c.thinking) << c.file;
    EXPECT_FALSE(f.starts_in_thinking) << c.file;
  }
  std::string qwen35 = read_text_file(dir + "/llama.cpp/Qwen3.5-4B.jinja");
  OutputFormat f = detect_output_format(qwen35, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
  EXPECT_TRUE(f.thinking && f.starts_in_thinking);
  f = detect_output_format(qwen35, "<|im_start|>assistant\n<think>\n\n</think>\n\n");  // enable_thinking=false
  EXPECT_FALSE(f.starts_in_thinking);
}

TEST(OutputParserDetect, PromptEndingInThinkMeansThinking) {
  OutputFormat f = detect_output_format("{{ messages }}", "Assistant: <think>\n");
  EXPECT_EQ(f.tools, ToolCallFormat::None);
  EXPECT_TRUE(f.thinking && f.starts_in_thinking);
  EXPECT_FALSE(detect_output_format("", "").thinking);
}

}  // namespace
}  // namespace optiq::chat
