#include "kv/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace optiq::kv {

KvCache::KvCache(int n_layers, int n_kv_heads, int head_dim)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim) {}

int32_t KvCache::create_sequence() {
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].live) {
      seqs_[i] = Seq{};
      seqs_[i].live = true;
      seqs_[i].k.resize(size_t(n_layers_));
      seqs_[i].v.resize(size_t(n_layers_));
      return int32_t(i);
    }
  seqs_.emplace_back();
  seqs_.back().live = true;
  seqs_.back().k.resize(size_t(n_layers_));
  seqs_.back().v.resize(size_t(n_layers_));
  return int32_t(seqs_.size() - 1);
}

KvCache::Seq& KvCache::seq(int32_t id) {
  OPTIQ_CHECK(id >= 0 && size_t(id) < seqs_.size() && seqs_[id].live, "unknown KV sequence");
  return seqs_[size_t(id)];
}
const KvCache::Seq& KvCache::seq(int32_t id) const {
  OPTIQ_CHECK(id >= 0 && size_t(id) < seqs_.size() && seqs_[id].live, "unknown KV sequence");
  return seqs_[size_t(id)];
}

void KvCache::release_sequence(int32_t id) { seq(id) = Seq{}; }

int32_t KvCache::length(int32_t id) const { return seq(id).length; }

void KvCache::truncate(int32_t id, int32_t n) {
  Seq& s = seq(id);
  s.length = std::min(s.length, std::max(n, 0));
}

void KvCache::extend(int32_t id, int32_t n) {
  Seq& s = seq(id);
  if (n > s.capacity) {
    int32_t cap = std::max({n, s.capacity * 2, 256});
    size_t elems = size_t(cap) * size_t(row_elems());
    for (int l = 0; l < n_layers_; ++l) {
      s.k[l].resize(elems);
      s.v[l].resize(elems);
    }
    s.capacity = cap;
  }
  s.length = std::max(s.length, n);
}

uint16_t* KvCache::key(int32_t id, int layer, int32_t pos) {
  Seq& s = seq(id);
  OPTIQ_CHECK(pos >= 0 && pos < s.length, "KV position out of range");
  return s.k[size_t(layer)].data() + size_t(pos) * size_t(row_elems());
}

uint16_t* KvCache::value(int32_t id, int layer, int32_t pos) {
  Seq& s = seq(id);
  OPTIQ_CHECK(pos >= 0 && pos < s.length, "KV position out of range");
  return s.v[size_t(layer)].data() + size_t(pos) * size_t(row_elems());
}

const uint16_t* KvCache::keys(int32_t id, int layer) const { return seq(id).k[size_t(layer)].data(); }
const uint16_t* KvCache::values(int32_t id, int layer) const { return seq(id).v[size_t(layer)].data(); }

int64_t KvCache::bytes_used() const {
  int64_t b = 0;
  for (auto& s : seqs_)
    if (s.live) b += int64_t(s.length) * row_elems() * 2 * 2 * n_layers_;
  return b;
}

}  // namespace optiq::kv
