// Python str helpers and the methods templates call on values (str, dict, list), as jinja2's
// ImmutableSandboxedEnvironment allows them: mutating list/dict methods are "unsafe".
#include <algorithm>
#include <cstring>

#include "chat/eval.h"
#include "chat/pystr.h"

namespace optiq::chat {

namespace pystr {

namespace {

char32_t cp_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7) || (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) || (c >= 0x430 && c <= 0x44f))
    return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  return c;
}
char32_t cp_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9) || (c >= 0x410 && c <= 0x42f)) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  return c;
}

std::u32string map_cp(const std::string& s, char32_t (*f)(char32_t)) {
  std::u32string u = utf8_decode(s);
  for (auto& c : u) c = f(c);
  return u;
}

}  // namespace

bool is_cased(char32_t c) { return cp_upper(c) != c || cp_lower(c) != c; }

bool is_space_cp(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string upper(const std::string& s) { return utf8_encode(map_cp(s, cp_upper)); }
std::string lower(const std::string& s) { return utf8_encode(map_cp(s, cp_lower)); }

std::string capitalize(const std::string& s) {
  std::u32string u = map_cp(s, cp_lower);
  if (!u.empty()) u[0] = cp_upper(u[0]);
  return utf8_encode(u);
}

std::string title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (auto& c : u) {
    bool cased = is_cased(c);
    c = cased ? (prev_cased ? cp_lower(c) : cp_upper(c)) : c;
    prev_cased = cased;
  }
  return utf8_encode(u);
}

std::string strip(const std::string& s, const std::string* chars, int which) {
  std::u32string u = utf8_decode(s);
  std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_space_cp(c); };
  size_t b = 0, e = u.size();
  if (which != 2)
    while (b < e && strip_it(u[b])) ++b;
  if (which != 1)
    while (e > b && strip_it(u[e - 1])) --e;
  return utf8_encode(u.substr(b, e - b));
}

std::string replace(const std::string& s, const std::string& old, const std::string& repl, long long count) {
  std::string out;
  if (old.empty()) {  // Python inserts repl between every character
    std::u32string u = utf8_decode(s);
    long long n = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || n < count) {
        out += repl;
        ++n;
      }
      if (i < u.size()) out += utf8_encode(u.substr(i, 1));
    }
    return out;
  }
  size_t pos = 0;
  long long n = 0;
  while (count < 0 || n < count) {
    size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += repl;
    pos = f + old.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::vector<std::string> split(const std::string& s, const std::string* sep, long long maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) runtime_error("empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<long long>(out.size()) < maxsplit) {
      size_t f = s.find(*sep, pos);
      if (f == std::string::npos) break;
      out.push_back(s.substr(pos, f - pos));
      pos = f + sep->size();
    }
    out.push_back(s.substr(pos));
    return out;
  }
  std::u32string u = utf8_decode(s);
  size_t i = 0;
  while (true) {
    while (i < u.size() && is_space_cp(u[i])) ++i;
    if (i >= u.size()) break;
    if (maxsplit >= 0 && static_cast<long long>(out.size()) >= maxsplit) {
      size_t e = u.size();
      while (e > i && is_space_cp(u[e - 1])) --e;
      out.push_back(utf8_encode(u.substr(i, e - i)));
      break;
    }
    size_t j = i;
    while (j < u.size() && !is_space_cp(u[j])) ++j;
    out.push_back(utf8_encode(u.substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> rsplit(const std::string& s, const std::string* sep, long long maxsplit) {
  if (maxsplit < 0) return split(s, sep, -1);
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) runtime_error("empty separator");
    size_t end = s.size();
    while (static_cast<long long>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t f = s.rfind(*sep, end - sep->size());
      if (f == std::string::npos) break;
      out.push_back(s.substr(f + sep->size(), end - f - sep->size()));
      end = f;
    }
    out.push_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  std::u32string u = utf8_decode(s);
  size_t e = u.size();
  while (true) {
    while (e > 0 && is_space_cp(u[e - 1])) --e;
    if (e == 0) break;
    if (static_cast<long long>(out.size()) >= maxsplit) {
      size_t b = 0;
      while (b < e && is_space_cp(u[b])) ++b;
      out.push_back(utf8_encode(u.substr(b, e - b)));
      break;
    }
    size_t j = e;
    while (j > 0 && !is_space_cp(u[j - 1])) --j;
    out.push_back(utf8_encode(u.substr(j, e - j)));
    e = j;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(const std::string& s, bool keepends) {
  std::vector<std::string> out;
  std::u32string u = utf8_decode(s);
  size_t start = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool nl = c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028 ||
              c == 0x2029;
    if (!nl) continue;
    size_t end = i;
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    out.push_back(utf8_encode(u.substr(start, (keepends ? i + 1 : end) - start)));
    start = i + 1;
  }
  if (start < u.size()) out.push_back(utf8_encode(u.substr(start)));
  return out;
}

}  // namespace pystr

namespace {

using Fn = std::function<Value(CallArgs&, RenderState&)>;

Value method(const std::string& name, Fn fn) { return Value::callable(name, std::move(fn)); }

Value str_list(const std::vector<std::string>& v) {
  ValueList out;
  for (auto& s : v) out.push_back(Value(s));
  return Value::list(std::move(out));
}

const std::string* opt_str(const Value& v, const char* fn) {
  if (v.is_none() || v.is_undefined()) return nullptr;
  if (!v.is_string()) runtime_error(std::string(fn) + " arg must be None or str");
  return &v.str();
}

int64_t opt_int(const Value& v, int64_t dflt) {
  if (v.is_none() || v.is_undefined()) return dflt;
  if (!v.is_int() && !v.is_bool()) runtime_error("an integer is required");
  return v.as_int();
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) runtime_error(std::string(prefix ? "startswith" : "endswith") + " first arg must be str or a tuple of str");
    const std::string& x = a.str();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_tuple()) {
    for (auto& a : affix.items())
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

// str.format with positional/keyword fields and !r/!s conversions (format specs: alignment/width only).
std::string format_string(const std::string& f, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '}') {
      if (i + 1 < f.size() && f[i + 1] == '}') ++i;
      else runtime_error("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t e = f.find('}', i);
    if (e == std::string::npos) runtime_error("Single '{' encountered in format string");
    std::string field = f.substr(i + 1, e - i - 1);
    i = e;
    std::string spec, conv;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field.resize(bang);
    }
    Value v;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t idx = field.empty() ? auto_idx++ : std::stoul(field);
      if (idx >= a.args.size()) runtime_error("Replacement index " + std::to_string(idx) + " out of range for positional args tuple");
      v = a.args[idx];
    } else {
      bool found = false;
      for (auto& [k, kv] : a.kwargs)
        if (k == field) {
          v = kv;
          found = true;
        }
      if (!found) runtime_error("KeyError: '" + field + "'");
    }
    std::string s = conv == "r" ? v.repr() : v.to_str();
    if (!spec.empty()) {
      char align = v.is_number() ? '>' : '<', fill = ' ';
      size_t p = 0;
      if (spec.size() >= 2 && std::strchr("<>^", spec[1])) {
        fill = spec[0];
        align = spec[1];
        p = 2;
      } else if (std::strchr("<>^", spec[0])) {
        align = spec[0];
        p = 1;
      }
      size_t width = 0;
      while (p < spec.size() && std::isdigit(static_cast<unsigned char>(spec[p]))) width = width * 10 + (spec[p++] - '0');
      if (p != spec.size()) runtime_error("unsupported format spec '" + spec + "'");
      size_t len = utf8_length(s);
      if (len < width) {
        size_t pad = width - len;
        size_t left = align == '<' ? 0 : align == '>' ? pad : pad / 2;
        s = std::string(left, fill) + s + std::string(pad - left, fill);
      }
    }
    out += s;
  }
  return out;
}

Value string_method(const Value& obj, const std::string& name) {
  const std::string s = obj.str();
  auto strip_fn = [s, name](int which) {
    return method(name, [s, which](CallArgs& a, RenderState&) {
      auto b = a.bind("strip", {"chars"}, {Value::none()});
      return Value(pystr::strip(s, opt_str(b[0], "strip"), which));
    });
  };
  if (name == "strip") return strip_fn(0);
  if (name == "lstrip") return strip_fn(1);
  if (name == "rstrip") return strip_fn(2);
  if (name == "split" || name == "rsplit") {
    bool r = name == "rsplit";
    return method(name, [s, r](CallArgs& a, RenderState&) {
      auto b = a.bind("split", {"sep", "maxsplit"}, {Value::none(), Value(int64_t{-1})});
      const std::string* sep = opt_str(b[0], "split");
      return str_list(r ? pystr::rsplit(s, sep, opt_int(b[1], -1)) : pystr::split(s, sep, opt_int(b[1], -1)));
    });
  }
  if (name == "splitlines")
    return method(name, [s](CallArgs& a, RenderState&) {
      auto b = a.bind("splitlines", {"keepends"}, {Value(false)});
      return str_list(pystr::splitlines(s, b[0].truthy()));
    });
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return method(name, [s, prefix](CallArgs& a, RenderState&) {
      auto b = a.bind(prefix ? "startswith" : "endswith", {"affix", "start", "end"}, {Value(), Value::none(), Value::none()});
      std::u32string u = utf8_decode(s);
      int64_t n = static_cast<int64_t>(u.size());
      auto idx = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
      int64_t st = idx(opt_int(b[1], 0)), en = idx(opt_int(b[2], n));
      std::string sub = st <= en ? utf8_encode(u.substr(static_cast<size_t>(st), static_cast<size_t>(en - st))) : "";
      return Value(affix_match(sub, b[0], prefix));
    });
  }
  using StrFn = std::string (*)(const std::string&);
  static const std::pair<const char*, StrFn> simple[] = {
      {"upper", pystr::upper}, {"lower", pystr::lower}, {"casefold", pystr::lower},
      {"title", pystr::title}, {"capitalize", pystr::capitalize}};
  for (auto& [n, f] : simple)
    if (name == n) return method(name, [s, fn = f](CallArgs&, RenderState&) { return Value(fn(s)); });
  if (name == "replace")
    return method(name, [s](CallArgs& a, RenderState& st) {
      auto b = a.bind("replace", {"old", "new", "count"}, {Value(), Value(), Value(int64_t{-1})});
      if (!b[0].is_string() || !b[1].is_string()) runtime_error("replace() argument must be str");
      std::string r = pystr::replace(s, b[0].str(), b[1].str(), opt_int(b[2], -1));
      st.check_size(r.size());
      return Value(std::move(r));
    });
  if (name == "format")
    return method(name, [s](CallArgs& a, RenderState&) { return Value(format_string(s, a)); });
  if (name == "join")
    return method(name, [s](CallArgs& a, RenderState& st) {
      auto b = a.bind("join", {"iterable"}, {Value()});
      std::string out;
      bool first = true;
      for (auto& v : iterate(b[0])) {
        if (!v.is_string()) runtime_error("sequence item: expected str instance, " + v.type_name() + " found");
        if (!first) out += s;
        first = false;
        out += v.str();
        st.check_size(out.size());
      }
      return Value(std::move(out));
    });
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return method(name, [s, name](CallArgs& a, RenderState&) {
      auto b = a.bind(name.c_str(), {"sub"}, {Value()});
      if (!b[0].is_string()) runtime_error("must be str, not " + b[0].type_name());
      const std::string& sub = b[0].str();
      if (name == "count") {
        if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value(n);
      }
      size_t p = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (name == "index" || name == "rindex") runtime_error("substring not found");
        return Value(int64_t{-1});
      }
      return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, p))));
    });
  }
  static const char* preds[] = {"isdigit", "isdecimal", "isnumeric", "isspace", "isalpha", "isalnum", "isupper", "islower"};
  for (const char* p : preds)
    if (name == p)
      return method(name, [s, name](CallArgs&, RenderState&) {
        std::u32string u = utf8_decode(s);
        if (u.empty()) return Value(false);
        if (name == "isupper" || name == "islower") {
          bool any = false;
          for (char32_t c : u) {
            if (!pystr::is_cased(c)) continue;
            any = true;
            if (name == "isupper" ? pystr::lower(utf8_encode(std::u32string(1, c))) == utf8_encode(std::u32string(1, c))
                                  : pystr::upper(utf8_encode(std::u32string(1, c))) == utf8_encode(std::u32string(1, c)))
              return Value(false);
          }
          return Value(any);
        }
        for (char32_t c : u) {
          bool digit = c >= '0' && c <= '9';
          bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0x80 && !pystr::is_space_cp(c));
          bool ok = name == "isspace" ? pystr::is_space_cp(c) : name == "isalpha" ? alpha : name == "isalnum" ? alpha || digit : digit;
          if (!ok) return Value(false);
        }
        return Value(true);
      });
  if (name == "removeprefix" || name == "removesuffix") {
    bool pre = name == "removeprefix";
    return method(name, [s, pre](CallArgs& a, RenderState&) {
      auto b = a.bind("remove", {"affix"}, {Value()});
      if (!b[0].is_string()) runtime_error("argument must be str");
      const std::string& x = b[0].str();
      if (affix_match(s, b[0], pre)) return Value(pre ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
      return Value(s);
    });
  }
  if (name == "zfill" || name == "center" || name == "ljust" || name == "rjust") {
    return method(name, [s, name](CallArgs& a, RenderState& st) {
      auto b = a.bind(name.c_str(), {"width", "fillchar"}, {Value(), Value(" ")});
      int64_t w = opt_int(b[0], 0);
      int64_t len = static_cast<int64_t>(utf8_length(s));
      if (w <= len) return Value(s);
      st.check_size(static_cast<size_t>(w));
      std::string fill = name == "zfill" ? "0" : b[1].to_str();
      size_t pad = static_cast<size_t>(w - len);
      size_t left = name == "rjust" || name == "zfill" ? pad : name == "ljust" ? 0 : pad / 2 + (pad & static_cast<size_t>(w) & 1);
      std::string out;
      for (size_t i = 0; i < left; ++i) out += fill;
      out += s;
      for (size_t i = left; i < pad; ++i) out += fill;
      return Value(out);
    });
  }
  return Value();
}

}  // namespace

Value builtin_method(RenderState&, const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj, name);
  if (obj.is_dict()) {
    if (name == "items" || name == "keys" || name == "values")
      return method(name, [obj, name](CallArgs&, RenderState&) {
        ValueList out;
        for (auto& [k, v] : obj.dict_ref().entries())
          out.push_back(name == "items" ? Value::list({k, v}, true) : name == "keys" ? k : v);
        return Value::list(std::move(out));
      });
    if (name == "get")
      return method(name, [obj](CallArgs& a, RenderState&) {
        auto b = a.bind("get", {"key", "default"}, {Value(), Value::none()});
        const Value* v = obj.dict_ref().find(b[0]);
        return v ? *v : b[1];
      });
    if (name == "copy") return method(name, [obj](CallArgs&, RenderState&) { return Value::dict(std::make_shared<Dict>(obj.dict_ref())); });
    static const char* unsafe[] = {"pop", "popitem", "update", "setdefault", "clear"};
    for (const char* u : unsafe)
      if (name == u) return Value::undefined("access to attribute '" + name + "' of 'dict' object is unsafe.");
    return Value();
  }
  if (obj.is_list() && !obj.is_generator()) {
    if (name == "index" || name == "count")
      return method(name, [obj, name](CallArgs& a, RenderState&) {
        auto b = a.bind(name.c_str(), {"value"}, {Value()});
        int64_t n = 0;
        for (size_t i = 0; i < obj.items().size(); ++i)
          if (obj.items()[i].equals(b[0])) {
            if (name == "index") return Value(static_cast<int64_t>(i));
            ++n;
          }
        if (name == "index") runtime_error(b[0].repr() + " is not in list");
        return Value(n);
      });
    if (name == "copy" && !obj.is_tuple()) return method(name, [obj](CallArgs&, RenderState&) { return Value::list(obj.items()); });
    static const char* unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"};
    if (!obj.is_tuple())
      for (const char* u : unsafe)
        if (name == u) return Value::undefined("access to attribute '" + name + "' of 'list' object is unsafe.");
  }
  return Value();
}

}  // namespace optiq::chat
