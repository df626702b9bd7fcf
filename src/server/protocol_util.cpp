#include "server/protocol_util.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>

namespace optiq::server {

using json = nlohmann::ordered_json;
using nlohmann::ordered_json;

ResponseMeta make_response_meta(std::string_view id_prefix, std::string model) {
  return ResponseMeta{random_id(id_prefix), unix_time_now(), std::move(model)};
}

std::string random_id(std::string_view prefix, size_t n_chars) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string id(prefix);
  for (size_t i = 0; i < n_chars; ++i) id += kAlphabet[pick(rng)];
  return id;
}

int64_t unix_time_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string rfc3339_utc(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string sse_data(const std::string& payload) { return "data: " + payload + "\n\n"; }
std::string sse_event(std::string_view name, const std::string& payload) {
  std::string s = "event: ";
  s += name;
  s += "\ndata: ";
  s += payload;
  s += "\n\n";
  return s;
}

const engine::GenerationEvent* find_done(const std::vector<engine::GenerationEvent>& events) {
  const engine::GenerationEvent* done = nullptr;
  for (const auto& ev : events) {
    if (ev.kind == engine::GenerationEvent::Kind::Error)
      throw api_error_from_status(ev.http_status ? ev.http_status : 500, ev.error);
    if (ev.kind == engine::GenerationEvent::Kind::Done) done = &ev;
  }
  return done;
}

double clean_logprob(float v) {
  if (!std::isfinite(v)) return -9999.0;  // OpenAI's stand-in for -inf
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::strtod(std::string(buf, p).c_str(), nullptr);
}

ordered_json byte_list(const std::string& s) {
  ordered_json a = ordered_json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

// ---- /v1/models ----

namespace {
ordered_json model_json(const ModelInfo& m) {
  ordered_json j;
  j["id"] = m.id;
  j["object"] = "model";
  j["created"] = m.created;
  j["owned_by"] = m.owned_by;
  j["type"] = "model";
  j["display_name"] = m.id;
  j["created_at"] = rfc3339_utc(m.created);
  return j;
}
}  // namespace

std::string models_list_body(const std::vector<ModelInfo>& models) {
  ordered_json j;
  j["object"] = "list";
  ordered_json data = ordered_json::array();
  for (const auto& m : models) data.push_back(model_json(m));
  j["data"] = std::move(data);
  j["has_more"] = false;
  j["first_id"] = models.empty() ? ordered_json(nullptr) : ordered_json(models.front().id);
  j["last_id"] = models.empty() ? ordered_json(nullptr) : ordered_json(models.back().id);
  return dump_json(j);
}

std::string model_body(const ModelInfo& model) { return dump_json(model_json(model)); }

ApiError model_not_found(const std::string& id) {
  return ApiError(404, error_type::kNotFound, "The model '" + id + "' does not exist", "model", "model_not_found");
}

namespace fields {
namespace {

std::string fmt_num(double v) {
  char buf[64];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

[[noreturn]] void throw_range(const std::string& path, double min, double max, double got) {
  // Bounds at the int32 limits are representation limits, not worth naming unless they were crossed.
  bool has_min = min > -2147483648.0, has_max = max < 2147483647.0;
  std::string msg = "'" + path + "' ";
  if (has_min && has_max)
    msg += "must be between " + fmt_num(min) + " and " + fmt_num(max);
  else if (got < min)
    msg += "must be >= " + fmt_num(min);
  else
    msg += "must be <= " + fmt_num(max);
  msg += ", got " + fmt_num(got);
  throw invalid_request(std::move(msg), path);
}

}  // namespace

json parse_body_object(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the position; the message is nlohmann's, minus its prefix.
    std::string detail;
    try {
      json ignored = json::parse(body);
      (void)ignored;
    } catch (const json::parse_error& e) {
      detail = e.what();
      if (auto p = detail.find("parse error"); p != std::string::npos) detail = detail.substr(p);
    }
    throw invalid_request("Invalid JSON in request body" + (detail.empty() ? std::string() : ": " + detail));
  }
  if (!j.is_object()) throw invalid_request("Request body must be a JSON object, got " + type_name(j));
  return j;
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

std::string join_path(const std::string& prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  std::string s = prefix;
  s += '.';
  s += key;
  return s;
}

std::string index_path(const std::string& prefix, size_t i) { return prefix + "[" + std::to_string(i) + "]"; }

const json* get(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

void throw_type(const std::string& path, std::string_view expected, const json& got) {
  throw invalid_request("'" + path + "' must be " + std::string(expected) + ", got " + type_name(got), path);
}

void throw_missing(const std::string& path) {
  throw invalid_request("Missing required field '" + path + "'", path);
}

std::optional<std::string> opt_string(const json& obj, std::string_view key, const std::string& path) {
  const json* v = get(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw_type(path, "a string", *v);
  return v->get<std::string>();
}

std::string req_string(const json& obj, std::string_view key, const std::string& path) {
  auto s = opt_string(obj, key, path);
  if (!s) throw_missing(path);
  return *s;
}

std::optional<bool> opt_bool(const json& obj, std::string_view key, const std::string& path) {
  const json* v = get(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw_type(path, "a boolean", *v);
  return v->get<bool>();
}

std::optional<int64_t> opt_int(const json& obj, std::string_view key, const std::string& path, int64_t min,
                               int64_t max) {
  const json* v = get(obj, key);
  if (!v) return std::nullopt;
  int64_t n = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw_range(path, static_cast<double>(min), static_cast<double>(max), v->get<double>());
    n = v->get<int64_t>();
  } else if (v->is_number_float()) {
    double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) throw_type(path, "an integer", *v);
    if (d < static_cast<double>(min) || d > static_cast<double>(max))
      throw_range(path, static_cast<double>(min), static_cast<double>(max), d);
    n = static_cast<int64_t>(d);
  } else {
    throw_type(path, "an integer", *v);
  }
  if (n < min || n > max)
    throw_range(path, static_cast<double>(min), static_cast<double>(max), static_cast<double>(n));
  return n;
}

std::optional<double> opt_number(const json& obj, std::string_view key, const std::string& path, double min,
                                 double max) {
  const json* v = get(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw_type(path, "a number", *v);
  double d = v->get<double>();
  if (!(d >= min && d <= max)) throw_range(path, min, max, d);
  return d;
}

const json* opt_object(const json& obj, std::string_view key, const std::string& path) {
  const json* v = get(obj, key);
  if (v && !v->is_object()) throw_type(path, "an object", *v);
  return v;
}

const json* opt_array(const json& obj, std::string_view key, const std::string& path) {
  const json* v = get(obj, key);
  if (v && !v->is_array()) throw_type(path, "an array", *v);
  return v;
}

std::vector<std::string> opt_string_list(const json& obj, std::string_view key, const std::string& path,
                                         bool allow_single_string) {
  std::vector<std::string> out;
  const json* v = get(obj, key);
  if (!v) return out;
  if (v->is_string() && allow_single_string) {
    if (!v->get_ref<const std::string&>().empty()) out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array())
    throw_type(path, allow_single_string ? "a string or an array of strings" : "an array of strings", *v);
  for (size_t i = 0; i < v->size(); ++i) {
    const json& s = (*v)[i];
    if (!s.is_string()) throw_type(index_path(path, i), "a string", s);
    if (!s.get_ref<const std::string&>().empty()) out.push_back(s.get<std::string>());
  }
  return out;
}

}  // namespace fields
}  // namespace optiq::server
