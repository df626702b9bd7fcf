// response_format json_object: the byte recognizer against nlohmann::json's parser, the token mask over a
// real vocabulary, and constrained generation through the Engine on stories260K.
#include "engine/json_constraint.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <random>

#include "engine/engine.h"
#include "engine_run.h"
#include "test_paths.h"

using namespace optiq;
using engine::JsonPrefix;

namespace {

// Feeds the whole text; 'c' complete, 'p' a valid unfinished prefix, 'x' rejected at some byte.
char verdict(const std::string& s) {
  JsonPrefix p;
  for (unsigned char c : s)
    if (!p.feed(c)) return 'x';
  return p.complete() ? 'c' : 'p';
}

// Every proper prefix of a complete document is a valid unfinished prefix.
void expect_document(const std::string& s) {
  JsonPrefix p;
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_FALSE(p.complete()) << "complete too early at byte " << i << " of " << s;
    ASSERT_TRUE(p.feed(static_cast<unsigned char>(s[i]))) << "rejected byte " << i << " ('" << s[i] << "') of " << s;
  }
  EXPECT_TRUE(p.complete()) << s;
}

}  // namespace

TEST(JsonPrefix, AcceptsObjectsWithEveryKindOfValue) {
  for (const char* doc : {
           R"({})",
           R"({"a":1})",
           R"({"a":-0,"b":0.5,"c":-12.25e+3,"d":1E-7,"e":10e5,"f":0e0})",
           R"({"s":"x\"y\\z\/\b\f\n\r\t\u00e9\uD83D\uDE00","t":true,"f":false,"n":null})",
           R"({"nested":{"arr":[1,[2,[3,{}]],[],{"k":[]}]},"x":"é ü 中"})",
           "{\n  \"name\": \"Ada\",\n  \"tags\": [\n    \"a\",\n    \"b\"\n  ]\n}",
           "{\t\"a\" :\t1 , \"b\" : [ 1 , 2 ] }",
       })
    expect_document(doc);
  // Whitespace may follow the closing brace (a token such as "}\n").
  EXPECT_EQ(verdict("{}\n"), 'c');
  EXPECT_EQ(verdict("{} "), 'c');
}

TEST(JsonPrefix, RejectsWhatIsNotAJsonObject) {
  const std::pair<const char*, size_t> cases[] = {
      // {text, length of the longest valid prefix}
      {"[1]", 0}, {"\"s\"", 0}, {"1", 0}, {"true", 0}, {" {}", 0}, {"\n{}", 0},
      {"{,}", 1}, {"{\"a\"}", 4}, {"{\"a\":}", 5}, {"{\"a\":1,}", 7}, {"{'a':1}", 1}, {"{a:1}", 1},
      {"{\"a\":01}", 6}, {"{\"a\":1.}", 7}, {"{\"a\":.5}", 5}, {"{\"a\":-}", 6}, {"{\"a\":1e}", 7},
      {"{\"a\":1e+}", 8}, {"{\"a\":+1}", 5}, {"{\"a\":1.5.2}", 8}, {"{\"a\":tru}", 8}, {"{\"a\":nul1}", 8},
      {"{\"a\":TRUE}", 5}, {"{\"a\":\"x\\q\"}", 8}, {"{\"a\":\"\\u12G4\"}", 10}, {"{\"a\":\"tab\there\"}", 9},
      {"{\"a\":[1,]}", 8}, {"{\"a\":[1}", 7}, {"{\"a\":{]}", 6}, {"{}{}", 2}, {"{} x", 3},
      {"{\"a\":1\r}", 6}, {"{\n\n\"a\":1}", 2}, {"{\"a\":1]", 6},
  };
  for (auto& [text, valid] : cases) {
    std::string s = text;
    JsonPrefix p;
    size_t i = 0;
    while (i < s.size() && p.feed(static_cast<unsigned char>(s[i]))) ++i;
    EXPECT_EQ(i, valid) << s;
  }
}

TEST(JsonPrefix, BoundsIndentationAndDepth) {
  EXPECT_EQ(verdict("{\n" + std::string(JsonPrefix::kMaxIndent, ' ') + "\"a\":1}"), 'c');
  EXPECT_EQ(verdict("{\n" + std::string(JsonPrefix::kMaxIndent + 1, ' ')), 'x');
  EXPECT_EQ(verdict("{\"a\":" + std::string(JsonPrefix::kMaxDepth - 1, '[') + std::string(JsonPrefix::kMaxDepth - 1, ']') + "}"),
            'c');
  EXPECT_EQ(verdict("{\"a\":" + std::string(JsonPrefix::kMaxDepth, '[')), 'x');
}

// Random objects, compact and pretty-printed, each with one byte changed: the recognizer agrees with
// nlohmann::json on every one (whitespace-free mutations, so the whitespace bounds do not come in).
TEST(JsonPrefix, AgreesWithNlohmannOnMutatedDocuments) {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return int(rng() % unsigned(n)); };
  std::function<nlohmann::ordered_json(int)> value = [&](int depth) -> nlohmann::ordered_json {
    switch (depth > 3 ? pick(5) : pick(7)) {
      case 0: return pick(2) == 0;
      case 1: return nullptr;
      case 2: return pick(2001) - 1000;
      case 3: return double(pick(100000)) / 64.0 * (pick(2) ? -1 : 1);
      case 4: {
        std::string s;
        for (int i = pick(6); i > 0; --i) s += "ab\"\\\n\t/ z"[pick(10)];
        return s;
      }
      case 5: {
        auto a = nlohmann::ordered_json::array();
        for (int i = pick(4); i > 0; --i) a.push_back(value(depth + 1));
        return a;
      }
      default: {
        auto o = nlohmann::ordered_json::object();
        for (int i = pick(4); i > 0; --i) o["k" + std::to_string(pick(50))] = value(depth + 1);
        return o;
      }
    }
  };
  const std::string alphabet = "{}[]\":,0123456789.-+eEtrufalsn\\ubx";
  int agreed = 0, valid_mutants = 0;
  for (int n = 0; n < 3000; ++n) {
    auto obj = nlohmann::ordered_json::object();
    for (int i = pick(4); i > 0; --i) obj["key" + std::to_string(i)] = value(1);
    std::string doc = obj.dump(n % 3 == 0 ? 2 : -1);
    ASSERT_EQ(verdict(doc), 'c') << doc;
    std::string m = doc;
    size_t at = size_t(pick(int(m.size()) + 1));
    switch (pick(3)) {
      case 0: m.insert(at, 1, alphabet[size_t(pick(int(alphabet.size())))]); break;
      case 1: if (at < m.size()) m.erase(at, 1); break;
      default: if (at < m.size()) m[at] = alphabet[size_t(pick(int(alphabet.size())))]; break;
    }
    bool theirs = nlohmann::json::accept(m) && !m.empty() && m[0] == '{';
    bool ours = verdict(m) == 'c';
    EXPECT_EQ(ours, theirs) << m;
    agreed += ours == theirs;
    valid_mutants += theirs;
  }
  EXPECT_EQ(agreed, 3000);
  EXPECT_GT(valid_mutants, 300);  // the comparison covers both answers
  EXPECT_LT(valid_mutants, 2700);
}

// ---- over a real vocabulary and model ----

namespace {

struct Stories {
  engine::LoadedModel lm = engine::LoadedModel::load(test::shared_path("models/stories260K-hf"));
};

int32_t byte_token(const tokenizer::Tokenizer& tok, char c) {
  char piece[8];
  std::snprintf(piece, sizeof piece, "<0x%02X>", static_cast<unsigned char>(c));
  return *tok.token_id(piece);
}

using Result = test::EngineResult;

Result run(engine::Engine& eng, const std::vector<int32_t>& prompt, bool json, engine::SamplingParams sp = {},
           int max_tokens = 200) {
  engine::EngineRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.sampling = sp;
  r.json_object = json;
  return test::run_request(eng, r);
}

}  // namespace

TEST(JsonConstraint, MaskAllowsExactlyTheTokensThatContinueTheText) {
  OPTIQ_REQUIRE_SHARED(test::shared_path("models/stories260K-hf"));
  Stories s;
  const auto& tok = *s.lm.tokenizer;
  auto vocab = std::make_shared<engine::TokenBytes>(tok, s.lm.model->config().vocab_size);
  engine::JsonConstraint c(vocab);
  std::vector<uint8_t> allowed;
  // At the start only tokens beginning with '{' may come (stories260K: the byte token <0x7B>).
  ASSERT_EQ(c.allowed(allowed), 1u);
  EXPECT_TRUE(allowed[size_t(byte_token(tok, '{'))]);
  ASSERT_TRUE(c.accept(byte_token(tok, '{')));
  EXPECT_FALSE(c.accept(byte_token(tok, ']')));  // refused, state unchanged
  // Inside an object: '}', '"', whitespace; never a special token such as EOS.
  size_t n = c.allowed(allowed);
  for (size_t t = 0; t < allowed.size(); ++t) {
    if (!allowed[t]) continue;
    std::string b = tok.token_to_bytes(int32_t(t));
    JsonPrefix p;
    p.feed('{');
    EXPECT_TRUE(p.feed(b)) << "allowed token " << t << " '" << b << "'";
  }
  EXPECT_TRUE(allowed[size_t(byte_token(tok, '}'))]);
  EXPECT_TRUE(allowed[size_t(byte_token(tok, '"'))]);
  EXPECT_FALSE(allowed[size_t(*tok.info().eos_id)]);
  EXPECT_FALSE(allowed[size_t(byte_token(tok, 'a'))]);
  EXPECT_GE(n, 3u);
  ASSERT_TRUE(c.accept(byte_token(tok, '}')));
  EXPECT_TRUE(c.complete());
}

TEST(JsonConstraint, EngineOutputIsJsonAndEndsWhenTheObjectCloses) {
  OPTIQ_REQUIRE_SHARED(test::shared_path("models/stories260K-hf"));
  Stories s;
  const auto& tok = *s.lm.tokenizer;
  engine::Engine eng(s.lm, engine::EngineOptions{});
  std::vector<int32_t> prompt = tok.encode("Once upon a time", true);

  // Unconstrained, the model tells a story; constrained, the same greedy run is forced into an object.
  Result plain = run(eng, prompt, false);
  EXPECT_NE(plain.text.substr(0, 1), "{");
  EXPECT_FALSE(nlohmann::json::accept(plain.text));

  // This tiny story model never closes an object on its own (it writes strings until max_tokens): the
  // output is then a valid prefix, cut at the length limit.
  Result open = run(eng, prompt, true);
  EXPECT_EQ(open.finish, "length");
  EXPECT_EQ(verdict(open.text), 'p') << open.text;

  // With a bias towards '}' the object closes at once; generation stops there with "stop", not at EOS.
  engine::SamplingParams close;
  close.logit_bias = {{byte_token(tok, '}'), 100.0f}};
  Result empty = run(eng, prompt, true, close);
  EXPECT_EQ(empty.text, "{}");
  EXPECT_EQ(empty.finish, "stop");
  EXPECT_EQ(empty.tokens, 2);

  // Biased towards quotes and the closing brace, away from commas: a whole object with a key and a
  // string value, which nlohmann parses; sampled (seeded) runs are valid too.
  engine::SamplingParams kv;
  kv.logit_bias = {{byte_token(tok, '"'), 5.0f}, {byte_token(tok, '}'), 5.0f}, {*tok.token_id(","), -100.0f}};
  Result one = run(eng, prompt, true, kv, 300);
  ASSERT_EQ(one.finish, "stop") << one.text;
  auto j = nlohmann::json::parse(one.text);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 1u);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    engine::SamplingParams sp = kv;
    sp.temperature = 0.8f;
    sp.seed = seed;
    Result r = run(eng, prompt, true, sp, 300);
    if (r.finish == "stop") EXPECT_TRUE(nlohmann::json::parse(r.text).is_object()) << r.text;
    else EXPECT_EQ(verdict(r.text), 'p') << r.text;
  }
}
