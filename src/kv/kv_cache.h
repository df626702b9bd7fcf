#pragma once
// The KV cache: per sequence and per layer, K and V rows stored after RoPE, token-major
// ([n_tokens, n_kv_heads, head_dim]), fp16. Sequences are slots that the engine creates and releases.
#include <cstdint>
#include <vector>

namespace optiq::kv {

class KvCache {
 public:
  KvCache(int n_layers, int n_kv_heads, int head_dim);

  int32_t create_sequence();
  void release_sequence(int32_t seq);
  int32_t length(int32_t seq) const;            // positions stored
  void truncate(int32_t seq, int32_t n_tokens);  // forget positions >= n_tokens
  // Makes room for positions [0, n_tokens) and marks them stored (the forward pass fills them).
  void extend(int32_t seq, int32_t n_tokens);

  int row_elems() const { return n_kv_heads_ * head_dim_; }
  uint16_t* key(int32_t seq, int layer, int32_t pos);    // [n_kv_heads, head_dim]
  uint16_t* value(int32_t seq, int layer, int32_t pos);
  const uint16_t* keys(int32_t seq, int layer) const;    // [length, n_kv_heads, head_dim]
  const uint16_t* values(int32_t seq, int layer) const;
  int64_t bytes_used() const;

 private:
  struct Seq {
    bool live = false;
    int32_t length = 0;
    int32_t capacity = 0;
    std::vector<std::vector<uint16_t>> k, v;  // per layer: [capacity, n_kv_heads, head_dim]
  };
  Seq& seq(int32_t id);
  const Seq& seq(int32_t id) const;
  int n_layers_, n_kv_heads_, head_dim_;
  std::vector<Seq> seqs_;
};

}  // namespace optiq::kv
