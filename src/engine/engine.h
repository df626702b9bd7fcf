#pragma once
// The serving engine: one worker thread runs a continuous-batching loop over the running sequences.
// Each step builds one Batch with a decode row for every sequence that is generating and prompt rows
// (in chunks) for sequences still prefilling, so weights are read once per step for all of them.
// Requests come in through submit(); their events go out through a RequestHandle that the API layer
// drains from its own thread. Nothing here knows about HTTP.
//
// KV memory: the paged cache (kv/kv_cache.h) has a byte budget. A request is admitted when the pages of
// its whole prompt fit (after evicting prompt-cache entries, least recently used first); decode grows a
// sequence a page at a time, and when the budget is spent the most recently admitted sequence is
// preempted: its pages are released and it goes back to the front of the queue with what it generated
// so far, to be prefilled again later (vLLM's recompute preemption). A request that could not fit even
// alone is refused at submit(). Prefix reuse: a new sequence starts from the longest prefix it shares
// with a running sequence or a prompt-cache entry, sharing whole pages and copying a partial one.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "chat/output_parser.h"
#include "engine/generator.h"
#include "engine/json_constraint.h"
#include "engine/request.h"
#include "engine/stats.h"

namespace optiq::engine {

struct EngineOptions {
  int max_concurrency = 4;    // sequences generating at once
  int max_queue = 64;         // requests waiting beyond those; more are refused (Overloaded)
  int prefill_chunk = 512;    // prompt tokens per step, over all prefilling sequences
  int context_length = 0;     // 0: the model's max_position_embeddings
  // Prompt cache (mlx_lm.server's --prompt-cache-size / --prompt-cache-bytes): the KV of finished
  // requests is kept, least recently used first out, and a new request whose prompt shares a prefix with
  // one of them takes it over and prefills only the rest. 0 entries: off; 0 bytes: no byte limit.
  int prompt_cache_size = 10;
  int64_t prompt_cache_bytes = 0;
  int64_t kv_cache_bytes = 0;   // KV page budget (--kv-cache-memory); 0: no limit
  int prompt_concurrency = 8;   // sequences prefilling in one step (mlx_lm.server's --prompt-concurrency)
};

// A tokenized request, ready to run.
struct EngineRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
  chat::OutputFormat output_format;  // how to split text / reasoning / tool calls
  bool tools_requested = false;
  bool logprobs = false;
  bool json_object = false;  // constrain the output to one JSON object (response_format json_object)
  // Prompt tokens the client asked to keep cached (Anthropic cache_control: up to its last breakpoint);
  // its prompt-cache entry is evicted after those of requests without one.
  int cache_prefix_tokens = 0;
  int32_t adapter_set = 0;  // the mounted LoRA adapters it runs with (model::Model::adapter_set; 0: base)
};

class RequestHandle {
 public:
  // Waits up to `timeout` for the next event; false when none arrived in time.
  bool next(GenerationEvent& ev, std::chrono::milliseconds timeout);
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Engine;
  void push(GenerationEvent ev);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

class Engine {
 public:
  Engine(const LoadedModel& lm, EngineOptions opts);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws Error(Overloaded) when the queue is full and Error(InvalidArgument)
  // when the prompt cannot fit the context, or prompt + max_tokens the KV budget.
  std::shared_ptr<RequestHandle> submit(EngineRequest req);
  // Installs the KV cache precision per layer (see kv/kv_spec.h; e.g. from kv::load_kv_config) before
  // serving. Throws Error(InvalidArgument) naming the entry when the spec does not fit the model, and
  // Error(Internal) while requests are queued or running.
  void set_kv_spec(kv::KvSpec spec, int quantized_kv_start = 0);
  const kv::KvSpec& kv_spec() const { return cache_->spec(); }
  int context_length() const { return context_length_; }
  const LoadedModel& model() const { return lm_; }
  EngineStats stats() const;
  // Unmounts a LoRA adapter at run time. Throws Error(NotFound) for an unknown name and
  // Error(InvalidArgument, http 409) while a queued or running request uses it; its prompt-cache
  // entries are dropped.
  void unmount_adapter(const std::string& name);

 private:
  struct Sequence;
  void run();
  void admit();
  void step();
  void emit_token(Sequence& s, const SampledToken& tok);
  void finish(Sequence& s, const std::string& reason);
  void init(Sequence& s);               // per-request state, on first admission
  bool start(Sequence& s);              // its KV sequence (from a shared prefix if any); false: no memory
  void retire(Sequence& s, bool keep);  // its KV into the prompt cache (keep) or released
  bool evict_cached();                  // drops one prompt-cache entry; false when there is none
  void drop_cached(size_t i);           // releases entry i's KV and removes it
  void kv_gauges();                     // the KV gauges of stats_ (stats_mu_ held)
  bool make_room(Sequence& s, int32_t n_tokens);  // pages for s; evicts and preempts newer sequences
  void preempt(Sequence& s);

  struct CachedPrompt {
    int32_t kv_seq;
    std::vector<int32_t> tokens;  // what its KV holds, position by position
    uint64_t used;                // LRU clock
    bool pinned;                  // the client asked for it to stay (cache_control)
    int32_t adapter_set;          // KV computed under these adapters serves only requests under them
  };

  const LoadedModel& lm_;
  EngineOptions opts_;
  int context_length_ = 0;
  std::unique_ptr<kv::KvCache> cache_;
  std::shared_ptr<const TokenBytes> token_bytes_;  // built by the worker for the first constrained request
  std::vector<CachedPrompt> prompt_cache_;         // worker thread only
  std::vector<std::unique_ptr<Sequence>> running_;  // worker thread only, in admission order
  uint64_t clock_ = 0;
  double decode_step_s_ = 0;  // moving averages for prefill chunk sizing: a step of decode rows only,
  double prefill_row_s_ = 0;  // and each prompt row

  mutable std::mutex stats_mu_;
  EngineStats stats_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  bool stopping_ = false;
  int active_ = 0;  // requests submitted and not finished
  std::map<int32_t, int> set_users_;  // adapter set -> requests submitted and not finished
  std::atomic<bool> adapters_unmounted_{false};  // the worker drops prompt-cache entries of dead sets
  std::thread worker_;
};

}  // namespace optiq::engine
