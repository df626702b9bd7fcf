#pragma once
// How far one run's next-token distributions are from a reference run's, position by position: what
// `optiq eval` prints and what `optiq kv-cache` minimises.
#include <cstdint>

namespace optiq::engine {

// The log-softmax normalizer and the argmax of one row of logits.
struct LogitRow {
  double lse = 0;
  int top = 0;
  static LogitRow of(const float* logits, int vocab);
};

struct DistributionStats {
  double nll_ref = 0, nll = 0;  // summed negative log-likelihood of the next tokens
  double kl_sum = 0, kl_max = 0;
  int64_t n = 0, same_top1 = 0;

  // One position: the reference logits (with their LogitRow) and the compared logits; `next` is the
  // token that follows (for perplexity).
  void add(const float* ref, const LogitRow& rr, const float* q, int vocab, int32_t next);
  void add(const DistributionStats& o);
  double kl_mean() const { return n ? kl_sum / double(n) : 0.0; }
  double top1() const { return n ? double(same_top1) / double(n) : 0.0; }
  double ppl_ref() const;
  double ppl() const;
};

}  // namespace optiq::engine
