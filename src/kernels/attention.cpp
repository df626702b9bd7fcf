#include "kernels/attention.h"

#include "util/omp.h"

#include <algorithm>
#include <cmath>

#include "quant/mlx_affine.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::kernels {

namespace {

// Token t of KV head g (K or V) as f32.
void dequant_head(const KvLayerView& kv, bool is_k, int g, int t, float* out) {
  const uint8_t* base = is_k ? kv.k_row(g, t) : kv.v_row(g, t);
  if (!kv.quantized()) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(base);
    for (int i = 0; i < kv.head_dim; ++i) out[i] = f16_to_f32(h[i]);
    return;
  }
  const uint16_t* s = is_k ? kv.k_scale(g, t) : kv.v_scale(g, t);
  const uint16_t* b = is_k ? kv.k_bias(g, t) : kv.v_bias(g, t);
  quant::dequantize_row(base, reinterpret_cast<const uint8_t*>(s), reinterpret_cast<const uint8_t*>(b), DType::F16,
                        kv.head_dim, kv.bits, kv.group_size, out);
}

bool avx2_ok(const KvLayerView& kv) {
  return active_isa() == Isa::Avx2 && kv.head_dim % 8 == 0 && (!kv.quantized() || kv.group_size >= 8);
}

}  // namespace

namespace attn {

void round_q_int8(const float* q, int d, int gs, int8_t* qi, float* scale) {
  for (int g0 = 0; g0 < d; g0 += gs) {
    float m = 0;
    for (int e = g0; e < g0 + gs; ++e) m = std::max(m, std::fabs(q[e]));
    const float sc = m / 127.0f, inv = m > 0 ? 127.0f / m : 0.0f;
    scale[g0 / gs] = sc;
    for (int e = g0; e < g0 + gs; ++e) qi[e] = static_cast<int8_t>(std::nearbyint(q[e] * inv));
  }
}

void round_q_for(const KvLayerView& kv, float* q) {
  if (!int8_q(kv)) return;
  const int d = kv.head_dim, gs = kv.group_size;
  int8_t qi[512];
  float sc[512 / 32];
  round_q_int8(q, d, gs, qi, sc);
  for (int e = 0; e < d; ++e) q[e] = float(qi[e]) * sc[e / gs];
}

// Scalar block: the definition the AVX2 block must match.
void block_ref(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1, Partial* parts,
               float* scratch) {
  const int d = kv.head_dim, n = t1 - t0;
  std::vector<float> row(static_cast<size_t>(d), 0.0f);
  for (int t = t0; t < t1; ++t) {
    dequant_head(kv, true, g, t, row.data());
    for (int j = 0; j < nq; ++j) {
      float dot = 0;
      for (int i = 0; i < d; ++i) dot += q[size_t(j) * d + i] * row[size_t(i)];
      scratch[size_t(j) * kChunk + (t - t0)] = dot;
    }
  }
  for (int j = 0; j < nq; ++j) {
    const int valid = std::min(n, limits[j] - t0);
    float* s = scratch + size_t(j) * kChunk;
    if (valid <= 0) {
      std::fill(s, s + n, 0.0f);
      continue;
    }
    float mc = -INFINITY;
    for (int t = 0; t < valid; ++t) mc = std::max(mc, s[t]);
    Partial& P = parts[j];
    const float m_new = std::max(P.m, mc);
    const float corr = std::exp(P.m - m_new);
    P.l *= corr;
    for (int i = 0; i < d; ++i) P.acc[i] *= corr;
    for (int t = 0; t < n; ++t) {
      s[t] = t < valid ? std::exp(s[t] - m_new) : 0.0f;
      P.l += s[t];
    }
    P.m = m_new;
  }
  for (int t = t0; t < t1; ++t) {
    dequant_head(kv, false, g, t, row.data());
    for (int j = 0; j < nq; ++j) {
      const float p = scratch[size_t(j) * kChunk + (t - t0)];
      if (p == 0.0f) continue;
      for (int i = 0; i < d; ++i) parts[j].acc[i] += p * row[size_t(i)];
    }
  }
}

}  // namespace attn

void attention_reference(const AttentionTile& tile) {
  const KvLayerView& kv = *tile.kv;
  const int d = kv.head_dim;
  const int max_t = tile.tokens();
  OPTIQ_CHECK(max_t <= kv.n_tokens, "attention reads past the stored tokens");
  std::vector<float> K(size_t(max_t) * d), V(size_t(max_t) * d);
  for (int t = 0; t < max_t; ++t) {
    dequant_head(kv, true, tile.kv_head, t, K.data() + size_t(t) * d);
    dequant_head(kv, false, tile.kv_head, t, V.data() + size_t(t) * d);
  }
  std::vector<double> s(static_cast<size_t>(max_t));
  for (int i = 0; i < tile.rows; ++i)
    for (int j = 0; j < tile.rep; ++j) {
      const float* qsrc = tile.q + size_t(i) * tile.q_stride + size_t(j) * d;
      std::vector<float> q(qsrc, qsrc + d);
      for (float& x : q) x *= tile.scale;
      attn::round_q_for(kv, q.data());
      float* o = tile.out + size_t(i) * tile.out_stride + size_t(j) * d;
      const int n = tile.limits[i];
      double mx = -INFINITY;
      for (int t = 0; t < n; ++t) {
        double dot = 0;
        for (int e = 0; e < d; ++e) dot += double(q[size_t(e)]) * K[size_t(t) * d + e];
        s[size_t(t)] = dot;
        mx = std::max(mx, s[size_t(t)]);
      }
      double sum = 0;
      for (int t = 0; t < n; ++t) sum += (s[size_t(t)] = std::exp(s[size_t(t)] - mx));
      for (int e = 0; e < d; ++e) {
        double a = 0;
        for (int t = 0; t < n; ++t) a += s[size_t(t)] * V[size_t(t) * d + e];
        o[e] = n > 0 ? float(a / sum) : 0.0f;
      }
    }
}

void attention(const std::vector<AttentionTile>& tiles, int threads) {
  if (tiles.empty()) return;
  // Split each tile's sequence into pieces so that there are enough tasks to keep every thread busy
  // (one long sequence with few KV heads still uses all cores); pieces are merged afterwards.
  struct Task {
    int tile, c0, c1;  // chunk range [c0, c1)
    int piece;         // index among the tile's pieces
  };
  std::vector<Task> tasks;
  std::vector<int> pieces(tiles.size()), first_task(tiles.size()), tile_tokens(tiles.size());
  const int want = 4 * std::max(threads, 1);
  for (size_t ti = 0; ti < tiles.size(); ++ti) {
    const AttentionTile& T = tiles[ti];
    const int max_t = tile_tokens[ti] = T.tokens();
    OPTIQ_CHECK(max_t <= T.kv->n_tokens, "attention reads past the stored tokens");
    OPTIQ_CHECK(!T.kv->pages || (T.kv->page_tokens > 0 && T.kv->page_tokens % attn::kChunk == 0),
                "paged KV: pages must hold a multiple of the kernel's block of tokens");
    const int chunks = (max_t + attn::kChunk - 1) / attn::kChunk;
    int p = 1;
    if (int(tiles.size()) < want) p = std::clamp((want + int(tiles.size()) - 1) / int(tiles.size()), 1, std::max(chunks, 1));
    pieces[ti] = p;
    first_task[ti] = int(tasks.size());
    for (int k = 0; k < p; ++k) tasks.push_back({int(ti), int(int64_t(chunks) * k / p), int(int64_t(chunks) * (k + 1) / p), k});
  }
  // Partial results of split tiles: per task and query, m, l and acc[head_dim].
  std::vector<size_t> part_off(tasks.size() + 1, 0);
  for (size_t k = 0; k < tasks.size(); ++k) {
    const AttentionTile& T = tiles[size_t(tasks[k].tile)];
    part_off[k + 1] = part_off[k] + (pieces[size_t(tasks[k].tile)] > 1 ? size_t(T.rows * T.rep) * (T.kv->head_dim + 2) : 0);
  }
  std::vector<float> part_buf(part_off.back());

#pragma omp parallel num_threads(threads)
  {
    std::vector<float> qbuf, accbuf, scratch;
    std::vector<int> qlim;
    std::vector<attn::Partial> parts;
#pragma omp for schedule(dynamic, 1)
    for (size_t k = 0; k < tasks.size(); ++k) {
      const Task& task = tasks[k];
      const AttentionTile& T = tiles[size_t(task.tile)];
      const KvLayerView& kv = *T.kv;
      const int d = kv.head_dim, nq = T.rows * T.rep;
      qbuf.resize(size_t(nq) * d);
      accbuf.assign(size_t(nq) * d, 0.0f);
      qlim.resize(size_t(nq));
      scratch.resize(attn::scratch_floats(kv, nq));
      parts.resize(size_t(nq));
      for (int i = 0; i < T.rows; ++i)
        for (int j = 0; j < T.rep; ++j) {
          const int qi = i * T.rep + j;
          const float* src = T.q + size_t(i) * T.q_stride + size_t(j) * d;
          for (int e = 0; e < d; ++e) qbuf[size_t(qi) * d + e] = src[e] * T.scale;
          attn::round_q_for(kv, qbuf.data() + size_t(qi) * d);
          qlim[size_t(qi)] = T.limits[i];
          parts[size_t(qi)] = {-INFINITY, 0.0f, accbuf.data() + size_t(qi) * d};
        }
      const attn::BlockFn fn = avx2_ok(kv) ? attn::block_avx2 : attn::block_ref;
      const int max_t = tile_tokens[size_t(task.tile)];
      for (int c = task.c0; c < task.c1; ++c) {
        const int t0 = c * attn::kChunk, t1 = std::min(max_t, t0 + attn::kChunk);
        fn(kv, T.kv_head, qbuf.data(), nq, qlim.data(), t0, t1, parts.data(), scratch.data());
      }
      if (pieces[size_t(task.tile)] == 1) {
        for (int i = 0; i < T.rows; ++i)
          for (int j = 0; j < T.rep; ++j) {
            const attn::Partial& P = parts[size_t(i * T.rep + j)];
            float* o = T.out + size_t(i) * T.out_stride + size_t(j) * d;
            const float inv = P.l > 0 ? 1.0f / P.l : 0.0f;
            for (int e = 0; e < d; ++e) o[e] = P.acc[e] * inv;
          }
      } else {
        float* dst = part_buf.data() + part_off[k];
        for (int qi = 0; qi < nq; ++qi) {
          float* p = dst + size_t(qi) * (d + 2);
          p[0] = parts[size_t(qi)].m;
          p[1] = parts[size_t(qi)].l;
          std::copy(parts[size_t(qi)].acc, parts[size_t(qi)].acc + d, p + 2);
        }
      }
    }
  }

  // Merge the pieces of split tiles: rescale each piece to the common max, sum, normalize.
  for (size_t ti = 0; ti < tiles.size(); ++ti) {
    if (pieces[ti] == 1) continue;
    const AttentionTile& T = tiles[ti];
    const int d = T.kv->head_dim;
    for (int i = 0; i < T.rows; ++i)
      for (int j = 0; j < T.rep; ++j) {
        const int qi = i * T.rep + j;
        float M = -INFINITY;
        for (int k = 0; k < pieces[ti]; ++k) M = std::max(M, part_buf[part_off[size_t(first_task[ti] + k)] + size_t(qi) * (d + 2)]);
        float* o = T.out + size_t(i) * T.out_stride + size_t(j) * d;
        std::fill(o, o + d, 0.0f);
        float L = 0;
        for (int k = 0; k < pieces[ti]; ++k) {
          const float* p = part_buf.data() + part_off[size_t(first_task[ti] + k)] + size_t(qi) * (d + 2);
          if (p[1] == 0.0f) continue;
          const float w = std::exp(p[0] - M);
          L += p[1] * w;
          for (int e = 0; e < d; ++e) o[e] += p[2 + e] * w;
        }
        const float inv = L > 0 ? 1.0f / L : 0.0f;
        for (int e = 0; e < d; ++e) o[e] *= inv;
      }
  }
}

}  // namespace optiq::kernels
