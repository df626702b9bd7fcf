// Qwen2 / Qwen2.5: q/k/v projections carry a bias; o_proj and the MLP do not.
#include "model/architecture.h"

namespace optiq::model {

namespace {
void qwen2_from_hf(const nlohmann::json&, ModelConfig& c) { c.attention_bias = true; }
void qwen2_from_gguf(const formats::GgufFile&, ModelConfig& c) { c.attention_bias = true; }
}  // namespace

extern const Architecture kQwen2 = {"qwen2", "qwen2", qwen2_from_hf, qwen2_from_gguf};

}  // namespace optiq::model
