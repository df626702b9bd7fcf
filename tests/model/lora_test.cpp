// Mounted LoRA adapters: in every format the logits equal those of the base with the adapter merged into
// an f32 copy of its weights; a zero B changes nothing; one batch mixing rows on different adapters gives
// each row what it gets alone; malformed adapters are clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "test_paths.h"
#include "quant/mlx_affine.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

using namespace optiq;
namespace fs = std::filesystem;

namespace {

struct Delta {
  std::string module;  // model.layers.<i>.<proj>
  int out, in, rank;
  float scale;
  std::vector<float> a, b;  // A [rank, in], B [out, rank]
  std::vector<float> m = {};     // DoRA magnitude [out] (empty: plain LoRA)
};

std::vector<float> randn(size_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class Lora : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = test::scratch_dir("lora-base");
    spec_ = model::synthetic_shape("tiny-qwen3");
    model::write_synthetic_model(spec_, "f32", base_);
  }
  // Deltas on several projections, with ranks that differ per layer (as OptiQ's adapters have). Their values
  // are f16 values: F32 files are applied in f16 (LoraDelta::packed), so these are applied exactly and the
  // merged weights are the oracle to f32 rounding (F32RoundingIsF16s tests other values).
  static std::vector<Delta> deltas(float scale, bool zero_b = false) {
    const auto& s = spec_;
    const int q = s.num_attention_heads * s.head_dim, kv = s.num_key_value_heads * s.head_dim;
    std::vector<Delta> out = {{"model.layers.0.self_attn.q_proj", q, s.hidden_size, 4, scale, {}, {}},
                              {"model.layers.0.self_attn.v_proj", kv, s.hidden_size, 4, scale, {}, {}},
                              {"model.layers.1.self_attn.o_proj", s.hidden_size, q, 2, scale, {}, {}},
                              {"model.layers.1.mlp.down_proj", s.hidden_size, s.intermediate_size, 8, scale, {}, {}},
                              {"model.layers.0.mlp.gate_proj", s.intermediate_size, s.hidden_size, 4, scale, {}, {}}};
    uint32_t seed = 11;
    for (auto& d : out) {
      d.a = randn(size_t(d.rank * d.in), seed++, 0.3f);
      d.b = zero_b ? std::vector<float>(size_t(d.out * d.rank), 0.0f) : randn(size_t(d.out * d.rank), seed++, 0.3f);
      for (auto* v : {&d.a, &d.b})
        for (auto& x : *v) x = f16_to_f32(f32_to_f16(x));
    }
    return out;
  }
  // mlx-lm layout: lora_a [in, r], lora_b [r, out].
  static std::string write_mlx(const std::string& name, const std::vector<Delta>& ds, float scale, bool optiq = false) {
    const std::string dir = test::scratch_dir(name);
    formats::SafetensorsWriter w;
    for (auto& d : ds) {
      std::vector<float> at(d.a.size()), bt(d.b.size());
      for (int k = 0; k < d.rank; ++k)
        for (int i = 0; i < d.in; ++i) at[size_t(i * d.rank + k)] = d.a[size_t(k * d.in + i)];
      for (int o = 0; o < d.out; ++o)
        for (int k = 0; k < d.rank; ++k) bt[size_t(k * d.out + o)] = d.b[size_t(o * d.rank + k)];
      w.add_f32(d.module + ".lora_a", {d.in, d.rank}, at);
      w.add_f32(d.module + ".lora_b", {d.rank, d.out}, bt);
      if (!d.m.empty()) w.add_f32(d.module + ".m", {d.out}, d.m);
    }
    w.write(dir + "/adapters.safetensors");
    const bool dora = !ds.empty() && !ds[0].m.empty();
    write_text(dir + "/adapter_config.json", std::string(R"({"fine_tune_type": ")") + (dora ? "dora" : "lora") +
                                                 R"(", "num_layers": -1, "lora_parameters": {"rank": 8, "scale": )" +
                                                 std::to_string(scale) + R"(, "dropout": 0.0}})");
    if (optiq) write_text(dir + "/optiq_lora_config.json", R"({"rank": 8, "rank_scaling": "by_bits", "scale": 2.0})");
    return dir;
  }
  // PEFT layout: lora_A [r, in], lora_B [out, r]; scale lora_alpha / r.
  static std::string write_peft(const std::string& name, const std::vector<Delta>& ds, const std::string& config) {
    const std::string dir = test::scratch_dir(name);
    formats::SafetensorsWriter w;
    for (auto& d : ds) {
      w.add_f32("base_model.model." + d.module + ".lora_A.weight", {d.rank, d.in}, d.a);
      w.add_f32("base_model.model." + d.module + ".lora_B.weight", {d.out, d.rank}, d.b);
      if (!d.m.empty()) w.add_f32("base_model.model." + d.module + ".lora_magnitude_vector", {d.out}, d.m);
    }
    w.write(dir + "/adapter_model.safetensors");
    write_text(dir + "/adapter_config.json", config);
    return dir;
  }
  // The deltas merged into tensor `tname`'s f32 values: W' = W + scale * B A (computed in double), and
  // for DoRA each row then scaled to m / ||W'||.
  static void merge(const std::string& tname, const std::vector<Delta>& ds, std::vector<float>& v) {
    for (auto& d : ds)
      if (tname == d.module + ".weight")
        for (int o = 0; o < d.out; ++o) {
          double n2 = 0;
          for (int i = 0; i < d.in; ++i) {
            double acc = 0;
            for (int k = 0; k < d.rank; ++k) acc += double(d.b[size_t(o * d.rank + k)]) * d.a[size_t(k * d.in + i)];
            v[size_t(o * d.in + i)] += float(d.scale * acc);
            n2 += double(v[size_t(o * d.in + i)]) * v[size_t(o * d.in + i)];
          }
          if (!d.m.empty())
            for (int i = 0; i < d.in; ++i) v[size_t(o * d.in + i)] = float(v[size_t(o * d.in + i)] * (d.m[size_t(o)] / std::sqrt(n2)));
        }
  }
  // The base with the deltas merged into its f32 weights.
  static std::string write_merged(const std::string& name, const std::vector<Delta>& ds) {
    const std::string dir = test::scratch_dir(name);
    fs::copy_file(base_ + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
    formats::SafetensorsFile st(base_ + "/model.safetensors");
    formats::SafetensorsWriter w;
    for (auto& [tname, t] : st.tensors()) {
      std::vector<float> v(size_t(t.numel()));
      std::memcpy(v.data(), t.data, v.size() * 4);
      merge(tname, ds, v);
      w.add_f32(tname, t.shape, v);
    }
    w.write(dir + "/model.safetensors");
    return dir;
  }
  // Logits of every position of `tokens` (one sequence) under adapter set `set`.
  static std::vector<float> logits(model::Model& m, const std::vector<int32_t>& tokens, int32_t set = 0) {
    auto cache = m.make_cache();
    const int32_t s = cache->create_sequence();
    model::Batch b;
    for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], int32_t(i), s, true, set);
    std::vector<float> out(tokens.size() * size_t(m.config().vocab_size));
    m.forward(b, *cache, out.data());
    return out;
  }
  static double rel_diff(const std::vector<float>& x, const std::vector<float>& y) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) num = std::max(num, double(std::fabs(x[i] - y[i]))), den = std::max(den, double(std::fabs(y[i])));
    return num / den;
  }
  static inline std::string base_;
  static inline model::SyntheticSpec spec_;
  const std::vector<int32_t> tokens_ = {1, 17, 42, 99, 5, 250, 3, 77};
};

}  // namespace

TEST_F(Lora, EveryFormatMatchesTheMergedWeights) {
  const auto ds = deltas(2.0f);
  const std::vector<std::pair<std::string, std::string>> adapters = {
      {"mlx-lm", write_mlx("lora-mlx", ds, 2.0f)},
      {"optiq", write_mlx("lora-optiq", ds, 2.0f, /*optiq=*/true)},
      // alpha 8 / r 4 = 2; the rank-2 and rank-8 modules get alpha 4 and 16 from alpha_pattern.
      {"peft", write_peft("lora-peft", ds, R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
          "alpha_pattern": {"o_proj": 4, "layers.1.mlp.down_proj": 16}, "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj", "gate_proj"]})")},
  };
  auto m = model::Model::load(base_);
  auto merged = model::Model::load(write_merged("lora-merged", ds));
  const auto want = logits(*merged, tokens_);
  const auto base = logits(*m, tokens_);
  ASSERT_GT(rel_diff(base, want), 1e-2) << "the adapter must change the logits for this test to mean anything";
  for (auto& [format, dir] : adapters) {
    const int idx = m->mount_adapter(model::load_adapter(dir, m->config(), format));
    EXPECT_EQ(m->adapter(idx)->format, format);
    EXPECT_LT(rel_diff(logits(*m, tokens_, m->adapter_set({idx})), want), 1e-4) << format;
  }
  EXPECT_EQ(m->adapter(0)->summary(), "mlx-lm adapter, 5 modules, rank 2-8, scale 2 (ranks: 2x1 4x3 8x1)");
  // The base itself is untouched.
  EXPECT_EQ(logits(*m, tokens_), base);
}

// llama.cpp's GGUF LoRA over a GGUF base. GGUF permutes q/k rows for interleaved RoPE, so the deltas here
// are on v, o, gate, up and down, where both bases agree; the oracle is the same deltas as an mlx-lm adapter
// on the f32 base (checked against merged weights above).
TEST_F(Lora, GgufAdapterOnAGgufBaseMatchesTheSameDeltas) {
  auto ds = deltas(2.0f);
  ds.erase(ds.begin());  // q_proj
  const std::string gdir = test::scratch_dir("lora-gguf");
  model::write_synthetic_model(spec_, "gguf-f32", gdir + "/base.gguf");
  formats::GgufWriter w;
  w.set_string("general.architecture", spec_.model_type);
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", "lora");
  const std::map<std::string, std::string> gname = {{"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
                                                    {"mlp.down_proj", "ffn_down"}, {"mlp.gate_proj", "ffn_gate"}};
  // scale = alpha / r: every delta has scale 2, so alpha = 2r per module would be needed; GGUF has one alpha,
  // so give every module rank 4's alpha and fold the difference into B.
  const float alpha = 8.0f;
  for (auto& d : ds) {
    const std::string layer = d.module.substr(13, d.module.find('.', 13) - 13);
    const std::string g = "blk." + layer + "." + gname.at(d.module.substr(d.module.find('.', 13) + 1)) + ".weight";
    std::vector<float> b = d.b;
    for (auto& x : b) x *= d.scale / (alpha / float(d.rank));
    auto bytes = [](const std::vector<float>& v) {
      std::vector<uint8_t> out(v.size() * 4);
      std::memcpy(out.data(), v.data(), out.size());
      return out;
    };
    w.add_tensor(g + ".lora_a", DType::F32, {d.in, d.rank}, bytes(d.a));
    w.add_tensor(g + ".lora_b", DType::F32, {d.rank, d.out}, bytes(b));
  }
  w.set_f32("adapter.lora.alpha", alpha);
  w.write(gdir + "/lora.gguf");

  auto gm = model::Model::load(gdir + "/base.gguf");
  const int gi = gm->mount_adapter(model::load_adapter(gdir + "/lora.gguf", gm->config(), "g"));
  EXPECT_EQ(gm->adapter(gi)->format, "gguf");
  auto m = model::Model::load(base_);
  const int mi = m->mount_adapter(model::load_adapter(write_mlx("lora-gguf-oracle", ds, 2.0f), m->config(), "m"));
  const auto want = logits(*m, tokens_, m->adapter_set({mi}));
  ASSERT_GT(rel_diff(logits(*m, tokens_), want), 1e-2);
  EXPECT_LT(rel_diff(logits(*gm, tokens_, gm->adapter_set({gi})), want), 1e-4);
  // Not over a safetensors base (its q/k rows are in another order).
  EXPECT_THROW(m->mount_adapter(model::load_adapter(gdir + "/lora.gguf", m->config(), "g")), Error);
}

TEST_F(Lora, DoraMatchesTheMergedWeights) {
  auto ds = deltas(2.0f);
  uint32_t seed = 500;
  for (auto& d : ds) {
    d.m = randn(size_t(d.out), seed++, 1.0f);
    for (auto& x : d.m) x = 0.5f + std::fabs(x);
  }
  auto m = model::Model::load(base_);
  const auto want = logits(*model::Model::load(write_merged("lora-dora-merged", ds)), tokens_);
  const int a = m->mount_adapter(model::load_adapter(write_mlx("lora-dora-mlx", ds, 2.0f), m->config(), "dora-mlx"));
  EXPECT_LT(rel_diff(logits(*m, tokens_, m->adapter_set({a})), want), 1e-4);
  EXPECT_NE(m->adapter(a)->summary().find("mlx-lm DoRA adapter"), std::string::npos);
  const int p = m->mount_adapter(model::load_adapter(
      write_peft("lora-dora-peft", ds, R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": true,
          "alpha_pattern": {"o_proj": 4, "layers.1.mlp.down_proj": 16}})"), m->config(), "dora-peft"));
  EXPECT_LT(rel_diff(logits(*m, tokens_, m->adapter_set({p})), want), 1e-4);
}

// A BF16 adapter file is applied in BF16 (half the bytes): the same values as an F32 file, the same logits.
TEST_F(Lora, SixteenBitAdaptersApplyTheirOwnValues) {
  auto ds = deltas(2.0f);
  for (auto& d : ds)
    for (auto* v : {&d.a, &d.b})
      for (auto& x : *v) x = bf16_to_f32(f32_to_bf16(x));  // values a BF16 file holds exactly
  const std::string f32dir = write_mlx("lora-bf16-as-f32", ds, 2.0f);
  const std::string dir = test::scratch_dir("lora-bf16");
  formats::SafetensorsWriter w;
  auto bf16 = [](const std::vector<float>& v) {
    std::vector<uint8_t> out(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = f32_to_bf16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return out;
  };
  for (auto& d : ds) {
    w.add("base_model.model." + d.module + ".lora_A.weight", DType::BF16, {d.rank, d.in}, bf16(d.a));
    w.add("base_model.model." + d.module + ".lora_B.weight", DType::BF16, {d.out, d.rank}, bf16(d.b));
  }
  w.write(dir + "/adapter_model.safetensors");
  write_text(dir + "/adapter_config.json", R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "alpha_pattern": {"o_proj": 4, "layers.1.mlp.down_proj": 16}})");
  auto m = model::Model::load(base_);
  const int a = m->mount_adapter(model::load_adapter(f32dir, m->config(), "f32"));
  const int b = m->mount_adapter(model::load_adapter(dir, m->config(), "bf16"));
  EXPECT_EQ(m->adapter(b)->delta(0, model::Proj::Q)->store, DType::BF16);
  EXPECT_LT(rel_diff(logits(*m, tokens_, m->adapter_set({b})), logits(*m, tokens_, m->adapter_set({a}))), 1e-5);
}

// An F32 adapter file is applied in f16 (half the bytes per token), each matrix first scaled by a power of two,
// so any value range keeps f16's relative precision: values that are not f16 values, and a B of magnitude
// 1e-7 (f16 subnormals, a few bits of precision, without the scaling) with its scale 1e6 times larger, both
// stay within f16 rounding of the merged f32 weights.
TEST_F(Lora, F32AdaptersApplyInF16AtAnyMagnitude) {
  auto m = model::Model::load(base_);
  for (const float tiny : {1.0f, 1e-6f}) {
    auto ds = deltas(2.0f / tiny);
    uint32_t seed = 900;
    for (auto& d : ds) {
      d.a = randn(d.a.size(), seed++, 0.3f);
      d.b = randn(d.b.size(), seed++, 0.3f * tiny);
    }
    const auto want = logits(*model::Model::load(write_merged("lora-f32-merged", ds)), tokens_);
    const int a = m->mount_adapter(model::load_adapter(write_mlx("lora-f32-values", ds, 2.0f / tiny), m->config(),
                                                       tiny == 1.0f ? "f32" : "f32-tiny"));
    EXPECT_EQ(m->adapter(a)->delta(0, model::Proj::Q)->packed, DType::F16);
    const double diff = rel_diff(logits(*m, tokens_, m->adapter_set({a})), want);
    EXPECT_LT(diff, 2e-3) << "B magnitude " << tiny;
    std::printf("B magnitude %g: relative difference to the merged f32 weights %.2e\n", double(tiny), diff);
  }
}

// Adapters over a quantized base: an MLX 4-bit base with the adapter mounted equals an f32 model holding the
// base's dequantized weights with the adapter merged in. Both run on the scalar ISA, whose matmul uses the
// dequantized weights with f32 activations (the AVX2 path rounds activations to int8, so a quantized base
// and its f32 copy differ by more than the 1e-4 checked here, adapter or not).
TEST_F(Lora, QuantizedBaseMatchesItsDequantizedCopyWithTheAdapterMerged) {
  const std::string qdir = test::scratch_dir("lora-q4-base"), ddir = test::scratch_dir("lora-q4-dequant");
  model::write_synthetic_model(spec_, "mlx4", qdir);
  const auto ds = deltas(2.0f);
  // The dequantized copy, with the deltas merged.
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(qdir + "/config.json"));
  const int bits = cfg["quantization"]["bits"], gs = cfg["quantization"]["group_size"];
  cfg.erase("quantization");
  cfg.erase("quantization_config");
  std::ofstream(ddir + "/config.json") << cfg.dump();
  formats::SafetensorsFile st(qdir + "/model.safetensors");
  formats::SafetensorsWriter w;
  for (auto& [tname, t] : st.tensors()) {
    if (tname.size() > 7 && (tname.ends_with(".scales") || tname.ends_with(".biases"))) continue;
    std::vector<float> v;
    std::vector<int64_t> shape = t.shape;
    if (t.dtype == DType::U32) {
      const std::string mod = tname.substr(0, tname.size() - 7);
      const auto& sc = st.tensors().at(mod + ".scales");
      const auto& bi = st.tensors().at(mod + ".biases");
      const int64_t rows = t.shape[0], cols = t.shape[1] * 32 / bits, groups = cols / gs;
      v.resize(size_t(rows * cols));
      for (int64_t r = 0; r < rows; ++r)
        quant::dequantize_row(t.data + size_t(r) * size_t(cols * bits / 8), sc.data + size_t(r * groups) * 2, bi.data + size_t(r * groups) * 2,
                              DType::BF16, cols, bits, gs, v.data() + r * cols);
      shape = {rows, cols};
    } else {
      ASSERT_EQ(t.dtype, DType::BF16) << tname;
      v.resize(size_t(t.numel()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]);
    }
    merge(tname, ds, v);
    w.add_f32(tname, shape, v);
  }
  w.write(ddir + "/model.safetensors");

  const Isa isa = active_isa();
  set_active_isa(Isa::Scalar);
  auto q = model::Model::load(qdir);
  const int a = q->mount_adapter(model::load_adapter(write_mlx("lora-q4-adapter", ds, 2.0f), q->config(), "a"));
  const auto got = logits(*q, tokens_, q->adapter_set({a}));
  const auto want = logits(*model::Model::load(ddir), tokens_);
  const auto base = logits(*q, tokens_);
  set_active_isa(isa);
  ASSERT_GT(rel_diff(base, want), 1e-2);
  EXPECT_LT(rel_diff(got, want), 1e-4);
}

TEST_F(Lora, ZeroBChangesNothing) {
  auto m = model::Model::load(base_);
  const int idx = m->mount_adapter(model::load_adapter(write_mlx("lora-zero", deltas(2.0f, true), 2.0f), m->config(), "zero"));
  EXPECT_EQ(logits(*m, tokens_, m->adapter_set({idx})), logits(*m, tokens_));
}

TEST_F(Lora, ABatchMixingAdaptersGivesEachRowItsOwn) {
  auto m = model::Model::load(base_);
  auto ds_b = deltas(1.0f);
  for (auto& d : ds_b)
    for (auto& x : d.b) x = -x;
  const int a = m->mount_adapter(model::load_adapter(write_mlx("lora-mix-a", deltas(2.0f), 2.0f), m->config(), "a"));
  const int b = m->mount_adapter(model::load_adapter(write_mlx("lora-mix-b", ds_b, 1.0f), m->config(), "b"));
  const int32_t sets[3] = {m->adapter_set({a}), m->adapter_set({b}), 0};
  const std::vector<int32_t> prompts[3] = {{1, 5, 9, 200}, {1, 77, 8, 31, 4}, {1, 300, 12}};
  std::vector<float> alone[3];
  for (int i = 0; i < 3; ++i) {
    const auto l = logits(*m, prompts[i], sets[i]);
    alone[i].assign(l.end() - m->config().vocab_size, l.end());
  }
  auto cache = m->make_cache();
  model::Batch batch;
  int32_t seq[3];
  for (int i = 0; i < 3; ++i) seq[i] = cache->create_sequence();
  for (size_t t = 0; t < 5; ++t)
    for (int i = 0; i < 3; ++i)
      if (t < prompts[i].size()) batch.add(prompts[i][t], int32_t(t), seq[i], t + 1 == prompts[i].size(), sets[i]);
  const int V = m->config().vocab_size;
  std::vector<float> out(3 * size_t(V));
  m->forward(batch, *cache, out.data());
  // Rows with logits come out in batch order: sequence 2 ends first (t = 2), then 0 (t = 3), then 1 (t = 4).
  const int order[3] = {2, 0, 1};
  for (int j = 0; j < 3; ++j) {
    std::vector<float> got(out.begin() + j * V, out.begin() + (j + 1) * V);
    EXPECT_LT(rel_diff(got, alone[order[j]]), 1e-5) << "row of sequence " << order[j];
  }
  // Stacking: a then b is one set, distinct from each.
  EXPECT_NE(m->adapter_set({a, b}), sets[0]);
  EXPECT_EQ(m->adapter_set({a, b}), m->adapter_set({a, b}));
}

TEST_F(Lora, MalformedAdaptersAreClearErrors) {
  auto m = model::Model::load(base_);
  auto error = [&](const std::string& dir) -> std::string {
    try {
      model::load_adapter(dir, m->config(), "x");
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  auto ds = deltas(2.0f);
  ds[0].in = ds[0].in / 2;  // A no longer fits q_proj
  ds[0].a.resize(size_t(ds[0].rank * ds[0].in));
  EXPECT_NE(error(write_mlx("lora-bad-shape", ds, 2.0f)).find("model.layers.0.self_attn.q_proj: lora_a [128, 4] / lora_b [4, 256] do not fit the base's [256, 256] projection"), std::string::npos)
      << error(write_mlx("lora-bad-shape", ds, 2.0f));
  const std::string dora = write_mlx("lora-dora-no-m", deltas(2.0f), 2.0f);
  write_text(dora + "/adapter_config.json", R"({"fine_tune_type": "dora", "lora_parameters": {"scale": 2.0}})");
  EXPECT_NE(error(dora).find("a DoRA adapter without the module's magnitude vector"), std::string::npos) << error(dora);
  EXPECT_NE(error(test::scratch_dir("lora-empty")).find("adapter_config.json: missing"), std::string::npos);
  const std::string broken = write_mlx("lora-broken-json", deltas(2.0f), 2.0f);
  write_text(broken + "/adapter_config.json", "{");
  EXPECT_NE(error(broken).find("not valid JSON"), std::string::npos);
}
