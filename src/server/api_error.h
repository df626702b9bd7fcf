#pragma once
// Errors as the two HTTP APIs report them. Request parsers throw ApiError; the server catches it and
// answers with the status and the body of the API the route belongs to:
//   OpenAI:    {"error":{"message","type","param","code"}}
//   Anthropic: {"type":"error","error":{"type","message"}}
// `type` holds one neutral name (Anthropic's list, which is the finer one); each body maps it to the
// API's own word, and anthropic_status() turns an overloaded 429 into Anthropic's 529.
#include <exception>
#include <string>

#include "util/error.h"

namespace optiq::server {

// The neutral error types (Anthropic spelling).
namespace error_type {
inline constexpr const char* kInvalidRequest = "invalid_request_error";  // 400, 422
inline constexpr const char* kAuthentication = "authentication_error";   // 401
inline constexpr const char* kPermission = "permission_error";           // 403
inline constexpr const char* kNotFound = "not_found_error";              // 404
inline constexpr const char* kRequestTooLarge = "request_too_large";     // 413
inline constexpr const char* kRateLimit = "rate_limit_error";            // 429
inline constexpr const char* kOverloaded = "overloaded_error";           // 429 (OpenAI) / 529 (Anthropic)
inline constexpr const char* kApi = "api_error";                         // 500 and other 5xx
}  // namespace error_type

struct ApiError : std::exception {
  int status = 400;
  std::string type = error_type::kInvalidRequest;
  std::string message;
  std::string param;  // OpenAI `param` (the offending field, e.g. "messages[1].content"); "" -> null
  std::string code;   // OpenAI `code`; "" -> null

  ApiError() = default;
  ApiError(int status_, std::string type_, std::string message_, std::string param_ = {}, std::string code_ = {})
      : status(status_), type(std::move(type_)), message(std::move(message_)), param(std::move(param_)),
        code(std::move(code_)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

// 400 invalid_request_error naming the field.
ApiError invalid_request(std::string message, std::string param = {});
// The neutral type an HTTP status gets when nothing more specific is known.
const char* error_type_for_status(int status);
// Any status + message (e.g. a GenerationEvent::Error): the type follows the status.
ApiError api_error_from_status(int status, std::string message);
// optiq::Error (kind + http_status) -> ApiError. Overloaded -> 429 overloaded_error (529 for Anthropic).
ApiError api_error_from(const optiq::Error& e);
// Whatever a handler caught: ApiError, optiq::Error, or anything else (500 api_error, message kept).
ApiError api_error_from_exception(const std::exception& e);

// OpenAI: the status to send (= e.status) and the body.
int openai_status(const ApiError& e);
std::string openai_error_type(const ApiError& e);
std::string openai_error_body(const ApiError& e);
// Anthropic: overloaded_error is sent as 529; everything else keeps e.status.
int anthropic_status(const ApiError& e);
std::string anthropic_error_type(const ApiError& e);
std::string anthropic_error_body(const ApiError& e);

// Mid-stream errors, complete SSE frames:
//   OpenAI:    "data: {\"error\":{...}}\n\n"
//   Anthropic: "event: error\ndata: {\"type\":\"error\",\"error\":{...}}\n\n"
std::string openai_error_frame(const ApiError& e);
std::string anthropic_error_frame(const ApiError& e);

}  // namespace optiq::server
