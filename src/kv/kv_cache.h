#pragma once
// The KV cache: per sequence and per layer, the K rows (after RoPE) and V rows of every position, each
// layer at its own precision (kv_spec.h): fp16, or MLX affine quantization along head_dim per token
// (packed codes + one f16 scale and bias per group, MLX's QuantizedKVCache layout), optionally
// Hadamard-rotated per head first. Rows are quantized once, when stored; with quantized_kv_start > 0 a
// sequence keeps fp16 until it holds that many tokens, then what it holds is quantized once (as mlx-lm
// does).
//
// Storage is paged. A page holds kPageTokens positions of every layer of one sequence (each layer
// head-major within the page, as kernels::KvLayerView reads it: per head, its K rows, then for quantized
// layers its K scales and biases, then the same for V); a sequence is a list of pages.
// Pages are reference-counted: sequences that share a prefix share its whole pages (copy_prefix), and a
// page is only ever written by a sequence that holds it alone. An optional byte budget caps what the
// pages take: reserve() says when a sequence cannot grow, and the caller (the engine) decides who waits.
// Quantized layers make a page smaller, so the same budget holds more tokens.
//
// Hybrid models (Gated DeltaNet layers without KV) also carry a fixed-size recurrent state per sequence
// and layer. A state cannot be rewound, so the cache keeps exact snapshots of it at page boundaries and at
// a marked position (a prompt's end); a prefix can be shared or kept only up to a point whose state is
// known (restorable()). States and snapshots count against the budget.
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "kv/kv_spec.h"
#include "util/large_buffer.h"

namespace optiq::kv {

class KvCache {
 public:
  static constexpr int32_t kPageTokens = kernels::attn::kChunk;

  // budget_bytes 0: no limit. Throws when the spec does not fit the shape or the budget holds no page.
  KvCache(KvShape shape, KvSpec spec = {}, int64_t budget_bytes = 0);
  ~KvCache();

  int32_t create_sequence();
  void release_sequence(int32_t seq);
  int32_t length(int32_t seq) const;            // positions stored
  void truncate(int32_t seq, int32_t n_tokens);  // forget positions >= n_tokens
  // A new sequence holding the first n_tokens positions of `seq`, which keeps them too: whole pages are
  // shared, a partial last page is copied. -1 when the budget lacks the page to copy into.
  int32_t copy_prefix(int32_t seq, int32_t n_tokens);
  // Allocates the pages that positions [0, n_tokens) of seq need; false (and nothing allocated) when the
  // budget lacks them.
  bool reserve(int32_t seq, int32_t n_tokens);
  int32_t pages_needed(int32_t seq, int32_t n_tokens) const;  // what reserve() would allocate
  // Makes room for positions [0, n_tokens) and marks them stored (the forward pass fills them with
  // store()). Throws Error(Overloaded) when the budget lacks the pages: callers that set a budget
  // reserve() first.
  void extend(int32_t seq, int32_t n_tokens);

  // Stores position pos (< length) of one layer: k and v are [n_kv_heads * head_dim] f32, k after RoPE.
  // Different positions may be stored from different threads at once.
  void store(int32_t seq, int layer, int32_t pos, const float* k, const float* v);
  // What attention reads; valid until the next extend() of that sequence.
  kernels::KvLayerView view(int32_t seq, int layer) const;
  KvPrecision precision(int32_t seq, int layer) const;  // what the sequence holds for that layer now

  // ---- recurrent state (layers without KV when shape().state_floats > 0) ----
  bool has_state() const { return n_state_layers_ > 0; }
  // `layer`'s state after the sequence's stored positions (zeros for a new sequence), shape().state_floats
  // values. Distinct layers and sequences may be used from different threads at once.
  float* state(int32_t seq, int layer);
  // Whether the forward pass keeps a snapshot of the state after the first n tokens (page boundaries and
  // the marked position); snapshot() gives the place of `layer`'s part of it (created on first use: call it
  // from one thread, before any worker writes).
  bool wants_snapshot(int32_t seq, int32_t n) const;
  float* snapshot(int32_t seq, int layer, int32_t n);
  void mark_snapshot(int32_t seq, int32_t n);  // also keep the state after n tokens
  // The longest prefix of at most n tokens that copy_prefix() and truncate() can give: n for models
  // without state; else the sequence's length or the last snapshot at or before n.
  int32_t restorable(int32_t seq, int32_t n) const;
  int64_t state_bytes_per_sequence() const { return int64_t(n_state_layers_) * shape_.state_floats * 4; }

  const KvShape& shape() const { return shape_; }
  const KvSpec& spec() const { return spec_; }

  // ---- memory ----
  int64_t budget_bytes() const { return budget_; }  // 0: no limit
  int64_t page_bytes() const;                        // one page at the spec's precision
  int64_t bytes_used() const { return used_bytes_; } // allocated pages, shared ones once
  int32_t pages_used() const { return used_pages_; }
  int32_t pages_free() const;                        // spec-precision pages the budget still allows
  int64_t capacity_tokens() const;                   // positions the whole budget holds (0: no limit)
  int64_t sequence_bytes(int32_t seq) const;         // the pages it holds, shared ones too
  int64_t distinct_bytes(const std::vector<int32_t>& seqs) const;  // pages any of them holds, each once

 private:
  struct LayerLayout {
    KvPrecision p;
    bool rotated = false;
    size_t k = 0, v = 0, ks = 0, kb = 0, vs = 0, vb = 0;  // byte offsets in a page of head 0's rows and params
    size_t stride = 0;  // bytes from one head's rows (and params) to the next head's
  };
  struct Layout {
    std::vector<LayerLayout> layers;
    int64_t bytes = 0;
  };
  struct Page {
    LargeBuffer data;
    int32_t refs = 0;
    int layout = 0;
  };
  // A state over every state layer; its bytes count in used_bytes_ while it lives.
  struct StateBuf {
    std::vector<float> v;
    int64_t* used;
    StateBuf(size_t n, int64_t* u) : v(n, 0.0f), used(u) { *used += int64_t(n * sizeof(float)); }
    StateBuf(const StateBuf& o) : v(o.v), used(o.used) { *used += int64_t(v.size() * sizeof(float)); }
    ~StateBuf() { *used -= int64_t(v.size() * sizeof(float)); }
  };
  struct Snapshot {
    int32_t n_tokens;
    std::shared_ptr<StateBuf> state;  // shared by sequences that copied the prefix
  };
  struct Seq {
    bool live = false;
    bool converted = false;  // the target precisions apply (quantized_kv_start reached)
    int32_t length = 0;
    std::vector<int32_t> pages;
    std::vector<const uint8_t*> bases;  // pages' data, for views
    std::unique_ptr<StateBuf> state;    // live recurrent state (hybrids)
    std::vector<Snapshot> snapshots;    // increasing n_tokens
    int32_t mark = -1;
  };
  enum : int { kSpecLayout = 0, kFp16Layout = 1 };

  Seq& seq(int32_t id);
  const Seq& seq(int32_t id) const;
  Layout make_layout(bool converted) const;
  int seq_layout(const Seq& s) const { return s.converted ? kSpecLayout : kFp16Layout; }
  int32_t alloc_page(int layout, bool force);  // -1 when over budget (unless force)
  void unref_page(int32_t id);
  void copy_rows(int32_t from, int32_t to, int32_t rows) const;
  void convert(Seq& s);
  size_t head_bytes(const KvPrecision& p) const;
  int head_groups(const KvPrecision& p) const;
  void store_row(const LayerLayout& L, uint8_t* page, int32_t row, const float* k, const float* v) const;
  void prune_snapshots(Seq& s);
  const Snapshot* snapshot_at(const Seq& s, int32_t n) const;

  KvShape shape_;
  KvSpec spec_;
  int64_t budget_ = 0;
  Layout layouts_[2];
  std::vector<Seq> seqs_;
  std::vector<int> state_index_;  // layer -> its slot in a StateBuf (-1: a KV layer)
  int n_state_layers_ = 0;
  std::vector<Page> pages_;
  std::vector<int32_t> free_ids_;
  // The memory of released pages per layout, kept for the next pages (fresh memory costs its page faults and
  // zeroing, 29 MB a page for a 0.6B model): only under a budget, used and spare bytes within it together.
  std::vector<LargeBuffer> spare_[2];
  int64_t spare_bytes_ = 0;
  int64_t used_bytes_ = 0;
  int32_t used_pages_ = 0;
};

}  // namespace optiq::kv
