#pragma once
// What the engine reports about itself (served as Prometheus text on GET /metrics): gauges of the
// moment, counters since start, and latency histograms.
#include <cstdint>
#include <vector>

namespace optiq::engine {

struct Histogram {
  std::vector<double> bounds;    // bucket upper bounds, ascending (seconds)
  std::vector<uint64_t> counts;  // per bucket, not cumulative; the last one is +Inf
  double sum = 0;
  uint64_t count = 0;

  Histogram() = default;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v) {
    size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) ++i;
    ++counts[i];
    sum += v;
    ++count;
  }
};

struct EngineStats {
  // gauges
  int running = 0;  // requests in the running batch
  int waiting = 0;  // queued (new or preempted)
  int32_t kv_pages_used = 0;     // allocated pages (shared ones once), running and prompt cache together
  int32_t kv_pages_free = 0;     // pages the budget still allows at the configured precision
  int32_t kv_page_tokens = 0;
  int64_t kv_bytes_used = 0;
  int64_t kv_budget_bytes = 0;   // 0: no limit
  int prompt_cache_entries = 0;
  // counters
  uint64_t requests_finished = 0;
  uint64_t requests_rejected = 0;  // refused at once: queue full
  uint64_t preemptions = 0;        // sequences put back in the queue to free KV pages
  uint64_t prompt_tokens = 0;
  uint64_t generation_tokens = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  // latencies
  Histogram time_to_first_token{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
  Histogram inter_token_latency{{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5}};
};

}  // namespace optiq::engine
