#pragma once
// The optiq subcommands. Each returns the process exit code.
namespace optiq::cli {

int run_generate(int argc, char** argv);    // optiq generate MODEL --prompt P ...
int run_bench(int argc, char** argv);       // optiq bench MODEL --depth 0,4096 ...
int run_make_model(int argc, char** argv);  // optiq make-model --shape qwen3-0.6b --format mlx4 -o DIR
int run_serve(int argc, char** argv);       // optiq serve --model MODEL --port 8080
int run_eval(int argc, char** argv);        // optiq eval MODEL --text FILE [--kv-bits 4]
int run_template(int argc, char** argv);    // optiq template MODEL --messages FILE.json
int run_kv_cache(int argc, char** argv);    // optiq kv-cache MODEL --target-bits 5.0 -o DIR
int run_download(int argc, char** argv);    // optiq download org/name[@revision] [--adapter]

}  // namespace optiq::cli
