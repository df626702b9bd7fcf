#pragma once
// response_format {"type": "json_object"}: generation constrained so that the output is one JSON object.
//
// JsonPrefix is a byte-level recognizer of RFC 8259 JSON whose top-level value must be an object: feed()
// accepts a byte only if what was fed so far is still the prefix of some valid document, and complete()
// says the object has closed. Its state is a few bytes (no heap), so it is copied once per vocabulary
// entry per step.
//
// JsonConstraint applies it to tokens: before each sample, allowed() marks the tokens whose bytes keep the
// output a valid prefix; accept() advances over the chosen token. Special/control tokens are never allowed
// (generation ends when the object closes, not with EOS). Whitespace outside strings is limited to what
// compact or pretty-printed JSON uses, as llama.cpp's JSON grammar does: the output starts with "{", and a
// run holds at most one "\n" and kMaxIndent spaces or tabs, and no "\r", so that a model cannot stall in
// endless blank lines. Nesting deeper than kMaxDepth is refused.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace optiq::tokenizer {
class Tokenizer;
}

namespace optiq::engine {

class JsonPrefix {
 public:
  static constexpr int kMaxDepth = 64;
  static constexpr int kMaxIndent = 48;

  bool feed(unsigned char c);
  bool feed(const std::string& bytes) {
    for (unsigned char c : bytes)
      if (!feed(c)) return false;
    return true;
  }
  bool complete() const { return mode_ == Mode::Done; }

 private:
  enum class Mode : uint8_t {
    Top, Value, ArrayFirst, ObjectFirst, ObjectKey, Colon, After,
    String, Escape, Unicode, Number, Literal, Done
  };
  enum Num : uint8_t { Minus, Zero, Int, FracStart, Frac, ExpStart, ExpSign, Exp };

  bool value_start(unsigned char c);
  bool end_value();  // a value just ended: back in the container, or Done at the top
  bool in_object() const { return depth_ > 0 && ((stack_ >> (depth_ - 1)) & 1); }

  uint64_t stack_ = 0;  // bit i: the container at depth i+1 is an object (1) or an array (0)
  Mode mode_ = Mode::Top;
  uint8_t depth_ = 0;
  uint8_t sub_ = 0;       // Number: Num state; Unicode: hex digits left; Literal: index into the literal
  uint8_t literal_ = 0;   // Literal: 0 true, 1 false, 2 null
  uint8_t ws_ = 0;        // spaces and tabs in the current whitespace run
  bool newline_ = false;  // the current whitespace run holds its one line break
  bool key_ = false;      // String: this string is an object key
};

// The bytes of every token id below the model's vocabulary size, and which tokens may never appear in
// constrained output. Built once per model, shared by all constrained requests.
struct TokenBytes {
  TokenBytes(const tokenizer::Tokenizer& tok, int32_t vocab);
  std::vector<std::string> bytes;
  std::vector<uint8_t> banned;  // special / control / empty tokens
};

class JsonConstraint {
 public:
  explicit JsonConstraint(std::shared_ptr<const TokenBytes> vocab) : vocab_(std::move(vocab)) {}
  // allowed[t] = 1 for every token t that keeps the output a valid prefix. Returns how many are allowed.
  size_t allowed(std::vector<uint8_t>& allowed) const;
  // Advances over a token; false if it was not allowed (the state is then unchanged).
  bool accept(int32_t token);
  bool complete() const { return state_.complete(); }

 private:
  std::shared_ptr<const TokenBytes> vocab_;
  JsonPrefix state_;
};

}  // namespace optiq::engine
