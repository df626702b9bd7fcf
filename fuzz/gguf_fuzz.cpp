// GGUF parsing (header, metadata, tensor table) and the vocabulary built from its metadata.
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = optiq::fuzz::scratch_file(optiq::fuzz::as_string(data, size), ".gguf");
  OPTIQ_FUZZ_GUARD({
    optiq::formats::GgufFile f(path);
    auto tok = optiq::tokenizer::Tokenizer::from_gguf(f);
    tok->encode("Hello world, 123 héllo");
  });
  return 0;
}
