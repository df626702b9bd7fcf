#include "engine/engine.h"

#include <algorithm>

#include "engine/stop_matcher.h"
#include "util/error.h"
#include "util/log.h"

namespace optiq::engine {

// ---- RequestHandle ----

bool RequestHandle::next(GenerationEvent& ev, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  ev = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestHandle::push(GenerationEvent ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

// ---- Sequence: one request's state while it runs ----

struct Engine::Sequence {
  std::shared_ptr<RequestHandle> handle;
  EngineRequest req;
  int32_t kv_seq = -1;
  size_t prefilled = 0;             // prompt tokens already in the KV cache
  int cached = 0;                   // of those, how many came from the prompt cache
  std::vector<int32_t> context;     // prompt + generated
  int generated = 0;
  int32_t pending_token = -1;       // sampled, not yet fed back through the model
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<tokenizer::StreamingDetokenizer> detok;
  std::unique_ptr<StopMatcher> stops;
  std::unique_ptr<chat::OutputParser> parser;
  std::unique_ptr<JsonConstraint> json;  // response_format json_object
  std::vector<uint8_t> allowed;          // scratch: tokens the constraint allows this step
  std::vector<SampledToken> pending_logprobs;
  bool done = false;
};

Engine::Engine(const LoadedModel& lm, EngineOptions opts) : lm_(lm), opts_(opts) {
  context_length_ = opts.context_length > 0 ? opts.context_length : lm.model->config().max_position_embeddings;
  cache_ = lm.model->make_cache();
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::shared_ptr<RequestHandle> Engine::submit(EngineRequest req) {
  if (req.prompt.empty()) throw Error(ErrorKind::InvalidArgument, "the prompt is empty");
  const int32_t vocab = lm_.model->config().vocab_size;
  for (int32_t t : req.prompt)
    if (t < 0 || t >= vocab) throw Error(ErrorKind::InvalidArgument, "prompt token id " + std::to_string(t) + " is outside the vocabulary");
  if (int(req.prompt.size()) >= context_length_)
    throw Error(ErrorKind::InvalidArgument, "prompt is too long: " + std::to_string(req.prompt.size()) + " tokens > " +
                                                std::to_string(context_length_ - 1) + " maximum");
  req.max_tokens = std::min(req.max_tokens, context_length_ - int(req.prompt.size()));
  auto s = std::make_unique<Sequence>();
  s->handle = std::make_shared<RequestHandle>();
  s->req = std::move(req);
  auto handle = s->handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (int(waiting_.size()) >= opts_.max_queue) throw Error(ErrorKind::Overloaded, "the server is busy: too many queued requests");
    waiting_.push_back(std::move(s));
    ++active_;
  }
  cv_.notify_one();
  return handle;
}

void Engine::set_kv_spec(kv::KvSpec spec, int quantized_kv_start) {
  spec.quantized_kv_start = quantized_kv_start;
  auto cache = lm_.model->make_cache(spec);  // validates against the model
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ != 0) throw Error(ErrorKind::Internal, "set_kv_spec: requests are running; install the KV spec before serving");
  prompt_cache_.clear();  // its sequences lived in the old cache
  cache_ = std::move(cache);
}

void Engine::start(Sequence& s) {
  const std::vector<int32_t>& prompt = s.req.prompt;
  size_t best = 0, best_len = 0;
  for (size_t i = 0; i < prompt_cache_.size(); ++i) {
    const auto& t = prompt_cache_[i].tokens;
    size_t n = 0;
    while (n < t.size() && n < prompt.size() && t[n] == prompt[n]) ++n;
    if (n > best_len) best = i, best_len = n;
  }
  // The last prompt token always runs again: its logits give the first generated token.
  const size_t reuse = std::min(best_len, prompt.size() - 1);
  if (reuse == 0) {
    s.kv_seq = cache_->create_sequence();
    return;
  }
  CachedPrompt& c = prompt_cache_[best];
  if (reuse == c.tokens.size()) {
    // The prompt continues the cached one (the next turn of a conversation): take its KV over; it comes
    // back into the cache, longer, when this request ends.
    s.kv_seq = c.kv_seq;
    prompt_cache_.erase(prompt_cache_.begin() + std::ptrdiff_t(best));
  } else {
    // They part earlier: copy the shared prefix and keep the entry for prompts that share more of it.
    s.kv_seq = cache_->copy_prefix(c.kv_seq, int32_t(reuse));
    c.used = ++clock_;
  }
  s.prefilled = reuse;
  s.cached = int(reuse);
  OPTIQ_LOG_DEBUG("prompt cache: reusing %zu of %zu prompt tokens", reuse, prompt.size());
}

void Engine::retire(Sequence& s, bool keep) {
  const int32_t len = cache_->length(s.kv_seq);
  if (!keep || opts_.prompt_cache_size <= 0 || len <= 0) {
    cache_->release_sequence(s.kv_seq);
    return;
  }
  // What the KV holds: the prompt, then the generated tokens that went back through the model.
  std::vector<int32_t> tokens(s.context.begin(), s.context.begin() + std::min<std::ptrdiff_t>(len, std::ptrdiff_t(s.context.size())));
  prompt_cache_.push_back({s.kv_seq, std::move(tokens), ++clock_});
  // Evict the least recently used entries beyond the count and byte limits.
  auto over = [&] {
    if (int(prompt_cache_.size()) > opts_.prompt_cache_size) return true;
    if (opts_.prompt_cache_bytes <= 0) return false;
    int64_t b = 0;
    for (auto& c : prompt_cache_) b += cache_->sequence_bytes(c.kv_seq);
    return b > opts_.prompt_cache_bytes;
  };
  while (over()) {
    auto lru = std::min_element(prompt_cache_.begin(), prompt_cache_.end(), [](auto& a, auto& b) { return a.used < b.used; });
    cache_->release_sequence(lru->kv_seq);
    prompt_cache_.erase(lru);
  }
}

void Engine::run() {
  std::vector<std::unique_ptr<Sequence>> running;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running.empty(); });
      if (stopping_) break;
      while (!waiting_.empty() && int(running.size()) < opts_.max_concurrency) {
        running.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
    }
    for (auto& s : running) {
      if (s->kv_seq >= 0) continue;
      start(*s);
      GenerationEvent started;  // first event: how much of the prompt the prompt cache held
      started.kind = GenerationEvent::Kind::Progress;
      started.prompt_tokens = started.cached_tokens = s->cached;
      started.prompt_total = int(s->req.prompt.size());
      s->handle->push(std::move(started));
      s->context = s->req.prompt;
      s->sampler = std::make_unique<Sampler>(s->req.sampling);
      s->detok = std::make_unique<tokenizer::StreamingDetokenizer>(*lm_.tokenizer);
      s->stops = std::make_unique<StopMatcher>(s->req.stop);
      s->parser = std::make_unique<chat::OutputParser>(s->req.output_format, s->req.tools_requested);
      if (s->req.json_object) {
        if (!token_bytes_) token_bytes_ = std::make_shared<TokenBytes>(*lm_.tokenizer, lm_.model->config().vocab_size);
        s->json = std::make_unique<JsonConstraint>(token_bytes_);
      }
    }
    bool failed = false;
    try {
      step(running);
    } catch (const std::exception& e) {
      failed = true;
      OPTIQ_LOG_WARN("engine step failed: %s", e.what());
      for (auto& s : running) {
        GenerationEvent ev;
        ev.kind = GenerationEvent::Kind::Error;
        ev.http_status = 500;
        ev.error = std::string("generation failed: ") + e.what();
        s->handle->push(std::move(ev));
        s->done = true;
      }
    }
    for (auto& s : running)
      if (s->done || s->handle->cancelled()) {
        if (!s->done)
          OPTIQ_LOG_INFO("request cancelled after %d of at most %d generated tokens", s->generated, s->req.max_tokens);
        retire(*s, /*keep=*/!failed);
        s.reset();
        std::lock_guard<std::mutex> lock(mu_);
        --active_;
      }
    running.erase(std::remove(running.begin(), running.end(), nullptr), running.end());
  }
}

void Engine::step(std::vector<std::unique_ptr<Sequence>>& running) {
  model::Batch batch;
  std::vector<Sequence*> logit_rows;  // which sequence each logits row belongs to
  int budget = opts_.prefill_chunk;
  for (auto& sp : running) {
    Sequence& s = *sp;
    if (s.handle->cancelled()) continue;
    if (s.prefilled < s.req.prompt.size()) {
      size_t n = std::min(s.req.prompt.size() - s.prefilled, size_t(std::max(budget, 1)));
      budget -= int(n);
      for (size_t i = 0; i < n; ++i) {
        size_t p = s.prefilled + i;
        bool last = p + 1 == s.req.prompt.size();
        batch.add(s.req.prompt[p], int32_t(p), s.kv_seq, last);
        if (last) logit_rows.push_back(&s);
      }
      s.prefilled += n;
      if (s.prefilled < s.req.prompt.size()) {
        GenerationEvent ev;
        ev.kind = GenerationEvent::Kind::Progress;
        ev.prompt_tokens = int(s.prefilled);
        ev.prompt_total = int(s.req.prompt.size());
        s.handle->push(std::move(ev));
      }
    } else if (s.pending_token >= 0) {
      batch.add(s.pending_token, int32_t(s.context.size() - 1), s.kv_seq, true);
      logit_rows.push_back(&s);
      s.pending_token = -1;
    }
  }
  if (batch.size() == 0) return;
  const int32_t vocab = lm_.model->config().vocab_size;
  std::vector<float> logits(logit_rows.size() * size_t(vocab));
  lm_.model->forward(batch, *cache_, logits.data());
  for (size_t i = 0; i < logit_rows.size(); ++i) {
    Sequence& s = *logit_rows[i];
    if (s.req.max_tokens <= 0) {
      finish(s, "length");
      continue;
    }
    if (s.json && s.json->allowed(s.allowed) == 0) {
      OPTIQ_LOG_WARN("json_object: no token of the vocabulary continues the JSON text; stopping");
      finish(s, "stop");
      continue;
    }
    SampledToken tok = s.sampler->sample(&logits[i * size_t(vocab)], vocab, s.context, size_t(s.generated),
                                         s.json ? &s.allowed : nullptr);
    s.context.push_back(tok.id);
    s.generated++;
    if (lm_.is_eos(tok.id)) {
      finish(s, "stop");
      continue;
    }
    if (s.json) s.json->accept(tok.id);
    emit_token(s, tok);
    if (s.done) continue;
    if (s.json && s.json->complete()) {  // the object has closed: nothing more may follow
      finish(s, "stop");
      continue;
    }
    if (s.generated >= s.req.max_tokens) {
      finish(s, "length");
      continue;
    }
    s.pending_token = tok.id;
  }
}

void Engine::emit_token(Sequence& s, const SampledToken& tok) {
  if (s.req.logprobs) s.pending_logprobs.push_back(tok);
  std::string text = s.stops->push(s.detok->push(tok.id));
  std::vector<GenerationEvent> evs = s.parser->push(text);
  for (auto& ev : evs) {
    if (ev.kind == GenerationEvent::Kind::Text && !s.pending_logprobs.empty()) ev.tokens.swap(s.pending_logprobs);
    s.handle->push(std::move(ev));
  }
  if (s.stops->stopped()) finish(s, "stop");
}

void Engine::finish(Sequence& s, const std::string& reason) {
  if (s.done) return;
  std::vector<GenerationEvent> evs;
  if (!s.stops->stopped()) {
    std::string tail = s.stops->push(s.detok->flush());
    tail += s.stops->flush();
    evs = s.parser->push(tail);
  }
  for (auto& ev : s.parser->finish()) evs.push_back(std::move(ev));
  for (auto& ev : evs) {
    if (ev.kind == GenerationEvent::Kind::Text && !s.pending_logprobs.empty()) ev.tokens.swap(s.pending_logprobs);
    s.handle->push(std::move(ev));
  }
  GenerationEvent done;
  done.kind = GenerationEvent::Kind::Done;
  done.finish_reason = s.parser->saw_tool_call() && reason == "stop" ? "tool_calls" : reason;
  done.stop_sequence = s.stops->matched();
  done.prompt_tokens = int(s.req.prompt.size());
  done.completion_tokens = s.generated;
  done.cached_tokens = s.cached;
  if (!s.pending_logprobs.empty()) {
    GenerationEvent lp;
    lp.kind = GenerationEvent::Kind::Text;
    lp.tokens.swap(s.pending_logprobs);
    s.handle->push(std::move(lp));
  }
  s.handle->push(std::move(done));
  s.done = true;
}

}  // namespace optiq::engine
