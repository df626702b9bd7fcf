#include "chat/output_parser_json.h"

#include <cctype>
#include <string_view>
#include <nlohmann/json.hpp>

namespace optiq::chat::detail {

namespace {

using ojson = nlohmann::ordered_json;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool is_scalar_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

}  // namespace

// ---- JsonScanner ----

JsonScanner::Status JsonScanner::feed(char c) {
  ev_ = Events{};
  if (expect_ == Expect::End) return Status::Error;
  Status st = Status::More;
  if (in_string_) {
    if (hex_left_ > 0) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return Status::Error;
      --hex_left_;
    } else if (escape_) {
      if (c == 'u') hex_left_ = 4;
      else if (std::string_view("\"\\/bfnrt").find(c) == std::string_view::npos) return Status::Error;
      escape_ = false;
    } else if (c == '\\') {
      escape_ = true;
    } else if (c == '"') {
      in_string_ = false;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      return Status::Error;  // raw control characters are not JSON
    }
    if (string_is_key_ && member_level()) key_ += c;
    ++pos_;
    if (!in_string_) {
      if (string_is_key_) {
        expect_ = Expect::Colon;
        if (member_level()) ev_.key = true;
      } else {
        st = end_value(pos_);
      }
    }
  } else {
    if (in_scalar_) {
      if (is_scalar_char(c)) {
        scalar_ += c;
        ++pos_;
        return Status::More;
      }
      in_scalar_ = false;
      if (!ojson::accept(scalar_)) return Status::Error;
      end_value(pos_);  // a scalar never stands at the top, so this is not Done
      safe_end_ = pos_;
      safe_in_string_ = false;
    }
    if (is_ws(c)) {
      ++pos_;
    } else {
      st = structural(c);
      if (st == Status::Error) return st;
      ++pos_;
    }
  }
  bool safe = in_string_ ? !string_is_key_ && !escape_ && hex_left_ == 0
                         : !in_scalar_ && (expect_ == Expect::KeyOrClose || expect_ == Expect::ValueOrClose ||
                                           expect_ == Expect::CommaOrClose || expect_ == Expect::End);
  if (safe) {
    safe_end_ = pos_;
    safe_in_string_ = in_string_;
  }
  return st;
}

JsonScanner::Status JsonScanner::structural(char c) {
  switch (expect_) {
    case Expect::ValueOrClose:
      if (c == ']') return close_container(c);
      [[fallthrough]];
    case Expect::Value: {
      bool member = member_level();
      if (c == '{' || c == '[') {
        stack_ += c;
        expect_ = c == '{' ? Expect::KeyOrClose : Expect::ValueOrClose;
      } else if (c == '"') {
        in_string_ = true;
        string_is_key_ = false;
      } else if (!stack_.empty() && (c == '-' || std::isdigit(static_cast<unsigned char>(c)) || c == 't' ||
                                     c == 'f' || c == 'n')) {
        in_scalar_ = true;
        scalar_.clear();
        scalar_.push_back(c);
      } else {
        return Status::Error;
      }
      if (member) {
        ev_.value_start = true;
        ev_.start = pos_;
      }
      return Status::More;
    }
    case Expect::KeyOrClose:
      if (c == '}') return close_container(c);
      [[fallthrough]];
    case Expect::Key:
      if (c != '"') return Status::Error;
      in_string_ = true;
      string_is_key_ = true;
      if (member_level()) key_.assign(1, '"');
      return Status::More;
    case Expect::Colon:
      if (c != ':') return Status::Error;
      expect_ = Expect::Value;
      return Status::More;
    case Expect::CommaOrClose:
      if (c == ',') {
        expect_ = stack_.back() == '{' ? Expect::Key : Expect::Value;
        return Status::More;
      }
      return close_container(c);
    case Expect::End: break;
  }
  return Status::Error;
}

JsonScanner::Status JsonScanner::close_container(char c) {
  if (stack_.empty() || (c == '}' && stack_.back() != '{') || (c == ']' && stack_.back() != '[') ||
      (c != '}' && c != ']'))
    return Status::Error;
  stack_.pop_back();
  return end_value(pos_ + 1);
}

JsonScanner::Status JsonScanner::end_value(size_t end) {
  if (stack_.empty()) {
    expect_ = Expect::End;
    return Status::Done;
  }
  expect_ = Expect::CommaOrClose;
  if (member_level()) {
    ev_.value_end = true;
    ev_.end = end;
  }
  return Status::More;
}

std::string JsonScanner::closers(size_t base) const {
  std::string s = safe_in_string_ ? "\"" : "";
  for (size_t i = stack_.size(); i > base; --i) s += stack_[i - 1] == '{' ? '}' : ']';
  return s;
}

// ---- JsonCall ----

void JsonCall::flush(CallSink& sink, size_t upto) {
  if (upto > emitted_) {
    sink.call_args(text_.substr(emitted_, upto - emitted_));
    emitted_ = upto;
  }
}

JsonCall::Status JsonCall::feed(char c, CallSink& sink) {
  JsonScanner::Status st = sc_.feed(c);
  if (st == JsonScanner::Status::Error) return Status::Error;
  text_ += c;
  const JsonScanner::Events& ev = sc_.events();
  if (ev.key) {
    ojson k = ojson::parse(sc_.raw_key(), nullptr, false);
    key_ = k.is_string() ? k.get<std::string>() : "";
  }
  const bool args_key = key_ == "arguments" || key_ == "parameters";
  if (ev.value_start) {
    value_start_ = ev.start;
    if (args_key && have_name_ && !announced_ && c == '{') {
      sink.call_start(name_);
      announced_ = streaming_ = true;
      emitted_ = ev.start;
    }
  }
  if (streaming_) flush(sink, sc_.safe_end());
  if (ev.value_end) {
    if (key_ == "name" && !have_name_) {
      ojson n = ojson::parse(text_.substr(value_start_, ev.end - value_start_), nullptr, false);
      if (n.is_string() && !n.get<std::string>().empty()) {
        name_ = n.get<std::string>();
        have_name_ = true;
      }
    }
    if (streaming_ && args_key) {
      flush(sink, ev.end);
      sink.call_end();
      streaming_ = false;
    }
  }
  return st == JsonScanner::Status::Done ? Status::Done : Status::More;
}

bool JsonCall::finish_object(CallSink& sink) {
  if (announced_) return true;
  ojson j = ojson::parse(text_, nullptr, false);
  if (!j.is_object()) return false;
  if (!j.contains("name") && j.contains("function") && j["function"].is_object()) j = ojson(j["function"]);
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) return false;
  std::string args = "{}";
  for (const char* k : {"arguments", "parameters"}) {
    if (!j.contains(k)) continue;
    args = arguments_object(dump(j[k]));
    if (args.empty()) return false;
    break;
  }
  sink.call_start(j["name"].get<std::string>());
  sink.call_args(args);
  sink.call_end();
  announced_ = true;
  return true;
}

void JsonCall::abort(CallSink& sink) {
  if (!streaming_) return;
  flush(sink, sc_.safe_end());  // a number ended by the character that broke the JSON
  sink.call_args(sc_.closers(1));
  sink.call_end();
  streaming_ = false;
}

// ---- ArgsStream ----

ArgsStream::Status ArgsStream::feed(char c, CallSink& sink) {
  if (mode_ == Mode::Wait) {
    if (is_ws(c)) return Status::More;
    if (c == '{') mode_ = Mode::Stream;
    else if (c == '"') mode_ = Mode::Buffer;
    else return Status::Error;
  }
  JsonScanner::Status st = sc_.feed(c);
  if (st == JsonScanner::Status::Error) return Status::Error;
  text_ += c;
  if (mode_ == Mode::Stream && sc_.safe_end() > emitted_) {
    sink.call_args(text_.substr(emitted_, sc_.safe_end() - emitted_));
    emitted_ = sc_.safe_end();
  }
  if (st != JsonScanner::Status::Done) return Status::More;
  if (mode_ == Mode::Buffer) {
    std::string args = arguments_object(text_);
    sink.call_args(args.empty() ? "{}" : args);
  }
  sink.call_end();
  return Status::Done;
}

void ArgsStream::abort(CallSink& sink) {
  if (mode_ == Mode::Stream && sc_.safe_end() > emitted_) sink.call_args(text_.substr(emitted_, sc_.safe_end() - emitted_));
  sink.call_args(mode_ == Mode::Stream ? sc_.closers(0) : "{}");
  sink.call_end();
}

std::string arguments_object(const std::string& json_text) {
  ojson j = ojson::parse(json_text, nullptr, false);
  if (j.is_string()) j = ojson::parse(j.get<std::string>(), nullptr, false);
  if (!j.is_object()) return "";
  return dump(j);
}

}  // namespace optiq::chat::detail
