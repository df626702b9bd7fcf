#include "model/architecture.h"

#include <algorithm>

#include "util/error.h"

namespace optiq::model {

extern const Architecture kLlama;
extern const Architecture kQwen2;
extern const Architecture kQwen3;
extern const Architecture kQwen3Moe;
extern const Architecture kQwen3Next;
extern const Architecture kQwen3_5;
extern const Architecture kQwen3_5Moe;

namespace {
const Architecture* const kArchitectures[] = {&kLlama, &kQwen2, &kQwen3, &kQwen3Moe, &kQwen3Next, &kQwen3_5, &kQwen3_5Moe};
// Other names of the same graphs (Qwen3.5's text_config says qwen3_5_text).
const std::pair<const char*, const char*> kAliases[] = {
    {"mistral", "llama"}, {"qwen3_5_text", "qwen3_5"}, {"qwen3_5_moe_text", "qwen3_5_moe"}};
}  // namespace

const Architecture* find_architecture(const std::string& model_type) {
  std::string t = model_type;
  for (auto& [alias, real] : kAliases)
    if (t == alias) t = real;
  for (auto* a : kArchitectures)
    if (t == a->model_type) return a;
  return nullptr;
}

const Architecture* find_gguf_architecture(const std::string& gguf_arch) {
  for (auto* a : kArchitectures)
    if (a->gguf_arch && gguf_arch == a->gguf_arch) return a;
  return nullptr;
}

std::string supported_architectures() {
  std::string s;
  for (auto* a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a->model_type);
  s += ", mistral";
  return s;
}

namespace {

int get_int(const nlohmann::json& j, const char* key, const std::string& file, int def, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw Error(ErrorKind::BadModel, file + ": missing required key '" + key + "'");
    return def;
  }
  if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0 || j[key].get<int64_t>() > (int64_t(1) << 30))
    throw Error(ErrorKind::BadModel, file + ": key '" + key + "' must be a non-negative integer");
  return j[key].get<int>();
}

float get_float(const nlohmann::json& j, const char* key, const std::string& file, float def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number()) throw Error(ErrorKind::BadModel, file + ": key '" + key + "' must be a number");
  return j[key].get<float>();
}

void read_rope_scaling(const nlohmann::json& rs, const std::string& file, ModelConfig& c) {
  if (!rs.is_object()) return;
  std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
  if (type == "default" || type.empty()) return;
  RopeScaling& s = c.rope_scaling;
  s.type = type;
  s.factor = get_float(rs, "factor", file, 1.0f);
  s.low_freq_factor = get_float(rs, "low_freq_factor", file, 1.0f);
  s.high_freq_factor = get_float(rs, "high_freq_factor", file, 4.0f);
  s.original_max_position_embeddings = get_int(rs, "original_max_position_embeddings", file, 0, false);
  s.beta_fast = get_float(rs, "beta_fast", file, 32.0f);
  s.beta_slow = get_float(rs, "beta_slow", file, 1.0f);
  if (type != "linear" && type != "llama3" && type != "yarn")
    throw Error(ErrorKind::Unsupported, file + ": rope scaling type '" + type + "' is not supported (linear, llama3, yarn are)");
  if (s.factor <= 0) throw Error(ErrorKind::BadModel, file + ": rope scaling factor must be positive");
}

}  // namespace

void read_hf_common(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  c.hidden_size = get_int(j, "hidden_size", file, 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", file, 0, false);  // MoE-only models may omit it
  c.num_hidden_layers = get_int(j, "num_hidden_layers", file, 0, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", file, 0, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", file, c.num_attention_heads, false);
  c.vocab_size = get_int(j, "vocab_size", file, 0, true);
  c.head_dim = get_int(j, "head_dim", file, c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 0, false);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", file, 4096, false);
  c.rms_norm_eps = get_float(j, "rms_norm_eps", file, 1e-6f);
  c.rope_theta = get_float(j, "rope_theta", file, 10000.0f);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    c.rope_theta = get_float(rp, "rope_theta", file, c.rope_theta);
    read_rope_scaling(rp, file, c);
  }
  if (j.contains("rope_scaling")) read_rope_scaling(j["rope_scaling"], file, c);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_token_id = j["bos_token_id"].get<int32_t>();
  c.eos_token_ids.clear();
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int32_t>());
    else if (e.is_array())
      for (auto& x : e)
        if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int32_t>());
  }
  if (c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(ErrorKind::BadModel, file + ": num_attention_heads must be a positive multiple of num_key_value_heads");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024)
    throw Error(ErrorKind::BadModel, file + ": head_dim must be a positive even number");
  if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.vocab_size <= 0)
    throw Error(ErrorKind::BadModel, file + ": hidden_size, num_hidden_layers and vocab_size must be positive");
}

void read_hf_moe(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  MoeConfig& m = c.moe;
  m.num_experts = get_int(j, "num_experts", file, 0, true);
  m.experts_per_token = get_int(j, "num_experts_per_tok", file, 0, true);
  m.intermediate_size = get_int(j, "moe_intermediate_size", file, 0, true);
  m.shared_expert_intermediate_size = get_int(j, "shared_expert_intermediate_size", file, 0, false);
  m.norm_topk_prob = j.value("norm_topk_prob", false);
  if (m.num_experts <= 0 || m.experts_per_token <= 0 || m.experts_per_token > m.num_experts || m.intermediate_size <= 0)
    throw Error(ErrorKind::BadModel, file + ": num_experts, num_experts_per_tok (<= num_experts) and moe_intermediate_size must be positive");
  const int step = std::max(1, get_int(j, "decoder_sparse_step", file, 1, false));
  std::vector<int> dense;
  if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array())
    for (auto& x : j["mlp_only_layers"])
      if (x.is_number_integer()) dense.push_back(x.get<int>());
  c.moe_layers.assign(size_t(c.num_hidden_layers), 0);
  for (int l = 0; l < c.num_hidden_layers; ++l)
    c.moe_layers[size_t(l)] = (l + 1) % step == 0 && std::find(dense.begin(), dense.end(), l) == dense.end();
}

void read_hf_hybrid(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  LinearAttention& a = c.linear;
  a.num_key_heads = get_int(j, "linear_num_key_heads", file, 0, true);
  a.num_value_heads = get_int(j, "linear_num_value_heads", file, 0, true);
  a.key_head_dim = get_int(j, "linear_key_head_dim", file, 0, true);
  a.value_head_dim = get_int(j, "linear_value_head_dim", file, 0, true);
  a.conv_kernel = get_int(j, "linear_conv_kernel_dim", file, 4, false);
  if (a.num_key_heads <= 0 || a.num_value_heads <= 0 || a.num_value_heads % a.num_key_heads != 0 || a.key_head_dim <= 0 ||
      a.value_head_dim <= 0 || a.conv_kernel < 1 || a.conv_kernel > 64)
    throw Error(ErrorKind::BadModel, file + ": linear_num_value_heads must be a positive multiple of linear_num_key_heads, and the linear head dims and conv kernel positive");
  c.linear_layers.assign(size_t(c.num_hidden_layers), 0);
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    const auto& t = j["layer_types"];
    if (int(t.size()) != c.num_hidden_layers)
      throw Error(ErrorKind::BadModel, file + ": layer_types has " + std::to_string(t.size()) + " entries for " +
                                           std::to_string(c.num_hidden_layers) + " layers");
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      const std::string k = t[size_t(l)].is_string() ? t[size_t(l)].get<std::string>() : "";
      if (k != "linear_attention" && k != "full_attention")
        throw Error(ErrorKind::BadModel, file + ": layer_types[" + std::to_string(l) + "] must be linear_attention or full_attention");
      c.linear_layers[size_t(l)] = k == "linear_attention";
    }
  } else {
    const int interval = get_int(j, "full_attention_interval", file, 4, false);
    if (interval <= 0) throw Error(ErrorKind::BadModel, file + ": full_attention_interval must be positive");
    for (int l = 0; l < c.num_hidden_layers; ++l) c.linear_layers[size_t(l)] = (l + 1) % interval != 0;
  }
  float partial = get_float(j, "partial_rotary_factor", file, 1.0f);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    partial = get_float(j["rope_parameters"], "partial_rotary_factor", file, partial);
  if (!(partial > 0.0f && partial <= 1.0f)) throw Error(ErrorKind::BadModel, file + ": partial_rotary_factor must be in (0, 1]");
  c.rope_dims = int(float(c.head_dim) * partial);
  if (c.rope_dims < 2 || c.rope_dims % 2 != 0) throw Error(ErrorKind::BadModel, file + ": head_dim * partial_rotary_factor must be a positive even number");
  c.qk_norm = true;
  c.attn_output_gate = true;
  c.attention_bias = j.value("attention_bias", false);
}

namespace {
// A required GGUF integer in [1, max]; a clear error naming the key otherwise.
int gguf_positive(const formats::GgufFile& f, const std::string& key, int64_t max) {
  const int64_t v = f.get_int(key, -1);
  if (v <= 0 || v > max) throw Error(ErrorKind::BadModel, f.path() + ": missing or invalid metadata '" + key + "'");
  return int(v);
}
}  // namespace

void read_gguf_common(const formats::GgufFile& f, const std::string& a, ModelConfig& c) {
  auto need = [&](const std::string& key) { return gguf_positive(f, key, int64_t(1) << 30); };
  c.hidden_size = need(a + ".embedding_length");
  c.intermediate_size = int(std::clamp<int64_t>(f.get_int(a + ".feed_forward_length", 0), 0, int64_t(1) << 30));  // MoE files may omit it
  c.num_hidden_layers = need(a + ".block_count");
  c.num_attention_heads = need(a + ".attention.head_count");
  c.num_key_value_heads = int(f.get_int(a + ".attention.head_count_kv", c.num_attention_heads));
  c.head_dim = int(f.get_int(a + ".attention.key_length", c.hidden_size / c.num_attention_heads));
  c.max_position_embeddings = int(f.get_int(a + ".context_length", 4096));
  c.rms_norm_eps = float(f.get_float(a + ".attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = float(f.get_float(a + ".rope.freq_base", 10000.0));
  std::string st = f.get_string(a + ".rope.scaling.type", "none");
  if (st == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = float(f.get_float(a + ".rope.scaling.factor", 1.0));
  } else if (st == "yarn") {
    c.rope_scaling.type = "yarn";
    c.rope_scaling.factor = float(f.get_float(a + ".rope.scaling.factor", 1.0));
    c.rope_scaling.original_max_position_embeddings = int(f.get_int(a + ".rope.scaling.original_context_length", 0));
  }
  auto tokens = f.find("tokenizer.ggml.tokens");
  c.vocab_size = int(f.get_int(a + ".vocab_size", tokens ? int64_t(tokens->arr.size()) : 0));
  if (f.has("tokenizer.ggml.bos_token_id")) c.bos_token_id = int32_t(f.get_int("tokenizer.ggml.bos_token_id", 0));
  c.eos_token_ids.clear();
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (f.has(k)) {
      int32_t id = int32_t(f.get_int(k, 0));
      bool dup = false;
      for (auto e : c.eos_token_ids) dup |= e == id;
      if (!dup) c.eos_token_ids.push_back(id);
    }
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(ErrorKind::BadModel, f.path() + ": head_count must be a multiple of head_count_kv");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024)
    throw Error(ErrorKind::BadModel, f.path() + ": invalid attention.key_length");
}

}  // namespace optiq::model

namespace optiq::model {

void read_gguf_hybrid(const formats::GgufFile& f, const std::string& a, ModelConfig& c) {
  auto need = [&](const std::string& key) { return gguf_positive(f, a + key, int64_t(1) << 20); };
  // Multi-token-prediction blocks follow the trunk in llama.cpp's block count; they are not run.
  const int64_t mtp = f.get_int(a + ".nextn_predict_layers", 0);
  if (mtp < 0 || mtp >= c.num_hidden_layers) throw Error(ErrorKind::BadModel, f.path() + ": invalid '" + a + ".nextn_predict_layers'");
  c.num_hidden_layers -= int(mtp);
  LinearAttention& la = c.linear;
  la.num_key_heads = need(".ssm.group_count");
  la.num_value_heads = need(".ssm.time_step_rank");
  la.key_head_dim = need(".ssm.state_size");
  const int inner = need(".ssm.inner_size");
  la.conv_kernel = need(".ssm.conv_kernel");
  if (la.num_value_heads % la.num_key_heads != 0 || inner % la.num_value_heads != 0 || la.conv_kernel > 64)
    throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".ssm.time_step_rank must be a multiple of .ssm.group_count and divide .ssm.inner_size");
  la.value_head_dim = inner / la.num_value_heads;
  c.linear_layers.assign(size_t(c.num_hidden_layers), 0);
  if (f.has(a + ".attention.recurrent_layers")) {
    auto r = f.get_int_array(a + ".attention.recurrent_layers");
    if (int64_t(r.size()) < c.num_hidden_layers)
      throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".attention.recurrent_layers has " + std::to_string(r.size()) +
                                           " entries for " + std::to_string(c.num_hidden_layers) + " layers");
    for (int l = 0; l < c.num_hidden_layers; ++l) c.linear_layers[size_t(l)] = r[size_t(l)] != 0;
  } else {
    const int64_t interval = f.get_int(a + ".full_attention_interval", 4);
    if (interval <= 0) throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".full_attention_interval must be positive");
    for (int l = 0; l < c.num_hidden_layers; ++l) c.linear_layers[size_t(l)] = (l + 1) % interval != 0;
  }
  c.rope_dims = int(f.get_int(a + ".rope.dimension_count", c.head_dim / 4));
  if (c.rope_dims < 2 || c.rope_dims % 2 != 0 || c.rope_dims > c.head_dim)
    throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".rope.dimension_count must be an even number <= the head dim");
  c.qk_norm = true;
  c.attn_output_gate = true;
}

void read_gguf_moe(const formats::GgufFile& f, const std::string& a, ModelConfig& c) {
  MoeConfig& m = c.moe;
  m.num_experts = int(std::clamp<int64_t>(f.get_int(a + ".expert_count", 0), 0, 1 << 20));
  m.experts_per_token = int(std::clamp<int64_t>(f.get_int(a + ".expert_used_count", 0), 0, 1 << 20));
  m.intermediate_size = int(std::clamp<int64_t>(f.get_int(a + ".expert_feed_forward_length", 0), 0, 1 << 30));
  m.norm_topk_prob = true;
  if (m.num_experts <= 0 || m.experts_per_token <= 0 || m.experts_per_token > m.num_experts || m.intermediate_size <= 0)
    throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".expert_count, expert_used_count (<= expert_count) and expert_feed_forward_length must be positive");
  c.moe_layers.assign(size_t(c.num_hidden_layers), 0);
  bool shared = false;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    c.moe_layers[size_t(l)] = f.find_tensor(b + "ffn_gate_inp.weight") != nullptr;
    shared |= f.find_tensor(b + "ffn_gate_inp_shexp.weight") != nullptr;
  }
  if (shared) {
    m.shared_expert_intermediate_size =
        int(std::clamp<int64_t>(f.get_int(a + ".expert_shared_feed_forward_length", c.intermediate_size), 0, 1 << 30));
    if (m.shared_expert_intermediate_size <= 0)
      throw Error(ErrorKind::BadModel, f.path() + ": " + a + ".expert_shared_feed_forward_length must be positive");
  }
}

}  // namespace optiq::model
