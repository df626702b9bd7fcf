#pragma once
// Syntax tree of a parsed template. Nodes are immutable after parsing; evaluation (eval_*.cpp) only reads them,
// so one tree serves concurrent renders.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace optiq::chat {

class RenderState;

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value eval(RenderState& st) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  CallArgs eval(RenderState& st) const;
};

struct ConstExpr : Expr {
  Value value;
  Value eval(RenderState& st) const override;
};
struct NameExpr : Expr {
  std::string name;
  Value eval(RenderState& st) const override;
};
struct ListExpr : Expr {
  std::vector<ExprPtr> items;
  bool tuple = false;
  Value eval(RenderState& st) const override;
};
struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(RenderState& st) const override;
};
struct GetattrExpr : Expr {
  ExprPtr obj;
  std::string attr;
  Value eval(RenderState& st) const override;
};
struct GetitemExpr : Expr {
  ExprPtr obj, key;
  Value eval(RenderState& st) const override;
};
struct SliceExpr : Expr {
  ExprPtr obj, start, stop, step;  // any of start/stop/step may be null
  Value eval(RenderState& st) const override;
};
struct CallExpr : Expr {
  ExprPtr callee;
  Arguments args;
  Value eval(RenderState& st) const override;
};
struct FilterExpr : Expr {
  ExprPtr operand;  // null inside {% filter %} blocks (the block's output is the operand)
  std::string name;
  Arguments args;
  Value eval(RenderState& st) const override;
  Value apply(RenderState& st, Value operand) const;
};
struct TestExpr : Expr {
  ExprPtr operand;
  std::string name;
  Arguments args;
  Value eval(RenderState& st) const override;
};
enum class UnaryOp { Not, Neg, Pos };
struct UnaryExpr : Expr {
  UnaryOp op;
  ExprPtr operand;
  Value eval(RenderState& st) const override;
};
enum class BinOp { And, Or, Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat };
struct BinaryExpr : Expr {
  BinOp op;
  ExprPtr left, right;
  Value eval(RenderState& st) const override;
};
enum class CmpOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };
struct CompareExpr : Expr {
  ExprPtr first;
  std::vector<std::pair<CmpOp, ExprPtr>> rest;
  Value eval(RenderState& st) const override;
};
struct CondExpr : Expr {
  ExprPtr cond, then, otherwise;  // otherwise may be null (-> undefined)
  Value eval(RenderState& st) const override;
};

// ---- statements ----

enum class Flow { Normal, Break, Continue };

struct Stmt {
  int line = 0;
  virtual ~Stmt() = default;
  virtual Flow exec(RenderState& st) const = 0;
};
using StmtPtr = std::unique_ptr<Stmt>;

struct Body {
  std::vector<StmtPtr> stmts;
  Flow exec(RenderState& st) const;
};

// An assignment target: a name, a namespace attribute (ns.attr), or a tuple of targets.
struct Target {
  std::string name;
  std::string attr;  // non-empty: `name.attr`
  std::vector<Target> tuple;
  bool is_tuple = false;
};

struct TextStmt : Stmt {
  std::string text;
  Flow exec(RenderState& st) const override;
};
struct PrintStmt : Stmt {
  ExprPtr expr;
  Flow exec(RenderState& st) const override;
};
struct IfStmt : Stmt {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
  Flow exec(RenderState& st) const override;
};
struct ForStmt : Stmt {
  Target target;
  ExprPtr iter, filter;
  Body body, otherwise;
  bool recursive = false;
  Flow exec(RenderState& st) const override;
  void run(RenderState& st, const Value& iterable, int depth) const;
};
struct SetStmt : Stmt {
  Target target;
  ExprPtr value;                             // `{% set x = v %}`
  std::unique_ptr<Body> body;                // `{% set x %}...{% endset %}`
  std::vector<std::unique_ptr<FilterExpr>> filters;  // `{% set x | f %}`
  Flow exec(RenderState& st) const override;
};
struct MacroStmt : Stmt {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned to the last params
  Body body;
  bool uses_caller = false;
  Flow exec(RenderState& st) const override;
};
struct CallBlockStmt : Stmt {
  std::unique_ptr<CallExpr> call;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;
  Body body;
  Flow exec(RenderState& st) const override;
};
struct FilterBlockStmt : Stmt {
  std::vector<std::unique_ptr<FilterExpr>> filters;
  Body body;
  Flow exec(RenderState& st) const override;
};
struct WithStmt : Stmt {
  std::vector<std::pair<Target, ExprPtr>> assigns;
  Body body;
  Flow exec(RenderState& st) const override;
};
struct LoopControlStmt : Stmt {
  Flow flow;
  Flow exec(RenderState& st) const override { return flow; }
};
struct ScopeBodyStmt : Stmt {  // {% generation %}: renders its body
  Body body;
  Flow exec(RenderState& st) const override;
};

// Parses a whole template. Throws optiq::Error(BadModel, "chat template: line N: ...").
std::unique_ptr<Body> parse_template(const std::string& source);

}  // namespace optiq::chat
