#pragma once
// Internals of the output parser: an incremental JSON scanner and the streaming of tool-call arguments
// written as JSON (Hermes / Llama 3 / Mistral). Not part of the public API.
#include <cstddef>
#include <string>

namespace optiq::chat::detail {

// Where a tool call's events go (implemented by the output parser).
class CallSink {
 public:
  virtual ~CallSink() = default;
  virtual void call_start(const std::string& name) = 0;
  virtual void call_args(const std::string& fragment) = 0;
  virtual void call_end() = 0;
};

// Validates one JSON value (an object, array or string at the top) fed a character at a time, and knows at
// every point the longest prefix that appending closers() turns into valid JSON: right after `{`, `[` or a
// complete value, or inside a string value (not inside an escape). Keys, colons, commas and unfinished
// numbers or literals are never part of that prefix until what follows them has begun.
class JsonScanner {
 public:
  enum class Status { More, Done, Error };
  // What the last feed() saw at depth 1 of a top-level object.
  struct Events {
    bool key = false;          // a key string ended (raw_key())
    bool value_start = false;  // a member value began at offset start
    bool value_end = false;    // a member value ended at offset end (exclusive)
    size_t start = 0, end = 0;
  };

  Status feed(char c);
  const Events& events() const { return ev_; }
  const std::string& raw_key() const { return key_; }  // with its quotes
  size_t consumed() const { return pos_; }
  size_t safe_end() const { return safe_end_; }
  // Closes the containers opened at depth >= base (and an open string) of the safe prefix.
  std::string closers(size_t base) const;

 private:
  enum class Expect { Value, KeyOrClose, Key, Colon, CommaOrClose, ValueOrClose, End };
  Status structural(char c);
  Status close_container(char c);
  Status end_value(size_t end);
  bool member_level() const { return stack_.size() == 1 && stack_[0] == '{'; }

  std::string stack_;  // '{' / '['
  Expect expect_ = Expect::Value;
  bool in_string_ = false, string_is_key_ = false, escape_ = false;
  int hex_left_ = 0;
  bool in_scalar_ = false;
  std::string scalar_, key_;
  size_t pos_ = 0, safe_end_ = 0;
  bool safe_in_string_ = false;
  Events ev_;
};

// One tool call written as a JSON object: {"name": "f", "arguments": {...}} (also "parameters", as Llama 3
// writes, and an OpenAI-shaped {"function": {...}}). The call is announced once its name is known and its
// arguments object begins; the arguments then stream as they arrive. Otherwise (arguments before the name,
// arguments as a string) the call is emitted whole when the object is complete.
class JsonCall {
 public:
  enum class Status { More, Done, Error };
  // On Error the character was not taken (text() does not include it).
  Status feed(char c, CallSink& sink);
  const std::string& text() const { return text_; }
  bool announced() const { return announced_; }
  // At Done, for a call not yet announced: parses the whole object and emits it; false if it is not a call.
  bool finish_object(CallSink& sink);
  // Input ended or broke after the announcement: closes the arguments streamed so far and ends the call.
  void abort(CallSink& sink);

 private:
  void flush(CallSink& sink, size_t upto);

  JsonScanner sc_;
  std::string text_, key_, name_;
  bool have_name_ = false, announced_ = false, streaming_ = false;
  size_t value_start_ = 0, emitted_ = 0;
};

// A tool call's arguments written on their own (Mistral: name[ARGS]{...}). Leading whitespace is skipped;
// an object streams, a string holding JSON is parsed when complete.
class ArgsStream {
 public:
  enum class Status { More, Done, Error };
  Status feed(char c, CallSink& sink);  // On Error the character was not taken.
  void abort(CallSink& sink);           // closes what was streamed (or writes {}) and ends the call

 private:
  JsonScanner sc_;
  std::string text_;
  enum class Mode { Wait, Stream, Buffer } mode_ = Mode::Wait;
  size_t emitted_ = 0;
};

// Arguments given as a JSON string holding an object, or an object: the object; else an empty string.
std::string arguments_object(const std::string& json_text);

}  // namespace optiq::chat::detail
