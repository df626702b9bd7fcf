#pragma once
// The template parser (internal): statements in parser.cpp, expressions in parser_expr.cpp.
#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "chat/ast.h"
#include "chat/lexer.h"

namespace optiq::chat::detail {

inline constexpr int kMaxNesting = 200;
inline constexpr int kMaxChain = 1000;  // operands in one operator/filter chain (evaluation recurses through it)

template <class T>
inline std::unique_ptr<T> make(int line) {
  auto n = std::make_unique<T>();
  n->line = line;
  return n;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::unique_ptr<Body> parse_all() {
    auto body = std::make_unique<Body>();
    parse_body(*body, {});
    if (cur().type != Tok::Eof) fail("unexpected '" + cur().text + "'");
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[p_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  void next() {
    if (p_ + 1 < t_.size()) ++p_;
  }
  [[noreturn]] void fail(const std::string& msg) const { syntax_error(cur().line, msg); }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "', got '" + describe() + "'");
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail("expected name, got '" + describe() + "'");
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail("expected end of statement block, got '" + describe() + "'");
    next();
  }
  std::string describe() const {
    switch (cur().type) {
      case Tok::Eof: return "end of template";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::VarEnd: return "end of print statement";
      default: return cur().text;
    }
  }
  void chain_step(int& n) {
    if (++n > kMaxChain) fail("expression too long");
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.fail("template nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // ---- statements (parser.cpp) ----
  void parse_body(Body& body, std::initializer_list<const char*> ends);
  StmtPtr parse_statement();
  StmtPtr parse_if(int line);
  StmtPtr parse_for(int line);
  StmtPtr parse_set(int line);
  void parse_signature(std::vector<std::string>& params, std::vector<ExprPtr>& defaults);
  StmtPtr parse_macro(int line);
  StmtPtr parse_call_block(int line);
  StmtPtr parse_filter_block(int line);
  StmtPtr parse_with(int line);
  Target parse_one_target(bool with_namespace);
  Target parse_target_list(bool with_namespace, const char* end_name);
  Target parse_target(bool with_namespace, const char* end) { return parse_target_list(with_namespace, end); }
  std::unique_ptr<FilterExpr> parse_filter_item();

  // ---- expressions (parser_expr.cpp) ----
  bool tuple_end(std::initializer_list<const char*> extra) const;
  ExprPtr parse_tuple(bool allow_empty_print, std::initializer_list<const char*> extra, bool explicit_parens, bool with_condexpr = true);
  ExprPtr parse_expression();
  ExprPtr binary(BinOp op, ExprPtr l, ExprPtr r, int line);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr node);
  ExprPtr parse_filter_expr(ExprPtr node);
  ExprPtr parse_test(ExprPtr node);
  ExprPtr parse_subscript(ExprPtr node);
  ExprPtr parse_subscribed(const ExprPtr&);
  void parse_call_args(Arguments& a);
  ExprPtr parse_call(ExprPtr node);

  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace optiq::chat::detail
