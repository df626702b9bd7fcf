#include "engine/json_constraint.h"

#include <cstring>

#include "tokenizer/tokenizer.h"

namespace optiq::engine {

namespace {

constexpr const char* kLiterals[3] = {"true", "false", "null"};

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

bool JsonPrefix::end_value() {
  mode_ = depth_ == 0 ? Mode::Done : Mode::After;
  return true;
}

bool JsonPrefix::value_start(unsigned char c) {
  switch (c) {
    case '{':
    case '[':
      if (depth_ >= kMaxDepth) return false;
      if (c == '{') stack_ |= uint64_t(1) << depth_;
      else stack_ &= ~(uint64_t(1) << depth_);
      ++depth_;
      mode_ = c == '{' ? Mode::ObjectFirst : Mode::ArrayFirst;
      return true;
    case '"':
      mode_ = Mode::String;
      key_ = false;
      return true;
    case '-':
    case '0':
      mode_ = Mode::Number;
      sub_ = c == '-' ? Minus : Zero;
      return true;
    case 't':
    case 'f':
    case 'n':
      mode_ = Mode::Literal;
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      sub_ = 1;
      return true;
    default:
      if (c >= '1' && c <= '9') {
        mode_ = Mode::Number;
        sub_ = Int;
        return true;
      }
      return false;
  }
}

bool JsonPrefix::feed(unsigned char c) {
  switch (mode_) {
    case Mode::String:
      if (c == '"') {
        if (key_) mode_ = Mode::Colon;
        else end_value();
        return true;
      }
      if (c == '\\') mode_ = Mode::Escape;
      return c >= 0x20;
    case Mode::Escape:
      if (c == 'u') {
        mode_ = Mode::Unicode;
        sub_ = 4;
        return true;
      }
      mode_ = Mode::String;
      return std::strchr("\"\\/bfnrt", c) != nullptr && c != 0;
    case Mode::Unicode:
      if (!is_hex(c)) return false;
      if (--sub_ == 0) mode_ = Mode::String;
      return true;
    case Mode::Literal: {
      const char* lit = kLiterals[literal_];
      if (c != static_cast<unsigned char>(lit[sub_])) return false;
      if (lit[++sub_] == '\0') end_value();
      return true;
    }
    case Mode::Number: {
      const bool e = c == 'e' || c == 'E';
      switch (sub_) {
        case Minus:
          if (c == '0') sub_ = Zero;
          else if (is_digit(c)) sub_ = Int;
          else return false;
          return true;
        case Zero:
        case Int:
        case Frac:
          if (is_digit(c) && sub_ != Zero) return true;
          if (c == '.' && sub_ != Frac) { sub_ = FracStart; return true; }
          if (e) { sub_ = ExpStart; return true; }
          break;  // the number ended before c
        case FracStart:
          if (!is_digit(c)) return false;
          sub_ = Frac;
          return true;
        case ExpStart:
          if (c == '+' || c == '-') { sub_ = ExpSign; return true; }
          [[fallthrough]];
        case ExpSign:
          if (!is_digit(c)) return false;
          sub_ = Exp;
          return true;
        case Exp:
          if (is_digit(c)) return true;
          break;
      }
      end_value();
      return feed(c);
    }
    default:
      break;
  }

  // Between tokens of the grammar: whitespace, bounded (one line break, then indentation); none before
  // the object opens.
  if (mode_ == Mode::Top) return c == '{' && value_start(c);
  if (c == '\n') {
    if (newline_) return false;
    newline_ = true;
    return true;
  }
  if (c == ' ' || c == '\t') {
    if (ws_ >= kMaxIndent) return false;
    ++ws_;
    return true;
  }
  ws_ = 0;
  newline_ = false;
  switch (mode_) {
    case Mode::Value:
      return value_start(c);
    case Mode::ArrayFirst:
      if (c == ']') {
        --depth_;
        return end_value();
      }
      return value_start(c);
    case Mode::ObjectFirst:
    case Mode::ObjectKey:
      if (c == '"') {
        mode_ = Mode::String;
        key_ = true;
        return true;
      }
      if (c == '}' && mode_ == Mode::ObjectFirst) {
        --depth_;
        return end_value();
      }
      return false;
    case Mode::Colon:
      if (c != ':') return false;
      mode_ = Mode::Value;
      return true;
    case Mode::After:
      if (c == ',') {
        mode_ = in_object() ? Mode::ObjectKey : Mode::Value;
        return true;
      }
      if ((c == '}' && in_object()) || (c == ']' && !in_object())) {
        --depth_;
        return end_value();
      }
      return false;
    default:  // Done: only whitespace may follow
      return false;
  }
}

TokenBytes::TokenBytes(const tokenizer::Tokenizer& tok, int32_t vocab) {
  bytes.resize(size_t(vocab));
  banned.assign(size_t(vocab), 1);
  const int32_t known = tok.vocab_size();
  for (int32_t t = 0; t < vocab && t < known; ++t) {
    bytes[size_t(t)] = tok.token_to_bytes(t);
    banned[size_t(t)] = bytes[size_t(t)].empty() || tok.is_special(t) || tok.is_control(t);
  }
}

size_t JsonConstraint::allowed(std::vector<uint8_t>& allowed) const {
  const auto& v = *vocab_;
  allowed.assign(v.bytes.size(), 0);
  size_t n = 0;
  for (size_t t = 0; t < v.bytes.size(); ++t) {
    if (v.banned[t]) continue;
    JsonPrefix s = state_;
    if (s.feed(v.bytes[t])) {
      allowed[t] = 1;
      ++n;
    }
  }
  return n;
}

bool JsonConstraint::accept(int32_t token) {
  const auto& v = *vocab_;
  if (token < 0 || size_t(token) >= v.bytes.size() || v.banned[size_t(token)]) return false;
  JsonPrefix s = state_;
  if (!s.feed(v.bytes[size_t(token)])) return false;
  state_ = s;
  return true;
}

}  // namespace optiq::engine
