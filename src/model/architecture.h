#pragma once
// The registry of architectures: model_type -> how to read its config. One file per architecture
// (llama.cpp, qwen2.cpp, qwen3.cpp ...) defines its entry; adding one is its file plus a table line.
#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"
#include "model/config.h"

namespace optiq::model {

struct Architecture {
  const char* model_type;
  const char* gguf_arch;  // general.architecture value; null: no GGUF form
  void (*from_hf_config)(const nlohmann::json& cfg, ModelConfig& c);
  void (*from_gguf)(const formats::GgufFile& f, ModelConfig& c);
};

const Architecture* find_architecture(const std::string& model_type);  // resolves aliases (mistral -> llama)
const Architecture* find_gguf_architecture(const std::string& gguf_arch);
std::string supported_architectures();

// Shared config readers the architecture files compose.
void read_hf_common(const nlohmann::json& cfg, const std::string& file, ModelConfig& c);
void read_gguf_common(const formats::GgufFile& f, const std::string& arch, ModelConfig& c);
// MoE keys (num_experts, num_experts_per_tok, moe_intermediate_size, shared_expert_intermediate_size,
// norm_topk_prob, decoder_sparse_step, mlp_only_layers) -> c.moe and c.moe_layers.
void read_hf_moe(const nlohmann::json& cfg, const std::string& file, ModelConfig& c);
// Hybrid keys (layer_types or full_attention_interval, linear_*, partial_rotary_factor) -> c.linear_layers,
// c.linear, c.rope_dims, gated attention.
void read_hf_hybrid(const nlohmann::json& cfg, const std::string& file, ModelConfig& c);
// The same from llama.cpp's GGUF keys ({arch}.ssm.*, .full_attention_interval or .attention.recurrent_layers,
// .rope.dimension_count, .nextn_predict_layers).
void read_gguf_hybrid(const formats::GgufFile& f, const std::string& arch, ModelConfig& c);
// {arch}.expert_count, .expert_used_count, .expert_feed_forward_length, .expert_shared_feed_forward_length;
// a layer is MoE when it has a router (blk.N.ffn_gate_inp); llama.cpp always renormalises the top k.
void read_gguf_moe(const formats::GgufFile& f, const std::string& arch, ModelConfig& c);

}  // namespace optiq::model
