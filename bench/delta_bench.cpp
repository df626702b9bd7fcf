// Gated DeltaNet timing (no weights): one value head's delta rule over T tokens, recurrent vs chunked form,
// in tokens per second per head and FLOP/s, at Qwen3.5's head dims (Dk = Dv = 128). One thread; a layer of
// Qwen3.5-9B runs 32 such heads, split over the cores.
// Usage: delta_bench [--tokens 1,16,64,512] [--dk 128] [--dv 128] [--chunk 64]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gated_delta.h"
#include "util/cpu.h"

using namespace optiq;

int main(int argc, char** argv) {
  std::vector<int> tokens{1, 16, 64, 512};
  int Dk = 128, Dv = 128, chunk = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) {
      tokens.clear();
      for (const char* p = argv[i + 1]; *p;) {
        tokens.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p) ++p;
      }
    } else if (!std::strcmp(argv[i], "--dk")) Dk = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dv")) Dv = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--chunk")) chunk = std::atoi(argv[i + 1]);
  }
  std::printf("isa %s, Dk %d, Dv %d, chunk %d\n", isa_name(active_isa()), Dk, Dv, chunk);
  std::printf("| tokens | form      | tokens/s/head | GFLOP/s |\n|--------|-----------|---------------|---------|\n");
  for (int T : tokens) {
    std::mt19937 rng{7};
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    std::vector<float> q(size_t(T) * size_t(Dk)), k(q.size()), v(size_t(T) * size_t(Dv)), out(v.size());
    std::vector<float> g(static_cast<size_t>(T), -0.05f), beta(static_cast<size_t>(T), 0.5f), S(size_t(Dv) * size_t(Dk));
    for (auto& x : q) x = u(rng);
    for (auto& x : k) x = u(rng);
    for (auto& x : v) x = u(rng);
    kernels::DeltaHeadIo io;
    io.q = q.data(), io.k = k.data(), io.qk_stride = size_t(Dk);
    io.v = v.data(), io.v_stride = size_t(Dv);
    io.g = g.data(), io.beta = beta.data(), io.ab_stride = 1;
    io.out = out.data(), io.out_stride = size_t(Dv);
    for (bool chunked : {false, true}) {
      const int reps = std::max(3, 20000 / T);
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) {
        if (chunked) kernels::gated_delta_chunked(io, T, Dk, Dv, S.data(), chunk);
        else kernels::gated_delta_recurrent(io, T, Dk, Dv, S.data());
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tps = double(T) * reps / s;
      // The recurrent form's arithmetic: decay, S k, update, S q: 4 multiply-adds per state element per token.
      const double flops = 8.0 * Dk * Dv * tps;
      std::printf("| %6d | %-9s | %13.0f | %7.1f |\n", T, chunked ? "chunked" : "recurrent", tps, flops / 1e9);
    }
  }
}
