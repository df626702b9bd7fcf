// Qwen3-MoE: Qwen3 attention (q_norm/k_norm) with a routed mixture of experts in place of the MLP on the
// layers decoder_sparse_step / mlp_only_layers select (softmax router, top-k, optional renormalisation).
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_moe_from_hf(const nlohmann::json& j, ModelConfig& c) {
  c.qk_norm = true;
  c.attention_bias = j.value("attention_bias", false);
  read_hf_moe(j, "config.json", c);
}
// llama.cpp's qwen3moe.
void qwen3_moe_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  c.qk_norm = true;
  read_gguf_moe(f, "qwen3moe", c);
}
}  // namespace

extern const Architecture kQwen3Moe = {"qwen3_moe", "qwen3moe", qwen3_moe_from_hf, qwen3_moe_from_gguf};

}  // namespace optiq::model
