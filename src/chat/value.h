#pragma once
// The values a chat template computes with: Python's None/bool/int/float/str/list/tuple/dict as jinja2 sees
// them, plus jinja2's Undefined, namespace() objects and callables (macros, globals, bound methods).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace optiq::chat {

class Value;
struct CallArgs;
class RenderState;

using ValueList = std::vector<Value>;

class Dict;

struct ListData {
  ValueList items;
  bool tuple = false;
  bool generator = false;  // result of map/select/...: iterable once, not JSON-serialisable, no len()
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&, RenderState&)> fn;
};

class Value {
 public:
  enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // undefined
  static Value undefined(std::string hint = {});
  static Value none();
  Value(bool b);
  Value(int v) : Value(static_cast<int64_t>(v)) {}
  Value(int64_t v);
  Value(double v);
  Value(std::string s, bool safe = false);
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(ValueList items = {}, bool tuple = false);
  static Value generator(ValueList items);
  static Value dict(std::shared_ptr<Dict> d = nullptr);
  static Value namespace_(std::shared_ptr<Dict> d = nullptr);
  static Value callable(std::string name, std::function<Value(CallArgs&, RenderState&)> fn);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool; }
  bool is_string() const { return type_ == Type::String; }
  bool is_list() const { return type_ == Type::List; }
  bool is_tuple() const { return type_ == Type::List && list_->tuple; }
  bool is_generator() const { return type_ == Type::List && list_->generator; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_namespace() const { return type_ == Type::Namespace; }
  bool is_callable() const { return type_ == Type::Callable; }
  bool is_safe() const { return type_ == Type::String && b_; }  // jinja2 Markup (from |safe)

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_double() const { return type_ == Type::Float ? d_ : static_cast<double>(i_); }  // numbers only
  // A float truncated toward zero as Python's int() does, where the result fits int64_t (false: NaN, inf, or
  // a magnitude of 2^63 or more, which Python would make a big integer).
  static bool truncate_to_int(double d, int64_t& out) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
    out = static_cast<int64_t>(d);
    return true;
  }
  const std::string& str() const { return *s_; }                                           // strings only
  const ValueList& items() const { return list_->items; }                                   // lists only
  const Dict& dict_ref() const { return *dict_; }                                           // dicts/namespaces
  Dict& namespace_dict() const { return *dict_; }
  const Callable& callable_ref() const { return *fn_; }
  const std::string& undefined_hint() const;  // jinja2's message when an undefined value is used
  bool has_hint() const { return type_ == Type::Undefined && s_ != nullptr; }

  bool truthy() const;
  std::string to_str() const;   // Python str(): what {{ }} prints
  std::string repr() const;     // Python repr()
  std::string type_name() const;  // Python type name, for error messages
  bool equals(const Value& o) const;  // Python ==

  static Value from_json(const nlohmann::ordered_json& j);
  // json.dumps(value, ensure_ascii=False, indent=indent, separators default, sort_keys) as transformers' tojson.
  // separators: {item_sep, key_sep}, or null for Python's defaults.
  std::string to_json(int indent = -1, bool sort_keys = false,
                      const std::pair<std::string, std::string>* separators = nullptr) const;

 private:
  Type type_ = Type::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::shared_ptr<const std::string> s_;  // string, or undefined hint
  std::shared_ptr<ListData> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Callable> fn_;
};

// Insertion-ordered dictionary (Python dict). Keys are Values (usually strings).
class Dict {
 public:
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const Value* find(const std::string& key) const { return find(std::string_view(key)); }
  const Value* find(const char* key) const { return find(std::string_view(key)); }
  void set(const Value& key, Value v);
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<Value, Value>> entries_;
  std::unordered_map<std::string, size_t> str_index_;  // string keys -> position in entries_
};

// Positional and keyword arguments of a call.
struct CallArgs {
  ValueList args;
  std::vector<std::pair<std::string, Value>> kwargs;

  // Python-style binding of (args, kwargs) to named parameters; missing ones get `defaults`.
  // Throws on too many positional arguments or unknown keywords, naming `fn`.
  ValueList bind(const char* fn, const std::vector<std::string>& names, ValueList defaults) const;
};

std::string float_repr(double d);
std::string str_repr(const std::string& s);  // Python repr of a str
std::string html_escape(const std::string& s);

// UTF-8 helpers (Python strings count code points).
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
size_t utf8_length(std::string_view s);

}  // namespace optiq::chat
