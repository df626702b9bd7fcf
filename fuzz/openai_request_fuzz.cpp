// The OpenAI request parsers (chat completions and completions) on arbitrary bodies.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "server/api_error.h"
#include "server/openai_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body = optiq::fuzz::as_string(data, size);
  OPTIQ_FUZZ_GUARD_API(optiq::server::parse_openai_chat(body));
  OPTIQ_FUZZ_GUARD_API(optiq::server::parse_openai_completion(body));
  return 0;
}
