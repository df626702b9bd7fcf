// Qwen3: per-head RMSNorm on q and k (q_norm, k_norm) before RoPE, explicit head_dim, no biases.
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_from_hf(const nlohmann::json& j, ModelConfig& c) {
  c.qk_norm = true;
  c.attention_bias = j.value("attention_bias", false);
}
void qwen3_from_gguf(const formats::GgufFile&, ModelConfig& c) { c.qk_norm = true; }
}  // namespace

extern const Architecture kQwen3 = {"qwen3", "qwen3", qwen3_from_hf, qwen3_from_gguf};

}  // namespace optiq::model
