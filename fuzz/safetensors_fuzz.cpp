// safetensors header parsing (and every tensor's f32 conversion) on arbitrary files.
#include <nlohmann/json.hpp>
#include <vector>

#include "formats/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = optiq::fuzz::scratch_file(optiq::fuzz::as_string(data, size), ".safetensors");
  OPTIQ_FUZZ_GUARD({
    optiq::formats::SafetensorsFile f(path);
    std::vector<float> v;
    for (auto& [name, t] : f.tensors())
      if (t.numel() < (1 << 16)) t.to_f32(v);
  });
  return 0;
}
