#include <cstdio>

#include "cli/commands.h"
#include "cli/flags.h"
#include "model/synthetic.h"
#include "util/error.h"

namespace optiq::cli {

int run_make_model(int argc, char** argv) {
  std::string shape = "tiny-llama", format = "bf16", out;
  int group_size = 64, vocab = 0, layers = 0;
  std::optional<uint64_t> seed;
  Flags f("optiq make-model --shape NAME --format FMT -o OUT");
  f.add("shape", &shape, "qwen3-0.6b | llama-3.2-1b | qwen3.5-9b | qwen3-30b-a3b | tiny-llama | tiny-qwen2 | tiny-qwen3 | tiny-qwen3_moe | tiny-qwen3_5 | tiny-qwen3_next | tiny-qwen3_5_moe");
  f.add("format", &format, "f32 | f16 | bf16 | mlxN (e.g. mlx4) | gguf-f32 | gguf-f16 | gguf-q8_0 | gguf-q4_0 | gguf-q4_1 | gguf-q4_k | gguf-q6_k");
  f.add("group-size", &group_size, "MLX group size (default 64)");
  f.add("vocab", &vocab, "override the vocabulary size");
  f.add("layers", &layers, "override the number of layers");
  f.add("seed", &seed, "weights seed (default 1)");
  f.add("o", &out, "output folder (HF/MLX formats) or .gguf file");
  f.add("output", &out, "same as -o");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  if (out.empty()) throw Error(ErrorKind::InvalidArgument, "no output path (-o OUT)");
  model::SyntheticSpec spec = model::synthetic_shape(shape);
  if (vocab > 0) spec.vocab_size = vocab;
  if (layers > 0) spec.num_hidden_layers = layers;
  if (seed) spec.seed = *seed;
  model::write_synthetic_model(spec, format, out, group_size);
  std::fprintf(stderr, "wrote %s (%s, %s)\n", out.c_str(), shape.c_str(), format.c_str());
  return 0;
}

}  // namespace optiq::cli
