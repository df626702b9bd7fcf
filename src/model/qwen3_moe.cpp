// Qwen3-MoE: Qwen3 attention (q_norm/k_norm) with a routed mixture of experts in place of the MLP on the
// layers decoder_sparse_step / mlp_only_layers select (softmax router, top-k, optional renormalisation).
#include "model/architecture.h"
#include "util/error.h"

namespace optiq::model {

namespace {
void qwen3_moe_from_hf(const nlohmann::json& j, ModelConfig& c) {
  c.qk_norm = true;
  c.attention_bias = j.value("attention_bias", false);
  read_hf_moe(j, "config.json", c);
}
// llama.cpp's qwen3moe: every layer MoE, router probabilities always renormalised over the top k.
void qwen3_moe_from_gguf(const formats::GgufFile& f, ModelConfig& c) {
  c.qk_norm = true;
  MoeConfig& m = c.moe;
  m.num_experts = int(f.get_int("qwen3moe.expert_count", 0));
  m.experts_per_token = int(f.get_int("qwen3moe.expert_used_count", 0));
  m.intermediate_size = int(f.get_int("qwen3moe.expert_feed_forward_length", 0));
  m.norm_topk_prob = true;
  if (m.num_experts <= 0 || m.experts_per_token <= 0 || m.experts_per_token > m.num_experts || m.intermediate_size <= 0)
    throw Error(ErrorKind::BadModel, f.path() + ": qwen3moe.expert_count, expert_used_count (<= expert_count) and expert_feed_forward_length must be positive");
  c.moe_layers.assign(size_t(c.num_hidden_layers), 1);
}
}  // namespace

extern const Architecture kQwen3Moe = {"qwen3_moe", "qwen3moe", qwen3_moe_from_hf, qwen3_moe_from_gguf};

}  // namespace optiq::model
