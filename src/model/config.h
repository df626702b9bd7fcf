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

struct ModelConfig {
  std::string model_type;         // llama | qwen2 | qwen3 (after aliases such as mistral -> llama)
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
  bool tie_word_embeddings = false;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // generation stops on any of these

  // Bytes of fp16 K+V per token over all layers.
  int64_t kv_bytes_per_token_f16() const {
    return int64_t(num_hidden_layers) * num_key_value_heads * head_dim * 2 * 2;
  }
};

// Inverse frequencies for RoPE (head_dim/2 values), with the configured scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace optiq::model
