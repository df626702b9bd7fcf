#pragma once
// A small command-line flag parser: --name value, --name=value, boolean --flag, positionals.
// Unknown flags and malformed values are errors that name the flag.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace optiq::cli {

class Flags {
 public:
  explicit Flags(std::string usage) : usage_(std::move(usage)) {}
  void add(const std::string& name, std::string* out, const std::string& help);
  void add(const std::string& name, int* out, const std::string& help);
  void add(const std::string& name, float* out, const std::string& help);
  void add(const std::string& name, std::optional<uint64_t>* out, const std::string& help);
  void add_bool(const std::string& name, bool* out, const std::string& help);
  void parse(int argc, char** argv, int first);  // throws Error(InvalidArgument)
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

}  // namespace optiq::cli
