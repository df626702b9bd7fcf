// jinja2's builtin filters and tests as chat templates use them, plus the globals transformers provides
// (raise_exception, strftime_now) and jinja2's (namespace, range, dict).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "chat/eval.h"
#include "chat/pystr.h"
#include "util/error.h"

namespace optiq::chat {

namespace {

using Args = CallArgs;

Value attr_path(RenderState& st, const Value& v, const Value& attr) {
  // jinja2's make_attrgetter: "a.b" walks attributes, integer parts index
  if (attr.is_int()) return get_item(st, v, attr);
  std::string path = attr.to_str();
  Value cur = v;
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    int64_t index = 0;
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) &&
                         std::from_chars(part.data(), part.data() + part.size(), index).ec == std::errc();
    cur = get_item(st, cur, numeric ? Value(index) : Value(part));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

int64_t to_int_arg(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  int64_t i = 0;
  if (v.is_float() && Value::truncate_to_int(v.as_double(), i)) return i;
  if (v.is_float()) runtime_error(std::string(what) + ": " + v.to_str() + " is out of the integer range");
  runtime_error(std::string(what) + ": an integer is required");
}

// Splits (args) of select/reject/map-by-filter: first is the test/filter name, the rest its arguments.
Args rest_args(const Args& a, size_t skip) {
  Args r;
  r.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(std::min(skip, a.args.size())), a.args.end());
  r.kwargs = a.kwargs;
  return r;
}

Value select_like(RenderState& st, const Value& v, Args& a, bool attr_mode, bool keep) {
  Value attr;
  size_t skip = 0;
  if (attr_mode) {
    if (a.args.empty()) runtime_error("selectattr/rejectattr need an attribute");
    attr = a.args[0];
    skip = 1;
  }
  std::string test;
  if (a.args.size() > skip) {
    test = a.args[skip].to_str();
    ++skip;
  }
  Args targs = rest_args(a, skip);
  ValueList out;
  if (!v.truthy()) return Value::generator({});  // jinja2: `if value:` before iterating
  for (auto& item : iterate(v)) {
    st.step();
    Value x = attr_mode ? attr_path(st, item, attr) : item;
    bool ok = test.empty() ? x.truthy() : apply_test(st, test, x, targs);
    if (ok == keep) out.push_back(item);
  }
  return Value::generator(std::move(out));
}

std::string soft_str(const Value& v) { return v.to_str(); }

Value sorted_list(RenderState& st, ValueList items, bool reverse, bool case_sensitive, const Value& attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& i : items) keyed.emplace_back(attribute.is_none() || attribute.is_undefined() ? i : attr_path(st, i, attribute), i);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    int c = python_cmp(x.first, y.first, !case_sensitive);
    return reverse ? c > 0 : c < 0;
  });
  ValueList out;
  for (auto& [k, v] : keyed) out.push_back(v);
  return Value::list(std::move(out));
}

Value do_round(const Value& v, int64_t precision, const std::string& method) {
  if (!v.is_number()) runtime_error("round() requires a number");
  double x = v.as_double();
  double m = std::pow(10.0, static_cast<double>(precision));
  double r;
  if (method == "common") r = std::nearbyint(x * m) / m;  // Python round(): half to even
  else if (method == "ceil") r = std::ceil(x * m) / m;
  else if (method == "floor") r = std::floor(x * m) / m;
  else runtime_error("method must be common, ceil or floor");
  if (v.is_float() || method != "common") return Value(r);
  return v.is_bool() ? Value(v.as_int()) : v;
}

Value python_int(const Value& v, const Value& dflt, int base) {
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(v.as_int());
  int64_t i = 0;
  if (v.is_float()) return Value::truncate_to_int(v.as_double(), i) ? Value(i) : dflt;
  if (v.is_string()) {
    std::string s = pystr::strip(v.str(), nullptr);
    std::string t;
    for (char c : s)
      if (c != '_') t += c;
    if (t.empty()) return dflt;
    try {
      size_t n = 0;
      long long r = std::stoll(t, &n, base);
      if (n == t.size()) return Value(static_cast<int64_t>(r));
    } catch (...) {
    }
    try {
      size_t n = 0;
      double d = std::stod(t, &n);
      if (n == t.size() && std::isfinite(d)) return Value(static_cast<int64_t>(d));
    } catch (...) {
    }
  }
  return dflt;
}

Value python_float(const Value& v, const Value& dflt) {
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    std::string t = pystr::strip(v.str(), nullptr);
    std::string l = pystr::lower(t);
    if (l == "inf" || l == "+inf" || l == "infinity") return Value(HUGE_VAL);
    if (l == "-inf" || l == "-infinity") return Value(-HUGE_VAL);
    if (l == "nan") return Value(std::nan(""));
    try {
      size_t n = 0;
      double d = std::stod(t, &n);
      if (n == t.size() && !t.empty()) return Value(d);
    } catch (...) {
    }
  }
  return dflt;
}

// An indentation width as a number of spaces: a bound well past any real template's, so that a huge one is an
// error rather than a string of gigabytes built before the output limit can stop it.
int indent_width(const Value& v, const char* what) {
  const int64_t w = to_int_arg(v, what);
  if (w > 4096) runtime_error(std::string(what) + ": an indent of " + std::to_string(w) + " is too large");
  return int(std::max<int64_t>(w, -1));
}

std::string do_indent(std::string s, const Value& width, bool first, bool blank) {
  std::string ind = width.is_string() ? width.str() : std::string(size_t(std::max(0, indent_width(width, "indent"))), ' ');
  s += "\n";
  std::vector<std::string> lines = pystr::splitlines(s);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + ind : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (size_t i = 1; i < lines.size(); ++i) rv += (i > 1 ? "\n" : "") + (lines[i].empty() ? "" : ind + lines[i]);
    }
  }
  return first ? ind + rv : rv;
}

std::string do_title(const std::string& s) {  // jinja2's title filter: words start after [-\s({[<]
  std::u32string u = utf8_decode(s);
  std::u32string out;
  bool word_start = true;
  for (char32_t c : u) {
    bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || pystr::is_space_cp(c);
    std::string cs = utf8_encode(std::u32string(1, c));
    if (sep) out += c;
    else out += utf8_decode(word_start ? pystr::upper(cs) : pystr::lower(cs));
    word_start = sep;
  }
  return utf8_encode(out);
}

using FilterFn = Value (*)(RenderState&, const Value&, Args&);

#define FILTER(name) Value f_##name(RenderState& st, const Value& v, Args& a)

FILTER(length) { return Value(py_len(v)); }
FILTER(first) {
  for (auto& x : iterate(v)) return x;
  return Value::undefined("No first item, sequence was empty.");
}
FILTER(last) {
  if (v.is_generator()) runtime_error("'generator' object is not reversible");
  ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}
FILTER(join) {
  auto b = a.bind("join", {"d", "attribute"}, {Value(""), Value::none()});
  std::string sep = b[0].to_str(), out;
  bool firsti = true;
  for (auto& x : iterate(v)) {
    if (!firsti) out += sep;
    firsti = false;
    out += (b[1].is_none() ? x : attr_path(st, x, b[1])).to_str();
    st.check_size(out.size());
  }
  return Value(std::move(out));
}
FILTER(upper) { return Value(pystr::upper(soft_str(v))); }
FILTER(lower) { return Value(pystr::lower(soft_str(v))); }
FILTER(capitalize) { return Value(pystr::capitalize(soft_str(v))); }
FILTER(title) { return Value(do_title(soft_str(v))); }
FILTER(trim) {
  auto b = a.bind("trim", {"chars"}, {Value::none()});
  return Value(pystr::strip(soft_str(v), b[0].is_none() ? nullptr : &b[0].str()));
}
FILTER(replace) {
  auto b = a.bind("replace", {"old", "new", "count"}, {Value(), Value(), Value::none()});
  std::string r = pystr::replace(soft_str(v), b[0].to_str(), b[1].to_str(), b[2].is_none() ? -1 : to_int_arg(b[2], "replace"));
  st.check_size(r.size());
  return Value(std::move(r));
}
FILTER(default) {
  auto b = a.bind("default", {"default_value", "boolean"}, {Value(""), Value(false)});
  if (v.is_undefined() || (b[1].truthy() && !v.truthy())) return b[0];
  return v;
}
FILTER(list) { return Value::list(iterate(v)); }
FILTER(string) { return v.is_string() ? v : Value(v.to_str()); }
FILTER(int) {
  auto b = a.bind("int", {"default", "base"}, {Value(int64_t{0}), Value(int64_t{10})});
  return python_int(v, b[0], static_cast<int>(to_int_arg(b[1], "int")));
}
FILTER(float) {
  auto b = a.bind("float", {"default"}, {Value(0.0)});
  return python_float(v, b[0]);
}
FILTER(abs) {
  if (v.is_int() || v.is_bool()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_undefined()) undefined_error(v);
  runtime_error("bad operand type for abs(): '" + v.type_name() + "'");
}
FILTER(round) {
  auto b = a.bind("round", {"precision", "method"}, {Value(int64_t{0}), Value("common")});
  return do_round(v, to_int_arg(b[0], "round"), b[1].to_str());
}
FILTER(map) {
  ValueList out;
  bool by_attr = a.args.empty();
  Value attr, dflt;
  for (auto& [k, x] : a.kwargs) {
    if (k == "attribute") attr = x;
    else if (k == "default") dflt = x;
  }
  if (by_attr && attr.is_undefined()) runtime_error("map requires a filter or attribute");
  std::string fname = by_attr ? "" : a.args[0].to_str();
  Args fargs = rest_args(a, 1);
  if (!v.truthy()) return Value::generator({});
  for (auto& x : iterate(v)) {
    st.step();
    if (by_attr) {
      Value r = attr_path(st, x, attr);
      out.push_back(r.is_undefined() && !dflt.is_undefined() ? dflt : r);
    } else {
      out.push_back(apply_filter(st, fname, x, fargs));
    }
  }
  return Value::generator(std::move(out));
}
FILTER(select) { return select_like(st, v, a, false, true); }
FILTER(reject) { return select_like(st, v, a, false, false); }
FILTER(selectattr) { return select_like(st, v, a, true, true); }
FILTER(rejectattr) { return select_like(st, v, a, true, false); }
FILTER(items) {
  if (v.is_undefined()) return Value::generator({});
  if (!v.is_dict()) runtime_error("Can only get item pairs from a mapping.");
  ValueList out;
  for (auto& [k, x] : v.dict_ref().entries()) out.push_back(Value::list({k, x}, true));
  return Value::generator(std::move(out));
}
FILTER(dictsort) {
  auto b = a.bind("dictsort", {"case_sensitive", "by", "reverse"}, {Value(false), Value("key"), Value(false)});
  if (!v.is_dict()) runtime_error("dictsort: value is not a mapping");
  std::string by = b[1].to_str();
  if (by != "key" && by != "value") runtime_error("You can only sort by either \"key\" or \"value\"");
  ValueList pairs;
  for (auto& [k, x] : v.dict_ref().entries()) pairs.push_back(Value::list({k, x}, true));
  return sorted_list(st, pairs, b[2].truthy(), b[0].truthy(), Value(int64_t{by == "key" ? 0 : 1}));
}
FILTER(sort) {
  auto b = a.bind("sort", {"reverse", "case_sensitive", "attribute"}, {Value(false), Value(false), Value::none()});
  return sorted_list(st, iterate(v), b[0].truthy(), b[1].truthy(), b[2]);
}
FILTER(unique) {
  auto b = a.bind("unique", {"case_sensitive", "attribute"}, {Value(false), Value::none()});
  ValueList out, seen;
  for (auto& x : iterate(v)) {
    Value key = b[1].is_none() ? x : attr_path(st, x, b[1]);
    if (!b[0].truthy() && key.is_string()) key = Value(pystr::lower(key.str()));
    bool dup = std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(key); });
    if (!dup) {
      seen.push_back(key);
      out.push_back(x);
    }
  }
  return Value::generator(std::move(out));
}
FILTER(reverse) {
  if (v.is_string()) return slice_value(v, Value::none(), Value::none(), Value(int64_t{-1}));
  ValueList items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::generator(std::move(items));
}
Value min_max(RenderState& st, const Value& v, Args& a, bool want_max) {
  auto b = a.bind(want_max ? "max" : "min", {"case_sensitive", "attribute"}, {Value(false), Value::none()});
  ValueList items = iterate(v);
  if (items.empty()) return Value::undefined(std::string("No aggregated item, sequence was empty."));
  size_t best = 0;
  auto key = [&](const Value& x) {
    Value k = b[1].is_none() ? x : attr_path(st, x, b[1]);
    return !b[0].truthy() && k.is_string() ? Value(pystr::lower(k.str())) : k;
  };
  for (size_t i = 1; i < items.size(); ++i) {
    int c = python_cmp(key(items[i]), key(items[best]));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}
FILTER(min) { return min_max(st, v, a, false); }
FILTER(max) { return min_max(st, v, a, true); }
FILTER(sum) {
  auto b = a.bind("sum", {"attribute", "start"}, {Value::none(), Value(int64_t{0})});
  Value acc = b[1];
  for (auto& x : iterate(v)) acc = binary_op(st, BinOp::Add, acc, b[0].is_none() ? x : attr_path(st, x, b[0]));
  return acc;
}
FILTER(batch) {
  auto b = a.bind("batch", {"linecount", "fill_with"}, {Value(), Value::none()});
  int64_t n = to_int_arg(b[0], "batch");
  if (n <= 0) runtime_error("batch size must be positive");
  ValueList out, cur;
  for (auto& x : iterate(v)) {
    cur.push_back(x);
    if (static_cast<int64_t>(cur.size()) == n) out.push_back(Value::list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (!b[1].is_none())
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(b[1]);
    out.push_back(Value::list(std::move(cur)));
  }
  return Value::generator(std::move(out));
}
FILTER(indent) {
  auto b = a.bind("indent", {"width", "first", "blank"}, {Value(int64_t{4}), Value(false), Value(false)});
  std::string r = do_indent(soft_str(v), b[0], b[1].truthy(), b[2].truthy());
  st.check_size(r.size());
  return Value(std::move(r));
}
FILTER(wordcount) {
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(soft_str(v))) {
    bool w = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (c >= 0x80 && !pystr::is_space_cp(c));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}
FILTER(center) {
  auto b = a.bind("center", {"width"}, {Value(int64_t{80})});
  CallArgs ca;
  ca.args.push_back(b[0]);
  Value m = builtin_method(st, Value(soft_str(v)), "center");
  return call_value(st, m, ca);
}
FILTER(escape) { return v.is_safe() ? v : Value(html_escape(soft_str(v)), true); }
FILTER(safe) { return Value(soft_str(v), true); }
FILTER(tojson) {
  auto b = a.bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"},
                  {Value(false), Value::none(), Value::none(), Value(false)});
  int indent = b[1].is_none() ? -1 : indent_width(b[1], "tojson");
  std::pair<std::string, std::string> seps;
  bool custom = !b[2].is_none();
  if (custom) {
    if (!b[2].is_list() || b[2].items().size() != 2) runtime_error("tojson: separators must be a pair");
    seps = {b[2].items()[0].to_str(), b[2].items()[1].to_str()};
  }
  std::string out = v.to_json(indent, b[3].truthy(), custom ? &seps : nullptr);
  if (b[0].truthy()) {  // ensure_ascii: \uXXXX escapes (surrogate pairs beyond the BMP)
    std::string esc;
    static const char* hex = "0123456789abcdef";
    auto u16 = [&](unsigned x) {
      esc += "\\u";
      for (int s = 12; s >= 0; s -= 4) esc += hex[(x >> s) & 15];
    };
    for (char32_t c : utf8_decode(out)) {
      if (c < 0x80) esc += static_cast<char>(c);
      else if (c < 0x10000) u16(c);
      else {
        u16(0xd800 + ((c - 0x10000) >> 10));
        u16(0xdc00 + ((c - 0x10000) & 0x3ff));
      }
    }
    out = std::move(esc);
  }
  st.check_size(out.size());
  return Value(std::move(out));
}
// pprint.pformat without line wrapping: dict keys sorted.
std::string pformat(const Value& v) {
  if (v.is_dict()) {
    std::vector<std::pair<Value, Value>> kv = v.dict_ref().entries();
    std::stable_sort(kv.begin(), kv.end(), [](auto& x, auto& y) { return python_cmp(x.first, y.first) < 0; });
    std::string out = "{";
    for (size_t i = 0; i < kv.size(); ++i) out += (i ? ", " : "") + kv[i].first.repr() + ": " + pformat(kv[i].second);
    return out + "}";
  }
  if (v.is_list() && !v.is_generator()) {
    std::string out = v.is_tuple() ? "(" : "[";
    for (size_t i = 0; i < v.items().size(); ++i) out += (i ? ", " : "") + pformat(v.items()[i]);
    if (v.is_tuple() && v.items().size() == 1) out += ",";
    return out + (v.is_tuple() ? ")" : "]");
  }
  return v.repr();
}
FILTER(pprint) { return Value(pformat(v)); }
FILTER(format) {
  Value tup = Value::list(a.args, true);
  return binary_op(st, BinOp::Mod, v, a.args.size() == 1 ? a.args[0] : tup);
}
FILTER(attr) {
  auto b = a.bind("attr", {"name"}, {Value()});
  return get_attr(st, v, b[0].to_str());
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> m = {
      {"length", f_length}, {"count", f_length}, {"first", f_first}, {"last", f_last}, {"join", f_join},
      {"upper", f_upper}, {"lower", f_lower}, {"capitalize", f_capitalize}, {"title", f_title}, {"trim", f_trim},
      {"replace", f_replace}, {"default", f_default}, {"d", f_default}, {"list", f_list}, {"string", f_string},
      {"int", f_int}, {"float", f_float}, {"abs", f_abs}, {"round", f_round}, {"map", f_map}, {"select", f_select},
      {"reject", f_reject}, {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"items", f_items},
      {"dictsort", f_dictsort}, {"sort", f_sort}, {"unique", f_unique}, {"reverse", f_reverse}, {"min", f_min},
      {"max", f_max}, {"sum", f_sum}, {"batch", f_batch}, {"indent", f_indent}, {"wordcount", f_wordcount},
      {"center", f_center}, {"escape", f_escape}, {"e", f_escape}, {"forceescape", f_escape}, {"safe", f_safe},
      {"tojson", f_tojson}, {"pprint", f_pprint}, {"format", f_format}, {"attr", f_attr},
  };
  return m;
}

// ---- tests ----

bool test_cmp(RenderState&, const Value& v, Args& a, CmpOp op) {
  if (a.args.size() != 1) runtime_error("test expects one argument");
  return compare(op, v, a.args[0]);
}

using TestFn = bool (*)(RenderState&, const Value&, Args&);
#define TEST(name) bool t_##name(RenderState& st, const Value& v, Args& a)

TEST(defined) { return !v.is_undefined(); }
TEST(undefined) { return v.is_undefined(); }
TEST(none) { return v.is_none(); }
TEST(string) { return v.is_string(); }
TEST(number) { return v.is_number(); }
TEST(integer) { return v.is_int(); }
TEST(float) { return v.is_float(); }
TEST(boolean) { return v.is_bool(); }
TEST(true) { return v.is_bool() && v.as_bool(); }
TEST(false) { return v.is_bool() && !v.as_bool(); }
TEST(mapping) { return v.is_dict(); }
TEST(iterable) { return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined(); }
TEST(sequence) { return (v.is_list() && !v.is_generator()) || v.is_dict() || v.is_string() || v.is_undefined(); }
TEST(callable) { return v.is_callable() || (v.is_dict() && v.dict_ref().find(std::string("__call__"))); }
TEST(odd) {
  if (!v.is_int() && !v.is_bool()) runtime_error("odd test requires an integer");
  return v.as_int() % 2 != 0;
}
TEST(even) {
  if (!v.is_int() && !v.is_bool()) runtime_error("even test requires an integer");
  return v.as_int() % 2 == 0;
}
TEST(divisibleby) {
  if (a.args.size() != 1) runtime_error("divisibleby expects one argument");
  Value r = binary_op(st, BinOp::Mod, v, a.args[0]);
  return r.as_double() == 0;
}
TEST(eq) { return test_cmp(st, v, a, CmpOp::Eq); }
TEST(ne) { return test_cmp(st, v, a, CmpOp::Ne); }
TEST(lt) { return test_cmp(st, v, a, CmpOp::Lt); }
TEST(le) { return test_cmp(st, v, a, CmpOp::Le); }
TEST(gt) { return test_cmp(st, v, a, CmpOp::Gt); }
TEST(ge) { return test_cmp(st, v, a, CmpOp::Ge); }
TEST(in) { return test_cmp(st, v, a, CmpOp::In); }
TEST(sameas) {
  if (a.args.size() != 1) runtime_error("sameas expects one argument");
  const Value& o = a.args[0];
  if (v.is_none() || o.is_none() || v.is_bool() || o.is_bool()) return v.type() == o.type() && v.equals(o);
  return v.type() == o.type() && v.equals(o);
}
TEST(lower) { return v.is_string() && pystr::lower(v.str()) == v.str(); }
TEST(upper) { return v.is_string() && pystr::upper(v.str()) == v.str(); }
TEST(escaped) { return v.is_safe(); }
TEST(filter) { return a.args.size() == 1 && filters().count(a.args[0].to_str()) > 0; }
TEST(test) { return a.args.size() == 1 && has_test(a.args[0].to_str()); }

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> m = {
      {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none}, {"string", t_string},
      {"number", t_number}, {"integer", t_integer}, {"float", t_float}, {"boolean", t_boolean},
      {"true", t_true}, {"false", t_false}, {"mapping", t_mapping}, {"iterable", t_iterable},
      {"sequence", t_sequence}, {"callable", t_callable}, {"odd", t_odd}, {"even", t_even},
      {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq}, {"==", t_eq}, {"ne", t_ne}, {"!=", t_ne},
      {"lt", t_lt}, {"lessthan", t_lt}, {"<", t_lt}, {"le", t_le}, {"<=", t_le}, {"gt", t_gt},
      {"greaterthan", t_gt}, {">", t_gt}, {"ge", t_ge}, {">=", t_ge}, {"in", t_in}, {"sameas", t_sameas},
      {"lower", t_lower}, {"upper", t_upper}, {"escaped", t_escaped}, {"filter", t_filter}, {"test", t_test},
  };
  return m;
}

// ---- globals ----

Value g_namespace(CallArgs& a, RenderState&) {
  auto d = std::make_shared<Dict>();
  for (auto& x : a.args) {
    if (!x.is_dict()) runtime_error("namespace() positional argument must be a mapping");
    for (auto& [k, v] : x.dict_ref().entries()) d->set(k, v);
  }
  for (auto& [k, v] : a.kwargs) d->set(Value(k), v);
  return Value::namespace_(std::move(d));
}

Value g_dict(CallArgs& a, RenderState& st) {
  Value ns = g_namespace(a, st);
  return Value::dict(std::make_shared<Dict>(ns.dict_ref()));
}

Value g_range(CallArgs& a, RenderState& st) {
  if (a.args.empty() || a.args.size() > 3 || !a.kwargs.empty()) runtime_error("range expected 1 to 3 arguments");
  int64_t start = 0, stop, step = 1;
  if (a.args.size() == 1) stop = to_int_arg(a.args[0], "range");
  else {
    start = to_int_arg(a.args[0], "range");
    stop = to_int_arg(a.args[1], "range");
    if (a.args.size() == 3) step = to_int_arg(a.args[2], "range");
  }
  if (step == 0) runtime_error("range() arg 3 must not be zero");
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (out.size() >= st.limits.max_collection) runtime_error("range too big");
    out.push_back(Value(i));
  }
  return Value::list(std::move(out));
}

Value g_raise(CallArgs& a, RenderState&) {
  std::string msg = a.args.empty() ? "" : a.args[0].to_str();
  throw Error(ErrorKind::InvalidArgument, msg);
}

Value g_strftime_now(CallArgs& a, RenderState& st) {
  if (a.args.size() != 1 || !a.args[0].is_string()) runtime_error("strftime_now(format) expects a format string");
  std::tm tm{};
  if (st.now) {
    tm = *st.now;
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  const std::string& fmt = a.args[0].str();
  if (fmt.empty()) return Value("");
  std::string buf(fmt.size() * 4 + 64, '\0');
  size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
  if (n == 0) runtime_error("strftime_now: bad format");
  buf.resize(n);
  return Value(buf);
}

}  // namespace

Value apply_filter(RenderState& st, const std::string& name, const Value& v, CallArgs& args) {
  auto& m = filters();
  auto it = m.find(name);
  if (it == m.end()) runtime_error("No filter named '" + name + "'.");
  return it->second(st, v, args);
}

bool has_test(const std::string& name) { return tests().count(name) > 0; }

bool apply_test(RenderState& st, const std::string& name, const Value& v, CallArgs& args) {
  auto& m = tests();
  auto it = m.find(name);
  if (it == m.end()) runtime_error("No test named '" + name + "'.");
  return it->second(st, v, args);
}

Value lookup_global(const std::string& name) {
  static const std::unordered_map<std::string, Value> g = {
      {"namespace", Value::callable("namespace", g_namespace)},
      {"dict", Value::callable("dict", g_dict)},
      {"range", Value::callable("range", g_range)},
      {"raise_exception", Value::callable("raise_exception", g_raise)},
      {"strftime_now", Value::callable("strftime_now", g_strftime_now)},
  };
  auto it = g.find(name);
  return it == g.end() ? Value() : it->second;
}

}  // namespace optiq::chat
