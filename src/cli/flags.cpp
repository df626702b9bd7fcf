#include "cli/flags.h"

#include <algorithm>
#include <cctype>

#include <cstdio>
#include <cstdlib>

#include "util/error.h"

namespace optiq::cli {

namespace {
Error bad(const std::string& flag, const std::string& v, const char* what) {
  return Error(ErrorKind::InvalidArgument, "--" + flag + ": '" + v + "' is not " + what);
}
long long to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno) throw bad(flag, v, "an integer");
  return x;
}
}  // namespace

void Flags::add(const std::string& name, std::string* out, const std::string& help) {
  flags_.push_back({name, help, "TEXT", [out](const std::string& v) { *out = v; }});
}
void Flags::add(const std::string& name, int* out, const std::string& help) {
  flags_.push_back({name, help, "N", [out, name](const std::string& v) {
                      long long x = to_int(name, v);
                      if (x < INT32_MIN || x > INT32_MAX) throw bad(name, v, "a 32-bit integer");
                      *out = int(x);
                    }});
}
void Flags::add(const std::string& name, float* out, const std::string& help) {
  flags_.push_back({name, help, "X", [out, name](const std::string& v) {
                      char* end = nullptr;
                      float x = std::strtof(v.c_str(), &end);
                      if (v.empty() || *end) throw bad(name, v, "a number");
                      *out = x;
                    }});
}
void Flags::add(const std::string& name, std::optional<uint64_t>* out, const std::string& help) {
  flags_.push_back({name, help, "N", [out, name](const std::string& v) {
                      long long x = to_int(name, v);
                      if (x < 0) throw bad(name, v, "a non-negative integer");
                      *out = uint64_t(x);
                    }});
}
void Flags::add(const std::string& name, std::vector<std::string>* out, const std::string& help) {
  flags_.push_back({name, help, "TEXT", [out](const std::string& v) { out->push_back(v); }});
}
void Flags::add_bool(const std::string& name, bool* out, const std::string& help) {
  flags_.push_back({name, help, "", [out](const std::string&) { *out = true; }});
}

void Flags::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      help_ = true;
      continue;
    }
    // One-letter flags may be spelled with one dash (-o OUT).
    const bool short_flag = a.size() == 2 && a[0] == '-' && a[1] != '-';
    if (!short_flag && (a.size() < 3 || a.rfind("--", 0) != 0)) {
      positionals_.push_back(a);
      continue;
    }
    std::string name = a.substr(short_flag ? 1 : 2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    for (auto& c : name)
      if (c == '_') c = '-';  // mlx_lm spells some flags with underscores
    const Flag* f = nullptr;
    for (auto& x : flags_)
      if (x.name == name) f = &x;
    if (!f) throw Error(ErrorKind::InvalidArgument, "unknown option --" + name + " (see --help)");
    if (f->kind.empty()) {
      if (has_value) throw Error(ErrorKind::InvalidArgument, "--" + name + " takes no value");
      f->set("");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) throw Error(ErrorKind::InvalidArgument, "--" + name + " needs a value");
      value = argv[++i];
    }
    f->set(value);
  }
}

std::string Flags::help() const {
  // One column for the help text, two spaces past the longest option (at most kMaxColumn; a longer option
  // gets its help on the next line).
  constexpr size_t kMaxColumn = 36;
  auto left_of = [](const auto& f) {
    return (f.name.size() == 1 ? "  -" : "  --") + f.name + (f.kind.empty() ? "" : " " + f.kind);
  };
  size_t column = 0;
  for (auto& f : flags_) column = std::max(column, std::min(left_of(f).size() + 2, kMaxColumn));
  std::string s = "usage: " + usage_ + "\n\noptions:\n";
  for (auto& f : flags_) {
    std::string left = left_of(f);
    if (left.size() + 2 > column) left += "\n" + std::string(column, ' ');
    else left.resize(column, ' ');
    s += left + f.help + "\n";
  }
  return s;
}

int64_t parse_bytes(const std::string& s, const std::string& flag) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  std::string unit = s.substr(i);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  else if (unit == "T" || unit == "TB" || unit == "TIB") shift = 40;
  else shift = -1;
  if (i == 0 || i > 18 || shift < 0) throw bad(flag, s, "a byte count such as 2000000000, 512M or 2GiB");
  const int64_t n = std::stoll(s.substr(0, i));
  if (n > (INT64_MAX >> shift)) throw bad(flag, s, "a byte count such as 2000000000, 512M or 2GiB");
  return n << shift;
}

std::vector<int> parse_int_list(const std::string& s, const std::string& flag) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    long long x = to_int(flag, part);
    if (x < 0 || x > INT32_MAX) throw bad(flag, part, "a non-negative integer");
    out.push_back(int(x));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

bool Flags::parse_or_help(int argc, char** argv, int first) {
  parse(argc, argv, first);
  if (help_) std::fputs(help().c_str(), stdout);
  return !help_;
}

std::string Flags::model_arg(const std::string& value, const std::string& usage) const {
  if (!value.empty()) return value;
  if (!positionals_.empty()) return positionals_[0];
  throw Error(ErrorKind::InvalidArgument, "no model given (" + usage + ")");
}

void KvFlags::add_to(Flags& f) {
  f.add("kv-config", &config, "per-layer KV precision: a kv_config.json from 'optiq kv-cache' ([{\"layer_idx\", \"bits\", \"group_size\"}])");
  f.add("kv-bits", &bits, "KV cache bits for layers the config does not list: 2-6, 8, or 16 = fp16 (default fp16)");
  f.add("kv-group-size", &group_size, "KV quantization group size along head_dim (default 64)");
  f.add("quantized-kv-start", &quantized_kv_start, "keep fp16 KV until a sequence holds this many tokens (default 0)");
  f.add("kv-rotation", &rotation, "Hadamard-rotate K/V of quantized layers before quantizing: auto | on | off (default auto: on when head_dim is a power of two)");
}

kv::KvSpec::Rotation parse_kv_rotation(const std::string& value) {
  if (value == "auto") return kv::KvSpec::Rotation::Auto;
  if (value == "on") return kv::KvSpec::Rotation::On;
  if (value == "off") return kv::KvSpec::Rotation::Off;
  throw Error(ErrorKind::InvalidArgument, "--kv-rotation: '" + value + "' is not auto, on or off");
}

kv::KvSpec KvFlags::spec() const {
  const kv::KvSpec::Rotation r = parse_kv_rotation(rotation);
  if (quantized_kv_start < 0) throw Error(ErrorKind::InvalidArgument, "--quantized-kv-start must be >= 0");
  kv::KvSpec s = kv::kv_spec_from_flags(config, bits, group_size, quantized_kv_start);
  s.rotation = r;
  return s;
}

}  // namespace optiq::cli
