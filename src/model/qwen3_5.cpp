// Qwen3.5 (dense) and Qwen3.5-MoE: the Qwen3-Next hybrid (Gated DeltaNet + gated full attention) with
// separate DeltaNet projections (in_proj_qkv, in_proj_z, in_proj_b, in_proj_a), shipped as a VLM whose
// language model config sits under text_config (the loader merges it; vision weights are skipped).
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_5_from_hf(const nlohmann::json& j, ModelConfig& c) { read_hf_hybrid(j, "config.json", c); }
void qwen3_5_moe_from_hf(const nlohmann::json& j, ModelConfig& c) {
  read_hf_hybrid(j, "config.json", c);
  read_hf_moe(j, "config.json", c);
}
}  // namespace

extern const Architecture kQwen3_5 = {"qwen3_5", nullptr, qwen3_5_from_hf, nullptr};
extern const Architecture kQwen3_5Moe = {"qwen3_5_moe", nullptr, qwen3_5_moe_from_hf, nullptr};

}  // namespace optiq::model
