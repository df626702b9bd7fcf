#pragma once
// A loaded decoder-only model: its config, its weights (views into mmap'd files) and the forward pass.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/weight.h"
#include "kv/kv_cache.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/weight_source.h"
#include "util/large_buffer.h"

namespace optiq::model {

struct Linear {
  kernels::WeightView w;
  std::vector<float> bias;  // empty when the layer has none
};

// A SwiGLU feed-forward: down(silu(gate x) * up x). Experts of a MoE block are these too.
struct FeedForward {
  Linear gate_proj, up_proj, down_proj;
};

// A routed mixture of experts (qwen3_moe, qwen3_next, qwen3_5_moe): softmax router, top-k experts per row,
// optionally a shared expert scaled by sigmoid(shared_expert_gate x).
struct MoeBlock {
  Linear router;                     // [num_experts, hidden_size]
  std::vector<FeedForward> experts;  // views into per-expert, stacked (MLX switch_mlp) or fused (HF) tensors
  bool has_shared = false;
  FeedForward shared;
  Linear shared_gate;                // [1, hidden_size]
};

// Gated DeltaNet linear attention (qwen3_5, qwen3_next): projections, causal conv, the gated delta rule
// over a recurrent state, gated RMS norm, out_proj.
struct DeltaNetBlock {
  Linear in_qkv, in_z, in_b, in_a;  // qwen3_5: [q|k|v], z, b, a
  Linear in_qkvz, in_ba;            // qwen3_next: the same rows grouped per key head
  Linear out_proj;                  // [hidden_size, value_dim]
  std::vector<float> conv;          // [conv_dim, conv_kernel]
  std::vector<float> neg_exp_a;     // -exp(A_log) [num_value_heads]
  std::vector<float> dt_bias;       // [num_value_heads]
  std::vector<float> norm;          // [value_head_dim]
};

struct DecoderLayer {
  std::vector<float> input_norm;      // [hidden_size]
  std::vector<float> post_attn_norm;  // [hidden_size]
  Linear q_proj, k_proj, v_proj, o_proj;  // attention layers (q_proj also yields the gate when gated)
  std::vector<float> q_norm, k_norm;  // [head_dim] (qk_norm only)
  DeltaNetBlock delta;                // linear-attention layers
  Linear gate_proj, up_proj, down_proj;  // dense MLP layers
  MoeBlock moe;                       // MoE layers
};

class Model {
 public:
  // A HF / MLX folder (config.json + safetensors) or a .gguf file.
  static std::unique_ptr<Model> load(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  // The GGUF file the model came from (tokenizer and chat template live in its metadata), or null.
  std::shared_ptr<formats::GgufFile> gguf() const { return gguf_; }

  // Runs every row of the batch through the decoder, storing K/V in `cache`, and writes the logits of
  // rows with want_logits (in batch order) to logits[n_logits * vocab_size].
  void forward(const Batch& batch, kv::KvCache& cache, float* logits) const;
  // forward() in three parts, for callers that restart from a layer (KV calibration reruns only the
  // layers after the one it quantizes): the embeddings of the batch's tokens into x [n, hidden_size];
  // decoder layers [first, last) over the residual stream x in place (storing those layers' K/V); the
  // final norm and head of the want_logits rows.
  void embed(const Batch& batch, float* x) const;
  void forward_layers(const Batch& batch, kv::KvCache& cache, int first, int last, float* x) const;
  void head(const Batch& batch, const float* x, float* logits) const;

  // A KV cache for this model with each layer at the precision `spec` gives (fp16 by default); throws
  // Error(InvalidArgument) naming the entry when the spec does not fit the model.
  std::unique_ptr<kv::KvCache> make_cache(const kv::KvSpec& spec = {}, int64_t budget_bytes = 0) const;
  kv::KvShape kv_shape() const;
  int64_t weight_bytes_per_token() const;  // bytes of weights read by one decode step
  std::string weight_summary() const;      // e.g. "mlx-affine 4-bit g64 x196, bf16 x57"

  // ---- mounted LoRA adapters (model/lora.h): kept apart from the weights, chosen per batch row ----
  // Mounts an adapter under its name (unique; not empty, none, base or off, no '+'); thread-safe. Returns
  // its index.
  int mount_adapter(Adapter a);
  // Unmounts by name (false when none has it); its index is never reused. Callers make sure no queued or
  // running request uses it (engine::Engine::unmount_adapter does).
  bool unmount_adapter(const std::string& name);
  std::vector<std::shared_ptr<const Adapter>> adapters() const;  // the mounted ones, in mounting order
  std::shared_ptr<const Adapter> adapter(int index) const;        // null once unmounted
  int find_adapter(const std::string& name) const;  // -1 when none has that name
  bool adapter_set_live(int32_t id) const;           // every adapter of the set is still mounted
  bool adapter_set_uses(int32_t id, int index) const;
  // The id of the set of mounted adapters `indices` applied together (in that order); 0 for none. Batch
  // rows carry these ids; the same set always gets the same id.
  int32_t adapter_set(const std::vector<int>& indices);
  // The set a name list selects: "a", "a+b" (stacked), or "", none, base, off (0). Throws
  // Error(InvalidArgument) "unknown adapter 'x' (mounted: a, b)".
  int32_t resolve_adapters(const std::string& names);

 private:
  void load_weights(const WeightSource& ws);
  // Repacks every matrix the forward pass multiplies by for this CPU's fastest kernel where it has one
  // (kernels::pack_weight); the repacked bytes live in packed_, one buffer.
  void pack_weights();
  void load_delta_net(const WeightSource& ws, const std::string& prefix, DeltaNetBlock& d) const;
  void load_moe(const WeightSource& ws, const std::string& prefix, MoeBlock& m) const;
  // Forward blocks (decoder.cpp, delta_net.cpp, moe.cpp); h is the normed input, out gets the block's output.
  void delta_net(const DeltaNetBlock& d, const Batch& batch, kv::KvCache& cache, int layer, const float* h, float* out) const;
  void moe(const MoeBlock& m, int64_t n, const float* h, float* out) const;
  std::string path_;
  ModelConfig config_;
  std::unique_ptr<WeightSource> weights_;
  std::shared_ptr<formats::GgufFile> gguf_;
  kernels::WeightView embed_;    // [vocab_size, hidden_size]
  kernels::WeightView lm_head_;  // [vocab_size, hidden_size] (the embedding when tied)
  std::vector<float> final_norm_;
  std::vector<DecoderLayer> layers_;
  std::vector<float> inv_freq_;
  LargeBuffer packed_;
  mutable std::mutex adapters_mu_;
  std::vector<std::shared_ptr<const Adapter>> adapters_;
  std::vector<std::vector<int>> adapter_sets_ = {{}};  // id -> adapter indices; id 0: none
};

}  // namespace optiq::model
