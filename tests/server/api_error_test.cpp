// Error bodies in both APIs' shapes, and the optiq::Error -> ApiError mapping.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace optiq::server {
namespace {

using nlohmann::json;

TEST(ApiError, OpenAiBodyExact) {
  ApiError e = invalid_request("'max_tokens' must be >= 1, got 0", "max_tokens");
  EXPECT_EQ(openai_error_body(e),
            R"({"error":{"message":"'max_tokens' must be >= 1, got 0","type":"invalid_request_error","param":"max_tokens","code":null}})");
  EXPECT_EQ(openai_status(e), 400);
}

TEST(ApiError, AnthropicBodyExact) {
  ApiError e = invalid_request("Missing required field 'max_tokens'", "max_tokens");
  EXPECT_EQ(anthropic_error_body(e),
            R"({"type":"error","error":{"type":"invalid_request_error","message":"Missing required field 'max_tokens'"}})");
  EXPECT_EQ(anthropic_status(e), 400);
}

TEST(ApiError, NullParamAndCode) {
  ApiError e(401, error_type::kAuthentication, "Invalid API key");
  json j = json::parse(openai_error_body(e));
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_EQ(j["error"]["type"], "authentication_error");
  EXPECT_EQ(json::parse(anthropic_error_body(e))["error"]["type"], "authentication_error");
}

TEST(ApiError, TypesPerStatus) {
  struct Case {
    int status;
    const char* openai_type;
    const char* anthropic_type;
    int anthropic_status;
  };
  const Case cases[] = {
      {400, "invalid_request_error", "invalid_request_error", 400},
      {401, "authentication_error", "authentication_error", 401},
      {403, "permission_error", "permission_error", 403},
      {404, "not_found_error", "not_found_error", 404},
      {413, "invalid_request_error", "request_too_large", 413},
      {422, "invalid_request_error", "invalid_request_error", 422},
      {429, "rate_limit_error", "rate_limit_error", 429},
      {500, "server_error", "api_error", 500},
      {529, "server_error", "overloaded_error", 529},
  };
  for (const auto& c : cases) {
    ApiError e = api_error_from_status(c.status, "m");
    EXPECT_EQ(openai_error_type(e), c.openai_type) << c.status;
    EXPECT_EQ(anthropic_error_type(e), c.anthropic_type) << c.status;
    EXPECT_EQ(anthropic_status(e), c.anthropic_status) << c.status;
  }
  EXPECT_EQ(api_error_from_status(200, "odd").status, 500);  // not an error status
}

TEST(ApiError, FromOptiqError) {
  ApiError a = api_error_from(Error(ErrorKind::InvalidArgument, "prompt is too long: 300 tokens > 256 maximum"));
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.type, "invalid_request_error");
  EXPECT_EQ(a.message, "prompt is too long: 300 tokens > 256 maximum");

  ApiError o = api_error_from(Error(ErrorKind::Overloaded, "queue full"));
  EXPECT_EQ(openai_status(o), 429);
  EXPECT_EQ(anthropic_status(o), 529);
  EXPECT_EQ(anthropic_error_type(o), "overloaded_error");
  EXPECT_EQ(openai_error_type(o), "rate_limit_error");  // sent as 429 to OpenAI clients

  ApiError n = api_error_from(Error(ErrorKind::NotFound, "no such adapter", 400));
  EXPECT_EQ(n.status, 400);
  EXPECT_EQ(n.type, "invalid_request_error");
  EXPECT_EQ(api_error_from(Error(ErrorKind::NotFound, "gone")).type, "not_found_error");

  ApiError i = api_error_from(Error(ErrorKind::Internal, "boom"));
  EXPECT_EQ(i.status, 500);
  EXPECT_EQ(i.type, "api_error");
}

TEST(ApiError, FromAnyException) {
  EXPECT_EQ(api_error_from_exception(invalid_request("x")).status, 400);
  EXPECT_EQ(api_error_from_exception(Error(ErrorKind::Overloaded, "q")).type, "overloaded_error");
  ApiError e = api_error_from_exception(std::runtime_error("bad"));
  EXPECT_EQ(e.status, 500);
  EXPECT_NE(e.message.find("bad"), std::string::npos);
}

TEST(ApiError, StreamFrames) {
  ApiError e(529, error_type::kOverloaded, "busy");
  EXPECT_EQ(anthropic_error_frame(e),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n");
  EXPECT_EQ(openai_error_frame(e),
            "data: {\"error\":{\"message\":\"busy\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n");
}

TEST(ApiError, InvalidUtf8InMessageDoesNotThrow) {
  ApiError e = invalid_request(std::string("bad \xff byte"));
  json j = json::parse(openai_error_body(e));
  EXPECT_NE(j["error"]["message"].get<std::string>().find("bad"), std::string::npos);
}

}  // namespace
}  // namespace optiq::server
