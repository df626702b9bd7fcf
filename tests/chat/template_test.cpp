// Engine semantics beyond the Python goldens: error kinds and messages, undefined values, limits on hostile
// templates, thread safety, value printing.
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "chat/template.h"
#include "chat/value.h"
#include "util/error.h"

namespace optiq::chat {
namespace {

using ojson = nlohmann::ordered_json;

std::string render(const std::string& src, const ojson& ctx = ojson::object(), RenderOptions opts = {}) {
  return ChatTemplate(src).render(ctx, opts);
}

// Returns the error thrown while parsing or rendering (kind, message); fails if none.
std::pair<ErrorKind, std::string> error_of(const std::string& src, const ojson& ctx = ojson::object(),
                                           RenderOptions opts = {}) {
  try {
    render(src, ctx, opts);
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << "no error for: " << src;
  return {ErrorKind::Internal, ""};
}

TEST(ChatTemplate, SyntaxErrorsAreBadModelWithLine) {
  for (const char* src : {"a\n{% if x %}never closed", "x\n\n{% for %}", "{{ 'unterminated }}", "{# open comment",
                          "{% endif %}", "{% unknowntag %}", "{{ a + }}", "{{ (1, 2 }}", "{% set %}",
                          "{% for x in y %}{% endif %}", "{{ a b }}", "{% macro m(a=1, b) %}{% endmacro %}"}) {
    try {
      ChatTemplate t(src);
      ADD_FAILURE() << "parsed: " << src;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadModel) << src;
      EXPECT_EQ(std::string(e.what()).rfind("chat template: line ", 0), 0u) << e.what();
    }
  }
  try {
    ChatTemplate t("line1\nline2\n{% if x %}");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3:"), std::string::npos) << e.what();
  }
}

// Found by fuzz/jinja_fuzz: numbers too large for int64 in an index, an attribute path or a literal were
// uncaught std::out_of_range (a crash, and a server that loads such a template would abort).
TEST(ChatTemplate, HugeNumbersAreErrorsOrFloatsNotCrashes) {
  auto [kind, msg] = error_of("{{ x.99999999999999999999999 }}");
  EXPECT_EQ(kind, ErrorKind::BadModel);
  EXPECT_NE(msg.find("index '99999999999999999999999' is too large"), std::string::npos) << msg;
  EXPECT_EQ(render("{{ 99999999999999999999 > 1 }}"), "True");
  EXPECT_EQ(render("{{ (" + std::string(400, '9') + ") > 1 }}"), "True");  // past 1e308: inf, as a float
  EXPECT_EQ(render("{{ xs | map(attribute='a.99999999999999999999') | list | length }}", ojson{{"xs", {{{"a", {1}}}}}}), "1");
}

// Found by fuzz/jinja_fuzz (UBSan: a member call on a null pointer): a slice among a tuple subscript's items
// (y[1:2, 3]) kept no object to slice and crashed at render. It is a syntax error now; y[1:], y[1], y[1, 2] stay.
TEST(ChatTemplate, ASliceInsideATupleSubscriptIsASyntaxError) {
  for (const char* src : {"{{ y[1:fa, l] }}", "{{ y[0, ::2] }}"}) {
    auto [kind, msg] = error_of(src);
    EXPECT_EQ(kind, ErrorKind::BadModel) << src;
    EXPECT_NE(msg.find("a slice inside a tuple subscript is not supported"), std::string::npos) << msg;
  }
  EXPECT_EQ(render("{{ y[1:] }}{{ y[1] }}{{ d[1, 2] is defined }}", ojson{{"y", "hello"}, {"d", ojson::object()}}), "elloeFalse");
}

// Found by fuzz/jinja_fuzz (UBSan: a float out of int64's range converted to an integer): tojson(indent=2.6e53).
// Floats truncate to integers as Python's int() does where they fit; past 2^63 '%d' prints the float's exact
// integer value (as Python), int() falls back to its default, and an indent too large to build is an error.
TEST(ChatTemplate, FloatsBeyondTheIntegerRangeAreNotUndefinedBehaviour) {
  EXPECT_EQ(render("{{ '%d' % 2.9 }},{{ '%d' % -2.9 }},{{ '%d' % 1e20 }},{{ 1e300 | int }},{{ -9.3e18 | int(7) }},{{ 9.2e18 | int }}"),
            "2,-2,100000000000000000000,0,7,9200000000000000000");
  for (auto [src, says] : {std::pair{"{{ x | tojson(indent=266666666666666666666666666666666666666666666666666666) }}",
                                     "tojson: 2.6666666666666665e+53 is out of the integer range"},
                           std::pair{"{{ x | tojson(indent=1e30) }}", "tojson: 1e+30 is out of the integer range"},
                           std::pair{"{{ x | tojson(indent=5000) }}", "tojson: an indent of 5000 is too large"},
                           std::pair{"{{ 'a\nb' | indent(1e9) }}", "indent: an indent of 1000000000 is too large"}}) {
    auto [kind, msg] = error_of(src, ojson{{"x", {1, 2}}});
    EXPECT_EQ(kind, ErrorKind::InvalidArgument) << src;
    EXPECT_NE(msg.find(says), std::string::npos) << msg;
  }
  EXPECT_EQ(render("{{ x | tojson(indent=2.5) }}", ojson{{"x", {1}}}), "[\n  1\n]");
}

// Found by fuzz/jinja_fuzz (a leak under LeakSanitizer): a namespace assigned into itself, directly or through a
// list or another namespace, made a reference cycle that was never freed. It is a render error now.
TEST(ChatTemplate, ANamespaceCannotHoldItself) {
  for (const char* src : {"{% set ns = namespace(n=0) %}{% set ns.n = ns %}", "{% set ns = namespace() %}{% set ns.x = [1, ns] %}",
                          "{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = {'k': b} %}"}) {
    auto [kind, msg] = error_of(src);
    EXPECT_EQ(kind, ErrorKind::InvalidArgument) << src;  // a render error, as the template's other run-time errors
    EXPECT_NE(msg.find("a namespace cannot hold itself"), std::string::npos) << msg;
  }
  EXPECT_EQ(render("{% set a = namespace(n=1) %}{% set b = namespace(a=a) %}{% set b.c = a %}{{ b.c.n }}"), "1");
}

TEST(ChatTemplate, RaiseExceptionIsInvalidArgumentWithExactMessage) {
  auto [kind, msg] = error_of("{{ raise_exception('Only user and assistant roles are supported!') }}");
  EXPECT_EQ(kind, ErrorKind::InvalidArgument);
  EXPECT_EQ(msg, "Only user and assistant roles are supported!");
  try {
    render("{{ raise_exception('x') }}");
  } catch (const Error& e) {
    EXPECT_EQ(e.http_status(), 400);
  }
}

TEST(ChatTemplate, UndefinedBehavesLikeJinja2Default) {
  EXPECT_EQ(render("[{{ nope }}]"), "[]");
  EXPECT_EQ(render("{{ nope is defined }} {{ nope|length }} {{ nope|default('d') }} {{ nope ~ 'x' }}"), "False 0 d x");
  EXPECT_EQ(render("{% for x in nope %}x{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(render("{{ d.missing is defined }} [{{ d.missing }}] {{ d['missing'] is undefined }}", {{"d", ojson::object()}}),
            "False [] True");
  EXPECT_EQ(render("{{ 'x' in nope }} {{ nope == nope }} {{ not nope }}"), "False True True");
  EXPECT_EQ(error_of("{{ nope.attr }}").second, "chat template: 'nope' is undefined");
  EXPECT_EQ(error_of("{{ nope() }}").first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{{ nope + 1 }}").first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{{ nope[0] }}").first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{{ d.a.b }}", {{"d", ojson::object()}}).second, "chat template: 'dict object' has no attribute 'a'");
  EXPECT_EQ(render("{{ none.x is defined }}"), "False");  // attribute of None is undefined, not an error
}

TEST(ChatTemplate, PythonPrinting) {
  EXPECT_EQ(float_repr(1.0), "1.0");
  EXPECT_EQ(float_repr(0.1), "0.1");
  EXPECT_EQ(float_repr(1e-5), "1e-05");
  EXPECT_EQ(float_repr(0.0001), "0.0001");
  EXPECT_EQ(float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(float_repr(1e16), "1e+16");
  EXPECT_EQ(float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(float_repr(-2.5e300), "-2.5e+300");
  EXPECT_EQ(float_repr(123456.789), "123456.789");
  EXPECT_EQ(str_repr("it's"), "\"it's\"");
  EXPECT_EQ(str_repr("a\\b\n\x01"), "'a\\\\b\\n\\x01'");
  ojson ctx = {{"v", {{"k", {1, 2.5, nullptr, true, "s"}}, {"a", ojson::object()}}}};
  EXPECT_EQ(render("{{ v }}", ctx), "{'k': [1, 2.5, None, True, 's'], 'a': {}}");
  EXPECT_EQ(render("{{ v|tojson }}", ctx), R"({"k": [1, 2.5, null, true, "s"], "a": {}})");
  EXPECT_EQ(render("{{ v|tojson(indent=2) }}", {{"v", {{"z", 1}, {"a", {"é"}}}}}),
            "{\n  \"z\": 1,\n  \"a\": [\n    \"é\"\n  ]\n}");
}

TEST(ChatTemplate, ContextMustBeAnObject) {
  EXPECT_THROW(ChatTemplate("x").render(ojson::array()), Error);
}

TEST(ChatTemplate, StrftimeNowIsInjectable) {
  RenderOptions o;
  std::tm tm{};
  tm.tm_year = 124;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  o.now = tm;
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}", ojson::object(), o), "26 Jul 2024");
  EXPECT_FALSE(render("{{ strftime_now('%Y') }}").empty());
}

TEST(ChatTemplate, ListAppendIsUnsafeAsInTheSandbox) {
  auto [kind, msg] = error_of("{% set l = [] %}{{ l.append(1) }}");
  EXPECT_EQ(kind, ErrorKind::InvalidArgument);
  EXPECT_NE(msg.find("unsafe"), std::string::npos);
}

TEST(ChatTemplate, LimitsStopHostileTemplates) {
  RenderOptions small;
  small.max_output_bytes = 1 << 20;
  // output growth
  EXPECT_EQ(error_of("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", ojson::object(), small).first,
            ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{{ 'x' * 10000000000 }}").first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                     ojson::object(), small).first,
            ErrorKind::InvalidArgument);
  // unbounded recursion
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").first, ErrorKind::InvalidArgument);
  // too much work
  RenderOptions few;
  few.max_steps = 100000;
  EXPECT_EQ(error_of("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", ojson::object(), few).first,
            ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of("{% for i in range(1000000000) %}{% endfor %}").first, ErrorKind::InvalidArgument);
  // integer overflow instead of Python big ints
  EXPECT_EQ(error_of("{{ 2 ** 1000 }}").first, ErrorKind::InvalidArgument);
  // deep nesting in the parser
  EXPECT_EQ(error_of("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}").first, ErrorKind::BadModel);
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  for (int i = 0; i < 5000; ++i) ifs += "{% endif %}";
  EXPECT_EQ(error_of(ifs).first, ErrorKind::BadModel);
  EXPECT_EQ(error_of("{{ " + std::string(50000, '-') + "1 }}").first, ErrorKind::BadModel);
  EXPECT_EQ(error_of("{{ x" + std::string(5000, '|') + " }}").first, ErrorKind::BadModel);
  std::string chain = "{{ 'a'";
  for (int i = 0; i < 100000; ++i) chain += " ~ 'a'";
  EXPECT_EQ(error_of(chain + " }}").first, ErrorKind::BadModel);
  std::string filters = "{{ 'a'";
  for (int i = 0; i < 100000; ++i) filters += "|trim";
  EXPECT_EQ(error_of(filters + " }}").first, ErrorKind::BadModel);
  // recursion through macros that nest statements: stopped by the stack guard or the call depth
  RenderOptions deep;
  deep.max_call_depth = 100000;
  EXPECT_EQ(error_of("{% macro f(n) %}{% if true %}{% for x in [1] %}{{ f(n + 1) }}{% endfor %}{% endif %}{% endmacro %}{{ f(0) }}",
                     ojson::object(), deep).second,
            "chat template: template recursion too deep");
}

TEST(ChatTemplate, ConcurrentRendersShareOneParse) {
  ChatTemplate t(
      "{% set ns = namespace(n=0) %}{% macro m(x) %}<{{ x }}>{% endmacro %}"
      "{% for msg in messages %}{% set ns.n = ns.n + 1 %}{{ m(msg.content) }}{% endfor %}{{ ns.n }}");
  ojson ctx = {{"messages", ojson::array()}};
  for (int i = 0; i < 50; ++i) ctx["messages"].push_back({{"role", "user"}, {"content", std::to_string(i)}});
  std::string want = t.render(ctx);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (t.render(ctx) != want) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_NE(want.find("<49>50"), std::string::npos);
}

TEST(ChatTemplate, ScopingOfSetInLoopsAndMacros) {
  EXPECT_EQ(render("{% set x = 'outer' %}{% for i in [1] %}{% set x = 'inner' %}{% endfor %}{{ x }}"), "outer");
  EXPECT_EQ(render("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}"), "2");
  EXPECT_EQ(render("{% macro m(a) %}{% set a = a * 2 %}{{ a }}{% endmacro %}{{ m(2) }}{{ a }}"), "4");
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
}

TEST(ChatTemplate, LoopVariables) {
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"), "1a,2b,3c");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}/{{ loop.length }}{% endfor %}"), "1/22/2");
  EXPECT_EQ(render("{% for x in [[1, [2]], [3, []]] recursive %}{{ x[0] if x[0] is number else x }}"
                   "{% if x[1] %}({{ loop(x[1]|map('list')|list) if false else '' }}){% endif %}{% endfor %}"),
            "1()3");
}

}  // namespace
}  // namespace optiq::chat
