#pragma once
// All tensors of one model, by HF-style name, wherever they live (safetensors shards or one GGUF file).
// GGUF names are mapped to HF names here, so architecture code sees one vocabulary.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/weight.h"

namespace optiq::model {

struct MlxQuantParams {
  int bits = 0;        // 0: not quantized
  int group_size = 0;
};

class WeightSource {
 public:
  // A HF / MLX folder: model.safetensors.index.json if present, else top-level model*.safetensors.
  static std::unique_ptr<WeightSource> from_folder(const std::string& dir);
  // A GGUF file (tensors renamed to HF names; shapes given row-major like safetensors).
  static std::unique_ptr<WeightSource> from_gguf(std::shared_ptr<formats::GgufFile> gguf);

  const formats::TensorRef* find(const std::string& name) const;
  const formats::TensorRef& get(const std::string& name) const;  // Error naming the tensor if missing
  bool has(const std::string& name) const { return find(name) != nullptr; }
  const std::map<std::string, formats::TensorRef>& tensors() const { return tensors_; }
  std::string describe() const;  // "dir/model.safetensors" or "file.gguf"

  // MLX quantization from config.json: default params plus per-module overrides (false => not quantized).
  void set_mlx_quantization(MlxQuantParams defaults, std::map<std::string, MlxQuantParams> overrides);

  // A Linear / Embedding module as a kernel view, checked against the expected [out, in] shape.
  // Handles plain F32/F16/BF16, MLX affine (<module>.weight U32 + .scales + .biases), GGUF blocks.
  kernels::WeightView linear(const std::string& module, int64_t out, int64_t in) const;
  // A stack of `n` matrices [n, out, in] (MLX switch_mlp experts, HF fused experts) as one view of n*out rows;
  // `tensor` is the weight's name, `module` the prefix of its .scales/.biases when MLX-quantized.
  kernels::WeightView stacked(const std::string& module, const std::string& tensor, int64_t n, int64_t out, int64_t in) const;
  // Small vectors (norm weights, biases) as f32, checked against the expected length.
  std::vector<float> vector_f32(const std::string& name, int64_t n) const;
  // Gives back the memory of the pages of [p, p + n) that lie wholly inside one of the mapped files (a matrix
  // the kernels use a repacked copy of); returns the bytes given back.
  size_t release(const uint8_t* p, size_t n) const;

 private:
  kernels::WeightView matrix(const std::string& module, const std::string& tensor, int64_t stack, int64_t out, int64_t in) const;
  std::string origin_;
  std::vector<std::unique_ptr<formats::SafetensorsFile>> files_;
  std::shared_ptr<formats::GgufFile> gguf_;
  std::map<std::string, formats::TensorRef> tensors_;
  MlxQuantParams mlx_default_;
  std::map<std::string, MlxQuantParams> mlx_overrides_;
};

// The name a folder's tensor goes by in the decoder: VLM / MLX wrappers stripped
// ("model.language_model.layers.0..." and "language_model.model.layers.0..." -> "model.layers.0...",
// "language_model.lm_head.weight" -> "lm_head.weight"); "" for tensors the language model does not use
// (vision tower, multi-token-prediction head).
std::string lm_tensor_name(const std::string& name);
// GGUF tensor name -> HF name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight").
std::string hf_name_from_gguf(const std::string& gguf_name);
// The inverse ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"); unknown names unchanged.
std::string gguf_name_from_hf(const std::string& hf_name);

}  // namespace optiq::model
