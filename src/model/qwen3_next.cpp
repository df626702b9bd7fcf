// Qwen3-Next: a hybrid of Gated DeltaNet linear attention and gated full attention (every
// full_attention_interval-th layer), MoE with a shared expert. Its DeltaNet projections are grouped per key
// head (in_proj_qkvz, in_proj_ba); the decoder regroups them into Qwen3.5's layout (which is how llama.cpp's
// GGUFs store q, k, v and z).
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen3_next_from_hf(const nlohmann::json& j, ModelConfig& c) {
  read_hf_hybrid(j, "config.json", c);
  if (j.value("num_experts", 0) > 0) read_hf_moe(j, "config.json", c);
}
// llama.cpp's qwen3next: in_proj_qkvz split into attn_qkv + attn_gate, in_proj_ba kept whole (ssm_ba).
void qwen3_next_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  read_gguf_hybrid(f, "qwen3next", c);
  if (f.get_int("qwen3next.expert_count", 0) > 0) read_gguf_moe(f, "qwen3next", c);
}
}  // namespace

extern const Architecture kQwen3Next = {"qwen3_next", "qwen3next", qwen3_next_from_hf, qwen3_next_from_gguf};

}  // namespace optiq::model
