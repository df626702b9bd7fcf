#include "engine/kv_calibration.h"

#include <algorithm>

#include "util/error.h"

namespace optiq::engine {

namespace {

constexpr int kHeadChunk = 64;                       // positions per head matmul
constexpr size_t kMaxStoredLogits = size_t(1) << 28;  // 1 GiB of f32 reference logits; above, recompute

// All positions of one sample in one batch of sequence `seq`.
model::Batch sample_batch(const std::vector<int32_t>& tokens, int32_t seq) {
  model::Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], int32_t(i), seq, false);
  return b;
}

// The reference side of a sample: final hidden states, and the logits of every scored position when
// they fit in memory (else they are recomputed from the hidden states chunk by chunk).
class Reference {
 public:
  Reference(const model::Model& m, const std::vector<int32_t>& tokens, std::vector<float> final_x)
      : m_(m), tokens_(tokens), x_(std::move(final_x)), V_(m.config().vocab_size) {
    const size_t n = scored();
    if (n * size_t(V_) <= kMaxStoredLogits) {
      logits_.resize(n * size_t(V_));
      for (size_t s = 0; s < n; s += kHeadChunk) head(s, std::min(n, s + kHeadChunk), logits_.data() + s * size_t(V_));
      for (size_t i = 0; i < n; ++i) rows_.push_back(LogitRow::of(logits_.data() + i * size_t(V_), V_));
    }
  }
  size_t scored() const { return tokens_.size() - 1; }  // positions with a next token

  // Scores the final hidden states `xq` of a compared run against the reference.
  DistributionStats compare(const std::vector<float>& xq) const {
    DistributionStats st;
    const size_t n = scored(), V = size_t(V_);
    std::vector<float> q(size_t(kHeadChunk) * V), r(logits_.empty() ? q.size() : 0);
    for (size_t s = 0; s < n; s += kHeadChunk) {
      const size_t e = std::min(n, s + kHeadChunk);
      head_of(xq, s, e, q.data());
      const float* ref = logits_.empty() ? r.data() : logits_.data() + s * V;
      if (logits_.empty()) head_of(x_, s, e, r.data());
      for (size_t i = s; i < e; ++i) {
        const float* a = ref + (i - s) * V;
        st.add(a, logits_.empty() ? LogitRow::of(a, V_) : rows_[i], q.data() + (i - s) * V, V_, tokens_[i + 1]);
      }
    }
    return st;
  }

 private:
  void head(size_t s, size_t e, float* out) const { head_of(x_, s, e, out); }
  void head_of(const std::vector<float>& x, size_t s, size_t e, float* out) const {
    model::Batch b;
    for (size_t i = s; i < e; ++i) b.add(0, int32_t(i), 0, true);
    m_.head(b, x.data() + s * size_t(m_.config().hidden_size), out);
  }
  const model::Model& m_;
  const std::vector<int32_t>& tokens_;
  std::vector<float> x_;
  int V_;
  std::vector<float> logits_;
  std::vector<LogitRow> rows_;
};

// Runs layers [first, L) of one sample over x (in place) with a fresh cache of precision `spec`.
void run_from(const model::Model& m, const std::vector<int32_t>& tokens, const kv::KvSpec& spec, int first, std::vector<float>& x) {
  auto cache = m.make_cache(spec);
  model::Batch b = sample_batch(tokens, cache->create_sequence());
  m.forward_layers(b, *cache, first, m.config().num_hidden_layers, x.data());
}

std::vector<float> embedded(const model::Model& m, const std::vector<int32_t>& tokens) {
  std::vector<float> x(tokens.size() * size_t(m.config().hidden_size));
  m.embed(sample_batch(tokens, 0), x.data());
  return x;
}

void check_samples(const std::vector<std::vector<int32_t>>& samples) {
  if (samples.empty()) throw Error(ErrorKind::InvalidArgument, "no calibration samples");
  for (auto& s : samples)
    if (s.size() < 2) throw Error(ErrorKind::InvalidArgument, "a calibration sample needs at least 2 tokens");
}

}  // namespace

std::vector<KvLayerSensitivity> measure_kv_sensitivity(const model::Model& m, const std::vector<std::vector<int32_t>>& samples,
                                                       const KvCalibrationOptions& opts) {
  check_samples(samples);
  const kv::KvShape shape = m.kv_shape();
  const int L = m.config().num_hidden_layers;
  std::vector<int> cands = opts.candidate_bits;
  std::sort(cands.begin(), cands.end());
  cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
  if (cands.empty()) throw Error(ErrorKind::InvalidArgument, "no candidate bit widths");

  std::vector<KvLayerSensitivity> out;
  std::vector<kv::KvSpec> specs;  // per (KV layer, candidate), validated up front
  for (int l = 0; l < L; ++l) {
    if (!shape.layer_has_kv(l)) continue;
    out.push_back({l, {}});
    for (int bits : cands) {
      kv::KvSpec s;
      s.rotation = opts.rotation;
      s.layers[l] = {bits, opts.group_size};
      s.source = "--candidate-bits " + std::to_string(bits) + " / --group-size " + std::to_string(opts.group_size);
      s.validate(shape);
      specs.push_back(std::move(s));
    }
  }

  double total = 0, done = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    total += L;
    for (auto& ls : out) total += double(cands.size()) * (L - ls.layer_idx);
  }
  for (const auto& tokens : samples) {
    // Reference: fp16 KV, keeping the residual stream at every layer's input.
    auto cache = m.make_cache();
    model::Batch b = sample_batch(tokens, cache->create_sequence());
    std::vector<std::vector<float>> stream;
    std::vector<float> x = embedded(m, tokens);
    for (int l = 0; l < L; ++l) {
      stream.push_back(x);
      m.forward_layers(b, *cache, l, l + 1, x.data());
    }
    done += L;
    if (opts.progress) opts.progress(done, total);
    Reference ref(m, tokens, std::move(x));

    size_t k = 0;
    for (auto& ls : out)
      for (int bits : cands) {
        std::vector<float> xq = stream[size_t(ls.layer_idx)];
        run_from(m, tokens, specs[k++], ls.layer_idx, xq);
        ls.at[bits].add(ref.compare(xq));
        done += L - ls.layer_idx;
        if (opts.progress) opts.progress(done, total);
      }
  }
  return out;
}

DistributionStats compare_kv_spec(const model::Model& m, const std::vector<std::vector<int32_t>>& samples, const kv::KvSpec& spec) {
  return compare_kv_specs(m, samples, {spec})[0];
}

std::vector<DistributionStats> compare_kv_specs(const model::Model& m, const std::vector<std::vector<int32_t>>& samples,
                                                const std::vector<kv::KvSpec>& specs) {
  check_samples(samples);
  for (auto& spec : specs) spec.validate(m.kv_shape());
  std::vector<DistributionStats> st(specs.size());
  for (const auto& tokens : samples) {
    std::vector<float> x = embedded(m, tokens);
    const std::vector<float> x0 = x;
    run_from(m, tokens, kv::KvSpec{}, 0, x);
    const Reference ref(m, tokens, std::move(x));
    for (size_t i = 0; i < specs.size(); ++i) {
      std::vector<float> xq = x0;
      run_from(m, tokens, specs[i], 0, xq);
      st[i].add(ref.compare(xq));
    }
  }
  return st;
}

}  // namespace optiq::engine
