// Statement execution: output, control flow, assignment scoping, macros, call/filter blocks.
#include "chat/eval.h"
#include "util/error.h"

namespace optiq::chat {

namespace {

// True when v is, or holds through lists, dicts and namespaces, the namespace whose entries are `target`.
// Values are reference-counted: a namespace that held itself would never be freed (Python's collector frees
// such cycles; ours is refcounting alone), so that assignment is an error.
bool holds(const Value& v, const Dict* target) {
  if (v.is_namespace() || v.is_dict()) {
    if (&v.dict_ref() == target) return true;
    for (auto& [k, x] : v.dict_ref().entries())
      if (holds(x, target)) return true;
  } else if (v.is_list()) {
    for (auto& x : v.items())
      if (holds(x, target)) return true;
  }
  return false;
}

void assign_target(RenderState& st, const Target& t, const Value& v) {
  if (t.is_tuple) {
    if (v.is_undefined()) undefined_error(v);
    ValueList items = iterate(v);
    if (items.size() != t.tuple.size())
      runtime_error(items.size() > t.tuple.size() ? "too many values to unpack (expected " + std::to_string(t.tuple.size()) + ")"
                                                  : "not enough values to unpack (expected " + std::to_string(t.tuple.size()) +
                                                        ", got " + std::to_string(items.size()) + ")");
    for (size_t i = 0; i < items.size(); ++i) assign_target(st, t.tuple[i], items[i]);
    return;
  }
  if (!t.attr.empty()) {
    Value ns = st.lookup(t.name);
    if (!ns.is_namespace()) runtime_error("cannot assign attribute on non-namespace object");
    if (holds(v, &ns.dict_ref())) runtime_error("a namespace cannot hold itself ('" + t.name + "." + t.attr + "')");
    ns.namespace_dict().set(Value(t.attr), v);
    return;
  }
  st.assign(t.name, v);
}

Value make_loop(int64_t i, const ValueList& items, int depth) {
  auto d = std::make_shared<Dict>();
  int64_t n = static_cast<int64_t>(items.size());
  d->set(Value("index0"), Value(i));
  d->set(Value("index"), Value(i + 1));
  d->set(Value("revindex0"), Value(n - i - 1));
  d->set(Value("revindex"), Value(n - i));
  d->set(Value("first"), Value(i == 0));
  d->set(Value("last"), Value(i == n - 1));
  d->set(Value("length"), Value(n));
  d->set(Value("depth0"), Value(static_cast<int64_t>(depth)));
  d->set(Value("depth"), Value(static_cast<int64_t>(depth + 1)));
  d->set(Value("previtem"), i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item"));
  d->set(Value("nextitem"), i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item"));
  d->set(Value("cycle"), Value::callable("cycle", [i](CallArgs& a, RenderState&) -> Value {
           if (a.args.empty()) runtime_error("no items for cycling given");
           return a.args[static_cast<size_t>(i) % a.args.size()];
         }));
  return Value::dict(std::move(d));
}

}  // namespace

Flow Body::exec(RenderState& st) const {
  st.check_stack();
  for (auto& s : stmts) {
    Flow f = s->exec(st);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Flow TextStmt::exec(RenderState& st) const {
  st.write(text);
  return Flow::Normal;
}

Flow PrintStmt::exec(RenderState& st) const {
  st.write(expr->eval(st).to_str());
  return Flow::Normal;
}

Flow IfStmt::exec(RenderState& st) const {
  for (auto& [cond, body] : branches)
    if (cond->eval(st).truthy()) return body.exec(st);
  return otherwise.exec(st);
}

Flow ForStmt::exec(RenderState& st) const {
  run(st, iter->eval(st), 0);
  return Flow::Normal;
}

void ForStmt::run(RenderState& st, const Value& iterable, int depth) const {
  ValueList items = iterate(iterable);
  st.step(items.size());
  if (filter) {
    ValueList kept;
    for (auto& it : items) {
      ScopeGuard g(st);
      assign_target(st, target, it);
      if (filter->eval(st).truthy()) kept.push_back(it);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    otherwise.exec(st);
    return;
  }
  for (size_t i = 0; i < items.size(); ++i) {
    ScopeGuard g(st);
    assign_target(st, target, items[i]);
    Value loop = make_loop(static_cast<int64_t>(i), items, depth);
    if (recursive) {
      const ForStmt* self = this;
      loop.namespace_dict().set(Value("__call__"), Value::callable("loop", [self, depth](CallArgs& a, RenderState& s) {
                                  if (a.args.size() != 1) runtime_error("loop() takes exactly one argument");
                                  if (++s.call_depth > s.limits.max_call_depth) runtime_error("recursion limit exceeded");
                                  std::string buf;
                                  std::string* saved = s.out;
                                  s.out = &buf;
                                  try {
                                    self->run(s, a.args[0], depth + 1);
                                  } catch (...) {
                                    s.out = saved;
                                    --s.call_depth;
                                    throw;
                                  }
                                  s.out = saved;
                                  --s.call_depth;
                                  return Value(std::move(buf));
                                }));
    }
    st.assign("loop", loop);
    Flow f = body.exec(st);
    if (f == Flow::Break) break;
  }
}

Flow SetStmt::exec(RenderState& st) const {
  Value v;
  if (value) {
    v = value->eval(st);
  } else {
    std::string s;
    {
      ScopeGuard g(st);
      s = st.capture(*body);
    }
    v = Value(std::move(s));
    for (auto& f : filters) v = f->apply(st, v);
  }
  assign_target(st, target, v);
  return Flow::Normal;
}

namespace {

// Binds a macro's (or caller's) parameters in the current (fresh) scope.
void bind_params(RenderState& st, const std::string& name, const std::vector<std::string>& params,
                 const std::vector<ExprPtr>& defaults, CallArgs& args, bool accepts_caller) {
  if (args.args.size() > params.size())
    runtime_error("macro '" + name + "' takes not more than " + std::to_string(params.size()) + " argument(s)");
  std::vector<bool> given(params.size(), false);
  for (size_t i = 0; i < args.args.size(); ++i) {
    st.assign(params[i], args.args[i]);
    given[i] = true;
  }
  for (auto& [k, v] : args.kwargs) {
    size_t i = 0;
    while (i < params.size() && params[i] != k) ++i;
    if (i == params.size()) {
      if (k == "caller" && accepts_caller) {
        st.assign(k, v);
        continue;
      }
      runtime_error("macro '" + name + "' takes no keyword argument '" + k + "'");
    }
    if (given[i]) runtime_error("macro '" + name + "' got multiple values for argument '" + k + "'");
    st.assign(params[i], v);
    given[i] = true;
  }
  size_t first_default = params.size() - defaults.size();
  for (size_t i = 0; i < params.size(); ++i) {
    if (given[i]) continue;
    if (i >= first_default) st.assign(params[i], defaults[i - first_default]->eval(st));
    else st.assign(params[i], Value::undefined("parameter '" + params[i] + "' was not provided"));
  }
}

}  // namespace

Flow MacroStmt::exec(RenderState& st) const {
  const MacroStmt* self = this;
  std::shared_ptr<Scope> captured = st.scope_owner;
  st.closures.push_back(captured);
  Scope* raw = captured.get();
  st.assign(name, Value::callable(name, [self, raw](CallArgs& args, RenderState& s) {
              if (++s.call_depth > s.limits.max_call_depth) {
                --s.call_depth;
                runtime_error("maximum macro recursion depth exceeded");
              }
              s.step();
              std::string out;
              try {
                // the closure scope outlives the render's macros (RenderState::closures)
                ScopeGuard g(s, std::shared_ptr<Scope>(std::shared_ptr<Scope>{}, raw));
                bind_params(s, self->name, self->params, self->defaults, args, self->uses_caller);
                out = s.capture(self->body);
              } catch (...) {
                --s.call_depth;
                throw;
              }
              --s.call_depth;
              return Value(std::move(out));
            }));
  return Flow::Normal;
}

Flow CallBlockStmt::exec(RenderState& st) const {
  const CallBlockStmt* self = this;
  std::shared_ptr<Scope> captured = st.scope_owner;
  st.closures.push_back(captured);
  Scope* raw = captured.get();
  Value caller = Value::callable("caller", [self, raw](CallArgs& args, RenderState& s) {
    ScopeGuard g(s, std::shared_ptr<Scope>(std::shared_ptr<Scope>{}, raw));
    bind_params(s, "caller", self->params, self->defaults, args, false);
    return Value(s.capture(self->body));
  });
  Value fn = call->callee->eval(st);
  CallArgs a = call->args.eval(st);
  a.kwargs.emplace_back("caller", caller);
  st.write(call_value(st, fn, a).to_str());
  return Flow::Normal;
}

Flow FilterBlockStmt::exec(RenderState& st) const {
  Value v;
  {
    ScopeGuard g(st);
    v = Value(st.capture(body));
  }
  for (auto& f : filters) v = f->apply(st, v);
  st.write(v.to_str());
  return Flow::Normal;
}

Flow WithStmt::exec(RenderState& st) const {
  ValueList vals;
  for (auto& [t, e] : assigns) vals.push_back(e->eval(st));
  ScopeGuard g(st);
  for (size_t i = 0; i < assigns.size(); ++i) assign_target(st, assigns[i].first, vals[i]);
  return body.exec(st);
}

Flow ScopeBodyStmt::exec(RenderState& st) const { return body.exec(st); }

}  // namespace optiq::chat
