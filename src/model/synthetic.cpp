#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/architecture.h"
#include "model/weight_source.h"
#include "quant/ggml_blocks.h"
#include "quant/mlx_affine.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::model {

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(double(next() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }  // [-1, 1)
};

struct Tensor {
  std::string name;             // HF name
  std::vector<int64_t> shape;   // row-major
  std::vector<float> values;
  bool is_linear = false;       // a 2-D weight matrix (quantizable)
  bool zero_centred = false;    // a hybrid's RMSNorm weight: raw HF stores w, applied as 1 + w
  bool keep_f32 = false;        // stored F32 whatever the format (A_log)
};

using Emit = std::function<void(Tensor&&)>;

// Hands tensors on one at a time, keeping the last one back so that its flags can still be set (back()):
// models of billions of weights are generated, converted and written without ever being whole in memory.
class TensorSink {
 public:
  explicit TensorSink(const Emit& emit) : emit_(emit) {}
  ~TensorSink() { flush(); }
  void push_back(Tensor&& t) {
    flush();
    pending_ = std::move(t);
    has_ = true;
  }
  Tensor& back() { return pending_; }
  void flush() {
    if (has_) emit_(std::move(pending_));
    has_ = false;
  }

 private:
  const Emit& emit_;
  Tensor pending_;
  bool has_ = false;
};

// Every tensor of the model in its HF name and shape, in a fixed order (the RNG is consumed in it).
void make_tensors(const SyntheticSpec& s, const Emit& emit) {
  Rng rng{s.seed * 0x100000001b3ull + 12345};
  TensorSink out(emit);
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols, float std_dev) {
    Tensor t{name, {rows, cols}, std::vector<float>(size_t(rows * cols)), true};
    const float a = std_dev * std::sqrt(3.0f);
    for (auto& v : t.values) v = a * rng.uniform();
    out.push_back(std::move(t));
  };
  auto vec = [&](const std::string& name, int64_t n, float center, float spread) {
    Tensor t{name, {n}, std::vector<float>(size_t(n)), false};
    for (auto& v : t.values) v = center + spread * rng.uniform();
    out.push_back(std::move(t));
  };
  const int64_t H = s.hidden_size, hd = s.head_dim, I = s.intermediate_size;
  const int64_t q_dim = int64_t(s.num_attention_heads) * hd, kv_dim = int64_t(s.num_key_value_heads) * hd;
  // A hybrid's norms are zero-centred (HF initialises them at 0 and applies 1 + w).
  const float norm_center = s.hybrid() ? 0.0f : 1.0f;
  auto norm = [&](const std::string& name, int64_t n) {
    vec(name, n, norm_center, 0.2f);
    out.back().zero_centred = s.hybrid();
  };
  mat("model.embed_tokens.weight", s.vocab_size, H, 1.0f);
  for (int il = 0; il < s.num_hidden_layers; ++il) {
    std::string p = "model.layers." + std::to_string(il) + ".";
    norm(p + "input_layernorm.weight", H);
    if (s.is_linear(il)) {
      const int64_t kd = int64_t(s.linear_num_key_heads) * s.linear_key_head_dim;
      const int64_t vd = int64_t(s.linear_num_value_heads) * s.linear_value_head_dim, Hv = s.linear_num_value_heads;
      const int64_t C = 2 * kd + vd;
      const std::string a = p + "linear_attn.";
      if (s.model_type == "qwen3_next") {
        mat(a + "in_proj_qkvz.weight", 2 * kd + 2 * vd, H, 1.0f / std::sqrt(float(H)));
        mat(a + "in_proj_ba.weight", 2 * Hv, H, 1.0f / std::sqrt(float(H)));
      } else {
        mat(a + "in_proj_qkv.weight", C, H, 1.0f / std::sqrt(float(H)));
        mat(a + "in_proj_z.weight", vd, H, 1.0f / std::sqrt(float(H)));
        mat(a + "in_proj_b.weight", Hv, H, 1.0f / std::sqrt(float(H)));
        mat(a + "in_proj_a.weight", Hv, H, 1.0f / std::sqrt(float(H)));
      }
      Tensor conv{a + "conv1d.weight", {C, 1, s.linear_conv_kernel}, std::vector<float>(size_t(C * s.linear_conv_kernel)), false};
      for (auto& v : conv.values) v = 0.5f * rng.uniform();
      out.push_back(std::move(conv));
      vec(a + "A_log", Hv, 0.5f, 0.5f);
      out.back().keep_f32 = true;
      vec(a + "dt_bias", Hv, 0.0f, 0.5f);
      vec(a + "norm.weight", s.linear_value_head_dim, 1.0f, 0.2f);
      mat(a + "out_proj.weight", H, vd, 1.0f / std::sqrt(float(vd)));
    } else {
      const int64_t q_rows = s.hybrid() ? 2 * q_dim : q_dim;
      mat(p + "self_attn.q_proj.weight", q_rows, H, 1.0f / std::sqrt(float(H)));
      mat(p + "self_attn.k_proj.weight", kv_dim, H, 1.0f / std::sqrt(float(H)));
      mat(p + "self_attn.v_proj.weight", kv_dim, H, 1.0f / std::sqrt(float(H)));
      if (s.model_type == "qwen2") {
        vec(p + "self_attn.q_proj.bias", q_dim, 0.0f, 0.2f);
        vec(p + "self_attn.k_proj.bias", kv_dim, 0.0f, 0.2f);
        vec(p + "self_attn.v_proj.bias", kv_dim, 0.0f, 0.2f);
      }
      if (s.model_type != "llama" && s.model_type != "qwen2") {
        norm(p + "self_attn.q_norm.weight", hd);
        norm(p + "self_attn.k_norm.weight", hd);
      }
      mat(p + "self_attn.o_proj.weight", H, q_dim, 1.0f / std::sqrt(float(q_dim)));
    }
    norm(p + "post_attention_layernorm.weight", H);
    if (s.is_moe(il)) {
      const int64_t E = s.num_experts, MI = s.moe_intermediate_size;
      mat(p + "mlp.gate.weight", E, H, 1.0f / std::sqrt(float(H)));
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
        mat(q + "gate_proj.weight", MI, H, 1.0f / std::sqrt(float(H)));
        mat(q + "up_proj.weight", MI, H, 1.0f / std::sqrt(float(H)));
        mat(q + "down_proj.weight", H, MI, 1.0f / std::sqrt(float(MI)));
      }
      if (s.shared_expert_intermediate_size > 0) {
        const int64_t SI = s.shared_expert_intermediate_size;
        mat(p + "mlp.shared_expert.gate_proj.weight", SI, H, 1.0f / std::sqrt(float(H)));
        mat(p + "mlp.shared_expert.up_proj.weight", SI, H, 1.0f / std::sqrt(float(H)));
        mat(p + "mlp.shared_expert.down_proj.weight", H, SI, 1.0f / std::sqrt(float(SI)));
        mat(p + "mlp.shared_expert_gate.weight", 1, H, 1.0f / std::sqrt(float(H)));
      }
    } else {
      mat(p + "mlp.gate_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
      mat(p + "mlp.up_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
      mat(p + "mlp.down_proj.weight", H, I, 1.0f / std::sqrt(float(I)));
    }
  }
  norm("model.norm.weight", H);
  if (!s.tie_word_embeddings) mat("lm_head.weight", s.vocab_size, H, 1.0f / std::sqrt(float(H)));
}

// Feeds a layout function (hf_layout, mlx_layout) whole units: one tensor, or all 3E tensors of a MoE
// layer's experts, which the layouts fuse or stack.
class LayoutStream {
 public:
  using Layout = std::vector<Tensor> (*)(const SyntheticSpec&, std::vector<Tensor>);
  LayoutStream(const SyntheticSpec& s, Layout layout, Emit out) : s_(s), layout_(layout), out_(std::move(out)) {}
  void operator()(Tensor&& t) {
    const bool expert = t.name.find(".mlp.experts.") != std::string::npos;
    if (!expert) return run({std::move(t)});
    unit_.push_back(std::move(t));
    if (int(unit_.size()) == 3 * s_.num_experts) run(std::move(unit_)), unit_.clear();
  }

 private:
  void run(std::vector<Tensor> ts) {
    for (Tensor& t : layout_(s_, std::move(ts))) out_(std::move(t));
  }
  const SyntheticSpec& s_;
  Layout layout_;
  Emit out_;
  std::vector<Tensor> unit_;
};

// One MoE layer's experts, given as the 3E tensors experts.{e}.{gate,up,down}_proj in generation order
// (`first` is ts[i], already moved out), stacked: for each expert e in turn, the values of its parts
// `which` (0 gate, 1 up, 2 down).
std::vector<float> stack_experts(const Tensor& first, const std::vector<Tensor>& ts, size_t i, int64_t E,
                                 std::initializer_list<int> which) {
  std::vector<float> out;
  for (int64_t e = 0; e < E; ++e)
    for (int w : which) {
      const size_t k = size_t(3 * e + w);
      const std::vector<float>& v = k == 0 ? first.values : ts[i + k].values;
      out.insert(out.end(), v.begin(), v.end());
    }
  return out;
}

// The raw HF layout of a model's tensors: Qwen3.5's VLM names, fused experts for Qwen3.5-MoE.
std::vector<Tensor> hf_layout(const SyntheticSpec& s, std::vector<Tensor> ts) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < ts.size(); ++i) {
    Tensor t = std::move(ts[i]);
    const size_t ex = t.name.find(".mlp.experts.0.gate_proj.weight");
    if (s.model_type == "qwen3_5_moe" && ex != std::string::npos) {
      // experts.{e}.{gate,up,down}_proj -> experts.gate_up_proj [E, 2I, H] and experts.down_proj [E, H, I].
      const std::string p = t.name.substr(0, ex) + ".mlp.experts.";
      const int64_t E = s.num_experts, MI = s.moe_intermediate_size, H = s.hidden_size;
      Tensor gu{p + "gate_up_proj", {E, 2 * MI, H}, {}, true}, dn{p + "down_proj", {E, H, MI}, {}, true};
      gu.values = stack_experts(t, ts, i, E, {0, 1});
      dn.values = stack_experts(t, ts, i, E, {2});
      out.push_back(std::move(gu));
      out.push_back(std::move(dn));
      i += size_t(3 * E - 1);
      continue;
    }
    if (s.vlm() && t.name.rfind("model.", 0) == 0) t.name = "model.language_model." + t.name.substr(6);
    out.push_back(std::move(t));
  }
  return out;
}

// What a real raw HF hybrid checkpoint carries besides the language model (skipped on load).
std::vector<Tensor> hf_extras(const SyntheticSpec& s) {
  std::vector<Tensor> out;
  if (!s.hybrid()) return out;
  if (s.vlm()) out.push_back(Tensor{"model.visual.patch_embed.proj.weight", {8, 8}, std::vector<float>(64, 0.5f), false});
  out.push_back(Tensor{"mtp.fc.weight", {8, 8}, std::vector<float>(64, 0.25f), false});
  return out;
}

// What mlx-lm's and llama.cpp's converters both do: norms shifted to 1 + w, conv1d [C, K, 1], experts
// stacked [E, out, in] (MLX's switch_mlp, llama.cpp's ffn_*_exps, by the same names here).
std::vector<Tensor> shifted_stacked(const SyntheticSpec& s, std::vector<Tensor> ts) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < ts.size(); ++i) {
    Tensor t = std::move(ts[i]);
    if (t.zero_centred) {
      for (auto& v : t.values) v += 1.0f;
      t.zero_centred = false;
    }
    if (t.name.find("conv1d.weight") != std::string::npos) t.shape = {t.shape[0], t.shape[2], 1};
    const size_t ex = t.name.find(".mlp.experts.0.gate_proj.weight");
    if (ex != std::string::npos) {
      const std::string p = t.name.substr(0, ex) + ".mlp.switch_mlp.";
      const int64_t E = s.num_experts, MI = s.moe_intermediate_size, H = s.hidden_size;
      Tensor g{p + "gate_proj.weight", {E, MI, H}, {}, true}, u{p + "up_proj.weight", {E, MI, H}, {}, true},
          d{p + "down_proj.weight", {E, H, MI}, {}, true};
      g.values = stack_experts(t, ts, i, E, {0});
      u.values = stack_experts(t, ts, i, E, {1});
      d.values = stack_experts(t, ts, i, E, {2});
      for (Tensor* x : {&g, &u, &d}) out.push_back(std::move(*x));
      i += size_t(3 * E - 1);
      continue;
    }
    out.push_back(std::move(t));
  }
  return out;
}

// mlx-lm's converted layout: shifted_stacked, with Qwen3.5's language model under language_model.
std::vector<Tensor> mlx_layout(const SyntheticSpec& s, std::vector<Tensor> ts) {
  std::vector<Tensor> out = shifted_stacked(s, std::move(ts));
  if (s.vlm())
    for (Tensor& t : out) {
      if (t.name.rfind("model.", 0) == 0) t.name = "language_model.model." + t.name.substr(6);
      else if (t.name == "lm_head.weight") t.name = "language_model.lm_head.weight";
    }
  return out;
}

// llama.cpp's converter for the hybrids (its qwen3next / qwen35 / qwen35moe), on top of shifted_stacked:
// conv1d [C, K]; A_log stored as ssm_a = -exp(A_log); Qwen3-Next's in_proj_qkvz split into [q | k | v] (all
// heads) and z; and for Qwen3.5 with fewer key than value heads, every value-head dimension reordered from
// HF's grouping (head g*r + j for key head g) to tiling (position j*n_k + g).
std::vector<Tensor> gguf_layout(const SyntheticSpec& s, std::vector<Tensor> ts) {
  std::vector<Tensor> out = shifted_stacked(s, std::move(ts));
  if (!s.hybrid()) return out;
  const int64_t nk = s.linear_num_key_heads, r = s.linear_num_value_heads / nk, Dk = s.linear_key_head_dim,
                Dv = s.linear_value_head_dim, kd = nk * Dk, vd = nk * r * Dv;
  const bool tile = s.vlm() && r > 1;
  // Moves the value-head blocks of `hd` rows starting at row `first` (of `cols` values each) to tiled order.
  auto tile_rows = [&](Tensor& t, int64_t first, int64_t hd, int64_t cols) {
    if (!tile) return;
    std::vector<float> v = t.values;
    for (int64_t g = 0; g < nk; ++g)
      for (int64_t j = 0; j < r; ++j)
        std::memcpy(&v[size_t((first + (j * nk + g) * hd) * cols)], &t.values[size_t((first + (g * r + j) * hd) * cols)],
                    size_t(hd * cols) * 4);
    t.values = std::move(v);
  };
  auto ends = [](const Tensor& t, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return t.name.size() >= n && t.name.compare(t.name.size() - n, n, suffix) == 0;
  };
  std::vector<Tensor> res;
  for (Tensor& t : out) {
    if (ends(t, "conv1d.weight")) {
      t.shape = {t.shape[0], t.shape[1]};
      tile_rows(t, 2 * kd, Dv, t.shape[1]);
    } else if (ends(t, "linear_attn.A_log")) {
      t.name = t.name.substr(0, t.name.size() - 5) + "ssm_a";
      for (auto& v : t.values) v = -std::exp(v);
      tile_rows(t, 0, 1, 1);
    } else if (ends(t, "linear_attn.dt_bias") || ends(t, "in_proj_b.weight") || ends(t, "in_proj_a.weight")) {
      tile_rows(t, 0, 1, t.shape.size() > 1 ? t.shape[1] : 1);
    } else if (ends(t, "in_proj_qkv.weight")) {
      tile_rows(t, 2 * kd, Dv, t.shape[1]);
    } else if (ends(t, "in_proj_z.weight")) {
      tile_rows(t, 0, Dv, t.shape[1]);
    } else if (ends(t, "out_proj.weight")) {  // value heads are its columns
      if (tile) {
        const int64_t rows = t.shape[0];
        std::vector<float> v = t.values;
        for (int64_t row = 0; row < rows; ++row)
          for (int64_t g = 0; g < nk; ++g)
            for (int64_t j = 0; j < r; ++j)
              std::memcpy(&v[size_t(row * vd + (j * nk + g) * Dv)], &t.values[size_t(row * vd + (g * r + j) * Dv)], size_t(Dv) * 4);
        t.values = std::move(v);
      }
    } else if (ends(t, "in_proj_qkvz.weight")) {  // per key head [q | k | v (r heads) | z (r heads)]
      const int64_t H = t.shape[1], group = 2 * Dk + 2 * r * Dv;
      const std::string base = t.name.substr(0, t.name.size() - std::strlen("in_proj_qkvz.weight"));
      Tensor qkv{base + "in_proj_qkv.weight", {2 * kd + vd, H}, std::vector<float>(size_t((2 * kd + vd) * H)), true};
      Tensor z{base + "in_proj_z.weight", {vd, H}, std::vector<float>(size_t(vd * H)), true};
      auto rows = [&](std::vector<float>& dst, int64_t to, int64_t from, int64_t n) {
        std::memcpy(&dst[size_t(to * H)], &t.values[size_t(from * H)], size_t(n * H) * 4);
      };
      for (int64_t g = 0; g < nk; ++g) {
        rows(qkv.values, g * Dk, g * group, Dk);
        rows(qkv.values, kd + g * Dk, g * group + Dk, Dk);
        rows(qkv.values, 2 * kd + g * r * Dv, g * group + 2 * Dk, r * Dv);
        rows(z.values, g * r * Dv, g * group + 2 * Dk + r * Dv, r * Dv);
      }
      res.push_back(std::move(qkv));
      res.push_back(std::move(z));
      continue;
    }
    res.push_back(std::move(t));
  }
  return res;
}

std::vector<uint8_t> to_bytes(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> b(v.size() * size_t(dtype_block_bytes(t)));
  if (t == DType::F32) {
    std::memcpy(b.data(), v.data(), b.size());
  } else {
    auto* p = reinterpret_cast<uint16_t*>(b.data());
    for (size_t i = 0; i < v.size(); ++i) p[i] = t == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
  }
  return b;
}

const char* hf_architecture(const std::string& t) {
  if (t == "llama") return "LlamaForCausalLM";
  if (t == "qwen2") return "Qwen2ForCausalLM";
  if (t == "qwen3") return "Qwen3ForCausalLM";
  if (t == "qwen3_moe") return "Qwen3MoeForCausalLM";
  if (t == "qwen3_next") return "Qwen3NextForCausalLM";
  if (t == "qwen3_5") return "Qwen3_5ForConditionalGeneration";
  return "Qwen3_5MoeForConditionalGeneration";
}

nlohmann::ordered_json hf_config(const SyntheticSpec& s) {
  nlohmann::ordered_json c = {
      {"architectures", {hf_architecture(s.model_type)}},
      {"model_type", s.vlm() ? s.model_type + "_text" : s.model_type},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"num_hidden_layers", s.num_hidden_layers},
      {"num_attention_heads", s.num_attention_heads},
      {"num_key_value_heads", s.num_key_value_heads},
      {"head_dim", s.head_dim},
      {"vocab_size", s.vocab_size},
      {"max_position_embeddings", 40960},
      {"rms_norm_eps", s.rms_norm_eps},
      {"rope_theta", s.rope_theta},
      {"tie_word_embeddings", s.tie_word_embeddings},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "bfloat16"},
  };
  if (s.llama3_rope)
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  if (s.hybrid()) {
    c["full_attention_interval"] = s.full_attention_interval;
    c["linear_num_key_heads"] = s.linear_num_key_heads;
    c["linear_num_value_heads"] = s.linear_num_value_heads;
    c["linear_key_head_dim"] = s.linear_key_head_dim;
    c["linear_value_head_dim"] = s.linear_value_head_dim;
    c["linear_conv_kernel_dim"] = s.linear_conv_kernel;
    if (s.vlm()) {  // transformers v5 style: layer_types and rope_parameters
      std::vector<std::string> types;
      for (int l = 0; l < s.num_hidden_layers; ++l) types.push_back(s.is_linear(l) ? "linear_attention" : "full_attention");
      c["layer_types"] = types;
      c.erase("rope_theta");
      c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", s.rope_theta},
                              {"partial_rotary_factor", s.partial_rotary_factor}, {"mrope_section", {2, 1, 1}}};
    } else {
      c["partial_rotary_factor"] = s.partial_rotary_factor;
    }
  }
  if (s.moe()) {
    c["num_experts"] = s.num_experts;
    c["num_experts_per_tok"] = s.num_experts_per_tok;
    c["moe_intermediate_size"] = s.moe_intermediate_size;
    if (s.shared_expert_intermediate_size) c["shared_expert_intermediate_size"] = s.shared_expert_intermediate_size;
    c["norm_topk_prob"] = s.norm_topk_prob;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = s.mlp_only_layers;
  }
  if (!s.vlm()) return c;
  nlohmann::ordered_json w = {{"architectures", {hf_architecture(s.model_type)}},
                              {"model_type", s.model_type},
                              {"text_config", c},
                              {"vision_config", {{"depth", 1}, {"hidden_size", 8}}},
                              {"tie_word_embeddings", s.tie_word_embeddings}};
  w["text_config"].erase("architectures");
  return w;
}

void write_folder(const SyntheticSpec& s, const std::string& format, int gs, const std::string& dir) {
  std::filesystem::create_directories(dir);
  formats::SafetensorsWriter w;
  nlohmann::ordered_json cfg = hf_config(s);
  int bits = 0;
  if (format.rfind("mlx", 0) == 0) {
    bits = std::atoi(format.c_str() + 3);
    if (!quant::mlx_bits_supported(bits) || !quant::mlx_group_size_supported(gs))
      throw Error(ErrorKind::InvalidArgument, "unsupported MLX format '" + format + "' / group size " + std::to_string(gs));
    cfg["quantization"] = {{"group_size", gs}, {"bits", bits}, {"mode", "affine"}};
    cfg["quantization_config"] = cfg["quantization"];
    w.set_metadata("format", "mlx");
  } else if (format != "f32" && format != "f16" && format != "bf16") {
    throw Error(ErrorKind::InvalidArgument, "unknown model format '" + format + "'");
  }
  DType plain = format == "f32" ? DType::F32 : format == "f16" ? DType::F16 : DType::BF16;
  auto add = [&](Tensor&& t) {
    const int64_t cols = t.shape.back();
    if (bits && t.is_linear && cols % gs == 0) {  // mlx-lm quantizes a module iff its in-dim divides by gs
      int64_t rows = 1;
      for (size_t i = 0; i + 1 < t.shape.size(); ++i) rows *= t.shape[i];
      std::vector<uint8_t> packed(size_t(rows) * quant::mlx_packed_bytes(cols, bits));
      std::vector<float> scales(size_t(rows * cols / gs)), biases(scales.size());
      quant::quantize_matrix(t.values.data(), rows, cols, bits, gs, packed.data(), scales.data(), biases.data());
      std::string mod = t.name.substr(0, t.name.size() - 7);  // strip ".weight"
      std::vector<int64_t> ws = t.shape, ps = t.shape;
      ws.back() = cols * bits / 32;
      ps.back() = cols / gs;
      w.add(t.name, DType::U32, ws, std::move(packed));
      w.add(mod + ".scales", DType::BF16, ps, to_bytes(scales, DType::BF16));
      w.add(mod + ".biases", DType::BF16, ps, to_bytes(biases, DType::BF16));
    } else {
      const DType dt = t.keep_f32 ? DType::F32 : bits ? DType::BF16 : plain;
      w.add(t.name, dt, t.shape, to_bytes(t.values, dt));
    }
  };
  {
    LayoutStream stream(s, bits ? mlx_layout : hf_layout, add);
    make_tensors(s, std::ref(stream));
  }
  if (!bits)
    for (Tensor& t : hf_extras(s)) add(std::move(t));
  w.write(dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << cfg.dump(2) << "\n";
}

// llama.cpp permutes llama Q/K rows so that interleaved RoPE applies: within each head, HF row
// j*(d/2)+i (j in {0,1}) becomes row 2i+j.
std::vector<float> permute_qk(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t head_dim) {
  std::vector<float> out(w.size());
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t h = r / head_dim, within = r % head_dim, j = within / half, i = within % half;
    int64_t dst = h * head_dim + 2 * i + j;
    std::memcpy(&out[size_t(dst * cols)], &w[size_t(r * cols)], size_t(cols) * 4);
  }
  return out;
}

std::vector<uint8_t> gguf_quantize(const std::vector<float>& v, int64_t rows, int64_t cols, DType t) {
  std::vector<uint8_t> b(size_t(rows) * dtype_row_bytes(t, cols));
  const size_t rb = dtype_row_bytes(t, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = &v[size_t(r * cols)];
    uint8_t* y = &b[size_t(r) * rb];
    switch (t) {
      case DType::Q8_0: quant::quantize_row_q8_0(x, reinterpret_cast<quant::BlockQ8_0*>(y), cols); break;
      case DType::Q4_0: quant::quantize_row_q4_0(x, reinterpret_cast<quant::BlockQ4_0*>(y), cols); break;
      case DType::Q4_1: quant::quantize_row_q4_1(x, reinterpret_cast<quant::BlockQ4_1*>(y), cols); break;
      case DType::Q4_K: quant::quantize_row_q4_k(x, reinterpret_cast<quant::BlockQ4_K*>(y), cols); break;
      case DType::Q6_K: quant::quantize_row_q6_k(x, reinterpret_cast<quant::BlockQ6_K*>(y), cols); break;
      default: OPTIQ_CHECK(false, "not a block type");
    }
  }
  return b;
}

std::string gguf_name(const std::string& hf) {
  std::string g = gguf_name_from_hf(hf);
  OPTIQ_CHECK(g != hf, "no GGUF name for " + hf);
  return g;
}

void write_gguf(const SyntheticSpec& s, const std::string& format, const std::string& path) {
  DType wt;
  if (format == "gguf-f32") wt = DType::F32;
  else if (format == "gguf-f16") wt = DType::F16;
  else if (format == "gguf-q8_0") wt = DType::Q8_0;
  else if (format == "gguf-q4_0") wt = DType::Q4_0;
  else if (format == "gguf-q4_1") wt = DType::Q4_1;
  else if (format == "gguf-q4_k") wt = DType::Q4_K;
  else if (format == "gguf-q6_k") wt = DType::Q6_K;
  else throw Error(ErrorKind::InvalidArgument, "unknown model format '" + format + "'");
  const std::string a = s.model_type;
  const std::string ga = find_architecture(a)->gguf_arch;  // llama.cpp's architecture name
  formats::GgufWriter w;
  w.set_string("general.architecture", ga);
  w.set_string("general.name", "optiq synthetic " + a);
  w.set_u32("general.quantization_version", 2);
  w.set_u32(ga + ".context_length", 40960);
  w.set_u32(ga + ".embedding_length", uint32_t(s.hidden_size));
  w.set_u32(ga + ".block_count", uint32_t(s.num_hidden_layers));
  w.set_u32(ga + ".feed_forward_length", uint32_t(s.intermediate_size));
  w.set_u32(ga + ".attention.head_count", uint32_t(s.num_attention_heads));
  w.set_u32(ga + ".attention.head_count_kv", uint32_t(s.num_key_value_heads));
  w.set_u32(ga + ".attention.key_length", uint32_t(s.head_dim));
  w.set_u32(ga + ".attention.value_length", uint32_t(s.head_dim));
  const int rope_dims = s.hybrid() ? int(float(s.head_dim) * s.partial_rotary_factor) : s.head_dim;
  w.set_u32(ga + ".rope.dimension_count", uint32_t(rope_dims));
  w.set_f32(ga + ".rope.freq_base", s.rope_theta);
  w.set_f32(ga + ".attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  w.set_u32(ga + ".vocab_size", uint32_t(s.vocab_size));
  if (s.moe()) {
    w.set_u32(ga + ".expert_count", uint32_t(s.num_experts));
    w.set_u32(ga + ".expert_used_count", uint32_t(s.num_experts_per_tok));
    w.set_u32(ga + ".expert_feed_forward_length", uint32_t(s.moe_intermediate_size));
    if (s.shared_expert_intermediate_size)
      w.set_u32(ga + ".expert_shared_feed_forward_length", uint32_t(s.shared_expert_intermediate_size));
  }
  if (s.hybrid()) {
    w.set_u32(ga + ".ssm.conv_kernel", uint32_t(s.linear_conv_kernel));
    w.set_u32(ga + ".ssm.state_size", uint32_t(s.linear_key_head_dim));
    w.set_u32(ga + ".ssm.group_count", uint32_t(s.linear_num_key_heads));
    w.set_u32(ga + ".ssm.time_step_rank", uint32_t(s.linear_num_value_heads));
    w.set_u32(ga + ".ssm.inner_size", uint32_t(s.linear_num_value_heads * s.linear_value_head_dim));
    w.set_u32(ga + ".full_attention_interval", uint32_t(s.full_attention_interval));
    if (s.vlm()) {  // llama.cpp requires Qwen3.5's M-RoPE sections (text positions make them plain RoPE)
      const int pairs = rope_dims / 2;
      w.set_i32_array(ga + ".rope.dimension_sections", {pairs / 3, pairs / 3, pairs - 2 * (pairs / 3), 0});
    }
  }
  // A placeholder SentencePiece-style vocabulary so that other GGUF readers (llama.cpp) load the file.
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int i = 0; i < s.vocab_size; ++i) {
    if (i == 0) tokens.push_back("<unk>"), types.push_back(2);
    else if (i == 1) tokens.push_back("<s>"), types.push_back(3);
    else if (i == 2) tokens.push_back("</s>"), types.push_back(3);
    else tokens.push_back("\xe2\x96\x81t" + std::to_string(i)), types.push_back(1);
    scores.push_back(-float(i));
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  LayoutStream stream(s, gguf_layout, [&](Tensor&& t) {
    std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    std::string name = gguf_name(t.name);
    if (s.hybrid() && name.find(".ffn_norm.") != std::string::npos)  // llama.cpp's name for the hybrids
      name.replace(name.find(".ffn_norm."), 10, ".post_attention_norm.");
    if (!t.is_linear) {
      w.add_tensor(name, DType::F32, ne, to_bytes(t.values, DType::F32));
      return;
    }
    const int64_t cols = t.shape.back();
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < t.shape.size(); ++i) rows *= t.shape[i];
    std::vector<float> v = std::move(t.values);
    if (a == "llama" && (t.name.find("q_proj") != std::string::npos || t.name.find("k_proj") != std::string::npos))
      v = permute_qk(v, rows, cols, s.head_dim);
    DType ty = wt;
    if (cols % dtype_block_elems(ty) != 0) ty = DType::F16;  // rows that do not fill whole blocks
    std::vector<uint8_t> bytes = (ty == DType::F32 || ty == DType::F16) ? to_bytes(v, ty) : gguf_quantize(v, rows, cols, ty);
    w.add_tensor(name, ty, ne, std::move(bytes));
  });
  make_tensors(s, std::ref(stream));
  w.write(path);
}

}  // namespace

bool SyntheticSpec::is_moe(int l) const {
  return moe() && std::find(mlp_only_layers.begin(), mlp_only_layers.end(), l) == mlp_only_layers.end();
}

SyntheticSpec synthetic_shape(const std::string& name) {
  SyntheticSpec s;
  if (name == "qwen3-0.6b") {
    s.model_type = "qwen3";
    s.hidden_size = 1024, s.intermediate_size = 3072, s.num_hidden_layers = 28;
    s.num_attention_heads = 16, s.num_key_value_heads = 8, s.head_dim = 128;
    s.vocab_size = 151936, s.tie_word_embeddings = true, s.rope_theta = 1e6f, s.rms_norm_eps = 1e-6f;
  } else if (name == "llama-3.2-1b") {
    s.model_type = "llama";
    s.hidden_size = 2048, s.intermediate_size = 8192, s.num_hidden_layers = 16;
    s.num_attention_heads = 32, s.num_key_value_heads = 8, s.head_dim = 64;
    s.vocab_size = 128256, s.tie_word_embeddings = true, s.rope_theta = 500000.0f, s.llama3_rope = true;
  } else if (name == "qwen3.5-9b") {  // Qwen3.5-9B's text model
    s.model_type = "qwen3_5";
    s.hidden_size = 4096, s.intermediate_size = 12288, s.num_hidden_layers = 32;
    s.num_attention_heads = 16, s.num_key_value_heads = 4, s.head_dim = 256;
    s.vocab_size = 248320, s.rope_theta = 1e7f, s.rms_norm_eps = 1e-6f, s.full_attention_interval = 4;
    s.linear_num_key_heads = 16, s.linear_num_value_heads = 32, s.linear_key_head_dim = 128, s.linear_value_head_dim = 128;
  } else if (name == "qwen3-30b-a3b") {
    s.model_type = "qwen3_moe";
    s.hidden_size = 2048, s.intermediate_size = 6144, s.num_hidden_layers = 48;
    s.num_attention_heads = 32, s.num_key_value_heads = 4, s.head_dim = 128;
    s.vocab_size = 151936, s.rope_theta = 1e6f, s.rms_norm_eps = 1e-6f;
    s.num_experts = 128, s.num_experts_per_tok = 8, s.moe_intermediate_size = 768, s.norm_topk_prob = true;
  } else if (name == "tiny-llama" || name == "tiny-qwen2" || name == "tiny-qwen3" || name == "tiny-qwen3_moe" ||
             name == "tiny-qwen3_5" || name == "tiny-qwen3_next" || name == "tiny-qwen3_5_moe") {
    s.model_type = name.substr(5);
    if (s.model_type != "llama" && s.model_type != "qwen2" && s.model_type != "qwen3") s.rms_norm_eps = 1e-6f;
    if (s.model_type == "qwen3_next" || s.model_type == "qwen3_5_moe") {
      s.shared_expert_intermediate_size = 128;
      s.norm_topk_prob = true;
    }
    if (s.model_type == "qwen3_next") s.mlp_only_layers = {0};
    if (s.hybrid()) s.num_hidden_layers = 4;
  } else {
    throw Error(ErrorKind::InvalidArgument, "unknown model shape '" + name +
                                                "' (known: qwen3-0.6b, llama-3.2-1b, qwen3.5-9b, qwen3-30b-a3b, tiny-llama, tiny-qwen2, "
                                                "tiny-qwen3, tiny-qwen3_moe, tiny-qwen3_5, tiny-qwen3_next, tiny-qwen3_5_moe)");
  }
  return s;
}

void write_synthetic_model(const SyntheticSpec& spec, const std::string& format, const std::string& out_path, int group_size) {
  if (format.rfind("gguf-", 0) == 0) write_gguf(spec, format, out_path);
  else write_folder(spec, format, group_size, out_path);
}

}  // namespace optiq::model
