#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include <map>
#include <mutex>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace optiq::tokenizer {

Regex::Regex(const std::string& pattern, bool literal, const std::string& origin) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // DOLLAR_ENDONLY: like the Rust/Oniguruma engines HF uses, '$' matches only at the very end.
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | (literal ? PCRE2_LITERAL : 0);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts,
                                   &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    throw Error(ErrorKind::BadModel, origin + ": bad regex '" + pattern + "' at offset " +
                                         std::to_string(err_off) + ": " + reinterpret_cast<char*>(buf));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

namespace {
struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(md); }
};
}  // namespace

bool Regex::find_next(std::string_view s, size_t pos, size_t& begin, size_t& end) const {
  thread_local MatchData data;
  auto* code = static_cast<pcre2_code*>(code_);
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  while (pos < s.size()) {
    int rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_MATCHLIMIT)
      rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) throw Error(ErrorKind::Internal, "regex '" + pattern_ + "' failed with PCRE2 error " + std::to_string(rc));
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    if (ov[1] > ov[0]) {
      begin = ov[0];
      end = ov[1];
      return true;
    }
    pos = ov[0] + size_t(utf8_len(uint8_t(s[ov[0]])));  // empty match: step over one character
  }
  return false;
}

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  size_t b, e;
  for (size_t pos = 0; find_next(s, pos, b, e); pos = e) out.emplace_back(b, e);
}

std::shared_ptr<Regex> get_regex(const std::string& pattern, bool literal, const std::string& origin) {
  static std::mutex mu;
  static std::map<std::pair<std::string, bool>, std::shared_ptr<Regex>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{pattern, literal}];
  if (!slot) slot = std::make_shared<Regex>(pattern, literal, origin);
  return slot;
}

}  // namespace optiq::tokenizer
