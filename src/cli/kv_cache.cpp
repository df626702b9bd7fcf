// optiq kv-cache: measure how much each attention layer suffers from a quantized KV cache, choose each
// layer's precision under a mean-bits budget, and write kv_config.json (for serve --kv-config) and
// kv_sensitivity.json (the measurements).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "engine/generator.h"
#include "engine/kv_calibration.h"
#include "kv/kv_allocate.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::cli {

std::string_view default_calibration_text();  // data/calibration.txt, compiled in (CMakeLists.txt)

namespace {

// Evenly spread windows of the text: each sample is the tokenizer's BOS (when it adds one) and then
// seq_len - |BOS| tokens. A text too short for n non-overlapping windows gives overlapping ones; one
// shorter than a window gives a single shorter sample.
std::vector<std::vector<int32_t>> calibration_samples(const tokenizer::Tokenizer& tok, const std::string& text, int n, int seq_len) {
  const std::vector<int32_t> bos = tok.encode("", /*add_special=*/true);
  const std::vector<int32_t> all = tok.encode(text, /*add_special=*/false);
  const size_t w = size_t(seq_len) - std::min(bos.size(), size_t(seq_len) - 2);
  if (all.size() < 2) throw Error(ErrorKind::InvalidArgument, "the calibration text is empty");
  std::vector<std::vector<int32_t>> out;
  if (all.size() <= w) {
    std::fprintf(stderr, "note: the calibration text has %zu tokens, fewer than --seq-len; using one sample of all of them\n", all.size());
    n = 1;
  } else if (all.size() < w * size_t(n)) {
    std::fprintf(stderr, "note: the calibration text gives %zu windows of %d tokens without overlap; the %d samples overlap\n",
                 all.size() / w, seq_len, n);
  }
  const size_t span = all.size() > w ? all.size() - w : 0;
  for (int i = 0; i < n; ++i) {
    const size_t start = n > 1 ? span * size_t(i) / size_t(n - 1) : 0;
    std::vector<int32_t> s = bos;
    s.insert(s.end(), all.begin() + long(start), all.begin() + long(std::min(all.size(), start + w)));
    out.push_back(std::move(s));
  }
  return out;
}

std::string duration(double s) {
  char b[32];
  if (s < 60) std::snprintf(b, sizeof b, "%.0fs", s);
  else std::snprintf(b, sizeof b, "%dm%02ds", int(s) / 60, int(s) % 60);
  return b;
}

}  // namespace

int run_kv_cache(int argc, char** argv) {
  std::string model, out_dir, calib_file, candidates = "4,8", rotation = "auto";
  float target_bits = 5.0f;
  int group_size = 64, n_samples = 5, seq_len = 512;
  Flags f("optiq kv-cache MODEL [--target-bits 5.0] [--candidate-bits 4,8] [--group-size 64] -o DIR");
  f.add("model", &model, "model folder or .gguf file (or the first argument)");
  f.add("target-bits", &target_bits, "mean KV bits over the KV layers to stay at or under, nominal as kv_config counts them (default 5.0)");
  f.add("candidate-bits", &candidates, "bit widths a layer may get, comma-separated: 2-6, 8, 16 = fp16 (default 4,8)");
  f.add("group-size", &group_size, "quantization group size along head_dim for every candidate (default 64)");
  f.add("n-samples", &n_samples, "calibration windows (default 5)");
  f.add("seq-len", &seq_len, "tokens per window, up to the model's context (default 512)");
  f.add("calib-file", &calib_file, "calibration text (default: the mixed text built into optiq, data/calibration.txt)");
  f.add("kv-rotation", &rotation, "Hadamard rotation of quantized K/V, as serve will use it: auto | on | off (default auto)");
  f.add("o", &out_dir, "output folder for kv_config.json and kv_sensitivity.json");
  f.add("output", &out_dir, "same as -o");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  model = hub::resolve(f.model_arg(model, "optiq kv-cache MODEL -o DIR"), hub::Kind::Model);
  if (out_dir.empty()) throw Error(ErrorKind::InvalidArgument, "no output folder (-o DIR)");
  if (n_samples < 1) throw Error(ErrorKind::InvalidArgument, "--n-samples must be >= 1");
  if (seq_len < 2) throw Error(ErrorKind::InvalidArgument, "--seq-len must be >= 2");
  engine::KvCalibrationOptions opts;
  opts.candidate_bits = parse_int_list(candidates, "--candidate-bits");
  opts.group_size = group_size;
  opts.rotation = parse_kv_rotation(rotation);
  std::sort(opts.candidate_bits.begin(), opts.candidate_bits.end());
  opts.candidate_bits.erase(std::unique(opts.candidate_bits.begin(), opts.candidate_bits.end()), opts.candidate_bits.end());
  kv::check_target_bits(target_bits, opts.candidate_bits.front());  // before minutes of measuring

  const std::string text = calib_file.empty() ? std::string(default_calibration_text()) : read_text_file(calib_file);

  engine::LoadedModel lm = engine::LoadedModel::load(model);
  const model::Model& m = *lm.model;
  const kv::KvShape shape = m.kv_shape();
  if (seq_len > m.config().max_position_embeddings)
    throw Error(ErrorKind::InvalidArgument, "--seq-len " + std::to_string(seq_len) + " is longer than the model's context (" +
                                                std::to_string(m.config().max_position_embeddings) + ")");
  const auto samples = calibration_samples(*lm.tokenizer, text, n_samples, seq_len);
  std::fprintf(stderr, "calibrating %s: %zu sample(s) of %zu tokens from %s, candidates %s bits, group %d\n", model.c_str(),
               samples.size(), samples[0].size(), calib_file.empty() ? "the built-in text" : calib_file.c_str(), candidates.c_str(),
               group_size);

  const auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(fileno(stderr));
  if (tty)
    opts.progress = [&](double done, double total) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int w = 30, fill = int(w * done / total);
      std::fprintf(stderr, "\r[%s%s] %3.0f%%  %s elapsed, ETA %s   ", std::string(size_t(fill), '#').c_str(),
                   std::string(size_t(w - fill), '.').c_str(), 100 * done / total, duration(el).c_str(),
                   duration(done > 0 ? el * (total - done) / done : 0).c_str());
      std::fflush(stderr);
    };
  const auto sens = engine::measure_kv_sensitivity(m, samples, opts);
  if (tty) std::fprintf(stderr, "\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::vector<std::map<int, double>> cost;
  for (auto& ls : sens) {
    std::map<int, double> c;
    for (auto& [bits, st] : ls.at) c[bits] = st.kl_mean();
    cost.push_back(c);
  }
  const kv::KvAllocation alloc = kv::allocate_kv_bits(cost, target_bits);

  kv::KvSpec chosen;
  chosen.rotation = opts.rotation;
  for (size_t i = 0; i < sens.size(); ++i) chosen.layers[sens[i].layer_idx] = {alloc.bits[i], group_size};

  // Outputs.
  std::filesystem::create_directories(out_dir);
  const std::string config_path = (std::filesystem::path(out_dir) / "kv_config.json").string();
  const std::string sens_path = (std::filesystem::path(out_dir) / "kv_sensitivity.json").string();
  {
    std::ofstream o(config_path, std::ios::binary);
    o << kv::kv_config_json(chosen.layers);
    if (!o) throw Error(ErrorKind::Internal, "cannot write " + config_path);
  }
  nlohmann::ordered_json sj = nlohmann::ordered_json::array();
  for (size_t i = 0; i < sens.size(); ++i) {
    const auto& ls = sens[i];
    nlohmann::ordered_json kl = nlohmann::ordered_json::object(), top1 = kl, ppl = kl, klmax = kl;
    for (auto& [bits, st] : ls.at) {
      kl[std::to_string(bits)] = st.kl_mean();
      klmax[std::to_string(bits)] = st.kl_max;
      top1[std::to_string(bits)] = st.top1();
      ppl[std::to_string(bits)] = st.ppl();
    }
    sj.push_back({{"layer_idx", ls.layer_idx},
                  {"layer_name", "model.layers." + std::to_string(ls.layer_idx) + ".self_attn"},
                  {"sensitivities", kl},
                  {"n_kv_heads", shape.n_kv_heads},
                  {"head_dim", shape.head_dim},
                  {"group_size", group_size},
                  {"chosen_bits", alloc.bits[i]},
                  {"kl_max", klmax},
                  {"top1_agreement", top1},
                  {"perplexity", ppl},
                  {"perplexity_fp16", ls.at.begin()->second.ppl_ref()},
                  {"positions", ls.at.begin()->second.n}});
  }
  {
    std::ofstream o(sens_path, std::ios::binary);
    o << sj.dump(2) << "\n";
    if (!o) throw Error(ErrorKind::Internal, "cannot write " + sens_path);
  }

  // The table: one row per KV layer, KL at each candidate, the choice.
  std::printf("| layer |");
  for (int b : opts.candidate_bits) std::printf(" %10s |", ("KL @" + std::to_string(b)).c_str());
  std::printf(" %10s | bits |\n|-------|", "top1 @min");
  for (size_t i = 0; i < opts.candidate_bits.size(); ++i) std::printf("------------|");
  std::printf("------------|------|\n");
  for (size_t i = 0; i < sens.size(); ++i) {
    std::printf("| %5d |", sens[i].layer_idx);
    for (auto& [bits, st] : sens[i].at) std::printf(" %10.3e |", st.kl_mean());
    std::printf(" %9.2f%% | %4d |\n", 100 * sens[i].at.begin()->second.top1(), alloc.bits[i]);
  }
  std::printf("wrote %s and %s (%s)\n", config_path.c_str(), sens_path.c_str(), duration(seconds).c_str());
  std::printf("effective bits with scales and biases: %.2f; KV bytes per token %lld (fp16: %lld)\n",
              chosen.mean_bits(shape, /*effective=*/true), static_cast<long long>(chosen.bytes_per_token(shape)),
              static_cast<long long>(kv::KvSpec::fp16_bytes_per_token(shape)));
  // The chosen config checked jointly (every layer at its precision at once) on the same windows, next to
  // every layer at the smallest candidate: what the isolated measurements promised.
  kv::KvSpec lowest;
  lowest.rotation = opts.rotation;
  lowest.default_precision = {opts.candidate_bits.front(), group_size};
  const auto joint = engine::compare_kv_specs(m, samples, {chosen, lowest});
  for (int k = 0; k < 2; ++k) {
    const auto& st = joint[size_t(k)];
    std::printf("joint check, %-13s ppl %.4f (fp16 %.4f, %+.2f%%), mean KL %.3e, same top-1 %.2f%%\n",
                k == 0 ? "chosen:" : ("all " + std::to_string(opts.candidate_bits.front()) + "-bit:").c_str(), st.ppl(),
                st.ppl_ref(), 100.0 * (st.ppl() / st.ppl_ref() - 1.0), st.kl_mean(), 100.0 * st.top1());
  }
  std::string summary;
  for (int b : opts.candidate_bits) {
    const long n = std::count(alloc.bits.begin(), alloc.bits.end(), b);
    summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " layers @ " + (b == 16 ? "fp16" : std::to_string(b) + "-bit");
  }
  std::printf("%s, achieved %.2f average bits\n", summary.c_str(), alloc.mean_bits);
  return 0;
}

}  // namespace optiq::cli
