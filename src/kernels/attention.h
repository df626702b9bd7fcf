#pragma once
// Attention of query rows against one sequence's fp16 KV cache (token-major rows, stride `kv_stride`
// elements between tokens, so one K row holds every KV head). GQA: the `rep` query heads that share a
// KV head are processed together, so each K/V row is read once for all of them. Softmax in f32.
#include <cstddef>
#include <cstdint>

namespace optiq::kernels {

struct AttentionArgs {
  const float* q = nullptr;     // [rep, head_dim]: the query heads of one KV-head group
  int rep = 1;                  // query heads per KV head
  const uint16_t* k = nullptr;  // fp16, first token's row for this KV head
  const uint16_t* v = nullptr;
  size_t kv_stride = 0;         // elements between consecutive tokens
  int n_tokens = 0;             // attend to tokens [0, n_tokens)
  int head_dim = 0;
  float scale = 1.0f;
  float* out = nullptr;         // [rep, head_dim]
  float* scratch = nullptr;     // [rep * n_tokens] scores
};

void attention_f16(const AttentionArgs& a);       // dispatches on active_isa()
void attention_f16_ref(const AttentionArgs& a);   // scalar reference
void attention_f16_avx2(const AttentionArgs& a);

}  // namespace optiq::kernels
