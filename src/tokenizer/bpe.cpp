#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"

namespace optiq::tokenizer {

namespace {
inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
inline uint64_t hash_word(std::string_view w) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : w) h = (h ^ c) * 1099511628211ULL;
  return h ? h : 1;
}
}  // namespace

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  if (merges_.empty()) return nullptr;
  const uint64_t k = key(a, b);
  const size_t mask = merges_.size() - 1;
  for (size_t i = mix(k) & mask;; i = (i + 1) & mask) {
    if (merges_[i].key == k) return &merges_[i];
    if (merges_[i].key == kEmptyKey) return nullptr;
  }
}

void BpeModel::insert_merge(uint64_t k, int32_t id) {
  if ((merge_count_ + 1) * 2 > merges_.size()) {
    std::vector<Merge> old = std::move(merges_);
    merges_.assign(std::max<size_t>(1024, old.size() * 2), Merge{kEmptyKey, 0, 0});
    merge_count_ = 0;
    const size_t mask = merges_.size() - 1;
    for (const Merge& m : old) {
      if (m.key == kEmptyKey) continue;
      size_t i = mix(m.key) & mask;
      while (merges_[i].key != kEmptyKey) i = (i + 1) & mask;
      merges_[i] = m;
      ++merge_count_;
    }
  }
  const size_t mask = merges_.size() - 1;
  size_t i = mix(k) & mask;
  for (; merges_[i].key != kEmptyKey; i = (i + 1) & mask)
    if (merges_[i].key == k) return;  // a repeated merge keeps its first rank
  merges_[i] = Merge{k, int32_t(merge_count_), id};
  ++merge_count_;
}

void BpeModel::set_vocab(std::vector<std::string> pieces) {
  pieces_ = std::move(pieces);
  piece_to_id_.clear();
  piece_to_id_.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (!pieces_[i].empty()) piece_to_id_.emplace(pieces_[i], int32_t(i));
}

bool BpeModel::add_merge(std::string_view a, std::string_view b) {
  auto ia = piece_to_id_.find(a), ib = piece_to_id_.find(b);
  if (ia == piece_to_id_.end() || ib == piece_to_id_.end()) return false;
  std::string joined;
  joined.reserve(a.size() + b.size());
  joined.append(a).append(b);
  auto ij = piece_to_id_.find(joined);
  if (ij == piece_to_id_.end()) return false;
  insert_merge(key(ia->second, ib->second), ij->second);
  return true;
}

void BpeModel::finalize() {
  cache_.assign(kCacheSlots, CacheSlot{});
  all_byte_fallback_ = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto f = find(name);
    byte_fallback_ids_[b] = f ? *f : -1;
    all_byte_fallback_ &= bool(f);
    std::string ch;
    utf8_append(ch, byte_to_cp(uint8_t(b)));
    auto g = find(ch);
    byte_level_ids_[b] = g ? *g : -1;
  }
}

void BpeModel::push_unknown_char(std::string_view ch, std::vector<int32_t>& syms) const {
  if (byte_fallback) {
    bool all = true;
    for (unsigned char c : ch) all &= byte_fallback_ids_[c] >= 0;
    if (all) {
      for (unsigned char c : ch) syms.push_back(byte_fallback_ids_[c]);
      return;
    }
  }
  if (!unk_id) return;  // HF drops characters it cannot represent when there is no unk token
  if (fuse_unk && !syms.empty() && syms.back() == *unk_id) return;
  syms.push_back(*unk_id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= sizeof(CacheSlot::word) && !cache_.empty();
  uint64_t h = 0;
  if (cacheable) {
    h = hash_word(word);
    std::lock_guard<std::mutex> lock(cache_mu_);
    const CacheSlot& c = cache_[h & (kCacheSlots - 1)];
    if (c.hash == h && c.len == word.size() && std::memcmp(c.word, word.data(), word.size()) == 0) {
      out.insert(out.end(), c.ids, c.ids + c.n);
      return;
    }
  }
  size_t start = out.size();
  std::optional<int32_t> whole;
  if (ignore_merges) whole = byte_level ? find(bytes_to_byte_level(word)) : find(word);
  if (whole) out.push_back(*whole);
  else if (kind_ == Kind::Scores) encode_scores(word, out);
  else encode_ranks(word, out);
  size_t n = out.size() - start;
  if (cacheable && n <= std::size(CacheSlot{}.ids)) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    CacheSlot& c = cache_[h & (kCacheSlots - 1)];
    c.hash = h;
    c.len = uint8_t(word.size());
    c.n = uint8_t(n);
    std::memcpy(c.word, word.data(), word.size());
    std::copy(out.begin() + long(start), out.end(), c.ids);
  }
}

void BpeModel::encode_ranks(std::string_view word, std::vector<int32_t>& out) const {
  // Initial symbols: one per byte (byte-level) or per character.
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  if (byte_level) {
    for (unsigned char c : word) {
      if (byte_level_ids_[c] >= 0) ids.push_back(byte_level_ids_[c]);
      else push_unknown_char(std::string_view(reinterpret_cast<const char*>(&c), 1), ids);
    }
  } else {
    size_t i = 0;
    while (i < word.size()) {
      size_t n = std::min<size_t>(utf8_len(uint8_t(word[i])), word.size() - i);
      std::string_view ch = word.substr(i, n);
      auto it = piece_to_id_.find(ch);
      if (it != piece_to_id_.end()) ids.push_back(it->second);
      else push_unknown_char(ch, ids);
      i += n;
    }
  }
  const int n = int(ids.size());
  if (n <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prev[size_t(i)] = i - 1, next[size_t(i)] = i + 1 < n ? i + 1 : -1;

  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> heap_storage;
  heap_storage.reserve(size_t(n) * 2);
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue(std::greater<Cand>{},
                                                                         std::move(heap_storage));
  auto try_push = [&](int l) {
    if (l < 0) return;
    int r = next[size_t(l)];
    if (r < 0) return;
    if (const Merge* m = find_merge(ids[size_t(l)], ids[size_t(r)])) queue.push(Cand{m->rank, l, m->id});
  };
  for (int i = 0; i + 1 < n; ++i) try_push(i);

  std::vector<bool> dead(size_t(n), false);
  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    size_t l = size_t(c.pos);
    if (dead[l] || next[l] < 0) continue;
    size_t r = size_t(next[l]);
    const Merge* m = find_merge(ids[l], ids[r]);
    if (!m || m->id != c.id) continue;  // stale
    ids[l] = c.id;
    dead[r] = true;
    next[l] = next[r];
    if (next[l] >= 0) prev[size_t(next[l])] = int32_t(l);
    try_push(prev[l]);
    try_push(int(l));
  }
  for (int i = 0; i >= 0; i = next[size_t(i)]) out.push_back(ids[size_t(i)]);
}

void BpeModel::encode_scores(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t prev, next;
    uint32_t start, len;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    uint32_t n = uint32_t(std::min<size_t>(utf8_len(uint8_t(word[i])), word.size() - i));
    int32_t idx = int32_t(syms.size());
    syms.push_back(Sym{idx - 1, -1, uint32_t(i), n});
    if (idx > 0) syms[size_t(idx - 1)].next = idx;
    i += n;
  }
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
  };
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t len = syms[size_t(l)].len + syms[size_t(r)].len;
    auto it = piece_to_id_.find(word.substr(syms[size_t(l)].start, len));
    if (it == piece_to_id_.end()) return;
    float score = size_t(it->second) < scores_.size() ? scores_[size_t(it->second)] : 0.0f;
    queue.push(Bigram{score, l, r, len});
  };
  for (int32_t i = 0; i + 1 < int32_t(syms.size()); ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Sym& l = syms[size_t(b.left)];
    Sym& r = syms[size_t(b.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size || l.next != b.right) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) {
    std::string_view text = word.substr(syms[size_t(i)].start, syms[size_t(i)].len);
    auto it = piece_to_id_.find(text);
    if (it != piece_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char c : text) {
      if (byte_fallback_ids_[c] >= 0) out.push_back(byte_fallback_ids_[c]);
      else if (unk_id) out.push_back(*unk_id);
    }
  }
}

}  // namespace optiq::tokenizer
