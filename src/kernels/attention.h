#pragma once
// Attention of query rows against one sequence's K/V cache for one layer, with the cache stored at
// fp16 or MLX affine-quantized (codes packed along head_dim per token, one f16 scale and bias per group;
// K stored after RoPE). Quantized K/V are read directly: dequantization is fused into the q·k dot
// products and into the weighted sum of V; nothing is expanded to an fp16/f32 copy of the cache.
//
// Work is split over (query tile, KV head, sequence chunk): GQA query heads that share a KV head and
// consecutive query rows of the same sequence form one tile, so each K/V row is read once for all of
// them; long sequences are split across threads (flash-decoding partials with a final reduction), so
// one long sequence keeps every core busy. Softmax is in f32 (online, max-subtracted).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace optiq::kernels {

// One layer of one sequence's K/V storage, head-major as MLX's [n_kv_heads, tokens, head_dim] (so the
// tokens of one head stream contiguously past the attention kernel). Token t of KV head g:
//   fp16:      k_row(g, t) holds head_dim uint16 (f16)
//   quantized: k_row(g, t) holds head_dim*bits/8 bytes of packed codes and k_scale(g, t) / k_bias(g, t)
//              point at its head_dim/group_size f16 scales and biases.
// Storage is either contiguous (k, v, k_scales, ... hold every token; pages == nullptr) or paged: token t
// lives in page t / page_tokens at row t % page_tokens, and within a page the layer's arrays start at
// pages[i] + k_off (v_off, ks_off, ...), laid out like contiguous storage of page_tokens tokens.
// page_tokens is a multiple of attn::kChunk, so the tokens of one kernel block are always contiguous.
struct KvLayerView {
  int bits = 16;  // 16: fp16; else 2, 3, 4, 5, 6, 8
  int group_size = 64;
  int n_kv_heads = 0;
  int head_dim = 0;
  int n_tokens = 0;       // tokens stored
  bool rotated = false;   // K and V were Hadamard-rotated per head before quantization
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  size_t head_stride = 0;        // bytes from one head's rows to the next head's
  const uint16_t* k_scales = nullptr;
  const uint16_t* k_biases = nullptr;
  const uint16_t* v_scales = nullptr;
  const uint16_t* v_biases = nullptr;
  size_t param_head_stride = 0;  // f16 elements from one head's parameters to the next head's
  // Paged storage (see above).
  const uint8_t* const* pages = nullptr;
  int page_tokens = 0;
  size_t k_off = 0, v_off = 0, ks_off = 0, kb_off = 0, vs_off = 0, vb_off = 0;  // bytes into a page

  bool quantized() const { return bits != 16; }
  size_t head_bytes() const { return quantized() ? size_t(head_dim) * size_t(bits) / 8 : size_t(head_dim) * 2; }
  int head_groups() const { return quantized() ? head_dim / group_size : 0; }
  const uint8_t* k_row(int g, int t) const { return row(k, k_off, g, t); }
  const uint8_t* v_row(int g, int t) const { return row(v, v_off, g, t); }
  const uint16_t* k_scale(int g, int t) const { return param(k_scales, ks_off, g, t); }
  const uint16_t* k_bias(int g, int t) const { return param(k_biases, kb_off, g, t); }
  const uint16_t* v_scale(int g, int t) const { return param(v_scales, vs_off, g, t); }
  const uint16_t* v_bias(int g, int t) const { return param(v_biases, vb_off, g, t); }

 private:
  const uint8_t* row(const uint8_t* flat, size_t off, int g, int t) const {
    if (!pages) return flat + size_t(g) * head_stride + size_t(t) * head_bytes();
    return pages[t / page_tokens] + off + size_t(g) * head_stride + size_t(t % page_tokens) * head_bytes();
  }
  const uint16_t* param(const uint16_t* flat, size_t off, int g, int t) const {
    const size_t i = size_t(g) * param_head_stride;
    if (!pages) return flat + i + size_t(t) * size_t(head_groups());
    return reinterpret_cast<const uint16_t*>(pages[t / page_tokens] + off) + i + size_t(t % page_tokens) * size_t(head_groups());
  }
};

// The query heads that read one KV head of one sequence: `rows` query rows (consecutive positions of
// the same sequence) x `rep` heads each. Query (row i, head j) is q + i*q_stride + j*head_dim and its
// output goes to out + i*out_stride + j*head_dim. Row i attends to tokens [0, limits[i]).
struct AttentionTile {
  const KvLayerView* kv = nullptr;
  int kv_head = 0;
  int rows = 1;
  int rep = 1;
  const float* q = nullptr;  // rotated already when kv->rotated (see hadamard.h)
  size_t q_stride = 0;
  float* out = nullptr;      // still rotated when kv->rotated
  size_t out_stride = 0;
  const int* limits = nullptr;
  float scale = 1.0f;        // multiplies q·k
  int tokens() const {       // tokens any row of the tile reads: [0, max limit)
    int n = 0;
    for (int i = 0; i < rows; ++i) n = limits[i] > n ? limits[i] : n;
    return n;
  }
};

// Runs every tile with `threads` threads.
void attention(const std::vector<AttentionTile>& tiles, int threads);
// The reference: dequantizes the whole cache to f32 and runs plain attention (scalar, one thread).
void attention_reference(const AttentionTile& tile);

// ---- internals shared by the ISA-specific files ----
namespace attn {

// 4-bit K with groups of 32, 64 or 128 is dotted in integers (AVX2: maddubs of the codes with int8 q): the
// scaled query is rounded to int8 per K group, scale max|q_g| / 127, as llama.cpp rounds Q to q8 for its
// quantized K. That rounding is part of the definition: every path (reference, scalar, AVX2) dots K with
// the rounded q, so they agree to float rounding. V is unaffected.
inline bool int8_q(const KvLayerView& kv) {
  return kv.bits == 4 && (kv.group_size == 32 || kv.group_size == 64 || kv.group_size == 128) && kv.head_dim <= 512;
}
// q[d] (already scaled) -> its int8 rounding per group of gs: qi[e] and scale[gi]; q_hat = qi * scale.
void round_q_int8(const float* q, int d, int gs, int8_t* qi, float* scale);
// q[d] replaced by its int8 rounding (q_hat), when int8_q(kv).
void round_q_for(const KvLayerView& kv, float* q);

constexpr int kChunk = 256;  // tokens per inner block: scores for a block stay in L1

// Running softmax state of one query over the chunks seen so far: max score m, sum of exp l and the
// unnormalized weighted sum of V rows acc[head_dim].
struct Partial {
  float m;
  float l;
  float* acc;
};

// Adds tokens [t0, t1) of KV head g to the partials of nq queries q[nq][head_dim] (already scaled).
// limits[i] bounds query i. scratch holds scratch_floats(kv, nq) floats.
inline size_t scratch_floats(const KvLayerView& kv, int nq) {
  const size_t groups = kv.quantized() ? size_t(kv.head_dim / kv.group_size) : 1;
  return (size_t(nq) + 6 * groups) * kChunk;  // scores + per-block group parameters and weights (4 queries)
}
using BlockFn = void (*)(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1,
                         Partial* parts, float* scratch);
void block_ref(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1, Partial* parts,
               float* scratch);
void block_avx2(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1, Partial* parts,
                float* scratch);

}  // namespace attn
}  // namespace optiq::kernels
