#pragma once
// Random-weight models of real shapes, written in the formats users have (HF/MLX folders, GGUF), for
// tests and benchmarks: no weights can be downloaded here. Values come from a portable RNG
// (splitmix64), so the same spec and seed give byte-identical files on every machine.
#include <cstdint>
#include <string>

namespace optiq::model {

struct SyntheticSpec {
  std::string model_type = "llama";  // llama | qwen2 | qwen3
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
  uint64_t seed = 1;
};

// Named shapes: "qwen3-0.6b", "llama-3.2-1b", and the tiny test shapes "tiny-llama", "tiny-qwen2",
// "tiny-qwen3". Throws Error for an unknown name.
SyntheticSpec synthetic_shape(const std::string& name);

// format: "f32" | "f16" | "bf16" | "mlxN" (N-bit MLX affine, group `group_size`) -> a HF/MLX folder;
//         "gguf-f32" | "gguf-f16" | "gguf-q8_0" | "gguf-q4_0" | "gguf-q4_1" | "gguf-q4_k" | "gguf-q6_k" -> a .gguf file.
void write_synthetic_model(const SyntheticSpec& spec, const std::string& format, const std::string& out_path,
                           int group_size = 64);

}  // namespace optiq::model
