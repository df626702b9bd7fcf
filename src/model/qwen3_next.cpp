// Qwen3-Next: a hybrid of Gated DeltaNet linear attention and gated full attention (every
// full_attention_interval-th layer), MoE with a shared expert. Its DeltaNet projections are grouped per key
// head (in_proj_qkvz, in_proj_ba); the decoder regroups them into Qwen3.5's layout.
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_next_from_hf(const nlohmann::json& j, ModelConfig& c) {
  read_hf_hybrid(j, "config.json", c);
  c.linear.grouped_projections = true;
  if (j.value("num_experts", 0) > 0) read_hf_moe(j, "config.json", c);
}
}  // namespace

extern const Architecture kQwen3Next = {"qwen3_next", nullptr, qwen3_next_from_hf, nullptr};

}  // namespace optiq::model
