// Recursive-descent parser for jinja2 syntax, following jinja2's grammar: statements and tags.
#include "chat/parser.h"

#include "util/error.h"

namespace optiq::chat {
namespace detail {

// Parses until a block tag whose name is in `ends` (left as the current token, after BlockBegin) or Eof.
void Parser::parse_body(Body& body, std::initializer_list<const char*> ends) {
  DepthGuard g(*this);
  while (true) {
    const Token& tk = cur();
    if (tk.type == Tok::Eof) {
      if (ends.size()) fail(std::string("unexpected end of template, expected '") + *ends.begin() + "'");
      return;
    }
    if (tk.type == Tok::Text) {
      auto s = make<TextStmt>(tk.line);
      s->text = tk.text;
      body.stmts.push_back(std::move(s));
      next();
    } else if (tk.type == Tok::VarBegin) {
      next();
      auto s = make<PrintStmt>(tk.line);
      s->expr = parse_tuple(true, {}, false);
      if (cur().type != Tok::VarEnd) fail("expected end of print statement, got '" + describe() + "'");
      next();
      body.stmts.push_back(std::move(s));
    } else if (tk.type == Tok::BlockBegin) {
      const Token& name = peek();
      if (name.type != Tok::Name) syntax_error(name.line, "tag name expected");
      for (const char* e : ends)
        if (name.text == e) {
          next();
          return;
        }
      next();
      body.stmts.push_back(parse_statement());
    } else {
      fail("unexpected token '" + tk.text + "'");
    }
  }
}

StmtPtr Parser::parse_statement() {
  int line = cur().line;
  std::string tag = expect_name();
  if (tag == "if") return parse_if(line);
  if (tag == "for") return parse_for(line);
  if (tag == "set") return parse_set(line);
  if (tag == "macro") return parse_macro(line);
  if (tag == "call") return parse_call_block(line);
  if (tag == "filter") return parse_filter_block(line);
  if (tag == "with") return parse_with(line);
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) fail("'" + tag + "' outside of loop");
    auto s = make<LoopControlStmt>(line);
    s->flow = tag == "break" ? Flow::Break : Flow::Continue;
    expect_block_end();
    return s;
  }
  if (tag == "generation") {
    auto s = make<ScopeBodyStmt>(line);
    expect_block_end();
    parse_body(s->body, {"endgeneration"});
    next();
    expect_block_end();
    return s;
  }
  syntax_error(line, "Encountered unknown tag '" + tag + "'.");
}

StmtPtr Parser::parse_if(int line) {
  auto s = make<IfStmt>(line);
  while (true) {
    ExprPtr cond = parse_tuple(false, {}, false);
    expect_block_end();
    Body b;
    parse_body(b, {"elif", "else", "endif"});
    s->branches.emplace_back(std::move(cond), std::move(b));
    std::string t = expect_name();
    if (t == "elif") continue;
    if (t == "else") {
      expect_block_end();
      parse_body(s->otherwise, {"endif"});
      next();
    }
    break;
  }
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_for(int line) {
  auto s = make<ForStmt>(line);
  s->target = parse_target(false, "in");
  if (!skip_name("in")) fail("expected 'in'");
  s->iter = parse_tuple(false, {"recursive"}, false, /*with_condexpr=*/false);
  if (skip_name("if")) s->filter = parse_tuple(false, {"recursive"}, false);
  if (skip_name("recursive")) s->recursive = true;
  expect_block_end();
  ++loop_depth_;
  parse_body(s->body, {"endfor", "else"});
  --loop_depth_;
  if (expect_name() == "else") {
    expect_block_end();
    parse_body(s->otherwise, {"endfor"});
    next();
  }
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_set(int line) {
  auto s = make<SetStmt>(line);
  s->target = parse_target(true, "=");
  if (skip_op("=")) {
    s->value = parse_tuple(false, {}, false);
    expect_block_end();
    return s;
  }
  if (s->target.is_tuple || !s->target.attr.empty()) {
    if (!s->target.attr.empty()) {
      // jinja2 allows `{% set ns.x %}...{% endset %}` too
    } else {
      fail("expected '='");
    }
  }
  while (skip_op("|")) s->filters.push_back(parse_filter_item());
  expect_block_end();
  s->body = std::make_unique<Body>();
  parse_body(*s->body, {"endset"});
  next();
  expect_block_end();
  return s;
}

void Parser::parse_signature(std::vector<std::string>& params, std::vector<ExprPtr>& defaults) {
  expect_op("(");
  while (!is_op(")")) {
    if (!params.empty()) expect_op(",");
    if (is_op(")")) break;
    params.push_back(expect_name());
    if (skip_op("=")) defaults.push_back(parse_expression());
    else if (!defaults.empty()) fail("non-default argument follows default argument");
  }
  expect_op(")");
}

StmtPtr Parser::parse_macro(int line) {
  auto s = make<MacroStmt>(line);
  s->name = expect_name();
  parse_signature(s->params, s->defaults);
  expect_block_end();
  int saved = loop_depth_;
  loop_depth_ = 0;
  size_t start = p_;
  parse_body(s->body, {"endmacro"});
  for (size_t i = start; i < p_; ++i)
    if (t_[i].type == Tok::Name && t_[i].text == "caller") s->uses_caller = true;
  loop_depth_ = saved;
  next();
  if (cur().type == Tok::Name) next();  // {% endmacro name %}
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_call_block(int line) {
  auto s = make<CallBlockStmt>(line);
  if (is_op("(")) parse_signature(s->params, s->defaults);
  ExprPtr e = parse_expression();
  auto* call = dynamic_cast<CallExpr*>(e.get());
  if (!call) fail("expected call");
  e.release();
  s->call.reset(call);
  expect_block_end();
  parse_body(s->body, {"endcall"});
  next();
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_filter_block(int line) {
  auto s = make<FilterBlockStmt>(line);
  do s->filters.push_back(parse_filter_item());
  while (skip_op("|"));
  expect_block_end();
  parse_body(s->body, {"endfilter"});
  next();
  expect_block_end();
  return s;
}

StmtPtr Parser::parse_with(int line) {
  auto s = make<WithStmt>(line);
  while (cur().type != Tok::BlockEnd) {
    if (!s->assigns.empty()) expect_op(",");
    Target t = parse_target(false, "=");
    expect_op("=");
    s->assigns.emplace_back(std::move(t), parse_expression());
  }
  expect_block_end();
  parse_body(s->body, {"endwith"});
  next();
  expect_block_end();
  return s;
}

Target Parser::parse_one_target(bool with_namespace) {
  Target t;
  if (skip_op("(")) {
    t = parse_target_list(with_namespace, nullptr);
    expect_op(")");
    return t;
  }
  t.name = expect_name();
  if (with_namespace && is_op(".") && peek().type == Tok::Name) {
    next();
    t.attr = expect_name();
  }
  return t;
}

Target Parser::parse_target_list(bool with_namespace, const char* end_name) {
  Target first = parse_one_target(with_namespace);
  if (!is_op(",")) return first;
  Target tup;
  tup.is_tuple = true;
  tup.tuple.push_back(std::move(first));
  while (skip_op(",")) {
    if (cur().type != Tok::Name && !is_op("(")) break;
    if (end_name && is_name(end_name)) break;
    tup.tuple.push_back(parse_one_target(with_namespace));
  }
  return tup;
}

std::unique_ptr<FilterExpr> Parser::parse_filter_item() {
  auto f = make<FilterExpr>(cur().line);
  f->name = expect_name();
  while (is_op(".") && peek().type == Tok::Name) {
    next();
    f->name += "." + expect_name();
  }
  if (is_op("(")) parse_call_args(f->args);
  return f;
}

}  // namespace detail

std::unique_ptr<Body> parse_template(const std::string& source) { return detail::Parser(lex_template(source)).parse_all(); }

}  // namespace optiq::chat
