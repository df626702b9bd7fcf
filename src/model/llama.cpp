// Llama 2 / 3 / 3.1+ (llama3 RoPE scaling); Mistral maps here. No biases unless the config says so.
#include "model/architecture.h"

namespace optiq::model {

namespace {
void llama_from_hf(const nlohmann::json& j, ModelConfig& c) {
  c.attention_bias = j.value("attention_bias", false);
  c.o_proj_bias = c.attention_bias;
  c.mlp_bias = j.value("mlp_bias", false);
}
void llama_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  // llama.cpp's converter permutes Q/K rows so that interleaved-pair RoPE applies.
  c.rope_traditional = true;
}
}  // namespace

extern const Architecture kLlama = {"llama", "llama", llama_from_hf, llama_from_gguf};

}  // namespace optiq::model
