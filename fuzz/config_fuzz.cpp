// Small configuration files: kv_config.json (the text), and a LoRA adapter folder whose adapter_config.json is
// the input (over a fixed tiny adapter), loaded for a fixed tiny model config.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "formats/safetensors.h"
#include "fuzz_util.h"
#include "kv/kv_spec.h"
#include "model/config.h"
#include "model/lora.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = optiq::fuzz::as_string(data, size);
  OPTIQ_FUZZ_GUARD({
    auto spec = optiq::kv::parse_kv_config(text, "kv_config.json");
    optiq::kv::KvShape shape;
    shape.n_layers = 4, shape.n_kv_heads = 2, shape.head_dim = 64;
    shape.has_kv = {false, true, false, true};
    spec.validate(shape);
    spec.describe(shape);
  });
  static const std::string dir = [] {
    const std::string d = std::filesystem::temp_directory_path().string() + "/optiq-fuzz-adapter-" + std::to_string(getpid());
    std::filesystem::create_directories(d);
    optiq::formats::SafetensorsWriter w;
    w.add_f32("model.layers.0.self_attn.q_proj.lora_a", {64, 2}, std::vector<float>(128, 0.01f));
    w.add_f32("model.layers.0.self_attn.q_proj.lora_b", {2, 64}, std::vector<float>(128, 0.01f));
    w.write(d + "/adapters.safetensors");
    return d;
  }();
  std::ofstream(dir + "/adapter_config.json", std::ios::trunc) << text;
  optiq::model::ModelConfig c;
  c.model_type = "llama", c.hidden_size = 64, c.intermediate_size = 128, c.num_hidden_layers = 2;
  c.num_attention_heads = 2, c.num_key_value_heads = 2, c.head_dim = 32, c.vocab_size = 100;
  OPTIQ_FUZZ_GUARD(optiq::model::load_adapter(dir, c, "fuzz"));
  return 0;
}
