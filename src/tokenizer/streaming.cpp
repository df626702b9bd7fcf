#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace optiq::tokenizer {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special), to_strip_(tok.strip_leading_spaces()) {}

void StreamingDetokenizer::reset() {
  to_strip_ = tok_.strip_leading_spaces();
  pending_.clear();
}

std::string StreamingDetokenizer::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return "";
  std::string b = tok_.token_to_bytes(id);
  if (b.empty()) return "";
  size_t skip = 0;
  while (to_strip_ > 0 && skip < b.size() && b[skip] == ' ') ++skip, --to_strip_;
  if (skip < b.size()) to_strip_ = 0;  // text has started: nothing more to strip
  pending_.append(b, skip, std::string::npos);
  size_t tail = utf8_incomplete_tail(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, pending_.size() - tail));
  pending_.erase(0, pending_.size() - tail);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace optiq::tokenizer
