// The Anthropic Messages request parser on arbitrary bodies.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "server/api_error.h"
#include "server/anthropic_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  OPTIQ_FUZZ_GUARD_API(optiq::server::parse_anthropic_messages(optiq::fuzz::as_string(data, size)));
  return 0;
}
