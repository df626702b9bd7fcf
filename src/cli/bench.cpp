// optiq bench: prefill and decode speed at chosen context depths, with bytes read per decode token and
// the implied bandwidth, against this machine's read bandwidth measured in the same run.
#include "util/omp.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cli/adapters.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "hub/hub.h"
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
  [[maybe_unused]] const int threads = compute_threads();  // unused where OpenMP is off (the TSan build)
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

// Fills positions [0, depth) of a sequence with random K/V rows, stored (and quantized) as the forward
// pass stores them: decode speed depends on how much is cached, not on its values, and this avoids
// minutes of prefill before each deep measurement.
void fill_cache(kv::KvCache& cache, int32_t seq, int depth) {
  if (depth == 0) return;
  cache.extend(seq, depth);
  const kv::KvShape& sh = cache.shape();
  const size_t row = size_t(sh.n_kv_heads) * size_t(sh.head_dim);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> rows(64 * row);
  for (auto& x : rows) x = u(rng);
  for (int l = 0; l < sh.n_layers; ++l) {
    if (!sh.layer_has_kv(l)) continue;
#pragma omp parallel for num_threads(compute_threads()) schedule(static)
    for (int p = 0; p < depth; ++p) {
      const float* k = rows.data() + size_t(p % 64) * row;
      const float* v = rows.data() + size_t((p * 7 + 3) % 64) * row;
      cache.store(seq, l, p, k, v);
    }
  }
}

}  // namespace

// One KV cache setting to measure: a label and its spec.
struct KvVariant {
  std::string label;
  kv::KvSpec spec;
};

// --kv-bits and --kv-config take comma-separated lists here, so that several KV settings are measured
// side by side in one run (each bits value is a uniform variant, each file a variant of its own).
std::vector<KvVariant> kv_variants(const std::string& bits_list, const std::string& configs, int group_size,
                                   const std::string& rotation) {
  std::vector<KvVariant> out;
  auto add = [&](const std::string& label, const std::string& file, int bits) {
    KvFlags k;
    k.config = file;
    k.bits = bits;
    k.group_size = group_size;
    k.rotation = rotation;
    out.push_back({label, k.spec()});
  };
  if (!bits_list.empty())
    for (int b : parse_int_list(bits_list, "kv-bits"))
      add(b == 16 ? "fp16" : "q" + std::to_string(b) + " g" + std::to_string(group_size ? group_size : 64), "", b);
  for (size_t s = 0; s < configs.size();) {
    size_t c = configs.find(',', s);
    if (c == std::string::npos) c = configs.size();
    std::string file = configs.substr(s, c - s);
    if (!file.empty()) {
      size_t slash = file.find_last_of('/');
      std::string label = file.substr(slash == std::string::npos ? 0 : slash + 1);
      // A config file in a folder named after the model (kv/MODEL/kv_config.json) is labelled by the folder.
      if (label == "kv_config.json" && slash != std::string::npos && slash > 0) {
        size_t prev = file.find_last_of('/', slash - 1);
        label = file.substr(prev == std::string::npos ? 0 : prev + 1, slash - (prev == std::string::npos ? 0 : prev + 1));
      }
      add(label, file, 0);
    }
    s = c + 1;
  }
  if (out.empty()) add("fp16", "", 0);
  return out;
}

int run_bench(int argc, char** argv) {
  std::string model_path, depths_s = "0", kv_bits, kv_configs, rotation = "auto";
  int gen = 64, prompt_len = 512, chunk = 512, kv_group = 0;
  int streams = 1;
  bool no_bandwidth = false, interleave = false;
  std::vector<std::string> adapters;
  Flags f("optiq bench MODEL [--depth 0,4096,16384] [--gen 64] [--prompt-len 512] [--kv-bits 16,8,4] [--kv-config A.json,B.json] "
          "[--adapter PATH] [--streams 8] [--interleave]");
  f.add("model", &model_path, "model folder or .gguf file (or the first argument)");
  f.add("depth", &depths_s, "comma-separated context depths for decode (default 0)");
  f.add("gen", &gen, "tokens to decode at each depth (default 64)");
  f.add("prompt-len", &prompt_len, "prompt tokens for the prefill measurement (default 512; 0 skips it)");
  f.add("prefill-step-size", &chunk, "prompt tokens per prefill step (default 512)");
  f.add("kv-bits", &kv_bits, "comma-separated KV cache bits to measure side by side, 16 = fp16 (default 16)");
  f.add("kv-config", &kv_configs, "comma-separated kv_config.json files to measure side by side");
  f.add("kv-group-size", &kv_group, "KV quantization group size (default 64)");
  f.add("kv-rotation", &rotation, "Hadamard rotation of quantized K/V: auto | on | off (default auto)");
  f.add("adapter", &adapters,
        "also decode with this LoRA adapter (PATH or NAME=PATH; repeat to stack), step by step alternating with the base");
  f.add("streams", &streams,
        "also decode this many sequences in one batch (each at the depth), step by step alternating with one sequence, "
        "and print the batch's tokens/s against one sequence's as the median of the rounds' ratios");
  f.add_bool("interleave", &interleave,
             "decode the KV variants step by step in turn at each depth, and print each one's speed against the "
             "first as the median of the rounds' ratios (steady on a noisy machine)");
  f.add_bool("no-bandwidth", &no_bandwidth, "skip measuring the machine's read bandwidth");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  model_path = f.model_arg(model_path, "optiq bench MODEL");
  std::vector<int> depths = parse_int_list(depths_s, "depth");
  if (gen <= 0) throw Error(ErrorKind::InvalidArgument, "--gen must be positive");
  std::vector<KvVariant> variants = kv_variants(kv_bits, kv_configs, kv_group, rotation);
  if (interleave && !adapters.empty())
    throw Error(ErrorKind::InvalidArgument, "--interleave and --adapter cannot be combined (each alternates on its own)");
  if (streams < 1 || streams > 256) throw Error(ErrorKind::InvalidArgument, "--streams must be between 1 and 256");
  if (streams > 1 && (interleave || !adapters.empty()))
    throw Error(ErrorKind::InvalidArgument, "--streams cannot be combined with --interleave or --adapter (each alternates on its own)");
  if (interleave && variants.size() < 2)
    throw Error(ErrorKind::InvalidArgument, "--interleave needs two or more KV variants (--kv-bits / --kv-config)");

  model_path = hub::resolve(model_path, hub::Kind::Model);
  auto model = model::Model::load(model_path);
  // With adapters, every decode step of the base is followed by one of a second sequence under the adapters,
  // so that a noisy machine slows both alike; the two are timed apart.
  const int32_t adapter_set = adapters.empty() ? 0 : model->adapter_set(mount_adapters(*model, adapters));
  int64_t adapter_bytes = 0;  // what decode reads of them per token: A and B in 16 bits
  for (const auto& a : model->adapters())
    for (const auto& layer : a->layers)
      for (const auto& d : layer)
        if (d) adapter_bytes += int64_t(d->a16.size() + d->b16.size()) * 2;
  const auto& c = model->config();
  const kv::KvShape shape = model->kv_shape();
  for (auto& v : variants) v.spec.validate(shape);
  const int threads = compute_threads();
  const double bw = no_bandwidth ? 0.0 : measure_read_bandwidth();
  std::fprintf(stderr, "model: %s (%s, %d layers, hidden %d), weights: %s\n", model_path.c_str(), c.model_type.c_str(),
               c.num_hidden_layers, c.hidden_size, model->weight_summary().c_str());
  const std::string isa = std::string(isa_name(active_isa())) + (avx512_active() ? "+avx512" : "");
  std::fprintf(stderr, "threads: %d, isa: %s, read bandwidth: %.1f GB/s\n", threads, isa.c_str(), bw);
  for (auto& v : variants) std::fprintf(stderr, "KV %s:\n%s\n", v.label.c_str(), v.spec.describe(shape).c_str());

  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(3, c.vocab_size - 1);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));

  std::printf("| %-10s | %-14s | %8s | %12s | %6s | %12s | %14s | %8s | %7s |\n", "model", "kv", "depth", "prefill t/s", "gen",
              "decode t/s", "bytes/token", "GB/s", "of bw");
  std::printf("|------------|----------------|----------|--------------|--------|--------------|----------------|----------|---------|\n");
  std::vector<nlohmann::ordered_json> rows;
  std::vector<double> prefill(variants.size(), 0.0);
  for (size_t v = 0; v < variants.size() && prompt_len > 0; ++v) {
    auto cache = model->make_cache(variants[v].spec);
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
    prefill[v] = prompt_len / (now_s() - t0);
  }
  // An arm decodes one sequence (or `streams` sequences in one batch): a KV variant, with or without the
  // adapters. The arms of a group take their decode steps in turn, so that a noisy machine slows them alike;
  // each arm after the first is compared with the first by the median of the rounds' ratios of tokens/s (a
  // burst of noise moves a few rounds, not the median).
  struct Arm { size_t var; bool lora; int streams = 1; };
  auto run_group = [&](const std::vector<Arm>& arms, int depth) {
    const size_t n = arms.size();
    std::vector<std::unique_ptr<kv::KvCache>> caches;
    std::vector<std::vector<int32_t>> seqs(n);
    model::Batch b;
    auto fill_batch = [&](size_t k, int pos) {
      b.clear();
      for (int32_t s : seqs[k]) b.add(tok(rng), pos, s, true, arms[k].lora ? adapter_set : 0);
    };
    for (size_t k = 0; k < n; ++k) {
      caches.push_back(model->make_cache(variants[arms[k].var].spec));
      for (int s = 0; s < arms[k].streams; ++s) {
        seqs[k].push_back(caches.back()->create_sequence());
        fill_cache(*caches.back(), seqs[k].back(), depth);
      }
      if (logits.size() < size_t(arms[k].streams) * size_t(c.vocab_size)) logits.resize(size_t(arms[k].streams) * size_t(c.vocab_size));
      fill_batch(k, depth);
      model->forward(b, *caches.back(), logits.data());  // warm-up step at this depth
    }
    std::vector<double> dt(n, 0.0), step(n, 0.0);
    std::vector<std::vector<double>> ratio(n);  // arm k's time per token / arm 0's in the same round
    for (int i = 1; i <= gen; ++i) {
      for (size_t k = 0; k < n; ++k) {
        fill_batch(k, depth + i);
        const double t0 = now_s();
        model->forward(b, *caches[k], logits.data());
        step[k] = (now_s() - t0) / arms[k].streams;
        dt[k] += step[k];
      }
      for (size_t k = 1; k < n; ++k) ratio[k].push_back(step[k] / step[0]);
    }
    for (size_t k = 0; k < n; ++k) {
      const KvVariant& var = variants[arms[k].var];
      const int64_t kv_row_bytes = var.spec.bytes_per_token(shape);
      const double tps = gen / dt[k];
      const int64_t bytes = (model->weight_bytes_per_token() + (arms[k].lora ? adapter_bytes : 0)) / arms[k].streams +
                            kv_row_bytes * (int64_t(depth) + 1 + gen / 2);
      const double gbs = double(bytes) * tps / 1e9;
      const std::string label = arms[k].lora     ? var.label + " +lora"
                                : arms[k].streams > 1 ? var.label + " x" + std::to_string(arms[k].streams)
                                                      : var.label;
      std::printf("| %-10s | %-14s | %8d | %12.1f | %6d | %12.2f | %14lld | %8.2f | %6.1f%% |\n", c.model_type.c_str(),
                  label.c_str(), depth, prefill[arms[k].var], gen, tps, (long long)bytes, gbs, bw > 0 ? 100.0 * gbs / bw : 0.0);
      std::fflush(stdout);
      nlohmann::ordered_json j = {{"bench", "optiq"}, {"model", model_path}, {"weights", model->weight_summary()},
                                  {"kv", var.label}, {"kv_bytes_per_token", kv_row_bytes},
                                  {"threads", threads}, {"isa", isa}, {"depth", depth},
                                  {"prompt_len", prompt_len}, {"prefill_tok_s", prefill[arms[k].var]}, {"gen", gen},
                                  {"decode_tok_s", tps}, {"bytes_per_token", bytes}, {"gb_s", gbs},
                                  {"read_bandwidth_gb_s", bw}, {"streams", arms[k].streams}};
      if (k == 0) {
        rows.push_back(j);
        continue;
      }
      std::vector<double>& r = ratio[k];
      std::sort(r.begin(), r.end());
      const size_t m = r.size() / 2;
      const double med = r.size() % 2 ? r[m] : 0.5 * (r[m - 1] + r[m]);
      const std::string& first = variants[arms[0].var].label;
      if (arms[k].streams > 1) {
        j["streams_vs_one"] = 1 / med;
        std::fprintf(stderr,
                     "%s, depth %d: %d streams in one batch decode %.2fx the tokens/s of one stream (median of %d rounds; "
                     "%.2fx in total time)\n",
                     var.label.c_str(), depth, arms[k].streams, 1 / med, gen, dt[0] / dt[k]);
      } else if (arms[k].lora) {
        j["adapters"] = adapters, j["adapter_overhead"] = med - 1;
        std::fprintf(stderr,
                     "%s, depth %d: a decode step with the adapters takes %.1f%% longer than the base step before it "
                     "(median of %d pairs; %.1f%% in total time)\n",
                     var.label.c_str(), depth, 100.0 * (med - 1), gen, 100.0 * (dt[k] / dt[0] - 1));
      } else {
        j["speedup_vs_first"] = 1 / med, j["first_kv"] = first;
        std::fprintf(stderr, "depth %d: %s decodes %.2fx as fast as %s (median of %d rounds; %.2fx in total time)\n",
                     depth, var.label.c_str(), 1 / med, first.c_str(), gen, dt[0] / dt[k]);
      }
      rows.push_back(j);
    }
  };
  if (interleave) {
    std::vector<Arm> all;
    for (size_t v = 0; v < variants.size(); ++v) all.push_back({v, false});
    for (int depth : depths) run_group(all, depth);
  } else {
    for (size_t v = 0; v < variants.size(); ++v)
      for (int depth : depths) {
        std::vector<Arm> arms = {{v, false}};
        if (adapter_set) arms.push_back({v, true});
        if (streams > 1) arms.push_back({v, false, streams});
        run_group(arms, depth);
      }
  }
  for (auto& j : rows) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace optiq::cli
