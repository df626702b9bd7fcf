#pragma once
// Render-time state shared by the evaluator files (eval_expr.cpp, eval_stmt.cpp, builtins.cpp, methods.cpp).
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/ast.h"
#include "chat/value.h"

namespace optiq::chat {

struct RenderLimits {
  size_t max_output_bytes = 64u << 20;   // any single string/output buffer
  int max_call_depth = 64;               // nested macro calls
  uint64_t max_steps = 20'000'000;       // loop iterations + macro calls + filter elements
  size_t max_collection = 1'000'000;     // range() / list repetition sizes
  size_t max_stack_bytes = 2u << 20;     // native stack the evaluator may use
};

struct Scope {
  Scope* parent = nullptr;
  std::shared_ptr<Scope> parent_owner;  // keeps a captured parent alive (macro closures)
  std::unordered_map<std::string, Value> vars;
};

class RenderState {
 public:
  RenderState(const Dict& context, std::optional<std::tm> now, RenderLimits limits);
  ~RenderState();

  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v) { scope->vars[name] = std::move(v); }

  void write(const std::string& s);
  void check_size(size_t n) const;  // throws when a produced string would exceed the output limit
  void step(uint64_t n = 1);        // counts work; throws past max_steps
  void check_stack() const;         // throws when evaluation recursed too deep

  // Renders `body` into a fresh buffer and returns it.
  std::string capture(const Body& body);

  std::shared_ptr<Scope> scope_owner;  // the current scope (owned)
  Scope* scope = nullptr;
  std::string* out = nullptr;
  int call_depth = 0;
  const RenderLimits limits;
  std::optional<std::tm> now;
  std::vector<std::shared_ptr<Scope>> closures;  // scopes captured by macros: cleared at the end (cycles)

 private:
  const Dict& context_;
  uintptr_t stack_base_;
  uint64_t steps_ = 0;
};

// Runs `body` in a child scope of the current one.
struct ScopeGuard {
  RenderState& st;
  std::shared_ptr<Scope> saved_owner;
  Scope* saved;
  explicit ScopeGuard(RenderState& s, std::shared_ptr<Scope> parent = nullptr);
  ~ScopeGuard();
};

// ---- shared semantics (eval_expr.cpp) ----
[[noreturn]] void runtime_error(const std::string& msg);
[[noreturn]] void undefined_error(const Value& v);
Value get_attr(RenderState& st, const Value& obj, const std::string& name);
Value get_item(RenderState& st, const Value& obj, const Value& key);
Value call_value(RenderState& st, const Value& fn, CallArgs& args);
Value binary_op(RenderState& st, BinOp op, const Value& a, const Value& b);
bool compare(CmpOp op, const Value& a, const Value& b);
int python_cmp(const Value& a, const Value& b, bool case_insensitive = false);  // <0, 0, >0; throws on mixed types
bool contains(const Value& container, const Value& item);
ValueList iterate(const Value& v);  // Python iteration: list items, dict keys, string chars, undefined -> []
int64_t py_len(const Value& v);
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);

// ---- builtins.cpp / methods.cpp ----
Value apply_filter(RenderState& st, const std::string& name, const Value& v, CallArgs& args);
bool apply_test(RenderState& st, const std::string& name, const Value& v, CallArgs& args);
bool has_test(const std::string& name);
Value builtin_method(RenderState& st, const Value& obj, const std::string& name);  // undefined if none
Value lookup_global(const std::string& name);  // undefined if none

}  // namespace optiq::chat
