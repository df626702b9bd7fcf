#pragma once
// A small command-line flag parser: --name value, --name=value, boolean --flag, positionals.
// Unknown flags and malformed values are errors that name the flag.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kv/kv_spec.h"

namespace optiq::cli {

class Flags {
 public:
  explicit Flags(std::string usage) : usage_(std::move(usage)) {}
  void add(const std::string& name, std::string* out, const std::string& help);
  void add(const std::string& name, int* out, const std::string& help);
  void add(const std::string& name, float* out, const std::string& help);
  void add(const std::string& name, std::optional<uint64_t>* out, const std::string& help);
  void add_bool(const std::string& name, bool* out, const std::string& help);
  void add(const std::string& name, std::vector<std::string>* out, const std::string& help);  // repeatable
  void parse(int argc, char** argv, int first);  // throws Error(InvalidArgument)
  // parse(), then when --help was given prints the help to stdout and returns false (exit 0).
  bool parse_or_help(int argc, char** argv, int first);
  // `value` (a --model style flag) or else the first positional; throws "no model given (USAGE)".
  std::string model_arg(const std::string& value, const std::string& usage) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  std::string help() const;
  bool help_requested() const { return help_; }

 private:
  struct Flag {
    std::string name, help, kind;
    std::function<void(const std::string&)> set;
  };
  std::string usage_;
  std::vector<Flag> flags_;
  std::vector<std::string> positionals_;
  bool help_ = false;
};

std::vector<int> parse_int_list(const std::string& s, const std::string& flag);
// A byte count: digits with an optional K, M, G or T suffix (powers of 1024; "KB", "KiB", ... alike).
int64_t parse_bytes(const std::string& s, const std::string& flag);

// --kv-rotation's value: auto | on | off; throws Error(InvalidArgument) for anything else.
kv::KvSpec::Rotation parse_kv_rotation(const std::string& value);

// The KV cache precision flags shared by generate, bench, eval and serve (mlx_lm names, plus
// --kv-config with the seed's per-layer file).
struct KvFlags {
  std::string config;          // --kv-config FILE
  int bits = 0;                // --kv-bits N (0: fp16 unless the file says otherwise)
  int group_size = 0;          // --kv-group-size G (0: 64)
  int quantized_kv_start = 0;  // --quantized-kv-start T
  std::string rotation = "auto";  // --kv-rotation auto|on|off
  void add_to(Flags& f);
  kv::KvSpec spec() const;     // throws Error(InvalidArgument) for bad values or files
};

}  // namespace optiq::cli
