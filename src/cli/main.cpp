#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "util/error.h"

namespace {

const char* kUsage =
    "optiq - LLM inference on your machine\n"
    "\n"
    "usage: optiq <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve --model MODEL         OpenAI + Anthropic HTTP APIs (drop-in for mlx_lm.server)\n"
    "  generate MODEL --prompt P   generate text (streams to stdout, speed to stderr)\n"
    "  bench MODEL                 prefill / decode speed at chosen context depths\n"
    "  kv-cache MODEL -o DIR       measure each layer's KV sensitivity, write kv_config.json for --kv-config\n"
    "  eval MODEL --text FILE      perplexity, KL and top-1 agreement of a KV cache setting against fp16\n"
    "  template MODEL --messages F print the prompt the server renders for a conversation\n"
    "  make-model -o OUT           write a random-weight model of a real shape (tests, benchmarks)\n"
    "  download REPO               fetch a Hugging Face repo into the HF cache, print its local path\n"
    "\n"
    "MODEL is a Hugging Face / MLX model folder, a .gguf file, or a Hugging Face repo id org/name[@revision]\n"
    "(found in the Hugging Face cache, downloaded when missing; HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE, HF_HOME\n"
    "and HF_HUB_OFFLINE as huggingface_hub reads them).\n"
    "Run 'optiq <command> --help' for the options of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  try {
    if (cmd == "generate") return optiq::cli::run_generate(argc, argv);
    if (cmd == "bench") return optiq::cli::run_bench(argc, argv);
    if (cmd == "make-model") return optiq::cli::run_make_model(argc, argv);
    if (cmd == "serve") return optiq::cli::run_serve(argc, argv);
    if (cmd == "eval") return optiq::cli::run_eval(argc, argv);
    if (cmd == "kv-cache") return optiq::cli::run_kv_cache(argc, argv);
    if (cmd == "template") return optiq::cli::run_template(argc, argv);
    if (cmd == "download") return optiq::cli::run_download(argc, argv);
    std::fprintf(stderr, "optiq: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const optiq::Error& e) {
    std::fprintf(stderr, "optiq: error: %s\n", e.what());
    return e.kind() == optiq::ErrorKind::InvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "optiq: internal error: %s\n", e.what());
    return 1;
  }
}
