#include "model/weight_source.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace optiq::model {

using formats::TensorRef;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

Error bad_tensor(const TensorRef& t, const std::string& what) {
  return Error(ErrorKind::BadModel, t.file + ": tensor '" + t.name + "' " + what);
}

}  // namespace

std::unique_ptr<WeightSource> WeightSource::from_folder(const std::string& dir) {
  auto ws = std::make_unique<WeightSource>();
  ws->origin_ = dir;
  std::vector<std::string> shards;
  std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(index)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(index));
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::BadModel, index + ": not valid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorKind::BadModel, index + ": no weight_map object");
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw Error(ErrorKind::BadModel, index + ": weight_map entry '" + name + "' is not a file name");
      std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw Error(ErrorKind::BadModel, index + ": weight_map names a file outside the folder: " + f);
      if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
    }
  } else {
    DIR* d = opendir(dir.c_str());
    if (!d) throw Error(ErrorKind::NotFound, dir + ": cannot open model folder");
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind("model", 0) == 0 && n.size() > 12 && n.substr(n.size() - 12) == ".safetensors") shards.push_back(n);
    }
    closedir(d);
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) throw Error(ErrorKind::NotFound, dir + ": no model*.safetensors files (and no GGUF given)");
  for (auto& s : shards) {
    auto f = std::make_unique<formats::SafetensorsFile>(dir + "/" + s);
    for (auto& [name, t] : f->tensors()) {
      const std::string n = lm_tensor_name(name);  // VLM / MLX wrappers stripped; vision and MTP skipped
      if (!n.empty()) ws->tensors_[n] = t;
    }
    ws->files_.push_back(std::move(f));
  }
  return ws;
}

namespace {
// GGUF <-> HF tensor names: whole names, and per-layer module names ("blk.N.<gguf>" <-> "model.layers.N.<hf>").
const std::pair<const char*, const char*> kTopLevelNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
const std::pair<const char*, const char*> kLayerModuleNames[] = {
    {"attn_norm", "input_layernorm"},       {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},         {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},         {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"},    {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},          {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"ffn_gate_inp", "mlp.gate"},  // MoE router, and the experts stacked [E, out, in] as MLX's switch_mlp
    {"ffn_gate_exps", "mlp.switch_mlp.gate_proj"}, {"ffn_up_exps", "mlp.switch_mlp.up_proj"},
    {"ffn_down_exps", "mlp.switch_mlp.down_proj"},
    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"},  {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},     {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
    // The hybrids (llama.cpp's qwen3next / qwen35 / qwen35moe): DeltaNet layers, and the norm after attention.
    {"post_attention_norm", "post_attention_layernorm"},
    {"attn_qkv", "linear_attn.in_proj_qkv"},       {"attn_gate", "linear_attn.in_proj_z"},
    {"ssm_beta", "linear_attn.in_proj_b"},         {"ssm_alpha", "linear_attn.in_proj_a"},
    {"ssm_ba", "linear_attn.in_proj_ba"},          {"ssm_conv1d", "linear_attn.conv1d"},
    {"ssm_norm", "linear_attn.norm"},              {"ssm_out", "linear_attn.out_proj"},
};
// Per-layer tensors named whole. ssm_a holds -exp(A_log), so it keeps a name of its own (the decoder reads
// either); ssm_dt.bias is HF's dt_bias.
const std::pair<const char*, const char*> kLayerTensorNames[] = {
    {"ssm_a", "linear_attn.ssm_a"},
    {"ssm_dt.bias", "linear_attn.dt_bias"},
};

// Maps `name` from one naming to the other; `to_hf` picks the direction. Unknown names come back unchanged.
std::string map_tensor_name(const std::string& name, bool to_hf) {
  for (auto& [g, h] : kTopLevelNames)
    if (name == (to_hf ? g : h)) return to_hf ? h : g;
  const std::string from_prefix = to_hf ? "blk." : "model.layers.", to_prefix = to_hf ? "model.layers." : "blk.";
  if (name.rfind(from_prefix, 0) != 0) return name;
  size_t dot = name.find('.', from_prefix.size());
  if (dot == std::string::npos) return name;
  std::string layer = name.substr(from_prefix.size(), dot - from_prefix.size());
  std::string rest = name.substr(dot + 1);
  for (auto& [g, h] : kLayerTensorNames)
    if (rest == (to_hf ? g : h)) return to_prefix + layer + "." + (to_hf ? h : g);
  size_t d2 = rest.rfind('.');
  std::string base = rest.substr(0, d2), suffix = d2 == std::string::npos ? "" : rest.substr(d2);
  for (auto& [g, h] : kLayerModuleNames)
    if (base == (to_hf ? g : h)) return to_prefix + layer + "." + (to_hf ? h : g) + suffix;
  return name;
}
}  // namespace

std::string hf_name_from_gguf(const std::string& gguf_name) { return map_tensor_name(gguf_name, true); }
std::string gguf_name_from_hf(const std::string& hf_name) { return map_tensor_name(hf_name, false); }

std::unique_ptr<WeightSource> WeightSource::from_gguf(std::shared_ptr<formats::GgufFile> gguf) {
  auto ws = std::make_unique<WeightSource>();
  ws->origin_ = gguf->path();
  for (auto& gt : gguf->tensors()) {
    TensorRef t;
    t.name = hf_name_from_gguf(gt.name);
    t.file = gguf->path();
    t.dtype = gt.dtype;
    t.dtype_name = t.dtype == DType::Unknown ? "ggml type " + std::to_string(gt.ggml_type) : dtype_name(gt.dtype);
    t.shape.assign(gt.ne.rbegin(), gt.ne.rend());
    t.data = gt.data;
    t.nbytes = size_t(gt.nbytes);
    ws->tensors_[t.name] = std::move(t);
  }
  ws->gguf_ = std::move(gguf);
  return ws;
}

const TensorRef* WeightSource::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorRef& WeightSource::get(const std::string& name) const {
  auto* t = find(name);
  if (!t) throw Error(ErrorKind::BadModel, describe() + ": missing tensor '" + name + "'");
  return *t;
}

std::string WeightSource::describe() const { return origin_; }

void WeightSource::set_mlx_quantization(MlxQuantParams defaults, std::map<std::string, MlxQuantParams> overrides) {
  mlx_default_ = defaults;
  mlx_overrides_.clear();
  for (auto& [k, v] : overrides)
    if (std::string n = lm_tensor_name(k); !n.empty()) mlx_overrides_[n] = v;
}

std::vector<float> WeightSource::vector_f32(const std::string& name, int64_t n) const {
  const TensorRef& t = get(name);
  if (t.numel() != n) throw bad_tensor(t, "has shape " + shape_str(t.shape) + ", expected " + std::to_string(n) + " values");
  std::vector<float> out;
  if (!t.to_f32(out)) throw bad_tensor(t, std::string("has dtype ") + t.dtype_name + ", expected F32, F16 or BF16");
  return out;
}

size_t WeightSource::release(const uint8_t* p, size_t n) const {
  for (const auto& f : files_)
    if (size_t got = f->file().release(p, n)) return got;
  return gguf_ ? gguf_->file().release(p, n) : 0;
}

kernels::WeightView WeightSource::linear(const std::string& module, int64_t out, int64_t in) const {
  return matrix(module, module + ".weight", 0, out, in);
}

kernels::WeightView WeightSource::stacked(const std::string& module, const std::string& tensor, int64_t n, int64_t out,
                                          int64_t in) const {
  return matrix(module, tensor, n, out, in);
}

kernels::WeightView WeightSource::matrix(const std::string& module, const std::string& tensor, int64_t stack, int64_t out,
                                         int64_t in) const {
  using kernels::WeightFormat;
  const TensorRef& w = get(tensor);
  const size_t nd = stack ? 3 : 2;
  std::string expect = "[" + (stack ? std::to_string(stack) + ", " : std::string()) + std::to_string(out) + ", " + std::to_string(in) + "]";
  kernels::WeightView v;
  v.rows = (stack ? stack : 1) * out;
  v.cols = in;
  v.data = w.data;
  std::vector<int64_t> shape = w.shape;
  if (!stack && out == 1 && shape.size() == 1) shape.insert(shape.begin(), 1);  // one row stored as a vector (GGUF)
  if (shape.size() != nd || shape[nd - 2] != out || (stack && shape[0] != stack))
    throw bad_tensor(w, "has shape " + shape_str(w.shape) + ", expected " + expect);
  const int64_t packed = shape[nd - 1];
  if (const TensorRef* scales = find(module + ".scales")) {
    // MLX affine: weight U32 [.., out, in*bits/32], scales/biases [.., out, in/group_size].
    const TensorRef& biases = get(module + ".biases");
    MlxQuantParams q = mlx_default_;
    auto ov = mlx_overrides_.find(module);
    if (ov != mlx_overrides_.end()) q = ov->second;
    if (w.dtype != DType::U32) throw bad_tensor(w, std::string("is quantized (has .scales) but has dtype ") + w.dtype_name + ", expected U32");
    const auto& ss = scales->shape;
    if (ss.size() != nd || ss[nd - 2] != out || (stack && ss[0] != stack) || ss[nd - 1] <= 0 || in % ss[nd - 1] != 0)
      throw bad_tensor(*scales, "has shape " + shape_str(ss) + ", which does not fit in_features " + std::to_string(in));
    int gs = int(in / ss[nd - 1]);
    if (q.group_size && q.group_size != gs)
      throw bad_tensor(*scales, "implies group_size " + std::to_string(gs) + " but config.json says " + std::to_string(q.group_size));
    if ((packed * 32) % in != 0) throw bad_tensor(w, "has " + std::to_string(packed) + " packed words per row, which fits no bit width for in_features " + std::to_string(in));
    int bits = int(packed * 32 / in);
    if (bits < 2 || bits > 8 || bits == 7) throw bad_tensor(w, "implies " + std::to_string(bits) + "-bit quantization, which MLX does not define");
    if (q.bits && q.bits != bits)
      throw bad_tensor(w, "is packed at " + std::to_string(bits) + " bits but config.json says " + std::to_string(q.bits));
    if (biases.shape != scales->shape || biases.dtype != scales->dtype)
      throw bad_tensor(biases, "does not match the shape/dtype of its .scales");
    if (scales->dtype != DType::F16 && scales->dtype != DType::BF16 && scales->dtype != DType::F32)
      throw bad_tensor(*scales, std::string("has dtype ") + scales->dtype_name + ", expected F16, BF16 or F32");
    v.format = WeightFormat::MlxAffine;
    v.bits = bits;
    v.group_size = gs;
    v.row_bytes = size_t(packed) * 4;
    v.scale_dtype = scales->dtype;
    v.scales = scales->data;
    v.biases = biases.data;
    return v;
  }
  if (packed != in) throw bad_tensor(w, "has shape " + shape_str(w.shape) + ", expected " + expect);
  switch (w.dtype) {
    case DType::F32: v.format = WeightFormat::F32; break;
    case DType::F16: v.format = WeightFormat::F16; break;
    case DType::BF16: v.format = WeightFormat::BF16; break;
    case DType::Q4_0: v.format = WeightFormat::Q4_0; break;
    case DType::Q4_1: v.format = WeightFormat::Q4_1; break;
    case DType::Q8_0: v.format = WeightFormat::Q8_0; break;
    case DType::Q4_K: v.format = WeightFormat::Q4_K; break;
    case DType::Q6_K: v.format = WeightFormat::Q6_K; break;
    default: throw bad_tensor(w, std::string("has dtype ") + w.dtype_name + ", which optiq cannot use for a weight matrix");
  }
  v.row_bytes = dtype_row_bytes(w.dtype, in);
  return v;
}

std::string lm_tensor_name(const std::string& name) {
  auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  for (const char* skip : {"model.visual.", "visual.", "vision_tower.", "model.vision_tower.", "language_model.vision_tower.",
                           "multi_modal_projector.", "model.multi_modal_projector.", "mtp.", "model.mtp."})
    if (starts(skip)) return "";
  const std::pair<const char*, const char*> prefixes[] = {
      {"model.language_model.", "model."}, {"language_model.model.", "model."}, {"language_model.lm_head", "lm_head"}};
  for (auto& [from, to] : prefixes)
    if (starts(from)) return to + name.substr(std::strlen(from));
  return name;
}

}  // namespace optiq::model
