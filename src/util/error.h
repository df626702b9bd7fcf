#pragma once
// One error type for everything a user can cause (bad file, bad flag, bad request).
// Each API layer maps it to its own error shape; the HTTP status travels with it.
#include <stdexcept>
#include <string>

namespace optiq {

enum class ErrorKind {
  InvalidArgument,  // bad flag, bad request field            -> 400
  NotFound,         // missing file / unknown model or adapter -> 404 (files) / 400 (requests)
  BadModel,         // truncated, corrupt or inconsistent model/adapter/config file
  Unsupported,      // a real format feature we do not implement (yet)
  Overloaded,       // queue full                               -> 429 / 529
  Internal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, int http_status = 0)
      : std::runtime_error(std::move(message)), kind_(kind),
        http_status_(http_status ? http_status : default_status(kind)) {}
  ErrorKind kind() const { return kind_; }
  int http_status() const { return http_status_; }
  static int default_status(ErrorKind k) {
    switch (k) {
      case ErrorKind::InvalidArgument: return 400;
      case ErrorKind::NotFound: return 404;
      case ErrorKind::Overloaded: return 429;
      case ErrorKind::BadModel:
      case ErrorKind::Unsupported:
      case ErrorKind::Internal: return 500;
    }
    return 500;
  }

 private:
  ErrorKind kind_;
  int http_status_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace optiq

// For invariants only a bug can break: aborts with file:line. Users' mistakes throw optiq::Error.
#define OPTIQ_CHECK(cond, msg)                                          \
  do {                                                                  \
    if (!(cond)) ::optiq::check_failed(__FILE__, __LINE__, #cond, msg); \
  } while (0)
