// optiq eval: how much a KV cache setting changes the model's predictions on a text. The text is cut
// into windows of --seq-len tokens; each window runs once with fp16 KV (the reference) and once with the
// KV setting asked for, in lockstep, and every position's next-token distribution is compared:
// perplexity of each, mean / max KL(fp16 || kv), and how often the top-1 token agrees.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "engine/generator.h"
#include "engine/logit_stats.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::cli {

int run_eval(int argc, char** argv) {
  std::string model, text_path;
  int seq_len = 512, max_windows = 0, chunk = 128;
  Flags f("optiq eval MODEL --text FILE [--kv-config F | --kv-bits N [--kv-group-size G]] [--seq-len 512]");
  f.add("model", &model, "model folder or .gguf file (or the first argument)");
  f.add("text", &text_path, "a text file to score (e.g. wikitext or tinystories)");
  f.add("seq-len", &seq_len, "tokens per window (default 512)");
  f.add("max-windows", &max_windows, "score at most this many windows (default: all the text gives)");
  f.add("prefill-step-size", &chunk, "positions per forward pass (default 128)");
  KvFlags kvf;
  kvf.add_to(f);
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  model = hub::resolve(f.model_arg(model, "optiq eval MODEL --text FILE"), hub::Kind::Model);
  if (text_path.empty()) throw Error(ErrorKind::InvalidArgument, "--text FILE is required");
  if (seq_len < 2) throw Error(ErrorKind::InvalidArgument, "--seq-len must be >= 2");
  if (chunk < 1) throw Error(ErrorKind::InvalidArgument, "--prefill-step-size must be >= 1");
  const kv::KvSpec spec = kvf.spec();

  const std::string text = read_text_file(text_path);
  engine::LoadedModel lm = engine::LoadedModel::load(model);
  const model::Model& m = *lm.model;
  const kv::KvShape shape = m.kv_shape();
  spec.validate(shape);
  if (seq_len > m.config().max_position_embeddings)
    throw Error(ErrorKind::InvalidArgument, "--seq-len " + std::to_string(seq_len) + " is longer than the model's context (" +
                                                std::to_string(m.config().max_position_embeddings) + ")");
  const std::vector<int32_t> tokens = lm.tokenizer->encode(text, /*add_special=*/true);
  int windows = int(tokens.size() / size_t(seq_len));
  if (max_windows > 0) windows = std::min(windows, max_windows);
  if (windows == 0)
    throw Error(ErrorKind::InvalidArgument, text_path + " has " + std::to_string(tokens.size()) + " tokens, fewer than --seq-len " +
                                                std::to_string(seq_len));
  std::fprintf(stderr, "KV cache:\n%s\n", spec.describe(shape).c_str());
  std::fprintf(stderr, "scoring %d window(s) of %d tokens\n", windows, seq_len);

  const int V = m.config().vocab_size;
  engine::DistributionStats st;
  const bool progress = isatty(fileno(stderr));  // a \r progress line only on a terminal
  std::vector<float> lr(size_t(chunk) * size_t(V)), lq(lr.size());
  for (int w = 0; w < windows; ++w) {
    auto ref = m.make_cache(), cq = m.make_cache(spec);
    const int32_t sr = ref->create_sequence(), sq = cq->create_sequence();
    const int32_t* win = tokens.data() + size_t(w) * size_t(seq_len);
    for (int s = 0; s < seq_len - 1; s += chunk) {  // positions whose next token is in the window
      const int e = std::min(seq_len - 1, s + chunk);
      model::Batch b;
      for (int i = s; i < e; ++i) b.add(win[i], i, sr, true);
      m.forward(b, *ref, lr.data());
      for (auto& id : b.seq_ids) id = sq;
      m.forward(b, *cq, lq.data());
      for (int i = s; i < e; ++i) {
        const float* a = lr.data() + size_t(i - s) * size_t(V);
        st.add(a, engine::LogitRow::of(a, V), lq.data() + size_t(i - s) * size_t(V), V, win[i + 1]);
      }
    }
    if (progress) std::fprintf(stderr, "\rwindow %d/%d", w + 1, windows);
  }
  if (progress) std::fprintf(stderr, "\n");
  const double ppl_ref = st.ppl_ref(), ppl_kv = st.ppl();
  const double kl_mean = st.kl_mean(), top1 = st.top1();
  const double eff = spec.mean_bits(shape, /*effective=*/true);
  std::printf("| %-14s | %10s | %10s | %8s | %12s | %12s | %8s |\n", "kv", "ppl fp16", "ppl kv", "ppl +%", "mean KL", "max KL", "same top1");
  std::printf("|----------------|------------|------------|----------|--------------|--------------|----------|\n");
  const std::string label = !kvf.config.empty() ? kvf.config : (kvf.bits && kvf.bits != 16 ? "q" + std::to_string(kvf.bits) : "fp16");
  std::printf("| %-14s | %10.4f | %10.4f | %7.3f%% | %12.3e | %12.3e | %7.2f%% |\n", label.c_str(), ppl_ref, ppl_kv,
              100.0 * (ppl_kv / ppl_ref - 1.0), kl_mean, st.kl_max, 100.0 * top1);
  nlohmann::ordered_json j = {{"eval", "optiq"},       {"model", model},         {"text", text_path},
                              {"kv", label},           {"kv_effective_bits", eff}, {"rotation", kvf.rotation},
                              {"seq_len", seq_len},    {"windows", windows},     {"positions", st.n},
                              {"ppl_fp16", ppl_ref},   {"ppl_kv", ppl_kv},       {"kl_mean", kl_mean},
                              {"kl_max", st.kl_max},   {"same_top1", top1}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace optiq::cli
