// Expression evaluation with Python/jinja2 semantics: operators, comparisons, attribute and item access.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "chat/eval.h"
#include "util/error.h"

namespace optiq::chat {

// ---- RenderState ----

RenderState::RenderState(const Dict& context, std::optional<std::tm> now_tm, RenderLimits lim)
    : limits(lim), now(now_tm), context_(context) {
  char probe;
  stack_base_ = reinterpret_cast<uintptr_t>(&probe);
  scope_owner = std::make_shared<Scope>();
  scope = scope_owner.get();
}

RenderState::~RenderState() {
  for (auto& s : closures) s->vars.clear();  // macros reference the scopes they live in
}

Value RenderState::lookup(const std::string& name) const {
  for (const Scope* s = scope; s; s = s->parent) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  if (const Value* v = context_.find(name)) return *v;
  Value g = lookup_global(name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + name + "' is undefined");
}

void RenderState::check_size(size_t n) const {
  if (n > limits.max_output_bytes)
    throw Error(ErrorKind::InvalidArgument, "chat template: output exceeds " +
                                                std::to_string(limits.max_output_bytes) + " bytes");
}

void RenderState::write(const std::string& s) {
  check_size(out->size() + s.size());
  out->append(s);
}

void RenderState::step(uint64_t n) {
  steps_ += n;
  if (steps_ > limits.max_steps)
    throw Error(ErrorKind::InvalidArgument, "chat template: too many loop iterations or calls");
}

void RenderState::check_stack() const {
  char probe;
  uintptr_t here = reinterpret_cast<uintptr_t>(&probe);
  uintptr_t used = here > stack_base_ ? here - stack_base_ : stack_base_ - here;
  if (used > limits.max_stack_bytes) runtime_error("template recursion too deep");
}

std::string RenderState::capture(const Body& body) {
  std::string buf;
  std::string* saved = out;
  out = &buf;
  try {
    body.exec(*this);
  } catch (...) {
    out = saved;
    throw;
  }
  out = saved;
  return buf;
}

ScopeGuard::ScopeGuard(RenderState& s, std::shared_ptr<Scope> parent)
    : st(s), saved_owner(s.scope_owner), saved(s.scope) {
  auto child = std::make_shared<Scope>();
  if (parent) {
    child->parent = parent.get();
    child->parent_owner = std::move(parent);
  } else {
    child->parent = s.scope;
    child->parent_owner = s.scope_owner;
  }
  st.scope_owner = std::move(child);
  st.scope = st.scope_owner.get();
}

ScopeGuard::~ScopeGuard() {
  st.scope_owner = std::move(saved_owner);
  st.scope = saved;
}

// ---- errors ----

void runtime_error(const std::string& msg) { throw Error(ErrorKind::InvalidArgument, "chat template: " + msg); }
void undefined_error(const Value& v) { runtime_error(v.undefined_hint()); }

namespace {

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  return v.type_name() + " object";
}

int64_t normalize_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

// ---- access ----

Value get_attr(RenderState& st, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_namespace()) {
    if (const Value* v = obj.dict_ref().find(name)) return *v;
    return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
  }
  Value m = builtin_method(st, obj, name);
  if (!m.is_undefined() || m.has_hint()) return m;  // a method, or an unsafe one (undefined with a reason)
  if (obj.is_dict()) {
    if (const Value* v = obj.dict_ref().find(name)) return *v;
  }
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
}

Value get_item(RenderState& st, const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict() || obj.is_namespace()) {
    if (obj.is_dict())
      if (const Value* v = obj.dict_ref().find(key.is_bool() ? Value(key.as_int()) : key)) return *v;
    if (obj.is_namespace() && key.is_string())
      if (const Value* v = obj.dict_ref().find(key.str())) return *v;
  } else if ((obj.is_list() && !obj.is_generator()) || obj.is_string()) {
    if (key.is_int() || key.is_bool()) {
      if (obj.is_list()) {
        int64_t n = static_cast<int64_t>(obj.items().size());
        int64_t i = normalize_index(key.as_int(), n);
        if (i >= 0 && i < n) return obj.items()[static_cast<size_t>(i)];
      } else {
        const std::string& s = obj.str();
        bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
        if (ascii) {
          int64_t n = static_cast<int64_t>(s.size());
          int64_t i = normalize_index(key.as_int(), n);
          if (i >= 0 && i < n) return Value(std::string(1, s[static_cast<size_t>(i)]));
        } else {
          std::u32string u = utf8_decode(s);
          int64_t n = static_cast<int64_t>(u.size());
          int64_t i = normalize_index(key.as_int(), n);
          if (i >= 0 && i < n) return Value(utf8_encode(u.substr(static_cast<size_t>(i), 1)));
        }
      }
    }
  }
  if (key.is_string()) {
    Value a = get_attr(st, obj, key.str());
    if (!a.is_undefined()) return a;
    return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + key.str() + "'");
  }
  return Value::undefined(object_type_repr(obj) + " has no element " + key.repr());
}

Value slice_value(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (obj.is_undefined()) undefined_error(obj);
  auto as_opt = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (!v.is_int() && !v.is_bool()) runtime_error(std::string("slice ") + what + " must be an integer");
    return v.as_int();
  };
  auto step_o = as_opt(step_v, "step");
  int64_t step = step_o.value_or(1);
  if (step == 0) runtime_error("slice step cannot be zero");
  auto do_slice = [&](int64_t n, auto&& take) {
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t i = *v < 0 ? *v + n : *v;
      if (step > 0) return std::clamp<int64_t>(i, 0, n);
      return std::clamp<int64_t>(i, -1, n - 1);
    };
    int64_t b = clamp(as_opt(start_v, "start"), step > 0 ? 0 : n - 1);
    int64_t e = clamp(as_opt(stop_v, "stop"), step > 0 ? n : -1);
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) take(static_cast<size_t>(i));
  };
  if (obj.is_list() && !obj.is_generator()) {
    ValueList out;
    do_slice(static_cast<int64_t>(obj.items().size()), [&](size_t i) { out.push_back(obj.items()[i]); });
    return Value::list(std::move(out), obj.is_tuple());
  }
  if (obj.is_string()) {
    std::u32string u = utf8_decode(obj.str()), out;
    do_slice(static_cast<int64_t>(u.size()), [&](size_t i) { out += u[i]; });
    return Value(utf8_encode(out));
  }
  runtime_error("'" + obj.type_name() + "' object is not subscriptable");
}

Value call_value(RenderState& st, const Value& fn, CallArgs& args) {
  st.check_stack();
  if (fn.is_callable()) return fn.callable_ref().fn(args, st);
  if (fn.is_dict())  // loop(...) in recursive for loops
    if (const Value* c = fn.dict_ref().find("__call__"); c && c->is_callable()) return c->callable_ref().fn(args, st);
  if (fn.is_undefined()) undefined_error(fn);
  runtime_error("'" + fn.type_name() + "' object is not callable");
}

// ---- iteration / containment ----

ValueList iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return {};
    case Value::Type::List: return v.items();
    case Value::Type::Dict: {
      ValueList keys;
      for (auto& [k, _] : v.dict_ref().entries()) keys.push_back(k);
      return keys;
    }
    case Value::Type::String: {
      ValueList out;
      for (char32_t c : utf8_decode(v.str())) out.push_back(Value(utf8_encode(std::u32string(1, c))));
      return out;
    }
    default: runtime_error("'" + v.type_name() + "' object is not iterable");
  }
}

int64_t py_len(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return static_cast<int64_t>(utf8_length(v.str()));
    case Value::Type::List:
      if (v.is_generator()) break;
      return static_cast<int64_t>(v.items().size());
    case Value::Type::Dict: return static_cast<int64_t>(v.dict_ref().size());
    default: break;
  }
  runtime_error("object of type '" + v.type_name() + "' has no len()");
}

bool contains(const Value& c, const Value& item) {
  if (c.is_string()) {
    if (!item.is_string()) runtime_error("'in <string>' requires string as left operand, not " + item.type_name());
    return c.str().find(item.str()) != std::string::npos;
  }
  if (c.is_dict()) return c.dict_ref().find(item.is_bool() ? Value(item.as_int()) : item) != nullptr;
  if (c.is_list()) {
    for (auto& e : c.items())
      if (e.equals(item)) return true;
    return false;
  }
  if (c.is_undefined()) return false;
  runtime_error("argument of type '" + c.type_name() + "' is not iterable");
}

// ---- comparison ----

int python_cmp(const Value& a, const Value& b, bool ci) {
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    if (!ci) return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
    std::string x = a.str(), y = b.str();
    for (auto& c : x) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto& c : y) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return x < y ? -1 : x == y ? 0 : 1;
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    size_t n = std::min(a.items().size(), b.items().size());
    for (size_t i = 0; i < n; ++i) {
      if (a.items()[i].equals(b.items()[i])) continue;
      return python_cmp(a.items()[i], b.items()[i], ci);
    }
    return a.items().size() < b.items().size() ? -1 : a.items().size() > b.items().size() ? 1 : 0;
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  runtime_error("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

bool compare(CmpOp op, const Value& a, const Value& b) {
  switch (op) {
    case CmpOp::Eq: return a.equals(b);
    case CmpOp::Ne: return !a.equals(b);
    case CmpOp::Lt: return python_cmp(a, b) < 0;
    case CmpOp::Le: return python_cmp(a, b) <= 0;
    case CmpOp::Gt: return python_cmp(a, b) > 0;
    case CmpOp::Ge: return python_cmp(a, b) >= 0;
    case CmpOp::In: return contains(b, a);
    case CmpOp::NotIn: return !contains(b, a);
  }
  return false;
}

// ---- arithmetic ----

namespace {

[[noreturn]] void bad_operands(const char* op, const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (std::string(op) == "+" && a.is_string())
    runtime_error("can only concatenate str (not \"" + b.type_name() + "\") to str");
  runtime_error(std::string("unsupported operand type(s) for ") + op + ": '" + a.type_name() + "' and '" +
                b.type_name() + "'");
}

bool is_intlike(const Value& v) { return v.is_int() || v.is_bool(); }

Value repeat(RenderState& st, const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value(std::string()) : Value::list({}, seq.is_tuple());
  if (seq.is_string()) {
    st.check_size(seq.str().size() * static_cast<size_t>(n));
    std::string out;
    out.reserve(seq.str().size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value(std::move(out));
  }
  if (seq.items().size() * static_cast<size_t>(n) > st.limits.max_collection) runtime_error("list too large");
  ValueList out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out), seq.is_tuple());
}

}  // namespace

// '%d' of a float: its integer part, exact however large, as Python's int() gives it.
static std::string float_as_int_text(const Value& v) {
  int64_t i = 0;
  if (Value::truncate_to_int(v.as_double(), i)) return std::to_string(i);
  if (!std::isfinite(v.as_double())) runtime_error("cannot convert float " + v.to_str() + " to integer");
  char buf[400];  // up to 309 digits
  std::snprintf(buf, sizeof buf, "%.0f", std::trunc(v.as_double()));
  return buf;
}

Value binary_op(RenderState& st, BinOp op, const Value& a, const Value& b) {
  if (op == BinOp::Concat) {
    std::string s = a.to_str() + b.to_str();
    st.check_size(s.size());
    return Value(std::move(s));
  }
  bool num = a.is_number() && b.is_number();
  bool ints = num && is_intlike(a) && is_intlike(b);
  switch (op) {
    case BinOp::Add: {
      if (ints) {
        int64_t r;
        if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) runtime_error("integer overflow");
        return Value(r);
      }
      if (num) return Value(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        st.check_size(a.str().size() + b.str().size());
        bool safe = a.is_safe() || b.is_safe();  // Markup + str escapes the plain side
        std::string l = a.is_safe() || !safe ? a.str() : html_escape(a.str());
        std::string r = b.is_safe() || !safe ? b.str() : html_escape(b.str());
        return Value(l + r, safe);
      }
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
        ValueList out = a.items();
        out.insert(out.end(), b.items().begin(), b.items().end());
        return Value::list(std::move(out), a.is_tuple());
      }
      bad_operands("+", a, b);
    }
    case BinOp::Sub:
      if (ints) {
        int64_t r;
        if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) runtime_error("integer overflow");
        return Value(r);
      }
      if (num) return Value(a.as_double() - b.as_double());
      bad_operands("-", a, b);
    case BinOp::Mul:
      if (ints) {
        int64_t r;
        if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) runtime_error("integer overflow");
        return Value(r);
      }
      if (num) return Value(a.as_double() * b.as_double());
      if ((a.is_string() || (a.is_list() && !a.is_generator())) && is_intlike(b)) return repeat(st, a, b.as_int());
      if ((b.is_string() || (b.is_list() && !b.is_generator())) && is_intlike(a)) return repeat(st, b, a.as_int());
      bad_operands("*", a, b);
    case BinOp::Div:
      if (num) {
        if (b.as_double() == 0) runtime_error("division by zero");
        return Value(a.as_double() / b.as_double());
      }
      bad_operands("/", a, b);
    case BinOp::FloorDiv:
      if (ints) {
        if (b.as_int() == 0) runtime_error("integer division or modulo by zero");
        int64_t q = a.as_int() / b.as_int();
        if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
        return Value(q);
      }
      if (num) {
        if (b.as_double() == 0) runtime_error("float floor division by zero");
        return Value(std::floor(a.as_double() / b.as_double()));
      }
      bad_operands("//", a, b);
    case BinOp::Mod:
      if (ints) {
        if (b.as_int() == 0) runtime_error("integer division or modulo by zero");
        int64_t r = a.as_int() % b.as_int();
        if (r != 0 && ((r < 0) != (b.as_int() < 0))) r += b.as_int();
        return Value(r);
      }
      if (num) {
        if (b.as_double() == 0) runtime_error("float modulo");
        double r = std::fmod(a.as_double(), b.as_double());
        if (r != 0 && ((r < 0) != (b.as_double() < 0))) r += b.as_double();
        return Value(r);
      }
      if (a.is_string()) {  // printf-style formatting: %s only
        ValueList vals = b.is_tuple() ? b.items() : ValueList{b};
        std::string out;
        size_t vi = 0;
        const std::string& f = a.str();
        for (size_t i = 0; i < f.size(); ++i) {
          if (f[i] != '%' || i + 1 >= f.size()) {
            out += f[i];
            continue;
          }
          char c = f[++i];
          if (c == '%') out += '%';
          else if (c == 's' || c == 'd' || c == 'r') {
            if (vi >= vals.size()) runtime_error("not enough arguments for format string");
            const Value& v = vals[vi++];
            if (c == 'r') out += v.repr();
            else if (c == 'd' && v.is_float()) out += float_as_int_text(v);
            else out += v.to_str();
          } else {
            runtime_error(std::string("unsupported format character '") + c + "'");
          }
        }
        if (vi < vals.size()) runtime_error("not all arguments converted during string formatting");
        return Value(out);
      }
      bad_operands("%", a, b);
    case BinOp::Pow:
      if (ints && b.as_int() >= 0) {
        int64_t r = 1, base = a.as_int();
        for (int64_t e = b.as_int(); e > 0; --e)
          if (__builtin_mul_overflow(r, base, &r)) runtime_error("integer overflow");
        return Value(r);
      }
      if (num) return Value(std::pow(a.as_double(), b.as_double()));
      bad_operands("** or pow()", a, b);
    default: break;
  }
  runtime_error("bad operator");
}

// ---- expression nodes ----

CallArgs Arguments::eval(RenderState& st) const {
  CallArgs c;
  for (auto& a : args) c.args.push_back(a->eval(st));
  for (auto& [k, v] : kwargs) c.kwargs.emplace_back(k, v->eval(st));
  return c;
}

Value ConstExpr::eval(RenderState&) const { return value; }
Value NameExpr::eval(RenderState& st) const { return st.lookup(name); }

Value ListExpr::eval(RenderState& st) const {
  ValueList out;
  out.reserve(items.size());
  for (auto& e : items) out.push_back(e->eval(st));
  return Value::list(std::move(out), tuple);
}

Value DictExpr::eval(RenderState& st) const {
  auto d = std::make_shared<Dict>();
  for (auto& [k, v] : items) {
    Value key = k->eval(st);
    if (key.is_list() && !key.is_tuple()) runtime_error("unhashable type: 'list'");
    if (key.is_dict()) runtime_error("unhashable type: 'dict'");
    d->set(key, v->eval(st));
  }
  return Value::dict(std::move(d));
}

Value GetattrExpr::eval(RenderState& st) const { return get_attr(st, obj->eval(st), attr); }
Value GetitemExpr::eval(RenderState& st) const { return get_item(st, obj->eval(st), key->eval(st)); }

Value SliceExpr::eval(RenderState& st) const {
  Value o = obj->eval(st);
  Value a = start ? start->eval(st) : Value::none();
  Value b = stop ? stop->eval(st) : Value::none();
  Value c = step ? step->eval(st) : Value::none();
  return slice_value(o, a, b, c);
}

Value CallExpr::eval(RenderState& st) const {
  Value fn = callee->eval(st);
  CallArgs a = args.eval(st);
  return call_value(st, fn, a);
}

Value FilterExpr::eval(RenderState& st) const { return apply(st, operand->eval(st)); }

Value FilterExpr::apply(RenderState& st, Value v) const {
  CallArgs a = args.eval(st);
  return apply_filter(st, name, v, a);
}

Value TestExpr::eval(RenderState& st) const {
  if (!has_test(name)) runtime_error("No test named '" + name + "'.");
  Value v = operand->eval(st);
  CallArgs a = args.eval(st);
  return Value(apply_test(st, name, v, a));
}

Value UnaryExpr::eval(RenderState& st) const {
  Value v = operand->eval(st);
  switch (op) {
    case UnaryOp::Not: return Value(!v.truthy());
    case UnaryOp::Neg:
      if (v.is_int() || v.is_bool()) return Value(-v.as_int());
      if (v.is_float()) return Value(-v.as_double());
      break;
    case UnaryOp::Pos:
      if (v.is_int() || v.is_bool()) return Value(v.as_int());
      if (v.is_float()) return v;
      break;
  }
  if (v.is_undefined()) undefined_error(v);
  runtime_error("bad operand type for unary operator: '" + v.type_name() + "'");
}

Value BinaryExpr::eval(RenderState& st) const {
  if (op == BinOp::And) {
    Value l = left->eval(st);
    return l.truthy() ? right->eval(st) : l;
  }
  if (op == BinOp::Or) {
    Value l = left->eval(st);
    return l.truthy() ? l : right->eval(st);
  }
  Value l = left->eval(st);
  Value r = right->eval(st);
  return binary_op(st, op, l, r);
}

Value CompareExpr::eval(RenderState& st) const {
  Value l = first->eval(st);
  for (auto& [op, e] : rest) {
    Value r = e->eval(st);
    if (!compare(op, l, r)) return Value(false);
    l = std::move(r);
  }
  return Value(true);
}

Value CondExpr::eval(RenderState& st) const {
  if (cond->eval(st).truthy()) return then->eval(st);
  if (otherwise) return otherwise->eval(st);
  return Value::undefined("the inline if-expression on line " + std::to_string(line) +
                          " evaluated to false and no else section was defined.");
}

}  // namespace optiq::chat
