#include "engine/engine.h"

#include <algorithm>
#include <optional>

#include "engine/adapter_scope.h"
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

using Clock = std::chrono::steady_clock;

struct Engine::Sequence {
  std::shared_ptr<RequestHandle> handle;
  EngineRequest req;
  int32_t kv_seq = -1;            // -1: not admitted (new, or preempted)
  bool initialized = false;       // per-request state below exists (first admission done)
  uint64_t order = 0;             // admission clock: the newest is preempted first
  size_t fed = 0;                 // tokens of context whose KV is stored
  int cached = 0;                 // prompt tokens the first admission took from a shared prefix
  std::vector<int32_t> context;   // prompt + generated; the last generated token is fed next step
  int generated = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<tokenizer::StreamingDetokenizer> detok;
  std::unique_ptr<StopMatcher> stops;
  std::unique_ptr<chat::OutputParser> parser;
  std::unique_ptr<JsonConstraint> json;  // response_format json_object
  std::vector<uint8_t> allowed;          // scratch: tokens the constraint allows this step
  std::vector<SampledToken> pending_logprobs;
  bool done = false;
  std::optional<GenerationEvent> done_event;  // sent once the sequence's pages are back (run())
  bool preempted = false;
  Clock::time_point submitted, last_token;
};

Engine::Engine(const LoadedModel& lm, EngineOptions opts) : lm_(lm), opts_(opts) {
  context_length_ = opts.context_length > 0 ? opts.context_length : lm.model->config().max_position_embeddings;
  cache_ = lm.model->make_cache({}, opts_.kv_cache_bytes);
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
  if (req.adapter_set == 0) req.adapter_set = AdapterScope::current();
  auto s = std::make_unique<Sequence>();
  s->handle = std::make_shared<RequestHandle>();
  s->submitted = Clock::now();
  auto handle = s->handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The whole sequence must fit the KV budget alone (the last generated token is never stored).
    const int64_t cap = cache_->capacity_tokens();
    const int64_t need = int64_t(req.prompt.size()) + std::max(req.max_tokens - 1, 0);
    if (cap > 0 && need > cap)
      throw Error(ErrorKind::InvalidArgument,
                  "prompt (" + std::to_string(req.prompt.size()) + " tokens) + max_tokens (" + std::to_string(req.max_tokens) +
                      ") needs " + std::to_string(need) + " tokens of KV cache, more than the server's budget holds (" +
                      std::to_string(cap) + " tokens); lower max_tokens or shorten the prompt");
    if (active_ >= opts_.max_concurrency + opts_.max_queue) {
      std::lock_guard<std::mutex> sl(stats_mu_);
      ++stats_.requests_rejected;
      throw Error(ErrorKind::Overloaded, "the server is busy: too many requests are running or queued; retry later");
    }
    if (req.adapter_set != 0 && !lm_.model->adapter_set_live(req.adapter_set))
      throw Error(ErrorKind::InvalidArgument, "the request's adapter was unmounted");
    ++set_users_[req.adapter_set];
    s->req = std::move(req);
    waiting_.push_back(std::move(s));
    ++active_;
  }
  cv_.notify_one();
  return handle;
}

void Engine::set_kv_spec(kv::KvSpec spec, int quantized_kv_start) {
  spec.quantized_kv_start = quantized_kv_start;
  auto cache = lm_.model->make_cache(spec, opts_.kv_cache_bytes);  // validates against the model and budget
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ != 0) throw Error(ErrorKind::Internal, "set_kv_spec: requests are running; install the KV spec before serving");
  for (auto& c : prompt_cache_) cache_->release_sequence(c.kv_seq);
  prompt_cache_.clear();  // its sequences lived in the old cache
  cache_ = std::move(cache);
}

void Engine::unmount_adapter(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);  // submit() checks sets under this lock too
  const int idx = lm_.model->find_adapter(name);
  if (idx < 0) throw Error(ErrorKind::NotFound, "no adapter named '" + name + "' is mounted");
  int users = 0;
  for (auto& [set, n] : set_users_)
    if (n > 0 && lm_.model->adapter_set_uses(set, idx)) users += n;
  if (users > 0)
    throw Error(ErrorKind::InvalidArgument, "adapter '" + name + "' is in use by " + std::to_string(users) +
                                                " queued or running request(s); retry when they finish", 409);
  lm_.model->unmount_adapter(name);
  adapters_unmounted_ = true;
  cv_.notify_one();
}

EngineStats Engine::stats() const {
  EngineStats out;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    out = stats_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  out.waiting = int(waiting_.size());
  return out;
}

void Engine::init(Sequence& s) {
  s.initialized = true;
  s.context = s.req.prompt;
  SamplingParams sp = s.req.sampling;
  sp.logprobs = s.req.logprobs;  // the log-softmax over the vocabulary only for requests that report it
  s.sampler = std::make_unique<Sampler>(sp);
  s.detok = std::make_unique<tokenizer::StreamingDetokenizer>(*lm_.tokenizer);
  s.stops = std::make_unique<StopMatcher>(s.req.stop);
  s.parser = std::make_unique<chat::OutputParser>(s.req.output_format, s.req.tools_requested);
  if (s.req.json_object) {
    if (!token_bytes_) token_bytes_ = std::make_shared<TokenBytes>(*lm_.tokenizer, lm_.model->config().vocab_size);
    s.json = std::make_unique<JsonConstraint>(token_bytes_);
  }
}

bool Engine::start(Sequence& s) {
  const std::vector<int32_t>& ctx = s.context;
  // The longest prefix shared with a running sequence (what it has stored) or a prompt-cache entry.
  int32_t src = -1;
  size_t best_len = 0;
  CachedPrompt* entry = nullptr;
  // The last token always runs again: its logits give the next generated token. Hybrid models resume only
  // where the cache knows the recurrent state exactly (a snapshot, or the source's end).
  auto consider = [&](const int32_t* t, size_t n, int32_t kv, CachedPrompt* e) {
    size_t m = 0;
    while (m < n && m + 1 < ctx.size() && t[m] == ctx[m]) ++m;
    m = size_t(cache_->restorable(kv, int32_t(m)));
    if (m > best_len) best_len = m, src = kv, entry = e;
  };
  // KV computed under other adapters is not this request's KV.
  const int32_t set = s.req.adapter_set;
  for (auto& r : running_)
    if (r && r.get() != &s && r->kv_seq >= 0 && r->req.adapter_set == set) consider(r->context.data(), r->fed, r->kv_seq, nullptr);
  for (auto& c : prompt_cache_)
    if (c.adapter_set == set) consider(c.tokens.data(), c.tokens.size(), c.kv_seq, &c);
  size_t reuse = best_len;
  int32_t kv = -1;
  if (reuse > 0) {
    kv = cache_->copy_prefix(src, int32_t(reuse));
    if (kv < 0) {  // no page for the partial copy: share whole pages only
      reuse = size_t(cache_->restorable(src, int32_t(reuse - reuse % kv::KvCache::kPageTokens)));
      if (reuse > 0) kv = cache_->copy_prefix(src, int32_t(reuse));
    }
    if (entry && kv >= 0) entry->used = ++clock_;
  }
  if (kv < 0) reuse = 0, kv = cache_->create_sequence();
  // Pages for the whole prompt now, so that prefill never waits halfway.
  while (!cache_->reserve(kv, int32_t(ctx.size())))
    if (!evict_cached()) {
      cache_->release_sequence(kv);
      return false;
    }
  s.kv_seq = kv;
  s.fed = reuse;
  // Hybrids: keep the recurrent state before the prompt's last token, where a repeated prompt or the next
  // turn of the conversation resumes (the last token always runs again).
  cache_->mark_snapshot(kv, int32_t(ctx.size()) - 1);
  if (reuse > 0) OPTIQ_LOG_DEBUG("prefix reuse: %zu of %zu tokens", reuse, ctx.size());
  return true;
}

void Engine::drop_cached(size_t i) {
  cache_->release_sequence(prompt_cache_[i].kv_seq);
  prompt_cache_.erase(prompt_cache_.begin() + std::ptrdiff_t(i));
}

bool Engine::evict_cached() {
  if (prompt_cache_.empty()) return false;
  // Least recently used first; entries the client asked to keep (cache_control) after all others.
  auto victim = std::min_element(prompt_cache_.begin(), prompt_cache_.end(), [](const CachedPrompt& a, const CachedPrompt& b) {
    return a.pinned != b.pinned ? !a.pinned : a.used < b.used;
  });
  drop_cached(size_t(victim - prompt_cache_.begin()));
  return true;
}

void Engine::retire(Sequence& s, bool keep) {
  if (s.kv_seq < 0) return;
  const int32_t len = cache_->length(s.kv_seq);
  if (!keep || opts_.prompt_cache_size <= 0 || len <= 0) {
    cache_->release_sequence(s.kv_seq);
    s.kv_seq = -1;
    return;
  }
  // What the KV holds: the prompt, then the generated tokens that went back through the model.
  std::vector<int32_t> tokens(s.context.begin(), s.context.begin() + std::min<std::ptrdiff_t>(len, std::ptrdiff_t(s.context.size())));
  // Entries this one continues hold nothing it does not (it shares their pages): drop them.
  bool pinned = s.req.cache_prefix_tokens > 0;
  for (size_t i = prompt_cache_.size(); i-- > 0;) {
    const auto& t = prompt_cache_[i].tokens;
    if (prompt_cache_[i].adapter_set == s.req.adapter_set && t.size() <= tokens.size() && std::equal(t.begin(), t.end(), tokens.begin())) {
      pinned = pinned || prompt_cache_[i].pinned;
      drop_cached(i);
    }
  }
  prompt_cache_.push_back({s.kv_seq, std::move(tokens), ++clock_, pinned, s.req.adapter_set});
  s.kv_seq = -1;
  auto over = [&] {
    if (int(prompt_cache_.size()) > opts_.prompt_cache_size) return true;
    if (opts_.prompt_cache_bytes <= 0) return false;
    std::vector<int32_t> ids;
    for (auto& c : prompt_cache_) ids.push_back(c.kv_seq);
    return cache_->distinct_bytes(ids) > opts_.prompt_cache_bytes;
  };
  while (over()) evict_cached();
}

void Engine::kv_gauges() {
  stats_.kv_pages_used = cache_->pages_used();
  stats_.kv_pages_free = cache_->budget_bytes() > 0 ? cache_->pages_free() : 0;
  stats_.kv_page_tokens = kv::KvCache::kPageTokens;
  stats_.kv_bytes_used = cache_->bytes_used();
  stats_.kv_budget_bytes = cache_->budget_bytes();
}

void Engine::preempt(Sequence& s) {
  OPTIQ_LOG_INFO("KV cache full: preempting a request after %d generated tokens; it resumes when pages free up", s.generated);
  cache_->release_sequence(s.kv_seq);
  s.kv_seq = -1;
  s.fed = 0;
  s.preempted = true;
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++stats_.preemptions;
}

bool Engine::make_room(Sequence& s, int32_t n_tokens) {
  while (!cache_->reserve(s.kv_seq, n_tokens)) {
    if (evict_cached()) continue;
    // Preempt the most recently admitted sequence (possibly s itself).
    Sequence* victim = nullptr;
    for (auto& r : running_)
      if (r && r->kv_seq >= 0 && (!victim || r->order > victim->order)) victim = r.get();
    if (!victim) return false;
    preempt(*victim);
    if (victim == &s) return false;
  }
  return true;
}

void Engine::admit() {
  for (;;) {
    std::unique_ptr<Sequence> s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty() || int(running_.size()) >= opts_.max_concurrency) return;
      s = std::move(waiting_.front());
      waiting_.pop_front();
    }
    const bool first = !s->initialized;
    if (first) init(*s);
    if (s->handle->cancelled() || !start(*s)) {
      if (s->handle->cancelled()) {  // never ran: nothing to report but the end
        std::lock_guard<std::mutex> lock(mu_);
        --active_;
        --set_users_[s->req.adapter_set];
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);  // no memory yet: wait at the front of the queue
      waiting_.push_front(std::move(s));
      return;
    }
    s->order = ++clock_;
    s->preempted = false;
    if (first) {
      s->cached = int(s->fed);
      GenerationEvent started;  // first event: how much of the prompt was already cached
      started.kind = GenerationEvent::Kind::Progress;
      started.prompt_tokens = started.cached_tokens = s->cached;
      started.cache_creation_tokens = std::max(0, s->req.cache_prefix_tokens - s->cached);
      started.prompt_total = int(s->req.prompt.size());
      s->handle->push(std::move(started));
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.prompt_tokens += s->req.prompt.size();
      stats_.prefix_cache_hit_tokens += uint64_t(s->cached);
    }
    running_.push_back(std::move(s));
  }
}

void Engine::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty(); });
      if (stopping_) break;
    }
    if (adapters_unmounted_.exchange(false))  // their KV can serve no request any more
      for (size_t i = prompt_cache_.size(); i-- > 0;)
        if (prompt_cache_[i].adapter_set != 0 && !lm_.model->adapter_set_live(prompt_cache_[i].adapter_set)) drop_cached(i);
    admit();
    if (running_.empty()) {  // the queue's head waits for memory that only finishing requests free
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      continue;
    }
    bool failed = false;
    try {
      step();
    } catch (const std::exception& e) {
      failed = true;
      OPTIQ_LOG_WARN("engine step failed: %s", e.what());
      for (auto& s : running_) {
        GenerationEvent ev;
        ev.kind = GenerationEvent::Kind::Error;
        ev.http_status = 500;
        ev.error = std::string("generation failed: ") + e.what();
        s->handle->push(std::move(ev));
        s->done = true;
      }
    }
    std::vector<std::unique_ptr<Sequence>> requeue;
    for (auto& s : running_) {
      if (s->done || s->handle->cancelled()) {
        if (!s->done)
          OPTIQ_LOG_INFO("request cancelled after %d of at most %d generated tokens", s->generated, s->req.max_tokens);
        retire(*s, /*keep=*/!failed);
        {
          std::lock_guard<std::mutex> lock(mu_);
          --active_;
          --set_users_[s->req.adapter_set];
          std::lock_guard<std::mutex> sl(stats_mu_);
          ++stats_.requests_finished;
          kv_gauges();
        }
        if (s->done_event) s->handle->push(std::move(*s->done_event));
        s.reset();
      } else if (s->preempted) {
        requeue.push_back(std::move(s));
      }
    }
    running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
    if (!requeue.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) waiting_.push_front(std::move(*it));
    }
    std::lock_guard<std::mutex> sl(stats_mu_);
    stats_.running = int(running_.size());
    stats_.prompt_cache_entries = int(prompt_cache_.size());
    kv_gauges();
  }
}

void Engine::step() {
  model::Batch batch;
  std::vector<Sequence*> logit_rows;  // which sequence each logits row belongs to
  int budget = opts_.prefill_chunk, prefilling = 0;
  // While sequences are decoding, a prompt's chunk is cut so that the step takes about the larger of
  // 250 ms and three decode-only steps (from measured step times: a decode step, and the cost of each
  // prompt row on top of it), bounding their inter-token latency while a long prompt arrives.
  int decoding = 0;
  for (auto& sp : running_)
    if (!sp->done && sp->kv_seq >= 0 && sp->context.size() - sp->fed == 1) ++decoding;
  if (decoding > 0 && decode_step_s_ > 0 && prefill_row_s_ > 0) {
    const double target = std::max(0.25, 3 * decode_step_s_);
    budget = std::clamp(int((target - decode_step_s_) / prefill_row_s_), 16, std::max(opts_.prefill_chunk, 16));
  }
  for (auto& sp : running_) {
    Sequence& s = *sp;
    if (s.handle->cancelled() || s.done || s.kv_seq < 0) continue;
    const size_t left = s.context.size() - s.fed;
    if (left == 0) continue;
    size_t n = 1;
    if (left > 1) {  // prefill (a prompt, or a preempted sequence's context) in chunks
      if (prefilling >= opts_.prompt_concurrency) continue;
      ++prefilling;
      n = std::min(left, size_t(std::max(budget, 1)));
      budget -= int(n);
    }
    if (!make_room(s, int32_t(s.fed + n))) continue;  // preempted (s or a newer one)
    for (size_t i = 0; i < n; ++i) {
      const size_t p = s.fed + i;
      const bool last = p + 1 == s.context.size();
      batch.add(s.context[p], int32_t(p), s.kv_seq, last, s.req.adapter_set);
      if (last) logit_rows.push_back(&s);
    }
    s.fed += n;
    if (s.generated == 0 && s.fed < s.req.prompt.size()) {
      GenerationEvent ev;
      ev.kind = GenerationEvent::Kind::Progress;
      ev.prompt_tokens = int(s.fed);
      ev.prompt_total = int(s.req.prompt.size());
      s.handle->push(std::move(ev));
    }
  }
  // make_room only ever preempts the sequence at hand or newer ones, which come later in running_ and
  // have no rows in the batch yet.
  if (batch.size() == 0) return;
  const int32_t vocab = lm_.model->config().vocab_size;
  std::vector<float> logits(logit_rows.size() * size_t(vocab));
  const Clock::time_point t0 = Clock::now();
  lm_.model->forward(batch, *cache_, logits.data());
  const Clock::time_point now = Clock::now();
  {  // moving averages for the chunk sizing above
    const double dt = std::chrono::duration<double>(now - t0).count();
    const int prompt_rows = int(batch.size()) - decoding;
    auto ema = [](double& avg, double v) { avg = avg > 0 ? 0.8 * avg + 0.2 * v : v; };
    if (prompt_rows <= 0) ema(decode_step_s_, dt);
    else if (decoding == 0 || decode_step_s_ > 0) ema(prefill_row_s_, std::max(0.0, dt - (decoding ? decode_step_s_ : 0.0)) / prompt_rows);
  }
  std::vector<double> ttft, itl;
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
    (s.generated == 0 ? ttft : itl).push_back(std::chrono::duration<double>(now - (s.generated == 0 ? s.submitted : s.last_token)).count());
    s.last_token = now;
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
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.generation_tokens += ttft.size() + itl.size();
  for (double t : ttft) stats_.time_to_first_token.observe(t);
  for (double t : itl) stats_.inter_token_latency.observe(t);
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
  done.cache_creation_tokens = std::max(0, s.req.cache_prefix_tokens - s.cached);
  if (!s.pending_logprobs.empty()) {
    GenerationEvent lp;
    lp.kind = GenerationEvent::Kind::Text;
    lp.tokens.swap(s.pending_logprobs);
    s.handle->push(std::move(lp));
  }
  s.done_event = std::move(done);
  s.done = true;
}

}  // namespace optiq::engine
