// optiq bench: prefill and decode speed at chosen context depths, with bytes read per decode token and
// the implied bandwidth, against this machine's read bandwidth measured in the same run.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "model/model.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::cli {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best-of-5 read bandwidth over a 1 GiB buffer with compute_threads() threads, in GB/s.
double measure_read_bandwidth() {
  const size_t n = (size_t(1) << 30) / 8;
  std::vector<uint64_t> buf(n, 1);
  const int threads = compute_threads();
  double best = 0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = now_s();
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; i += 4) total += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3];
    double dt = now_s() - t0;
    sink = sink + total;
    best = std::max(best, double(n * 8) / dt / 1e9);
  }
  return best;
}

// Fills positions [0, depth) of a sequence with random K/V: decode speed depends on how much is cached,
// not on its values, and this avoids minutes of prefill before each deep measurement.
void fill_cache(kv::KvCache& cache, int32_t seq, const model::ModelConfig& c, int depth) {
  if (depth == 0) return;
  cache.extend(seq, depth);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> row(size_t(cache.row_elems()));
  for (auto& x : row) x = f32_to_f16(u(rng));
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (int p = 0; p < depth; ++p) {
      std::copy(row.begin(), row.end(), cache.key(seq, l, p));
      std::copy(row.begin(), row.end(), cache.value(seq, l, p));
    }
}

}  // namespace

int run_bench(int argc, char** argv) {
  std::string model_path, depths_s = "0";
  int gen = 64, prompt_len = 512, chunk = 512;
  bool no_bandwidth = false;
  Flags f("optiq bench MODEL [--depth 0,4096,16384] [--gen 64] [--prompt-len 512]");
  f.add("model", &model_path, "model folder or .gguf file (or the first argument)");
  f.add("depth", &depths_s, "comma-separated context depths for decode (default 0)");
  f.add("gen", &gen, "tokens to decode at each depth (default 64)");
  f.add("prompt-len", &prompt_len, "prompt tokens for the prefill measurement (default 512; 0 skips it)");
  f.add("prefill-step-size", &chunk, "prompt tokens per prefill step (default 512)");
  f.add_bool("no-bandwidth", &no_bandwidth, "skip measuring the machine's read bandwidth");
  f.parse(argc, argv, 2);
  if (f.help_requested()) {
    std::fputs(f.help().c_str(), stdout);
    return 0;
  }
  if (model_path.empty() && !f.positionals().empty()) model_path = f.positionals()[0];
  if (model_path.empty()) throw Error(ErrorKind::InvalidArgument, "no model given (optiq bench MODEL)");
  std::vector<int> depths = parse_int_list(depths_s, "depth");
  if (gen <= 0) throw Error(ErrorKind::InvalidArgument, "--gen must be positive");

  auto model = model::Model::load(model_path);
  const auto& c = model->config();
  const int threads = compute_threads();
  const double bw = no_bandwidth ? 0.0 : measure_read_bandwidth();
  std::fprintf(stderr, "model: %s (%s, %d layers, hidden %d), weights: %s\n", model_path.c_str(), c.model_type.c_str(),
               c.num_hidden_layers, c.hidden_size, model->weight_summary().c_str());
  std::fprintf(stderr, "threads: %d, isa: %s, read bandwidth: %.1f GB/s\n", threads, isa_name(active_isa()), bw);

  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(3, c.vocab_size - 1);
  std::vector<float> logits(size_t(c.vocab_size));

  double prefill_tps = 0;
  if (prompt_len > 0) {
    auto cache = model->make_cache();
    int32_t seq = cache->create_sequence();
    model::Batch b;
    // Warm-up step so that page faults of the mmap'd weights are not timed.
    b.add(tok(rng), 0, seq, true);
    model->forward(b, *cache, logits.data());
    cache->truncate(seq, 0);
    double t0 = now_s();
    for (int s = 0; s < prompt_len; s += chunk) {
      b.clear();
      for (int i = s; i < std::min(prompt_len, s + chunk); ++i) b.add(tok(rng), i, seq, i + 1 == prompt_len);
      model->forward(b, *cache, logits.data());
    }
    prefill_tps = prompt_len / (now_s() - t0);
  }

  std::printf("| %-10s | %8s | %12s | %6s | %12s | %14s | %8s | %7s |\n", "model", "depth", "prefill t/s", "gen",
              "decode t/s", "bytes/token", "GB/s", "of bw");
  std::printf("|------------|----------|--------------|--------|--------------|----------------|----------|---------|\n");
  const int64_t kv_row_bytes = int64_t(c.num_key_value_heads) * c.head_dim * 2 /*K,V*/ * 2 /*fp16*/ * c.num_hidden_layers;
  std::vector<nlohmann::ordered_json> rows;
  for (int depth : depths) {
    auto cache = model->make_cache();
    int32_t seq = cache->create_sequence();
    fill_cache(*cache, seq, c, depth);
    model::Batch b;
    b.add(tok(rng), depth, seq, true);
    model->forward(b, *cache, logits.data());  // warm-up step at this depth
    double t0 = now_s();
    for (int i = 1; i <= gen; ++i) {
      b.clear();
      b.add(tok(rng), depth + i, seq, true);
      model->forward(b, *cache, logits.data());
    }
    double dt = now_s() - t0;
    double tps = gen / dt;
    int64_t bytes = model->weight_bytes_per_token() + kv_row_bytes * (int64_t(depth) + 1 + gen / 2);
    double gbs = double(bytes) * tps / 1e9;
    std::printf("| %-10s | %8d | %12.1f | %6d | %12.2f | %14lld | %8.2f | %6.1f%% |\n", c.model_type.c_str(), depth, prefill_tps, gen,
                tps, (long long)bytes, gbs, bw > 0 ? 100.0 * gbs / bw : 0.0);
    nlohmann::ordered_json j = {{"bench", "optiq"}, {"model", model_path}, {"weights", model->weight_summary()},
                                {"threads", threads}, {"isa", isa_name(active_isa())}, {"depth", depth},
                                {"prompt_len", prompt_len}, {"prefill_tok_s", prefill_tps}, {"gen", gen},
                                {"decode_tok_s", tps}, {"bytes_per_token", bytes}, {"gb_s", gbs},
                                {"read_bandwidth_gb_s", bw}};
    rows.push_back(j);
  }
  for (auto& j : rows) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace optiq::cli
