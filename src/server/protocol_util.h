#pragma once
// Helpers shared by the OpenAI and Anthropic protocol code: typed field readers that throw ApiError 400
// naming the field, ids, timestamps, SSE framing and JSON serialization that never throws.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"
#include "server/api_error.h"

namespace optiq::server {

// What a response needs beyond the events: its id, creation time and the model name to echo.
struct ResponseMeta {
  std::string id;
  int64_t created = 0;  // unix seconds
  std::string model;
};
// A fresh id (prefix + 24 random alphanumerics) and the current time.
ResponseMeta make_response_meta(std::string_view id_prefix, std::string model);

// Token id -> its text (raw bytes, possibly half a UTF-8 character). Used for logprobs.
using TokenTextFn = std::function<std::string(int32_t)>;

std::string random_id(std::string_view prefix, size_t n_chars = 24);
int64_t unix_time_now();
std::string rfc3339_utc(int64_t unix_seconds);  // 2023-11-14T22:13:20Z

// Serialization that replaces invalid UTF-8 with U+FFFD instead of throwing.
std::string dump_json(const nlohmann::ordered_json& j);

// SSE frames.
std::string sse_data(const std::string& payload);                         // "data: P\n\n"
std::string sse_event(std::string_view name, const std::string& payload);  // "event: N\ndata: P\n\n"

// The Done event of a finished generation (nullptr if none); throws ApiError for an Error event.
const engine::GenerationEvent* find_done(const std::vector<engine::GenerationEvent>& events);

// Log-probabilities: a float as the shortest decimal that reads back as the same float (0.1f -> 0.1, not
// 0.100000001); -inf/NaN -> -9999 (OpenAI's stand-in). Token text as a list of byte values.
double clean_logprob(float v);
nlohmann::ordered_json byte_list(const std::string& s);

// ---- /v1/models (both APIs) ----
// One body serves both SDKs (clients.md §4.5: verified with openai 7.57, @anthropic-ai/sdk 1.14 and Claude
// Code's discovery): OpenAI's list fields plus Anthropic's page fields; each item carries both APIs' fields.
// So GET /v1/models needs no sniffing of anthropic-version.
struct ModelInfo {
  std::string id;
  int64_t created = 0;  // unix seconds
  std::string owned_by = "optiq";
};
std::string models_list_body(const std::vector<ModelInfo>& models);
std::string model_body(const ModelInfo& model);  // GET /v1/models/{id}
ApiError model_not_found(const std::string& id);  // 404 not_found_error

namespace fields {

// The body as a JSON object; 400 "Invalid JSON in request body: ..." / "Request body must be a JSON object".
nlohmann::ordered_json parse_body_object(const std::string& body);

// "a string", "an integer", "an array", ... for messages.
std::string type_name(const nlohmann::ordered_json& v);
std::string join_path(const std::string& prefix, std::string_view key);  // "a.b", "a[2]" handled by caller
std::string index_path(const std::string& prefix, size_t i);             // "messages[3]"

// All readers treat an explicit null as absent. `path` names the field in error messages.
const nlohmann::ordered_json* get(const nlohmann::ordered_json& obj, std::string_view key);
[[noreturn]] void throw_type(const std::string& path, std::string_view expected, const nlohmann::ordered_json& got);
[[noreturn]] void throw_missing(const std::string& path);

std::optional<std::string> opt_string(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path);
std::string req_string(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path);
std::optional<bool> opt_bool(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path);
// Integers: JSON integers, or floats with an integral value (2.0); bounds inclusive.
std::optional<int64_t> opt_int(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path,
                               int64_t min = INT64_MIN, int64_t max = INT64_MAX);
std::optional<double> opt_number(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path,
                                 double min = -1e300, double max = 1e300);
const nlohmann::ordered_json* opt_object(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path);
const nlohmann::ordered_json* opt_array(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path);
// A string or a list of strings (stop / stop_sequences); empty strings dropped.
std::vector<std::string> opt_string_list(const nlohmann::ordered_json& obj, std::string_view key, const std::string& path,
                                         bool allow_single_string);

}  // namespace fields
}  // namespace optiq::server
