#include "model/lora.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <cstring>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/weight_source.h"
#include "util/error.h"
#include "util/half.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace optiq::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* proj_name(Proj p) {
  static const char* names[kProjCount] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return names[int(p)];
}

namespace {

[[noreturn]] void bad(const std::string& file, const std::string& what) { throw Error(ErrorKind::BadModel, file + ": " + what); }

json read_json(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    bad(path, std::string("not valid JSON (") + e.what() + ")");
  }
}

// [out, in] of a projection in the base model.
std::pair<int, int> proj_dims(const ModelConfig& c, Proj p) {
  const int H = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim, I = c.intermediate_size;
  switch (p) {
    case Proj::Q: return {c.attn_output_gate ? 2 * q : q, H};
    case Proj::K:
    case Proj::V: return {kv, H};
    case Proj::O: return {H, q};
    case Proj::Gate:
    case Proj::Up: return {I, H};
    case Proj::Down: return {H, I};
  }
  return {0, 0};
}

std::vector<float> to_f32(const formats::TensorRef& t) {
  std::vector<float> out;
  if (!t.to_f32(out)) bad(t.file, "tensor " + t.name + " has dtype " + t.dtype_name + " (adapters are F32, F16 or BF16)");
  return out;
}

// A tensor name, once the format's prefixes are gone: model.layers.<i>.<proj>.<leaf>.
struct Site {
  int layer = -1;
  Proj proj = Proj::Q;
  std::string leaf;  // lora_a | lora_b | lora_A.weight | lora_B.weight | ...
  std::string module;  // model.layers.<i>.<proj>
};

std::optional<Site> parse_site(std::string name) {
  if (name.rfind("base_model.model.", 0) == 0) name = name.substr(17);
  if (name.rfind("language_model.layers.", 0) == 0) name = name.substr(15);  // mlx-lm over a VLM's language model
  name = lm_tensor_name(name);  // model.language_model.* / language_model.model.* -> model.*
  static const std::regex re(R"(model\.layers\.(\d+)\.((?:self_attn|mlp)\.[a-z_]+)\.(.+))");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  Site s;
  s.layer = std::stoi(m[1]);
  const std::string proj = m[2];
  int found = -1;
  for (int p = 0; p < kProjCount; ++p)
    if (proj == proj_name(Proj(p))) found = p;
  if (found < 0) return std::nullopt;
  s.proj = Proj(found);
  s.leaf = m[3];
  s.module = "model.layers." + std::string(m[1]) + "." + proj;
  return s;
}

// A site the base has: attention projections on attention layers, MLP projections on dense-MLP layers.
void check_site(const ModelConfig& c, const Site& s, const std::string& file) {
  if (s.layer >= c.num_hidden_layers)
    bad(file, s.module + " is for layer " + std::to_string(s.layer) + "; the model has " + std::to_string(c.num_hidden_layers));
  const bool attn = s.proj == Proj::Q || s.proj == Proj::K || s.proj == Proj::V || s.proj == Proj::O;
  if (attn && c.is_linear(s.layer))
    bad(file, s.module + ": layer " + std::to_string(s.layer) + " is a linear-attention (Gated DeltaNet) layer, without that projection");
  if (!attn && c.is_moe(s.layer))
    throw Error(ErrorKind::Unsupported, file + ": " + s.module + ": layer " + std::to_string(s.layer) +
                                            " is a mixture of experts; adapters on experts are not supported");
}

// PEFT's rank_pattern / alpha_pattern: a key matches a module path as (.*\.)?(key)$.
std::optional<double> pattern_value(const json& cfg, const char* field, const std::string& module) {
  const auto it = cfg.find(field);
  if (it == cfg.end() || !it->is_object()) return std::nullopt;
  for (auto& [key, val] : it->items()) {
    if (!val.is_number()) continue;
    try {
      if (std::regex_match(module, std::regex("(.*\\.)?(" + key + ")$"))) return val.get<double>();
    } catch (const std::regex_error&) {
      if (module == key || (module.size() > key.size() && module.compare(module.size() - key.size() - 1, std::string::npos, "." + key) == 0))
        return val.get<double>();
    }
  }
  return std::nullopt;
}

// One module's tensors, gathered by name.
struct Pair {
  const formats::TensorRef* a = nullptr;
  const formats::TensorRef* b = nullptr;
  const formats::TensorRef* m = nullptr;  // DoRA magnitude [out]
  Site site;
};

// One module's delta from its A and B, as PEFT and GGUF store them (A [r, in], B [out, r]) or transposed,
// as mlx-lm does (A [in, r], B [r, out]); a_name / b_name label them in errors. The caller sets the scale.
std::shared_ptr<LoraDelta> make_delta(const formats::TensorRef& ta, const formats::TensorRef& tb, bool transposed,
                                      std::pair<int, int> out_in, const std::string& file, const std::string& module,
                                      const char* a_name, const char* b_name) {
  const auto [out, in] = out_in;
  if (ta.shape.size() != 2 || tb.shape.size() != 2) bad(file, module + ": A and B must be 2-D");
  const int64_t r = transposed ? ta.shape[1] : ta.shape[0];
  const bool fits = transposed ? ta.shape[0] == in && tb.shape[1] == out && tb.shape[0] == r
                               : ta.shape[1] == in && tb.shape[0] == out && tb.shape[1] == r;
  auto shape_str = [](const formats::TensorRef& t) { return "[" + std::to_string(t.shape[0]) + ", " + std::to_string(t.shape[1]) + "]"; };
  if (!fits || r <= 0)
    bad(file, module + ": " + a_name + " " + shape_str(ta) + " / " + b_name + " " + shape_str(tb) + " do not fit the base's [" +
                  std::to_string(out) + ", " + std::to_string(in) + "] projection");
  auto d = std::make_shared<LoraDelta>();
  d->rank = int(r), d->in = in, d->out = out;
  std::vector<float> af = to_f32(ta), bf = to_f32(tb);
  if (!transposed) {
    d->a = std::move(af);
    d->b = std::move(bf);
  } else {
    d->a.resize(size_t(r * in));
    d->b.resize(size_t(out * r));
    for (int64_t i = 0; i < in; ++i)
      for (int64_t k = 0; k < r; ++k) d->a[size_t(k * in + i)] = af[size_t(i * r + k)];
    for (int64_t k = 0; k < r; ++k)
      for (int64_t o = 0; o < out; ++o) d->b[size_t(o * r + k)] = bf[size_t(k * out + o)];
  }
  if (ta.dtype == tb.dtype && (ta.dtype == DType::F16 || ta.dtype == DType::BF16)) d->store = ta.dtype;
  for (float x : d->a)
    if (!std::isfinite(x)) bad(file, module + ": A holds a non-finite value");
  for (float x : d->b)
    if (!std::isfinite(x)) bad(file, module + ": B holds a non-finite value");
  return d;
}

// The power of two 2^k that puts max|v| in [2^14, 2^15) (1 for an all-zero v).
float f16_range_scale(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  if (m == 0.0f) return 1.0f;
  int e = 0;
  std::frexp(m, &e);  // m in [2^(e-1), 2^e)
  return std::ldexp(1.0f, 15 - e);
}

}  // namespace

void pack_for_decode(LoraDelta& d) {
  d.packed = d.store == DType::BF16 ? DType::BF16 : DType::F16;
  float sa = 1.0f, sb = 1.0f;
  if (d.store == DType::F32) sa = f16_range_scale(d.a), sb = f16_range_scale(d.b);
  d.unit = 1.0f / (sa * sb);  // exact: powers of two
  auto pack = [&](std::vector<float>& v, float s, std::vector<uint16_t>& out) {
    out.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      out[i] = d.packed == DType::F16 ? f32_to_f16(v[i] * s) : f32_to_bf16(v[i]);
      v[i] = d.packed == DType::F16 ? f16_to_f32(out[i]) : bf16_to_f32(out[i]);
    }
  };
  // Both transposed, so that each is read as rows of weights that one x element multiplies.
  auto transpose = [](const std::vector<uint16_t>& v, int rows, int cols, std::vector<uint16_t>& out) {
    out.resize(v.size());
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) out[size_t(c) * size_t(rows) + size_t(r)] = v[size_t(r) * size_t(cols) + size_t(c)];
  };
  std::vector<uint16_t> a, b;
  pack(d.a, sa, a);
  pack(d.b, sb, b);
  transpose(a, d.rank, d.in, d.a16);   // Aᵀ [in, rank]
  transpose(b, d.out, d.rank, d.b16);  // Bᵀ [rank, out]
}

std::string Adapter::summary() const {
  int modules = 0, rmin = 1 << 30, rmax = 0;
  float smin = 1e30f, smax = -1e30f;
  std::map<int, int> ranks;
  for (auto& l : layers)
    for (auto& d : l)
      if (d) {
        ++modules;
        rmin = std::min(rmin, d->rank), rmax = std::max(rmax, d->rank);
        smin = std::min(smin, d->scale), smax = std::max(smax, d->scale);
        ranks[d->rank]++;
      }
  bool has_dora = false;
  for (auto& l : layers)
    for (auto& d : l)
      if (d && !d->magnitude.empty()) has_dora = true;
  char buf[256];
  std::string r = rmin == rmax ? std::to_string(rmin) : std::to_string(rmin) + "-" + std::to_string(rmax);
  std::snprintf(buf, sizeof buf, has_dora ? "%s DoRA adapter, %d modules" : "%s adapter, %d modules, rank %s, scale %g%s", format.c_str(), modules, r.c_str(), double(smin),
                smin == smax ? "" : (" to " + std::to_string(smax)).c_str());
  std::string out = buf;
  if (ranks.size() > 1) {
    out += " (ranks:";
    for (auto& [k, n] : ranks) out += " " + std::to_string(k) + "x" + std::to_string(n);
    out += ")";
  }
  return out;
}

// llama.cpp's GGUF LoRA (convert_lora_to_gguf.py): general.type "adapter", adapter.type "lora",
// adapter.lora.alpha; tensors <base tensor>.lora_a with ne [n_in, r] and .lora_b with ne [r, n_out], i.e.
// row-major A [r, in] and B [out, r]; scale alpha / r (1 when alpha is 0). They are in the GGUF base's own
// row order (q/k rows permuted for interleaved RoPE), so they apply to GGUF bases only.
static Adapter load_gguf_adapter(const std::string& path, const ModelConfig& c, const std::string& name) {
  formats::GgufFile f(path);
  const std::string type = f.get_string("general.type", "");
  if (type != "adapter") bad(path, "general.type is '" + type + "', not 'adapter' (is this a model, not a LoRA?)");
  const std::string atype = f.get_string("adapter.type", "");
  if (atype != "lora") throw Error(ErrorKind::Unsupported, path + ": adapter.type '" + atype + "' is not supported (only lora)");
  const std::string arch = f.get_string("general.architecture", "");
  if (arch != c.model_type) bad(path, "an adapter for a '" + arch + "' model; the base is '" + c.model_type + "'");
  const double alpha = f.get_float("adapter.lora.alpha", 0.0);
  Adapter a;
  a.name = name;
  a.path = path;
  a.format = "gguf";
  a.layers.resize(size_t(c.num_hidden_layers));
  // Tensors as row-major refs (ggml's ne reversed), grouped per module under the HF names the base uses.
  std::map<std::string, formats::TensorRef> refs;
  std::map<std::string, Pair> pairs;
  for (const auto& t : f.tensors()) {
    const bool is_a = t.name.ends_with(".lora_a"), is_b = t.name.ends_with(".lora_b");
    if (!is_a && !is_b && t.name.ends_with("_norm.weight")) continue;  // llama.cpp ignores these too
    const auto site = parse_site(hf_name_from_gguf(t.name.substr(0, t.name.size() - ((is_a || is_b) ? 7 : 0))));
    if (!(is_a || is_b) || !site || site->leaf != "weight")
      throw Error(ErrorKind::Unsupported, path + ": tensor " + t.name + " adapts a module other than the decoder's projections");
    check_site(c, *site, path);
    formats::TensorRef& r = refs[t.name];
    r.name = t.name, r.file = path, r.dtype = t.dtype, r.dtype_name = "ggml type " + std::to_string(t.ggml_type);
    r.shape.assign(t.ne.rbegin(), t.ne.rend());
    r.data = t.data, r.nbytes = t.nbytes;
    Pair& p = pairs[site->module];
    p.site = *site;
    (is_a ? p.a : p.b) = &r;
  }
  if (pairs.empty()) bad(path, "no LoRA tensors");
  for (auto& [module, p] : pairs) {
    if (!p.a || !p.b) bad(path, module + ": has only one of lora_a and lora_b");
    auto d = make_delta(*p.a, *p.b, /*transposed=*/false, proj_dims(c, p.site.proj), path, module, "lora_a", "lora_b");
    d->scale = float(alpha == 0.0 ? 1.0 : alpha / double(d->rank));
    a.layers[size_t(p.site.layer)][size_t(p.site.proj)] = std::move(d);
  }
  return a;
}

void check_adapter_name(const std::string& name) {
  if (name.empty() || name == "none" || name == "base" || name == "off" || name.find('+') != std::string::npos)
    throw Error(ErrorKind::InvalidArgument, "'" + name + "' cannot name an adapter (none, base, off and '+' mean other things)");
}

Adapter load_adapter(const std::string& path, const ModelConfig& c, const std::string& name) {
  check_adapter_name(name);
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") return load_gguf_adapter(path, c, name);
  Adapter a;
  a.name = name;
  a.path = path;
  if (!fs::is_directory(path)) throw Error(ErrorKind::NotFound, path + ": not an adapter folder (adapter_config.json + adapters.safetensors or adapter_model.safetensors)");
  const std::string cfg_path = path + "/adapter_config.json";
  if (!fs::exists(cfg_path)) throw Error(ErrorKind::NotFound, cfg_path + ": missing (every adapter folder has one)");
  const json cfg = read_json(cfg_path);
  if (!cfg.is_object()) bad(cfg_path, "expected a JSON object");
  std::string weights;
  bool peft = false;
  if (fs::exists(path + "/adapters.safetensors")) {
    weights = path + "/adapters.safetensors";
    a.format = fs::exists(path + "/optiq_lora_config.json") ? "optiq" : "mlx-lm";
  } else if (fs::exists(path + "/adapter_model.safetensors")) {
    weights = path + "/adapter_model.safetensors";
    a.format = "peft";
    peft = true;
  } else if (fs::exists(path + "/adapter_model.bin")) {
    throw Error(ErrorKind::Unsupported, path + "/adapter_model.bin: PyTorch pickles are not read; save the adapter as safetensors");
  } else {
    throw Error(ErrorKind::NotFound, path + ": no adapters.safetensors (mlx-lm) or adapter_model.safetensors (PEFT)");
  }

  // Scale rule.
  double mlx_scale = 20.0;  // mlx-lm's default lora_parameters.scale
  std::optional<double> rs_alpha;  // alpha / sqrt(r) (rsLoRA)
  if (!peft) {
    const std::string ft = cfg.value("fine_tune_type", std::string("lora"));
    if (ft != "lora" && ft != "dora") throw Error(ErrorKind::Unsupported, cfg_path + ": fine_tune_type \"" + ft + "\" is not a LoRA adapter");
    if (auto lp = cfg.find("lora_parameters"); lp != cfg.end() && lp->is_object()) {
      if (auto s = lp->find("scale"); s != lp->end()) {
        if (!s->is_number()) bad(cfg_path, "lora_parameters.scale must be a number");
        mlx_scale = s->get<double>();
      }
    }
    if (a.format == "optiq") {
      const std::string side_path = path + "/optiq_lora_config.json";
      const json side = read_json(side_path);
      const bool rs = side.value("rs_lora", false) || side.value("use_rslora", false);
      if (rs) {
        const json* al = side.contains("lora_alpha") ? &side["lora_alpha"] : cfg.contains("lora_alpha") ? &cfg["lora_alpha"] : nullptr;
        if (!al || !al->is_number()) bad(side_path, "rs_lora is set but no lora_alpha says what alpha / sqrt(r) is");
        rs_alpha = al->get<double>();
      }
      OPTIQ_LOG_INFO("adapter %s: OptiQ sidecar: rank %s, rank_scaling %s, scaling %s", name.c_str(),
                     side.contains("rank") ? side["rank"].dump().c_str() : "?",
                     side.value("rank_scaling", std::string("?")).c_str(), rs ? "alpha/sqrt(r) (rs_lora)" : "scale as stored");
    }
  } else {
    if (cfg.value("peft_type", std::string("LORA")) != "LORA")
      throw Error(ErrorKind::Unsupported, cfg_path + ": peft_type " + cfg.value("peft_type", std::string()) + " is not LoRA");
    if (cfg.value("fan_in_fan_out", false)) throw Error(ErrorKind::Unsupported, cfg_path + ": fan_in_fan_out (GPT-2 Conv1D) adapters are not supported");
    if (auto m = cfg.find("modules_to_save"); m != cfg.end() && m->is_array() && !m->empty())
      throw Error(ErrorKind::Unsupported, cfg_path + ": modules_to_save (full replacement weights) is not supported");
  }

  const bool dora = peft ? cfg.value("use_dora", false) : cfg.value("fine_tune_type", std::string("lora")) == "dora";
  formats::SafetensorsFile st(weights);
  std::map<std::string, Pair> pairs;
  for (auto& [tname, t] : st.tensors()) {
    auto site = parse_site(tname);
    if (!site) throw Error(ErrorKind::Unsupported, weights + ": tensor " + tname + " adapts a module other than the decoder's projections");
    check_site(c, *site, weights);
    Pair& p = pairs[site->module];
    p.site = *site;
    const std::string& leaf = site->leaf;
    if (leaf == (peft ? "lora_A.weight" : "lora_a")) p.a = &t;
    else if (leaf == (peft ? "lora_B.weight" : "lora_b")) p.b = &t;
    else if (leaf == (peft ? "lora_magnitude_vector" : "m") || (peft && leaf == "lora_magnitude_vector.weight")) p.m = &t;
    else
      throw Error(ErrorKind::Unsupported, weights + ": tensor " + tname + " is not a LoRA A or B matrix");
  }
  if (pairs.empty()) bad(weights, "no LoRA tensors");

  a.layers.resize(size_t(c.num_hidden_layers));
  for (auto& [module, p] : pairs) {
    if (!p.a || !p.b) bad(weights, module + ": has " + std::string(p.a ? "A" : "B") + " but no " + (p.a ? "B" : "A") + " matrix");
    const auto [out, in] = proj_dims(c, p.site.proj);
    auto d = make_delta(*p.a, *p.b, /*transposed=*/!peft, {out, in}, weights, module, peft ? "lora_A" : "lora_a",
                        peft ? "lora_B" : "lora_b");
    if (peft) {
      const double alpha = pattern_value(cfg, "alpha_pattern", module).value_or(cfg.value("lora_alpha", 8.0));
      d->scale = float(cfg.value("use_rslora", false) ? alpha / std::sqrt(double(d->rank)) : alpha / double(d->rank));
    } else {
      d->scale = float(rs_alpha ? *rs_alpha / std::sqrt(double(d->rank)) : mlx_scale);
    }
    if (dora && !p.m) bad(weights, module + ": a DoRA adapter without the module's magnitude vector");
    if (p.m) {
      if (p.m->numel() != out) bad(weights, module + ": the DoRA magnitude has " + std::to_string(p.m->numel()) + " values, not " + std::to_string(out));
      d->magnitude = to_f32(*p.m);
    }
    a.layers[size_t(p.site.layer)][size_t(p.site.proj)] = std::move(d);
  }
  return a;
}

}  // namespace optiq::model
