#pragma once
// Choosing each KV layer's precision from measured sensitivities (what `optiq kv-cache` writes).
//
// Given, for every KV layer, the measured cost (mean KL from the fp16-KV reference) of each candidate bit
// width, pick one candidate per layer so that the total cost is as small as possible while the mean
// nominal bits over the layers stays at or under the target. This is a multiple-choice knapsack over
// integer bits; with few layers and few candidates an exact dynamic programme over the total bit count is
// tiny. Equal totals go to the allocation with fewer bits; the same costs always give the same answer.
#include <map>
#include <vector>

namespace optiq::kv {

struct KvAllocation {
  std::vector<int> bits;    // per layer, in the order given
  double total_cost = 0;    // sum of the chosen candidates' costs
  double mean_bits = 0;     // nominal
};

// cost[i]: candidate bits -> measured cost of layer i at those bits (every layer must list the same
// candidates). Throws Error(InvalidArgument) when the target is below the smallest candidate or the
// costs are malformed.
KvAllocation allocate_kv_bits(const std::vector<std::map<int, double>>& cost, double target_bits);
// The error allocate_kv_bits gives for a target below the smallest candidate, for callers that check
// before spending time on measurements.
void check_target_bits(double target_bits, int smallest_candidate);

}  // namespace optiq::kv
