// Decode attention timing (no weights): time per token-head and the bytes of K/V read per second, per KV
// precision, at chosen depths. Shapes as Qwen3-0.6B (8 KV heads x 128, GQA 2). By default one layer's cache
// is timed and scaled by --layers (cache-resident at small depths: the kernel's arithmetic); --distinct
// gives every layer its own cache and times a pass over all of them (streamed from DRAM, as in decode).
// --avx512-ab (CPUs with AVX-512): the 256-bit and the 512-bit kernels alternate pass by pass in one process,
// one row each (a noisy machine slows both alike); the median pass is printed beside the best.
// --seqs N: N sequences of that depth each, all in one call per layer, as a batch of N decode streams reads them.
// Usage: attention_bench [--depth 4096,16384] [--bits 16,8,4] [--group 64] [--heads 8] [--rep 2] [--layers 28]
//                        [--seqs 1] [--distinct] [--reps N] [--avx512-ab]
#include <algorithm>
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
  int group = 64, heads = 8, rep = 2, layers = 28, hd = 128, seqs = 1;
  bool distinct = false, ab = false;
  int reps_flag = 0;  // timed passes; 0: enough for about 200k token-heads
  for (int i = 1; i < argc; ++i) {
    const char* opt = argv[i];
    const char* val = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!std::strcmp(opt, "--distinct") || !std::strcmp(opt, "--avx512-ab")) {
      (opt[2] == 'd' ? distinct : ab) = true;
      continue;
    }
    if (val) ++i;
    if (val && !std::strcmp(opt, "--depth")) depths = ints(val);
    else if (val && !std::strcmp(opt, "--bits")) bits = ints(val);
    else if (val && !std::strcmp(opt, "--group")) group = std::atoi(val);
    else if (val && !std::strcmp(opt, "--heads")) heads = std::atoi(val);
    else if (val && !std::strcmp(opt, "--rep")) rep = std::atoi(val);
    else if (val && !std::strcmp(opt, "--layers")) layers = std::atoi(val);
    else if (val && !std::strcmp(opt, "--seqs")) seqs = std::atoi(val);
    else if (val && !std::strcmp(opt, "--reps")) reps_flag = std::atoi(val);
    else {
      std::fprintf(stderr, "attention_bench: unknown or incomplete option %s\n", opt);
      return 2;
    }
  }
  if (seqs < 1 || seqs > 256) {
    std::fprintf(stderr, "attention_bench: --seqs takes 1 to 256\n");
    return 2;
  }
  const int threads = compute_threads();
  std::printf("threads %d, isa %s%s, %d KV heads x %d, GQA %d, %d layers per token, %d sequence(s)\n", threads,
              isa_name(active_isa()), avx512_active() ? " (+avx512)" : "", heads, hd, rep, layers, seqs);
  if (ab && !avx512_active()) {
    std::fprintf(stderr, "attention_bench: --avx512-ab needs a CPU with AVX-512 (and no OPTIQ_FORCE_ISA)\n");
    return 2;
  }
  std::vector<int> arms = ab ? std::vector<int>{0, 1} : std::vector<int>{-1};  // avx512 off / on; -1: as set
  std::printf("| bits | depth | kernels | ms/step (all layers) | ns/token-head | median ns/token-head | GB/s of K/V |\n"
              "|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int depth : depths)
    for (int b : bits) {
      // --distinct: every layer has its own cache, so a pass over all layers streams them from DRAM as
      // decode does; otherwise one layer is timed (cache-resident at small depths) and scaled by layers.
      const int nl = distinct ? layers : 1;
      kv::KvShape sh;
      sh.n_layers = nl;
      sh.n_kv_heads = heads;
      sh.head_dim = hd;
      kv::KvSpec spec = kv::kv_spec_from_flags("", b, group, 0);
      kv::KvCache cache(sh, spec);
      std::vector<int32_t> ids;
      for (int i = 0; i < seqs; ++i) {
        ids.push_back(cache.create_sequence());
        cache.extend(ids.back(), depth);
      }
      // Random rows, drawn once for the first layer's tokens and repeated for
      // the other layers.
      std::vector<float> k(size_t(depth) * heads * hd), v(k.size());
      for (auto &x : k)
        x = nd(rng);
      for (auto &x : v)
        x = nd(rng);
      for (int32_t s : ids)
        for (int l = 0; l < nl; ++l)
          for (int t = 0; t < depth; ++t) {
            const size_t o = size_t(t) * heads * hd;
            cache.store(s, l, t, k.data() + o, v.data() + o);
          }
      std::vector<kernels::KvLayerView> views; // [layer][sequence]
      for (int l = 0; l < nl; ++l)
        for (int32_t s : ids)
          views.push_back(cache.view(s, l));
      const size_t q_seq = size_t(heads) * rep * hd;
      std::vector<float> q(q_seq * size_t(seqs)), out(q.size());
      for (auto &x : q)
        x = nd(rng);
      int limit = depth;
      std::vector<std::vector<kernels::AttentionTile>> tiles(
          static_cast<size_t>(nl));
      for (int l = 0; l < nl; ++l)
        for (int i = 0; i < seqs; ++i)
          for (int g = 0; g < heads; ++g) {
            kernels::AttentionTile t;
            t.kv = &views[size_t(l * seqs + i)];
            t.kv_head = g;
            t.rep = rep;
            t.q = q.data() + q_seq * size_t(i) + size_t(g) * rep * hd;
            t.out = out.data() + q_seq * size_t(i) + size_t(g) * rep * hd;
            t.limits = &limit;
            t.scale = 0.088f;
            tiles[size_t(l)].push_back(t);
          }
      auto pass = [&] {
        for (const auto& lt : tiles) kernels::attention(lt, threads);
      };
      pass();  // warm-up
      const int reps = reps_flag > 0 ? reps_flag : std::max(3, 200000 / depth / nl / seqs);
      std::vector<std::vector<double>> times(arms.size());
      for (int r = 0; r < reps; ++r)
        for (size_t a = 0; a < arms.size(); ++a) {
          if (arms[a] >= 0) set_avx512_active(arms[a] == 1);
          auto t0 = std::chrono::steady_clock::now();
          pass();
          times[a].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / nl);
        }
      const double bytes = double(spec.bytes_per_token(sh)) / nl * depth * seqs;
      for (size_t a = 0; a < arms.size(); ++a) {
        std::vector<double>& t = times[a];
        std::sort(t.begin(), t.end());
        const double best = t.front(), median = t[t.size() / 2];
        const char* label = arms[a] < 0 ? (avx512_active() ? "avx512" : isa_name(active_isa())) : arms[a] ? "avx512" : "avx2";
        std::printf("| %d | %d | %s | %.2f | %.1f | %.1f | %.2f |\n", b, depth, label, best * 1e3 * layers,
                    best * 1e9 / (double(depth) * heads * seqs), median * 1e9 / (double(depth) * heads * seqs),
                    bytes / best / 1e9);
      }
    }
  return 0;
}
