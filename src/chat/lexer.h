#pragma once
// Splits a jinja2 template into tokens, applying jinja2's whitespace rules as transformers configures them
// (trim_blocks, lstrip_blocks, `-`/`+` markers, newline normalisation, dropped trailing newline).
#include <string>
#include <vector>

namespace optiq::chat {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // Text: the data; String: the decoded literal; Op: the operator; Name/Int/Float: as written
  int line;
};

// Throws optiq::Error(BadModel, "chat template: line N: ...") on a lexical error.
std::vector<Token> lex_template(const std::string& source);

[[noreturn]] void syntax_error(int line, const std::string& msg);

}  // namespace optiq::chat
