#include "chat/lexer.h"

#include <cctype>
#include <cstring>

#include "chat/value.h"
#include "util/error.h"

namespace optiq::chat {

void syntax_error(int line, const std::string& msg) {
  throw Error(ErrorKind::BadModel, "chat template: line " + std::to_string(line) + ": " + msg);
}

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// jinja2 turns \r\n and \r into \n and drops one trailing newline (keep_trailing_newline=False).
std::string normalize(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Python's "unicode-escape" decoding of a string literal body, as jinja2 applies it.
std::string decode_string(const std::string& s, int line) {
  std::u32string out;
  std::u32string in = utf8_decode(s);
  for (size_t i = 0; i < in.size(); ++i) {
    char32_t c = in[i];
    if (c != '\\' || i + 1 >= in.size()) {
      out += c;
      continue;
    }
    char32_t n = in[++i];
    auto hex = [&](int digits) -> char32_t {
      char32_t v = 0;
      for (int k = 0; k < digits; ++k) {
        if (i + 1 >= in.size() || !std::isxdigit(static_cast<int>(in[i + 1]))) syntax_error(line, "bad escape in string");
        char32_t h = in[++i];
        v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      return v;
    };
    switch (n) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': out += hex(2); break;
      case 'u': out += hex(4); break;
      case 'U': out += hex(8); break;
      default:
        if (n >= '0' && n <= '7') {
          char32_t v = n - '0';
          for (int k = 0; k < 2 && i + 1 < in.size() && in[i + 1] >= '0' && in[i + 1] <= '7'; ++k) v = v * 8 + (in[++i] - '0');
          out += v;
        } else {
          out += '\\';
          out += n;
        }
    }
  }
  return utf8_encode(out);
}

class Lexer {
 public:
  explicit Lexer(const std::string& src) : s_(normalize(src)) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t tag = s_.find('{', pos_);
      while (tag != std::string::npos && tag + 1 < s_.size() && !std::strchr("{%#", s_[tag + 1]))
        tag = s_.find('{', tag + 1);
      if (tag == std::string::npos || tag + 1 >= s_.size()) {
        emit_text(s_.substr(pos_));
        pos_ = s_.size();
        break;
      }
      char kind = s_[tag + 1];
      char sign = tag + 2 < s_.size() && (s_[tag + 2] == '-' || s_[tag + 2] == '+') ? s_[tag + 2] : 0;
      std::string text = s_.substr(pos_, tag - pos_);
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_ws(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: block and comment tags only
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          bool blank = true;
          for (size_t i = l_pos; i < text.size(); ++i) blank = blank && (text[i] == ' ' || text[i] == '\t');
          if (blank) text.resize(l_pos);
        }
      }
      count_lines(pos_, tag);
      emit_text(text);
      pos_ = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        size_t end = s_.find("#}", pos_);
        if (end == std::string::npos) syntax_error(line_, "Missing end of comment tag");
        char esign = end > pos_ && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : 0;
        count_lines(pos_, end + 2);
        pos_ = end + 2;
        line_starting = finish_tag(esign);
      } else if (kind == '%' && try_raw(line_starting)) {
        line_starting = last_consumed_newline_;
      } else {
        out_.push_back({kind == '%' ? Tok::BlockBegin : Tok::VarBegin, "", line_});
        line_starting = lex_tag(kind == '%');
      }
    }
    out_.push_back({Tok::Eof, "", line_});
    return std::move(out_);
  }

 private:
  void emit_text(const std::string& t) {
    if (!t.empty()) out_.push_back({Tok::Text, t, line_});
  }
  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < s_.size(); ++i) line_ += s_[i] == '\n';
  }
  // After a tag's closing delimiter: `-` strips all following whitespace, no sign removes one newline
  // (trim_blocks), `+` keeps everything. Returns whether the consumed text ended with a newline.
  bool finish_tag(char sign) {
    size_t start = pos_;
    if (sign == '-') {
      while (pos_ < s_.size() && is_ws(s_[pos_])) ++pos_;
    } else if (sign != '+' && pos_ < s_.size() && s_[pos_] == '\n') {
      ++pos_;
    }
    count_lines(start, pos_);
    return pos_ > 0 && s_[pos_ - 1] == '\n';
  }

  size_t skip_ws(size_t p) const {
    while (p < s_.size() && is_ws(s_[p])) ++p;
    return p;
  }
  bool word_at(size_t p, const char* w) const {
    size_t n = std::strlen(w);
    return s_.compare(p, n, w) == 0 && (p + n >= s_.size() || !(std::isalnum(static_cast<unsigned char>(s_[p + n])) || s_[p + n] == '_'));
  }

  // {% raw %}...{% endraw %}: the body is text, verbatim.
  bool try_raw(bool line_starting) {
    size_t p = skip_ws(pos_);
    if (!word_at(p, "raw")) return false;
    p = skip_ws(p + 3);
    bool minus = false;
    if (s_.compare(p, 3, "-%}") == 0) minus = true;
    else if (s_.compare(p, 2, "%}") != 0) return false;
    p += minus ? 3 : 2;
    if (minus) p = skip_ws(p);
    // find {% endraw %}
    size_t q = p;
    while (true) {
      q = s_.find("{%", q);
      if (q == std::string::npos) syntax_error(line_, "Missing end of raw directive");
      size_t r = q + 2;
      char sign = r < s_.size() && (s_[r] == '-' || s_[r] == '+') ? s_[r] : 0;
      if (sign) ++r;
      r = skip_ws(r);
      if (word_at(r, "endraw")) {
        r = skip_ws(r + 6);
        char esign = r < s_.size() && (s_[r] == '-' || s_[r] == '+') ? s_[r] : 0;
        if (esign) ++r;
        if (s_.compare(r, 2, "%}") == 0) {
          std::string body = s_.substr(p, q - p);
          if (sign == '-') {
            while (!body.empty() && is_ws(body.back())) body.pop_back();
          } else if (sign != '+') {
            size_t l_pos = body.rfind('\n');
            l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
            if (l_pos > 0) {
              bool blank = true;
              for (size_t i = l_pos; i < body.size(); ++i) blank = blank && (body[i] == ' ' || body[i] == '\t');
              if (blank) body.resize(l_pos);
            }
          }
          count_lines(pos_, p);
          emit_text(body);
          count_lines(p, r + 2);
          pos_ = r + 2;
          last_consumed_newline_ = finish_tag(esign);
          (void)line_starting;
          return true;
        }
      }
      q += 2;
    }
  }

  // Tokens of a {{ }} or {% %} tag up to its end; returns whether the end consumed a newline.
  bool lex_tag(bool block) {
    int depth = 0;
    while (true) {
      size_t start = pos_;
      pos_ = skip_ws(pos_);
      count_lines(start, pos_);
      if (pos_ >= s_.size()) syntax_error(line_, block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (depth == 0) {
        char close = block ? '%' : '}';
        const char* end2 = block ? "%}" : "}}";
        char sign = s_[pos_] == '-' || s_[pos_] == '+' ? s_[pos_] : 0;
        if (sign && s_.compare(pos_ + 1, 2, end2) == 0 && (sign == '-' || block)) {
          out_.push_back({block ? Tok::BlockEnd : Tok::VarEnd, "", line_});
          pos_ += 3;
          return finish_tag(sign);
        }
        if (s_.compare(pos_, 2, end2) == 0) {
          out_.push_back({block ? Tok::BlockEnd : Tok::VarEnd, "", line_});
          pos_ += 2;
          return block ? finish_tag(0) : false;
        }
        (void)close;
      }
      char c = s_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        out_.push_back({Tok::Name, s_.substr(pos_, e - pos_), line_});
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        size_t e = pos_ + 1;
        while (e < s_.size() && s_[e] != c) e += s_[e] == '\\' ? 2 : 1;
        if (e >= s_.size()) syntax_error(line_, "unexpected char '" + std::string(1, c) + "'");
        std::string body = s_.substr(pos_ + 1, e - pos_ - 1);
        out_.push_back({Tok::String, decode_string(body, line_), line_});
        count_lines(pos_, e);
        pos_ = e + 1;
      } else {
        static const char* ops2[] = {"**", "//", "==", "!=", ">=", "<="};
        std::string op;
        for (const char* o : ops2)
          if (s_.compare(pos_, 2, o) == 0) op = o;
        if (op.empty()) {
          if (!std::strchr("+-*/%~[](){},.:|=<>;", c)) syntax_error(line_, "unexpected char '" + std::string(1, c) + "'");
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) syntax_error(line_, "unexpected '" + op + "'");
            --depth;
          }
        }
        out_.push_back({Tok::Op, op, line_});
        pos_ += op.size();
      }
    }
  }

  void lex_number() {
    size_t e = pos_;
    auto digits = [&] {
      while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) ||
                               (s_[e] == '_' && e + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e + 1])))))
        ++e;
    };
    digits();
    bool is_float = false;
    if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
      ++e;
      digits();
      is_float = true;
    }
    if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t f = e + 1;
      if (f < s_.size() && (s_[f] == '+' || s_[f] == '-')) ++f;
      if (f < s_.size() && std::isdigit(static_cast<unsigned char>(s_[f]))) {
        e = f;
        digits();
        is_float = true;
      }
    }
    std::string t;
    for (size_t i = pos_; i < e; ++i)
      if (s_[i] != '_') t += s_[i];
    out_.push_back({is_float ? Tok::Float : Tok::Int, t, line_});
    pos_ = e;
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  bool last_consumed_newline_ = false;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex_template(const std::string& source) { return Lexer(source).run(); }

}  // namespace optiq::chat
