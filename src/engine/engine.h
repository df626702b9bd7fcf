#pragma once
// The serving engine: one worker thread runs a continuous-batching loop over the running sequences.
// Each step builds one Batch with a decode row for every sequence that is generating and prompt rows
// (in chunks) for sequences still prefilling, so weights are read once per step for all of them.
// Requests come in through submit(); their events go out through a RequestHandle that the API layer
// drains from its own thread. Nothing here knows about HTTP.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "chat/output_parser.h"
#include "engine/generator.h"
#include "engine/json_constraint.h"
#include "engine/request.h"

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
  // when the prompt cannot fit the context.
  std::shared_ptr<RequestHandle> submit(EngineRequest req);
  // Installs the KV cache precision per layer (see kv/kv_spec.h; e.g. from kv::load_kv_config) before
  // serving. Throws Error(InvalidArgument) naming the entry when the spec does not fit the model, and
  // Error(Internal) while requests are queued or running.
  void set_kv_spec(kv::KvSpec spec, int quantized_kv_start = 0);
  const kv::KvSpec& kv_spec() const { return cache_->spec(); }
  int context_length() const { return context_length_; }
  const LoadedModel& model() const { return lm_; }

 private:
  struct Sequence;
  void run();
  void step(std::vector<std::unique_ptr<Sequence>>& running);
  void emit_token(Sequence& s, const SampledToken& tok);
  void finish(Sequence& s, const std::string& reason);
  void start(Sequence& s);             // a KV sequence for a new request, from the prompt cache if it can
  void retire(Sequence& s, bool keep);  // its KV into the prompt cache (keep) or released

  struct CachedPrompt {
    int32_t kv_seq;
    std::vector<int32_t> tokens;  // what its KV holds, position by position
    uint64_t used;                // LRU clock
  };

  const LoadedModel& lm_;
  EngineOptions opts_;
  int context_length_ = 0;
  std::unique_ptr<kv::KvCache> cache_;
  std::shared_ptr<const TokenBytes> token_bytes_;  // built by the worker for the first constrained request
  std::vector<CachedPrompt> prompt_cache_;         // worker thread only
  uint64_t clock_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  bool stopping_ = false;
  int active_ = 0;  // requests submitted and not finished
  std::thread worker_;
};

}  // namespace optiq::engine
