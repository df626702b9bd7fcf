#pragma once
// LoRA adapters mounted over a base model: kept apart from the base weights (never merged), several at
// once, each batch row choosing its own set. A projection y = W x gains scale * B (A x) per adapter of the
// row's set. Formats (../shared/research/formats.md §5):
//   mlx-lm   adapters.safetensors + adapter_config.json: <module>.lora_a [in, r], .lora_b [r, out],
//            lora_parameters.scale used as is;
//   OptiQ    the mlx-lm layout plus optiq_lora_config.json; ranks differ per layer (taken from each
//            tensor's shape); rs_lora / use_rslora there means alpha / sqrt(r);
//   PEFT     adapter_model.safetensors + adapter_config.json: <module>.lora_A.weight [r, in],
//            .lora_B.weight [out, r], scale lora_alpha / r (alpha / sqrt(r) with use_rslora), per-module
//            r and alpha from rank_pattern / alpha_pattern;
//   GGUF     llama.cpp's LoRA .gguf: blk.N.<tensor>.weight.lora_a / .lora_b, scale adapter.lora.alpha / r;
//            in the GGUF base's row order, so for GGUF bases only.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "util/dtype.h"

namespace optiq::model {

enum class Proj { Q, K, V, O, Gate, Up, Down };
constexpr int kProjCount = 7;
const char* proj_name(Proj p);  // "self_attn.q_proj", ..., "mlp.down_proj"

// y += scale * B (A x). DoRA (mlx-lm fine_tune_type "dora" with <module>.m, PEFT use_dora with
// lora_magnitude_vector) also rescales each output: y = g ⊙ (W x + scale * B A x) + bias, with
// g = m / ‖W + scale * B A‖ per output row, computed from the base weights when the adapter is mounted.
struct LoraDelta {
  int rank = 0, in = 0, out = 0;
  float scale = 1.0f;
  std::vector<float> a;          // [rank, in]
  std::vector<float> b;          // [out, rank]
  std::vector<float> magnitude;  // DoRA m [out]; empty for plain LoRA
  std::vector<float> dora_gain;  // DoRA g [out], set by Model::mount_adapter
  // The precision the file stores A and B at (F32, F16 or BF16).
  DType store = DType::F32;
  // What decode reads, set by pack_for_decode (Model::mount_adapter), which frees a and b: Aᵀ [in, rank] and
  // Bᵀ [rank, out] in 16 bits (`packed` F16 or BF16), times `unit` = 2^-k folded into the scale. 16-bit
  // files keep their own values. F32 files are applied in f16, half the bytes per token (peers do the same:
  // llama.cpp's LoRA converter writes f16, vLLM casts adapters to the model's 16-bit dtype); each matrix is
  // first scaled by the power of two that puts its largest magnitude in [2^14, 2^15), exactly, so every
  // value down to 2^-28 of the largest keeps f16's full relative precision (2^-11).
  DType packed = DType::F32;
  float unit = 1.0f;
  std::vector<uint16_t> a16, b16;
};

// Rounds the delta to what decode applies (see LoraDelta::packed): a16/b16 filled; a and b hold the same
// rounded values as f32 (times the power of two), for callers that need them before freeing (DoRA's gain).
void pack_for_decode(LoraDelta& d);

struct Adapter {
  std::string name;
  std::string path;
  std::string format;  // mlx-lm | optiq | peft | gguf
  // layers[l][proj]: the delta of that projection, or null when the adapter leaves it alone.
  std::vector<std::array<std::shared_ptr<const LoraDelta>, kProjCount>> layers;
  const LoraDelta* delta(int layer, Proj p) const { return layers[size_t(layer)][size_t(p)].get(); }
  std::string summary() const;  // format, modules, rank range and scale, for the start-up log
};

// Reads the adapter at `path` (a folder, or a .gguf file) for a base model of `config`. Throws Error(BadModel) naming the file
// and tensor for anything malformed or not matching the base, Error(Unsupported) for real format features
// not implemented (embedding adapters, modules_to_save).
// The name is checked first (check_adapter_name), before any file is read.
Adapter load_adapter(const std::string& path, const ModelConfig& config, const std::string& name);

// Throws Error(InvalidArgument) unless `name` can name an adapter: not empty, none, base or off (they
// select the base), and no '+' (it stacks adapters).
void check_adapter_name(const std::string& name);

}  // namespace optiq::model
