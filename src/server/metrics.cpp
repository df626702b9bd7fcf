#include "server/metrics.h"

#include <cstdio>

namespace optiq::server {

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + num(value) + "\n";
}

void histogram(std::string& out, const char* name, const char* help, const engine::Histogram& h) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cum = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cum += h.counts[i];
    const std::string le = i < h.bounds.size() ? num(h.bounds[i]) : "+Inf";
    out += std::string(name) + "_bucket{le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  out += std::string(name) + "_sum " + num(h.sum) + "\n";
  out += std::string(name) + "_count " + std::to_string(h.count) + "\n";
}

}  // namespace

std::string prometheus_text(const engine::EngineStats& s) {
  std::string o;
  metric(o, "optiq_requests_running", "gauge", "Requests in the running batch.", s.running);
  metric(o, "optiq_requests_waiting", "gauge", "Requests queued for a place in the batch or for KV memory.", s.waiting);
  metric(o, "optiq_requests_finished_total", "counter", "Requests that ended (finished, stopped or cancelled).", double(s.requests_finished));
  metric(o, "optiq_requests_rejected_total", "counter", "Requests refused at once because the queue was full (429/529).",
         double(s.requests_rejected));
  metric(o, "optiq_preemptions_total", "counter", "Sequences put back in the queue to free KV pages.", double(s.preemptions));
  metric(o, "optiq_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", double(s.prompt_tokens));
  metric(o, "optiq_generation_tokens_total", "counter", "Tokens generated.", double(s.generation_tokens));
  metric(o, "optiq_prefix_cache_hit_tokens_total", "counter", "Prompt tokens read from shared prefixes instead of computed.",
         double(s.prefix_cache_hit_tokens));
  metric(o, "optiq_kv_cache_blocks_used", "gauge", "KV pages allocated (running sequences and the prompt cache; shared pages once).",
         s.kv_pages_used);
  metric(o, "optiq_kv_cache_blocks_free", "gauge", "KV pages the budget still allows.", s.kv_pages_free);
  metric(o, "optiq_kv_cache_block_tokens", "gauge", "Positions one KV page holds.", s.kv_page_tokens);
  metric(o, "optiq_kv_cache_used_bytes", "gauge", "Bytes of allocated KV pages.", double(s.kv_bytes_used));
  metric(o, "optiq_kv_cache_budget_bytes", "gauge", "The KV page budget in bytes (--kv-cache-memory).", double(s.kv_budget_bytes));
  metric(o, "optiq_prompt_cache_entries", "gauge", "Finished requests whose KV is kept for prefix reuse.", s.prompt_cache_entries);
  histogram(o, "optiq_time_to_first_token_seconds", "From request arrival to its first generated token.", s.time_to_first_token);
  histogram(o, "optiq_inter_token_latency_seconds", "Between consecutive generated tokens of one request.", s.inter_token_latency);
  return o;
}

}  // namespace optiq::server
