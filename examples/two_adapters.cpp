// Two LoRA adapters mounted over one base model, each used by its own thread at the same time.
//
//   two_adapters MODEL ADAPTER_A ADAPTER_B [PROMPT]
//
// The base weights are loaded once; each adapter stays separate (never merged). Each thread opens an
// AdapterScope naming its adapter, and everything it generates inside the scope runs under that adapter;
// the other thread's scope never leaks in. Prints each thread's text.
#include <cstdio>
#include <string>
#include <thread>

#include "engine/adapter_scope.h"
#include "engine/generator.h"
#include "model/lora.h"

using namespace optiq;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL ADAPTER_A ADAPTER_B [PROMPT]\n", argv[0]);
    return 2;
  }
  try {
    engine::LoadedModel lm = engine::LoadedModel::load(argv[1]);
    model::Model& m = *lm.model;
    m.mount_adapter(model::load_adapter(argv[2], m.config(), "a"));
    m.mount_adapter(model::load_adapter(argv[3], m.config(), "b"));
    const std::vector<int32_t> prompt = lm.tokenizer->encode(argc > 4 ? argv[4] : "Once upon a time", true);
    std::string text[2];
    auto run = [&](int i) {
      engine::AdapterScope scope(m, i == 0 ? "a" : "b");
      engine::GenerateOptions opts;
      opts.max_tokens = 32;
      engine::generate(lm, prompt, opts, [&](const engine::SampledToken&, const std::string& piece) {
        text[i] += piece;
        return true;
      });
    };
    std::thread ta(run, 0), tb(run, 1);
    ta.join();
    tb.join();
    std::printf("[a] %s\n[b] %s\n", text[0].c_str(), text[1].c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
