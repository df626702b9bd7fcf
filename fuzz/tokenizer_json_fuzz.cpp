// tokenizer.json loading, then encoding and decoding a text with what loaded. The input is the JSON, or with a
// first line "TEXT:<text>" the text to encode as well.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string json = optiq::fuzz::as_string(data, size), text = "Hello, world! ¿Qué tal? 123 四五六 \xf0\x9f\x99\x82";
  if (json.rfind("TEXT:", 0) == 0) {
    const size_t nl = json.find('\n');
    text = json.substr(5, nl == std::string::npos ? std::string::npos : nl - 5);
    json = nl == std::string::npos ? "" : json.substr(nl + 1);
  }
  OPTIQ_FUZZ_GUARD({
    auto tok = optiq::tokenizer::Tokenizer::from_tokenizer_json(json);
    auto ids = tok->encode(text);
    tok->decode(ids);
  });
  return 0;
}
