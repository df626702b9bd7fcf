// The decoder forward pass shared by every architecture:
//   h = x + mixer(norm(x));  x' = h + ffn(norm(h))
// where the mixer is attention, o_proj(attn(rope(q), rope(k), v)) (with a sigmoid output gate in the
// hybrids), or Gated DeltaNet (delta_net.cpp), and the feed-forward is a SwiGLU MLP or a mixture of
// experts (moe.cpp).
// Rows from many sequences go through every matmul together, so weights are read once per step.
#include "util/omp.h"

#include <algorithm>
#include <initializer_list>
#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/hadamard.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::model {

namespace {

void add_bias(const Linear& l, int64_t n, float* y) {
  if (l.bias.empty()) return;
  const int64_t out = l.w.rows;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < out; ++i) y[r * out + i] += l.bias[size_t(i)];
}

// The adapters each batch row applies (null: none), resolved once per forward pass.
using RowAdapters = std::vector<const std::vector<const Adapter*>*>;

// A projection's weights in the 16 bits pack_for_decode chose, as the kernels' low-rank pair.
kernels::LowRank low_rank(const LoraDelta& d) {
  kernels::LowRank t;
  t.a.format = t.b.format = d.packed == DType::BF16 ? kernels::WeightFormat::BF16 : kernels::WeightFormat::F16;
  t.a.rows = d.in, t.a.cols = d.rank, t.a.row_bytes = size_t(d.rank) * 2;  // Aᵀ
  t.b.rows = d.rank, t.b.cols = d.out, t.b.row_bytes = size_t(d.out) * 2;  // Bᵀ
  t.a.data = reinterpret_cast<const uint8_t*>(d.a16.data());
  t.b.data = reinterpret_cast<const uint8_t*>(d.b16.data());
  t.alpha = d.scale * d.unit;
  return t;
}

// The distinct adapters among the rows that adapt projection p of `layer`, in the order rows first name them.
std::vector<const Adapter*> adapters_of(const RowAdapters& rows, int layer, Proj p) {
  std::vector<const Adapter*> seen;
  for (auto* list : rows)
    if (list)
      for (const Adapter* a : *list)
        if (std::find(seen.begin(), seen.end(), a) == seen.end() && a->delta(layer, p)) seen.push_back(a);
  return seen;
}

// The rows that apply adapter a.
std::vector<int64_t> rows_of(const RowAdapters& rows, const Adapter* a) {
  std::vector<int64_t> group;
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r] && std::find(rows[r]->begin(), rows[r]->end(), a) != rows[r]->end()) group.push_back(int64_t(r));
  return group;
}

// DoRA: rows whose adapters adapt this projection get y = g * (y - bias + scale * B (A x)) + bias, one
// adapter after another, each over the group of rows that apply it.
void apply_dora(const RowAdapters& rows, int layer, Proj p, const float* x, int64_t in, float* y, int64_t out,
                const std::vector<float>& bias, int threads) {
  for (const Adapter* a : adapters_of(rows, layer, p)) {
    const LoraDelta& d = *a->delta(layer, p);
    OPTIQ_CHECK(d.in == in && d.out == out, "adapter does not fit the projection");
    const std::vector<int64_t> group = rows_of(rows, a);
    const int64_t G = int64_t(group.size());
    kernels::LowRank t = low_rank(d);
    const float s = t.alpha;
    t.alpha = 1.0f;
    // The group's rows of x, contiguous (x itself when every row is in it).
    thread_local std::vector<float> xs, u;
    const float* xg = x;
    if (G != int64_t(rows.size())) {
      xs.resize(size_t(G * in));
      for (int64_t g = 0; g < G; ++g) std::memcpy(xs.data() + g * in, x + group[size_t(g)] * in, size_t(in) * sizeof(float));
      xg = xs.data();
    }
    u.assign(size_t(G * out), 0.0f);
    kernels::lowrank_add(t.a, t.b, xg, G, 1.0f, u.data());
    const float* gain = d.dora_gain.empty() ? nullptr : d.dora_gain.data();
    const float* bs = bias.empty() ? nullptr : bias.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (G * out > 65536)
    for (int64_t g = 0; g < G; ++g) {
      float* yr = y + group[size_t(g)] * out;
      const float* ur = u.data() + g * out;
      if (!gain) {  // a plain adapter stacked with a DoRA one
        for (int64_t o = 0; o < out; ++o) yr[o] += s * ur[o];
      } else {
        for (int64_t o = 0; o < out; ++o) {
          const float b = bs ? bs[o] : 0.0f;
          yr[o] = gain[o] * (yr[o] - b + s * ur[o]) + b;
        }
      }
    }
  }
}

// One output of project(): a layer's projection and where its rows go.
struct Out {
  const Linear* l;
  float* y;
  Proj p;
};

// y = W x (+ bias) for projections that read the same x (q, k and v; gate and up; o; down), in one kernel call
// with the low-rank deltas of the rows' adapters: scale * B (A x) per adapter, over the rows that apply it,
// so each A and B is read once per step however many rows share it. A projection that a DoRA adapter adapts
// takes its deltas afterwards (apply_dora), since they rescale the whole output.
// prep (may be null) makes x's rows inside the kernel's parallel region (kernels::RowPrep).
void project(std::initializer_list<Out> outs, const float* x, int64_t n, const RowAdapters& rows, int layer, int threads,
             const kernels::RowPrep* prep = nullptr) {
  kernels::WeightView ws[4];
  float* ys[4] = {};
  int c = 0;
  std::vector<kernels::LowRank> terms;
  std::vector<std::vector<int64_t>> groups;  // the terms' row lists (moved, never copied: data() stays put)
  bool dora[4] = {};
  for (const Out& o : outs) {
    OPTIQ_CHECK(c < 4, "project takes up to 4 projections");
    ws[c] = o.l->w, ys[c] = o.y;
    const std::vector<const Adapter*> seen = adapters_of(rows, layer, o.p);
    for (const Adapter* a : seen) dora[c] = dora[c] || !a->delta(layer, o.p)->dora_gain.empty();
    if (!dora[c])
      for (const Adapter* a : seen) {
        const LoraDelta& d = *a->delta(layer, o.p);
        OPTIQ_CHECK(d.in == ws[c].cols && d.out == ws[c].rows, "adapter does not fit the projection");
        kernels::LowRank t = low_rank(d);
        t.out = c;
        groups.push_back(rows_of(rows, a));
        if (int64_t(groups.back().size()) != n) t.rows = groups.back().data(), t.n_rows = int64_t(groups.back().size());
        terms.push_back(t);
      }
    ++c;
  }
  kernels::matmul_shared_x(ws, ys, c, x, n, terms.data(), int(terms.size()), prep);
  c = 0;
  for (const Out& o : outs) {
    add_bias(*o.l, n, o.y);
    if (dora[c++]) apply_dora(rows, layer, o.p, x, o.l->w.cols, o.y, o.l->w.rows, o.l->bias, threads);
  }
}

void add_in_place(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

// One layer's attention for every row: rows of the same sequence at consecutive positions form a tile
// (with the query heads that share each KV head), so every K/V row is read once per tile.
void attention(const kv::KvCache& cache, const Batch& batch, int layer, int n_heads, float* q, int64_t q_stride, float* att,
               int threads) {
  const kv::KvShape& sh = cache.shape();
  const int64_t N = int64_t(batch.size()), hd = sh.head_dim;
  const int nkv = sh.n_kv_heads;
  const int64_t q_dim = int64_t(n_heads) * hd;
  const int rep = n_heads / nkv;
  const int tile_rows = std::max(1, 4 / rep);
  std::vector<kernels::KvLayerView> views;
  std::vector<int> view_of(static_cast<size_t>(N)), limits(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    limits[size_t(r)] = batch.positions[r] + 1;
    if (r > 0 && batch.seq_ids[r] == batch.seq_ids[r - 1]) {
      view_of[size_t(r)] = view_of[size_t(r - 1)];
      continue;
    }
    view_of[size_t(r)] = int(views.size());
    views.push_back(cache.view(batch.seq_ids[r], layer));
  }
  const bool any_rotated = std::any_of(views.begin(), views.end(), [](const kernels::KvLayerView& v) { return v.rotated; });
  auto rotate_rows = [&](float* x, int64_t stride) {
    if (!any_rotated) return;  // fp16 layers: no extra parallel region on the hot path
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
    for (int64_t r = 0; r < N; ++r)
      if (views[size_t(view_of[size_t(r)])].rotated)
        for (int h = 0; h < n_heads; ++h) kernels::hadamard(x + r * stride + h * hd, int(hd));
  };
  rotate_rows(q, q_stride);
  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<kernels::AttentionTile> tiles;
  for (int64_t r = 0; r < N;) {
    int64_t e = r + 1;
    while (e < N && e - r < tile_rows && batch.seq_ids[e] == batch.seq_ids[r] && batch.positions[e] == batch.positions[e - 1] + 1) ++e;
    for (int g = 0; g < nkv; ++g) {
      kernels::AttentionTile t;
      t.kv = &views[size_t(view_of[size_t(r)])];
      t.kv_head = g;
      t.rows = int(e - r);
      t.rep = rep;
      t.q = q + r * q_stride + int64_t(g) * rep * hd;
      t.q_stride = size_t(q_stride);
      t.out = att + r * q_dim + int64_t(g) * rep * hd;
      t.out_stride = size_t(q_dim);
      t.limits = &limits[size_t(r)];
      t.scale = scale;
      tiles.push_back(t);
    }
    r = e;
  }
  kernels::attention(tiles, threads);
  rotate_rows(att, q_dim);
}

}  // namespace

void Model::forward(const Batch& batch, kv::KvCache& cache, float* logits) const {
  if (batch.size() == 0) return;
  std::vector<float> x(batch.size() * size_t(config_.hidden_size));
  embed(batch, x.data());
  forward_layers(batch, cache, 0, config_.num_hidden_layers, x.data());
  head(batch, x.data(), logits);
}

void Model::embed(const Batch& batch, float* x) const {
  const int64_t H = config_.hidden_size;
  for (size_t r = 0; r < batch.size(); ++r) {
    OPTIQ_CHECK(batch.tokens[r] >= 0 && batch.tokens[r] < config_.vocab_size, "token id out of range");
    kernels::dequantize_row(embed_, batch.tokens[r], x + int64_t(r) * H);
  }
}

void Model::forward_layers(const Batch& batch, kv::KvCache& cache, int first, int last, float* x) const {
  const ModelConfig& c = config_;
  const int64_t N = int64_t(batch.size());
  if (N == 0) return;
  OPTIQ_CHECK(0 <= first && first <= last && last <= c.num_hidden_layers, "forward_layers: bad layer range");
  const int64_t H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t q_dim = int64_t(nh) * hd, kv_dim = int64_t(nkv) * hd;
  const int threads = compute_threads();

  for (int64_t r = 0; r < N; ++r) {
    int32_t seq = batch.seq_ids[r], pos = batch.positions[r];
    OPTIQ_CHECK(pos >= 0 && pos <= cache.length(seq), "batch rows must continue their sequence's cache");
    cache.extend(seq, pos + 1);
  }
  // Each row's adapters (a snapshot: adapters mounted meanwhile do not change this pass).
  std::vector<std::vector<const Adapter*>> sets;
  std::vector<std::shared_ptr<const Adapter>> hold;
  RowAdapters row_adapters;
  if (std::any_of(batch.adapter_sets.begin(), batch.adapter_sets.end(), [](int32_t s) { return s != 0; })) {
    std::lock_guard<std::mutex> lock(adapters_mu_);
    hold = adapters_;
    sets.resize(adapter_sets_.size());
    for (size_t id = 1; id < adapter_sets_.size(); ++id)
      for (int i : adapter_sets_[id])
        if (adapters_[size_t(i)]) sets[id].push_back(adapters_[size_t(i)].get());
    row_adapters.resize(size_t(N), nullptr);
    for (int64_t r = 0; r < N; ++r) {
      const int32_t id = batch.adapter_sets[size_t(r)];
      OPTIQ_CHECK(id >= 0 && size_t(id) < sets.size(), "unknown adapter set in batch");
      if (id != 0) {
        OPTIQ_CHECK(sets[size_t(id)].size() == adapter_sets_[size_t(id)].size(), "a batch row uses an unmounted adapter");
        row_adapters[size_t(r)] = &sets[size_t(id)];
      }
    }
  }

  const int64_t q_rows = c.attn_output_gate ? 2 * q_dim : q_dim;
  std::vector<float> h(size_t(N * H)), tmp(size_t(N * H));
  std::vector<float> q(size_t(N * q_rows)), k(size_t(N * kv_dim)), v(size_t(N * kv_dim)), att(size_t(N * q_dim));
  std::vector<float> gate, up;
  // Each row's RoPE rotation, the same in every layer: [cos | sin] (rot / 2 each) per row.
  const int rot = c.rope_dims > 0 ? c.rope_dims : int(hd);
  std::vector<float> angles(size_t(N) * size_t(rot));
  for (int64_t r = 0; r < N; ++r)
    kernels::rope_angles(batch.positions[r], inv_freq_.data(), rot / 2, angles.data() + r * rot, angles.data() + r * rot + rot / 2);

  // The per-row steps between projections run inside the next projection's parallel region (kernels::RowPrep):
  // the residual add of the last block's output (tmp), when one is pending, with the next norm of x into h;
  // silu(gate) * up before down. Where no projection follows (linear attention, MoE), in a region of their own.
  auto add_norm = [&](const std::vector<float>& w, bool add) -> kernels::RowPrep {
    return [&x, &tmp, &h, &w, H, eps = c.rms_norm_eps, add](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (add) add_in_place(x + r * H, tmp.data() + r * H, H);
        kernels::rms_norm(x + r * H, w.data(), H, eps, h.data() + r * H);
      }
    };
  };
  auto run_rows = [&](const kernels::RowPrep& f) {
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
    for (int64_t r = 0; r < N; ++r) f(r, r + 1);
  };
  bool pending = false;  // tmp holds the last block's output, not yet added to x
  for (int il = first; il < last; ++il) {
    const DecoderLayer& L = layers_[size_t(il)];
    const kernels::RowPrep norm1 = add_norm(L.input_norm, pending);
    if (c.is_linear(il)) {
      run_rows(norm1);
      delta_net(L.delta, batch, cache, il, h.data(), tmp.data());
    } else {
      project({{&L.q_proj, q.data(), Proj::Q}, {&L.k_proj, k.data(), Proj::K}, {&L.v_proj, v.data(), Proj::V}}, h.data(), N,
              row_adapters, il, threads, &norm1);
      // Gated attention: q_proj rows are [query (hd) | gate (hd)] per head; split them apart in place.
      if (c.attn_output_gate) {
        for (int64_t r = 0; r < N; ++r) {
          float* row = q.data() + r * q_rows;
          std::vector<float> g(static_cast<size_t>(q_dim));
          for (int hh = 0; hh < nh; ++hh) {
            std::memmove(row + hh * hd, row + 2 * hh * hd, size_t(hd) * sizeof(float));  // never overlaps forward
            std::memcpy(g.data() + hh * hd, row + (2 * hh + 1) * hd, size_t(hd) * sizeof(float));
          }
          std::memcpy(row + q_dim, g.data(), size_t(q_dim) * sizeof(float));
        }
      }
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
      for (int64_t r = 0; r < N; ++r) {
        float* qr = q.data() + r * q_rows;
        float* kr = k.data() + r * kv_dim;
        if (c.qk_norm) {
          for (int hh = 0; hh < nh; ++hh) kernels::rms_norm(qr + hh * hd, L.q_norm.data(), hd, c.rms_norm_eps, qr + hh * hd);
          for (int hh = 0; hh < nkv; ++hh) kernels::rms_norm(kr + hh * hd, L.k_norm.data(), hd, c.rms_norm_eps, kr + hh * hd);
        }
        const float* cs = angles.data() + r * rot;
        kernels::rope(qr, nh, int(hd), rot, cs, cs + rot / 2, c.rope_traditional);
        kernels::rope(kr, nkv, int(hd), rot, cs, cs + rot / 2, c.rope_traditional);
        cache.store(batch.seq_ids[r], il, batch.positions[r], kr, v.data() + r * kv_dim);
      }
      attention(cache, batch, il, nh, q.data(), q_rows, att.data(), threads);
      if (c.attn_output_gate) {
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
        for (int64_t r = 0; r < N; ++r) {
          const float* g = q.data() + r * q_rows + q_dim;
          float* a = att.data() + r * q_dim;
          for (int64_t i = 0; i < q_dim; ++i) a[i] *= 1.0f / (1.0f + std::exp(-g[i]));
        }
      }
      project({{&L.o_proj, tmp.data(), Proj::O}}, att.data(), N, row_adapters, il, threads);
    }
    const kernels::RowPrep norm2 = add_norm(L.post_attn_norm, true);
    if (c.is_moe(il)) {
      run_rows(norm2);
      moe(L.moe, N, h.data(), tmp.data());
    } else {
      gate.resize(size_t(N * I));
      up.resize(size_t(N * I));
      project({{&L.gate_proj, gate.data(), Proj::Gate}, {&L.up_proj, up.data(), Proj::Up}}, h.data(), N, row_adapters, il,
              threads, &norm2);
      const kernels::RowPrep act = [&gate, &up, I](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) kernels::silu_mul(gate.data() + r * I, up.data() + r * I, I);
      };
      project({{&L.down_proj, tmp.data(), Proj::Down}}, gate.data(), N, row_adapters, il, threads, &act);
    }
    pending = true;
  }
  if (pending) add_in_place(x, tmp.data(), N * H);
}

void Model::head(const Batch& batch, const float* x, float* logits) const {
  const ModelConfig& c = config_;
  const int64_t N = int64_t(batch.size()), H = c.hidden_size;
  // Final norm and head only for the rows whose logits are wanted.
  std::vector<float> h(size_t(N * H));
  int64_t n_out = 0;
  for (int64_t r = 0; r < N; ++r)
    if (batch.want_logits[r]) {
      kernels::rms_norm(x + r * H, final_norm_.data(), H, c.rms_norm_eps, h.data() + n_out * H);
      ++n_out;
    }
  if (n_out) kernels::matmul(lm_head_, h.data(), n_out, logits);
}

}  // namespace optiq::model
