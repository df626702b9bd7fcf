#pragma once
// Random-weight models of real shapes, written in the formats users have (HF/MLX folders, GGUF), for
// tests and benchmarks: no weights can be downloaded here. Values come from a portable RNG
// (splitmix64), so the same spec and seed give byte-identical files on every machine.
#include <cstdint>
#include <string>
#include <vector>

namespace optiq::model {

struct SyntheticSpec {
  std::string model_type = "llama";  // llama | qwen2 | qwen3 | qwen3_moe | qwen3_5 | qwen3_next | qwen3_5_moe
  int hidden_size = 256;
  int intermediate_size = 512;
  int num_hidden_layers = 2;
  int num_attention_heads = 4;
  int num_key_value_heads = 2;
  int head_dim = 64;
  int vocab_size = 320;
  bool tie_word_embeddings = false;
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool llama3_rope = false;  // write llama3 rope_scaling (factor 32, as Llama 3.2)
  // Hybrids (qwen3_5*, qwen3_next): every full_attention_interval-th layer is gated attention, the others
  // Gated DeltaNet with these dims.
  int full_attention_interval = 2;
  float partial_rotary_factor = 0.25f;
  int linear_num_key_heads = 2, linear_num_value_heads = 4, linear_key_head_dim = 32, linear_value_head_dim = 32;
  int linear_conv_kernel = 4;
  // MoE (qwen3_moe, qwen3_next, qwen3_5_moe).
  int num_experts = 4, num_experts_per_tok = 2, moe_intermediate_size = 128, shared_expert_intermediate_size = 0;
  bool norm_topk_prob = false;
  std::vector<int> mlp_only_layers;
  bool hybrid() const { return model_type == "qwen3_5" || model_type == "qwen3_next" || model_type == "qwen3_5_moe"; }
  bool moe() const { return model_type == "qwen3_moe" || model_type == "qwen3_next" || model_type == "qwen3_5_moe"; }
  bool vlm() const { return model_type == "qwen3_5" || model_type == "qwen3_5_moe"; }
  bool is_linear(int l) const { return hybrid() && (l + 1) % full_attention_interval != 0; }
  bool is_moe(int l) const;
  uint64_t seed = 1;
};

// Named shapes: "qwen3-0.6b", "llama-3.2-1b", "qwen3.5-9b" (text model), "qwen3-30b-a3b", and the tiny
// test shapes "tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-qwen3_moe", "tiny-qwen3_5", "tiny-qwen3_next",
// "tiny-qwen3_5_moe". Throws Error for an unknown name.
SyntheticSpec synthetic_shape(const std::string& name);

// format: "f32" | "f16" | "bf16" -> a folder in the raw HF layout (for hybrids: zero-centred norms, conv1d
//         [C, 1, K], VLM wrapper names, HF expert tensors); "mlxN" (N-bit MLX affine, group `group_size`) ->
//         a folder in mlx-lm's converted layout (shifted norms, conv1d [C, K, 1], switch_mlp stacks);
//         "gguf-f32" | "gguf-f16" | "gguf-q8_0" | "gguf-q4_0" | "gguf-q4_1" | "gguf-q4_k" | "gguf-q6_k" -> a .gguf file
//         as llama.cpp's converter writes it (for the hybrids: its qwen3next / qwen35 / qwen35moe layout).
void write_synthetic_model(const SyntheticSpec& spec, const std::string& format, const std::string& out_path,
                           int group_size = 64);

}  // namespace optiq::model
