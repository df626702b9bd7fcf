#include "chat/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "util/error.h"

namespace optiq::chat {

// ---- Dict ----

const Value* Dict::find(std::string_view key) const {
  auto it = str_index_.find(std::string(key));
  return it == str_index_.end() ? nullptr : &entries_[it->second].second;
}

const Value* Dict::find(const Value& key) const {
  if (key.is_string()) return find(key.str());
  for (auto& [k, v] : entries_)
    if (k.equals(key)) return &v;
  return nullptr;
}

void Dict::set(const Value& key, Value v) {
  if (key.is_string()) {
    auto [it, inserted] = str_index_.try_emplace(key.str(), entries_.size());
    if (inserted) entries_.emplace_back(key, std::move(v));
    else entries_[it->second].second = std::move(v);
    return;
  }
  for (auto& [k, old] : entries_)
    if (k.equals(key)) {
      old = std::move(v);
      return;
    }
  entries_.emplace_back(key, std::move(v));
}

// ---- construction ----

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.s_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.type_ = Type::None;
  return v;
}
Value::Value(bool b) : type_(Type::Bool), b_(b), i_(b ? 1 : 0) {}
Value::Value(int64_t v) : type_(Type::Int), i_(v) {}
Value::Value(double v) : type_(Type::Float), d_(v) {}
Value::Value(std::string s, bool safe)
    : type_(Type::String), b_(safe), s_(std::make_shared<const std::string>(std::move(s))) {}

Value Value::list(ValueList items, bool tuple) {
  Value v;
  v.type_ = Type::List;
  v.list_ = std::make_shared<ListData>();
  v.list_->items = std::move(items);
  v.list_->tuple = tuple;
  return v;
}
Value Value::generator(ValueList items) {
  Value v = list(std::move(items));
  v.list_->generator = true;
  return v;
}
Value Value::dict(std::shared_ptr<Dict> d) {
  Value v;
  v.type_ = Type::Dict;
  v.dict_ = d ? std::move(d) : std::make_shared<Dict>();
  return v;
}
Value Value::namespace_(std::shared_ptr<Dict> d) {
  Value v = dict(std::move(d));
  v.type_ = Type::Namespace;
  return v;
}
Value Value::callable(std::string name, std::function<Value(CallArgs&, RenderState&)> fn) {
  Value v;
  v.type_ = Type::Callable;
  v.fn_ = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

const std::string& Value::undefined_hint() const {
  static const std::string generic = "value is undefined";
  return s_ ? *s_ : generic;
}

// ---- Python semantics ----

bool Value::truthy() const {
  switch (type_) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return b_;
    case Type::Int: return i_ != 0;
    case Type::Float: return d_ != 0.0;
    case Type::String: return !s_->empty();
    case Type::List: return list_->generator || !list_->items.empty();
    case Type::Dict: return dict_->size() > 0;
    case Type::Namespace:
    case Type::Callable: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return b_ ? "Markup" : "str";
    case Type::List: return list_->generator ? "generator" : list_->tuple ? "tuple" : "list";
    case Type::Dict: return "dict";
    case Type::Namespace: return "Namespace";
    case Type::Callable: return "function";
  }
  return "object";
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (type_ != Type::Float && o.type_ != Type::Float) return i_ == o.i_;
    return as_double() == o.as_double();
  }
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::Undefined:
    case Type::None: return true;
    case Type::String: return *s_ == *o.s_;
    case Type::List: {
      if (list_->tuple != o.list_->tuple || list_->generator || o.list_->generator) return list_ == o.list_;
      auto& a = list_->items;
      auto& b = o.list_->items;
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (!a[i].equals(b[i])) return false;
      return true;
    }
    case Type::Dict: {
      if (dict_->size() != o.dict_->size()) return false;
      for (auto& [k, v] : dict_->entries()) {
        const Value* ov = o.dict_->find(k);
        if (!ov || !ov->equals(v)) return false;
      }
      return true;
    }
    case Type::Namespace: return dict_ == o.dict_;
    case Type::Callable: return fn_ == o.fn_;
    default: return false;
  }
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // e.g. "-1.2345e+02"
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exp = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out;
  if (exp >= -4 && exp < 16) {  // Python repr: fixed notation for 1e-4 <= |d| < 1e16
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." + digits.substr(static_cast<size_t>(exp) + 1);
    }
    return (neg ? "-" : "") + out;
  }
  out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += exp < 0 ? "e-" : "e+";
  int ae = std::abs(exp);
  if (ae < 10) out += "0";
  out += std::to_string(ae);
  return (neg ? "-" : "") + out;
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + static_cast<size_t>(n) > s.size()) n = 1;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

std::string str_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  static const char* hex = "0123456789abcdef";
  for (char32_t c : utf8_decode(s)) {
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) {
      out += "\\x";
      out += hex[(c >> 4) & 15];
      out += hex[c & 15];
    } else {
      out += utf8_encode(std::u32string(1, c));
    }
  }
  out += q;
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Value::to_str() const {
  switch (type_) {
    case Type::Undefined: return "";
    case Type::String: return *s_;
    default: return repr();
  }
}

std::string Value::repr() const {
  switch (type_) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "None";
    case Type::Bool: return b_ ? "True" : "False";
    case Type::Int: return std::to_string(i_);
    case Type::Float: return float_repr(d_);
    case Type::String: return b_ ? "Markup(" + str_repr(*s_) + ")" : str_repr(*s_);
    case Type::List: {
      if (list_->generator) return "<generator object sync_do_map at 0x7f0000000000>";
      std::string out = list_->tuple ? "(" : "[";
      for (size_t i = 0; i < list_->items.size(); ++i) {
        if (i) out += ", ";
        out += list_->items[i].repr();
      }
      if (list_->tuple && list_->items.size() == 1) out += ",";
      return out + (list_->tuple ? ")" : "]");
    }
    case Type::Dict:
    case Type::Namespace: {
      std::string out = "{";
      bool first = true;
      for (auto& [k, v] : dict_->entries()) {
        if (!first) out += ", ";
        first = false;
        out += k.repr() + ": " + v.repr();
      }
      out += "}";
      return type_ == Type::Namespace ? "<Namespace " + out + ">" : out;
    }
    case Type::Callable: return "<function " + fn_->name + ">";
  }
  return "";
}

// ---- JSON ----

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<double>(u)) : Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto& [k, v] : j.items()) d->set(Value(k), from_json(v));
      return dict(std::move(d));
    }
    default: return none();
  }
}

namespace {

void json_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += hex[(c >> 4) & 15];
          out += hex[c & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string json_key(const Value& k) {
  switch (k.type()) {
    case Value::Type::String: return k.str();
    case Value::Type::None: return "null";
    case Value::Type::Bool: return k.as_bool() ? "true" : "false";
    case Value::Type::Int: return std::to_string(k.as_int());
    case Value::Type::Float: return float_repr(k.as_double());
    default:
      throw Error(ErrorKind::InvalidArgument,
                  "chat template: keys must be str, int, float, bool or None, not " + k.type_name());
  }
}

struct JsonOpts {
  int indent;
  bool sort_keys;
  std::string item_sep, key_sep;
};

void json_dump(std::string& out, const Value& v, const JsonOpts& o, int level) {
  int indent = o.indent;
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  const std::string& item_sep = o.item_sep;
  if (level > 512) throw Error(ErrorKind::InvalidArgument, "chat template: tojson: value nested too deeply");
  switch (v.type()) {
    case Value::Type::None: out += "null"; return;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::Int: out += std::to_string(v.as_int()); return;
    case Value::Type::Float: {
      double d = v.as_double();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
      else out += float_repr(d);
      return;
    }
    case Value::Type::String: json_string(out, v.str()); return;
    case Value::Type::List: {
      if (v.is_generator()) break;
      if (v.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_dump(out, v.items()[i], o, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case Value::Type::Dict: {
      if (v.dict_ref().size() == 0) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> kv;
      for (auto& [k, val] : v.dict_ref().entries()) kv.emplace_back(json_key(k), &val);
      if (o.sort_keys) std::stable_sort(kv.begin(), kv.end(), [](auto& a, auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t i = 0; i < kv.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_string(out, kv[i].first);
        out += o.key_sep;
        json_dump(out, *kv[i].second, o, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default: break;
  }
  throw Error(ErrorKind::InvalidArgument,
              "chat template: Object of type " + v.type_name() + " is not JSON serializable");
}

}  // namespace

std::string Value::to_json(int indent, bool sort_keys, const std::pair<std::string, std::string>* seps) const {
  JsonOpts o{indent, sort_keys, indent < 0 ? ", " : ",", ": "};
  if (seps) {
    o.item_sep = seps->first;
    o.key_sep = seps->second;
  }
  std::string out;
  json_dump(out, *this, o, 0);
  return out;
}

// ---- CallArgs ----

ValueList CallArgs::bind(const char* fn, const std::vector<std::string>& names, ValueList defaults) const {
  if (args.size() > names.size())
    throw Error(ErrorKind::InvalidArgument, std::string("chat template: ") + fn + "() takes at most " +
                                                std::to_string(names.size()) + " arguments");
  ValueList out = std::move(defaults);
  out.resize(names.size());
  for (size_t i = 0; i < args.size(); ++i) out[i] = args[i];
  for (auto& [k, v] : kwargs) {
    auto it = std::find(names.begin(), names.end(), k);
    if (it == names.end())
      throw Error(ErrorKind::InvalidArgument,
                  std::string("chat template: ") + fn + "() got an unexpected keyword argument '" + k + "'");
    out[static_cast<size_t>(it - names.begin())] = v;
  }
  return out;
}

}  // namespace optiq::chat
