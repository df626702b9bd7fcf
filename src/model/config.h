#pragma once
// The decoder configuration every architecture maps its config.json / GGUF metadata onto.
// Field names follow HF config.json keys; variants that differ by a switch are fields, not new classes.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optiq::model {

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3 | dynamic | yarn
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 0;
  float beta_fast = 32.0f, beta_slow = 1.0f;  // yarn
};

// Gated DeltaNet dimensions (HF linear_* keys).
struct LinearAttention {
  int num_key_heads = 0, num_value_heads = 0, key_head_dim = 0, value_head_dim = 0, conv_kernel = 4;
  // Value head h reads key head h % num_key_heads (llama.cpp's qwen35 GGUFs store value heads tiled over the key
  // heads) instead of h / (num_value_heads / num_key_heads) (HF's grouping).
  bool tiled_value_heads = false;
  int64_t key_dim() const { return int64_t(num_key_heads) * key_head_dim; }
  int64_t value_dim() const { return int64_t(num_value_heads) * value_head_dim; }
  int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
  // f32 values of one layer's recurrent state: conv inputs [conv_kernel-1, conv_dim] and S [Hv, Dv, Dk].
  int64_t state_floats() const {
    return int64_t(conv_kernel - 1) * conv_dim() + int64_t(num_value_heads) * value_head_dim * key_head_dim;
  }
};

struct MoeConfig {
  int num_experts = 0, experts_per_token = 0, intermediate_size = 0;
  int shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool norm_topk_prob = false;
};

struct ModelConfig {
  std::string model_type;         // llama | qwen2 | qwen3 | qwen3_moe | qwen3_5 | qwen3_5_moe | qwen3_next
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool rope_traditional = false;  // interleaved pairs (GGUF llama layout) instead of rotate-half
  bool attention_bias = false;    // q/k/v projections carry a bias (qwen2)
  bool o_proj_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;           // per-head RMSNorm on q and k before RoPE (qwen3)
  int rope_dims = 0;              // dims of each head that RoPE rotates (partial_rotary_factor); 0: head_dim
  bool attn_output_gate = false;  // q_proj also yields a per-head gate: out = o_proj(attn * sigmoid(gate))
  bool tie_word_embeddings = false;
  // Hybrids (qwen3_5, qwen3_next): per layer, Gated DeltaNet linear attention instead of attention.
  std::vector<uint8_t> linear_layers;  // empty: every layer is attention
  LinearAttention linear;
  // Mixture of experts (qwen3_moe, qwen3_next, qwen3_5_moe): per layer, a routed MoE block instead of the MLP.
  std::vector<uint8_t> moe_layers;     // empty: no MoE layer
  MoeConfig moe;

  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // generation stops on any of these

  bool is_linear(int layer) const { return !linear_layers.empty() && linear_layers[size_t(layer)]; }
  bool is_moe(int layer) const { return !moe_layers.empty() && moe_layers[size_t(layer)]; }
  int attention_layers() const {
    int n = 0;
    for (int l = 0; l < num_hidden_layers; ++l) n += !is_linear(l);
    return n;
  }
  // Bytes of fp16 K+V per token over all attention layers.
  int64_t kv_bytes_per_token_f16() const { return int64_t(attention_layers()) * num_key_value_heads * head_dim * 2 * 2; }
};

// Inverse frequencies for RoPE (head_dim/2 values), with the configured scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace optiq::model
