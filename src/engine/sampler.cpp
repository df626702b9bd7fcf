#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace optiq::engine {

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  rng_.seed(params.seed ? *params.seed : std::random_device{}());
}

namespace {

// The first index of the largest value (ties: the lowest index; -inf everywhere: 0). 16 running maxima first
// (a loop the compiler turns into vector max), then one pass for the first index that holds the maximum.
int32_t argmax(const float* l, int32_t n) {
  float lane[16];
  for (float& m : lane) m = -INFINITY;
  int32_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
  float mx = -INFINITY;
  for (float m : lane) mx = m > mx ? m : mx;
  for (; i < n; ++i) mx = l[i] > mx ? l[i] : mx;
  for (i = 0; i < n; ++i)
    if (l[i] == mx) return i;
  return 0;
}

}  // namespace

SampledToken Sampler::sample(float* logits, int32_t vocab, const std::vector<int32_t>& context, size_t n_generated,
                             const std::vector<uint8_t>* allowed) {
  const SamplingParams& p = params_;
  SampledToken out;

  // Raw log-softmax for logprobs (a pass of exp over the vocabulary: only when they are reported).
  const bool want_logprobs = p.logprobs || p.top_logprobs > 0;
  float log_z = 0.0f;
  if (want_logprobs) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int32_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i] - mx));
    log_z = mx + float(std::log(sum));
  }
  if (p.top_logprobs > 0) {
    std::vector<std::pair<float, int32_t>> all(static_cast<size_t>(vocab));
    for (int32_t i = 0; i < vocab; ++i) all[size_t(i)] = {logits[i], i};
    size_t k = std::min<size_t>(size_t(p.top_logprobs), all.size());
    std::partial_sort(all.begin(), all.begin() + long(k), all.end(),
                      [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (size_t i = 0; i < k; ++i) out.top.push_back({all[i].second, all[i].first - log_z});
  }

  // Processing (the raw logits are kept for the chosen token's logprob, when it is reported).
  float* l = logits;
  if (want_logprobs) raw_.assign(l, l + vocab);
  for (auto& [id, b] : p.logit_bias)
    if (id >= 0 && id < vocab) l[id] += b;
  if (p.repetition_penalty != 1.0f && p.repetition_context_size > 0) {
    size_t start = context.size() > size_t(p.repetition_context_size) ? context.size() - size_t(p.repetition_context_size) : 0;
    std::vector<int32_t> seen;
    for (size_t i = start; i < context.size(); ++i) {
      int32_t t = context[i];
      if (t < 0 || t >= vocab || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
      seen.push_back(t);
      l[t] = l[t] < 0 ? l[t] * p.repetition_penalty : l[t] / p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (size_t i = context.size() - std::min(n_generated, context.size()); i < context.size(); ++i) counts[context[i]]++;
    for (auto& [t, n] : counts)
      if (t >= 0 && t < vocab) l[t] -= p.presence_penalty + p.frequency_penalty * float(n);
  }

  if (allowed)
    for (int32_t i = 0; i < vocab; ++i)
      if (!(*allowed)[size_t(i)]) l[i] = -INFINITY;

  int32_t chosen = 0;
  if (p.temperature <= 0.0f) {
    chosen = argmax(l, vocab);
  } else {
    cand_.resize(size_t(vocab));
    for (int32_t i = 0; i < vocab; ++i) cand_[size_t(i)] = {l[i] / p.temperature, i};
    auto by_logit = [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t n = cand_.size();
    if (p.top_k > 0 && size_t(p.top_k) < n) {
      std::partial_sort(cand_.begin(), cand_.begin() + p.top_k, cand_.end(), by_logit);
      n = size_t(p.top_k);
    } else {
      std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    // Probabilities over the surviving candidates.
    const float top = cand_[0].first;
    std::vector<double> prob(n);
    double z = 0;
    for (size_t i = 0; i < n; ++i) z += prob[i] = std::exp(double(cand_[i].first - top));
    for (auto& x : prob) x /= z;
    if (p.top_p > 0.0f && p.top_p < 1.0f) {
      double acc = 0;
      size_t keep = n;
      for (size_t i = 0; i < n; ++i) {
        acc += prob[i];
        if (acc >= p.top_p) { keep = i + 1; break; }
      }
      n = keep;
    }
    if (p.min_p > 0.0f) {
      size_t keep = 1;
      while (keep < n && prob[keep] >= p.min_p * prob[0]) ++keep;
      n = keep;
    }
    double zz = 0;
    for (size_t i = 0; i < n; ++i) zz += prob[i];
    std::uniform_real_distribution<double> u(0.0, zz);
    double r = u(rng_), acc = 0;
    chosen = cand_[0].second;
    for (size_t i = 0; i < n; ++i) {
      acc += prob[i];
      if (r < acc) { chosen = cand_[i].second; break; }
    }
  }
  out.id = chosen;
  out.logprob = want_logprobs ? raw_[size_t(chosen)] - log_z : 0.0f;
  return out;
}

}  // namespace optiq::engine
