#pragma once
// The KV cache: per sequence and per layer, the K rows (after RoPE) and V rows of every position,
// token-major, each layer at its own precision (kv_spec.h): fp16, or MLX affine quantization along
// head_dim per token (packed codes + one f16 scale and bias per group, MLX's QuantizedKVCache layout),
// optionally Hadamard-rotated per head first. Rows are quantized once, when stored; with
// quantized_kv_start > 0 a sequence keeps fp16 until it holds that many tokens, then what it holds is
// quantized once (as mlx-lm does). Sequences are slots that the engine creates and releases.
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kv/kv_spec.h"

namespace optiq::kv {

class KvCache {
 public:
  KvCache(KvShape shape, KvSpec spec = {});  // throws when the spec does not fit the shape

  int32_t create_sequence();
  void release_sequence(int32_t seq);
  int32_t length(int32_t seq) const;            // positions stored
  void truncate(int32_t seq, int32_t n_tokens);  // forget positions >= n_tokens
  // A new sequence holding a copy of the first n_tokens positions of `seq` (prefix reuse that keeps the
  // original).
  int32_t copy_prefix(int32_t seq, int32_t n_tokens);
  // Makes room for positions [0, n_tokens) and marks them stored (the forward pass fills them with store()).
  void extend(int32_t seq, int32_t n_tokens);

  // Stores position pos (< length) of one layer: k and v are [n_kv_heads * head_dim] f32, k after RoPE.
  // Different positions may be stored from different threads at once.
  void store(int32_t seq, int layer, int32_t pos, const float* k, const float* v);
  // What attention reads; valid until the next extend() of that sequence.
  kernels::KvLayerView view(int32_t seq, int layer) const;
  KvPrecision precision(int32_t seq, int layer) const;  // what the sequence holds for that layer now

  const KvShape& shape() const { return shape_; }
  const KvSpec& spec() const { return spec_; }
  int64_t bytes_used() const;                   // the stored positions of every live sequence
  int64_t sequence_bytes(int32_t seq) const;     // the stored positions of one

 private:
  struct Layer {
    KvPrecision p;
    bool rotated = false;
    std::vector<uint8_t> k, v;             // [n_kv_heads, capacity, head bytes]
    std::vector<uint16_t> ks, kb, vs, vb;  // [n_kv_heads, capacity, groups per head] f16
  };
  struct Seq {
    bool live = false;
    bool converted = false;  // the target precisions apply (quantized_kv_start reached)
    int32_t length = 0;
    int32_t capacity = 0;
    std::vector<Layer> layers;
  };
  Seq& seq(int32_t id);
  const Seq& seq(int32_t id) const;
  void init_layers(Seq& s) const;
  // Grows a layer's buffers from old_cap to cap tokens per head, keeping the first n_tokens of each head.
  void grow(Layer& L, int32_t old_cap, int32_t cap, int32_t n_tokens) const;
  void convert(Seq& s) const;
  size_t head_bytes(const KvPrecision& p) const;
  int head_groups(const KvPrecision& p) const;
  void store_row(Layer& L, int32_t cap, int32_t pos, const float* k, const float* v) const;

  KvShape shape_;
  KvSpec spec_;
  std::vector<Seq> seqs_;
};

}  // namespace optiq::kv
