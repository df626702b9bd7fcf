#pragma once
// One forward step's rows, possibly from many sequences. Rows of one sequence appear in increasing,
// contiguous positions, continuing from what that sequence's KV cache already holds.
#include <cstdint>
#include <vector>

namespace optiq::model {

struct Batch {
  std::vector<int32_t> tokens;       // [n]
  std::vector<int32_t> positions;    // [n]
  std::vector<int32_t> seq_ids;      // [n] KV cache sequence of each row
  std::vector<uint8_t> want_logits;  // [n] rows whose logits the caller needs
  std::vector<int32_t> adapter_sets; // [n] mounted LoRA adapters of each row (Model::adapter_set; 0: none)

  void add(int32_t token, int32_t pos, int32_t seq, bool logits, int32_t adapter_set = 0) {
    tokens.push_back(token);
    positions.push_back(pos);
    seq_ids.push_back(seq);
    want_logits.push_back(logits ? 1 : 0);
    adapter_sets.push_back(adapter_set);
  }
  size_t size() const { return tokens.size(); }
  size_t n_logits() const {
    size_t n = 0;
    for (auto w : want_logits) n += w;
    return n;
  }
  void clear() { tokens.clear(); positions.clear(); seq_ids.clear(); want_logits.clear(); adapter_sets.clear(); }
};

}  // namespace optiq::model
