// Expression parsing with jinja2's operator precedence: conditional < or < and < not < comparisons
// < + - < ~ < * / // % < ** < unary - + < postfix (. [] ()) and filters/tests.
#include <charconv>
#include <cstdlib>

#include "chat/parser.h"

namespace optiq::chat::detail {

bool Parser::tuple_end(std::initializer_list<const char*> extra) const {
  if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || cur().type == Tok::Eof || is_op(")")) return true;
  for (const char* e : extra)
    if (is_name(e)) return true;
  return false;
}

ExprPtr Parser::parse_tuple(bool allow_empty_print, std::initializer_list<const char*> extra, bool explicit_parens, bool with_condexpr) {
  int line = cur().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (tuple_end(extra)) break;
    items.push_back(with_condexpr ? parse_expression() : parse_or());
    if (is_op(",")) is_tuple = true;
    else break;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) fail("Expected an expression, got '" + describe() + "'");
  }
  (void)allow_empty_print;
  auto t = make<ListExpr>(line);
  t->items = std::move(items);
  t->tuple = true;
  return t;
}

ExprPtr Parser::parse_expression() {
  DepthGuard g(*this);
  ExprPtr e = parse_or();
  int chain = 0;
  while (is_name("if")) {
    chain_step(chain);
    int line = cur().line;
    next();
    auto c = make<CondExpr>(line);
    c->then = std::move(e);
    c->cond = parse_or();
    if (skip_name("else")) c->otherwise = parse_expression();
    e = std::move(c);
  }
  return e;
}

ExprPtr Parser::binary(BinOp op, ExprPtr l, ExprPtr r, int line) {
  auto b = make<BinaryExpr>(line);
  b->op = op;
  b->left = std::move(l);
  b->right = std::move(r);
  return b;
}

ExprPtr Parser::parse_or() {
  ExprPtr l = parse_and();
  int chain = 0;
  while (is_name("or")) {
    chain_step(chain);
    int line = cur().line;
    next();
    l = binary(BinOp::Or, std::move(l), parse_and(), line);
  }
  return l;
}

ExprPtr Parser::parse_and() {
  ExprPtr l = parse_not();
  int chain = 0;
  while (is_name("and")) {
    chain_step(chain);
    int line = cur().line;
    next();
    l = binary(BinOp::And, std::move(l), parse_not(), line);
  }
  return l;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    DepthGuard g(*this);
    auto u = make<UnaryExpr>(cur().line);
    next();
    u->op = UnaryOp::Not;
    u->operand = parse_not();
    return u;
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  int line = cur().line;
  ExprPtr first = parse_math1();
  std::vector<std::pair<CmpOp, ExprPtr>> rest;
  int chain = 0;
  while (true) {
    chain_step(chain);
    CmpOp op;
    if (is_op("==")) op = CmpOp::Eq;
    else if (is_op("!=")) op = CmpOp::Ne;
    else if (is_op("<")) op = CmpOp::Lt;
    else if (is_op("<=")) op = CmpOp::Le;
    else if (is_op(">")) op = CmpOp::Gt;
    else if (is_op(">=")) op = CmpOp::Ge;
    else if (is_name("in")) op = CmpOp::In;
    else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
      next();
      op = CmpOp::NotIn;
    } else break;
    next();
    rest.emplace_back(op, parse_math1());
  }
  if (rest.empty()) return first;
  auto c = make<CompareExpr>(line);
  c->first = std::move(first);
  c->rest = std::move(rest);
  return c;
}

ExprPtr Parser::parse_math1() {
  ExprPtr l = parse_concat();
  int chain = 0;
  while (is_op("+") || is_op("-")) {
    chain_step(chain);
    BinOp op = cur().text == "+" ? BinOp::Add : BinOp::Sub;
    int line = cur().line;
    next();
    l = binary(op, std::move(l), parse_concat(), line);
  }
  return l;
}

ExprPtr Parser::parse_concat() {
  ExprPtr l = parse_math2();
  int chain = 0;
  while (is_op("~")) {
    chain_step(chain);
    int line = cur().line;
    next();
    l = binary(BinOp::Concat, std::move(l), parse_math2(), line);
  }
  return l;
}

ExprPtr Parser::parse_math2() {
  ExprPtr l = parse_pow();
  int chain = 0;
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    chain_step(chain);
    const std::string& t = cur().text;
    BinOp op = t == "*" ? BinOp::Mul : t == "/" ? BinOp::Div : t == "//" ? BinOp::FloorDiv : BinOp::Mod;
    int line = cur().line;
    next();
    l = binary(op, std::move(l), parse_pow(), line);
  }
  return l;
}

ExprPtr Parser::parse_pow() {
  ExprPtr l = parse_unary(true);
  int chain = 0;
  while (is_op("**")) {
    chain_step(chain);
    int line = cur().line;
    next();
    l = binary(BinOp::Pow, std::move(l), parse_unary(true), line);
  }
  return l;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  DepthGuard g(*this);
  ExprPtr node;
  if (is_op("-") || is_op("+")) {
    auto u = make<UnaryExpr>(cur().line);
    u->op = is_op("-") ? UnaryOp::Neg : UnaryOp::Pos;
    next();
    u->operand = parse_unary(false);
    node = std::move(u);
  } else {
    node = parse_primary();
  }
  node = parse_postfix(std::move(node));
  if (with_filter) node = parse_filter_expr(std::move(node));
  return node;
}

ExprPtr Parser::parse_primary() {
  const Token& tk = cur();
  int line = tk.line;
  if (tk.type == Tok::Name) {
    auto c = make<ConstExpr>(line);
    if (tk.text == "true" || tk.text == "True") c->value = Value(true);
    else if (tk.text == "false" || tk.text == "False") c->value = Value(false);
    else if (tk.text == "none" || tk.text == "None") c->value = Value::none();
    else {
      auto n = make<NameExpr>(line);
      n->name = tk.text;
      next();
      return n;
    }
    next();
    return c;
  }
  if (tk.type == Tok::String) {
    std::string s;
    while (cur().type == Tok::String) {
      s += cur().text;
      next();
    }
    auto c = make<ConstExpr>(line);
    c->value = Value(std::move(s));
    return c;
  }
  if (tk.type == Tok::Int) {
    auto c = make<ConstExpr>(line);
    int64_t v = 0;
    auto r = std::from_chars(tk.text.data(), tk.text.data() + tk.text.size(), v);
    if (r.ec != std::errc()) c->value = Value(std::strtod(tk.text.c_str(), nullptr));  // beyond int64: a float (inf past 1e308)
    else c->value = Value(v);
    next();
    return c;
  }
  if (tk.type == Tok::Float) {
    auto c = make<ConstExpr>(line);
    c->value = Value(std::strtod(tk.text.c_str(), nullptr));
    next();
    return c;
  }
  if (is_op("(")) {
    next();
    ExprPtr e = parse_tuple(false, {}, true);
    expect_op(")");
    return e;
  }
  if (is_op("[")) {
    next();
    auto l = make<ListExpr>(line);
    while (!is_op("]")) {
      if (!l->items.empty()) expect_op(",");
      if (is_op("]")) break;
      l->items.push_back(parse_expression());
    }
    expect_op("]");
    return l;
  }
  if (is_op("{")) {
    next();
    auto d = make<DictExpr>(line);
    while (!is_op("}")) {
      if (!d->items.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr k = parse_expression();
      expect_op(":");
      d->items.emplace_back(std::move(k), parse_expression());
    }
    expect_op("}");
    return d;
  }
  fail("unexpected '" + describe() + "'");
}

ExprPtr Parser::parse_postfix(ExprPtr node) {
  int chain = 0;
  while (true) {
    chain_step(chain);
    if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
    else if (is_op("(")) node = parse_call(std::move(node));
    else return node;
  }
}

ExprPtr Parser::parse_filter_expr(ExprPtr node) {
  int chain = 0;
  while (true) {
    chain_step(chain);
    if (is_op("|")) {
      int line = cur().line;
      next();
      auto f = parse_filter_item();
      f->line = line;
      f->operand = std::move(node);
      node = std::move(f);
    } else if (is_name("is")) {
      node = parse_test(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr Parser::parse_test(ExprPtr node) {
  int line = cur().line;
  next();
  bool negated = skip_name("not");
  auto t = make<TestExpr>(line);
  t->operand = std::move(node);
  t->name = expect_name();
  while (is_op(".") && peek().type == Tok::Name) {
    next();
    t->name += "." + expect_name();
  }
  Tok ty = cur().type;
  if (is_op("(")) {
    parse_call_args(t->args);
  } else if ((ty == Tok::Name || ty == Tok::String || ty == Tok::Int || ty == Tok::Float || is_op("[") || is_op("{")) &&
             !is_name("else") && !is_name("or") && !is_name("and")) {
    if (is_name("is")) fail("You cannot chain multiple tests with is");
    t->args.args.push_back(parse_postfix(parse_primary()));
  }
  if (!negated) return t;
  auto u = make<UnaryExpr>(line);
  u->op = UnaryOp::Not;
  u->operand = std::move(t);
  return u;
}

ExprPtr Parser::parse_subscript(ExprPtr node) {
  int line = cur().line;
  if (skip_op(".")) {
    if (cur().type == Tok::Name) {
      auto g = make<GetattrExpr>(line);
      g->obj = std::move(node);
      g->attr = cur().text;
      next();
      return g;
    }
    if (cur().type == Tok::Int) {
      auto g = make<GetitemExpr>(line);
      g->obj = std::move(node);
      auto c = make<ConstExpr>(line);
      int64_t index = 0;
      const std::string& t = cur().text;
      if (std::from_chars(t.data(), t.data() + t.size(), index).ec != std::errc()) fail("index '" + t + "' is too large");
      c->value = Value(index);
      g->key = std::move(c);
      next();
      return g;
    }
    fail("expected name or number");
  }
  expect_op("[");
  std::vector<ExprPtr> parts;
  ExprPtr result;
  while (!is_op("]")) {
    if (!parts.empty()) expect_op(",");
    parts.push_back(parse_subscribed(node));
  }
  expect_op("]");
  if (parts.size() == 1) {
    if (auto* sl = dynamic_cast<SliceExpr*>(parts[0].get()); sl && !sl->obj) {
      sl->obj = std::move(node);
      return std::move(parts[0]);
    }
    auto g = make<GetitemExpr>(line);
    g->obj = std::move(node);
    g->key = std::move(parts[0]);
    return g;
  }
  for (const ExprPtr& e : parts)  // Python's y[1:2, 3] indexes with a tuple holding a slice: no value of ours
    if (dynamic_cast<SliceExpr*>(e.get())) fail("a slice inside a tuple subscript is not supported");
  auto tup = make<ListExpr>(line);
  tup->tuple = true;
  tup->items = std::move(parts);
  auto g = make<GetitemExpr>(line);
  g->obj = std::move(node);
  g->key = std::move(tup);
  return g;
}

// One subscript: an expression, or a slice (returned as a SliceExpr without obj).
ExprPtr Parser::parse_subscribed(const ExprPtr&) {
  int line = cur().line;
  ExprPtr start;
  if (!is_op(":")) {
    start = parse_expression();
    if (!is_op(":")) return start;
  }
  next();  // ':'
  auto s = make<SliceExpr>(line);
  s->start = std::move(start);
  if (!is_op("]") && !is_op(",") && !is_op(":")) s->stop = parse_expression();
  if (skip_op(":")) {
    if (!is_op("]") && !is_op(",")) s->step = parse_expression();
  }
  return s;
}

void Parser::parse_call_args(Arguments& a) {
  expect_op("(");
  bool first = true;
  while (!is_op(")")) {
    if (!first) {
      expect_op(",");
      if (is_op(")")) break;
    }
    first = false;
    if (is_op("*") || is_op("**")) fail("*args / **kwargs in calls are not supported");
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
      std::string key = cur().text;
      next();
      next();
      a.kwargs.emplace_back(key, parse_expression());
    } else {
      if (!a.kwargs.empty()) fail("invalid syntax for function call expression");
      a.args.push_back(parse_expression());
    }
  }
  expect_op(")");
}

ExprPtr Parser::parse_call(ExprPtr node) {
  auto c = make<CallExpr>(cur().line);
  c->callee = std::move(node);
  parse_call_args(c->args);
  return c;
}

}  // namespace optiq::chat::detail
