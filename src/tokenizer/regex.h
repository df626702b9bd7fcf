#pragma once
// PCRE2 (UTF + UCP, JIT) regex used by pre-tokenizers and normalizers.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace optiq::tokenizer {

class Regex {
 public:
  // Throws Error(BadModel, "<origin>: bad regex ...") when the pattern does not compile.
  Regex(const std::string& pattern, bool literal, const std::string& origin);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every non-overlapping, non-empty match in s, left to right, as [begin, end) byte offsets.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  // The first non-empty match at or after pos; false when there is none.
  bool find_next(std::string_view s, size_t pos, size_t& begin, size_t& end) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Compiled once per (pattern, literal) and shared (thread-safe).
std::shared_ptr<Regex> get_regex(const std::string& pattern, bool literal, const std::string& origin);

}  // namespace optiq::tokenizer
