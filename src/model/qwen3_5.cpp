// Qwen3.5 (dense) and Qwen3.5-MoE: the Qwen3-Next hybrid (Gated DeltaNet + gated full attention) with
// separate DeltaNet projections (in_proj_qkv, in_proj_z, in_proj_b, in_proj_a), shipped as a VLM whose
// language model config sits under text_config (the loader merges it; vision weights are skipped). llama.cpp's
// GGUFs (qwen35, qwen35moe) store the value heads tiled over the key heads; the decoder reads them so.
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_5_from_hf(const nlohmann::json& j, ModelConfig& c) { read_hf_hybrid(j, "config.json", c); }
void qwen3_5_moe_from_hf(const nlohmann::json& j, ModelConfig& c) {
  read_hf_hybrid(j, "config.json", c);
  read_hf_moe(j, "config.json", c);
}
// llama.cpp's qwen35 / qwen35moe: value heads tiled over the key heads (its converter reorders them).
void qwen3_5_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  read_gguf_hybrid(f, "qwen35", c);
  c.linear.tiled_value_heads = true;
}
void qwen3_5_moe_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  read_gguf_hybrid(f, "qwen35moe", c);
  c.linear.tiled_value_heads = true;
  read_gguf_moe(f, "qwen35moe", c);
}
}  // namespace

extern const Architecture kQwen3_5 = {"qwen3_5", "qwen35", qwen3_5_from_hf, qwen3_5_from_gguf};
extern const Architecture kQwen3_5Moe = {"qwen3_5_moe", "qwen35moe", qwen3_5_moe_from_hf, qwen3_5_moe_from_gguf};

}  // namespace optiq::model
