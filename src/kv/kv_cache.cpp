#include "kv/kv_cache.h"

#include <algorithm>

#include "kernels/hadamard.h"
#include "quant/mlx_affine.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::kv {

KvCache::KvCache(KvShape shape, KvSpec spec) : shape_(std::move(shape)), spec_(std::move(spec)) {
  OPTIQ_CHECK(shape_.n_layers > 0 && shape_.n_kv_heads > 0 && shape_.head_dim > 0, "KV cache shape must be positive");
  spec_.validate(shape_);
}

size_t KvCache::head_bytes(const KvPrecision& p) const {
  const size_t d = size_t(shape_.head_dim);
  return p.quantized() ? d * size_t(p.bits) / 8 : d * 2;
}

int KvCache::head_groups(const KvPrecision& p) const { return p.quantized() ? shape_.head_dim / p.group_size : 0; }

void KvCache::init_layers(Seq& s) const {
  s.layers.assign(size_t(shape_.n_layers), Layer{});
  s.converted = spec_.quantized_kv_start == 0;
  for (int l = 0; l < shape_.n_layers; ++l) {
    Layer& L = s.layers[size_t(l)];
    if (!shape_.layer_has_kv(l)) continue;
    L.p = s.converted ? spec_.at(l) : KvPrecision{};
    L.rotated = L.p.quantized() && spec_.rotates(shape_.head_dim);
  }
}

int32_t KvCache::create_sequence() {
  size_t i = 0;
  while (i < seqs_.size() && seqs_[i].live) ++i;
  if (i == seqs_.size()) seqs_.emplace_back();
  seqs_[i] = Seq{};
  seqs_[i].live = true;
  init_layers(seqs_[i]);
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

void KvCache::release_sequence(int32_t id) { seq(id) = Seq{}; }

int32_t KvCache::length(int32_t id) const { return seq(id).length; }

void KvCache::truncate(int32_t id, int32_t n) {
  Seq& s = seq(id);
  s.length = std::min(s.length, std::max(n, 0));
}

namespace {
// Re-lays out [heads, old_cap, unit] as [heads, cap, unit], keeping the first n units of each head.
template <class T>
void regrow(std::vector<T>& buf, int heads, size_t unit, int32_t old_cap, int32_t cap, int32_t n) {
  std::vector<T> next(size_t(heads) * size_t(cap) * unit);
  if (!buf.empty())
    for (int h = 0; h < heads; ++h)
      std::copy_n(buf.begin() + std::ptrdiff_t(size_t(h) * size_t(old_cap) * unit), size_t(n) * unit,
                  next.begin() + std::ptrdiff_t(size_t(h) * size_t(cap) * unit));
  buf.swap(next);
}
}  // namespace

void KvCache::grow(Layer& L, int32_t old_cap, int32_t cap, int32_t n) const {
  const int H = shape_.n_kv_heads;
  regrow(L.k, H, head_bytes(L.p), old_cap, cap, n);
  regrow(L.v, H, head_bytes(L.p), old_cap, cap, n);
  if (L.p.quantized())
    for (auto* p : {&L.ks, &L.kb, &L.vs, &L.vb}) regrow(*p, H, size_t(head_groups(L.p)), old_cap, cap, n);
}

int32_t KvCache::copy_prefix(int32_t src, int32_t n) {
  const int32_t id = create_sequence();  // may reallocate seqs_: look src up afterwards
  const Seq& from = seq(src);
  Seq& to = seq(id);
  n = std::clamp(n, 0, from.length);
  to.converted = from.converted;
  to.capacity = std::max(n, 256);
  to.length = n;
  for (int l = 0; l < shape_.n_layers; ++l) {
    if (!shape_.layer_has_kv(l)) continue;
    Layer& L = to.layers[size_t(l)];
    const Layer& F = from.layers[size_t(l)];
    L.p = F.p;
    L.rotated = F.rotated;
    Layer tmp = F;  // regrow keeps the first n tokens of each head
    grow(tmp, from.capacity, to.capacity, n);
    L.k.swap(tmp.k), L.v.swap(tmp.v), L.ks.swap(tmp.ks), L.kb.swap(tmp.kb), L.vs.swap(tmp.vs), L.vb.swap(tmp.vb);
  }
  return id;
}

void KvCache::extend(int32_t id, int32_t n) {
  Seq& s = seq(id);
  if (!s.converted && s.length >= spec_.quantized_kv_start) convert(s);
  if (n > s.capacity) {
    const int32_t cap = std::max({n, s.capacity * 2, 256});
    for (int l = 0; l < shape_.n_layers; ++l)
      if (shape_.layer_has_kv(l)) grow(s.layers[size_t(l)], s.capacity, cap, s.length);
    s.capacity = cap;
  }
  s.length = std::max(s.length, n);
}

// Quantizes what an fp16 sequence holds into each layer's target precision (once).
void KvCache::convert(Seq& s) const {
  std::vector<float> k(size_t(shape_.n_kv_heads) * shape_.head_dim), v(k.size());
  for (int l = 0; l < shape_.n_layers; ++l) {
    if (!shape_.layer_has_kv(l)) continue;
    Layer& old = s.layers[size_t(l)];
    const KvPrecision target = spec_.at(l);
    if (!target.quantized()) continue;
    Layer L;
    L.p = target;
    L.rotated = spec_.rotates(shape_.head_dim);
    grow(L, 0, s.capacity, 0);
    const size_t d = size_t(shape_.head_dim), cap = size_t(s.capacity);
    const uint16_t* ok = reinterpret_cast<const uint16_t*>(old.k.data());
    const uint16_t* ov = reinterpret_cast<const uint16_t*>(old.v.data());
    for (int32_t t = 0; t < s.length; ++t) {
      for (int h = 0; h < shape_.n_kv_heads; ++h)
        for (size_t i = 0; i < d; ++i) {
          k[size_t(h) * d + i] = f16_to_f32(ok[(size_t(h) * cap + size_t(t)) * d + i]);
          v[size_t(h) * d + i] = f16_to_f32(ov[(size_t(h) * cap + size_t(t)) * d + i]);
        }
      store_row(L, s.capacity, t, k.data(), v.data());
    }
    old = std::move(L);
  }
  s.converted = true;
}

void KvCache::store_row(Layer& L, int32_t cap, int32_t pos, const float* k, const float* v) const {
  const int H = shape_.n_kv_heads, d = shape_.head_dim;
  const size_t hb = head_bytes(L.p);
  auto row = [&](std::vector<uint8_t>& buf, int h) { return buf.data() + (size_t(h) * size_t(cap) + size_t(pos)) * hb; };
  if (!L.p.quantized()) {
    for (int h = 0; h < H; ++h) {
      uint16_t* kc = reinterpret_cast<uint16_t*>(row(L.k, h));
      uint16_t* vc = reinterpret_cast<uint16_t*>(row(L.v, h));
      for (int i = 0; i < d; ++i) {
        kc[i] = f32_to_f16(k[size_t(h) * d + size_t(i)]);
        vc[i] = f32_to_f16(v[size_t(h) * d + size_t(i)]);
      }
    }
    return;
  }
  const int hg = head_groups(L.p);
  thread_local std::vector<float> tmp, sc, bi;
  tmp.resize(size_t(d));
  sc.resize(size_t(hg));
  bi.resize(size_t(hg));
  auto put = [&](const float* x, std::vector<uint8_t>& codes, std::vector<uint16_t>& scales, std::vector<uint16_t>& biases) {
    for (int h = 0; h < H; ++h) {
      std::copy(x + size_t(h) * d, x + size_t(h + 1) * d, tmp.begin());
      if (L.rotated) kernels::hadamard(tmp.data(), d);
      quant::quantize_row(tmp.data(), d, L.p.bits, L.p.group_size, row(codes, h), sc.data(), bi.data());
      const size_t p = (size_t(h) * size_t(cap) + size_t(pos)) * size_t(hg);
      for (int g = 0; g < hg; ++g) {
        scales[p + size_t(g)] = f32_to_f16(sc[size_t(g)]);
        biases[p + size_t(g)] = f32_to_f16(bi[size_t(g)]);
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
  store_row(s.layers[size_t(layer)], s.capacity, pos, k, v);
}

kernels::KvLayerView KvCache::view(int32_t id, int layer) const {
  const Seq& s = seq(id);
  OPTIQ_CHECK(layer >= 0 && layer < shape_.n_layers && shape_.layer_has_kv(layer), "layer has no KV cache");
  const Layer& L = s.layers[size_t(layer)];
  kernels::KvLayerView v;
  v.bits = L.p.bits;
  v.group_size = L.p.group_size;
  v.n_kv_heads = shape_.n_kv_heads;
  v.head_dim = shape_.head_dim;
  v.n_tokens = s.length;
  v.rotated = L.rotated;
  v.k = L.k.data();
  v.v = L.v.data();
  v.head_stride = size_t(s.capacity) * head_bytes(L.p);
  v.param_head_stride = size_t(s.capacity) * size_t(head_groups(L.p));
  if (L.p.quantized()) {
    v.k_scales = L.ks.data();
    v.k_biases = L.kb.data();
    v.v_scales = L.vs.data();
    v.v_biases = L.vb.data();
  }
  return v;
}

KvPrecision KvCache::precision(int32_t id, int layer) const { return seq(id).layers[size_t(layer)].p; }

int64_t KvCache::bytes_used() const {
  int64_t b = 0;
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (seqs_[i].live) b += sequence_bytes(int32_t(i));
  return b;
}

int64_t KvCache::sequence_bytes(int32_t id) const {
  const Seq& s = seq(id);
  int64_t b = 0;
  for (int l = 0; l < shape_.n_layers; ++l)
    if (shape_.layer_has_kv(l)) b += 2 * int64_t(s.length) * s.layers[size_t(l)].p.bytes(int64_t(shape_.n_kv_heads) * shape_.head_dim);
  return b;
}

}  // namespace optiq::kv
