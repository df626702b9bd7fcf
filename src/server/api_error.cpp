#include "server/api_error.h"

#include <nlohmann/json.hpp>

#include "server/protocol_util.h"

namespace optiq::server {

using nlohmann::ordered_json;

ApiError invalid_request(std::string message, std::string param) {
  return ApiError(400, error_type::kInvalidRequest, std::move(message), std::move(param));
}

const char* error_type_for_status(int status) {
  switch (status) {
    case 401: return error_type::kAuthentication;
    case 403: return error_type::kPermission;
    case 404: return error_type::kNotFound;
    case 413: return error_type::kRequestTooLarge;
    case 429: return error_type::kRateLimit;
    case 503:
    case 529: return error_type::kOverloaded;
    default: break;
  }
  if (status >= 400 && status < 500) return error_type::kInvalidRequest;
  return error_type::kApi;
}

ApiError api_error_from_status(int status, std::string message) {
  if (status < 400 || status > 599) status = 500;
  return ApiError(status, error_type_for_status(status), std::move(message));
}

ApiError api_error_from(const optiq::Error& e) {
  int status = e.http_status();
  switch (e.kind()) {
    case ErrorKind::Overloaded:
      return ApiError(status == 529 || status == 503 ? 429 : status, error_type::kOverloaded, e.what());
    case ErrorKind::InvalidArgument:
      // A bad request field (or a prompt over the context): 400 unless the thrower chose otherwise.
      return api_error_from_status(status, e.what());
    case ErrorKind::NotFound:
      // Files are 404; an unknown model/adapter named in a request is still a 404 for the client.
      return ApiError(status, error_type_for_status(status), e.what());
    case ErrorKind::BadModel:
    case ErrorKind::Unsupported:
    case ErrorKind::Internal: break;
  }
  return api_error_from_status(status, e.what());
}

ApiError api_error_from_exception(const std::exception& e) {
  if (auto* a = dynamic_cast<const ApiError*>(&e)) return *a;
  if (auto* o = dynamic_cast<const optiq::Error*>(&e)) return api_error_from(*o);
  return ApiError(500, error_type::kApi, std::string("internal error: ") + e.what());
}

int openai_status(const ApiError& e) { return e.status; }

std::string openai_error_type(const ApiError& e) {
  if (e.type == error_type::kRequestTooLarge) return "invalid_request_error";
  if (e.type == error_type::kOverloaded) return e.status == 429 ? "rate_limit_error" : "server_error";
  if (e.type == error_type::kApi) return "server_error";
  return e.type;
}

static ordered_json null_or(const std::string& s) { return s.empty() ? ordered_json(nullptr) : ordered_json(s); }

std::string openai_error_body(const ApiError& e) {
  ordered_json err;
  err["message"] = e.message;
  err["type"] = openai_error_type(e);
  err["param"] = null_or(e.param);
  err["code"] = null_or(e.code);
  ordered_json j;
  j["error"] = std::move(err);
  return dump_json(j);
}

int anthropic_status(const ApiError& e) { return e.type == error_type::kOverloaded ? 529 : e.status; }

std::string anthropic_error_type(const ApiError& e) { return e.type; }

std::string anthropic_error_body(const ApiError& e) {
  ordered_json j;
  j["type"] = "error";
  j["error"] = {{"type", anthropic_error_type(e)}, {"message", e.message}};
  return dump_json(j);
}

std::string openai_error_frame(const ApiError& e) { return sse_data(openai_error_body(e)); }

std::string anthropic_error_frame(const ApiError& e) { return sse_event("error", anthropic_error_body(e)); }

}  // namespace optiq::server
