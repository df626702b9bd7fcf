// Decode attention timing over one layer's KV cache (no weights): time per token-head and the bytes of
// K/V read per second, per KV precision, at chosen depths. Shapes as Qwen3-0.6B (8 KV heads x 128, GQA 2).
// Usage: attention_bench [--depth 4096,16384] [--bits 16,8,4] [--group 64] [--heads 8] [--rep 2] [--layers 28]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kv/kv_cache.h"
#include "util/cpu.h"

using namespace optiq;

namespace {
std::vector<int> ints(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p) ++p;
  }
  return v;
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<int> depths{4096, 16384}, bits{16, 8, 4};
  int group = 64, heads = 8, rep = 2, layers = 28, hd = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--depth")) depths = ints(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--bits")) bits = ints(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--group")) group = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--heads")) heads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rep")) rep = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(argv[i + 1]);
  }
  const int threads = compute_threads();
  std::printf("threads %d, isa %s, %d KV heads x %d, GQA %d, %d layers per token\n", threads, isa_name(active_isa()), heads, hd, rep, layers);
  std::printf("| bits | depth | ms/token (all layers) | ns/token-head | GB/s of K/V |\n|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int depth : depths)
    for (int b : bits) {
      kv::KvShape sh;
      sh.n_layers = 1;
      sh.n_kv_heads = heads;
      sh.head_dim = hd;
      kv::KvSpec spec = kv::kv_spec_from_flags("", b, group, 0);
      kv::KvCache cache(sh, spec);
      int32_t s = cache.create_sequence();
      cache.extend(s, depth);
      std::vector<float> k(size_t(heads) * hd), v(k.size());
      for (int t = 0; t < depth; ++t) {
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        cache.store(s, 0, t, k.data(), v.data());
      }
      kernels::KvLayerView view = cache.view(s, 0);
      std::vector<float> q(size_t(heads) * rep * hd), out(q.size());
      for (auto& x : q) x = nd(rng);
      int limit = depth;
      std::vector<kernels::AttentionTile> tiles;
      for (int g = 0; g < heads; ++g) {
        kernels::AttentionTile t;
        t.kv = &view;
        t.kv_head = g;
        t.rep = rep;
        t.q = q.data() + size_t(g) * rep * hd;
        t.out = out.data() + size_t(g) * rep * hd;
        t.limits = &limit;
        t.scale = 0.088f;
        tiles.push_back(t);
      }
      kernels::attention(tiles, threads);  // warm-up
      const int reps = std::max(3, 200000 / depth);
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        kernels::attention(tiles, threads);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double bytes = double(spec.bytes_per_token(sh)) * depth;
      std::printf("| %d | %d | %.2f | %.1f | %.2f |\n", b, depth, best * 1e3 * layers, best * 1e9 / (double(depth) * heads),
                  bytes / best / 1e9);
    }
  return 0;
}
