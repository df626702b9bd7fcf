// KV sensitivity measurement: the partial passes (rerunning only the layers after the quantized one) give
// exactly what a full run with that one layer quantized gives, and a layer planted to be sensitive is the
// one calibration protects.
#include "engine/kv_calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "formats/safetensors.h"
#include "kv/kv_allocate.h"
#include "model/synthetic.h"
#include "test_paths.h"

using namespace optiq;

namespace {

std::vector<std::vector<int32_t>> random_samples(int n, int len, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (auto& s : out)
    for (int i = 0; i < len; ++i) s.push_back(int32_t(rng() % uint32_t(vocab)));
  return out;
}

// A tiny Qwen2-shaped model (8 layers, head_dim 64, random weights) whose layer-0 keys carry one huge
// channel per head through the k_proj bias: the outlier sets each group's range, so 4-bit codes lose the
// other channels of that layer's keys. (Qwen2's k bias is what makes real Qwen models KV-sensitive.)
std::string planted_model(const std::string& dir) {
  model::SyntheticSpec spec = model::synthetic_shape("tiny-qwen2");
  spec.num_hidden_layers = 8;
  model::write_synthetic_model(spec, "f32", dir);
  const std::string path = dir + "/model.safetensors";
  formats::SafetensorsWriter w;
  {
    formats::SafetensorsFile f(path);
    for (auto& [name, t] : f.tensors()) {
      std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
      if (name == "model.layers.0.self_attn.k_proj.bias") {
        std::vector<float> b(bytes.size() / 4);
        std::memcpy(b.data(), bytes.data(), bytes.size());
        for (size_t h = 0; h < b.size() / size_t(spec.head_dim); ++h) b[h * size_t(spec.head_dim) + 5] = 60.0f;
        std::memcpy(bytes.data(), b.data(), bytes.size());
      }
      w.add(name, t.dtype, t.shape, std::move(bytes));
    }
    for (auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  }
  w.write(path);
  return dir;
}

}  // namespace

TEST(KvCalibration, PartialPassesEqualFullRunsWithOneLayerQuantized) {
  const std::string dir = test::scratch_dir("calib-partial");
  model::SyntheticSpec spec = model::synthetic_shape("tiny-qwen3");
  spec.num_hidden_layers = 3;
  model::write_synthetic_model(spec, "f32", dir);
  auto m = model::Model::load(dir);
  const auto samples = random_samples(2, 40, spec.vocab_size, 3);
  engine::KvCalibrationOptions opts;
  opts.candidate_bits = {8, 4, 4};  // unsorted, repeated: measured once each, ascending
  int calls = 0;
  double last_done = 0, last_total = 0;
  opts.progress = [&](double done, double total) {
    EXPECT_GT(done, last_done);
    last_done = done, last_total = total;
    ++calls;
  };
  const auto sens = engine::measure_kv_sensitivity(*m, samples, opts);
  ASSERT_EQ(sens.size(), 3u);
  EXPECT_EQ(calls, 2 * (1 + 3 * 2));
  EXPECT_EQ(last_done, last_total);
  for (const auto& ls : sens) {
    ASSERT_EQ(ls.at.size(), 2u);
    for (auto& [bits, st] : ls.at) {
      kv::KvSpec one;
      one.layers[ls.layer_idx] = {bits, 64};
      const engine::DistributionStats full = engine::compare_kv_spec(*m, samples, one);
      EXPECT_EQ(st.n, 2 * 39);
      EXPECT_EQ(st.kl_sum, full.kl_sum) << "layer " << ls.layer_idx << " bits " << bits;
      EXPECT_EQ(st.nll, full.nll);
      EXPECT_EQ(st.same_top1, full.same_top1);
      EXPECT_GT(st.kl_sum, 0.0);
    }
    EXPECT_LT(ls.at.at(8).kl_mean(), ls.at.at(4).kl_mean());
  }
  // fp16 against itself: nothing changes.
  const auto same = engine::compare_kv_spec(*m, samples, kv::KvSpec{});
  EXPECT_EQ(same.kl_sum, 0.0);
  EXPECT_EQ(same.same_top1, same.n);
}

TEST(KvCalibration, APlantedSensitiveLayerGetsEightBits) {
  auto m = model::Model::load(planted_model(test::scratch_dir("calib-planted")));
  const auto samples = random_samples(3, 64, m->config().vocab_size, 5);
  const auto sens = engine::measure_kv_sensitivity(*m, samples, {});
  ASSERT_EQ(sens.size(), 8u);
  std::vector<std::map<int, double>> cost;
  for (auto& ls : sens) cost.push_back({{4, ls.at.at(4).kl_mean()}, {8, ls.at.at(8).kl_mean()}});
  // Layer 0 at 4 bits hurts far more than any other layer does.
  for (size_t l = 1; l < 8; ++l) EXPECT_GT(cost[0][4], 5 * cost[l][4]) << "layer " << l;
  // One upgrade fits at 4.5 mean bits: layer 0 takes it.
  EXPECT_EQ(kv::allocate_kv_bits(cost, 4.5).bits, (std::vector<int>{8, 4, 4, 4, 4, 4, 4, 4}));
  // At 5.0 (40 bits over 8 layers) two fit; layer 0 is one of them.
  auto five = kv::allocate_kv_bits(cost, 5.0).bits;
  EXPECT_EQ(five[0], 8);
  EXPECT_EQ(std::count(five.begin(), five.end(), 8), 2);
}
