#include "model/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include <map>
#include <thread>
#include <nlohmann/json.hpp>

#include "kernels/matmul.h"
#include "model/architecture.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"
#include "util/log.h"

namespace optiq::model {

namespace {

nlohmann::json read_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::BadModel, path + ": not valid JSON: " + e.what());
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// MLX records quantization as {"group_size", "bits", "mode", "<module path>": {...} | false}.
void read_mlx_quantization(const nlohmann::json& cfg, const std::string& file, WeightSource& ws) {
  const nlohmann::json* q = nullptr;
  if (cfg.contains("quantization") && cfg["quantization"].is_object()) q = &cfg["quantization"];
  else if (cfg.contains("quantization_config") && cfg["quantization_config"].is_object() &&
           !cfg["quantization_config"].contains("quant_method"))
    q = &cfg["quantization_config"];
  if (!q) {
    if (cfg.contains("quantization_config") && cfg["quantization_config"].contains("quant_method"))
      throw Error(ErrorKind::Unsupported, file + ": quantization method '" +
                                              cfg["quantization_config"]["quant_method"].dump() +
                                              "' is not supported (MLX affine and GGUF are)");
    return;
  }
  std::string mode = q->value("mode", std::string("affine"));
  if (mode != "affine") throw Error(ErrorKind::Unsupported, file + ": MLX quantization mode '" + mode + "' is not supported (affine is)");
  MlxQuantParams def{q->value("bits", 4), q->value("group_size", 64)};
  std::map<std::string, MlxQuantParams> overrides;
  for (auto& [k, v] : q->items()) {
    if (v.is_boolean() && !v.get<bool>()) overrides[k] = MlxQuantParams{};
    else if (v.is_object()) overrides[k] = MlxQuantParams{v.value("bits", def.bits), v.value("group_size", def.group_size)};
  }
  ws.set_mlx_quantization(def, std::move(overrides));
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::unique_ptr<Model>(new Model());
  m->path_ = path;
  std::unique_ptr<WeightSource> ws;
  if (is_directory(path)) {
    std::string cfg_path = path + "/config.json";
    if (!file_exists(cfg_path)) throw Error(ErrorKind::NotFound, path + ": no config.json in model folder");
    nlohmann::json cfg = read_json(cfg_path);
    if (!cfg.is_object()) throw Error(ErrorKind::BadModel, cfg_path + ": not a JSON object");
    nlohmann::json lm = cfg;
    if (cfg.contains("text_config") && cfg["text_config"].is_object()) {
      lm = cfg["text_config"];
      for (auto& [k, v] : cfg.items())
        if (!lm.contains(k) && k != "text_config" && k != "vision_config") lm[k] = v;
    }
    std::string type = lm.value("model_type", std::string());
    const Architecture* arch = find_architecture(type);
    if (!arch)
      throw Error(ErrorKind::Unsupported, cfg_path + ": model_type '" + type + "' is not supported (supported: " +
                                              supported_architectures() + ")");
    m->config_.model_type = arch->model_type;
    read_hf_common(lm, cfg_path, m->config_);
    arch->from_hf_config(lm, m->config_);
    std::string gen = path + "/generation_config.json";
    if (file_exists(gen)) {
      nlohmann::json g = read_json(gen);
      if (g.is_object() && g.contains("eos_token_id")) {
        std::vector<int32_t> eos;
        if (g["eos_token_id"].is_number_integer()) eos.push_back(g["eos_token_id"].get<int32_t>());
        else if (g["eos_token_id"].is_array())
          for (auto& e : g["eos_token_id"])
            if (e.is_number_integer()) eos.push_back(e.get<int32_t>());
        if (!eos.empty()) m->config_.eos_token_ids = eos;
      }
    }
    ws = WeightSource::from_folder(path);
    read_mlx_quantization(cfg, cfg_path, *ws);
  } else if (ends_with(path, ".gguf")) {
    auto gguf = std::make_shared<formats::GgufFile>(path);
    std::string a = gguf->get_string("general.architecture");
    const Architecture* arch = find_gguf_architecture(a);
    if (!arch)
      throw Error(ErrorKind::Unsupported, path + ": GGUF architecture '" + a + "' is not supported (supported: " +
                                              supported_architectures() + ")");
    m->config_.model_type = arch->model_type;
    read_gguf_common(*gguf, a, m->config_);
    arch->from_gguf(*gguf, m->config_);
    m->gguf_ = gguf;
    ws = WeightSource::from_gguf(gguf);
  } else if (file_exists(path)) {
    throw Error(ErrorKind::InvalidArgument, path + ": not a model folder or .gguf file");
  } else {
    throw Error(ErrorKind::NotFound, path + ": no such model folder or file");
  }
  for (int l = 0; l < m->config_.num_hidden_layers; ++l)
    if (!m->config_.is_moe(l) && m->config_.intermediate_size <= 0)
      throw Error(ErrorKind::BadModel, path + ": the intermediate (feed-forward) size must be positive: layer " + std::to_string(l) +
                                           " has a dense MLP");
  m->load_weights(*ws);
  m->weights_ = std::move(ws);
  m->pack_weights();
  return m;
}

void Model::load_weights(const WeightSource& ws) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t q_dim = int64_t(c.num_attention_heads) * hd, kv_dim = int64_t(c.num_key_value_heads) * hd;
  embed_ = ws.linear("model.embed_tokens", c.vocab_size, H);
  if (ws.has("lm_head.weight")) {
    lm_head_ = ws.linear("lm_head", c.vocab_size, H);
  } else {
    lm_head_ = embed_;  // tied (mlx-lm's rule: tie iff there is no lm_head tensor)
    config_.tie_word_embeddings = true;
  }
  // Raw HF hybrid checkpoints store their RMSNorm weights zero-centred (applied as 1 + w); MLX-converted
  // ones store 1 + w. Told apart as mlx-lm does, by the conv1d layout: HF [C, 1, K], MLX [C, K, 1].
  bool zero_centred = false;
  for (int il = 0; il < c.num_hidden_layers && !c.linear_layers.empty(); ++il)
    if (c.is_linear(il)) {
      const auto& sh = ws.get("model.layers." + std::to_string(il) + ".linear_attn.conv1d.weight").shape;
      zero_centred = sh.size() == 3 && sh[1] == 1 && sh[2] > 1;
      break;
    }
  auto norm = [&](const std::string& name, int64_t n) {
    auto w = ws.vector_f32(name, n);
    if (zero_centred)
      for (auto& x : w) x += 1.0f;
    return w;
  };
  final_norm_ = norm("model.norm.weight", H);
  auto lin = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    Linear l;
    l.w = ws.linear(name, out, in);
    if (bias || ws.has(name + ".bias")) l.bias = ws.vector_f32(name + ".bias", out);
    return l;
  };
  const int64_t q_rows = c.attn_output_gate ? 2 * q_dim : q_dim;
  layers_.resize(size_t(c.num_hidden_layers));
  for (int il = 0; il < c.num_hidden_layers; ++il) {
    std::string p = "model.layers." + std::to_string(il) + ".";
    DecoderLayer& L = layers_[size_t(il)];
    L.input_norm = norm(p + "input_layernorm.weight", H);
    L.post_attn_norm = norm(p + "post_attention_layernorm.weight", H);
    if (c.is_linear(il)) {
      load_delta_net(ws, p + "linear_attn.", L.delta);
    } else {
      L.q_proj = lin(p + "self_attn.q_proj", q_rows, H, c.attention_bias);
      L.k_proj = lin(p + "self_attn.k_proj", kv_dim, H, c.attention_bias);
      L.v_proj = lin(p + "self_attn.v_proj", kv_dim, H, c.attention_bias);
      L.o_proj = lin(p + "self_attn.o_proj", H, q_dim, c.o_proj_bias);
      if (c.qk_norm) {
        L.q_norm = norm(p + "self_attn.q_norm.weight", hd);
        L.k_norm = norm(p + "self_attn.k_norm.weight", hd);
      }
    }
    if (c.is_moe(il)) {
      load_moe(ws, p + "mlp.", L.moe);
    } else {
      L.gate_proj = lin(p + "mlp.gate_proj", I, H, c.mlp_bias);
      L.up_proj = lin(p + "mlp.up_proj", I, H, c.mlp_bias);
      L.down_proj = lin(p + "mlp.down_proj", H, I, c.mlp_bias);
    }
  }
  inv_freq_ = rope_inv_freq(c);
  if (ws.has("rope_freqs.weight")) {  // GGUF llama3: per-dimension frequency divisors precomputed
    auto f = ws.vector_f32("rope_freqs.weight", hd / 2);
    for (int64_t i = 0; i < hd / 2; ++i) inv_freq_[i] /= f[i];
  }
}

void Model::load_delta_net(const WeightSource& ws, const std::string& p, DeltaNetBlock& d) const {
  const LinearAttention& a = config_.linear;
  const int64_t H = config_.hidden_size, kd = a.key_dim(), vd = a.value_dim(), Hv = a.num_value_heads;
  auto lin = [&](const std::string& name, int64_t out, int64_t in) {
    Linear l;
    l.w = ws.linear(name, out, in);
    return l;
  };
  // Qwen3-Next groups q, k, v, z (and b, a) per key head; Qwen3.5 and llama.cpp's GGUFs keep them apart
  // (llama.cpp's qwen3next keeps b, a grouped).
  if (ws.has(p + "in_proj_qkvz.weight")) {
    d.in_qkvz = lin(p + "in_proj_qkvz", 2 * kd + 2 * vd, H);
  } else {
    d.in_qkv = lin(p + "in_proj_qkv", 2 * kd + vd, H);
    d.in_z = lin(p + "in_proj_z", vd, H);
  }
  if (ws.has(p + "in_proj_ba.weight")) {
    d.in_ba = lin(p + "in_proj_ba", 2 * Hv, H);
  } else {
    d.in_b = lin(p + "in_proj_b", Hv, H);
    d.in_a = lin(p + "in_proj_a", Hv, H);
  }
  d.out_proj = lin(p + "out_proj", H, vd);
  // conv1d: HF [C, 1, K], MLX [C, K, 1], GGUF [C, K]: the same values in the same order.
  const std::string conv = p + "conv1d.weight";
  const auto& sh = ws.get(conv).shape;
  const int64_t C = a.conv_dim(), K = a.conv_kernel;
  if (sh.empty() || sh[0] != C || ws.get(conv).numel() != C * K)
    throw Error(ErrorKind::BadModel, ws.describe() + ": tensor '" + conv + "' does not hold [" + std::to_string(C) + ", " +
                                         std::to_string(K) + "] conv weights");
  d.conv = ws.vector_f32(conv, C * K);
  if (ws.has(p + "A_log")) {
    d.neg_exp_a = ws.vector_f32(p + "A_log", Hv);
    for (auto& x : d.neg_exp_a) x = -std::exp(x);
  } else {
    d.neg_exp_a = ws.vector_f32(p + "ssm_a", Hv);  // GGUF: -exp(A_log) already
  }
  d.dt_bias = ws.vector_f32(p + "dt_bias", Hv);
  d.norm = ws.vector_f32(p + "norm.weight", a.value_head_dim);
}

void Model::load_moe(const WeightSource& ws, const std::string& p, MoeBlock& m) const {
  const MoeConfig& mc = config_.moe;
  const int64_t H = config_.hidden_size, E = mc.num_experts, I = mc.intermediate_size;
  m.router.w = ws.linear(p + "gate", E, H);
  m.experts.resize(size_t(E));
  if (ws.has(p + "switch_mlp.gate_proj.weight")) {  // MLX: [E, out, in] stacks
    auto g = ws.stacked(p + "switch_mlp.gate_proj", p + "switch_mlp.gate_proj.weight", E, I, H);
    auto u = ws.stacked(p + "switch_mlp.up_proj", p + "switch_mlp.up_proj.weight", E, I, H);
    auto dn = ws.stacked(p + "switch_mlp.down_proj", p + "switch_mlp.down_proj.weight", E, H, I);
    for (int64_t e = 0; e < E; ++e) {
      m.experts[size_t(e)].gate_proj.w = g.row_slice(e * I, I);
      m.experts[size_t(e)].up_proj.w = u.row_slice(e * I, I);
      m.experts[size_t(e)].down_proj.w = dn.row_slice(e * H, H);
    }
  } else if (ws.has(p + "experts.gate_up_proj")) {  // HF fused: gate_up [E, 2I, H] (gate rows first), down [E, H, I]
    auto gu = ws.stacked(p + "experts.gate_up_proj", p + "experts.gate_up_proj", E, 2 * I, H);
    auto dn = ws.stacked(p + "experts.down_proj", p + "experts.down_proj", E, H, I);
    for (int64_t e = 0; e < E; ++e) {
      m.experts[size_t(e)].gate_proj.w = gu.row_slice(e * 2 * I, I);
      m.experts[size_t(e)].up_proj.w = gu.row_slice(e * 2 * I + I, I);
      m.experts[size_t(e)].down_proj.w = dn.row_slice(e * H, H);
    }
  } else {  // HF per expert
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = p + "experts." + std::to_string(e) + ".";
      m.experts[size_t(e)].gate_proj.w = ws.linear(q + "gate_proj", I, H);
      m.experts[size_t(e)].up_proj.w = ws.linear(q + "up_proj", I, H);
      m.experts[size_t(e)].down_proj.w = ws.linear(q + "down_proj", H, I);
    }
  }
  if (mc.shared_expert_intermediate_size > 0) {
    const int64_t S = mc.shared_expert_intermediate_size;
    m.has_shared = true;
    m.shared.gate_proj.w = ws.linear(p + "shared_expert.gate_proj", S, H);
    m.shared.up_proj.w = ws.linear(p + "shared_expert.up_proj", S, H);
    m.shared.down_proj.w = ws.linear(p + "shared_expert.down_proj", H, S);
    m.shared_gate.w = ws.linear(p + "shared_expert_gate", 1, H);
  }
}

kv::KvShape Model::kv_shape() const {
  kv::KvShape s;
  s.n_layers = config_.num_hidden_layers;
  s.n_kv_heads = config_.num_key_value_heads;
  s.head_dim = config_.head_dim;
  if (!config_.linear_layers.empty()) {
    s.has_kv.resize(size_t(s.n_layers));
    for (int l = 0; l < s.n_layers; ++l) s.has_kv[size_t(l)] = !config_.is_linear(l);
    s.state_floats = config_.linear.state_floats();
  }
  return s;
}

std::unique_ptr<kv::KvCache> Model::make_cache(const kv::KvSpec& spec, int64_t budget_bytes) const {
  return std::make_unique<kv::KvCache>(kv_shape(), spec, budget_bytes);
}

namespace {
int64_t view_bytes(const kernels::WeightView& w) {
  int64_t b = int64_t(w.row_bytes) * w.rows;
  if (w.format == kernels::WeightFormat::MlxAffine)
    b += 2 * w.rows * (w.cols / w.group_size) * int64_t(dtype_block_bytes(w.scale_dtype));
  return b;
}
std::string view_kind(const kernels::WeightView& w) {
  if (w.format == kernels::WeightFormat::MlxAffine)
    return "mlx " + std::to_string(w.bits) + "-bit g" + std::to_string(w.group_size);
  return kernels::weight_format_name(w.format);
}
}  // namespace

namespace {
// Every matrix of a layer with the share of decode steps that read it (MoE experts: top-k of E).
std::vector<std::pair<const kernels::WeightView*, double>> layer_matrices(const DecoderLayer& L, const ModelConfig& c) {
  std::vector<std::pair<const kernels::WeightView*, double>> v;
  for (const Linear* l : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj, &L.delta.in_qkv,
                          &L.delta.in_z, &L.delta.in_b, &L.delta.in_a, &L.delta.in_qkvz, &L.delta.in_ba, &L.delta.out_proj,
                          &L.moe.router, &L.moe.shared_gate, &L.moe.shared.gate_proj, &L.moe.shared.up_proj, &L.moe.shared.down_proj})
    if (l->w.rows) v.push_back({&l->w, 1.0});
  const double share = L.moe.experts.empty() ? 0 : double(c.moe.experts_per_token) / double(L.moe.experts.size());
  for (const FeedForward& e : L.moe.experts)
    for (const Linear* l : {&e.gate_proj, &e.up_proj, &e.down_proj}) v.push_back({&l->w, share});
  return v;
}
}  // namespace

void Model::pack_weights() {
  std::vector<kernels::WeightView*> views;  // the layers' matrices (this model's own, so not const) and the head
  for (const DecoderLayer& l : layers_)
    for (const auto& [w, share] : layer_matrices(l, config_)) views.push_back(const_cast<kernels::WeightView*>(w));
  views.push_back(&lm_head_);
  // The kernels read the repacked copies only: the pages of each matrix as stored go back to the system as soon
  // as it is packed (read from the file again if a kernel without the packed path ever needs them), all but the
  // embedding's, which the lookups read (the head shares it when tied).
  // One buffer for all the copies (huge pages: a decode step streams through every byte of it).
  std::vector<size_t> at(views.size() + 1, 0);
  for (size_t i = 0; i < views.size(); ++i) at[i + 1] = at[i] + (kernels::packed_bytes(*views[i]) + 63) / 64 * 64;
  if (at.back() == 0) return;
  packed_ = LargeBuffer(at.back());
  std::atomic<size_t> next{0}, released{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < views.size();) {
      kernels::WeightView& w = *views[i];
      if (at[i + 1] == at[i]) continue;
      kernels::pack_weight(w, packed_.data() + at[i]);
      if (w.data == embed_.data) continue;
      released += weights_->release(w.data, size_t(w.rows) * w.row_bytes);
      if (w.format == kernels::WeightFormat::MlxAffine) {
        const size_t params = size_t(w.rows) * size_t(w.cols / w.group_size) * size_t(dtype_block_bytes(w.scale_dtype));
        released += weights_->release(w.scales, params);
        released += weights_->release(w.biases, params);
      }
    }
  };
  // Plain threads, not OpenMP: a team started here would stay beside the one the engine's thread starts.
  std::vector<std::thread> threads;
  for (int t = 1; t < compute_threads(); ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  size_t n = 0;
  for (size_t i = 0; i < views.size(); ++i) n += at[i + 1] > at[i];
  OPTIQ_LOG_DEBUG("repacked %zu matrices (%zu MiB) for the packed 4-bit kernel; %zu MiB of their stored pages given back", n,
                  at.back() >> 20, released.load() >> 20);
}

int64_t Model::weight_bytes_per_token() const {
  double b = double(view_bytes(lm_head_) + int64_t(final_norm_.size()) * 4);
  for (auto& L : layers_)
    for (auto& [w, share] : layer_matrices(L, config_)) b += share * double(view_bytes(*w));
  return int64_t(b);
}

std::string Model::weight_summary() const {
  std::map<std::string, int> n;
  n[view_kind(embed_)]++;
  if (!config_.tie_word_embeddings) n[view_kind(lm_head_)]++;
  for (auto& L : layers_)
    for (auto& [w, share] : layer_matrices(L, config_)) n[view_kind(*w)]++;
  std::string s;
  for (auto& [k, v] : n) s += (s.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  return s;
}

}  // namespace optiq::model

namespace optiq::model {

int Model::mount_adapter(Adapter a) {
  check_adapter_name(a.name);
  if (int(a.layers.size()) != config_.num_hidden_layers)
    throw Error(ErrorKind::InvalidArgument, "adapter '" + a.name + "' was loaded for another model shape");
  if (a.format == "gguf" && !gguf_)
    throw Error(ErrorKind::InvalidArgument, a.path + ": a GGUF LoRA applies to a GGUF base (its q/k rows are in GGUF order); this base is " + path_);
  if (find_adapter(a.name) >= 0) throw Error(ErrorKind::InvalidArgument, "an adapter named '" + a.name + "' is already mounted");
  // DoRA: each output row's gain m / ‖W + scale·B A‖ over the base's (dequantized) weights, once (before
  // taking the lock, which forward passes take too).
  for (int l = 0; l < config_.num_hidden_layers; ++l)
    for (int p = 0; p < kProjCount; ++p) {
      auto& slot = a.layers[size_t(l)][size_t(p)];
      if (!slot) continue;
      auto d = std::make_shared<LoraDelta>(*slot);
      pack_for_decode(*d);
      if (d->magnitude.empty()) {
        d->a = {}, d->b = {};
        slot = std::move(d);
        continue;
      }
      const DecoderLayer& L = layers_[size_t(l)];
      const Linear* lins[kProjCount] = {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj};
      const kernels::WeightView& w = lins[p]->w;
      d->dora_gain.assign(size_t(d->out), 0.0f);
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < d->out; ++o) {
        std::vector<float> row(static_cast<size_t>(d->in));
        kernels::dequantize_row(w, o, row.data());
        for (int k = 0; k < d->rank; ++k) {
          const float c = d->scale * d->unit * d->b[size_t(o * d->rank + k)];
          const float* ak = d->a.data() + size_t(k) * size_t(d->in);
          for (int64_t i = 0; i < d->in; ++i) row[size_t(i)] += c * ak[i];
        }
        double n2 = 0;
        for (float v : row) n2 += double(v) * v;
        d->dora_gain[size_t(o)] = n2 > 0 ? float(d->magnitude[size_t(o)] / std::sqrt(n2)) : 0.0f;
      }
      d->a = {}, d->b = {};
      slot = std::move(d);
    }
  std::lock_guard<std::mutex> lock(adapters_mu_);
  for (auto& m : adapters_)
    if (m && m->name == a.name) throw Error(ErrorKind::InvalidArgument, "an adapter named '" + a.name + "' is already mounted");
  adapters_.push_back(std::make_shared<const Adapter>(std::move(a)));
  return int(adapters_.size()) - 1;
}

bool Model::unmount_adapter(const std::string& name) {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  for (auto& m : adapters_)
    if (m && m->name == name) {
      m.reset();
      return true;
    }
  return false;
}

std::vector<std::shared_ptr<const Adapter>> Model::adapters() const {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  std::vector<std::shared_ptr<const Adapter>> out;
  for (auto& m : adapters_)
    if (m) out.push_back(m);
  return out;
}

std::shared_ptr<const Adapter> Model::adapter(int index) const {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  return index >= 0 && size_t(index) < adapters_.size() ? adapters_[size_t(index)] : nullptr;
}

int Model::find_adapter(const std::string& name) const {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  for (size_t i = 0; i < adapters_.size(); ++i)
    if (adapters_[i] && adapters_[i]->name == name) return int(i);
  return -1;
}

bool Model::adapter_set_live(int32_t id) const {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  if (id < 0 || size_t(id) >= adapter_sets_.size()) return false;
  for (int i : adapter_sets_[size_t(id)])
    if (!adapters_[size_t(i)]) return false;
  return true;
}

bool Model::adapter_set_uses(int32_t id, int index) const {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  if (id <= 0 || size_t(id) >= adapter_sets_.size()) return false;
  const auto& v = adapter_sets_[size_t(id)];
  return std::find(v.begin(), v.end(), index) != v.end();
}

int32_t Model::adapter_set(const std::vector<int>& indices) {
  if (indices.empty()) return 0;
  std::lock_guard<std::mutex> lock(adapters_mu_);
  for (int i : indices) OPTIQ_CHECK(i >= 0 && size_t(i) < adapters_.size() && adapters_[size_t(i)], "adapter_set: no such adapter");
  for (size_t id = 1; id < adapter_sets_.size(); ++id)
    if (adapter_sets_[id] == indices) return int32_t(id);
  adapter_sets_.push_back(indices);
  return int32_t(adapter_sets_.size() - 1);
}

int32_t Model::resolve_adapters(const std::string& spec) {
  if (spec.empty() || spec == "none" || spec == "base" || spec == "off") return 0;
  std::vector<int> ids;
  for (size_t b = 0; b <= spec.size();) {
    size_t e = spec.find('+', b);
    if (e == std::string::npos) e = spec.size();
    const std::string name = spec.substr(b, e - b);
    const int idx = find_adapter(name);
    if (idx < 0) {
      std::string names;
      for (auto& a : adapters()) names += (names.empty() ? "" : ", ") + a->name;
      throw Error(ErrorKind::InvalidArgument, "unknown adapter '" + name + "' (mounted: " + (names.empty() ? "none" : names) + ")");
    }
    ids.push_back(idx);
    b = e + 1;
  }
  return adapter_set(ids);
}

}  // namespace optiq::model
