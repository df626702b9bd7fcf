#include "kv/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/hadamard.h"
#include "kernels/ops.h"
#include "quant/mlx_affine.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::kv {

namespace {
constexpr size_t kAlign = 64;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
int32_t pages_for(int32_t n_tokens) { return (n_tokens + KvCache::kPageTokens - 1) / KvCache::kPageTokens; }
}  // namespace

KvCache::KvCache(KvShape shape, KvSpec spec, int64_t budget_bytes)
    : shape_(std::move(shape)), spec_(std::move(spec)), budget_(budget_bytes) {
  OPTIQ_CHECK(shape_.n_layers > 0 && shape_.n_kv_heads > 0 && shape_.head_dim > 0, "KV cache shape must be positive");
  spec_.validate(shape_);
  layouts_[kSpecLayout] = make_layout(true);
  layouts_[kFp16Layout] = make_layout(false);
  state_index_.assign(size_t(shape_.n_layers), -1);
  if (shape_.state_floats > 0)
    for (int l = 0; l < shape_.n_layers; ++l)
      if (!shape_.layer_has_kv(l)) state_index_[size_t(l)] = n_state_layers_++;
  if (budget_ < 0) throw Error(ErrorKind::InvalidArgument, "the KV cache budget must be >= 0 bytes");
  if (budget_ > 0 && budget_ < page_bytes())
    throw Error(ErrorKind::InvalidArgument, "the KV cache budget of " + std::to_string(budget_) + " bytes holds no page of " +
                                                std::to_string(kPageTokens) + " tokens (" + std::to_string(page_bytes()) +
                                                " bytes at this precision)");
}

KvCache::~KvCache() { seqs_.clear(); }  // states give their bytes back to used_bytes_ first

size_t KvCache::head_bytes(const KvPrecision& p) const {
  const size_t d = size_t(shape_.head_dim);
  return p.quantized() ? d * size_t(p.bits) / 8 : d * 2;
}

int KvCache::head_groups(const KvPrecision& p) const { return p.quantized() ? shape_.head_dim / p.group_size : 0; }

KvCache::Layout KvCache::make_layout(bool converted) const {
  Layout out;
  out.layers.resize(size_t(shape_.n_layers));
  size_t off = 0;
  const size_t H = size_t(shape_.n_kv_heads), T = size_t(kPageTokens);
  for (int l = 0; l < shape_.n_layers; ++l) {
    LayerLayout& L = out.layers[size_t(l)];
    if (!shape_.layer_has_kv(l)) continue;
    L.p = converted ? spec_.at(l) : KvPrecision{};
    L.rotated = L.p.quantized() && spec_.rotates(shape_.head_dim);
    // Each head's block of K (then V): its rows, then (quantized) its scales and its biases, so that what
    // attention reads for one head and block of tokens lies in one contiguous run.
    const size_t codes = T * head_bytes(L.p), params = T * size_t(head_groups(L.p)) * sizeof(uint16_t);
    L.stride = codes + 2 * params;
    L.k = off, off = align_up(off + H * L.stride);
    L.v = off, off = align_up(off + H * L.stride);
    if (L.p.quantized()) L.ks = L.k + codes, L.kb = L.ks + params, L.vs = L.v + codes, L.vb = L.vs + params;
  }
  out.bytes = int64_t(off);
  return out;
}

int64_t KvCache::page_bytes() const { return layouts_[kSpecLayout].bytes; }

int32_t KvCache::pages_free() const {
  if (budget_ == 0) return std::numeric_limits<int32_t>::max();
  return int32_t(std::max<int64_t>(0, (budget_ - used_bytes_) / page_bytes()));
}

int64_t KvCache::capacity_tokens() const {
  return budget_ == 0 ? 0 : std::max<int64_t>(0, budget_ - state_bytes_per_sequence()) / page_bytes() * kPageTokens;
}

int32_t KvCache::alloc_page(int layout, bool force) {
  const int64_t bytes = layouts_[layout].bytes;
  if (!force && budget_ > 0 && used_bytes_ + bytes > budget_) return -1;
  int32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = int32_t(pages_.size());
    pages_.emplace_back();
  }
  Page& p = pages_[size_t(id)];
  if (!spare_[layout].empty()) {
    p.data = std::move(spare_[layout].back());
    spare_[layout].pop_back();
    spare_bytes_ -= bytes;
  } else {
    for (int l = 0; l < 2 && budget_ > 0; ++l)  // other layouts' spares give way to a page that needs the room
      while (!spare_[l].empty() && used_bytes_ + spare_bytes_ + bytes > budget_) {
        spare_bytes_ -= layouts_[l].bytes;
        spare_[l].pop_back();
      }
    // Not huge pages: a page's rows are written a token at a time, and a fresh huge page is faulted in and
    // zeroed 2 MiB at once (on this VM a new sequence's first page then took 100+ ms more; attention read no
    // faster from huge pages in alternating runs).
    p.data = LargeBuffer(size_t(bytes), /*huge_pages=*/false);
  }
  p.refs = 1;
  p.layout = layout;
  used_bytes_ += bytes;
  ++used_pages_;
  return id;
}

void KvCache::unref_page(int32_t id) {
  Page& p = pages_[size_t(id)];
  OPTIQ_CHECK(p.refs > 0, "KV page released twice");
  if (--p.refs > 0) return;
  const int64_t bytes = layouts_[p.layout].bytes;
  used_bytes_ -= bytes;
  --used_pages_;
  if (budget_ > 0 && used_bytes_ + spare_bytes_ + bytes <= budget_) {
    spare_[p.layout].push_back(std::move(p.data));
    spare_bytes_ += bytes;
  }
  p.data = LargeBuffer();
  free_ids_.push_back(id);
}

int32_t KvCache::create_sequence() {
  size_t i = 0;
  while (i < seqs_.size() && seqs_[i].live) ++i;
  if (i == seqs_.size()) seqs_.emplace_back();
  seqs_[i] = Seq{};
  seqs_[i].live = true;
  seqs_[i].converted = spec_.quantized_kv_start == 0;
  if (n_state_layers_) seqs_[i].state = std::make_unique<StateBuf>(size_t(state_bytes_per_sequence() / 4), &used_bytes_);
  return int32_t(i);
}

KvCache::Seq& KvCache::seq(int32_t id) {
  OPTIQ_CHECK(id >= 0 && size_t(id) < seqs_.size() && seqs_[size_t(id)].live, "unknown KV sequence");
  return seqs_[size_t(id)];
}
const KvCache::Seq& KvCache::seq(int32_t id) const {
  OPTIQ_CHECK(id >= 0 && size_t(id) < seqs_.size() && seqs_[size_t(id)].live, "unknown KV sequence");
  return seqs_[size_t(id)];
}

void KvCache::release_sequence(int32_t id) {
  Seq& s = seq(id);
  for (int32_t p : s.pages) unref_page(p);
  s = Seq{};
}

int32_t KvCache::length(int32_t id) const { return seq(id).length; }

// Copies the first `rows` positions of every layer from one page to another of the same layout.
void KvCache::copy_rows(int32_t from, int32_t to, int32_t rows) const {
  const Page& F = pages_[size_t(from)];
  const Page& D = pages_[size_t(to)];
  OPTIQ_CHECK(F.layout == D.layout, "KV page copy across layouts");
  const Layout& lay = layouts_[F.layout];
  const size_t H = size_t(shape_.n_kv_heads);
  for (int l = 0; l < shape_.n_layers; ++l) {
    if (!shape_.layer_has_kv(l)) continue;
    const LayerLayout& L = lay.layers[size_t(l)];
    const size_t hb = head_bytes(L.p), pb = size_t(head_groups(L.p)) * sizeof(uint16_t);
    for (size_t h = 0; h < H; ++h) {
      for (size_t off : {L.k, L.v}) std::memcpy(D.data.data() + off + h * L.stride, F.data.data() + off + h * L.stride, size_t(rows) * hb);
      if (L.p.quantized())
        for (size_t off : {L.ks, L.kb, L.vs, L.vb})
          std::memcpy(D.data.data() + off + h * L.stride, F.data.data() + off + h * L.stride, size_t(rows) * pb);
    }
  }
}

void KvCache::truncate(int32_t id, int32_t n) {
  Seq& s = seq(id);
  n = std::clamp(n, 0, s.length);
  if (n_state_layers_ && n < s.length) {
    OPTIQ_CHECK(restorable(id, n) == n, "truncate: no state snapshot at that length");
    if (n == 0) std::fill(s.state->v.begin(), s.state->v.end(), 0.0f);
    else s.state->v = snapshot_at(s, n)->state->v;
    while (!s.snapshots.empty() && s.snapshots.back().n_tokens > n) s.snapshots.pop_back();
    if (s.mark > n) s.mark = -1;
  }
  const size_t keep = size_t(pages_for(n));
  while (s.pages.size() > keep) {
    unref_page(s.pages.back());
    s.pages.pop_back();
    s.bases.pop_back();
  }
  s.length = n;
  // The next store lands in the last page: take a private copy when another sequence shares it.
  if (n % kPageTokens != 0 && pages_[size_t(s.pages.back())].refs > 1) {
    const int32_t copy = alloc_page(pages_[size_t(s.pages.back())].layout, /*force=*/true);
    copy_rows(s.pages.back(), copy, n % kPageTokens);
    unref_page(s.pages.back());
    s.pages.back() = copy;
    s.bases.back() = pages_[size_t(copy)].data.data();
  }
}

int32_t KvCache::copy_prefix(int32_t src, int32_t n) {
  {
    const Seq& from = seq(src);
    n = std::clamp(n, 0, from.length);
    if (n % kPageTokens != 0 && budget_ > 0 && used_bytes_ + layouts_[seq_layout(from)].bytes > budget_) return -1;
  }
  OPTIQ_CHECK(restorable(src, n) == n, "copy_prefix: no state snapshot at that length");
  const int32_t id = create_sequence();  // may reallocate seqs_: look src up afterwards
  const Seq& from = seq(src);
  Seq& to = seq(id);
  to.converted = from.converted;
  to.length = n;
  if (n_state_layers_ && n > 0) {
    to.state->v = n == from.length ? from.state->v : snapshot_at(from, n)->state->v;
    for (const Snapshot& sn : from.snapshots)
      if (sn.n_tokens <= n) to.snapshots.push_back(sn);
  }
  const int32_t whole = n / kPageTokens;
  for (int32_t i = 0; i < whole; ++i) {
    ++pages_[size_t(from.pages[size_t(i)])].refs;
    to.pages.push_back(from.pages[size_t(i)]);
    to.bases.push_back(from.bases[size_t(i)]);
  }
  if (n % kPageTokens != 0) {
    const int32_t p = alloc_page(seq_layout(from), /*force=*/true);  // checked above
    copy_rows(from.pages[size_t(whole)], p, n % kPageTokens);
    to.pages.push_back(p);
    to.bases.push_back(pages_[size_t(p)].data.data());
  }
  return id;
}

int32_t KvCache::pages_needed(int32_t id, int32_t n) const {
  return std::max<int32_t>(0, pages_for(n) - int32_t(seq(id).pages.size()));
}

bool KvCache::reserve(int32_t id, int32_t n) {
  Seq& s = seq(id);
  const int32_t need = pages_needed(id, n);
  if (need == 0) return true;
  const int layout = seq_layout(s);
  if (budget_ > 0 && used_bytes_ + int64_t(need) * layouts_[layout].bytes > budget_) return false;
  for (int32_t i = 0; i < need; ++i) {
    const int32_t p = alloc_page(layout, /*force=*/true);
    s.pages.push_back(p);
    s.bases.push_back(pages_[size_t(p)].data.data());
  }
  return true;
}

void KvCache::extend(int32_t id, int32_t n) {
  Seq& s = seq(id);
  prune_snapshots(s);
  if (!s.converted && s.length >= spec_.quantized_kv_start) convert(s);
  if (!reserve(id, n))
    throw Error(ErrorKind::Overloaded, "the KV cache budget is full (" + std::to_string(used_bytes_) + " of " +
                                           std::to_string(budget_) + " bytes)");
  s.length = std::max(s.length, n);
}

// Quantizes what an fp16 sequence holds into each layer's target precision (once), page by page. The
// new pages may briefly exceed the budget (each fp16 page is released right after its copy, and a
// quantized page is never larger).
void KvCache::convert(Seq& s) {
  const size_t H = size_t(shape_.n_kv_heads), d = size_t(shape_.head_dim);
  std::vector<float> k(H * d), v(H * d);
  const Layout& from = layouts_[kFp16Layout];
  const Layout& to = layouts_[kSpecLayout];
  for (size_t i = 0; i < s.pages.size(); ++i) {
    const int32_t old = s.pages[i];
    const int32_t rows = std::min<int32_t>(kPageTokens, s.length - int32_t(i) * kPageTokens);
    const int32_t p = alloc_page(kSpecLayout, /*force=*/true);
    const uint8_t* src = pages_[size_t(old)].data.data();
    uint8_t* dst = pages_[size_t(p)].data.data();
    for (int l = 0; l < shape_.n_layers; ++l) {
      if (!shape_.layer_has_kv(l)) continue;
      const LayerLayout& F = from.layers[size_t(l)];
      const LayerLayout& L = to.layers[size_t(l)];
      for (int32_t r = 0; r < rows; ++r) {
        for (size_t h = 0; h < H; ++h) {
          const uint16_t* ok = reinterpret_cast<const uint16_t*>(src + F.k + h * F.stride) + size_t(r) * d;
          const uint16_t* ov = reinterpret_cast<const uint16_t*>(src + F.v + h * F.stride) + size_t(r) * d;
          for (size_t e = 0; e < d; ++e) {
            k[h * d + e] = f16_to_f32(ok[e]);
            v[h * d + e] = f16_to_f32(ov[e]);
          }
        }
        store_row(L, dst, r, k.data(), v.data());
      }
    }
    unref_page(old);
    s.pages[i] = p;
    s.bases[i] = dst;
  }
  s.converted = true;
}

void KvCache::store_row(const LayerLayout& L, uint8_t* page, int32_t r, const float* k, const float* v) const {
  const int H = shape_.n_kv_heads, d = shape_.head_dim;
  const size_t hb = head_bytes(L.p);
  auto row = [&](size_t off, int h) { return page + off + size_t(h) * L.stride + size_t(r) * hb; };
  if (!L.p.quantized()) {
    for (int h = 0; h < H; ++h) {
      kernels::f32_to_f16_row(k + size_t(h) * d, reinterpret_cast<uint16_t*>(row(L.k, h)), d);
      kernels::f32_to_f16_row(v + size_t(h) * d, reinterpret_cast<uint16_t*>(row(L.v, h)), d);
    }
    return;
  }
  const int hg = head_groups(L.p);
  thread_local std::vector<float> tmp, sc, bi;
  tmp.resize(size_t(d));
  sc.resize(size_t(hg));
  bi.resize(size_t(hg));
  auto put = [&](const float* x, size_t codes, size_t scales, size_t biases) {
    for (int h = 0; h < H; ++h) {
      std::copy(x + size_t(h) * d, x + size_t(h + 1) * d, tmp.begin());
      if (L.rotated) kernels::hadamard(tmp.data(), d);
      quant::quantize_row(tmp.data(), d, L.p.bits, L.p.group_size, row(codes, h), sc.data(), bi.data());
      const size_t p = size_t(h) * L.stride + size_t(r) * size_t(hg) * sizeof(uint16_t);
      uint16_t* s16 = reinterpret_cast<uint16_t*>(page + scales + p);
      uint16_t* b16 = reinterpret_cast<uint16_t*>(page + biases + p);
      for (int g = 0; g < hg; ++g) {
        s16[g] = f32_to_f16(sc[size_t(g)]);
        b16[g] = f32_to_f16(bi[size_t(g)]);
      }
    }
  };
  put(k, L.k, L.ks, L.kb);
  put(v, L.v, L.vs, L.vb);
}

void KvCache::store(int32_t id, int layer, int32_t pos, const float* k, const float* v) {
  Seq& s = seq(id);
  OPTIQ_CHECK(layer >= 0 && layer < shape_.n_layers && shape_.layer_has_kv(layer), "layer has no KV cache");
  OPTIQ_CHECK(pos >= 0 && pos < s.length, "KV position out of range");
  const int32_t page = s.pages[size_t(pos / kPageTokens)];
  OPTIQ_CHECK(pages_[size_t(page)].refs == 1, "KV store into a shared page");
  store_row(layouts_[seq_layout(s)].layers[size_t(layer)], pages_[size_t(page)].data.data(), pos % kPageTokens, k, v);
}

kernels::KvLayerView KvCache::view(int32_t id, int layer) const {
  const Seq& s = seq(id);
  OPTIQ_CHECK(layer >= 0 && layer < shape_.n_layers && shape_.layer_has_kv(layer), "layer has no KV cache");
  const LayerLayout& L = layouts_[seq_layout(s)].layers[size_t(layer)];
  kernels::KvLayerView v;
  v.bits = L.p.bits;
  v.group_size = L.p.group_size;
  v.n_kv_heads = shape_.n_kv_heads;
  v.head_dim = shape_.head_dim;
  v.n_tokens = s.length;
  v.rotated = L.rotated;
  v.pages = s.bases.data();
  v.page_tokens = kPageTokens;
  v.head_stride = L.stride;
  v.param_head_stride = L.stride / sizeof(uint16_t);
  v.k_off = L.k, v.v_off = L.v, v.ks_off = L.ks, v.kb_off = L.kb, v.vs_off = L.vs, v.vb_off = L.vb;
  return v;
}

KvPrecision KvCache::precision(int32_t id, int layer) const { return layouts_[seq_layout(seq(id))].layers[size_t(layer)].p; }

int64_t KvCache::sequence_bytes(int32_t id) const {
  const Seq& s = seq(id);
  return int64_t(s.pages.size()) * layouts_[seq_layout(s)].bytes;
}

int64_t KvCache::distinct_bytes(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> all;
  for (int32_t id : ids) {
    const Seq& s = seq(id);
    all.insert(all.end(), s.pages.begin(), s.pages.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  int64_t b = 0;
  for (int32_t p : all) b += layouts_[pages_[size_t(p)].layout].bytes;
  return b;
}

float* KvCache::state(int32_t id, int layer) {
  OPTIQ_CHECK(layer >= 0 && layer < shape_.n_layers && state_index_[size_t(layer)] >= 0, "layer has no recurrent state");
  return seq(id).state->v.data() + size_t(state_index_[size_t(layer)]) * size_t(shape_.state_floats);
}

bool KvCache::wants_snapshot(int32_t id, int32_t n) const {
  return n_state_layers_ > 0 && n > 0 && (n % kPageTokens == 0 || n == seq(id).mark);
}

float* KvCache::snapshot(int32_t id, int layer, int32_t n) {
  OPTIQ_CHECK(layer >= 0 && layer < shape_.n_layers && state_index_[size_t(layer)] >= 0, "layer has no recurrent state");
  Seq& s = seq(id);
  auto it = std::find_if(s.snapshots.begin(), s.snapshots.end(), [&](const Snapshot& x) { return x.n_tokens >= n; });
  if (it == s.snapshots.end() || it->n_tokens != n)
    it = s.snapshots.insert(it, Snapshot{n, std::make_shared<StateBuf>(size_t(state_bytes_per_sequence() / 4), &used_bytes_)});
  OPTIQ_CHECK(it->state.use_count() == 1, "KV snapshot written while shared");
  return it->state->v.data() + size_t(state_index_[size_t(layer)]) * size_t(shape_.state_floats);
}

void KvCache::mark_snapshot(int32_t id, int32_t n) { seq(id).mark = n; }

const KvCache::Snapshot* KvCache::snapshot_at(const Seq& s, int32_t n) const {
  for (const Snapshot& sn : s.snapshots)
    if (sn.n_tokens == n) return &sn;
  return nullptr;
}

int32_t KvCache::restorable(int32_t id, int32_t n) const {
  const Seq& s = seq(id);
  n = std::clamp(n, 0, s.length);
  if (!n_state_layers_ || n == s.length) return n;
  int32_t best = 0;
  for (const Snapshot& sn : s.snapshots)
    if (sn.n_tokens <= n) best = sn.n_tokens;
  return best;
}

// Keeps the snapshot at the mark and the last two others: enough to resume a conversation from its
// previous prompt or from a recent page boundary, at a bounded cost per sequence.
void KvCache::prune_snapshots(Seq& s) {
  constexpr int kKeep = 2;
  int others = 0;
  for (int i = int(s.snapshots.size()) - 1; i >= 0; --i) {
    if (s.snapshots[size_t(i)].n_tokens == s.mark) continue;
    if (++others > kKeep) s.snapshots.erase(s.snapshots.begin() + i);
  }
}

}  // namespace optiq::kv
